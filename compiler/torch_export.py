"""Checked spec -> the source of a self-contained PyTorch module file.

The file defines one nn.Module class with one attribute per layer, named as in the spec (a block's
layers live in a submodule named after the call, so `basic2.conv1.weight` is both cnnc's and
torch's name), a `forward` written as the spec's chains, and `from_safetensors` to load weights
that `cnnc export` (or `cnnc import --weights-out`) wrote. It imports torch and nothing of cnnc.

Each kind is one entry in `MODULES`: the constructor call, given the layer and its input shape.
A merge's module takes its branches as arguments (`self.add1(a, b)`); FC flattens a map first.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Callable
from pathlib import Path

from .check import Checked, Layer
from .files import UsageError


def _t(values) -> str:
    values = tuple(values)
    return str(values[0]) if len(set(values)) == 1 else repr(values)


def _conv(layer: Layer, shape) -> str:
    a = layer.attrs
    args = [str(shape[0]), str(layer.shape[0]), _t(a["kernel"])]
    args += [f"stride={_t(a['stride'])}"] if a["stride"] != (1, 1) else []
    symmetric = layer.node.kind == "DECONV" or a["pad"] == a["pad_end"]  # else forward pads
    args += [f"padding={_t(a['pad'])}"] if symmetric and a["pad"] != (0, 0) else []
    if layer.node.kind == "DECONV" and a["outpad"] != (0, 0):
        args.append(f"output_padding={_t(a['outpad'])}")
    args += [f"dilation={_t(a['dilation'])}"] if a["dilation"] != (1, 1) else []
    args += [f"groups={a['groups']}"] if a["groups"] != 1 else []
    args += ["bias=False"] if not a["bias"] else []
    op = "nn.Conv2d" if layer.node.kind == "CONV" else "nn.ConvTranspose2d"
    return f"{op}({', '.join(args)})"


def _pool(layer: Layer, shape) -> str:
    a = layer.attrs
    if a["global"] and a["mode"] != "sum":
        return f"nn.Adaptive{'Max' if a['mode'] == 'max' else 'Avg'}Pool2d(1)"
    if a["adaptive"]:
        return f"nn.Adaptive{'Max' if a['mode'] == 'max' else 'Avg'}Pool2d({_t(a['adaptive_out'])})"
    symmetric = a["pad"] == a["pad_end"]  # else forward pads first (see _input_pad)
    args = [_t(a["kernel"])]
    args += [f"stride={_t(a['stride'])}"] if a["stride"] != a["kernel"] else []
    args += [f"padding={_t(a['pad'])}"] if symmetric and a["pad"] != (0, 0) else []
    if a["mode"] == "max" and a["dilation"] != (1, 1):
        args.append(f"dilation={_t(a['dilation'])}")
    args += ["ceil_mode=True"] if a["ceil"] and not a["global"] else []
    if a["mode"] == "max":
        return f"nn.MaxPool2d({', '.join(args)})"
    if not symmetric and a["mode"] == "avg" and not a["count_pad"]:
        return f"AvgPoolOfReal({', '.join(args)}, sides={_sides(a)!r})"
    args += ["count_include_pad=False"] if symmetric and not a["count_pad"] else []
    args += ["divisor_override=1"] if a["mode"] == "sum" else []
    return f"nn.AvgPool2d({', '.join(args)})"


def _sides(a) -> tuple:
    """F.pad's order: left, right, top, bottom."""
    return (a["pad"][1], a["pad_end"][1], a["pad"][0], a["pad_end"][0])


def _input_pad(layer: Layer) -> str | None:
    """The F.pad that forward applies before a layer whose padding differs after the input
    (torch's modules pad both sides alike); a format string for the input variable."""
    a, kind = layer.attrs, layer.node.kind
    if kind not in ("CONV", "POOL") or a.get("adaptive") or a["pad"] == a["pad_end"]:
        return None
    if kind == "POOL" and a["mode"] == "avg" and not a["count_pad"]:
        return None  # AvgPoolOfReal pads itself, to count the real elements
    value = ", value=-math.inf" if kind == "POOL" and a["mode"] == "max" else ""
    return f"F.pad({{}}, {_sides(a)!r}{value})"


def _bn(layer: Layer, shape) -> str:
    a = layer.attrs
    args = [str(shape[0])]
    args += [f"eps={a['eps']!r}"] if a["eps"] != 1e-5 else []
    args += [f"momentum={a['momentum']!r}"] if a["momentum"] != 0.1 else []
    return f"nn.BatchNorm{'2d' if len(shape) == 3 else '1d'}({', '.join(args)})"


def _fc(layer: Layer, shape) -> str:
    bias = "" if layer.attrs["bias"] else ", bias=False"
    return f"nn.Linear({math.prod(shape)}, {layer.attrs['units']}{bias})"


def _lrn(layer: Layer, shape) -> str:
    a = layer.attrs
    options = f"alpha={a['alpha']!r}, beta={a['beta']!r}, k={a['k']!r}"
    return f"nn.LocalResponseNorm({a['size']}, {options})"


def _upsample(layer: Layer, shape) -> str:
    a = layer.attrs
    if len(layer.node.inputs) == 2:  # UPSAMPLE(y, x): y at the size of x
        return f"ResizeTo(align_corners={a['align_corners']})"
    scale = tuple(float(s) for s in a["scale"])
    if a["mode"] == "nearest":
        return f"nn.Upsample(scale_factor={scale!r}, mode='nearest')"
    corners = a["align_corners"]
    return f"nn.Upsample(scale_factor={scale!r}, mode='bilinear', align_corners={corners})"


MODULES: dict[str, Callable[[Layer, tuple], str]] = {
    "CONV": _conv,
    "DECONV": _conv,
    "POOL": _pool,
    "FC": _fc,
    "FLATTEN": lambda layer, shape: "nn.Flatten()",
    "RELU": lambda layer, shape: "nn.ReLU()",
    "RELU6": lambda layer, shape: "nn.ReLU6()",
    "LEAKYRELU": lambda layer, shape: f"nn.LeakyReLU({layer.attrs['slope']!r})",
    "ELU": lambda layer, shape: f"nn.ELU({layer.attrs['alpha']!r})",
    "TANH": lambda layer, shape: "nn.Tanh()",
    "SIGMOID": lambda layer, shape: "nn.Sigmoid()",
    "SOFTMAX": lambda layer, shape: "nn.Softmax(dim=1)",
    "BN": _bn,
    "DROPOUT": lambda layer, shape: f"nn.Dropout({layer.attrs['rate']!r})",
    "LRN": _lrn,
    "UPSAMPLE": _upsample,
    "SILU": lambda layer, shape: "nn.SiLU()",
    "HSWISH": lambda layer, shape: "nn.Hardswish()",
    "HSIGMOID": lambda layer, shape: "nn.Hardsigmoid()",
    "GELU": lambda layer, shape: (
        "nn.GELU(approximate='tanh')" if layer.attrs["tanh"] else "nn.GELU()"
    ),
    "MISH": lambda layer, shape: "nn.Mish()",
    "PRELU": lambda layer, shape: f"nn.PReLU({shape[0]}, init={layer.attrs['init']!r})",
    "SCALE": lambda layer, shape: f"Scale({shape[0]}, init={layer.attrs['init']!r})",
    "LN": lambda layer, shape: (
        f"ChannelsLayerNorm({shape[0]}"
        + (f", eps={layer.attrs['eps']!r})" if layer.attrs["eps"] != 1e-5 else ")")
    ),
    "SLICE": lambda layer, shape: f"Slice({layer.attrs['from']}, {layer.attrs['to']})",
    "SHUFFLE": lambda layer, shape: f"ChannelShuffle({layer.attrs['groups']})",
    "DROPPATH": lambda layer, shape: f"DropPath({layer.attrs['rate']!r})",
    "ADD": lambda layer, shape: "Add()",
    "CONCAT": lambda layer, shape: "Concat()",
    "MUL": lambda layer, shape: "Mul()",
}
FLATTENS = {"FC"}  # kinds whose torch module wants a flat input: forward flattens a map first

HEADER = '''"""{name}: {params:,} parameters, {macs:,} MACs, input {input} -> output {output}.

Generated by `cnnc export --to pytorch` from {source}; needs only torch (and
safetensors to load weights). Parameter names are the spec's layer names.

    model = {cls}.from_safetensors("{weights}")
    probabilities = model(torch.randn(8, {input_args}))
"""
{imports}
INPUT_SHAPE = {input_shape!r}
NORMALIZATION = {normalization!r}  # per-channel mean and std of the [0, 1] training pixels
CLASSES = {classes!r}
'''

CLASSES_SOURCE = {
    "Add": '''
class Add(nn.Module):
    """The elementwise sum of its branches."""

    def forward(self, *branches):
        total = branches[0]
        for branch in branches[1:]:
            total = total + branch
        return total
''',
    "Concat": '''
class Concat(nn.Module):
    """Its branches joined along the channels."""

    def forward(self, *branches):
        return torch.cat(branches, dim=1)
''',
    "Mul": '''
class Mul(nn.Module):
    """a * b; a flat (N, C) gate is seen as (N, C, 1, 1) beside a feature map."""

    def forward(self, a, b):
        if a.dim() != b.dim():
            a, b = (t.reshape(*t.shape, 1, 1) if t.dim() == 2 else t for t in (a, b))
        return a * b
''',
    "Scale": '''
class Scale(nn.Module):
    """One learned factor per channel (ConvNeXt's layer scale)."""

    def __init__(self, channels, init=1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x):
        return x * self.weight.reshape(-1, *[1] * (x.dim() - 2))
''',
    "ChannelsLayerNorm": '''
class ChannelsLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of (N, C, H, W) (ConvNeXt's channels-first
    form); over the features of (N, F)."""

    def forward(self, x):
        if x.dim() == 2:
            return super().forward(x)
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
''',
    "Slice": '''
class Slice(nn.Module):
    """Channels [start, stop)."""

    def __init__(self, start, stop):
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x):
        return x[:, self.start : self.stop]
''',
    "ChannelShuffle": '''
class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle, written out so that it takes (N, C) too."""

    def __init__(self, groups):
        super().__init__()
        self.groups = groups

    def forward(self, x):
        n, c, *rest = x.shape
        grouped = x.reshape(n, self.groups, c // self.groups, *rest)
        return grouped.transpose(1, 2).reshape(x.shape)
''',
    "DropPath": '''
class DropPath(nn.Module):
    """Stochastic depth (torchvision's StochasticDepth(p, "row")): while training, drops each
    sample's branch with probability p. `keep` (N,), if set, replaces the random draw."""

    def __init__(self, p):
        super().__init__()
        self.p, self.keep = p, None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = self.keep
        if keep is None:
            keep = torch.empty(x.shape[0], device=x.device).bernoulli_(1 - self.p)
        scale = keep.to(x.dtype) / (1 - self.p)
        return x * scale.reshape(-1, *[1] * (x.dim() - 1))
''',
    "ResizeTo": '''
class ResizeTo(nn.Module):
    """y resized (bilinear) to the height and width of x."""

    def __init__(self, align_corners=False):
        super().__init__()
        self.align_corners = align_corners

    def forward(self, y, x):
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear",
                             align_corners=self.align_corners)
''',
    "AvgPoolOfReal": '''
class AvgPoolOfReal(nn.Module):
    """Average pooling over the real elements of windows padded by `sides` (left, right, top,
    bottom), which torch's AvgPool2d cannot pad unevenly."""

    def __init__(self, kernel_size, stride=None, ceil_mode=False, sides=(0, 0, 0, 0)):
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size, stride, ceil_mode=ceil_mode)
        self.sides = sides

    def forward(self, x):
        ones = torch.ones_like(x[:1, :1])
        return self.pool(F.pad(x, self.sides)) / self.pool(F.pad(ones, self.sides))
''',
}


LOADER = '''
    @classmethod
    def from_safetensors(cls, path):
        """The module with the weights in `path` (keys with cnnc's `param/` and `buffer/`
        prefixes, or plain state_dict keys)."""
        from safetensors.torch import load_file

        tensors = {{}}
        for key, value in load_file(path).items():
            tensors[key.split("/", 1)[1] if key.startswith(("param/", "buffer/")) else key] = value
        model = cls()
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise ValueError(f"{{path}}: missing {{missing}}, unexpected {{unexpected}}")
        return model
'''


def class_name(network: str) -> str:
    name = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", network))
    return name if name and name[0].isalpha() else f"Net{name}"


def _variables(checked: Checked) -> list[str]:
    """The forward's variable of each tensor: `x` along a chain, the spec's name where the graph
    branches (`basic1.y` -> basic1_y), else the layer's name."""
    layers = checked.layers
    readers: dict[int, list[int]] = {i: [] for i in range(len(layers))}
    for layer in layers[1:]:
        for source in layer.node.inputs:
            readers[source].append(layer.node.index)
    spec_names = {}
    for name, index in checked.graph.tensors.items():
        spec_names.setdefault(index, name)
    names, taken = [], {"x", "self", "torch", "nn", "F", "math", "heads"}
    last = len(layers) - 1
    heads = {index for _, index in checked.graph.outputs} | {checked.graph.output}
    for index, layer in enumerate(layers):
        chained = readers[index] == [index + 1] and len(layers[index + 1].node.inputs) == 1
        if (chained and index not in heads) or (index == last and index in heads):
            names.append("x")
            continue
        name = re.sub(r"\W", "_", spec_names.get(index, layer.node.name))
        name = "inputs" if index == 0 else name
        base, n = name, 1
        while name in taken or keyword.iskeyword(name):
            n += 1
            name = f"{base}_{n}"
        taken.add(name)
        names.append(name)
    return names


def _heads(checked: Checked) -> list[tuple[str, int]]:
    """The spec's heads when it has several (`output a, b`), else []."""
    return list(checked.graph.outputs) if len(checked.graph.outputs) > 1 else []


def module_source(checked: Checked, weights_file: str = "weights.safetensors", meta=None) -> str:
    """The Python source of the module file."""
    meta = meta or {}
    cls = class_name(checked.graph.name)
    shape_of = [layer.shape for layer in checked.layers]
    heads = _heads(checked)
    init = [
        f"class {cls}(nn.Module):",
        f'    """The spec `{checked.graph.name}`: one attribute per layer, as named there."""',
        "",
        "    def __init__(self):",
        "        super().__init__()",
    ]
    if heads:
        loss_head = next(name for name, index in heads if index == checked.graph.output)
        names = ", ".join(name for name, _ in heads)
        init.append(f"        self.output = {loss_head!r}  # the head forward returns, one of "
                    f"{names}; None: all of them")  # fmt: skip
    containers = set()
    layer_names = {layer.node.name for layer in checked.layers[1:]}
    for layer in checked.layers[1:]:
        parts = layer.node.name.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if prefix in layer_names:  # one torch attribute cannot be a layer and a container
                raise UsageError(
                    f"{prefix}: the name of a layer and of a block call's submodule (as in "
                    f"`{layer.node.name}`); PyTorch needs them apart: rename the block"
                )
    for layer in checked.layers[1:]:
        parts = layer.node.name.split(".")
        for depth in range(1, len(parts)):
            prefix = ".".join(parts[:depth])
            if prefix not in containers:
                containers.add(prefix)
                init.append(f"        self.{prefix} = nn.Module()  # block call `{prefix}`")
        build = MODULES.get(layer.node.kind)
        if build is None:
            raise UsageError(f"{layer.node.name}: cnnc has no PyTorch export for "
                             f"{layer.node.kind} yet")  # fmt: skip
        module = build(layer, shape_of[layer.node.inputs[0]])
        init.append(f"        self.{layer.node.name} = {module}")
    variables = _variables(checked)
    forward = ["", "    def forward(self, x):"]
    if variables[0] != "x":
        forward.append(f"        {variables[0]} = x")
    for layer in checked.layers[1:]:
        args = [variables[i] for i in layer.node.inputs]
        if layer.node.kind in FLATTENS and len(shape_of[layer.node.inputs[0]]) != 1:
            args = [f"{args[0]}.flatten(1)"]
        pad = _input_pad(layer)
        if pad is not None:
            args = [pad.format(args[0])]
        forward.append(f"        {variables[layer.node.index]} = self.{layer.node.name}"
                       f"({', '.join(args)})")  # fmt: skip
    if heads:
        named = ", ".join(f"{name!r}: {variables[index]}" for name, index in heads)
        forward.append(f"        heads = {{{named}}}")
        forward.append("        return tuple(heads.values()) if self.output is None "
                       "else heads[self.output]")  # fmt: skip
    else:
        forward.append(f"        return {variables[checked.graph.output]}")
    body = "\n".join(init + forward)
    used = [name for name in CLASSES_SOURCE if re.search(rf"= {name}\(", body)]
    imports = ["import math"] if "math." in body else []
    imports += ["", "import torch"] if imports else ["import torch"]
    imports += ["import torch.nn.functional as F"] if "F." in body or "ResizeTo" in used or (
        "AvgPoolOfReal" in used) else []  # fmt: skip
    imports.append("from torch import nn")
    header = HEADER.format(
        name=checked.graph.name,
        params=checked.params,
        macs=checked.macs,
        input="x".join(map(str, checked.graph.input_shape)),
        output="x".join(map(str, checked.output.shape)),
        source=Path(checked.graph.path).name,
        cls=cls,
        weights=weights_file,
        input_args=", ".join(map(str, checked.graph.input_shape)),
        imports="\n" + "\n".join(imports) + "\n",
        input_shape=tuple(checked.graph.input_shape),
        normalization=meta.get("normalization"),
        classes=list(meta.get("classes") or []),
    )
    parts = [header.rstrip(), *(CLASSES_SOURCE[name].strip() for name in used), body]
    return ("\n\n\n".join(parts) + "\n" + LOADER.format()).rstrip() + "\n"


def module_class(checked: Checked):
    """The module class itself, from the same source (for tests and the benchmark)."""
    namespace: dict = {"__name__": f"cnnc_export_{checked.graph.name}"}
    exec(compile(module_source(checked), f"<{checked.graph.name}.py>", "exec"), namespace)  # noqa: S102
    return namespace[class_name(checked.graph.name)]
