"""The PyTorch twin of a checked spec, optionally with a Network's weights: the module that
`cnnc export --to pytorch` writes (compiler/torch_export.py), built in memory.

Used as the second oracle in tests and as the baseline in the benchmark; torch is imported only
here, and only when called. Parameter and buffer names are cnnc's (`basic2.conv1.weight`).
"""

from __future__ import annotations

from cnnc.compiler.check import Checked


def build(checked: Checked, network=None):
    """A torch.nn.Module computing the same function; weights copied from `network` if given."""
    from cnnc.compiler.torch_export import module_class

    module = module_class(checked)()
    if network is not None:
        copy_weights(network, module)
    return module


def copy_weights(network, module) -> None:
    import torch

    state = module.state_dict()
    with torch.no_grad():
        for name, value in {**network.parameters(), **network.buffers()}.items():
            state[name].copy_(torch.from_numpy(value.copy()).reshape(state[name].shape))


def gradients(module, checked: Checked) -> dict:
    """Parameter gradients of the module under cnnc's names."""
    return {
        name: None if p.grad is None else p.grad.numpy() for name, p in module.named_parameters()
    }
