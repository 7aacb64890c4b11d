"""Kernel table: layer kind -> (row forward, row backward), and the tuples the executor unrolls.

The kinds and their order are the compiler registry's (compiler.layers.KINDS): row[abi.KIND] is
a kind's index there, and FORWARD/BACKWARD follow that order. A kind missing here, or one the
registry does not know, stops the import with its name.
"""

from cnnc.compiler.layers import KINDS

from .kernels import activations as act
from .kernels import conv, fc, misc, norm, pool

KERNELS = {
    "CONV": (conv.conv_forward, conv.conv_backward),
    "DECONV": (conv.deconv_forward, conv.deconv_backward),
    "POOL": (pool.pool_forward, pool.pool_backward),
    "FC": (fc.fc_forward, fc.fc_backward),
    "FLATTEN": (misc.flatten_forward, misc.flatten_backward),
    "RELU": act.RELU,
    "LEAKYRELU": act.LEAKYRELU,
    "ELU": act.ELU,
    "TANH": act.TANH,
    "SIGMOID": act.SIGMOID,
    "SOFTMAX": act.SOFTMAX,
    "BN": (norm.bn_forward, norm.bn_backward),
    "DROPOUT": (misc.dropout_forward, misc.dropout_backward),
    "LRN": (norm.lrn_forward, norm.lrn_backward),
    "UPSAMPLE": (misc.upsample_forward, misc.upsample_backward),
    "ADD": (misc.add_forward, misc.add_backward),
    "CONCAT": (misc.concat_forward, misc.concat_backward),
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
