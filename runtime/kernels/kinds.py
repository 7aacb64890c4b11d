"""Kind indices, as row[abi.KIND] carries them: the order of compiler.layers.KINDS.

A family's kernels (e.g. the activations) share one compiled forward and one backward that
switch on row[KIND]; every distinct entry point costs a full re-optimisation of its call tree.
"""

KIND_ORDER = (
    "CONV", "DECONV", "POOL", "FC", "FLATTEN", "RELU", "LEAKYRELU", "ELU", "TANH", "SIGMOID",
    "SOFTMAX", "BN", "DROPOUT", "LRN", "UPSAMPLE", "ADD", "CONCAT",
)  # fmt: skip

(
    CONV, DECONV, POOL, FC, FLATTEN, RELU, LEAKYRELU, ELU, TANH, SIGMOID,
    SOFTMAX, BN, DROPOUT, LRN, UPSAMPLE, ADD, CONCAT,
) = range(len(KIND_ORDER))  # fmt: skip
