"""The contract between a lowered Plan and the runtime's kernels.

Every kernel, forward and backward, has one signature:

    kernel(A, P, G, S, W, row, frow, n, training, seed)

    A      float32[::1]  activation arena: activations, their gradients, per-sample aux buffers
    P      float32[::1]  parameter arena (a step's weights, then its bias, at row[PARAM])
    G      float32[::1]  parameter-gradient arena, same layout as P; backward *accumulates* into it
    S      float32[::1]  state arena, not batch-scaled (BN running stats and saved batch stats)
    W      float32[::1]  workspace; thread t owns W[t * row[WS] : (t + 1) * row[WS]]
    row    int64[::1]    this step's integers, laid out below
    frow   float64[::1]  this step's float attributes (the kind's `floats`, in order)
    n      int64         batch size of this call (<= the batch the plan was built for)
    training bool        BN uses batch statistics and DROPOUT drops only when true
    seed   int64         dropout seed of this call (counter-based: same seed, same mask)

A kind's own integers follow the header at ATTR, in the order its registry entry declares them
(`ints` in layers.py); kernels read them by name through the offsets generated here, e.g.
`row[int_offsets("CONV").groups]`, `frow[float_offsets("BN").eps]`, never by position.

Arena offsets in a row are *per sample*: a tensor of per-sample size m at offset o occupies
A[o * n : o * n + m * n] as a C-contiguous (n, C, H, W) block. Scaling every offset by n keeps
the plan's non-overlap valid for any batch size, so one plan serves every n up to its maximum.
Backward kernels accumulate (+=) into input gradients; the executor zeroes a gradient before its
first contributor (bit j of row[ZERO] means: zero input j's gradient before this backward).
An input gradient offset of -1 means nobody needs it (the network input): skip computing it.
"""

from collections import namedtuple

from .layers import KIND_INDEX, KINDS  # noqa: F401  (KIND_INDEX: what row[KIND] holds)

KIND = 0  # index of the kind in compiler.layers.KINDS
NIN = 1  # number of inputs
OUT = 2  # output activation offset
DOUT = 3  # output gradient offset, -1 in inference plans
OC, OH, OW = 4, 5, 6  # output shape; flat tensors are (F, 1, 1)
PARAM = 7  # offset of this step's parameters in P and G
STATE = 8  # offset of this step's state in S
AUX = 9  # per-sample aux buffer offset in A (dropout mask), -1 when none
WS = 10  # per-thread workspace size in elements
ZERO = 11  # bitmask of inputs whose gradient the executor zeroes before this backward
ATTR = 12  # first of the kind's own integers, in the order its registry entry declares them
N_ATTR = 16
IN = ATTR + N_ATTR  # input j: IN + IN_STRIDE * j + (IN_OFF, IN_DOFF, IN_C, IN_H, IN_W)
IN_STRIDE = 5
IN_OFF, IN_DOFF, IN_C, IN_H, IN_W = 0, 1, 2, 3, 4
N_FLOAT = 4


def row_width(max_inputs: int) -> int:
    return IN + IN_STRIDE * max_inputs


def _generate() -> tuple[dict, dict]:
    ints, floats = {}, {}
    for kind in KINDS:
        names = [f.name for f in kind.ints]
        if len(names) > N_ATTR or len(kind.floats) > N_FLOAT:
            raise ValueError(f"{kind.name} declares more row attributes than abi.py has room for")
        ints[kind.name] = namedtuple(f"{kind.name}_ints", names)(*range(ATTR, ATTR + len(names)))
        floats[kind.name] = namedtuple(f"{kind.name}_floats", kind.floats)(*range(len(kind.floats)))
    return ints, floats


_INTS, _FLOATS = _generate()


def int_offsets(kind: str):
    """Row offsets of a kind's integers by name: `int_offsets("CONV").stride_h`."""
    return _INTS[kind]


def float_offsets(kind: str):
    """frow indices of a kind's float attributes by name: `float_offsets("BN").eps`."""
    return _FLOATS[kind]
