"""arguments: a layer's written arguments (`6@5x5 s2 p1`, `stride=2`, `max`) -> the values of
its registry entry's options, each checked against the option's kind, with a located problem and
the kind's usage for anything else."""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import Loc, Problems, did_you_mean, kind_for
from .layers import REGISTRY, REQUIRED, LayerKind, Option
from .syntax import Dims, FiltersArg, KwArg, Layer, Merge

MAX_DIM = 1 << 20

Evaluate = Callable[..., object]


def interpret(
    layer: Layer | Merge, kind: LayerKind, evaluate: Evaluate, problems: Problems
) -> dict | None:
    """A layer's arguments as its registry entry's options, in the entry's order (None after a
    problem). `evaluate(expr, words_ok)` reads an expression in the caller's scope."""
    options = {option.name: option for option in kind.options}
    attrs: dict = {}
    given: dict[str, Loc] = {}
    before = len(problems.found)

    def assign(option: Option, value, loc: Loc) -> None:
        if option.name in given:
            problems.add(
                f"{kind.name} gets `{option.name}` twice",
                loc,
                notes=[f"first given at column {given[option.name].col}"],
                fix="keep one of them",
            )
            return
        converted = _convert(option, value, loc, kind, problems)
        if converted is not None:
            attrs[option.name], given[option.name] = converted, loc

    positional = next((o for o in kind.options if o.positional), None)
    if positional is None and "kernel" in options and "filters" not in options:
        positional = options["kernel"]  # `POOL max 3 s2`: a square window as one number
    for arg in layer.args:
        if isinstance(arg, FiltersArg):
            if "filters" not in options:
                problems.add(f"{kind.name} takes no `filters@kernel`", arg.loc, fix=usage(kind))
                continue
            assign(options["filters"], evaluate(arg.count), arg.loc)
            kernel = arg.kernel.values if isinstance(arg.kernel, Dims) else evaluate(arg.kernel)
            assign(options["kernel"], kernel, arg.loc)
        elif isinstance(arg, Dims):
            target = options.get("kernel") or positional
            if target is None:
                problems.add(
                    f"{kind.name} takes no size `{'x'.join(map(str, arg.values))}`",
                    arg.loc,
                    fix=usage(kind),
                )
                continue
            assign(target, arg.values, arg.loc)
        elif isinstance(arg, KwArg):
            option = options.get(arg.key)
            if option is None:
                short = next((o for o in kind.options if o.short == arg.key), None)
                hint = did_you_mean(arg.key, options)
                if short is not None:
                    hint = f"`key=value` takes the full name: `{short.name}=...`"
                problems.add(
                    f"{kind.name} has no argument `{arg.key}`",
                    arg.loc,
                    fix=hint or usage(kind),
                )
                continue
            value = arg.value.values if isinstance(arg.value, Dims) else evaluate(arg.value, True)
            assign(option, value, arg.loc)
        else:
            value = evaluate(arg, True)
            if value is None:
                continue
            if isinstance(value, str):
                _word(value, arg.loc, kind, assign, problems)
            elif positional is None:
                problems.add(f"{kind.name} takes no bare number", arg.loc, fix=usage(kind))
            else:
                assign(positional, value, arg.loc)
    if len(problems.found) > before:
        return None
    for option in kind.options:
        if option.name not in attrs:
            if option.default is REQUIRED:
                problems.add(f"{kind.name} needs its {option.name}", layer.loc, fix=usage(kind))
                return None
            attrs[option.name] = option.default
    return {option.name: attrs[option.name] for option in kind.options}  # in one order


def _word(word: str, loc: Loc, kind: LayerKind, assign, problems: Problems) -> None:
    for option in kind.options:
        if word in option.words:
            assign(option, option.words[word], loc)
            return
    match = re.fullmatch(r"([a-z]+)([0-9]+(?:x[0-9]+)*|[0-9]*\.[0-9]+)", word)
    if match:
        for option in kind.options:
            if option.short == match.group(1):
                text = match.group(2)
                value = (
                    tuple(int(v) for v in text.split("x"))
                    if "x" in text
                    else float(text)
                    if "." in text
                    else int(text)
                )
                assign(option, value, loc)
                return
    bare = next((o for o in kind.options if o.short and o.short == word), None)
    if bare is not None:
        problems.add(
            f"`{word}` needs a number: `{word}2` sets the {bare.name} to 2",
            loc,
            fix=f"`{word}1`",
        )
        return
    spelled = kind_for(word, REGISTRY)
    if spelled is not None:
        problems.add(
            f"{kind.name} has no argument `{word}`",
            loc,
            fix=f"to chain a layer, write `-> {spelled}` (layer keywords are capitals)",
        )
        return
    choices = (
        [w for o in kind.options for w in o.words]
        + [f"{o.short}1" for o in kind.options if o.short]
        + [o.name for o in kind.options]
    )
    hint = did_you_mean(word, choices)
    problems.add(f"{kind.name} has no argument `{word}`", loc, fix=hint or usage(kind))


def _convert(option: Option, value, loc: Loc, kind: LayerKind, problems: Problems):
    def bad(expected: str, least: int | None = None):
        shown = "x".join(map(str, value)) if isinstance(value, tuple) else value
        if least is not None and option.short:
            fix = f"`{option.short}{least}` is the smallest"
        elif least is not None and option.positional:
            fix = f"`{kind.name} {least}` is the smallest"
        else:
            fix = usage(kind)
        problems.add(f"{kind.name} {option.name} must be {expected}, not `{shown}`", loc, fix=fix)

    if value is None:
        return None
    if option.kind == "count":
        if isinstance(value, str) and value in option.words.values():
            return value
        if not isinstance(value, int) or isinstance(value, bool):
            return bad("a positive whole number")
        if value < 1:
            return bad("a positive whole number", least=1)
        if value > MAX_DIM:
            return bad(f"at most {MAX_DIM}")
        return value
    if option.kind == "index":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return bad("a whole number from 0")
        if value > MAX_DIM:
            return bad(f"at most {MAX_DIM}")
        return value
    if option.kind in ("pair", "padding"):
        if isinstance(value, str):
            return value if value in option.words.values() else bad("a size such as 3 or 3x3")
        pair = (value, value) if not isinstance(value, tuple) else value
        if len(pair) == 1:
            pair = (pair[0], pair[0])
        least = 0 if option.name in ("pad", "outpad") else 1
        word = "non-negative" if least == 0 else "positive"
        sizes = (2, 4) if option.kind == "padding" else (2,)
        if len(pair) not in sizes or any(not isinstance(v, int) for v in pair):
            if option.kind == "padding":
                return bad("N, HxW or TxLxBxR (top, left, bottom, right)")
            return bad(f"a {word} size such as 3 or 3x3")
        if any(v < least for v in pair):
            return bad(f"a {word} size such as 3 or 3x3", least=least)
        if any(v > MAX_DIM for v in pair):
            return bad(f"at most {MAX_DIM}")
        return tuple(pair)
    if option.kind == "float":
        if not isinstance(value, int | float):
            return bad("a number")
        return float(value)
    if option.kind == "bool":
        if isinstance(value, bool):
            return value
        if value in (0, 1):
            return bool(value)
        return bad("0 or 1")
    if option.kind == "choice":
        if value not in option.words:
            return bad("one of " + ", ".join(option.words))
        return option.words[value]
    raise AssertionError(option.kind)


def usage(kind: LayerKind) -> str:
    parts = []
    for option in kind.options:
        spellings = [f"{option.short}N"] * bool(option.short) + list(option.words)
        if option.name == "filters":
            parts.append("<filters>@<kernel>")
        elif spellings:
            parts.append("/".join(spellings))
        elif option.name == "kernel" and "filters" not in [o.name for o in kind.options]:
            parts.append("<kernel>")
        elif option.positional:
            parts.append(f"<{option.name}>")
        elif option.name != "kernel":
            parts.append(f"{option.name}=N")
    return f"{kind.name} takes: " + " ".join(parts) if parts else f"{kind.name} takes no arguments"
