"""A spec's weights as named numpy arrays, without compiling it: PyTorch's default initialisation
(the same numbers `runtime.network.Network.initialize` draws for a seed) and checks of a weights
dict against the spec's names and shapes. Used by the exporters; never imports numba."""

from __future__ import annotations

import math

from .check import Checked
from .files import UsageError
from .lower import lower


def initial(checked: Checked, seed: int = 0, plan=None) -> dict:
    """PyTorch's default initialisation, by name: weights and biases uniform in +-1/sqrt(fan_in),
    one-dimensional weights (BN scale) one and their biases zero, running means zero and
    variances one, and the constants a kind declares (`init` in its registry entry: PRELU's
    0.25). Drawn in the plan's parameter order, so a seed gives the same numbers everywhere."""
    import numpy as np

    from .layers import REGISTRY

    plan = plan or lower(checked, training=False)
    constants = {
        f"{layer.node.name}.{role}": value
        for layer in checked.layers[1:]
        for role, value in REGISTRY[layer.node.kind].init(layer.attrs).items()
    }
    rng = np.random.default_rng(seed)
    fan_in, result = {}, {}
    for entry in plan.params:
        layer, _, role = entry.name.rpartition(".")
        if entry.name in constants:
            result[entry.name] = np.full(entry.shape, constants[entry.name], np.float32)
            continue
        if role == "weight":
            fan_in[layer] = math.prod(entry.shape[1:]) if len(entry.shape) > 1 else 0
        if fan_in.get(layer, 0) == 0:
            result[entry.name] = np.full(entry.shape, 1.0 if role == "weight" else 0.0, np.float32)
        else:
            bound = 1.0 / math.sqrt(fan_in[layer])
            result[entry.name] = rng.uniform(-bound, bound, entry.shape).astype(np.float32)
    for entry in plan.buffers:
        fill = 1.0 if entry.name.endswith("running_var") else 0.0
        result[entry.name] = np.full(entry.shape, fill, np.float32)
    return result


def expected_shapes(checked: Checked) -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer the spec has, by name, in plan order."""
    shapes = {}
    for layer in checked.layers[1:]:
        for role, shape in {**layer.params, **layer.buffers}.items():
            shapes[f"{layer.node.name}.{role}"] = tuple(shape)
    return shapes


def verify(checked: Checked, weights: dict, source: str) -> dict:
    """`weights` if it has exactly the spec's tensors with the spec's shapes; else a UsageError
    naming the first mismatch and where the weights came from."""
    wanted = expected_shapes(checked)
    for name, shape in wanted.items():
        if name not in weights:
            raise UsageError(f"{source}: no tensor `{name}`, which this spec needs")
        if tuple(weights[name].shape) != shape:
            raise UsageError(
                f"{source}: tensor `{name}` has shape {tuple(weights[name].shape)}, but the spec "
                f"gives it {shape}"
            )
    extra = sorted(set(weights) - set(wanted))
    if extra:
        raise UsageError(f"{source}: tensor `{extra[0]}` is not in this spec")
    return {name: weights[name] for name in wanted}
