"""Kernel table: layer kind -> (row forward, row backward), and the tuples the executor unrolls.

The kinds and their order are the compiler registry's (compiler.layers.KINDS): row[abi.KIND] is
a kind's index there, and FORWARD/BACKWARD follow that order. A kind missing here, or one the
registry does not know, stops the import with its name.
"""

from cnnc.compiler.layers import KINDS

from .kernels import activations as act
from .kernels import conv, fc, misc, norm, pool

KERNELS = {
    "CONV": conv.CONV,
    "DECONV": conv.DECONV,
    "POOL": pool.POOL,
    "FC": fc.FC,
    "FLATTEN": misc.FLATTEN,
    "RELU": act.RELU,
    "LEAKYRELU": act.LEAKYRELU,
    "ELU": act.ELU,
    "TANH": act.TANH,
    "SIGMOID": act.SIGMOID,
    "SOFTMAX": act.SOFTMAX,
    "BN": norm.BN,
    "DROPOUT": misc.DROPOUT,
    "LRN": norm.LRN,
    "UPSAMPLE": misc.UPSAMPLE,
    "ADD": misc.ADD,
    "CONCAT": misc.CONCAT,
}

_missing = [kind.name for kind in KINDS if kind.name not in KERNELS]
_unknown = sorted(set(KERNELS) - {kind.name for kind in KINDS})
if _missing or _unknown:
    raise ImportError(
        f"kernel table out of step with the registry: missing {_missing}, unknown {_unknown}"
    )

KIND_ORDER = tuple(kind.name for kind in KINDS)
FORWARD = tuple(KERNELS[kind.name][0] for kind in KINDS)
BACKWARD = tuple(KERNELS[kind.name][1] for kind in KINDS)
