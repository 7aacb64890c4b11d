"""The generic executor: loops over a plan's rows, forward and then backward, in compiled code.

It knows no layer kinds and links no kernel: every row adapter is compiled on its own for the one
kernel signature (A, P, G, S, W, row, frow, n, training, seed), and the executor calls it through
a table of native entry addresses indexed by the row's kind, so a training step is three calls
from Python (forward, the fused loss, backward). The executor itself is compiled once for every
plan; a plan compiles only the row adapters of the kinds it uses (the others point at a no-op),
and the backward ones only at its first backward pass. (Calling the kernels directly, through a
`literal_unroll` over the kernel table, linked every kernel into the step function and the step
into the loop, and LLVM re-optimised each kernel at every level: two thirds of the cold start.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from cnnc.compiler import abi
from cnnc.compiler.layers import KINDS

from . import compile_pool
from .kernels.config import JIT
from .table import BACKWARD, FORWARD

_F32, _I64 = types.float32[::1], types.int64[::1]
# The row adapters' signature: arenas A, P, G, S, W, the row and float row, n, training, seed.
KERNEL_ARGS = (_F32, _F32, _F32, _F32, _F32, _I64, types.float64[::1], types.int64,
               types.boolean, types.int64)  # fmt: skip


@intrinsic
def _call(typingctx, address, A, P, G, S, W, row, frow, n, training, seed):
    """Call the row adapter whose native entry is at `address` (numba's calling convention, so
    an exception it raises propagates to the caller)."""
    given = (A, P, G, S, W, row, frow, n, training, seed)
    for got, want in zip(given, KERNEL_ARGS, strict=True):
        if isinstance(want, types.Array) and got != want:
            return None  # no typing: numba reports the mismatch

    def codegen(context, builder, signature, args):
        fnty = context.call_conv.get_function_type(types.none, KERNEL_ARGS)
        callee = builder.inttoptr(args[0], fnty.as_pointer())
        actual = [
            context.cast(builder, value, got, want)
            for value, got, want in zip(args[1:], signature.args[1:], KERNEL_ARGS, strict=True)
        ]
        call_conv = context.call_conv
        status, _ = call_conv.call_function(builder, callee, types.none, KERNEL_ARGS, actual)
        with cgutils.if_unlikely(builder, status.is_error):
            context.call_conv.return_status_propagate(builder, status)
        return context.get_dummy_value()

    return types.none(address, *given), codegen


@njit(**JIT)
def _absent(A, P, G, S, W, row, frow, n, training, seed):
    """Stands in for the kernels of the kinds a plan does not use."""


@njit(**JIT)
def _step(table, kind, A, P, G, S, W, row, frow, n, training, seed):
    _call(table[kind], A, P, G, S, W, row, frow, n, training, seed)


@njit(**JIT)
def _forward(table, rows, frows, A, P, G, S, W, n, training, seed):
    for s in range(rows.shape[0]):
        _call(table[rows[s, abi.KIND]], A, P, G, S, W, rows[s], frows[s], n, training, seed + s)


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
def _backward(table, rows, frows, A, P, G, S, W, n, training, seed, last):
    """Backward from step `last` down to the first, accumulating into G (zeroed by the caller).
    `training` and `seed` must be those of the forward pass (BN statistics, dropout masks)."""
    for s in range(last, -1, -1):
        row = rows[s]
        zero_input_grads(A, row, n)
        _call(table[row[abi.KIND]], A, P, G, S, W, row, frows[s], n, training, seed + s)


# Progress of the kernel compilation: (kernels done, kernels in all, "CONV forward", seconds it
# took). A cache hit takes milliseconds; a compile seconds, which is how a caller tells them apart.
Progress = Callable[[int, int, str, float], None]
_progress: list[Progress] = []


def on_compile(progress: Progress | None) -> None:
    """Report every later kernel compilation (or cache load) to `progress` (None: stop)."""
    _progress[:] = [progress] if progress else []


def _entry(kernel) -> int:
    """The native entry address of `kernel` compiled for KERNEL_ARGS (from the cache if there)."""
    kernel.compile(KERNEL_ARGS)
    compiled = kernel.overloads[KERNEL_ARGS]
    return compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)


_entries: dict[object, int] = {}
_TABLES = {"forward": FORWARD, "backward": BACKWARD}


def _compile(directions: tuple[str, ...], used: list[bool]) -> None:
    """Compile (or load) the used kinds' kernels of these directions, reporting each; with a
    cold cache a child process compiles part of them on another core (see compile_pool)."""
    names = [kind.name for kind in KINDS]
    todo = [
        ((direction, i), _TABLES[direction][i])
        for direction in directions
        for i, u in enumerate(used)
        if u and _TABLES[direction][i] not in _entries
    ]
    child, mine = compile_pool.start(todo, KERNEL_ARGS)
    handed = list(child.kernels.items()) if child else []
    done = 0

    def load(kid, kernel, where: str = "", waited: float = 0.0) -> None:
        nonlocal done
        start = time.perf_counter() - waited
        _entries[kernel] = _entry(kernel)
        done += 1
        for report in _progress:
            report(done, len(todo), f"{names[kid[1]]} {kid[0]}{where}", time.perf_counter() - start)

    try:
        for kid, kernel in mine:
            load(kid, kernel)
        if child is not None:
            _warm_loops("backward" in directions)
            for kid, kernel in reversed(handed):  # the child's unstarted ones, from the back
                if not child.take(kid):
                    break
                load(kid, kernel)
            waited = time.perf_counter()
            child.collect()  # the rest now load from the cache
            waited = time.perf_counter() - waited
            for kid, kernel in handed:
                if kid not in child.taken:
                    load(kid, kernel, ", second core", waited)  # the first line shows the wait
                    waited = 0.0
            child = None
    finally:
        if child is not None:  # interrupted, or a kernel failed to compile here
            child.cancel()


def _warm_loops(backward: bool) -> None:
    """Compile the executor's loops now (each called over no rows), not at the first step."""
    table, rows, frows = np.zeros(1, np.int64), np.zeros((0, 1), np.int64), np.zeros((0, 1))
    arena = np.zeros(1, np.float32)
    _forward(table, rows, frows, arena, arena, arena, arena, arena, 1, True, 0)
    if backward:
        _backward(table, rows, frows, arena, arena, arena, arena, arena, 1, True, 0, -1)


def _table(kernels, used: list[bool]) -> np.ndarray:
    """Entry addresses per kind index: the kernel for a used kind, the no-op for the others."""
    absent = _entries.get(_absent) or _entries.setdefault(_absent, _entry(_absent))
    return np.array([_entries[k] if u else absent for k, u in zip(kernels, used, strict=True)],
                    np.int64)  # fmt: skip


class Executor:
    """forward(rows, frows, A, P, G, S, W, n, training, seed); backward(..., last);
    forward_step(kind, A, P, G, S, W, row, frow, n, training, seed); backward_step(...).
    The backward kernels are compiled with the forward ones for a training plan (`backward`),
    else at the first use of backward or backward_step."""

    def __init__(self, used: list[bool], backward: bool = False):
        self._used = used
        _compile(("forward", "backward") if backward else ("forward",), used)
        table = _table(FORWARD, used)
        self.forward = partial(_forward, table)
        self.forward_step = partial(_step, table)
        self._backward_table = _table(BACKWARD, used) if backward else None

    def _backward_kernels(self) -> np.ndarray:
        if self._backward_table is None:
            _compile(("backward",), self._used)
            self._backward_table = _table(BACKWARD, self._used)
        return self._backward_table

    def backward(self, *args):
        return _backward(self._backward_kernels(), *args)

    def backward_step(self, *args):
        return _step(self._backward_kernels(), *args)

    def compile_backward(self) -> None:
        """Compile (or load) the backward kernels now rather than at the first backward pass."""
        self._backward_kernels()


_executors: dict[frozenset, Executor] = {}


def for_kinds(kinds: frozenset[str], backward: bool = False) -> Executor:
    """The executor of plans whose steps are of these kinds (kernels compiled on first call;
    the backward ones with the forward ones if `backward`)."""
    if kinds not in _executors:
        _executors[kinds] = Executor([kind.name in kinds for kind in KINDS], backward)
    elif backward:
        _executors[kinds].compile_backward()
    return _executors[kinds]


def for_plan(plan) -> Executor:
    return for_kinds(frozenset(step.kind for step in plan.steps), plan.training)
