"""parse: .cnn text -> Spec, a frozen AST that keeps every source location.

The Transformer only builds nodes; every semantic check happens in later passes, so that no
error ever comes back wrapped in lark's VisitError.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

import lark
from lark import Token, Transformer, v_args

from .errors import Diagnostic, Loc, SpecError, did_you_mean, kind_for, kind_hint

MAX_SOURCE_BYTES = 1 << 18  # 100 times the largest zoo spec; parsing 1 MB takes seconds
MAX_NESTING = 64
MAX_DIGITS = 1000  # far past any float; Python's int() stops at 4,300

# ---- the AST ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    value: int | float
    loc: Loc


@dataclass(frozen=True)
class Ref:
    name: str
    loc: Loc


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Expr
    right: Expr
    loc: Loc


@dataclass(frozen=True)
class Neg:
    operand: Expr
    loc: Loc


@dataclass(frozen=True)
class Attr:
    """A size of a tensor in scope: `in.c`, `y.h`, `in.w`."""

    tensor: str
    field: str
    loc: Loc


Expr = Num | Ref | BinOp | Neg | Attr


@dataclass(frozen=True)
class Compare:
    op: str
    left: Expr
    right: Expr
    loc: Loc


@dataclass(frozen=True)
class Logic:
    op: str  # "and" | "or"
    left: Condition
    right: Condition
    loc: Loc


@dataclass(frozen=True)
class Not:
    operand: Condition
    loc: Loc


Condition = Compare | Logic | Not


@dataclass(frozen=True)
class Dims:
    """A literal `AxBxC`."""

    values: tuple[int, ...]
    loc: Loc


@dataclass(frozen=True)
class FiltersArg:
    """`count@KxK` or `count@k`."""

    count: Expr
    kernel: Dims | Expr
    loc: Loc


@dataclass(frozen=True)
class KwArg:
    key: str
    value: Expr | Dims
    loc: Loc


Arg = FiltersArg | KwArg | Dims | Expr


@dataclass(frozen=True)
class Layer:
    kind: str
    args: tuple[Arg, ...]
    repeat: int  # a trailing `xn` (repeat from a parameter) is still the last of args here
    loc: Loc


@dataclass(frozen=True)
class CallArg:
    key: str | None
    value: Expr
    loc: Loc


@dataclass(frozen=True)
class Call:
    block: str
    args: tuple[CallArg, ...]
    repeat: int | Ref  # `x3`, or `xn`: Ref("xn"), n a parameter
    loc: Loc


@dataclass(frozen=True)
class Merge:
    kind: str
    inputs: tuple[Ref, ...]
    loc: Loc
    args: tuple = ()  # the merge kind's own arguments, after the parenthesis


Link = Layer | Call | Ref | Merge


@dataclass(frozen=True)
class Chain:
    links: tuple[Link, ...]
    loc: Loc


@dataclass(frozen=True)
class If:
    """`if condition { ... } else { ... }` in a block body; `otherwise` may hold one If."""

    condition: Condition
    then: tuple[Chain | If, ...]
    otherwise: tuple[Chain | If, ...]
    loc: Loc


@dataclass(frozen=True)
class Param:
    name: str
    default: Expr | None
    loc: Loc


@dataclass(frozen=True)
class Block:
    name: str
    params: tuple[Param, ...]
    chains: tuple[Chain | If, ...]
    loc: Loc


@dataclass(frozen=True)
class Expect:
    target: str
    op: str
    value: int | float | tuple[int, ...]
    loc: Loc
    target_loc: Loc


@dataclass(frozen=True)
class Setting:
    key: str
    values: tuple[Expr | KwArg, ...]
    loc: Loc


@dataclass(frozen=True)
class Spec:
    path: str
    source: str
    name: str | None
    input: Dims | None
    blocks: tuple[Block, ...]
    chains: tuple[Chain, ...]
    expects: tuple[Expect, ...]
    train: tuple[Setting, ...]
    header_locs: tuple[Loc, ...] = ()  # every `network`/`input` line, to report duplicates
    outputs: tuple[Ref, ...] = ()  # `output p3, p4, p5`: the network's named heads
    outputs_loc: Loc | None = None


# ---- lark -> AST -------------------------------------------------------------------------------

UNITS = {"k": 1_000, "M": 1_000_000, "G": 1_000_000_000}


def number_value(text: str) -> int | float:
    if text[-1] in UNITS:
        value = float(text[:-1]) * UNITS[text[-1]]
        return int(value) if value == int(value) else value
    return int(text) if text.isdigit() else float(text)


def dims_value(token: Token) -> Dims:
    return Dims(tuple(int(v) for v in token.split("x")), Loc.of(token))


def span(first: Loc, last: Loc) -> Loc:
    return Loc(first.line, first.col, last.end_line, last.end_col)


def loc_of(node) -> Loc:
    return node.loc if hasattr(node, "loc") else Loc.of(node)


def _binop(op: str, items) -> BinOp:
    left, right = items
    return BinOp(op, left, right, span(left.loc, right.loc))


class _ToAst(Transformer):
    def number(self, items):
        (token,) = items
        return Num(number_value(token), Loc.of(token))

    def ref(self, items):
        (token,) = items
        return Ref(str(token), Loc.of(token))

    def dims(self, items):
        return dims_value(items[0])

    def add(self, items):
        return _binop("+", items)

    def sub(self, items):
        return _binop("-", items)

    def mul(self, items):
        return _binop("*", items)

    def div(self, items):
        return _binop("/", items)

    def floordiv(self, items):
        return _binop("//", items)

    @v_args(meta=True)
    def neg(self, meta, items):
        return Neg(items[0], Loc.of(meta))

    def attr(self, items):
        tensor, field = items
        return Attr(str(tensor), str(field), span(Loc.of(tensor), Loc.of(field)))

    def comparison(self, items):
        left, op, right = items
        return Compare(str(op), left, right, span(left.loc, right.loc))

    def either(self, items):
        return Logic("or", items[0], items[1], span(items[0].loc, items[1].loc))

    def both(self, items):
        return Logic("and", items[0], items[1], span(items[0].loc, items[1].loc))

    @v_args(meta=True)
    def negate(self, meta, items):
        return Not(items[0], Loc.of(meta))

    def then(self, items):
        return tuple(items)

    def otherwise(self, items):
        return tuple(items)

    @v_args(meta=True)
    def cond(self, meta, items):
        condition, then, otherwise = items
        otherwise = (otherwise,) if isinstance(otherwise, If) else otherwise or ()
        return If(condition, then, otherwise, Loc.of(meta))

    def target(self, items):
        return ".".join(map(str, items)), span(Loc.of(items[0]), Loc.of(items[-1]))

    @v_args(meta=True)
    def outputs(self, meta, items):
        return ("outputs", tuple(Ref(str(t), Loc.of(t)) for t in items), Loc.of(meta))

    def filters(self, items):
        count, kernel = items
        kernel = dims_value(kernel) if isinstance(kernel, Token) else kernel
        return FiltersArg(count, kernel, span(count.loc, kernel.loc))

    def kwarg(self, items):
        key, value = items
        value = dims_value(value) if isinstance(value, Token) else value
        return KwArg(str(key), value, span(Loc.of(key), value.loc))

    def layer(self, items):
        kind, *args, repeat = items
        end = loc_of(repeat) if repeat is not None else (args[-1].loc if args else Loc.of(kind))
        return Layer(
            str(kind), tuple(args), int(repeat[1:]) if repeat else 1, span(Loc.of(kind), end)
        )

    def branches(self, items):
        return tuple(items)

    def merge(self, items):
        kind, inputs, *args = items
        end = args[-1].loc if args else inputs[-1].loc
        return Merge(str(kind), inputs, span(Loc.of(kind), end), tuple(args))

    @v_args(meta=True)
    def call_arg(self, meta, items):
        key, value = items
        return CallArg(str(key) if key is not None else None, value, Loc.of(meta))

    @v_args(meta=True)
    def call(self, meta, items):
        name, *args, repeat = items
        args = tuple(a for a in args if a is not None)
        if repeat is not None and repeat.type == "NAME":
            repeat = Ref(str(repeat), Loc.of(repeat))
        elif repeat is not None:
            repeat = int(repeat[1:])
        return Call(str(name), args, repeat or 1, Loc.of(meta))

    def chain(self, items):
        return Chain(tuple(items), span(items[0].loc, items[-1].loc))

    @v_args(meta=True)
    def param(self, meta, items):
        name, default = items
        return Param(str(name), default, Loc.of(meta))

    @v_args(meta=True)
    def block(self, meta, items):
        name, *rest = items
        params = tuple(p for p in rest if isinstance(p, Param))
        chains = tuple(c for c in rest if isinstance(c, Chain | If))
        return Block(str(name), params, chains, Loc.of(meta))

    @v_args(meta=True)
    def expect(self, meta, items):
        target, op, value = items
        value = dims_value(value).values if isinstance(value, Token) else value.value
        name, loc = (str(target), Loc.of(target)) if isinstance(target, Token) else target
        return Expect(name, str(op), value, Loc.of(meta), loc)

    @v_args(meta=True)
    def setting(self, meta, items):
        key, *values = items
        return Setting(str(key), tuple(values), Loc.of(meta))

    @v_args(meta=True)
    def train(self, meta, items):
        return ("train", tuple(items))

    @v_args(meta=True)
    def network(self, meta, items):
        return ("network", str(items[0]), Loc.of(meta))

    @v_args(meta=True)
    def input(self, meta, items):
        token = items[0]
        return ("input", dims_value(token), Loc.of(meta))


class _JoinContinuations:
    """Postlexer: a newline followed by `->` continues the chain instead of ending the statement."""

    always_accept = ("_NL",)

    def process(self, stream):
        pending = None
        for token in stream:
            if token.type == "_NL":
                pending = pending or token
                continue
            if pending is not None and token != "->":
                yield pending
            pending = None
            yield token
        if pending is not None:
            yield pending


_PARSER_OPTIONS = dict(
    parser="lalr",
    lexer="basic",  # the contextual lexer would lex the token after a newline too early
    propagate_positions=True,
    maybe_placeholders=True,
)
MAX_TABLE_BYTES = 1 << 22  # the analysed grammar is about 130 kB of JSON


def _table_file(digest: str) -> Path | None:
    """Where the analysed grammar is kept between runs, as JSON named by the grammar's digest.

    Never a pickle: building the LALR tables takes 0.15 s and loading this JSON 0.02 s, so it
    is worth keeping, but a file in a user's cache folder must not be able to run code. JSON
    holds only data; lark rebuilds its objects from a fixed namespace (Rule, TerminalDef).
    """
    try:
        folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnnc"
    except (OSError, RuntimeError):
        return None
    return folder / f"grammar-{digest[:16]}.json"


def _encode(value):
    """JSON keeps only string keys and lists; tag int-keyed dicts and tuples to restore them."""
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _encode(v) for k, v in value.items()}
        return {"__items": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot store {type(value).__name__}")


def _decode(value):
    if isinstance(value, dict):
        if len(value) == 1 and "__items" in value:
            return {_decode(k): _decode(v) for k, v in value["__items"]}
        if len(value) == 1 and "__tuple" in value:
            return tuple(_decode(v) for v in value["__tuple"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _load_table(path: Path, digest: str) -> lark.Lark | None:
    import hashlib
    import json

    try:
        fd = os.open(
            path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        )
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            raw = handle.read(MAX_TABLE_BYTES + 1)
        stored = json.loads(raw)
        payload = stored["payload"]
        text = json.dumps(payload, sort_keys=True)
        if (
            stored["grammar"] != digest
            or stored["sha256"] != hashlib.sha256(text.encode()).hexdigest()
        ):
            return None
        data, memo = _decode(payload)
        return lark.Lark._load_from_dict(data, memo, postlex=_JoinContinuations())
    except Exception:  # any damage at all: build the parser from the grammar instead
        return None


def _save_table(parser: lark.Lark, path: Path, digest: str) -> None:
    import hashlib
    import json

    try:
        data, memo = parser.memo_serialize([lark.lexer.TerminalDef, lark.grammar.Rule])
        data["options"] = {k: v for k, v in data["options"].items() if k != "postlex"}
        payload = _encode([data, memo])
        text = json.dumps(payload, sort_keys=True)
        stored = {"grammar": digest, "sha256": hashlib.sha256(text.encode()).hexdigest()}
        path.parent.mkdir(parents=True, exist_ok=True)
        from .files import write_bytes_atomic

        write_bytes_atomic(path, json.dumps({**stored, "payload": payload}).encode())
    except (OSError, TypeError, ValueError):
        pass  # no cache, only a slower start next time


@cache
def _parser() -> lark.Lark:
    import hashlib

    grammar = files(__package__).joinpath("cnn.lark").read_text()
    key = f"{grammar}\n{lark.__version__}\n{sorted(_PARSER_OPTIONS.items())}"
    digest = hashlib.sha256(key.encode()).hexdigest()
    path = _table_file(digest)
    parser = _load_table(path, digest) if path is not None else None
    if parser is None:
        parser = lark.Lark(grammar, postlex=_JoinContinuations(), **_PARSER_OPTIONS)
        if path is not None:
            _save_table(parser, path, digest)
    return parser


# ---- friendly syntax errors ---------------------------------------------------------------------

# The regex terminals; literal ones (`->`, `(`, `network`) are described by their own text.
TERMINAL_WORDS = {
    "KIND": "a layer keyword such as CONV",
    "NAME": "a name",
    "INT": "a number",
    "FLOAT": "a number",
    "QUANTITY": "a number",
    "DIMS": "a size such as 3x3",
    "REPEAT": "a repeat such as x2",
    "COMPARE": "a comparison such as == or <=",
    "_NL": "the end of the line",
    "$END": "the end of the file",
}
KEYWORDS = ("NETWORK", "INPUT", "BLOCK", "EXPECT", "TRAIN", "OUTPUT", "IF", "ELSE", "AND", "OR")
KEYWORDS += ("NOT",)
ARROW = "__ANON_0"  # lark's name for the anonymous `->` terminal


@cache
def _terminal_words() -> dict[str, str]:
    literals = {
        t.name: f"`{t.pattern.value}`" for t in _parser().terminals if t.pattern.type == "str"
    }
    return {**literals, **TERMINAL_WORDS}


def _describe_token(token) -> str:
    if token is None or token.type == "$END":
        return "end of file"
    if token.type == "_NL":
        return "end of line"
    return f"`{token}`"


def _expected_words(expected) -> str:
    words = _terminal_words()
    described = sorted({words.get(t, f"`{t.lower()}`") for t in expected})
    return ", ".join(described[:6]) if described else "something else"


def _word_before(source: str, line: int, col: int) -> str:
    text = source.split("\n")[line - 1][: col - 1] if line else ""
    match = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*$", text)
    return match.group(1) if match else ""


def _unclosed_brace(source: str) -> Loc | None:
    opened = []
    for number, text in enumerate(source.split("\n"), 1):
        for col, char in enumerate(text.split("#")[0], 1):
            if char == "{":
                opened.append(Loc(number, col, number, col + 1))
            elif char == "}" and opened:
                opened.pop()
    return opened[-1] if opened else None


def _token_fix(token, expected, source: str) -> tuple[str | None, str | None]:
    """A better message and a fix for the common slips, as (message or None, fix or None)."""
    from .layers import REGISTRY  # layer names for "did you mean"

    kind, text = token.type, str(token)
    previous = _word_before(source, token.line, token.column)
    line = source.split("\n")[token.line - 1]
    spaced = line[token.column - 2 : token.column - 1].isspace()
    if "_NL" in expected and spaced and (kind in ("KIND", "NAME") or kind in KEYWORDS):
        # The token could start a statement, but the line has not ended.
        forgot = ARROW in expected and kind in ("KIND", "NAME")
        return (
            "one statement per line" + ("; did you forget `->`?" if forgot else ""),
            f"write `-> {text}` to chain it, or start a new line" if forgot else "start a new line",
        )
    if kind in KEYWORDS and "NAME" in expected:
        return f"`{text}` is a keyword and cannot be a name", "choose another name"
    if kind == "KIND" and "NAME" in expected and "KIND" not in expected:
        return None, f"names are lowercase; capitals are for layer keywords: `{text.lower()}`"
    for word in (previous, text if kind == "NAME" else ""):
        spelled = kind_for(word, REGISTRY) if word and not word.isupper() else None
        if spelled == word.upper():
            return None, f"layer keywords are written in capitals: `{spelled}`"
        if spelled is not None:
            return None, f"did you mean `{spelled}`? layer keywords are written in capitals"
    if kind == "NAME" and "KIND" in expected:
        return None, did_you_mean(text.upper(), REGISTRY) or None
    if kind == "KIND" and text not in REGISTRY:
        return None, kind_hint(text, REGISTRY) or None
    if text == "->" and "KIND" in expected:
        return None, "put a layer, a block call or a name between the arrows"
    if kind == "_NL" and line.count("(") > line.count(")"):
        return None, "close the parenthesis on the same line"
    return None, None


def _syntax_diagnostic(
    error: lark.exceptions.UnexpectedInput, path: str, source: str
) -> Diagnostic:
    line, col = error.line, error.column
    if isinstance(error, lark.exceptions.UnexpectedCharacters):
        char = source[error.pos_in_stream] if error.pos_in_stream < len(source) else "?"
        return Diagnostic(
            f"unexpected character {char!r}",
            Loc(line, col, line, col + 1),
            fix="layer arguments are words and numbers: `6@5x5`, `s2`, `p1`, `max`, `key=value`",
            path=path,
        )
    token = getattr(error, "token", None)
    expected = getattr(error, "expected", None) or getattr(error, "accepts", None) or set()
    message = f"unexpected {_describe_token(token)}; expected {_expected_words(expected)}"
    if token is None or token.type == "$END":
        brace = _unclosed_brace(source) if "RBRACE" in expected else None
        if brace is not None:
            return Diagnostic(
                "this `{` is never closed",
                brace,
                fix="add `}` after the last line of the block",
                path=path,
            )
        lines = source.split("\n")
        line, col = len(lines), len(lines[-1]) + 1
        return Diagnostic(message, Loc(line, col, line, col + 1), path=path)
    loc = Loc(token.line, token.column, token.end_line or token.line, token.end_column or col + 1)
    better, fix = _token_fix(token, expected, source)
    return Diagnostic(better or message, loc, fix=fix, path=path)


def _too_deep(source: str) -> int | None:
    """The offset where bracket nesting passes MAX_NESTING, which would exhaust the recursion."""
    depth = 0
    for offset, char in enumerate(source):
        depth += char in "({"
        depth -= char in ")}"
        if depth > MAX_NESTING:
            return offset
    return None


def _loc_at(source: str, offset: int) -> Loc:
    line = source.count("\n", 0, offset) + 1
    col = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return Loc(line, col, line, col + 1)


def decode(data: bytes, path: str) -> str:
    if len(data) > MAX_SOURCE_BYTES:
        raise SpecError(
            Diagnostic(
                f"the file is over {MAX_SOURCE_BYTES:,} bytes, the most a spec may have",
                path=path,
                fix="is this really a .cnn spec? blocks and `xN` repeats keep big nets short",
            )
        )
    try:
        text = data.decode("utf-8-sig")  # a BOM is harmless
    except UnicodeDecodeError as error:
        raise SpecError(
            Diagnostic(
                f"the file is not UTF-8 text (byte {error.start} is 0x{data[error.start]:02x})",
                _loc_at(data[: error.start].decode("utf-8", "replace"), error.start),
                path=path,
                fix="save the spec as UTF-8 text",
            )
        ) from None
    if "\x00" in text:
        raise SpecError(
            Diagnostic(
                "the file contains NUL bytes; it looks binary",
                _loc_at(text, text.index("\x00")),
                path=path,
            )
        )
    return text


MAX_SYNTAX_ERRORS = 20


class SyntaxErrors(SpecError):
    """Every independent syntax error of a file; `repaired` is the source with each failed
    statement blanked out (lines kept), when that parses, for finding the other errors."""

    def __init__(self, diagnostics: list[Diagnostic], repaired: str | None):
        super().__init__(diagnostics)
        self.repaired = repaired


def _items(source: str, path: str) -> list:
    """The parsed statements; after a syntax error the parse starts again with the failed
    statement blanked out, so that one run reports every independent syntax error."""
    found: list[Diagnostic] = []
    text = source
    for _ in range(MAX_SYNTAX_ERRORS):
        try:
            items = _ToAst().transform(_parser().parse(text)).children
        except lark.exceptions.UnexpectedInput as error:
            diagnostic = _syntax_diagnostic(error, path, text)
            token = getattr(error, "token", None)
            again = any(d.loc == diagnostic.loc for d in found)
            if not again:
                found.append(diagnostic)
            at_end = isinstance(error, lark.exceptions.UnexpectedEOF) or (
                token is not None and token.type == "$END"
            )
            if again or at_end:
                raise SyntaxErrors(found, None) from None
            text = _blank_statement(text, diagnostic.loc.line)
            continue
        except RecursionError:
            found.append(Diagnostic("the spec nests too deeply to read", path=path))
            raise SyntaxErrors(found, None) from None
        if found:
            raise SyntaxErrors(found, text)
        return items
    raise SyntaxErrors(found, None)


def _blank_statement(text: str, line: int) -> str:
    """The text with the statement on `line` replaced by `in` (a statement that parses anywhere,
    so a block whose one chain failed still has a body), lines kept: its continuation lines
    (`->`, `\\`) and any brackets it opens up to where they close; a `}` it closes is kept."""
    lines = text.split("\n")

    def code(number: int) -> str:
        return lines[number - 1].split("#")[0]

    first = last = min(max(line, 1), len(lines))
    while first > 1 and (code(first).lstrip().startswith("->") or code(first - 1).endswith("\\")):
        first -= 1

    def depth(open_: str, close: str) -> int:
        return sum(code(n).count(open_) - code(n).count(close) for n in range(first, last + 1))

    while last < len(lines) and (
        code(last + 1).lstrip().startswith("->")
        or code(last).rstrip().endswith("\\")
        or depth("(", ")") > 0
        or depth("{", "}") > 0
    ):
        last += 1
    opened = sum(code(n).count("{") - code(n).count("}") for n in range(1, first))
    closes = min(max(0, -depth("{", "}")), max(0, opened))  # a stray `}` goes too
    blanked = ["in " + "}" * closes] + [""] * (last - first)
    return "\n".join(lines[: first - 1] + blanked + lines[last:])


def parse(source: str, path: str = "<spec>") -> Spec:
    """Parse .cnn text into a Spec, raising SpecError with a located, friendly message."""
    long_number = re.search(rf"\d{{{MAX_DIGITS + 1},}}", source)
    if long_number is not None:  # int() refuses over 4,300 digits; none is meaningful here
        start, end = long_number.span()
        loc = _loc_at(source, start)
        raise SpecError(
            Diagnostic(
                f"a number with {end - start:,} digits; a spec's numbers have at most {MAX_DIGITS}",
                Loc(loc.line, loc.col, loc.line, loc.col + min(end - start, 120)),
                path=path,
                fix="is it the number you meant? sizes, counts and rates are far smaller",
            )
        )
    deep = _too_deep(source)
    if deep is not None:
        raise SpecError(
            Diagnostic(
                f"brackets nest deeper than {MAX_NESTING} levels",
                _loc_at(source, deep),
                path=path,
                fix="simplify the expression",
            )
        )
    items = _items(source, path)

    headers = {"network": [], "input": []}
    blocks, chains, expects, train, outputs = [], [], [], [], []
    for item in items:
        if isinstance(item, tuple) and item[0] == "outputs":
            outputs.append(item)
        elif isinstance(item, tuple) and item[0] in headers:
            headers[item[0]].append(item)
        elif isinstance(item, tuple) and item[0] == "train":
            train.extend(item[1])
        elif isinstance(item, Block):
            blocks.append(item)
        elif isinstance(item, Chain):
            chains.append(item)
        elif isinstance(item, Expect):
            expects.append(item)
    name = headers["network"][0][1] if headers["network"] else None
    shape = headers["input"][0][1] if headers["input"] else None
    header_locs = tuple(h[2] for group in headers.values() for h in group[1:])
    header_locs += tuple(o[2] for o in outputs[1:])
    return Spec(
        path,
        source,
        name,
        shape,
        tuple(blocks),
        tuple(chains),
        tuple(expects),
        tuple(train),
        header_locs,
        outputs[0][1] if outputs else (),
        outputs[0][2] if outputs else None,
    )


def parse_file(path: str) -> Spec:
    with open(path, "rb") as handle:
        data = handle.read(MAX_SOURCE_BYTES + 1)
    return parse(decode(data, path), path)
