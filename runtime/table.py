"""Kernel table: DSL keyword -> (forward, backward), and the tuples the executor unrolls over.

KIND_ORDER is the compiler's kind index order (compiler.layers.KINDS must agree; a test checks).
Kernels of one family are one compiled function that switches on row[abi.KIND], so several
kinds map to the same (forward, backward) pair.
"""

from .kernels import activations as act
from .kernels import conv, fc, misc, norm, pool
from .kernels.kinds import KIND_ORDER

KERNELS = {
    "CONV": (conv.conv_forward, conv.conv_backward),
    "DECONV": (conv.deconv_forward, conv.deconv_backward),
    "POOL": (pool.pool_forward, pool.pool_backward),
    "FC": (fc.fc_forward, fc.fc_backward),
    "FLATTEN": (misc.flatten_forward, misc.flatten_backward),
    "RELU": (act.relu_forward, act.relu_backward),
    "LEAKYRELU": (act.leakyrelu_forward, act.leakyrelu_backward),
    "ELU": (act.elu_forward, act.elu_backward),
    "TANH": (act.tanh_forward, act.tanh_backward),
    "SIGMOID": (act.sigmoid_forward, act.sigmoid_backward),
    "SOFTMAX": (act.softmax_forward, act.softmax_backward),
    "BN": (norm.bn_forward, norm.bn_backward),
    "DROPOUT": (misc.dropout_forward, misc.dropout_backward),
    "LRN": (norm.lrn_forward, norm.lrn_backward),
    "UPSAMPLE": (misc.upsample_forward, misc.upsample_backward),
    "ADD": (misc.add_forward, misc.add_backward),
    "CONCAT": (misc.concat_forward, misc.concat_backward),
}
assert set(KERNELS) == set(KIND_ORDER)

FORWARD = tuple(KERNELS[k][0] for k in KIND_ORDER)
BACKWARD = tuple(KERNELS[k][1] for k in KIND_ORDER)
