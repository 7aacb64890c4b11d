"""fmt: .cnn text -> the same spec in one canonical layout.

The layout is printed from the parsed AST, so spacing, `key=value`, expressions and repeats are
written one way whatever the source did: a layer's arguments in the order of its registry
options (`CONV 16@3x3 s2 p1 nobias`), one space between them, ` -> ` between
links, `, ` between call arguments, expressions without spaces (`4*c@1x1`), a continuation line
indented two spaces past its statement and starting with `-> `. The header comes first
(`network`, then `input`), then blocks and chains in the order written, then every `expect`,
then one `train` section.

What the AST does not hold is taken from the source: the text of each number (`100k`, `1e-3`
stay as written), comments, where a chain was broken across lines (a line longer than
MAX_WIDTH is broken further at its arrows) and single blank lines between statements. A
comment stays with the statement it sits in or above; trailing comments of consecutive lines
are aligned two spaces past the longest code among them.

`format_source` parses its own output and refuses to return it unless the AST (locations
aside) equals the input's: a formatter bug can never change a spec's meaning.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from .errors import Diagnostic, SpecError
from .syntax import (
    Attr,
    BinOp,
    Block,
    Call,
    Chain,
    Compare,
    Dims,
    Expect,
    FiltersArg,
    If,
    KwArg,
    Layer,
    Merge,
    Neg,
    Not,
    Num,
    Ref,
    Setting,
    Spec,
    parse,
)

MAX_WIDTH = 100
INDENT = "  "
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "//": 2}


@dataclass(frozen=True)
class _Comment:
    line: int
    text: str  # from the `#`, trailing whitespace removed
    own_line: bool  # nothing but whitespace before it


@dataclass
class _Entry:
    """One output line of a statement: the source line it stands for and its code."""

    anchor: int
    code: str
    trailing: list[str] = dataclasses.field(default_factory=list)
    comment_only: bool = False


@dataclass
class _Statement:
    first: int  # source lines it spans
    last: int
    entries: list[_Entry]
    blank_before: bool = False


def _comments(source: str) -> list[_Comment]:
    """Every comment: `#` starts one anywhere, the language has no strings."""
    found = []
    for number, text in enumerate(source.split("\n"), 1):
        at = text.find("#")
        if at >= 0:
            found.append(_Comment(number, text[at:].rstrip(), not text[:at].strip()))
    return found


class _Printer:
    def __init__(self, source: str):
        self.lines = source.split("\n")

    def text(self, loc) -> str:
        """The source text of a one-line span."""
        return self.lines[loc.line - 1][loc.col - 1 : loc.end_col - 1]

    # ---- expressions and arguments --------------------------------------------------------

    def expr(self, node, parent: int = 0, right: bool = False) -> str:
        if isinstance(node, Num):
            return self.text(node.loc) if node.loc.line == node.loc.end_line else f"{node.value}"
        if isinstance(node, Ref):
            return node.name
        if isinstance(node, Attr):
            return f"{node.tensor}.{node.field}"
        if isinstance(node, Neg):
            inner = self.expr(node.operand, 3)
            return f"-{inner}"
        if isinstance(node, BinOp):
            own = PRECEDENCE[node.op]
            text = f"{self.expr(node.left, own)}{node.op}{self.expr(node.right, own, True)}"
            needs = own < parent or (right and own == parent)
            return f"({text})" if needs else text
        raise TypeError(f"not an expression: {node!r}")

    def atom(self, node) -> str:
        text = self.expr(node)
        return f"({text})" if isinstance(node, BinOp | Neg) else text

    def arg(self, node) -> str:
        if isinstance(node, Dims):
            return "x".join(map(str, node.values))
        if isinstance(node, FiltersArg):
            kernel = self.arg(node.kernel) if isinstance(node.kernel, Dims) else None
            return f"{self.expr(node.count)}@{kernel or self.atom(node.kernel)}"
        if isinstance(node, KwArg):
            return f"{node.key}={self.arg(node.value)}"
        return self.expr(node)

    def link(self, node) -> str:
        if isinstance(node, Ref):
            return node.name
        if isinstance(node, Layer):
            parts = [node.kind, *map(self.arg, canonical_args(node))]
            parts += [f"x{node.repeat}"] if node.repeat != 1 else []
            return " ".join(parts)
        if isinstance(node, Call):
            args = ", ".join(
                f"{a.key}={self.expr(a.value)}" if a.key else self.expr(a.value) for a in node.args
            )
            if isinstance(node.repeat, Ref):
                return f"{node.block}({args}) {node.repeat.name}"
            return f"{node.block}({args})" + (f" x{node.repeat}" if node.repeat != 1 else "")
        if isinstance(node, Merge):
            inputs = ", ".join(r.name for r in node.inputs)
            return " ".join([f"{node.kind}({inputs})", *map(self.arg, canonical_args(node))])
        raise TypeError(f"not a link: {node!r}")

    # ---- statements -------------------------------------------------------------------------

    def chain(self, chain: Chain, indent: str) -> list[_Entry]:
        """One entry per source line the chain was written on, broken further when too long."""
        segments: list[tuple[int, list[str]]] = []
        previous = None
        for link in chain.links:
            if previous is None or link.loc.line > previous.loc.end_line:
                segments.append((link.loc.line, []))
            segments[-1][1].append(self.link(link))
            previous = link
        entries = []
        for number, (anchor, links) in enumerate(segments):
            prefix = indent if number == 0 else indent + INDENT + "-> "
            line = prefix + links[0]
            for text in links[1:]:
                if len(line) + 4 + len(text) > MAX_WIDTH:
                    entries.append(_Entry(anchor, line))
                    line = indent + INDENT + "-> " + text
                else:
                    line += " -> " + text
            entries.append(_Entry(anchor, line))
        return entries

    def block(self, block: Block) -> list[_Entry]:
        params = ", ".join(
            f"{p.name}={self.expr(p.default)}" if p.default is not None else p.name
            for p in block.params
        )
        head = f"block {block.name}({params}) {{"
        one = len(block.chains) == 1 and isinstance(block.chains[0], Chain)
        if block.loc.line == block.loc.end_line and one:
            (body,) = self.chain(block.chains[0], "")
            one_line = f"{head} {body.code} }}"
            if len(one_line) <= MAX_WIDTH:
                return [_Entry(block.loc.line, one_line)]
        entries = [_Entry(block.loc.line, head), *self.body(block.chains, INDENT)]
        return [*entries, _Entry(block.loc.end_line, "}")]

    def body(self, items, indent: str) -> list[_Entry]:
        entries = []
        for item in items:
            entries += (
                self.branch(item, indent) if isinstance(item, If) else self.chain(item, indent)
            )
        return entries

    def branch(self, node: If, indent: str, opening: str = "if") -> list[_Entry]:
        """`if c {` ... `} else if d {` ... `} else {` ... `}`, one level indented per `if`."""
        entries = [_Entry(node.loc.line, f"{indent}{opening} {self.condition(node.condition)} {{")]
        entries += self.body(node.then, indent + INDENT)
        rest = node.otherwise
        if len(rest) == 1 and isinstance(rest[0], If):
            inner = self.branch(rest[0], indent, "} else if")
            return entries + inner
        if rest:
            entries.append(_Entry(rest[0].loc.line, f"{indent}}} else {{"))
            entries += self.body(rest, indent + INDENT)
        return [*entries, _Entry(node.loc.end_line, f"{indent}}}")]

    def condition(self, node) -> str:
        if isinstance(node, Compare):
            return f"{self.expr(node.left)} {node.op} {self.expr(node.right)}"
        if isinstance(node, Not):
            return f"not {self.condition(node.operand)}"
        return f"{self.condition(node.left)} {node.op} {self.condition(node.right)}"

    def expect(self, expect: Expect) -> _Entry:
        written = self.lines[expect.loc.line - 1][expect.loc.col - 1 :]
        if expect.loc.end_line == expect.loc.line:
            written = written[: expect.loc.end_col - expect.loc.col]
        match = re.search(r"(==|!=|<=|>=|<|>)\s*(\S+)", written.split("#")[0])
        value = match.group(2) if match else str(expect.value)
        return _Entry(expect.loc.line, f"expect {expect.target} {expect.op} {value}")

    def setting(self, setting: Setting) -> _Entry:
        values = [self.arg(v) for v in setting.values]
        return _Entry(setting.loc.line, INDENT + " ".join([setting.key, *values]))


def _code(line: str) -> str:
    return line.split("#")[0]


def _train_spans(lines: list[str]) -> list[tuple[int, int]]:
    spans, start = [], None
    for number, text in enumerate(lines, 1):
        code = _code(text)
        if start is None and re.match(r"\s*train\b", code):
            start = number
        if start is not None and "}" in code:
            spans.append((start, number))
            start = None
    return spans


def _statements(spec: Spec, printer: _Printer) -> list[_Statement]:
    lines = printer.lines
    header, body, expects, train = [], [], [], []
    for number, text in enumerate(lines, 1):
        if spec.name is not None and re.match(r"\s*network\b", _code(text)):
            header.append(_Statement(number, number, [_Entry(number, f"network {spec.name}")]))
            break
    if spec.input is not None:
        line = spec.input.loc.line
        header.append(_Statement(line, line, [_Entry(line, f"input {printer.arg(spec.input)}")]))
    items = sorted([*spec.blocks, *spec.chains], key=lambda item: (item.loc.line, item.loc.col))
    for item in items:
        entries = printer.block(item) if isinstance(item, Block) else printer.chain(item, "")
        spaced = isinstance(item, Block) and len(entries) > 1  # a multi-line block stands apart
        body.append(_Statement(item.loc.line, item.loc.end_line, entries, spaced))
    if spec.outputs:
        line = spec.outputs_loc.line
        names = ", ".join(ref.name for ref in spec.outputs)
        body.append(_Statement(line, line, [_Entry(line, f"output {names}")], True))
    for expect in spec.expects:
        expects.append(_Statement(expect.loc.line, expect.loc.end_line, [printer.expect(expect)]))
    spans = _train_spans(lines)
    if spec.train and spans:
        entries = [_Entry(spans[0][0], "train {")]
        entries += [printer.setting(s) for s in spec.train]
        entries.append(_Entry(spans[-1][1], "}"))
        train.append(_Statement(spans[0][0], spans[-1][1], entries))
    for group in (body, expects, train):
        if group:
            group[0].blank_before = True
    return [*header, *body, *expects, *train]


def _blank_above(lines: list[str], line: int) -> bool:
    return line >= 2 and not lines[line - 2].strip()


def _place_comments(statements: list[_Statement], comments: list[_Comment], lines) -> list:
    """Attach each comment to the statement it sits in, or above; the rest end the file."""
    by_start = sorted(statements, key=lambda s: s.first)
    leading: dict[int, list[tuple[_Comment, bool]]] = {id(s): [] for s in statements}
    footer, preamble = [], []
    top = by_start[0].first if by_start else None
    for comment in comments:
        if top is not None and comment.line < top and comment.own_line:
            preamble.append((comment, _blank_above(lines, comment.line)))
            continue
        inside = next((s for s in by_start if s.first <= comment.line <= s.last), None)
        if inside is not None:
            if comment.own_line and comment.line > inside.first:
                at = next(
                    (i for i, e in enumerate(inside.entries) if e.anchor > comment.line),
                    len(inside.entries),
                )
                indent = re.match(r"\s*", inside.entries[min(at, len(inside.entries) - 1)].code)
                inside.entries.insert(
                    at, _Entry(comment.line, indent.group(0) + comment.text, comment_only=True)
                )
            else:
                owner = [
                    e for e in inside.entries if e.anchor <= comment.line and not e.comment_only
                ]
                (owner or inside.entries)[-1].trailing.append(comment.text)
            continue
        after = next((s for s in by_start if s.first > comment.line), None)
        blank = _blank_above(lines, comment.line)
        if after is None:
            footer.append((comment, blank))
        else:
            leading[id(after)].append((comment, blank))
    return preamble, leading, footer


def _align(out: list[tuple[str, list[str]]]) -> list[str]:
    """Join code and trailing comments, aligning runs of consecutive commented lines."""
    result, run = [], []

    def flush():
        width = max(len(code) for code, _ in run) + 2
        result.extend(f"{code.ljust(width)}{' '.join(trail)}" for code, trail in run)
        run.clear()

    for code, trail in out:
        if trail and code.strip():
            run.append((code, trail))
            continue
        if run:
            flush()
        result.append(code)
    if run:
        flush()
    return result


def format_source(source: str, path: str = "<spec>") -> str:
    """The canonical text of a spec; raises SpecError when it does not parse."""
    spec = parse(source, path)
    if spec.header_locs:
        raise SpecError(
            Diagnostic(
                "a second `network` or `input` line; fmt keeps one of each",
                spec.header_locs[0],
                path=path,
                fix="delete the extra line",
            )
        )
    printer = _Printer(source)
    statements = _statements(spec, printer)
    preamble, leading, footer = _place_comments(statements, _comments(source), printer.lines)
    out: list[tuple[str, list[str]]] = []

    def blank():
        if out and out[-1][0]:
            out.append(("", []))

    for comment, blank_above in preamble:
        if blank_above:
            blank()
        out.append((comment.text, []))
    if preamble and statements and _blank_above(printer.lines, min(s.first for s in statements)):
        blank()

    for statement in statements:
        notes = leading[id(statement)]
        if (
            statement.blank_before
            or (notes and notes[0][1])
            or _blank_above(printer.lines, notes[0][0].line if notes else statement.first)
        ):
            blank()
        for number, (comment, blank_above) in enumerate(notes):
            if number and blank_above:
                blank()
            out.append((comment.text, []))
        if notes and _blank_above(printer.lines, statement.first):
            blank()
        out += [(e.code, e.trailing) for e in statement.entries]
    for comment, blank_above in footer:
        if blank_above:
            blank()
        out.append((comment.text, []))
    text = "\n".join(line.rstrip() for line in _align(out)).strip("\n") + "\n"
    _verify(spec, text, path)
    return text


def _option_index(kind, arg, last: bool) -> int | None:
    """Where an argument stands in its kind's registry options (as expand reads it), or None."""
    names = [o.name for o in kind.options]
    positional = next((o.name for o in kind.options if o.positional), None)
    if positional is None and "kernel" in names and "filters" not in names:
        positional = "kernel"
    if isinstance(arg, FiltersArg):
        target = "filters"
    elif isinstance(arg, KwArg):
        target = arg.key
    elif isinstance(arg, Dims):
        target = "kernel" if "kernel" in names else positional
    elif isinstance(arg, Ref):
        word = next((o.name for o in kind.options if arg.name in o.words), None)
        match = re.fullmatch(r"([a-z]+)([0-9]+(?:x[0-9]+)?|[0-9]*\.[0-9]+)", arg.name)
        short = match and next((o.name for o in kind.options if o.short == match.group(1)), None)
        if word or short:
            target = word or short
        elif re.fullmatch(r"x[A-Za-z_]\w*", arg.name):
            return len(names) if last else None  # `xn`, a repeat, stays last
        else:
            target = positional  # a parameter's value
    else:
        target = positional
    return names.index(target) if target in names else None


def canonical_args(node: Layer | Merge) -> tuple:
    """A layer's arguments in its registry's option order (`CONV 16@3x3 p1 s2` -> `... s2 p1`);
    as written when one of them is not an argument of the kind (that is an error to keep)."""
    from .layers import REGISTRY

    kind = REGISTRY.get(node.kind)
    if kind is None:
        return node.args
    count = len(node.args)
    places = [_option_index(kind, a, i == count - 1) for i, a in enumerate(node.args)]
    if None in places:
        return node.args
    order = sorted(range(count), key=lambda i: (places[i], i))
    return tuple(node.args[i] for i in order)


def _bare(node):
    """The AST without locations and file text: what a spec means."""
    if isinstance(node, tuple | list):
        return tuple(_bare(item) for item in node)
    if isinstance(node, Layer | Merge):
        node = dataclasses.replace(node, args=canonical_args(node))  # the order has no meaning
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        skip = {"loc", "target_loc", "path", "source", "header_locs", "outputs_loc"}
        return (
            type(node).__name__,
            *(_bare(getattr(node, f.name)) for f in dataclasses.fields(node) if f.name not in skip),
        )
    return node


def same_meaning(a: Spec, b: Spec) -> bool:
    return _bare(a) == _bare(b)


def _verify(spec: Spec, text: str, path: str) -> None:
    try:
        again = parse(text, path)
    except SpecError as error:
        raise AssertionError(f"cnnc fmt produced a spec that does not parse: {error}") from None
    if not same_meaning(spec, again):
        raise AssertionError(f"cnnc fmt would change the meaning of {path}; file a bug")
