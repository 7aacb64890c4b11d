"""Kernel table: layer kind -> (row forward, row backward), and the tuples the executor unrolls.

Nothing here is listed by hand: each registry entry (compiler.layers.KINDS) names the kernels
module that defines `NAME = (row_forward, row_backward)` for it, and row[abi.KIND] is the kind's
index in the registry, which FORWARD/BACKWARD follow. A kind whose module lacks its pair stops
the import with both names.
"""

from importlib import import_module

from cnnc.compiler.layers import KINDS


def _pair(kind):
    module = import_module(f"{__package__}.kernels.{kind.kernels}")
    pair = getattr(module, kind.name, None)
    if not (isinstance(pair, tuple) and len(pair) == 2):
        raise ImportError(
            f"{kind.name}: runtime/kernels/{kind.kernels}.py defines no "
            f"{kind.name} = (row_forward, row_backward)"
        )
    return pair


KERNELS = {kind.name: _pair(kind) for kind in KINDS}
KIND_ORDER = tuple(KERNELS)
FORWARD = tuple(pair[0] for pair in KERNELS.values())
BACKWARD = tuple(pair[1] for pair in KERNELS.values())
