"""The generic executor: loops over a plan's rows, forward and then backward, in compiled code.

It knows no layer kinds: `literal_unroll` over the table's kernel tuples turns the row's kind
index into a direct call, so one compiled executor serves every plan and a training step is three
calls from Python (forward, the fused loss, backward). Each compiled entry point re-optimises
every kernel it reaches, so there are only these few: `forward`, `backward`, and the per-step
calls used to locate a NaN.
"""

import warnings

from numba import literal_unroll, njit
from numba.core.errors import NumbaExperimentalFeatureWarning

from cnnc.compiler import abi

from .kernels.config import JIT
from .table import BACKWARD, FORWARD

# literal_unroll over the kernel tables types them as first-class functions, which numba flags as
# experimental at every compile; it is exactly what the dispatch needs, so it is silenced here.
warnings.filterwarnings("ignore", "First-class function type", NumbaExperimentalFeatureWarning)


@njit(**JIT)
def forward_step(kind, A, P, G, S, W, row, frow, n, training, seed):
    index = 0
    for kernel in literal_unroll(FORWARD):
        if index == kind:
            kernel(A, P, G, S, W, row, frow, n, training, seed)
        index += 1  # noqa: SIM113 - numba cannot enumerate a literal_unroll


@njit(**JIT)
def backward_step(kind, A, P, G, S, W, row, frow, n, training, seed):
    index = 0
    for kernel in literal_unroll(BACKWARD):
        if index == kind:
            kernel(A, P, G, S, W, row, frow, n, training, seed)
        index += 1  # noqa: SIM113 - numba cannot enumerate a literal_unroll


@njit(**JIT)
def forward(rows, frows, A, P, G, S, W, n, training, seed):
    for s in range(rows.shape[0]):
        forward_step(rows[s, abi.KIND], A, P, G, S, W, rows[s], frows[s], n, training, seed + s)


@njit(**JIT)
def zero_input_grads(A, row, n):
    """Zero the gradients this step is the first to accumulate into (row[ZERO] bits)."""
    for j in range(row[abi.NIN]):
        if row[abi.ZERO] & (1 << j):
            base = abi.IN + abi.IN_STRIDE * j
            size = row[base + abi.IN_C] * row[base + abi.IN_H] * row[base + abi.IN_W] * n
            start = row[base + abi.IN_DOFF] * n
            A[start : start + size] = 0.0


@njit(**JIT)
def backward(rows, frows, A, P, G, S, W, n, training, seed, last):
    """Backward from step `last` down to the first, accumulating into G (zeroed by the caller).
    `training` and `seed` must be those of the forward pass (BN statistics, dropout masks)."""
    for s in range(last, -1, -1):
        zero_input_grads(A, rows[s], n)
        backward_step(rows[s, abi.KIND], A, P, G, S, W, rows[s], frows[s], n, training, seed + s)
