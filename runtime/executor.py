"""The generic executor: loops over a plan's rows, forward and then backward, in compiled code.

It knows no layer kinds: `literal_unroll` over a kernel tuple turns the row's kind index into a
direct call, so a training step is three calls from Python (forward, the fused loss, backward).
`for_kinds` compiles one executor per set of kinds, with a do-nothing kernel in the place of every
kind the set lacks: only the kernels a plan uses are compiled (each compiled entry point
re-optimises every kernel it reaches, so compiling all of them for LeNet-5 doubled its cold
start). Each set caches under its own name (see kernels.common.specialise).
"""

import warnings
from functools import cache
from typing import NamedTuple

from numba import literal_unroll, njit
from numba.core.errors import NumbaExperimentalFeatureWarning

from cnnc.compiler import abi
from cnnc.compiler.layers import KINDS

from .kernels.common import specialise
from .kernels.config import JIT
from .table import BACKWARD, FORWARD

# literal_unroll over the kernel tables types them as first-class functions, which numba flags as
# experimental at every compile; it is exactly what the dispatch needs, so it is silenced here.
warnings.filterwarnings("ignore", "First-class function type", NumbaExperimentalFeatureWarning)


@njit(**JIT)
def _absent(A, P, G, S, W, row, frow, n, training, seed):
    """Stands in for the kernels of the kinds a plan does not use."""


def _step(kind, A, P, G, S, W, row, frow, n, training, seed):
    index = 0
    for kernel in literal_unroll(kernels):  # noqa: F821 - bound by specialise
        if index == kind:
            kernel(A, P, G, S, W, row, frow, n, training, seed)
        index += 1  # noqa: SIM113 - numba cannot enumerate a literal_unroll


def _forward(rows, frows, A, P, G, S, W, n, training, seed):
    for s in range(rows.shape[0]):
        forward_step(rows[s, abi.KIND], A, P, G, S, W, rows[s], frows[s], n, training, seed + s)  # noqa: F821


@njit(**JIT)
def zero_input_grads(A, row, n):
    """Zero the gradients this step is the first to accumulate into (row[ZERO] bits)."""
    for j in range(row[abi.NIN]):
        if row[abi.ZERO] & (1 << j):
            base = abi.IN + abi.IN_STRIDE * j
            size = row[base + abi.IN_C] * row[base + abi.IN_H] * row[base + abi.IN_W] * n
            start = row[base + abi.IN_DOFF] * n
            A[start : start + size] = 0.0


def _backward(rows, frows, A, P, G, S, W, n, training, seed, last):
    """Backward from step `last` down to the first, accumulating into G (zeroed by the caller).
    `training` and `seed` must be those of the forward pass (BN statistics, dropout masks)."""
    for s in range(last, -1, -1):
        zero_input_grads(A, rows[s], n)
        backward_step(rows[s, abi.KIND], A, P, G, S, W, rows[s], frows[s], n, training, seed + s)  # noqa: F821


class Executor(NamedTuple):
    forward: object  # (rows, frows, A, P, G, S, W, n, training, seed)
    backward: object  # (rows, frows, A, P, G, S, W, n, training, seed, last)
    forward_step: object  # (kind, A, P, G, S, W, row, frow, n, training, seed)
    backward_step: object


@cache
def for_kinds(kinds: frozenset[str]) -> Executor:
    """The executor of plans whose steps are of these kinds (compiled on first call)."""
    used = [kind.name in kinds for kind in KINDS]
    tag = format(sum(1 << i for i, u in enumerate(used) if u), "x")
    forwards = tuple(f if u else _absent for f, u in zip(FORWARD, used, strict=True))
    backwards = tuple(b if u else _absent for b, u in zip(BACKWARD, used, strict=True))
    forward_step = specialise(_step, f"forward_step_{tag}", kernels=forwards)
    backward_step = specialise(_step, f"backward_step_{tag}", kernels=backwards)
    return Executor(
        specialise(_forward, f"forward_{tag}", forward_step=forward_step),
        specialise(_backward, f"backward_{tag}", backward_step=backward_step),
        forward_step,
        backward_step,
    )


def for_plan(plan) -> Executor:
    return for_kinds(frozenset(step.kind for step in plan.steps))
