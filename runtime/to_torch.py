"""Build the PyTorch equivalent of a checked spec, optionally with a Network's weights.

Used as the second oracle in tests and as the baseline in the benchmark; torch is imported only
here, and only when called.
"""

from __future__ import annotations

from cnnc.compiler.check import Checked


def _module(layer, in_shapes):
    import torch
    from torch import nn

    kind, attrs = layer.node.kind, layer.attrs
    c_in = in_shapes[0][0]
    if kind == "CONV":
        return nn.Conv2d(
            c_in,
            layer.shape[0],
            attrs["kernel"],
            attrs["stride"],
            attrs["pad"],
            attrs["dilation"],
            attrs["groups"],
            attrs["bias"],
        )
    if kind == "DECONV":
        return nn.ConvTranspose2d(
            c_in,
            layer.shape[0],
            attrs["kernel"],
            attrs["stride"],
            attrs["pad"],
            attrs["outpad"],
            attrs["groups"],
            attrs["bias"],
            attrs["dilation"],
        )
    if kind == "POOL":
        kernel, stride, pad = attrs["kernel"], attrs["stride"], attrs["pad"]
        ceil = attrs["ceil"] and not attrs["global"]
        if attrs["mode"] == "max":
            return nn.MaxPool2d(kernel, stride, pad, ceil_mode=ceil)
        return nn.AvgPool2d(
            kernel,
            stride,
            pad,
            ceil_mode=ceil,
            count_include_pad=attrs["count_pad"],
            divisor_override=1 if attrs["mode"] == "sum" else None,
        )
    if kind == "FC":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(int(torch.tensor(in_shapes[0]).prod()), attrs["units"], attrs["bias"]),
        )
    if kind == "BN":
        norm = nn.BatchNorm2d if len(in_shapes[0]) == 3 else nn.BatchNorm1d
        return norm(c_in, attrs["eps"], attrs["momentum"])
    simple = {
        "FLATTEN": lambda: nn.Flatten(),
        "RELU": lambda: nn.ReLU(),
        "LEAKYRELU": lambda: nn.LeakyReLU(attrs["slope"]),
        "ELU": lambda: nn.ELU(attrs["alpha"]),
        "TANH": lambda: nn.Tanh(),
        "SIGMOID": lambda: nn.Sigmoid(),
        "SOFTMAX": lambda: nn.Softmax(dim=1),
        "DROPOUT": lambda: nn.Dropout(attrs["rate"]),
        "LRN": lambda: nn.LocalResponseNorm(
            attrs["size"], attrs["alpha"], attrs["beta"], attrs["k"]
        ),
        "UPSAMPLE": lambda: nn.Upsample(
            scale_factor=tuple(float(s) for s in attrs["scale"]), mode="nearest"
        ),
    }
    return simple[kind]() if kind in simple else None  # ADD and CONCAT are done in forward


def _weighted(module):
    """The submodule that owns weight/bias (a Linear inside its Flatten-Linear pair)."""
    from torch import nn

    return module[1] if isinstance(module, nn.Sequential) else module


def build(checked: Checked, network=None):
    """A torch.nn.Module computing the same function; weights copied from `network` if given."""
    import torch
    from torch import nn

    class SpecModule(nn.Module):
        def __init__(self):
            super().__init__()
            self.nodes = [(layer.node.kind, layer.node.inputs) for layer in checked.layers]
            self.output = checked.graph.output
            self.layers = nn.ModuleDict()
            for layer in checked.layers[1:]:
                module = _module(layer, [checked.layers[i].shape for i in layer.node.inputs])
                if module is not None:
                    self.layers[layer.node.name.replace(".", "__")] = module
            self.names = [layer.node.name.replace(".", "__") for layer in checked.layers]

        def forward(self, x):
            values = [x]
            for index in range(1, len(self.nodes)):
                kind, inputs = self.nodes[index]
                args = [values[i] for i in inputs]
                if kind == "ADD":
                    result = args[0]
                    for other in args[1:]:
                        result = result + other
                elif kind == "CONCAT":
                    result = torch.cat(args, dim=1)
                else:
                    result = self.layers[self.names[index]](args[0])
                values.append(result)
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
