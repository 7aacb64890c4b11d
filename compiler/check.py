"""check: Graph -> Checked. Every tensor's shape, every layer's parameters, MACs and receptive
field, and the spec's own `expect` lines. One pass in topological order; a layer whose input
failed is skipped so that one mistake is reported once."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .errors import Loc, Problems, ShapeError, SpecError
from .expand import Graph, Node
from .layers import REGISTRY, Shape, fmt, numel
from .syntax import Expect

MAX_TENSOR = 1 << 31  # values per sample in one tensor


@dataclass(frozen=True)
class Layer:
    node: Node
    attrs: dict  # the node's attributes plus what its rule derived (keys starting with _)
    shape: Shape
    params: dict[str, Shape]
    buffers: dict[str, Shape]
    macs: int
    rf: tuple[int, int]  # receptive field in input pixels (rows, columns)
    jump: tuple[Fraction, Fraction]  # effective stride in input pixels

    @property
    def param_count(self) -> int:
        return sum(numel(s) for s in self.params.values())

    @property
    def buffer_count(self) -> int:
        return sum(numel(s) for s in self.buffers.values())


@dataclass(frozen=True)
class Checked:
    graph: Graph
    layers: tuple[Layer, ...]  # aligned with graph.nodes; layers[0] is the input

    @property
    def output(self) -> Layer:
        return self.layers[self.graph.output]

    @property
    def params(self) -> int:
        return sum(layer.param_count for layer in self.layers)

    @property
    def buffers(self) -> int:
        return sum(layer.buffer_count for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    def inputs_of(self, layer: Layer) -> list[Layer]:
        return [self.layers[i] for i in layer.node.inputs]


def _context(graph: Graph, shapes: dict[int, Shape], node: Node) -> str:
    """The path of shapes that led to this layer, as in `input 28x28 -> CONV 6@5x5: 24x24 -> ...`."""
    trail, index = [], node.inputs[0] if node.inputs else None
    while index is not None and len(trail) < 6:
        previous = graph.nodes[index]
        label = "input" if previous.kind == "INPUT" else previous.kind
        trail.append(f"{label}: {fmt(shapes[index])}")
        index = previous.inputs[0] if previous.inputs else None
    return "shapes so far: " + " -> ".join(reversed(trail))


def _layer(node: Node, ins: list[Layer]) -> Layer:
    kind = REGISTRY[node.kind]
    in_shapes = [layer.shape for layer in ins]
    attrs = dict(node.attrs)
    shape = kind.shape(attrs, in_shapes)
    if min(shape) < 1:
        raise ShapeError(f"{node.kind} would output an empty tensor {fmt(shape)}")
    if numel(shape) > MAX_TENSOR:
        raise ShapeError(
            f"{node.kind} outputs {numel(shape):,} values per sample, past the "
            f"bound of {MAX_TENSOR:,}",
            fix="reduce the sizes",
        )
    rf = tuple(max(layer.rf[a] for layer in ins) for a in range(2))
    jump = tuple(max(layer.jump[a] for layer in ins) for a in range(2))
    window = kind.window(attrs, in_shapes) if kind.window else None
    if window is not None:
        kh, kw, sh, sw, direction = window
        if direction > 0:
            rf = (rf[0] + (kh - 1) * jump[0], rf[1] + (kw - 1) * jump[1])
            jump = (jump[0] * sh, jump[1] * sw)
        else:
            jump = (jump[0] / sh, jump[1] / sw)
            rf = (rf[0] + (kh - 1) * jump[0], rf[1] + (kw - 1) * jump[1])
    rf = (math.ceil(rf[0]), math.ceil(rf[1]))
    return Layer(
        node,
        attrs,
        shape,
        kind.params(attrs, in_shapes, shape),
        kind.buffers(attrs, in_shapes, shape),
        kind.macs(attrs, in_shapes, shape),
        rf,
        jump,
    )


def check(graph: Graph, verify_expects: bool = True) -> Checked:
    """Shape-check the whole graph; raises SpecError listing every independent problem."""
    problems = Problems(graph.path)
    one = Fraction(1)
    layers: list[Layer | None] = [
        Layer(graph.nodes[0], {}, graph.input_shape, {}, {}, 0, (1, 1), (one, one))
    ]
    for node in graph.nodes[1:]:
        ins = [layers[i] for i in node.inputs]
        if any(layer is None for layer in ins):
            layers.append(None)
            continue
        try:
            layers.append(_layer(node, ins))
        except ShapeError as error:
            shapes = {i: layer.shape for i, layer in enumerate(layers) if layer is not None}
            notes = list(error.notes)
            if len(node.inputs) == 1:
                notes.append(_context(graph, shapes, node))
            notes += [f"in the block called at line {loc.line}" for loc in node.call_locs[-1:]]
            problems.add(error.message, node.loc, notes, error.fix)
            layers.append(None)
    problems.raise_if_any()
    checked = Checked(graph, tuple(layers))
    if verify_expects:
        failures = [d for e in graph.expects if (d := verify(checked, e, graph.path))]
        if failures:
            raise SpecError(failures)
    return checked


# ---- expect ----------------------------------------------------------------------------------

COMPARE = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
}
FIGURES = {
    "params": lambda c: c.params,
    "trainable": lambda c: c.params,
    "buffers": lambda c: c.buffers,
    "macs": lambda c: c.macs,
    "flops": lambda c: 2 * c.macs,
}


def expect_targets(checked: Checked) -> list[str]:
    return [*FIGURES, "output", *checked.graph.tensors, *(l.node.name for l in checked.layers)]


def _actual(checked: Checked, target: str):
    if target in FIGURES:
        return FIGURES[target](checked)
    if target == "output":
        return checked.output.shape
    if target in checked.graph.tensors:
        return checked.layers[checked.graph.tensors[target]].shape
    for layer in checked.layers:
        if layer.node.name == target:
            return layer.shape
    return None


def verify(checked: Checked, expect: Expect, path: str):
    """A Diagnostic when the expectation fails or cannot be read, else None."""
    from .errors import Diagnostic, did_you_mean

    actual = _actual(checked, expect.target)
    if actual is None:
        hint = did_you_mean(expect.target, expect_targets(checked))
        return Diagnostic(
            f"expect: unknown figure or tensor `{expect.target}`",
            expect.target_loc,
            fix=hint or "use params, macs, flops, buffers, output or a tensor name",
            path=path,
        )
    wanted = expect.value
    if isinstance(actual, tuple):
        wanted = wanted if isinstance(wanted, tuple) else (wanted,)
        if expect.op not in ("==", "!="):
            return Diagnostic(
                "expect: a shape can only be compared with == or !=", expect.loc, path=path
            )
        passed = COMPARE[expect.op](tuple(actual), wanted)
        shown_actual, shown_wanted = fmt(actual), fmt(wanted)
    else:
        if isinstance(wanted, tuple):
            return Diagnostic(
                f"expect: `{expect.target}` is a number, not a shape", expect.loc, path=path
            )
        passed = COMPARE[expect.op](actual, wanted)
        shown_actual, shown_wanted = f"{actual:,}", f"{wanted:,}"
    if passed:
        return None
    return Diagnostic(
        f"expect {expect.target} {expect.op} {shown_wanted} failed: it is {shown_actual}",
        expect.loc,
        fix="update the expectation if the change was intended" if expect.op == "==" else None,
        path=path,
    )


def check_file(path: str, input_shape: tuple[int, ...] | None = None, verify_expects=True):
    from dataclasses import replace

    from .expand import expand
    from .syntax import parse_file

    graph = expand(parse_file(path))
    if input_shape is not None:
        graph = replace(graph, input_shape=input_shape)
    return check(graph, verify_expects)


__all__ = ["Checked", "Layer", "check", "check_file", "verify", "Loc"]
