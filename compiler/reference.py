"""The layer reference, written from the registry: every kind, how each argument is written, and
its default. `cnnc layers` prints it, so a new kind is documented by its registry entry."""

from __future__ import annotations

from .layers import KINDS, REQUIRED, LayerKind, Option, fmt


def _default(option: Option) -> str:
    value = option.default
    if value is REQUIRED:
        return "required"
    if value is None:
        return option.help.partition("default: ")[2].rstrip(")") or "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return str(value[0]) if len(set(value)) == 1 else fmt(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _forms(option: Option, kind: LayerKind) -> list[str]:
    """The ways to write one argument, as a reader types them."""
    if option.name == "filters":
        return ["F@KxK"]
    if option.name == "kernel" and any(o.name == "filters" for o in kind.options):
        return ["KxK (keeps the channels)"]
    forms = []
    if option.positional or (option.name == "kernel" and option.kind == "pair"):
        forms.append({"pair": "AxB", "float": "X", "count": "N"}.get(option.kind, "N"))
    if option.short:
        forms.append(f"{option.short}N")
    if option.kind == "padding":  # top, left, bottom, right
        forms.append(f"{option.name}=TxLxBxR")
    forms += [f"{word}" for word in option.words]
    if option.kind != "bool" and option.kind != "choice" and not option.short:
        forms.append(f"{option.name}=")
    return forms


def arguments(kind: LayerKind) -> list[tuple[str, str, str]]:
    """(name, forms, default) of each argument of a kind."""
    return [
        (option.name, " ".join(f"`{f}`" for f in _forms(option, kind)), _default(option))
        for option in kind.options
    ]


def _usage(kind: LayerKind) -> str:
    if not kind.merge:
        return kind.name
    return f"{kind.name}(a, b)" if kind.arity[1] == 2 else f"{kind.name}(a, b, ...)"


def markdown() -> str:
    lines = ["| layer | what it computes | arguments (default) |", "|---|---|---|"]
    for kind in KINDS:
        args = "; ".join(f"{forms} {name} ({default})" for name, forms, default in arguments(kind))
        usage = f"`{_usage(kind)}`"
        lines.append(f"| {usage} | {kind.summary} | {args or 'none'} |")
    return "\n".join(lines) + "\n"


def text() -> str:
    lines = []
    for kind in KINDS:
        usage = _usage(kind)
        lines.append(f"{usage:<18} {kind.summary}")
        for name, forms, default in arguments(kind):
            lines.append(f"    {name:<10} {forms.replace('`', ''):<32} default {default}")
    return "\n".join(lines) + "\n"
