"""Build the PyTorch equivalent of a checked spec, optionally with a Network's weights.

Used as the second oracle in tests and as the baseline in the benchmark; torch is imported only
here, and only when called.
"""

from __future__ import annotations

import math

from cnnc.compiler.check import Checked
from cnnc.compiler.layers import REGISTRY


def _merges():
    import torch
    from torch import nn

    class Add(nn.Module):
        def forward(self, inputs):
            result = inputs[0]
            for other in inputs[1:]:
                result = result + other
            return result

    class Concat(nn.Module):
        def forward(self, inputs):
            return torch.cat(inputs, dim=1)

    class Mul(nn.Module):
        """a * b; a flat (N, C) gate is seen as (N, C, 1, 1) beside a feature map."""

        def forward(self, inputs):
            a, b = inputs
            if a.dim() != b.dim():
                a, b = (t.reshape(*t.shape, 1, 1) if t.dim() == 2 else t for t in (a, b))
            return a * b

    return {"ADD": Add, "CONCAT": Concat, "MUL": Mul}


def _channel_modules():
    """Torch twins of the per-channel kinds that torch.nn lacks as modules."""
    import torch
    from torch import nn

    class Scale(nn.Module):
        def __init__(self, channels, init):
            super().__init__()
            self.weight = nn.Parameter(torch.full((channels,), float(init)))

        def forward(self, x):  # the (C,) scale broadcast over (N, C, H, W) or (N, C)
            return x * self.weight.reshape(-1, *[1] * (x.dim() - 2))

    class ChannelsLayerNorm(nn.LayerNorm):
        """ConvNeXt's channels-first LayerNorm: over dim 1 of (N, C, H, W); (N, F) as usual."""

        def forward(self, x):
            if x.dim() == 2:
                return super().forward(x)
            return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    class Slice(nn.Module):
        def __init__(self, start, stop):
            super().__init__()
            self.start, self.stop = start, stop

        def forward(self, x):
            return x[:, self.start : self.stop]

    class Shuffle(nn.Module):
        """torch's channel shuffle, written out so that it takes (N, C) too."""

        def __init__(self, groups):
            super().__init__()
            self.groups = groups

        def forward(self, x):
            n, c, *rest = x.shape
            grouped = x.reshape(n, self.groups, c // self.groups, *rest)
            return grouped.transpose(1, 2).reshape(x.shape)

    class DropPath(nn.Module):
        """torchvision's StochasticDepth(p, "row"); `keep` (N,) replaces the random draw when
        set (a test copies cnnc's draw into it)."""

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

    return Scale, ChannelsLayerNorm, Slice, Shuffle, DropPath


def _padded(pad, pad_end, module, value=0.0):
    """`module` after padding top/left by `pad` and bottom/right by `pad_end` (torch's modules
    pad both sides alike); the padded module stays at index 1, where copy_weights looks."""
    from torch import nn

    sides = (pad[1], pad_end[1], pad[0], pad_end[0])  # torch's order: left, right, top, bottom
    return nn.Sequential(nn.ConstantPad2d(sides, value), module)


def _pool(a, ceil):
    """POOL as torch pools: adaptive, dilated max, and pads that differ after the input."""
    import torch
    from torch import nn

    if a["adaptive"]:
        size = a["adaptive_out"]
        return nn.AdaptiveMaxPool2d(size) if a["mode"] == "max" else nn.AdaptiveAvgPool2d(size)
    kernel, stride, pad, pad_end = a["kernel"], a["stride"], a["pad"], a["pad_end"]
    if a["mode"] == "max":
        if pad == pad_end:
            return nn.MaxPool2d(kernel, stride, pad, a["dilation"], ceil_mode=ceil)
        pool = nn.MaxPool2d(kernel, stride, 0, a["dilation"], ceil_mode=ceil)
        return _padded(pad, pad_end, pool, -math.inf)
    divisor = 1 if a["mode"] == "sum" else None
    if pad == pad_end:
        return nn.AvgPool2d(
            kernel, stride, pad, ceil_mode=ceil, count_include_pad=a["count_pad"],
            divisor_override=divisor,
        )  # fmt: skip
    pool = nn.AvgPool2d(kernel, stride, 0, ceil_mode=ceil, divisor_override=divisor)
    if a["count_pad"] or a["mode"] == "sum":
        return _padded(pad, pad_end, pool)

    class RealAverage(nn.Module):  # the sum over the real elements / their count
        def forward(self, x):
            ones = torch.ones_like(x[:1, :1])
            total = _padded(pad, pad_end, nn.AvgPool2d(kernel, stride, 0, ceil_mode=ceil))
            return total(x) / total(ones)

    return RealAverage()


def _upsample(a, shape):
    from torch import nn

    if a["mode"] == "nearest":
        return nn.Upsample(scale_factor=tuple(float(s) for s in a["scale"]), mode="nearest")
    return nn.Upsample(size=tuple(shape[1:]), mode="bilinear", align_corners=a["align_corners"])


def _module(layer, in_shapes):
    """The torch module of one layer; a merge's module takes the list of its inputs."""
    from torch import nn

    a, c_in = layer.attrs, in_shapes[0][0]
    Scale, ChannelsLayerNorm, Slice, Shuffle, DropPath = _channel_modules()
    norm = nn.BatchNorm2d if len(in_shapes[0]) == 3 else nn.BatchNorm1d
    ceil = a.get("ceil") and not a.get("global")
    builders = {
        "CONV": lambda: nn.Conv2d(
            c_in, layer.shape[0], a["kernel"], a["stride"], a["pad"], a["dilation"],
            a["groups"], a["bias"],
        ) if a["pad"] == a["pad_end"] else _padded(a["pad"], a["pad_end"], nn.Conv2d(
            c_in, layer.shape[0], a["kernel"], a["stride"], 0, a["dilation"], a["groups"],
            a["bias"],
        )),
        "DECONV": lambda: nn.ConvTranspose2d(
            c_in, layer.shape[0], a["kernel"], a["stride"], a["pad"], a["outpad"], a["groups"],
            a["bias"], a["dilation"],
        ),
        "POOL": lambda: _pool(a, ceil),
        "FC": lambda: nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(in_shapes[0]), a["units"], a["bias"])
        ),
        "BN": lambda: norm(c_in, a["eps"], a["momentum"]),
        "FLATTEN": lambda: nn.Flatten(),
        "RELU": lambda: nn.ReLU(),
        "RELU6": lambda: nn.ReLU6(),
        "LEAKYRELU": lambda: nn.LeakyReLU(a["slope"]),
        "ELU": lambda: nn.ELU(a["alpha"]),
        "TANH": lambda: nn.Tanh(),
        "SIGMOID": lambda: nn.Sigmoid(),
        "SOFTMAX": lambda: nn.Softmax(dim=1),
        "DROPOUT": lambda: nn.Dropout(a["rate"]),
        "LRN": lambda: nn.LocalResponseNorm(a["size"], a["alpha"], a["beta"], a["k"]),
        "UPSAMPLE": lambda: _upsample(a, layer.shape),
        "SILU": lambda: nn.SiLU(),
        "HSWISH": lambda: nn.Hardswish(),
        "HSIGMOID": lambda: nn.Hardsigmoid(),
        "GELU": lambda: nn.GELU(approximate="tanh" if a["tanh"] else "none"),
        "MISH": lambda: nn.Mish(),
        "PRELU": lambda: nn.PReLU(c_in, a["init"]),
        "SCALE": lambda: Scale(c_in, a["init"]),
        "LN": lambda: ChannelsLayerNorm(c_in, a["eps"]),
        "SLICE": lambda: Slice(a["from"], a["to"]),
        "SHUFFLE": lambda: Shuffle(a["groups"]),
        "DROPPATH": lambda: DropPath(a["rate"]),
        **_merges(),
    }  # fmt: skip
    return builders[layer.node.kind]()


def _weighted(module):
    """The submodule that owns weight/bias (a Linear inside its Flatten-Linear pair)."""
    from torch import nn

    return module[1] if isinstance(module, nn.Sequential) else module


def build(checked: Checked, network=None):
    """A torch.nn.Module computing the same function; weights copied from `network` if given."""
    from torch import nn

    class SpecModule(nn.Module):
        def __init__(self):
            super().__init__()
            self.inputs = [layer.node.inputs for layer in checked.layers]
            self.merges = [REGISTRY[layer.node.kind].merge for layer in checked.layers[1:]]
            self.output = checked.graph.output
            self.layers = nn.ModuleDict()
            for layer in checked.layers[1:]:
                module = _module(layer, [checked.layers[i].shape for i in layer.node.inputs])
                self.layers[layer.node.name.replace(".", "__")] = module
            self.names = [layer.node.name.replace(".", "__") for layer in checked.layers]

        def forward(self, x):
            values = [x]
            for index in range(1, len(self.inputs)):
                args = [values[i] for i in self.inputs[index]]
                module = self.layers[self.names[index]]
                values.append(module(args) if self.merges[index - 1] else module(args[0]))
            return values[self.output]

    module = SpecModule()
    if network is not None:
        copy_weights(network, module)
    return module


def copy_weights(network, module) -> None:
    import torch

    with torch.no_grad():
        for name, value in {**network.parameters(), **network.buffers()}.items():
            layer, _, role = name.rpartition(".")
            target = getattr(_weighted(module.layers[layer.replace(".", "__")]), role)
            target.copy_(torch.from_numpy(value.copy()).reshape(target.shape))


def gradients(module, checked: Checked) -> dict:
    """Parameter gradients of a SpecModule under cnnc's names."""
    result = {}
    for layer in checked.layers[1:]:
        key = layer.node.name.replace(".", "__")
        if key not in module.layers:
            continue
        owner = _weighted(module.layers[key])
        for role in layer.params:
            grad = getattr(owner, role).grad
            result[f"{layer.node.name}.{role}"] = None if grad is None else grad.numpy()
    return result
