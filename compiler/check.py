"""check: Graph -> Checked. Every tensor's shape, every layer's parameters, MACs and receptive
field, and the spec's own `expect` lines. One pass in topological order; a layer whose input
failed is skipped so that one mistake is reported once."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction

from .errors import Loc, Problems, ShapeError, SpecError
from .expand import MAX_DIM, MAX_INPUT, Graph, Node, at_input
from .layers import REGISTRY, Shape, describe, fmt, numel
from .syntax import Expect
from .training import loss_head, train_config

MAX_TENSOR = 1 << 31  # values per sample in one tensor


@dataclass(frozen=True)
class Layer:
    node: Node
    attrs: dict  # the node's attributes, with what its shape rule resolved in their place
    shape: Shape
    params: dict[str, Shape]
    buffers: dict[str, Shape]
    macs: int
    rf: tuple[int, int]  # receptive field in input pixels (rows, columns)
    jump: tuple[Fraction, Fraction]  # effective stride in input pixels
    rounded: str = ""  # the arithmetic, when its window does not divide its input evenly

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
        """The output the loss reads: the one head, or the head the train section names."""
        return self.layers[self.graph.output]

    @property
    def outputs(self) -> list[tuple[str, Layer]]:
        """Every head, in the order of the `output` line."""
        return [(name, self.layers[index]) for name, index in self.graph.outputs]

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
    """The path of shapes that led to this layer: `input 1x28x28 -> CONV 6@5x5: 6x24x24 -> ...`."""
    trail, index = [], node.inputs[0] if node.inputs else None
    while index is not None and len(trail) < 6:
        previous = graph.nodes[index]
        if previous.kind == "INPUT":
            trail.append(f"input {fmt(shapes[index])}")
        else:
            trail.append(f"{describe(previous.kind, previous.attrs)}: {fmt(shapes[index])}")
        index = previous.inputs[0] if previous.inputs else None
    return "shapes so far: " + " -> ".join(reversed(trail))


def _roundings(graph: Graph, layers: list[Layer | None], node: Node, most: int = 3) -> list[str]:
    """Where the sizes that reach this node were rounded, nearest first: the usual culprit."""
    seen, stack = set(), list(node.inputs)
    while stack:
        index = stack.pop()
        if index not in seen:
            seen.add(index)
            stack.extend(graph.nodes[index].inputs)
    notes = []
    for index in sorted(seen, reverse=True):
        layer = layers[index]
        rounded = layer.rounded if layer is not None else None
        if rounded and len(notes) < most:
            label = describe(layer.node.kind, layer.node.attrs)
            notes.append(f"line {layer.node.loc.line}: {label} does not divide evenly: {rounded}")
    return notes


def _channels_last(shape: Shape) -> bool:
    """An input such as 32x32x3: an image's size written first and its channels last."""
    return len(shape) == 3 and shape[2] in (1, 3, 4) and shape[0] == shape[1] > 4


def _input_that_works(graph: Graph) -> Shape | None:
    """The nearest input size (same channels) for which the whole graph checks, if one is near."""
    c, h, w = graph.input_shape

    def near(size: int) -> list[int]:
        steps = [size + d for d in range(-8, 9)] + [2 * size, 3 * size, 4 * size]
        steps += [-(-size // m) * m for m in (2, 4, 8, 16, 32, 64, 128)]
        steps += [size // m * m for m in (2, 4, 8, 16, 32, 64, 128)]
        return sorted(
            {s for s in steps if 1 <= s <= MAX_DIM and s != size}, key=lambda s: abs(s - size)
        )

    for hh, ww in zip(near(h), near(w), strict=False):
        shape = (c, hh, ww)
        if checks_at(graph, shape):
            return shape
    return None


def checks_at(graph: Graph, shape: Shape) -> bool:
    """Whether every layer's shape rule holds for this input size (`expect` lines aside)."""
    if numel(shape) > MAX_INPUT:
        return False
    try:
        return not _layers(at_input(graph, shape))[1]
    except SpecError:  # a block that reads `in.h` chose a form that does not expand
        return False


def input_layer(node: Node, shape: Shape) -> Layer:
    one = Fraction(1)
    return Layer(node, {}, shape, {}, {}, 0, (1, 1), (one, one))


def _layer(node: Node, ins: list[Layer]) -> Layer:
    kind = REGISTRY[node.kind]
    in_shapes = [layer.shape for layer in ins]
    inferred = kind.shape(node.attrs, in_shapes)
    shape, attrs = inferred.shape, {**node.attrs, **inferred.resolved}
    if min(shape) < 1:
        raise ShapeError(f"{node.kind} would output an empty tensor {fmt(shape)}")
    if numel(shape) > MAX_TENSOR:
        raise ShapeError(
            f"{node.kind} outputs {numel(shape):,} values per sample, past the "
            f"bound of {MAX_TENSOR:,}",
            fix="reduce the sizes",
        )
    params = kind.params(attrs, in_shapes, shape)
    if sum(map(numel, params.values())) > MAX_TENSOR:
        raise ShapeError(
            f"{node.kind} has {sum(map(numel, params.values())):,} parameters, past the "
            f"bound of {MAX_TENSOR:,}",
            fix="reduce the filters or units",
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
        params,
        kind.buffers(attrs, in_shapes, shape),
        kind.macs(attrs, in_shapes, shape),
        rf,
        jump,
        inferred.rounded,
    )


def _layers(graph: Graph) -> tuple[list[Layer | None], list[tuple[Node, ShapeError]]]:
    """Every layer in topological order; a layer whose input failed is None and not re-reported."""
    layers: list[Layer | None] = [input_layer(graph.nodes[0], graph.input_shape)]
    failures = []
    for node in graph.nodes[1:]:
        ins = [layers[i] for i in node.inputs]
        layer = None
        if all(ins):
            try:
                layer = _layer(node, ins)
            except ShapeError as error:
                failures.append((node, error))
        layers.append(layer)
    return layers, failures


def check(graph: Graph, verify_expects: bool = True) -> Checked:
    """Shape-check the whole graph; raises SpecError listing every independent problem."""
    problems = Problems(graph.path)
    layers, failures = _layers(graph)
    works = None  # searched for once, at the first error another input size might avoid
    for node, error in failures:
        shapes = {i: layer.shape for i, layer in enumerate(layers) if layer is not None}
        notes = list(error.notes)
        if len(node.inputs) == 1:
            notes.append(_context(graph, shapes, node))
        fix = error.fix
        if error.sizes:
            notes += _roundings(graph, layers, node)
            if works is None:
                works = _input_that_works(graph) or ()
            if works:
                fix = "; or ".join(filter(None, [fix, f"feed an input of {fmt(works)}"]))
        notes += [f"in the block called at line {loc.line}" for loc in node.call_locs[-1:]]
        if node is failures[0][0] and _channels_last(graph.input_shape):
            c, h, w = graph.input_shape
            notes.append(
                f"`input {c}x{h}x{w}` reads as {c} channels of {h}x{w}; for {w} channels of "
                f"{c}x{h} (channels last) write `input {w}x{c}x{h}`"
            )
        problems.add(error.message, node.loc, notes, fix)
    try:
        train_config(graph.train, graph.path)
    except SpecError as error:
        problems.found.extend(error.diagnostics)
    graph = _choose_loss_head(graph, problems)
    problems.raise_if_any()
    checked = Checked(graph, tuple(layers))
    if verify_expects:
        failures = [d for e in graph.expects if (d := verify(checked, e, graph.path))]
        if failures:
            raise SpecError(failures)
    return checked


def _choose_loss_head(graph: Graph, problems: Problems) -> Graph:
    """The train section's `loss NAME` picks the head training reads, among several."""
    named = loss_head(graph.train)
    if named is None:
        return graph
    name, loc, setting_loc = named
    heads = dict(graph.outputs)
    if name not in heads and graph.spec is not None and not graph.spec.outputs:
        from .training import CHOICES

        problems.add(f"train: `loss` is one of {', '.join(CHOICES['loss'])}", setting_loc)
        return graph
    if name not in heads:
        from .errors import did_you_mean

        problems.add(
            f"train: `loss {name}`: the network has no output `{name}` "
            f"(outputs: {', '.join(heads)})",
            loc,
            fix=did_you_mean(name, heads) or "name a head of the `output` line",
        )
        return graph
    return replace(graph, output=heads[name], loss_chosen=True)


def require_loss_head(checked: Checked) -> None:
    """Training reads one output: with several heads the train section must name it."""
    graph = checked.graph
    if graph.loss_chosen:
        return
    from .errors import Diagnostic

    names = graph.output_names
    raise SpecError(
        Diagnostic(
            f"the network has {len(names)} outputs ({', '.join(names)}) and training reads one; "
            "the train section does not say which",
            graph.outputs_loc or Loc(1, 1, 1, 2),
            fix=f"add `loss {names[0]}` to the train section (`train {{ loss {names[0]} }}`)",
            path=graph.path,
        )
    )


def layer_of(node: Node, ins: list[Layer]) -> Layer:
    """One layer checked against its inputs' layers; raises ShapeError."""
    return _layer(node, ins)


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
    if target == "output" and len(checked.graph.outputs) > 1:
        return "several"
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
    if actual == "several":
        names = checked.graph.output_names
        return Diagnostic(
            f"expect: the network has {len(names)} outputs ({', '.join(names)}); "
            "`output` does not say which",
            expect.target_loc,
            fix=f"expect each by name: `expect {names[0]} == "
            f"{fmt(checked.layers[checked.graph.outputs[0][1]].shape)}`",
            path=path,
        )
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
                "expect: a shape can only be compared with == or !=",
                expect.loc,
                fix=f"`expect {expect.target} == {fmt(actual)}`",
                path=path,
            )
        passed = COMPARE[expect.op](tuple(actual), wanted)
        shown_actual, shown_wanted = fmt(actual), fmt(wanted)
    else:
        if isinstance(wanted, tuple):
            return Diagnostic(
                f"expect: `{expect.target}` is a number, not a shape",
                expect.loc,
                fix=f"`expect {expect.target} == {actual}`",
                path=path,
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


def check_file(
    path: str, input_shape: tuple[int, ...] | None = None, verify_expects=True, classes=None
):
    """Parse, expand and check a spec file, at another input size or class count if given."""
    from .adapt import require_classes, with_classes
    from .expand import expand
    from .syntax import SyntaxErrors, parse_file

    try:
        spec = parse_file(path)
    except SyntaxErrors as error:
        found = error.diagnostics + _above(error, path, input_shape)
        raise SpecError(sorted(found, key=lambda d: (d.loc.line, d.loc.col))) from None
    graph = expand(spec, input_shape)
    if classes is None:
        return check(graph, verify_expects)
    checked = check(with_classes(graph, classes), verify_expects)
    require_classes(checked, classes)
    return checked


# what blanking a statement with a syntax error causes elsewhere: not independent errors
CASCADES = ("is not defined here", "used before it is defined", "never used", "never called")
CASCADES += ("alone does nothing", "the end of this chain", "has no layers", "has no input")


def _without_placeholders(spec):
    """The repaired spec without the `in` statements that stand for the failed ones."""
    from .syntax import If, Ref

    def keep(items):
        kept = []
        for item in items:
            if isinstance(item, If):
                kept.append(replace(item, then=keep(item.then), otherwise=keep(item.otherwise)))
            elif not (len(item.links) == 1 and item.links[0] == Ref("in", item.links[0].loc)):
                kept.append(item)
        return tuple(kept)

    blocks = tuple(replace(b, chains=keep(b.chains)) for b in spec.blocks)
    return replace(spec, chains=keep(spec.chains), blocks=blocks)


def _above(error, path: str, input_shape) -> list:
    """The errors above the first syntax error (dataflow runs down the file, so they do not
    depend on it), found in the source with the failed statements blanked out."""
    from .expand import expand
    from .syntax import parse

    if error.repaired is None:
        return []
    first = min(d.loc.line for d in error.diagnostics if d.loc.line) or 1
    spec = _without_placeholders(parse(error.repaired, path))
    try:
        check(expand(spec, input_shape, unused_ok=True), verify_expects=False)
    except SpecError as semantic:
        return [
            d
            for d in semantic.diagnostics
            if 0 < d.loc.line < first and not any(c in d.message for c in CASCADES)
        ]
    return []


__all__ = ["Checked", "Layer", "check", "check_file", "verify", "Loc"]
