"""diff: two Checked -> their architectural difference, as a dict and as text or Markdown.

Layers are matched by alignment, not by name: names are numbered by kind (`conv3`), so a layer
inserted early would rename everything after it. The two layer sequences, each layer written as
the spec would write it (`CONV 16@5x5`), are aligned with difflib; a replaced stretch pairs
layers of one kind in order as "changed", the rest are "removed" or "added". A layer that is the
same on both sides but whose output shape moved is listed as "shape". Memory per layer is its
output activation at batch 1 (float32); the totals come from the compiled plans, as in
`cnnc report`.
"""

from __future__ import annotations

import difflib
import subprocess

from .check import Checked, check
from .errors import SpecError
from .expand import expand
from .files import UsageError
from .layers import describe, fmt, numel
from .syntax import parse

BYTES = 4
TOTALS = ("params", "buffers", "macs")
MEMORY = ("forward_activations", "training_total")


def check_source(source: str, path: str, input_shape=None) -> Checked:
    return check(expand(parse(source, path), input_shape), verify_expects=False)


def _side(layer) -> dict:
    node = layer.node
    return {
        "name": node.name,
        "layer": describe(node.kind, node.attrs),
        "output_shape": list(layer.shape),
        "params": layer.param_count,
        "macs": layer.macs,
        "memory": numel(layer.shape) * BYTES,
        "receptive_field": list(layer.rf),
        "line": node.loc.line,
    }


def _delta(a: dict | None, b: dict | None) -> dict:
    return {k: (b[k] if b else 0) - (a[k] if a else 0) for k in ("params", "macs", "memory")}


def _row(change: str, a, b) -> dict:
    a, b = (_side(a) if a else None), (_side(b) if b else None)
    return {"change": change, "a": a, "b": b, "delta": _delta(a, b)}


def _pairs(old: list, new: list) -> list[dict]:
    rows = []
    used = set()
    for a in old:
        j = next(
            (j for j, b in enumerate(new) if j not in used and b.node.kind == a.node.kind), None
        )
        if j is None:
            rows.append(_row("removed", a, None))
        else:
            used.add(j)
            rows.append(_row("changed", a, new[j]))
    rows += [_row("added", None, b) for j, b in enumerate(new) if j not in used]
    return rows


def compare(a: Checked, b: Checked) -> dict:
    from .lower import lower

    left, right = list(a.layers[1:]), list(b.layers[1:])
    keys = [[describe(x.node.kind, x.node.attrs) for x in side] for side in (left, right)]
    matcher = difflib.SequenceMatcher(None, *keys, autojunk=False)
    rows = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for x, y in zip(left[i1:i2], right[j1:j2], strict=True):
                if x.shape != y.shape or x.param_count != y.param_count or x.macs != y.macs:
                    rows.append(_row("shape", x, y))
        else:
            rows += _pairs(left[i1:i2], right[j1:j2])

    def figures(checked: Checked) -> dict:
        memory = {
            "forward_activations": lower(checked, training=False).memory(1)["activations"],
            "training_total": lower(checked, training=True).memory(1)["total"],
        }
        return {
            "params": checked.params,
            "buffers": checked.buffers,
            "macs": checked.macs,
            **memory,
            "receptive_field": list(checked.output.rf),
            "input_shape": list(checked.graph.input_shape),
            "output_shape": list(checked.output.shape),
        }

    fa, fb = figures(a), figures(b)
    totals = {k: {"a": fa[k], "b": fb[k]} for k in fa}
    for k in (*TOTALS, *MEMORY):
        totals[k]["delta"] = fb[k] - fa[k]
    return {
        "a": {"path": a.graph.path, "network": a.graph.name},
        "b": {"path": b.graph.path, "network": b.graph.name},
        "same": not rows and fa == fb,
        "layers": rows,
        "totals": totals,
    }


# ---- rendering -------------------------------------------------------------------------------

MARKS = {"added": "+", "removed": "-", "changed": "~", "shape": " "}


def _signed(value: int, human: bool = False) -> str:
    from .report import human as short

    if not value:
        return "0"
    text = short(abs(value)) if human else f"{abs(value):,}"
    return ("+" if value > 0 else "-") + text


def _figure(key: str, value) -> str:
    from .report import human, human_bytes

    if isinstance(value, list):
        return fmt(tuple(value))
    if key in MEMORY:
        return human_bytes(value)
    return human(value) if key == "macs" else f"{value:,}"


def _total_lines(totals: dict) -> list[tuple[str, str, str, str]]:
    out = []
    for key, t in totals.items():
        if "delta" in t:
            a, b, d = t["a"], t["b"], t["delta"]
            pct = f" ({d / a:+.1%})" if a and d else ""
            delta = ("+" if d > 0 else "-") + _figure(key, abs(d)) + pct if d else "0"
            out.append((key, _figure(key, a), _figure(key, b), delta))
        elif t["a"] != t["b"]:
            out.append((key, _figure(key, t["a"]), _figure(key, t["b"]), "changed"))
    return out


def _cells(row: dict) -> tuple[str, str, str, str]:
    a, b = row["a"], row["b"]
    name = (
        (b or a)["name"]
        if not (a and b and a["name"] != b["name"])
        else f"{a['name']} -> {b['name']}"
    )
    if a and b and a["layer"] != b["layer"]:
        layer = f"{a['layer']} -> {b['layer']}"
    else:
        layer = (b or a)["layer"]
    shapes = [fmt(tuple(s["output_shape"])) for s in (a, b) if s]
    shape = shapes[0] if len(set(shapes)) == 1 else " -> ".join(shapes)
    return name, layer, shape, (b or a)["line"]


def render_text(diff: dict) -> str:
    title = f"{diff['a']['path']} -> {diff['b']['path']}"
    if diff["same"]:
        return f"{title}: no architectural change"
    out = [title]
    rows = [(MARKS[r["change"]], *_cells(r)[:3], r["delta"]) for r in diff["layers"]]
    if rows:
        widths = [max(len(r[i]) for r in rows) for i in range(1, 4)]
        for mark, name, layer, shape, delta in rows:
            cost = "  ".join(
                f"{label} {_signed(delta[key], key == 'macs')}"
                for key, label in (("params", "params"), ("macs", "MACs"))
                if delta[key]
            )
            cells = [name.ljust(widths[0]), layer.ljust(widths[1]), shape.ljust(widths[2])]
            out.append(f"{mark} {'  '.join(cells)}  {cost}".rstrip())
    out.append("totals:")
    lines = _total_lines(diff["totals"])
    width = max(len(k) for k, *_ in lines)
    out += [f"  {k.ljust(width)}  {a} -> {b}  ({d})" for k, a, b, d in lines]
    return "\n".join(out)


def render_markdown(diff: dict) -> str:
    title = f"### `{diff['b']['network']}`: `{diff['a']['path']}` → `{diff['b']['path']}`"
    if diff["same"]:
        return f"{title}\n\nNo architectural change."
    out = [title, ""]
    if diff["layers"]:
        out += [
            "| | layer | arguments | output | Δ params | Δ MACs |",
            "|---|---|---|---|---:|---:|",
        ]
        for row in diff["layers"]:
            name, layer, shape, _ = _cells(row)
            d = row["delta"]
            out.append(
                f"| {row['change']} | `{name}` | `{layer}` | {shape} | "
                f"{_signed(d['params'])} | {_signed(d['macs'], True)} |"
            )
        out.append("")
    out += ["| total | before | after | change |", "|---|---:|---:|---:|"]
    out += [f"| {k} | {a} | {b} | {d} |" for k, a, b, d in _total_lines(diff["totals"])]
    return "\n".join(out)


# ---- against a git revision ------------------------------------------------------------------


def git_show(rev: str, path: str) -> str | None:
    """The file at `rev` (None when it is not there); UsageError when git itself fails."""
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-prefix"], capture_output=True, text=True, check=True
        ).stdout.strip()
        done = subprocess.run(["git", "show", f"{rev}:{top}{path}"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise UsageError(f"git: {getattr(error, 'stderr', '') or error}".strip()) from None
    if done.returncode:
        verify = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True
        )
        if verify.returncode:
            raise UsageError(f"git: `{rev}` is not a revision")
        return None
    return done.stdout


def git_files(rev: str, paths: list[str]) -> list[str]:
    """The .cnn files under `paths` at `rev`, relative to the current folder."""
    done = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", "--full-name", rev, "--", *paths],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise UsageError(f"git: {done.stderr.strip() or 'ls-tree failed'}")
    top = subprocess.run(
        ["git", "rev-parse", "--show-prefix"], capture_output=True, text=True
    ).stdout.strip()
    return [name[len(top) :] for name in done.stdout.splitlines() if name.endswith(".cnn")]


__all__ = ["compare", "check_source", "render_text", "render_markdown", "SpecError"]
