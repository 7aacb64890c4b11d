"""Checked spec + weights -> an ONNX model, built with the onnx package's own helpers.

One function per layer kind in `EXPORTERS` turns a layer into standard ONNX nodes; adding a kind
is one entry there. Tensors keep the spec's names (`conv1`, `basic2.conv1`); the graph input is
`input`, the output `output`, the batch dimension is the symbolic `batch`, and parameters and BN
running statistics are initializers under cnnc's names (`conv1.weight`, `bn1.running_mean`).
Small constants an operator needs (a Clip bound, a Resize scale) are initializers named
`<layer>.<role>`; `onnx_import` folds them back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .check import Checked, Layer
from .files import UsageError

OPSET = 18  # ONNX Runtime >= 1.14, TensorRT >= 8.6
INPUT, OUTPUT, BATCH = "input", "output", "batch"


class ExportError(UsageError):
    """A spec that checks but has a layer with no faithful form in the target (exit 2)."""


@dataclass
class Builder:
    """What the per-kind exporters add to: nodes and initializers, in order."""

    weights: dict  # cnnc name -> numpy array
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)

    def node(self, op: str, inputs: list[str], output: str, name: str, **attrs) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=name, **attrs))
        return output

    def constant(self, name: str, value, dtype="float32") -> str:
        import numpy as np
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def param(self, layer: Layer, role: str) -> str:
        import numpy as np
        from onnx import numpy_helper

        name = f"{layer.node.name}.{role}"
        value = np.asarray(self.weights[name], np.float32)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name


Exporter = Callable[[Builder, Layer, list[str], str], None]


def _pads(pad, end=(0, 0)) -> list[int]:
    """ONNX order: [top, left, bottom, right]."""
    return [pad[0], pad[1], pad[0] + end[0], pad[1] + end[1]]


def _after(a, extra=(0, 0)) -> tuple:
    """What the padding after the input adds to the padding before it (asymmetric pads), plus
    `extra`."""
    end = a.get("pad_end", a["pad"])
    return tuple(end[i] - a["pad"][i] + extra[i] for i in range(2))


def _conv(b: Builder, layer: Layer, ins: list[str], out: str) -> None:
    a = layer.attrs
    inputs = [ins[0], b.param(layer, "weight")] + ([b.param(layer, "bias")] if a["bias"] else [])
    op = "Conv" if layer.node.kind == "CONV" else "ConvTranspose"
    extra = {"output_padding": list(a["outpad"])} if op == "ConvTranspose" else {}
    b.node(
        op, inputs, out, layer.node.name, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
        pads=_pads(a["pad"], _after(a)), dilations=list(a["dilation"]), group=a["groups"],
        **extra,
    )  # fmt: skip


def _pool(b: Builder, layer: Layer, ins: list[str], out: str, in_shape) -> None:
    a, name = layer.attrs, layer.node.name
    if a["global"] and a["mode"] in ("max", "avg"):
        b.node("GlobalMaxPool" if a["mode"] == "max" else "GlobalAveragePool", ins, out, name)
        return
    kernel, stride = list(a["kernel"]), list(a["stride"])
    if a["adaptive"]:
        # ONNX has no adaptive pool; when the output divides the input, PyTorch's windows are
        # the fixed ones of stride and size input/output.
        sizes, outs = in_shape[1:], a["adaptive_out"]
        if any(size % o for size, o in zip(sizes, outs, strict=True)):
            raise ExportError(
                f"{name}: adaptive POOL {outs[0]}x{outs[1]} of a {sizes[0]}x{sizes[1]} input has "
                "windows of unequal sizes, which no ONNX pool computes; give the input a size "
                "the output divides, or use a fixed window"
            )
        kernel = stride = [size // o for size, o in zip(sizes, outs, strict=True)]
    end = (0, 0)
    ceil = 0
    if a["ceil"]:
        # The windows that hang over the end read nothing (max, sum, avg without padding in the
        # divisor), so ceil mode is explicit end padding; avg with padding counted keeps ceil_mode,
        # whose divisor onnxruntime clips at the padded input as PyTorch does.
        if a["mode"] == "avg" and a["count_pad"]:
            ceil = 1
        else:
            reach = [(kernel[i] - 1) * a["dilation"][i] + 1 for i in range(2)]
            end = tuple(
                max(0, (layer.shape[1 + i] - 1) * stride[i] + reach[i] - in_shape[1 + i]
                    - a["pad"][i] - a["pad_end"][i])
                for i in range(2)
            )  # fmt: skip
    window = {"kernel_shape": kernel, "strides": stride, "pads": _pads(a["pad"], _after(a, end))}
    if a["mode"] == "max":
        if a["dilation"] != (1, 1):
            window["dilations"] = list(a["dilation"])
        b.node("MaxPool", ins, out, name, ceil_mode=ceil, **window)
        return
    count_pad = 1 if a["mode"] == "sum" else int(a["count_pad"])
    target = out if a["mode"] == "avg" else f"{name}.mean"
    b.node("AveragePool", ins, target, name, ceil_mode=ceil, count_include_pad=count_pad, **window)
    if a["mode"] == "sum":  # the mean over a window that lies wholly in the padded input, times k
        area = b.constant(f"{name}.area", kernel[0] * kernel[1])
        b.node("Mul", [target, area], out, f"{name}.sum")


def _fc(b: Builder, layer: Layer, ins: list[str], out: str, in_shape) -> None:
    name, source = layer.node.name, ins[0]
    if len(in_shape) != 1:
        source = b.node("Flatten", [source], f"{name}.flat", f"{name}.flatten", axis=1)
    inputs = [source, b.param(layer, "weight")]
    inputs += [b.param(layer, "bias")] if layer.attrs["bias"] else []
    b.node("Gemm", inputs, out, name, transB=1)


def _bn(b: Builder, layer: Layer, ins: list[str], out: str) -> None:
    a = layer.attrs
    roles = ("weight", "bias", "running_mean", "running_var")
    b.node(
        "BatchNormalization", [ins[0], *(b.param(layer, r) for r in roles)], out, layer.node.name,
        epsilon=float(a["eps"]), momentum=1.0 - float(a["momentum"]),  # ONNX keeps, torch adds
    )  # fmt: skip


def _lrn(b: Builder, layer: Layer, ins: list[str], out: str) -> None:
    a = layer.attrs
    if a["size"] % 2 == 0:
        raise ExportError(
            f"{layer.node.name}: LRN {a['size']} has an even size; ONNX centres an even window "
            "one channel later than PyTorch and cnnc, so the export would differ"
        )
    b.node(
        "LRN", ins, out, layer.node.name, size=a["size"], alpha=float(a["alpha"]),
        beta=float(a["beta"]), bias=float(a["k"]),
    )  # fmt: skip


def _relu6(b: Builder, layer: Layer, ins: list[str], out: str) -> None:
    name = layer.node.name
    bounds = [b.constant(f"{name}.min", 0.0), b.constant(f"{name}.max", 6.0)]
    b.node("Clip", [ins[0], *bounds], out, name)


def _dropout(b: Builder, layer: Layer, ins: list[str], out: str) -> None:
    ratio = b.constant(f"{layer.node.name}.ratio", float(layer.attrs["rate"]))
    b.node("Dropout", [ins[0], ratio], out, layer.node.name)


def _upsample(b: Builder, layer: Layer, ins: list[str], out: str) -> None:
    a, name = layer.attrs, layer.node.name
    if a["mode"] == "nearest":
        how = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
               "nearest_mode": "floor"}  # fmt: skip
    else:
        how = {"mode": "linear",
               "coordinate_transformation_mode": "align_corners" if a["align_corners"]
               else "half_pixel"}  # fmt: skip
    if len(ins) == 2:  # UPSAMPLE(y, x): y at the height and width of x
        size = b.node("Shape", [ins[1]], f"{name}.size", f"{name}.size", start=2)
        b.node("Resize", [ins[0], "", "", size], out, name, axes=[2, 3], **how)
        return
    scales = b.constant(f"{name}.scales", [1.0, 1.0, *map(float, a["scale"])])
    b.node("Resize", [ins[0], "", scales], out, name, **how)


def _per_channel(b: Builder, layer: Layer, rank: int) -> str:
    """The layer's (C,) weight as an initializer that broadcasts over (N, C, H, W) when the
    input has rank 4 (ONNX broadcasts from the right), under the parameter's own name."""
    import numpy as np
    from onnx import numpy_helper

    name = f"{layer.node.name}.weight"
    value = np.asarray(b.weights[name], np.float32)
    value = value.reshape(-1, 1, 1) if rank == 4 else value.reshape(-1)
    b.initializers.append(numpy_helper.from_array(value, name))
    return name


def _silu(b: Builder, layer: Layer, ins: list[str], out: str) -> None:
    name = layer.node.name
    gate = b.node("Sigmoid", ins, f"{name}.sigmoid", f"{name}.sigmoid")
    b.node("Mul", [ins[0], gate], out, name)


def _gelu(b: Builder, layer: Layer, ins: list[str], out: str) -> None:
    """Opset 18 has no Gelu: x/2 (1 + erf(x/sqrt 2)), or the tanh form
    x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    name, x = layer.node.name, ins[0]
    if layer.attrs["tanh"]:
        cube = b.node("Pow", [x, b.constant(f"{name}.three", 3.0)], f"{name}.cube", f"{name}.cube")
        cubed = b.node("Mul", [cube, b.constant(f"{name}.c", 0.044715)], f"{name}.cx3",
                       f"{name}.cx3")  # fmt: skip
        inner = b.node("Add", [x, cubed], f"{name}.inner", f"{name}.inner")
        scaled = b.node("Mul", [inner, b.constant(f"{name}.k", math.sqrt(2 / math.pi))],
                        f"{name}.scaled", f"{name}.scaled")  # fmt: skip
        curve = b.node("Tanh", [scaled], f"{name}.tanh", f"{name}.tanh")
    else:
        scaled = b.node("Mul", [x, b.constant(f"{name}.k", 1 / math.sqrt(2))], f"{name}.scaled",
                        f"{name}.scaled")  # fmt: skip
        curve = b.node("Erf", [scaled], f"{name}.erf", f"{name}.erf")
    shifted = b.node("Add", [curve, b.constant(f"{name}.one", 1.0)], f"{name}.shifted",
                     f"{name}.shifted")  # fmt: skip
    half = b.node("Mul", [x, b.constant(f"{name}.half", 0.5)], f"{name}.halfx", f"{name}.halfx")
    b.node("Mul", [half, shifted], out, name)


def _prelu(b: Builder, layer: Layer, ins: list[str], out: str, in_shape) -> None:
    b.node("PRelu", [ins[0], _per_channel(b, layer, 1 + len(in_shape))], out, layer.node.name)


def _scale(b: Builder, layer: Layer, ins: list[str], out: str, in_shape) -> None:
    b.node("Mul", [ins[0], _per_channel(b, layer, 1 + len(in_shape))], out, layer.node.name)


def _ln(b: Builder, layer: Layer, ins: list[str], out: str, in_shape) -> None:
    """LayerNormalization normalises the trailing axes: a map goes channels-last for it."""
    name, eps = layer.node.name, float(layer.attrs["eps"])
    params = [b.param(layer, "weight"), b.param(layer, "bias")]
    if len(in_shape) == 1:
        b.node("LayerNormalization", [ins[0], *params], out, name, axis=-1, epsilon=eps)
        return
    last = b.node("Transpose", ins, f"{name}.nhwc", f"{name}.to_nhwc", perm=[0, 2, 3, 1])
    normed = b.node("LayerNormalization", [last, *params], f"{name}.normed", name, axis=-1,
                    epsilon=eps)  # fmt: skip
    b.node("Transpose", [normed], out, f"{name}.to_nchw", perm=[0, 3, 1, 2])


def _mul(b: Builder, layer: Layer, ins: list[str], out: str, shapes) -> None:
    """A flat (N, C) gate beside a map is (N, C, 1, 1)."""
    name, ins = layer.node.name, list(ins)
    if len({len(shape) for shape in shapes}) == 2:
        for i, shape in enumerate(shapes):
            if len(shape) == 1:
                axes = b.constant(f"{name}.axes{i}", [2, 3], "int64")
                ins[i] = b.node("Unsqueeze", [ins[i], axes], f"{name}.gate{i}", f"{name}.gate{i}")
    b.node("Mul", ins, out, name)


def _slice(b: Builder, layer: Layer, ins: list[str], out: str) -> None:
    name, a = layer.node.name, layer.attrs
    roles = {"starts": a["from"], "ends": a["to"], "axes": 1}
    bounds = [b.constant(f"{name}.{role}", [value], "int64") for role, value in roles.items()]
    b.node("Slice", [ins[0], *bounds], out, name)


def _shuffle(b: Builder, layer: Layer, ins: list[str], out: str, in_shape) -> None:
    """(N, g, C/g, ...) with the two group axes swapped, as ShuffleNet writes it."""
    name, groups = layer.node.name, layer.attrs["groups"]
    c, *rest = in_shape
    grouped = b.constant(f"{name}.grouped", [0, groups, c // groups, *rest], "int64")
    flat = b.constant(f"{name}.shape", [0, c, *rest], "int64")
    split = b.node("Reshape", [ins[0], grouped], f"{name}.groups", f"{name}.split")
    perm = [0, 2, 1, *range(3, 3 + len(rest))]
    swapped = b.node("Transpose", [split], f"{name}.swapped", f"{name}.swap", perm=perm)
    b.node("Reshape", [swapped, flat], out, name)


def _simple(op: str, **attrs) -> Exporter:
    """A kind that is one ONNX operator; `attrs` maps ONNX attribute -> (cnnc attribute, type)."""

    def export(b: Builder, layer: Layer, ins: list[str], out: str) -> None:
        values = {k: convert(layer.attrs[source]) for k, (source, convert) in attrs.items()}
        b.node(op, ins, out, layer.node.name, **values)

    return export


def _shaped(export) -> Exporter:
    """Marks an exporter that also needs its input's shape (passed as in_shape)."""
    export.needs_shape = True
    return export


def _all_shaped(export) -> Exporter:
    """Marks an exporter that also needs every input's shape (passed as a list)."""
    export.needs_shapes = True
    return export


EXPORTERS: dict[str, Exporter] = {
    "CONV": _conv,
    "DECONV": _conv,
    "POOL": _shaped(_pool),
    "FC": _shaped(_fc),
    "FLATTEN": lambda b, layer, ins, out: b.node("Flatten", ins, out, layer.node.name, axis=1),
    "RELU": _simple("Relu"),
    "RELU6": _relu6,
    "LEAKYRELU": _simple("LeakyRelu", alpha=("slope", float)),
    "ELU": _simple("Elu", alpha=("alpha", float)),
    "TANH": _simple("Tanh"),
    "SIGMOID": _simple("Sigmoid"),
    "SOFTMAX": lambda b, layer, ins, out: b.node(  # over channels, per pixel
        "Softmax", ins, out, layer.node.name, axis=1
    ),
    "BN": _bn,
    "DROPOUT": _dropout,
    "LRN": _lrn,
    "UPSAMPLE": _upsample,
    "SILU": _silu,
    "HSWISH": _simple("HardSwish"),
    "HSIGMOID": lambda b, layer, ins, out: b.node(  # torch's: relu6(x + 3) / 6
        "HardSigmoid", ins, out, layer.node.name, alpha=1 / 6, beta=0.5
    ),
    "GELU": _gelu,
    "MISH": _simple("Mish"),
    "PRELU": _shaped(_prelu),
    "SCALE": _shaped(_scale),
    "LN": _shaped(_ln),
    "SLICE": _slice,
    "SHUFFLE": _shaped(_shuffle),
    "DROPPATH": _simple("Identity"),  # stochastic depth is the identity at inference
    "MUL": _all_shaped(_mul),
    "ADD": lambda b, layer, ins, out: b.node(
        "Add" if len(ins) == 2 else "Sum", ins, out, layer.node.name
    ),
    "CONCAT": lambda b, layer, ins, out: b.node("Concat", ins, out, layer.node.name, axis=1),
}


def tensor_names(checked: Checked) -> list[str]:
    """The ONNX name of each cnnc tensor, aligned with checked.layers."""
    names = [layer.node.name for layer in checked.layers]
    names[0] = INPUT
    if len(checked.graph.outputs) > 1:  # several heads: each graph output named as its head
        for head, index in checked.graph.outputs:
            names[index] = head
    else:
        names[checked.graph.output] = OUTPUT
    return names


def output_heads(checked: Checked) -> list[tuple[str, int]]:
    """(name, layer index) of each graph output: the heads of the `output` line, else the one."""
    return list(checked.graph.outputs) or [(OUTPUT, checked.graph.output)]


def to_onnx(checked: Checked, weights: dict, metadata: dict | None = None, opset: int = OPSET):
    """The ONNX ModelProto of a checked spec; `weights` maps every parameter and buffer name to
    an array; `metadata` (normalization, classes, ...) lands in metadata_props as JSON."""
    from onnx import TensorProto, helper

    from cnnc import __version__

    names = tensor_names(checked)
    builder = Builder(weights)
    for index, layer in enumerate(checked.layers[1:], start=1):
        kind = layer.node.kind
        export = EXPORTERS.get(kind)
        if export is None:
            raise ExportError(f"{layer.node.name}: cnnc has no ONNX export for {kind} yet")
        ins = [names[i] for i in layer.node.inputs]
        if getattr(export, "needs_shapes", False):
            shapes = [checked.layers[i].shape for i in layer.node.inputs]
            export(builder, layer, ins, names[index], shapes)
        elif getattr(export, "needs_shape", False):
            export(builder, layer, ins, names[index], checked.layers[layer.node.inputs[0]].shape)
        else:
            export(builder, layer, ins, names[index])

    def value(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [BATCH, *shape])

    graph = helper.make_graph(
        builder.nodes,
        checked.graph.name,
        [value(INPUT, checked.graph.input_shape)],
        [value(names[index], checked.layers[index].shape) for _, index in output_heads(checked)],
        builder.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name="cnnc",
        producer_version=__version__,
        doc_string=f"{checked.graph.name}: {checked.params:,} params, {checked.macs:,} MACs",
    )
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    props = {"cnnc.network": checked.graph.name, "cnnc.spec": checked.graph.source}
    for key, item in (metadata or {}).items():
        props[key] = item if isinstance(item, str) else json.dumps(item)
    helper.set_model_props(model, props)
    return model
