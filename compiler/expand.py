"""expand: Spec -> Graph. Blocks and repeats are inlined, names resolved, layer arguments
interpreted by their registry entries, `if` branches chosen. Shapes are worked out only where a
block reads one (`in.c`), by checking the layers built so far with check.py's rule."""

from __future__ import annotations

import contextlib
import math
import operator
from dataclasses import dataclass, field, replace

from .arguments import MAX_DIM, interpret
from .errors import (
    COMMON_WORDS,
    Loc,
    Problems,
    ShapeError,
    did_you_mean,
    kind_for,
    kind_hint,
)
from .layers import REGISTRY, LayerKind
from .syntax import (
    Attr,
    Block,
    Call,
    Chain,
    Compare,
    Expect,
    Expr,
    FiltersArg,
    If,
    Layer,
    Merge,
    Neg,
    Not,
    Num,
    Ref,
    Setting,
    Spec,
)

MAX_NODES = 100_000
MAX_REPEAT = 1_000
MAX_CALL_DEPTH = 32
MAX_INPUT = 1 << 28  # values per sample
MAX_NUMBER = 1e18


def _divide(left, right):
    quotient = left / right
    return int(quotient) if quotient == int(quotient) else quotient


COMPARISONS = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
ARITHMETIC = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "//": operator.floordiv,
    "/": _divide,
}


@dataclass(frozen=True)
class Node:
    index: int
    name: str  # unique: "conv1", "basic2.conv1"
    kind: str  # a registry key, or "INPUT"
    attrs: dict
    inputs: tuple[int, ...]
    loc: Loc
    call_locs: tuple[Loc, ...] = ()  # the block calls this node was expanded from, outermost first


@dataclass(frozen=True)
class Graph:
    path: str
    source: str
    name: str
    input_shape: tuple[int, ...]
    nodes: tuple[Node, ...]
    output: int
    tensors: dict[str, int]  # every named tensor, block-local ones qualified: "basic2.y"
    expects: tuple[Expect, ...]
    train: tuple[Setting, ...]
    # every head as (name, node): `output p3, p4` names several; else one, named "output"
    outputs: tuple[tuple[str, int], ...] = ()
    loss_chosen: bool = True  # `output` is the one head, or the train section's `loss` names it
    outputs_loc: Loc | None = None
    spec: Spec | None = None  # to expand again at another input size when sizes were read
    reads_sizes: bool = False  # some block read `in.c`/`in.h`/`in.w`: the graph depends on them

    @property
    def output_names(self) -> list[str]:
        return [name for name, _ in self.outputs]


class _Stop(Exception):
    """Expansion cannot go on (a bound was passed); the problem is already recorded."""


@dataclass
class _Scope:
    prefix: str
    params: dict[str, int | float]
    names: dict[str, int]
    name_locs: dict[str, Loc] = field(default_factory=dict)
    ahead: dict[str, Loc] = field(default_factory=dict)  # names bound further down the body
    unbound: set[str] = field(default_factory=set)  # names whose chain failed, already reported
    counters: dict[str, int] = field(default_factory=dict)
    stack: tuple[str, ...] = ()
    call_locs: tuple[Loc, ...] = ()

    def fresh(self, kind: str) -> str:
        self.counters[kind] = self.counters.get(kind, 0) + 1
        return f"{self.prefix}{kind.lower()}{self.counters[kind]}"


SIZES = {"c": 0, "h": 1, "w": 2}


class _Expander:
    def __init__(self, spec: Spec, problems: Problems, input_shape: tuple[int, ...] = (1, 1, 1)):
        self.spec, self.problems = spec, problems
        self.input_shape = input_shape
        self.checked: dict[int, object] = {}  # node -> its check.Layer (None: its shape failed)
        self.reads_sizes = False
        self.nodes: list[Node] = []
        self.tensors: dict[str, int] = {}
        self.named: dict[int, Ref] = {}  # node -> the first name bound to it
        self.called: set[str] = set()
        self.read: set[tuple[str, str]] = set()  # (scope prefix, name) of every name looked up
        self.keyword_names: dict[tuple[str, str], tuple[Ref, str]] = {}  # names that spell a kind
        self.blocks: dict[str, Block] = {}
        for block in spec.blocks:
            if block.name in self.blocks:
                problems.add(
                    f"block `{block.name}` is defined twice", block.loc, fix="rename one of them"
                )
            self.blocks[block.name] = block

    # -- expressions --

    def evaluate(self, expr: Expr, scope: _Scope, words_ok: bool = False):
        if isinstance(expr, Num):
            return self.in_range(expr.value, expr.loc)
        if isinstance(expr, Ref):
            if expr.name in scope.params:
                return scope.params[expr.name]
            if words_ok:
                return expr.name
            hint = did_you_mean(expr.name, scope.params)
            known = ", ".join(scope.params) or "none here"
            self.problems.add(
                f"unknown parameter `{expr.name}` (parameters: {known})",
                expr.loc,
                fix=hint or "use a number, or a parameter of the block around it",
            )
            return None
        if isinstance(expr, Neg):
            value = self.evaluate(expr.operand, scope)
            return None if value is None else -value
        if isinstance(expr, Attr):
            return self.size(expr, scope)
        left, right = self.evaluate(expr.left, scope), self.evaluate(expr.right, scope)
        if left is None or right is None:
            return None
        if expr.op in ("/", "//") and right == 0:
            self.problems.add(
                f"division by zero: {left} {expr.op} 0", expr.loc, fix="divide by a non-zero number"
            )
            return None
        try:
            result = ARITHMETIC[expr.op](left, right)
        except OverflowError:
            result = math.inf
        return self.in_range(result, expr.loc)

    def size(self, attr: Attr, scope: _Scope) -> int | None:
        """`in.c`: a size of a tensor in scope, worked out by checking the layers before it."""
        if attr.tensor not in scope.names:
            known = ", ".join(scope.names) or "none yet"
            self.problems.add(
                f"`{attr.tensor}` is not a tensor here (tensors: {known})",
                attr.loc,
                fix=did_you_mean(attr.tensor, scope.names) or "e.g. `in.c`, the input's channels",
            )
            return None
        if attr.field not in SIZES:
            self.problems.add(
                f"a tensor has no size `{attr.field}`",
                attr.loc,
                fix=f"`{attr.tensor}.c` (channels), `{attr.tensor}.h` (height) or "
                f"`{attr.tensor}.w` (width)",
            )
            return None
        self.reads_sizes = True
        self.read.add((scope.prefix, attr.tensor))
        layer = self.layer_of(scope.names[attr.tensor])
        if layer is None:
            return None
        shape = layer.shape if len(layer.shape) == 3 else (layer.shape[0], 1, 1)
        return shape[SIZES[attr.field]]

    def layer_of(self, index: int):
        """The checked layer of a node built so far; a shape error is reported at its layer."""
        from .check import input_layer, layer_of  # check imports this module

        if index in self.checked:
            return self.checked[index]
        for pending in range(len(self.checked), index + 1):
            node = self.nodes[pending]
            ins = [self.checked[i] for i in node.inputs]
            layer = None
            if node.kind == "INPUT":
                layer = input_layer(node, self.input_shape)
            elif all(ins):
                try:
                    layer = layer_of(node, ins)
                except ShapeError as error:
                    notes = [
                        f"in the block called at line {loc.line}" for loc in node.call_locs[-1:]
                    ]
                    self.problems.add(error.message, node.loc, [*error.notes, *notes], error.fix)
            self.checked[pending] = layer
        return self.checked[index]

    def condition(self, cond, scope: _Scope) -> bool | None:
        if isinstance(cond, Compare):
            left, right = self.evaluate(cond.left, scope), self.evaluate(cond.right, scope)
            if left is None or right is None:
                return None
            return COMPARISONS[cond.op](left, right)
        if isinstance(cond, Not):
            value = self.condition(cond.operand, scope)
            return None if value is None else not value
        left, right = self.condition(cond.left, scope), self.condition(cond.right, scope)
        if left is None or right is None:
            return None
        return (left and right) if cond.op == "and" else (left or right)

    def repeat_count(self, link, scope: _Scope) -> int | None:
        """A repeat: `x3`, or `xn` with n a parameter of the block around it."""
        if isinstance(link.repeat, int):
            return link.repeat if self.repeat_ok(link, link.repeat) else None
        word = link.repeat.name
        name = word[1:]
        if not word.startswith("x") or name not in scope.params:
            self.problems.add(
                f"`{word}` after a block call must be a repeat: `x3`, or `x` and a parameter",
                link.repeat.loc,
                fix=did_you_mean(f"x{name}", [f"x{p}" for p in scope.params])
                or f"parameters here: {', '.join(scope.params) or 'none'}",
            )
            return None
        count = scope.params[name]
        if not isinstance(count, int) or isinstance(count, bool):
            self.problems.add(
                f"repeat `{word}` needs a whole number, but `{name}` is {count}",
                link.repeat.loc,
                fix=f"pass a whole number for `{name}`",
            )
            return None
        return count if self.repeat_ok(link, count) else None

    def in_range(self, value, loc: Loc):
        if abs(value) <= MAX_NUMBER:  # false for inf and nan too
            return value
        self.problems.add(
            f"this number is out of range (at most {MAX_NUMBER:.0e} in size)",
            loc,
            fix="is it the number you meant? sizes, counts and rates are far smaller",
        )
        return None

    def interpret(self, layer: Layer | Merge, kind: LayerKind, scope: _Scope) -> dict | None:
        def evaluate(expr, words_ok=False):
            return self.evaluate(expr, scope, words_ok)

        return interpret(layer, kind, evaluate, self.problems)

    # -- graph building --

    def add(self, kind: str, attrs: dict, inputs: tuple[int, ...], loc: Loc, scope: _Scope) -> int:
        if len(self.nodes) >= MAX_NODES:
            self.problems.add(
                f"the network expands to more than {MAX_NODES:,} layers",
                loc,
                fix="lower the repeat counts",
            )
            raise _Stop
        index = len(self.nodes)
        name = scope.fresh(kind) if kind != "INPUT" else "input"
        self.nodes.append(Node(index, name, kind, attrs, inputs, loc, scope.call_locs))
        return index

    def lookup(self, ref: Ref, scope: _Scope) -> int | None:
        if ref.name in scope.names:
            self.read.add((scope.prefix, ref.name))
            return scope.names[ref.name]
        if ref.name in scope.unbound:
            return None
        later = scope.ahead.get(ref.name)
        if later is not None:
            self.problems.add(
                f"`{ref.name}` is used before it is defined (at line {later.line})",
                ref.loc,
                fix=f"move the chain that ends in `-> {ref.name}` above this line",
            )
            return None
        spelled = kind_for(ref.name, REGISTRY)
        if spelled is not None:
            self.problems.add(
                f"`{ref.name}` is not defined here",
                ref.loc,
                fix=_capitals(ref.name, spelled),
            )
            return None
        hint = did_you_mean(ref.name, scope.names)
        known = ", ".join(n for n in scope.names) or "none yet"
        self.problems.add(
            f"`{ref.name}` is not defined here (defined: {known})",
            ref.loc,
            fix=hint or "name a tensor by ending a chain with `-> name` first",
        )
        return None

    def bind(self, ref: Ref, tensor: int, scope: _Scope) -> None:
        if ref.name in scope.params:
            self.problems.add(
                f"`{ref.name}` is a block parameter and cannot name a tensor",
                ref.loc,
                fix="choose another name",
            )
        elif ref.name in scope.names:
            first = scope.name_locs.get(ref.name)
            where = f" (first at line {first.line})" if first and first.line else ""
            self.problems.add(
                f"`{ref.name}` is already defined{where}",
                ref.loc,
                fix="give each tensor its own name",
            )
        else:
            spelled = kind_for(ref.name, REGISTRY)
            if spelled is not None and ref.name.upper() not in COMMON_WORDS:
                self.keyword_names[(scope.prefix, ref.name)] = (ref, spelled)
            scope.names[ref.name] = tensor
            scope.name_locs[ref.name] = ref.loc
            self.named.setdefault(tensor, ref)
            self.tensors[scope.prefix + ref.name] = tensor

    def link(self, link, current: int | None, scope: _Scope) -> int | None:
        if isinstance(link, Layer):
            kind = REGISTRY.get(link.kind)
            if kind is None:
                hint = kind_hint(link.kind, REGISTRY)
                self.problems.add(
                    f"unknown layer `{link.kind}`",
                    link.loc,
                    fix=hint or "layers: " + ", ".join(REGISTRY),
                )
                return None
            if kind.arity[0] > 1:
                self.problems.add(
                    f"{kind.name} merges named branches: write `{kind.name}(a, b)`",
                    link.loc,
                    fix=f"end each branch in a name (`... -> a`), then `{kind.name}(a, b) -> ...`",
                )
                return None
            if self.split_size(link, kind):
                return None
            link = self.trailing_repeat(link, scope)
            repeat, attrs = self.repeat_count(link, scope), self.interpret(link, kind, scope)
            if repeat is None or attrs is None or current is None:
                return None
            for _ in range(repeat):
                current = self.add(kind.name, attrs, (current,), link.loc, scope)
            return current
        if isinstance(link, Call):
            repeat, callee = self.repeat_count(link, scope), self.callee(link, scope)
            if repeat is None or callee is None or current is None:
                return None
            block, given = callee
            for _ in range(repeat):
                params = self.fill_defaults(block, given, current)
                if params is None:
                    return None
                current = self.inline(link, block, params, current, scope)
                if current is None:
                    return None
            return current
        raise AssertionError(link)

    def split_size(self, layer: Layer, kind: LayerKind) -> bool:
        """`CONV 6@5 x5`: a size of one number, then a repeat, reads as five 5x5 convolutions,
        but `5x5` with a slipped space is far likelier; refuse the ambiguous spelling."""
        if layer.repeat == 1 or not isinstance(layer.repeat, int) or not layer.args:
            return False
        last = layer.args[-1]
        sized = next((o for o in kind.options if o.positional or o.name == "kernel"), None)
        if isinstance(last, FiltersArg) and isinstance(last.kernel, Num):
            number = last.kernel
        elif isinstance(last, Num) and sized is not None and sized.kind == "pair":
            number = last
        else:
            return False
        size, count, loc = number.value, layer.repeat, layer.loc
        line = self.spec.source.split("\n")[loc.line - 1]
        head = line[loc.col - 1 : number.loc.col - 1] if loc.line == number.loc.line else ""
        head = head or f"{layer.kind} "
        self.problems.add(
            f"`{head}{size} x{count}` reads as {count} layers with a size of {size}",
            layer.loc,
            fix=f"for a {size}x{count} size write `{head}{size}x{count}` (no space); "
            f"for {count} layers write the size in full: `{head}{size}x{size} x{count}`",
        )
        return True

    @staticmethod
    def trailing_repeat(layer: Layer, scope: _Scope) -> Layer:
        """`CONV c@3x3 xn`: a last bare word `x` + a parameter is the layer's repeat."""
        last = layer.args[-1] if layer.args else None
        if (
            layer.repeat == 1
            and isinstance(last, Ref)
            and last.name[:1] == "x"
            and last.name not in scope.params
            and last.name[1:] in scope.params
        ):
            return replace(layer, args=layer.args[:-1], repeat=last)
        return layer

    def repeat_ok(self, link, count: int) -> bool:
        if 1 <= count <= MAX_REPEAT:
            return True
        self.problems.add(
            f"repeat count x{count} is outside 1..{MAX_REPEAT}",
            link.loc,
            fix=f"use `x1` to `x{MAX_REPEAT}`; for more, repeat a block that repeats",
        )
        return False

    def merge(self, merge: Merge, scope: _Scope) -> int | None:
        kind = REGISTRY.get(merge.kind)
        if kind is None or not kind.branches:
            merges = [k.name for k in REGISTRY.values() if k.merge]
            self.problems.add(
                f"`{merge.kind}(...)` is not a merge; merges are " + ", ".join(merges),
                merge.loc,
                fix=(kind_hint(merge.kind, merges) if merge.kind not in REGISTRY else "")
                or f"a layer takes one input: `a -> {merge.kind}`",
            )
            return None
        if len(merge.inputs) < 2:
            self.problems.add(
                f"{kind.name} needs at least two inputs",
                merge.loc,
                fix=f"merge two or more: `{kind.name}(a, b)`; to pass one on, write `a -> ...`",
            )
            return None
        attrs = self.interpret(merge, kind, scope)
        inputs = [self.lookup(ref, scope) for ref in merge.inputs]
        if None in inputs or attrs is None:
            return None
        return self.add(kind.name, attrs, tuple(inputs), merge.loc, scope)

    def chains(
        self, chains: tuple[Chain | If, ...], start: int | None, scope: _Scope
    ) -> int | None:
        current = start
        for chain in reversed(chains):
            scope.ahead.update((r.name, r.loc) for r in _bound(chain))
        current = self.body(chains, current, scope)
        return scope.names.get("out", current)

    def body(self, chains: tuple[Chain | If, ...], current: int | None, scope: _Scope):
        for chain in chains:
            if isinstance(chain, If):
                taken = self.condition(chain.condition, scope)
                if taken is None:  # reported; what either branch names stays quiet from here
                    scope.unbound.update(r.name for r in _bound(chain))
                    continue
                branch = chain.then if taken else chain.otherwise
                kept = {r.name for item in branch for r in _bound(item)}
                for ref in _bound(chain):
                    if ref.name not in kept:  # not bound further down after all
                        scope.ahead.pop(ref.name, None)
                current = self.body(branch, current, scope)
                continue
            first, rest = chain.links[0], chain.links[1:]
            if isinstance(first, Merge):
                current = self.merge(first, scope)
            elif isinstance(first, Ref):
                if not rest:
                    self.problems.add(
                        f"`{first.name}` alone does nothing",
                        first.loc,
                        fix=f"continue it: `{first.name} -> ...`",
                    )
                current = self.lookup(first, scope)
            else:
                current = self.link(first, current, scope)
            for link in rest:
                if isinstance(link, Ref):
                    scope.ahead.pop(link.name, None)
                    if current is None:
                        scope.unbound.add(link.name)
                    else:
                        self.bind(link, current, scope)
                else:
                    current = self.link(link, current, scope)
        return current

    def callee(self, call: Call, scope: _Scope) -> tuple[Block, dict] | None:
        """The block a call names and the parameters the call gives; None after reporting why
        not."""
        block = self.blocks.get(call.block)
        if block is None:
            hint = did_you_mean(call.block, self.blocks)
            spelled = kind_for(call.block, REGISTRY)
            fix = (
                _capitals(call.block, spelled)
                if spelled is not None
                else hint or "define it first: `block name(params) { in -> ... -> out }`"
            )
            self.problems.add(f"unknown block `{call.block}`", call.loc, fix=fix)
            return None
        if block.name in scope.stack:
            cycle = " -> ".join((*scope.stack, block.name))
            self.problems.add(
                f"block `{block.name}` calls itself ({cycle})",
                call.loc,
                fix="a block may call only other blocks",
            )
            raise _Stop
        if len(scope.stack) >= MAX_CALL_DEPTH:
            self.problems.add(
                f"blocks nest deeper than {MAX_CALL_DEPTH}",
                call.loc,
                fix="call the inner blocks one after another instead of one inside the other",
            )
            raise _Stop
        self.called.add(block.name)
        params = self.bind_params(block, call, scope)
        return None if params is None else (block, params)

    def inline(self, call: Call, block: Block, params: dict, current: int, scope: _Scope):
        inner = _Scope(
            prefix=scope.fresh(block.name) + ".",
            params=params,
            names={"in": current},
            stack=(*scope.stack, block.name),
            call_locs=(*scope.call_locs, call.loc),
        )
        return self.chains(block.chains, current, inner)

    def bind_params(self, block: Block, call: Call, scope: _Scope) -> dict | None:
        names = [p.name for p in block.params]
        values: dict = {}
        ok = True
        positional = [a for a in call.args if a.key is None]
        if len(positional) > len(names):
            self.problems.add(
                f"block `{block.name}` takes {len(names)} argument(s) "
                f"({', '.join(names)}), but gets {len(positional)}",
                call.loc,
                fix=f"call it as `{block.name}({', '.join(names)})`",
            )
            return None
        for name, arg in zip(names, positional, strict=False):
            values[name] = self.evaluate(arg.value, scope)
        for arg in call.args:
            if arg.key is None:
                continue
            if arg.key not in names:
                hint = did_you_mean(arg.key, names)
                self.problems.add(
                    f"block `{block.name}` has no parameter `{arg.key}`",
                    arg.loc,
                    fix=hint or f"parameters: {', '.join(names)}",
                )
                ok = False
            elif arg.key in values:
                self.problems.add(
                    f"parameter `{arg.key}` is given twice", arg.loc, fix="keep one of them"
                )
                ok = False
            else:
                values[arg.key] = self.evaluate(arg.value, scope)
        for param in block.params:
            if param.name not in values and param.default is None:
                self.problems.add(
                    f"block `{block.name}` needs parameter `{param.name}`",
                    call.loc,
                    fix=f"call it as `{block.name}({', '.join(names)})`",
                )
                ok = False
        if not ok or any(v is None for v in values.values()):
            return None
        return values

    def fill_defaults(self, block: Block, given: dict, current: int) -> dict | None:
        """The call's parameters with the defaults it leaves out, each worked out from the
        parameters before it and the sizes of the block's input (`e=4*c`, `c=in.c`): once per
        repetition, as a repeated block's input changes."""
        defaults = _Scope("", dict(given), {"in": current})
        for param in block.params:
            if param.name not in given:
                value = self.evaluate(param.default, defaults)
                if value is None:
                    return None
                defaults.params[param.name] = value
        return defaults.params


def expand(
    spec: Spec, input_shape: tuple[int, ...] | None = None, unused_ok: bool = False
) -> Graph:
    """Inline blocks and repeats, resolve names; raises SpecError with every problem found.
    `input_shape` replaces the spec's own `input` line; `unused_ok` lets tensors and blocks
    go unused (a spec with statements taken out, to find the errors of the rest)."""
    problems = Problems(spec.path)
    for loc in spec.header_locs:
        problems.add(
            "the header line is repeated", loc, fix="keep one `network`, `input` and `output`"
        )
    shape = tuple(input_shape) if input_shape is not None else _input_shape(spec, problems)
    expander = _Expander(spec, problems, shape)
    for block in spec.blocks:
        seen = set()
        for param in block.params:
            if param.name in seen:
                problems.add(
                    f"parameter `{param.name}` is listed twice", param.loc, fix="rename one"
                )
            seen.add(param.name)
    scope = _Scope("", {}, {"in": 0})
    expander.nodes.append(
        Node(0, "input", "INPUT", {}, (), spec.input.loc if spec.input else Loc(1, 1, 1, 2))
    )
    output = None
    if not spec.chains:
        problems.add(
            "the spec has no layers",
            Loc(1, 1, 1, 2),
            fix="add a chain such as `CONV 6@5x5 -> RELU -> FC 10`",
        )
    with contextlib.suppress(_Stop):
        output = expander.chains(spec.chains, 0, scope)
    heads = _heads(expander, spec, output, scope)
    _keyword_names(expander, problems)
    if not problems.found and not unused_ok:  # after an error, missing links look like dead code
        _dead_code(expander, {index for _, index in heads}, problems)
    problems.raise_if_any()
    return Graph(
        spec.path,
        spec.source,
        spec.name or _stem(spec.path),
        shape,
        tuple(expander.nodes),
        heads[0][1],
        dict(expander.tensors),
        spec.expects,
        spec.train,
        tuple(heads),
        len(heads) == 1,
        spec.outputs_loc,
        spec,
        expander.reads_sizes,
    )


def at_input(graph: Graph, shape: tuple[int, ...]) -> Graph:
    """The graph fed another input size; expanded again when its blocks read sizes (`in.h`)."""
    if graph.reads_sizes and graph.spec is not None:
        expanded = expand(graph.spec, tuple(shape))
        chosen = next((name for name, index in graph.outputs if index == graph.output), None)
        output = dict(expanded.outputs).get(chosen, expanded.output)
        return replace(expanded, output=output, loss_chosen=graph.loss_chosen)
    return replace(graph, input_shape=tuple(shape))


def _heads(expander: _Expander, spec: Spec, output, scope: _Scope) -> list[tuple[str, int]]:
    """The network's outputs: the names of `output a, b`, else where the chains end."""
    if not spec.outputs:
        return [("output", output if output is not None else 0)]
    heads, seen = [], set()
    for ref in spec.outputs:
        if ref.name in seen:
            expander.problems.add(
                f"`{ref.name}` is listed twice as an output", ref.loc, fix="list each head once"
            )
            continue
        seen.add(ref.name)
        index = expander.lookup(ref, scope)
        if index == 0:
            expander.problems.add(f"`{ref.name}` is the network input, not an output", ref.loc)
        elif index is not None:
            heads.append((ref.name, index))
    return heads or [("output", output if output is not None else 0)]


def _capitals(word: str, spelled: str) -> str:
    if spelled == word.upper():
        return f"layer keywords are written in capitals: `{spelled}`"
    return f"did you mean `{spelled}`?"


def _bound(item: Chain | If) -> list[Ref]:
    """The names a chain binds, or either branch of an `if`."""
    if isinstance(item, Chain):
        return [r for r in item.links[1:] if isinstance(r, Ref)]
    return [r for inner in (*item.then, *item.otherwise) for r in _bound(inner)]


def _keyword_names(expander: _Expander, problems: Problems) -> None:
    """`-> relu ->` names a tensor `relu` and applies no layer: when nothing reads that name, it
    was meant as the keyword. A name that is read (`MUL(x, scale)`) was meant as a name."""
    reported = set()
    for key, (ref, spelled) in expander.keyword_names.items():
        if key in expander.read or ref.loc in reported:
            continue
        reported.add(ref.loc)
        problems.add(
            f"`{ref.name}` names a tensor here, so no layer is applied",
            ref.loc,
            fix=f"{_capitals(ref.name, spelled)}; to name the tensor, choose a name that "
            "is not a layer keyword",
        )


def _dead_code(expander: _Expander, outputs: set[int], problems: Problems) -> None:
    """A computed tensor that nothing reads, or a block nobody calls, is a mistake."""
    consumed = {i for node in expander.nodes for i in node.inputs}
    reported = set()
    for node in expander.nodes[1:]:
        ref = expander.named.get(node.index)
        loc = ref.loc if ref else node.loc
        if node.index in consumed or node.index in outputs or loc in reported:
            continue
        reported.add(loc)  # once, however often its block was called
        if ref:
            problems.add(
                f"`{ref.name}` is computed but never used",
                loc,
                fix=f"use it (`{ref.name} -> ...` or in a merge), or remove its chain",
            )
        else:
            listed = " or list it in the `output` line" if expander.spec.outputs else ""
            problems.add(
                "the end of this chain is never used",
                loc,
                fix="continue it, name it (`-> name`) and use the name"
                + listed
                + ", or remove the chain",
            )
    for block in expander.blocks.values():
        if block.name not in expander.called:
            problems.add(
                f"block `{block.name}` is never called",
                block.loc,
                fix=f"use it in a chain (`-> {block.name}(...)`), or remove it",
            )


def _input_shape(spec: Spec, problems: Problems) -> tuple[int, ...]:
    if spec.input is None:
        problems.add(
            "the spec has no input shape",
            Loc(1, 1, 1, 2),
            fix="add a line such as `input 1x28x28` (channels x height x width)",
        )
        return (1, 1, 1)
    values = spec.input.values
    if len(values) == 1:
        values = (values[0], 1, 1)
    if len(values) != 3:
        problems.add(
            f"input must be CxHxW, not {'x'.join(map(str, values))}",
            spec.input.loc,
            fix="e.g. `input 3x32x32`",
        )
        return (1, 1, 1)
    shown = "x".join(map(str, values))
    if min(values) < 1:
        problems.add(
            f"input {shown} has a size of 0; every size must be at least 1",
            spec.input.loc,
            fix="e.g. `input 3x32x32` (channels x height x width)",
        )
        return (1, 1, 1)
    if max(values) > MAX_DIM or values[0] * values[1] * values[2] > MAX_INPUT:
        problems.add(
            f"input {shown} is too large: at most {MAX_DIM:,} per size and "
            f"{MAX_INPUT:,} values in all",
            spec.input.loc,
            fix="is this the size you meant? e.g. `input 3x224x224`",
        )
        return (1, 1, 1)
    return values


def _stem(path: str) -> str:
    import os

    return os.path.splitext(os.path.basename(path))[0] or "network"
