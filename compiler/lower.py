"""lower: Checked -> Plan. Ordered steps, arena slots with liveness-based reuse, one flat
parameter arena, and each step's integer row for the kernels (layout in abi.py).

Time runs forward steps 0..S-1, the loss at S, then backward of step i at 2S - i. A tensor's
slot is live from its producer until its last reader: a forward consumer, or the backward of a
step that saves it; a gradient's slot from its last consumer's backward to its producer's.
Slots are placed greedily, largest first, at the lowest offset free for their whole lifetime.
"""

from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from . import abi
from .check import Checked
from .layers import KIND_INDEX, REGISTRY, Shape, numel

ALIGN = 16  # floats: 64-byte alignment for every slot and parameter
FLOAT_BYTES = 4


def _align(size: int) -> int:
    return -(-size // ALIGN) * ALIGN


@dataclass(frozen=True)
class ParamEntry:
    name: str  # "conv1.weight"
    offset: int
    shape: Shape


@dataclass(frozen=True)
class TensorSlot:
    index: int  # the node index of its producer
    name: str
    shape: Shape
    offset: int  # per-sample, in the activation arena
    grad_offset: int  # -1 when no gradient is kept


@dataclass(frozen=True)
class Step:
    name: str
    kind: str
    inputs: tuple[int, ...]  # tensor indices
    output: int
    params: tuple[ParamEntry, ...]
    state_offset: int
    state_size: int
    aux_offset: int
    workspace: int  # floats per thread
    row: tuple[int, ...]
    frow: tuple[float, ...]


@dataclass(frozen=True)
class Plan:
    network: str
    training: bool
    input_shape: Shape
    steps: tuple[Step, ...]
    tensors: tuple[TensorSlot, ...]
    output: int  # tensor index of the output the loss reads (the one head, or the named one)
    logits: int  # tensor index the loss reads (the input of a final SOFTMAX, else the output)
    backward_from: int  # last step whose backward runs (steps after it are folded into the loss)
    arena_size: int  # floats per sample
    param_size: int
    state_size: int
    workspace: int  # floats per thread
    params: tuple[ParamEntry, ...]
    buffers: tuple[ParamEntry, ...]  # running statistics, in the state arena
    saved: tuple[int, ...]  # tensors kept from forward for backward
    outputs: tuple[tuple[str, int], ...] = ()  # every head: (name, tensor index)
    # gradients the runtime zeroes before backward: the heads the loss does not read, whose
    # branches' backward then runs on zeros, and a fused SOFTMAX output that is not the last step
    zero_grads: tuple[int, ...] = ()

    def memory(self, batch: int, threads: int | None = None, optimizer_slots: int = 1) -> dict:
        """Exact bytes the runtime allocates for this plan at a batch size."""
        threads = threads or os.cpu_count() or 1
        figures = {
            "parameters": self.param_size * FLOAT_BYTES,
            "gradients": self.param_size * FLOAT_BYTES if self.training else 0,
            "optimizer_state": optimizer_slots * self.param_size * FLOAT_BYTES
            if self.training
            else 0,
            "state": self.state_size * FLOAT_BYTES,
            "activations": self.arena_size * batch * FLOAT_BYTES,
            "workspace": self.workspace * threads * FLOAT_BYTES,
        }
        figures["total"] = sum(figures.values())
        return figures

    def to_json(self) -> dict:
        return {
            "network": self.network,
            "mode": "training" if self.training else "inference",
            "input_shape": list(self.input_shape),
            "arena_floats_per_sample": self.arena_size,
            "param_floats": self.param_size,
            "state_floats": self.state_size,
            "workspace_floats_per_thread": self.workspace,
            "output": self.output,
            "logits": self.logits,
            "backward_from": self.backward_from,
            "outputs": [{"name": name, "tensor": index} for name, index in self.outputs],
            "zero_grads": list(self.zero_grads),
            "tensors": [
                {
                    "index": t.index,
                    "name": t.name,
                    "shape": list(t.shape),
                    "offset": t.offset,
                    "grad_offset": t.grad_offset,
                }
                for t in self.tensors
            ],
            "steps": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "inputs": list(s.inputs),
                    "output": s.output,
                    "params": [
                        {"name": p.name, "offset": p.offset, "shape": list(p.shape)}
                        for p in s.params
                    ],
                    "state_offset": s.state_offset,
                    "aux_offset": s.aux_offset,
                    "workspace": s.workspace,
                    "row": list(s.row),
                    "frow": list(s.frow),
                }
                for s in self.steps
            ],
            "saved": list(self.saved),
        }


class _Occupied:
    """A union of offset ranges [low, high), kept merged and sorted."""

    __slots__ = ("lows", "highs")

    def __init__(self):
        self.lows: list[int] = []
        self.highs: list[int] = []

    def add(self, low: int, high: int) -> None:
        first = bisect_left(self.highs, low)  # ranges that touch [low, high) merge into it
        last = bisect_right(self.lows, high)
        if first < last:
            low, high = min(low, self.lows[first]), max(high, self.highs[last - 1])
        self.lows[first:last] = [low]
        self.highs[first:last] = [high]

    def clash(self, offset: int, size: int) -> int | None:
        """The end of a range overlapping [offset, offset + size), if any."""
        i = bisect_right(self.highs, offset)
        if i < len(self.lows) and self.lows[i] < offset + size:
            return self.highs[i]
        return None


def _place(intervals: list[tuple[int, int, int, object]]) -> tuple[dict, int]:
    """Greedy offset assignment: (start, end, size, key) -> {key: offset}, arena size. Largest
    first, each block takes the lowest offset free over its whole lifetime (start..end inclusive).

    Which placed blocks meet a lifetime in time is found with a segment tree over time: a block
    is recorded at the O(log T) nodes that tile its lifetime (`exact`) and in the union of every
    node above them (`below`). A block meets a lifetime if it is recorded below one of the
    lifetime's nodes or exactly at one of their ancestors. Merged unions keep a node's ranges few
    although training keeps most tensors live, so placement is O(n log^2 n) in practice."""
    if not intervals:
        return {}, 0
    leaves = 1 << max(iv[1] for iv in intervals).bit_length()
    exact: dict[int, _Occupied] = {}
    below: dict[int, _Occupied] = {}

    def tiles(start: int, end: int) -> list[int]:
        nodes, low, high = [], start + leaves, end + leaves + 1
        while low < high:
            if low & 1:
                nodes.append(low)
                low += 1
            if high & 1:
                high -= 1
                nodes.append(high)
            low, high = low >> 1, high >> 1
        return nodes

    def ancestors(nodes: list[int]) -> set[int]:
        found = set()
        for node in nodes:
            node >>= 1
            while node and node not in found:
                found.add(node)
                node >>= 1
        return found

    offsets, arena = {}, 0
    for start, end, size, key in sorted(intervals, key=lambda i: (-i[2], i[0])):
        nodes = tiles(start, end)
        above = ancestors(nodes)
        unions = [below[n] for n in nodes if n in below]
        unions += [exact[n] for n in above if n in exact]
        offset, moved = 0, True
        while moved:
            moved = False
            for union in unions:
                high = union.clash(offset, size)
                if high is not None:
                    offset, moved = high, True
        for node in nodes:
            exact.setdefault(node, _Occupied()).add(offset, offset + size)
        for node in (*nodes, *above):
            below.setdefault(node, _Occupied()).add(offset, offset + size)
        offsets[key] = offset
        arena = max(arena, offset + size)
    return offsets, arena


def _chw(shape: Shape) -> tuple[int, int, int]:
    return shape if len(shape) == 3 else (shape[0], 1, 1)


def lower(checked: Checked, training: bool = True) -> Plan:
    layers = checked.layers
    nodes = checked.graph.nodes
    count = len(nodes) - 1  # steps; node i + 1 is step i
    consumers: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for node in nodes[1:]:
        for source in node.inputs:
            consumers[source].append(node.index - 1)
    output = checked.graph.output
    heads = {index for _, index in checked.graph.outputs} | {output}
    final = layers[output]
    fused = final.node.kind == "SOFTMAX" and consumers[final.node.inputs[0]] == [output - 1]
    logits = final.node.inputs[0] if fused else output
    last = output == count  # the loss reads the last step: the steps after it need no backward
    backward_from = (output - 1 - (1 if fused else 0)) if last else count - 1
    zero_grads = tuple(sorted(heads - {output} | ({output} if fused and not last else set())))
    loss_time = count

    def producer(tensor: int) -> int:
        return tensor - 1  # -1 for the input

    intervals = []
    for tensor, layer in enumerate(layers):
        size = _align(numel(layer.shape))
        readers = [c for c in consumers[tensor]]
        end = max(readers, default=producer(tensor))
        if tensor in heads or tensor == logits:
            end = max(end, loss_time)
        if training:
            kind = REGISTRY.get(layer.node.kind)
            if kind and "output" in kind.saves:
                end = max(end, 2 * count - producer(tensor))
            for c in readers:
                if "input" in REGISTRY[nodes[c + 1].kind].saves:
                    end = max(end, 2 * count - c)
        intervals.append((producer(tensor), end, size, ("value", tensor)))
    if training:
        for tensor in range(1, len(layers)):
            readers = consumers[tensor]
            head = tensor in heads or tensor == logits
            start = loss_time if head or not readers else 2 * count - max(readers)
            intervals.append(
                (
                    start,
                    2 * count - producer(tensor),
                    _align(numel(layers[tensor].shape)),
                    ("grad", tensor),
                )
            )
        for step in range(count):
            kind = REGISTRY[nodes[step + 1].kind]
            if kind.aux:
                size = _align(numel(layers[nodes[step + 1].inputs[0]].shape))
                intervals.append((step, 2 * count - step, size, ("aux", step)))
    offsets, arena_size = _place(intervals)

    tensors = tuple(
        TensorSlot(
            i, layer.node.name, layer.shape, offsets[("value", i)], offsets.get(("grad", i), -1)
        )
        for i, layer in enumerate(layers)
    )
    max_inputs = max((len(n.inputs) for n in nodes[1:]), default=1)
    width = abi.row_width(max_inputs)
    steps, params, buffers = [], [], []
    param_offset = state_offset = 0
    workspace = 0
    for step in range(count):
        node, layer = nodes[step + 1], layers[step + 1]
        kind = REGISTRY[node.kind]
        in_shapes = [layers[i].shape for i in node.inputs]
        entries = []
        first_param = param_offset
        for pname, shape in layer.params.items():  # packed: kernels find the bias after weights
            entries.append(ParamEntry(f"{node.name}.{pname}", param_offset, shape))
            param_offset += numel(shape)
        param_offset = _align(param_offset)
        state_size = kind.state_size(layer.attrs, in_shapes, layer.shape)
        for bname, shape in layer.buffers.items():
            buffers.append(ParamEntry(f"{node.name}.{bname}", state_offset, shape))
            state_offset += numel(shape)
        state_offset += state_size - sum(numel(s) for s in layer.buffers.values())
        my_state = state_offset - state_size
        state_offset = _align(state_offset)
        ws = kind.workspace(layer.attrs, in_shapes, layer.shape)
        workspace = max(workspace, ws)
        aux = offsets.get(("aux", step), -1)
        row = [0] * width
        row[abi.KIND], row[abi.NIN], row[abi.OUT] = (
            KIND_INDEX[node.kind],
            len(node.inputs),
            tensors[step + 1].offset,
        )
        row[abi.DOUT] = tensors[step + 1].grad_offset
        row[abi.OC], row[abi.OH], row[abi.OW] = _chw(layer.shape)
        row[abi.PARAM], row[abi.STATE], row[abi.AUX], row[abi.WS] = first_param, my_state, aux, ws
        zero = 0
        for j, source in enumerate(node.inputs):
            base = abi.IN + abi.IN_STRIDE * j
            readers = consumers[source]
            doff = tensors[source].grad_offset
            row[base + abi.IN_OFF], row[base + abi.IN_DOFF] = tensors[source].offset, doff
            row[base + abi.IN_C : base + abi.IN_W + 1] = _chw(layers[source].shape)
            if (
                doff >= 0
                and step == max(readers)
                and source not in node.inputs[:j]
                and source not in heads  # the loss or the runtime writes a head's gradient first
                and not (fused and source == logits)
            ):
                zero |= 1 << j
        row[abi.ZERO] = zero
        ints = kind.int_values(layer.attrs)
        row[abi.ATTR : abi.ATTR + len(ints)] = ints
        floats = kind.float_values(layer.attrs) + (0.0,) * abi.N_FLOAT
        steps.append(
            Step(
                node.name,
                node.kind,
                node.inputs,
                step + 1,
                tuple(entries),
                my_state,
                state_size,
                aux,
                ws,
                tuple(row),
                floats[: abi.N_FLOAT],
            )
        )
        params += entries
    saved = tuple(
        sorted(i for i, t in enumerate(intervals[: len(layers)]) if training and t[1] > loss_time)
    )
    return Plan(
        checked.graph.name,
        training,
        checked.graph.input_shape,
        tuple(steps),
        tensors,
        output,
        logits,
        backward_from,
        arena_size,
        param_offset,
        state_offset,
        workspace,
        tuple(params),
        tuple(buffers),
        saved,
        tuple(checked.graph.outputs),
        zero_grads,
    )
