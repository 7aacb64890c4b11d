"""An ONNX model -> a readable spec and its weights.

Three passes: fold every node whose inputs are all constants (initializers, Constant,
ConstantOfShape, Unsqueeze of a constant ...) with onnx's reference evaluator; map each remaining
node to a cnnc layer with the per-operator functions in `IMPORTERS` (adding an operator is one
entry there), folding the patterns an exporter splits a layer into back into one (Flatten + Gemm
-> FC, AveragePool + Mul by the window area -> POOL sum, BN + per-channel Mul/Add -> BN, end
padding -> `ceil`); and write the layers out as chains, naming a tensor only where the graph
branches or merges. The text is checked like any spec, so what cnnc reports is what was imported.
An operator with no cnnc layer is an ImportError naming the node and its operator.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .check import Checked, check
from .errors import SpecError
from .expand import expand
from .files import UsageError
from .onnx_spec import Layer, identifier, write_spec
from .syntax import parse


class ImportError_(UsageError):
    """A model cnnc cannot express: names the node and the operator (exit 2)."""


@dataclass
class Imported:
    spec: str
    checked: Checked
    weights: dict  # cnnc name -> array
    meta: dict = field(default_factory=dict)  # normalization and classes, if the model has them


class Graph:
    """The model's tensors as the importer sees them: constants, shapes and producing layers."""

    def __init__(self, model, path: str):
        import onnx
        from onnx import numpy_helper, shape_inference

        self.path = path
        self.constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        inputs = [i for i in model.graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise ImportError_(
                f"{path}: cnnc networks have one input, this model has {len(inputs)} "
                f"({', '.join(i.name for i in inputs)})"
            )
        self.input = inputs[0].name
        self.model = model
        self._fold()
        try:
            inferred = shape_inference.infer_shapes(self._light(), data_prop=True)
        except onnx.shape_inference.InferenceError as error:
            raise ImportError_(f"{path}: ONNX shape inference fails: {error}") from None
        self.shapes = {}
        for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
            dims = info.type.tensor_type.shape.dim
            self.shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                           for d in dims)  # fmt: skip
        self.producer = {}  # tensor -> layer index
        self.consumers: dict[str, list] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def _fold(self) -> None:
        """Evaluate every node whose inputs are all known constants; keep the others."""
        import numpy as np
        from onnx import helper, numpy_helper
        from onnx.reference import ReferenceEvaluator

        kept = []
        for node in self.model.graph.node:
            if node.op_type == "ConstantOfShape" and node.input[0] in self.constants:
                value = next((numpy_helper.to_array(a.t) for a in node.attribute), np.zeros(1))
                shape = tuple(int(d) for d in self.constants[node.input[0]])
                self.constants[node.output[0]] = np.broadcast_to(value.reshape(()), shape)
                continue  # a view: a weight filled with one value takes no memory
            if node.op_type == "Constant" or (
                all(not name or name in self.constants for name in node.input)
                and node.op_type not in ("RandomNormal", "RandomUniform")
                and node.input
            ):
                graph = helper.make_graph(
                    [node], "fold", [], [helper.make_tensor_value_info(o, 0, None)
                                         for o in node.output],
                    [self._tensor(n) for n in node.input if n],
                )  # fmt: skip
                folded = helper.make_model(graph, opset_imports=self.model.opset_import)
                folded.ir_version = self.model.ir_version
                try:
                    values = ReferenceEvaluator(folded).run(None, {})
                except Exception as error:  # noqa: BLE001 - any failure of the evaluator
                    raise ImportError_(
                        f"{self.path}: cannot evaluate the constant node `{node.name}` "
                        f"({node.op_type}): {error}"
                    ) from None
                self.constants.update(zip(node.output, values, strict=False))
            else:
                kept.append(node)
        self.nodes = kept  # the model itself is left as it was

    def _light(self):
        """The graph for shape inference: small constants as values (shape arithmetic reads
        them), the others as typed inputs, so no weight is serialised for it."""
        from onnx import helper

        inputs = [i for i in self.model.graph.input if i.name not in self.constants]
        small = []
        for name, value in self.constants.items():
            if value.size <= 64:
                small.append(self._tensor(name, value))
            else:
                dtype = helper.np_dtype_to_tensor_dtype(value.dtype)
                inputs.append(helper.make_tensor_value_info(name, dtype, value.shape))
        graph = helper.make_graph(self.nodes, "light", inputs, self.model.graph.output, small)
        light = helper.make_model(graph, opset_imports=self.model.opset_import)
        light.ir_version = max(self.model.ir_version, 4)  # initializers need not be inputs
        return light

    def _tensor(self, name, value=None):
        import numpy as np
        from onnx import numpy_helper

        value = self.constants[name] if value is None else value
        return numpy_helper.from_array(np.asarray(value), name)

    def shape(self, name: str, node) -> tuple:
        shape = self.shapes.get(name)
        if shape is None or any(d is None for d in shape[1:]):
            raise ImportError_(f"{self.path}: node `{node.name}` ({node.op_type}): the shape of "
                               f"`{name}` is not known statically")  # fmt: skip
        return shape

    def constant(self, node, position: int, what: str):
        name = node.input[position] if position < len(node.input) else ""
        if name not in self.constants:
            raise ImportError_(
                f"{self.path}: node `{node.name}` ({node.op_type}): its {what} must be a constant "
                "(an initializer), not computed at run time"
            )
        return self.constants[name]


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _pair(values) -> str:
    values = list(values)
    return str(values[0]) if values[0] == values[1] else f"{values[0]}x{values[1]}"


class _Importer:
    def __init__(self, graph: Graph):
        self.g = graph
        self.layers: list[Layer] = []
        self.source: dict[str, int] = {graph.input: -1}  # ONNX tensor -> layer index
        self.sizes: dict[str, int] = {}  # a Shape's output -> the layer whose size it reads

    def fail(self, node, why: str):
        raise ImportError_(f"{self.g.path}: node `{node.name or node.output[0]}` ({node.op_type}): "
                           f"{why}")  # fmt: skip

    def input_of(self, node, position: int = 0) -> int:
        name = node.input[position]
        if name not in self.source:
            self.fail(node, f"its input `{name}` is neither the network input nor a layer output")
        return self.source[name]

    def add(self, node, kind: str, args: list[str], inputs: list[int], **weights) -> None:
        self.layers.append(Layer(kind, args, inputs, weights, node.name, node.output[0]))
        self.source[node.output[0]] = len(self.layers) - 1

    def alias(self, node, position: int = 0) -> None:
        self.source[node.output[0]] = self.input_of(node, position)

    def only_consumer(self, index: int) -> bool:
        """The layer's output feeds exactly one node, so a following op may be folded into it."""
        tensor = self.layers[index].output if index >= 0 else None
        return (
            tensor is not None
            and len(self.g.consumers.get(tensor, [])) == 1
            and not any(o.name == tensor for o in self.g.model.graph.output)
        )


def _windows(imp: _Importer, node, in_shape, kernel, *, ceil_ok: bool):
    """(stride, pads, ceil) of a Conv/Pool node; asymmetric end padding that only completes the
    last window is written as `ceil` when `ceil_ok`."""
    a = _attrs(node)
    stride = list(a.get("strides", [1, 1]))
    dil = list(a.get("dilations", [1, 1]))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for i in range(2):
            out = -(-in_shape[2 + i] // stride[i])
            total = max(0, (out - 1) * stride[i] + dil[i] * (kernel[i] - 1) + 1 - in_shape[2 + i])
            pads.append(total)
        begin = [p // 2 if auto == "SAME_UPPER" else p - p // 2 for p in pads]
        pads = begin + [p - b for p, b in zip(pads, begin, strict=True)]
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    else:
        pads = list(a.get("pads", [0, 0, 0, 0]))
    ceil = bool(a.get("ceil_mode", 0))
    begin, end = pads[:2], pads[2:]
    if begin != end and not _ceil_padding(in_shape, kernel, stride, begin, end, ceil_ok, ceil):
        if ceil:
            imp.fail(node, f"asymmetric padding {pads} (top, left, bottom, right) with ceil_mode "
                           "has no cnnc form")  # fmt: skip
        return stride, pads, dil, False  # four-sided: pad=TxLxBxR
    if begin != end:
        ceil = True
    return stride, begin, dil, ceil


def _ceil_padding(in_shape, kernel, stride, begin, end, ceil_ok: bool, ceil: bool) -> bool:
    """The end padding is exactly what ceil mode adds (the last window completed)."""
    if not ceil_ok or ceil or any(e < b for b, e in zip(begin, end, strict=True)):
        return False
    for i in range(2):
        size, k, s, p = in_shape[2 + i], kernel[i], stride[i], begin[i]
        floor_out = (size + 2 * p - k) // s + 1
        wanted = (size + p + end[i] - k) // s + 1
        ceil_out = -(-(size + 2 * p - k) // s) + 1
        if ceil_out - 1 >= 0 and (ceil_out - 1) * s >= size + p:
            ceil_out -= 1
        if wanted not in (floor_out, ceil_out) or (wanted != floor_out and end[i] - p >= s):
            return False
    return True


def _pads_arg(pads) -> str:
    """p1, p1x2, or four sides (top, left, bottom, right) as pad=TxLxBxR."""
    if len(pads) == 4:
        return "pad=" + "x".join(map(str, pads))
    return f"p{_pair(pads)}"


def conv(imp: _Importer, node) -> None:
    a = _attrs(node)
    weight = imp.g.constant(node, 1, "weight")
    bias = imp.g.constant(node, 2, "bias") if len(node.input) > 2 and node.input[2] else None
    in_shape = imp.g.shape(node.input[0], node)
    kernel = list(a.get("kernel_shape", weight.shape[2:]))
    if len(kernel) != 2:
        imp.fail(node, f"{len(kernel)}-D convolution; cnnc has 2-D only")
    stride, pads, dil, _ = _windows(imp, node, in_shape, kernel, ceil_ok=False)
    groups = int(a.get("group", 1))
    transposed = node.op_type == "ConvTranspose"
    filters = weight.shape[1] * groups if transposed else weight.shape[0]
    args = [f"{filters}@{kernel[0]}x{kernel[1]}"]
    args += [f"s{_pair(stride)}"] if stride != [1, 1] else []
    args += [_pads_arg(pads)] if any(pads) else []
    if transposed:
        outpad = list(a.get("output_padding", [0, 0]))
        args += [f"op{_pair(outpad)}"] if outpad != [0, 0] else []
        if "output_shape" in a:
            imp.fail(node, "an explicit output_shape; give pads and output_padding instead")
    args += [f"d{_pair(dil)}"] if dil != [1, 1] else []
    if groups > 1:
        args += ["dw"] if groups == in_shape[1] and not transposed else [f"g{groups}"]
    weights = {"weight": weight}
    if bias is None:
        args.append("nobias")
    else:
        weights["bias"] = bias
    imp.add(node, "DECONV" if transposed else "CONV", args, [imp.input_of(node)], **weights)


def pool(imp: _Importer, node) -> None:
    a = _attrs(node)
    if len(node.output) > 1 and node.output[1]:
        imp.fail(node, "its indices output is used; cnnc's max pool has none")
    if node.op_type.startswith("Global"):
        mode = "max" if "Max" in node.op_type else "avg"
        imp.add(node, "POOL", [mode, "global"], [imp.input_of(node)])
        return
    dilation = list(a.get("dilations", [1, 1]))
    if node.op_type != "MaxPool" and any(d != 1 for d in dilation):
        imp.fail(node, "dilated average pooling has no cnnc form")
    in_shape = imp.g.shape(node.input[0], node)
    kernel = list(a["kernel_shape"])
    out_shape = imp.g.shapes.get(node.output[0], ())
    padding_ignored = node.op_type == "MaxPool" or not a.get("count_include_pad", 0)
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if (
        padding_ignored
        and tuple(out_shape[2:]) == (1, 1)
        and pads[:2] == [0, 0]
        and all(in_shape[2 + i] <= kernel[i] <= in_shape[2 + i] + pads[2 + i] for i in range(2))
    ):  # one window over the whole map, its padding ignored (a caffe model's last pool)
        mode = "max" if node.op_type == "MaxPool" else "avg"
        imp.add(node, "POOL", [mode, "global"], [imp.input_of(node)])
        return
    stride, pads, _, ceil = _windows(imp, node, in_shape, kernel, ceil_ok=True)
    mode = "max" if node.op_type == "MaxPool" else "avg"
    source = imp.input_of(node)
    count_pad = bool(a.get("count_include_pad", 0))
    out = node.output[0]
    follow = imp.g.consumers.get(out, [])
    if mode == "avg" and count_pad and len(follow) == 1 and follow[0].op_type == "Mul":
        other = [n for n in follow[0].input if n != out]
        area = imp.g.constants.get(other[0]) if other else None
        if area is not None and area.size == 1 and float(area) == kernel[0] * kernel[1]:
            mode, node = "sum", follow[0]  # AveragePool * area is the sum over each window
    if mode == "avg" and ceil and not count_pad and not any(pads):
        count_pad = True  # without padding both divisors are the same: keep the default spelling
    args = [mode, "x".join(map(str, kernel))]
    args += [f"s{_pair(stride)}"] if stride != kernel else []
    args += [_pads_arg(pads)] if any(pads) else []
    args += [f"d{_pair(dilation)}"] if dilation != [1, 1] else []
    args += ["ceil"] if ceil else []
    args += ["exclude_pad"] if mode == "avg" and not count_pad and any(pads) else []
    imp.add(node, "POOL", args, [source])


def _flat_source(imp: _Importer, index: int) -> int:
    """FC flattens its input: a FLATTEN right before it that nothing else reads is folded in."""
    if index >= 0 and imp.layers[index].kind == "FLATTEN" and imp.only_consumer(index):
        imp.layers[index].kind = "_DROPPED"
        return imp.layers[index].inputs[0]
    return index


def gemm(imp: _Importer, node) -> None:
    import numpy as np

    a = _attrs(node)
    if a.get("transA", 0):
        imp.fail(node, "transA=1 (a transposed input) has no cnnc form")
    weight = np.asarray(imp.g.constant(node, 1, "weight"), np.float32)
    weight = weight if a.get("transB", 0) else weight.T
    weight = weight * float(a.get("alpha", 1.0))
    weights = {"weight": weight}
    args = [str(weight.shape[0])]
    if len(node.input) > 2 and node.input[2]:
        bias = np.asarray(imp.g.constant(node, 2, "bias"), np.float32) * float(a.get("beta", 1.0))
        if bias.size != weight.shape[0]:
            imp.fail(node, f"a bias of shape {bias.shape} for {weight.shape[0]} units")
        weights["bias"] = bias.reshape(-1)
    else:
        args.append("nobias")
    imp.add(node, "FC", args, [_flat_source(imp, imp.input_of(node))], **weights)


def matmul(imp: _Importer, node) -> None:
    import numpy as np

    weight = np.asarray(imp.g.constant(node, 1, "weight"), np.float32)
    if weight.ndim != 2 or len(imp.g.shape(node.input[0], node)) != 2:
        imp.fail(node, "only a flat input times a constant matrix is an FC layer")
    imp.add(node, "FC", [str(weight.shape[1]), "nobias"], [_flat_source(imp, imp.input_of(node))],
            weight=weight.T.copy())  # fmt: skip


def _channel_constant(imp: _Importer, node, index: int):
    """The other operand of a Mul/Add on `node`'s layer input, when it is a per-channel constant."""
    import numpy as np

    other = [n for n in node.input if n not in imp.source]
    if len(other) != 1 or other[0] not in imp.g.constants:
        return None
    value = np.asarray(imp.g.constants[other[0]], np.float32)
    channels = imp.g.shape(node.input[0] if node.input[0] in imp.source else node.input[1], node)[1]
    if value.size == channels and (value.ndim <= 1 or value.shape[0] in (1, channels)):
        return value.reshape(-1)
    if value.size == 1:
        return np.full(channels, float(value), np.float32)
    return None


def add_or_mul(imp: _Importer, node) -> None:
    """A merge (Add, Sum of layers), or a per-channel Mul/Add folded into the BN, FC or CONV
    before it (caffe2's Scale after SpatialBN, a bias added after a MatMul)."""
    sources = [n for n in node.input if n in imp.source]
    if node.op_type in ("Add", "Sum") and len(sources) == len(node.input) >= 2:
        imp.add(node, "ADD", [], [imp.source[n] for n in node.input])
        return
    if node.op_type == "Mul" and len(sources) == len(node.input) == 2:
        imp.add(node, "MUL", [], [imp.source[n] for n in node.input])
        return
    if node.op_type == "Mul" and _gelu(imp, node):
        return
    if node.op_type == "Sum" and len(sources) == 1 and len(node.input) == 1:
        imp.alias(node)
        return
    index = imp.source[sources[0]] if len(sources) == 1 else None
    value = _channel_constant(imp, node, index) if index is not None else None
    per_channel = value
    if value is not None and index >= 0 and imp.only_consumer(index):
        layer = imp.layers[index]
        if layer.kind == "BN" and node.op_type == "Mul":
            layer.weights["weight"] = layer.weights["weight"] * value
            layer.weights["bias"] = layer.weights["bias"] * value
        elif layer.kind == "BN" and node.op_type == "Add":
            layer.weights["bias"] = layer.weights["bias"] + value
        elif layer.kind in ("FC", "CONV") and node.op_type == "Add" and "bias" not in layer.weights:
            layer.weights["bias"] = value
            layer.args.remove("nobias")
        else:
            value = None
        if value is not None:
            layer.output = node.output[0]
            imp.source[node.output[0]] = index
            return
    if per_channel is not None and node.op_type == "Mul":  # a learned factor per channel
        imp.add(node, "SCALE", [], [index], weight=per_channel.copy())
        return
    imp.fail(
        node,
        "an elementwise operation with a constant has no cnnc layer, unless it is a "
        "per-channel scale or shift right after a BN (or a bias after FC/CONV)",
    )


def batchnorm(imp: _Importer, node) -> None:
    import numpy as np

    a = _attrs(node)
    roles = ("weight", "bias", "running_mean", "running_var")
    weights = {
        role: np.asarray(imp.g.constant(node, i + 1, role), np.float32).copy()
        for i, role in enumerate(roles)
    }
    args = []
    eps, momentum = float(a.get("epsilon", 1e-5)), 1.0 - float(a.get("momentum", 0.9))
    args += [f"eps={eps:g}"] if abs(eps - 1e-5) > 1e-12 else []
    args += [f"momentum={momentum:g}"] if abs(momentum - 0.1) > 1e-6 else []
    imp.add(node, "BN", args, [imp.input_of(node)], **weights)


def clip(imp: _Importer, node) -> None:
    a = _attrs(node)
    low = a.get("min", imp.g.constants.get(node.input[1]) if len(node.input) > 1 else None)
    high = a.get("max", imp.g.constants.get(node.input[2]) if len(node.input) > 2 else None)
    if low is not None and high is not None and float(low) == 0 and float(high) == 6:
        imp.add(node, "RELU6", [], [imp.input_of(node)])
    elif low is not None and float(low) == 0 and high is None:
        imp.add(node, "RELU", [], [imp.input_of(node)])
    else:
        imp.fail(node, f"Clip to [{low}, {high}]: cnnc has only [0, 6] (RELU6) and [0, inf) (RELU)")


def softmax(imp: _Importer, node) -> None:
    rank = len(imp.g.shape(node.input[0], node))
    axis = _attrs(node).get("axis", 1 if imp.g.opset < 13 else -1)
    axis = axis + rank if axis < 0 else axis
    flat_after = rank == 2 or _prod(imp.g.shape(node.input[0], node)[2:]) == 1
    if axis != 1 or (imp.g.opset < 13 and not flat_after):
        imp.fail(node, f"softmax over axis {axis} of a rank-{rank} tensor; cnnc's is over channels")
    imp.add(node, "SOFTMAX", [], [imp.input_of(node)])


def flatten(imp: _Importer, node) -> None:
    shape = imp.g.shape(node.input[0], node)
    if node.op_type == "Flatten":
        ok = _attrs(node).get("axis", 1) == 1
    else:
        target = [int(v) for v in imp.g.constant(node, 1, "shape")]
        ok = (
            len(target) == 2
            and target[0] in (0, -1, shape[0] or -2)
            and target[1] in (-1, _prod(shape[1:]))
            and not (target[0] == -1 and target[1] == -1)
        )
    if not ok:
        imp.fail(node, f"a reshape of {shape} other than flattening to (batch, features)")
    if len(shape) == 2:
        imp.alias(node)
    else:
        imp.add(node, "FLATTEN", [], [imp.input_of(node)])


def _prod(values) -> int:
    import math

    return math.prod(values)


def resize(imp: _Importer, node) -> None:
    import numpy as np

    a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in _attrs(node).items()}
    in_shape = imp.g.shape(node.input[0], node)
    if a.get("mode") == "linear" or node.input[3:4] and node.input[3] in imp.sizes:
        _resize_bilinear(imp, node, a, in_shape)
        return
    if node.op_type == "Upsample":
        scales = a.get("scales") or imp.g.constant(node, 1, "scales")
        transform, rounding = "asymmetric", "floor"
    else:
        scales = imp.g.constants.get(node.input[2]) if len(node.input) > 2 else None
        if scales is None or np.size(scales) == 0:
            sizes = imp.g.constant(node, 3, "sizes")
            scales = [s / i for s, i in zip(sizes, in_shape, strict=True)]
        transform = a.get("coordinate_transformation_mode", "half_pixel")
        rounding = a.get("nearest_mode", "round_prefer_floor")
    scales = [float(s) for s in np.asarray(scales).reshape(-1)]
    same = (transform, rounding) == ("asymmetric", "floor") or (
        transform in ("half_pixel", "pytorch_half_pixel") and rounding.startswith("round")
    )  # both read source floor(dst / scale) when the scale is a whole number
    if (a.get("mode", "nearest") != "nearest" or scales[:2] != [1.0, 1.0] or not same
            or any(s != int(s) or s < 1 for s in scales[2:])):  # fmt: skip
        imp.fail(node, f"{a.get('mode', 'nearest')} resize by {scales} ({transform}, {rounding}); "
                       "cnnc's UPSAMPLE is nearest by whole factors")  # fmt: skip
    imp.add(node, "UPSAMPLE", [_pair(int(s) for s in scales[2:])], [imp.input_of(node)])


def _resize_bilinear(imp: _Importer, node, a: dict, in_shape) -> None:
    """Bilinear by whole factors, or to the size of the tensor a Shape read; and the nearest
    resize to another tensor's size."""
    import numpy as np

    transform = a.get("coordinate_transformation_mode", "half_pixel")
    mode = "bilinear" if a.get("mode") == "linear" else "nearest"
    corners = transform == "align_corners"
    wanted = {"bilinear": ("half_pixel", "pytorch_half_pixel", "align_corners"),
              "nearest": ("asymmetric",)}[mode]  # fmt: skip
    if transform not in wanted or (mode == "nearest" and a.get("nearest_mode") != "floor"):
        imp.fail(node, f"{a.get('mode')} resize with {transform} coordinates has no cnnc form")
    args = [mode] if mode == "bilinear" else []
    args += ["align_corners"] if corners else []
    if len(node.input) > 3 and node.input[3] in imp.sizes:
        imp.add(node, "UPSAMPLE", args, [imp.input_of(node), imp.sizes[node.input[3]]])
        return
    scales = imp.g.constants.get(node.input[2]) if len(node.input) > 2 else None
    if scales is None or np.size(scales) == 0:
        out = imp.g.shapes.get(node.output[0], ())
        scales = [o / i for o, i in zip(out, in_shape, strict=True)] if out else []
    scales = [float(v) for v in np.asarray(scales).reshape(-1)]
    if len(scales) != 4 or scales[:2] != [1.0, 1.0] or any(v != int(v) or v < 1
                                                           for v in scales[2:]):  # fmt: skip
        imp.fail(node, f"bilinear resize by {scales}; cnnc's is by whole factors or to the "
                       "size of another tensor")  # fmt: skip
    imp.add(node, "UPSAMPLE", [*args, _pair(int(v) for v in scales[2:])], [imp.input_of(node)])


def lrn(imp: _Importer, node) -> None:
    a = _attrs(node)
    if a["size"] % 2 == 0:
        imp.fail(node, "an even LRN size centres its window differently from cnnc's")
    args = [str(a["size"])]
    for name, key, default in (("alpha", "alpha", 1e-4), ("beta", "beta", 0.75), ("k", "bias", 1)):
        value = float(a.get(key, default))
        args += [f"{name}={value:g}"] if value != default else []
    imp.add(node, "LRN", args, [imp.input_of(node)])


def dropout(imp: _Importer, node) -> None:
    ratio = _attrs(node).get("ratio")
    if ratio is None and len(node.input) > 1 and node.input[1]:
        ratio = float(imp.g.constant(node, 1, "ratio"))
    ratio = 0.5 if ratio is None else float(ratio)
    imp.add(node, "DROPOUT", [f"{ratio:g}"], [imp.input_of(node)])


def _unary(kind: str, **options):
    """A one-to-one activation; `options` maps a cnnc argument to (ONNX attribute, default)."""

    def read(imp: _Importer, node) -> None:
        a = _attrs(node)
        args = [_text(float(a.get(attr, default))) for attr, default in options.values()]
        imp.add(node, kind, args, [imp.input_of(node)])

    return read


# ---- the patterns today's exporters write (compiler/onnx_export.py) ------------------------------


def _only_next(imp: _Importer, tensor: str, op: str):
    """The one node reading `tensor`, if it is an `op` and `tensor` is no graph output."""
    follow = imp.g.consumers.get(tensor, [])
    graph_out = any(o.name == tensor for o in imp.g.model.graph.output)
    if len(follow) == 1 and follow[0].op_type == op and not graph_out:
        return follow[0]
    return None


def _claim(imp: _Importer, index: int, *nodes) -> None:
    """Nodes folded into layer `index`: the loop skips them; the last one's output is its."""
    for node in nodes:
        imp.source[node.output[0]] = index
    imp.layers[index].output = nodes[-1].output[0]


def _scalar(imp: _Importer, node, value: float) -> bool:
    """One input of `node` is the constant `value` (to float32 precision)."""
    import numpy as np

    for name in node.input:
        constant = imp.g.constants.get(name)
        if constant is not None and np.size(constant) == 1:
            return abs(float(np.asarray(constant).reshape(())) - value) <= 1e-6 * max(1, abs(value))
    return False


def _other(node, name: str) -> str | None:
    others = [n for n in node.input if n != name]
    return others[0] if len(others) == 1 else None


def _gelu(imp: _Importer, node) -> bool:
    """x/2 (1 + erf(x/sqrt 2)) or x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), from the node
    that first reads x (the Mul by 1/sqrt 2, or the Pow by 3); True if it matched."""
    import math

    x = next((n for n in node.input if n in imp.source), None)
    if x is None:
        return False
    chain = [node]
    if node.op_type == "Pow" and _scalar(imp, node, 3.0):
        cx3 = _only_next(imp, node.output[0], "Mul")
        inner = cx3 and _scalar(imp, cx3, 0.044715) and _only_next(imp, cx3.output[0], "Add")
        scaled = inner and x in inner.input and _only_next(imp, inner.output[0], "Mul")
        ok = scaled and _scalar(imp, scaled, math.sqrt(2 / math.pi))
        curve = ok and _only_next(imp, scaled.output[0], "Tanh")
        chain += [cx3, inner, scaled, curve] if curve else []
        tanh = True
    elif node.op_type == "Mul" and _scalar(imp, node, 1 / math.sqrt(2)):
        curve = _only_next(imp, node.output[0], "Erf")
        chain += [curve] if curve else []
        tanh = False
    else:
        return False
    if not curve:
        return False
    shifted = _only_next(imp, curve.output[0], "Add")
    last = shifted and _scalar(imp, shifted, 1.0) and _only_next(imp, shifted.output[0], "Mul")
    half_name = last and _other(last, shifted.output[0])
    half = next((n for n in imp.g.nodes if half_name and n.output[0] == half_name), None)
    if not (half and half.op_type == "Mul" and x in half.input and _scalar(imp, half, 0.5)):
        return False
    imp.add(node, "GELU", ["tanh"] if tanh else [], [imp.source[x]])
    _claim(imp, len(imp.layers) - 1, *chain, shifted, half, last)
    return True


def sigmoid(imp: _Importer, node) -> None:
    """SIGMOID, or SILU when the only reader multiplies it by its own input."""
    x = node.input[0]
    gate = _only_next(imp, node.output[0], "Mul")
    if gate is not None and sorted(gate.input) == sorted([x, node.output[0]]):
        imp.add(node, "SILU", [], [imp.input_of(node)])
        _claim(imp, len(imp.layers) - 1, node, gate)
        return
    imp.add(node, "SIGMOID", [], [imp.input_of(node)])


def hard_sigmoid(imp: _Importer, node) -> None:
    a = _attrs(node)
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    if abs(alpha - 1 / 6) > 1e-6 or abs(beta - 0.5) > 1e-6:
        imp.fail(node, f"HardSigmoid alpha={alpha:g} beta={beta:g}; cnnc's HSIGMOID is "
                       "PyTorch's (alpha=1/6, beta=0.5)")  # fmt: skip
    imp.add(node, "HSIGMOID", [], [imp.input_of(node)])


def _per_channel_weight(imp: _Importer, node, position: int, what: str):
    import numpy as np

    value = np.asarray(imp.g.constant(node, position, what), np.float32)
    channels = imp.g.shape(node.input[0], node)[1]
    if value.size != channels or (value.ndim > 1 and value.shape[0] != channels):
        imp.fail(node, f"a {what} of shape {value.shape}; cnnc's is one per channel ({channels})")
    return value.reshape(-1).copy()


def prelu(imp: _Importer, node) -> None:
    weight = _per_channel_weight(imp, node, 1, "slope")
    imp.add(node, "PRELU", [], [imp.input_of(node)], weight=weight)


def layer_norm(imp: _Importer, node, source=None) -> None:
    """LN of a flat vector (over its features), or, between the two transposes, of each pixel."""
    import numpy as np

    a = _attrs(node)
    rank = len(imp.g.shape(node.input[0], node))
    axis = int(a.get("axis", -1))
    if axis not in (-1, rank - 1) or (source is None and rank != 2):
        imp.fail(node, f"LayerNormalization over axes {axis}.. of a rank-{rank} tensor; cnnc's LN "
                       "normalises the channels of each pixel")  # fmt: skip
    weights = {"weight": np.asarray(imp.g.constant(node, 1, "scale"), np.float32).reshape(-1)}
    if len(node.input) > 2 and node.input[2]:
        weights["bias"] = np.asarray(imp.g.constant(node, 2, "bias"), np.float32).reshape(-1)
    else:
        weights["bias"] = np.zeros_like(weights["weight"])
    eps = float(a.get("epsilon", 1e-5))
    args = [f"eps={eps:g}"] if abs(eps - 1e-5) > 1e-12 else []
    inputs = [imp.input_of(node) if source is None else source]
    imp.add(node, "LN", args, inputs, **weights)


def transpose(imp: _Importer, node) -> None:
    """Channels-last, LayerNormalization, channels-first again: LN over each pixel's channels."""
    perm = list(_attrs(node).get("perm", []))
    norm = _only_next(imp, node.output[0], "LayerNormalization")
    back = norm and _only_next(imp, norm.output[0], "Transpose")
    if perm == [0, 2, 3, 1] and back and list(_attrs(back).get("perm", [])) == [0, 3, 1, 2]:
        layer_norm(imp, norm, source=imp.input_of(node))
        _claim(imp, len(imp.layers) - 1, node, norm, back)
        return
    imp.fail(node, f"a transpose {perm} other than around a LayerNormalization (LN) or inside a "
                   "channel shuffle")  # fmt: skip


def reshape(imp: _Importer, node) -> None:
    """A channel shuffle (Reshape to (N, g, C/g, ...), swap the two group axes, Reshape back),
    else a flatten."""
    shape = imp.g.shape(node.input[0], node)
    grouped = imp.g.shapes.get(node.output[0])
    swap = _only_next(imp, node.output[0], "Transpose")
    back = swap and _only_next(imp, swap.output[0], "Reshape")
    if back and grouped and len(grouped) == len(shape) + 1:
        perm = list(_attrs(swap).get("perm", []))
        groups, per_group = grouped[1], grouped[2]
        if (
            perm == [0, 2, 1, *range(3, len(grouped))]
            and groups * per_group == shape[1]
            and tuple(grouped[3:]) == tuple(shape[2:])
            and tuple(imp.g.shapes.get(back.output[0], ())[1:]) == tuple(shape[1:])
        ):
            imp.add(node, "SHUFFLE", [str(groups)], [imp.input_of(node)])
            _claim(imp, len(imp.layers) - 1, node, swap, back)
            return
    flatten(imp, node)


def slice_(imp: _Importer, node) -> None:
    import numpy as np

    shape = imp.g.shape(node.input[0], node)
    starts, ends = (np.asarray(imp.g.constant(node, i, w)).reshape(-1) for i, w in
                    ((1, "starts"), (2, "ends")))  # fmt: skip
    axes = np.asarray(imp.g.constant(node, 3, "axes")).reshape(-1) if len(node.input) > 3 else [0]
    steps = np.asarray(imp.g.constant(node, 4, "steps")).reshape(-1) if len(node.input) > 4 else [1]
    axes = [int(a) + len(shape) if int(a) < 0 else int(a) for a in axes]
    if axes != [1] or [int(s) for s in steps] != [1]:
        imp.fail(node, f"a slice along axes {axes} with steps {list(steps)}; cnnc's SLICE takes "
                       "a run of channels")  # fmt: skip
    c = shape[1]
    start, stop = (int(v) + c if int(v) < 0 else int(v) for v in (starts[0], ends[0]))
    start, stop = max(0, min(start, c)), max(0, min(stop, c))
    args = [f"from={start}"] if start else []
    args += [f"to={stop}"] if stop != c else []
    imp.add(node, "SLICE", args, [imp.input_of(node)])


def unsqueeze(imp: _Importer, node) -> None:
    """A flat gate seen as (N, C, 1, 1) for a Mul: cnnc's MUL takes the flat gate itself."""
    import numpy as np

    axes = [int(a) for a in np.asarray(imp.g.constant(node, 1, "axes")).reshape(-1)]
    follow = imp.g.consumers.get(node.output[0], [])
    rank = len(imp.g.shape(node.input[0], node))
    if rank == 2 and axes == [2, 3] and follow and all(n.op_type == "Mul" for n in follow):
        imp.alias(node)
        return
    imp.fail(node, "an unsqueeze other than of a flat gate for a Mul")


def shape_of(imp: _Importer, node) -> None:
    """The height and width of a tensor, read by a Resize to that size: UPSAMPLE(y, x)."""
    a = _attrs(node)
    follow = imp.g.consumers.get(node.output[0], [])
    if (a.get("start") == 2 and a.get("end") is None and follow
            and all(n.op_type == "Resize" and list(n.input[3:4]) == [node.output[0]]
                    for n in follow)):  # fmt: skip
        imp.sizes[node.output[0]] = imp.input_of(node)
        return
    imp.fail(node, "shape arithmetic other than a Resize to another tensor's height and width")


IMPORTERS = {
    "Conv": conv,
    "ConvTranspose": conv,
    "MaxPool": pool,
    "AveragePool": pool,
    "GlobalMaxPool": pool,
    "GlobalAveragePool": pool,
    "Gemm": gemm,
    "MatMul": matmul,
    "BatchNormalization": batchnorm,
    "Relu": _unary("RELU"),
    "Clip": clip,
    "LeakyRelu": _unary("LEAKYRELU", slope=("alpha", 0.01)),
    "Elu": _unary("ELU", alpha=("alpha", 1.0)),
    "Tanh": _unary("TANH"),
    "Sigmoid": sigmoid,
    "HardSwish": _unary("HSWISH"),
    "HardSigmoid": hard_sigmoid,
    "Mish": _unary("MISH"),
    "PRelu": prelu,
    "LayerNormalization": layer_norm,
    "Transpose": transpose,
    "Slice": slice_,
    "Unsqueeze": unsqueeze,
    "Shape": shape_of,
    "Pow": lambda imp, node: (
        _gelu(imp, node) or imp.fail(node, "a power other than inside a GELU (its tanh form)")
    ),
    "Softmax": softmax,
    "LRN": lrn,
    "Dropout": dropout,
    "Flatten": flatten,
    "Reshape": reshape,
    "Resize": resize,
    "Upsample": resize,
    "Add": add_or_mul,
    "Sum": add_or_mul,
    "Mul": add_or_mul,
    "Concat": lambda imp, node: (
        imp.add(node, "CONCAT", [], [imp.input_of(node, i) for i in range(len(node.input))])
        if _attrs(node).get("axis") == 1
        else imp.fail(node, "concatenation along an axis other than the channels")
    ),
    "Identity": lambda imp, node: imp.alias(node),
}


def import_model(model, path: str = "model.onnx", name: str | None = None) -> Imported:
    graph = Graph(model, path)
    importer = _Importer(graph)
    for node in graph.nodes:
        if node.output and node.output[0] in importer.source:
            continue  # the Mul of a POOL sum, already taken in
        read = IMPORTERS.get(node.op_type)
        if read is None or node.domain not in ("", "ai.onnx"):
            known = ", ".join(sorted(IMPORTERS))
            importer.fail(node, f"cnnc has no layer for this operator (it imports {known})")
        read(importer, node)
    names = [o.name for o in graph.model.graph.output]
    computed = [n for n in names if importer.source.get(n, -1) >= 0]
    if not names or computed != names or len({importer.source[n] for n in names}) < len(names):
        listed = ", ".join(names) or "none"
        raise ImportError_(f"{path}: each output of a cnnc network is a distinct tensor computed "
                           f"by a layer; this model's outputs are {listed}")  # fmt: skip
    layers = [layer for layer in importer.layers]
    outputs = [importer.source[n] for n in names]
    shape = graph.shapes[graph.input]
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise ImportError_(
            f"{path}: input `{graph.input}` has shape {shape}; cnnc needs "
            "(batch, channels, height, width) with fixed channels and size"
        )
    props = {p.key: p.value for p in model.metadata_props}
    given = name or props.get("cnnc.network") or graph.model.graph.name
    if not given or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", given):
        given = Path(path).stem
    network = identifier(given, set())
    header = f"imported by `cnnc import` from {Path(path).name} ({len(model.graph.node)} nodes)"
    dropped = [i for i, layer in enumerate(layers) if layer.kind == "_DROPPED"]
    for index in dropped:  # a FLATTEN folded into the FC after it reads what it read
        for other in layers:
            other.inputs = [layers[index].inputs[0] if i == index else i for i in other.inputs]
    text, ordered, heads = write_spec(layers, outputs, network, shape[1:], header)
    try:
        checked = check(expand(parse(text, f"{network}.cnn")), verify_expects=False)
    except SpecError as error:
        raise ImportError_(
            f"{path}: the imported spec does not check:\n{error.render(text)}"
        ) from None
    weights = {}
    for layer, checked_layer in zip(ordered, checked.layers[1:], strict=True):
        assert layer.kind == checked_layer.node.kind, (layer.kind, checked_layer.node.kind)
        for role, value in layer.weights.items():
            expected = {**checked_layer.params, **checked_layer.buffers}[role]
            weights[f"{checked_layer.node.name}.{role}"] = value.reshape(expected).astype(
                "float32", copy=False
            )
    for checked_layer in checked.layers[1:]:  # layers whose weights the model computes at run time
        for role in {**checked_layer.params, **checked_layer.buffers}:
            if f"{checked_layer.node.name}.{role}" not in weights:
                raise ImportError_(f"{path}: no value for {checked_layer.node.name}.{role}")
    figures = f"expect params == {checked.params}\nexpect macs == {checked.macs}\n"
    shapes = dict(checked.outputs) if heads else {"output": checked.output}
    for head, layer in shapes.items():
        figures += f"expect {head} == {'x'.join(map(str, layer.shape))}\n"
    text += f"\n{figures}"
    checked = check(expand(parse(text, f"{network}.cnn")))  # the text as written, expects held
    meta = {}
    for key in ("normalization", "classes"):
        if key in props:
            with contextlib.suppress(ValueError):  # not JSON: not ours, left out
                meta[key] = json.loads(props[key])
    return Imported(text, checked, weights, meta)


def import_file(path: str, name: str | None = None) -> Imported:
    import onnx

    try:
        model = onnx.load(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except Exception as error:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise UsageError(f"{path}: not a readable ONNX model ({error})") from None
    return import_model(model, path, name)
