"""report: Checked -> a JSON-able dict (validated by schemas/report.schema.json), and its renderings
as a terminal table and as Markdown for a pull-request comment."""

from __future__ import annotations

import json
import math
from functools import cache
from importlib.resources import files

from .check import Checked
from .layers import REGISTRY, describe, fmt
from .lower import lower

SCHEMA_VERSION = 1
ROUNDS_UP = 0.999995  # 999,995 shows as 1.00M, not 1000.00k


def build(checked: Checked, batch: int = 1, threads: int | None = None) -> dict:
    graph = checked.graph
    training = lower(checked, training=True)
    inference = lower(checked, training=False)
    rows = []
    names: dict[int, list[str]] = {}
    for name, index in graph.tensors.items():
        names.setdefault(index, []).append(name)
    for layer in checked.layers:
        node = layer.node
        extra = {"tensors": names[node.index]} if node.index in names else {}
        if node.call_locs:
            extra["calls"] = [_written(graph.source, loc) for loc in node.call_locs]
        for key in ("kernel", "stride"):
            value = layer.attrs.get(key)
            if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
                extra[key] = list(value)
        rows.append(
            {
                "index": node.index,
                "name": node.name,
                "kind": node.kind,
                "layer": describe(node.kind, node.attrs),
                "inputs": [graph.nodes[i].name for i in node.inputs],
                "output_shape": list(layer.shape),
                "params": layer.param_count,
                "buffers": layer.buffer_count,
                "macs": layer.macs,
                "receptive_field": list(layer.rf),
                "effective_stride": [float(j) for j in layer.jump],
                "line": node.loc.line,
                **extra,
            }
        )
    memory_train = training.memory(batch, threads)
    memory_infer = inference.memory(batch, threads)
    return {
        "schema_version": SCHEMA_VERSION,
        "network": graph.name,
        "path": graph.path,
        "input_shape": list(graph.input_shape),
        "output_shape": list(checked.output.shape),
        "outputs": [
            {
                "name": name,
                "layer": layer.node.name,
                "shape": list(layer.shape),
                "loss": layer.node.index == graph.output and graph.loss_chosen,
            }
            for name, layer in checked.outputs
        ],
        "layers": rows,
        "named_tensors": {name: list(checked.layers[i].shape) for name, i in graph.tensors.items()},
        "totals": {
            "params": checked.params,
            "trainable_params": checked.params,
            "buffers": checked.buffers,
            "macs": checked.macs,
            "flops": 2 * checked.macs,
        },
        "memory": {
            "batch": batch,
            "bytes_per_value": 4,
            "parameters": memory_train["parameters"],
            "forward_activations": memory_infer["activations"],
            "training_activations": memory_train["activations"],
            "inference_total": memory_infer["total"],
            "training_total": memory_train["total"],
        },
        "expects": [
            {
                "target": e.target,
                "op": e.op,
                "value": list(e.value) if isinstance(e.value, tuple) else e.value,
                "line": e.loc.line,
            }
            for e in graph.expects
        ],
    }


@cache
def schema() -> dict:
    """The shipped schema, with the layer kinds of this version's registry as the enum of `kind`."""
    loaded = json.loads(files(__package__).joinpath("schemas/report.schema.json").read_text())
    kind = loaded["properties"]["layers"]["items"]["properties"]["kind"]
    kind["enum"] = ["INPUT", *REGISTRY]
    return loaded


def validate(report: dict) -> None:
    import jsonschema

    jsonschema.validate(report, schema())


def human(count: float, unit: str = "") -> str:
    """1234567 -> '1.23M'; the exact figure stays in the JSON report."""
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= limit * ROUNDS_UP:
            return f"{count / limit:.2f}{suffix}{unit}"
    return f"{count:g}{unit}"


def human_bytes(count: int) -> str:
    for limit, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if count >= limit * ROUNDS_UP:
            return f"{count / limit:.2f} {suffix}"
    return f"{count} B"


def _shape(shape: list[int]) -> str:
    return fmt(tuple(shape))


def _merge_call(row: dict) -> str:
    """`CONCAT(a, b)` and the merge's own arguments, as the spec writes a merge."""
    arguments = row["layer"][len(row["kind"]) :]
    return f"{row['kind']}({', '.join(row['inputs'])}){arguments}"


def _written(source: str, loc) -> str:
    """A block call as the spec wrote it (one line; the call's span)."""
    lines = source.split("\n")
    text = lines[loc.line - 1] if 0 < loc.line <= len(lines) else ""
    end = loc.end_col - 1 if loc.end_line == loc.line else len(text)
    return " ".join(text[loc.col - 1 : end].split())


def _pair(values) -> str:
    if not values:
        return ""
    return f"{values[0]}" if len(set(values)) == 1 else "x".join(map(str, values))


def fold(report: dict, depth: int) -> list[dict]:
    """The layer rows with every block call deeper than `depth` levels folded into one row.

    Depth counts levels as torchinfo does: the top-level layers and block calls are level 1.
    A layer named `stage2.block1.conv1` sits two block calls deep; at depth 1 it is part of the
    row `stage2`, at depth 2 of `stage2.block1`, at depth 3 it is shown. A folded row sums
    params, buffers and MACs and shows the output shape and receptive field of its last layer,
    so the totals stay the same.
    """
    rows: list[dict] = []
    groups: dict[str, dict] = {}
    by_name = {row["name"]: row for row in report["layers"]}
    for row in report["layers"]:
        path = row["name"].split(".")
        if len(row.get("calls", ())) < depth or len(path) <= depth:
            rows.append(row)
            continue
        key = ".".join(path[:depth])
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                **row,
                "name": key,
                "kind": "BLOCK",
                "layer": row["calls"][depth - 1],
                "params": 0,
                "buffers": 0,
                "macs": 0,
                "folded": [],
            }
            group.pop("kernel", None), group.pop("stride", None)
            rows.append(group)
        group["folded"].append(row["name"])
        for figure in ("params", "buffers", "macs"):
            group[figure] += row[figure]
        inside = set(group["folded"])
        outside = [n for m in group["folded"] for n in by_name[m]["inputs"] if n not in inside]
        group["inputs"] = list(dict.fromkeys(outside))
        for figure in ("output_shape", "receptive_field", "effective_stride"):
            group[figure] = row[figure]
        group["tensors"] = [t for t in row.get("tensors", []) if not t.startswith(key + ".")]
    return rows


def layer_table(report: dict, rows: list[dict] | None = None, wide: bool = False):
    """The per-layer table of a report: (header, rows of cells), the rows given or all."""
    named = any(row.get("tensors") for row in report["layers"])
    header = [
        "#",
        "name",
        "layer",
        "output",
        "params",
        "MACs",
        "RF",
        *(["tensor"] if named else []),
    ]
    if wide:
        header[3:3] = ["kernel", "stride", "input"]
    shapes = {row["name"]: row["output_shape"] for row in report["layers"]}
    table = []
    for row in report["layers"] if rows is None else rows:
        rf = row["receptive_field"]
        merge = row["kind"] not in ("INPUT", "BLOCK") and (
            REGISTRY[row["kind"]].merge or len(row.get("inputs", ())) > 1
        )
        cells = [
            str(row["index"]),
            row["name"],
            _merge_call(row) if merge else row["layer"],
            _shape(row["output_shape"]),
            f"{row['params']:,}" if row["params"] else "",
            human(row["macs"]) if row["macs"] else "",
            f"{rf[0]}" if rf[0] == rf[1] else f"{rf[0]}x{rf[1]}",
            *([", ".join(row.get("tensors", []))] if named else []),
        ]
        if wide:
            inputs = " + ".join(_shape(shapes[name]) for name in row["inputs"])
            cells[3:3] = [_pair(row.get("kernel")), _pair(row.get("stride")), inputs]
        table.append(cells)
    return header, table


def totals(report: dict) -> list[tuple[str, str]]:
    """The (label, value) lines under the table: params, MACs, memory, receptive field."""
    counts, memory = report["totals"], report["memory"]
    batch = memory["batch"]
    return [
        ("params", f"{counts['params']:,} ({human_bytes(memory['parameters'])})"),
        ("trainable", f"{counts['trainable_params']:,}"),
        ("buffers", f"{counts['buffers']:,} (BN running statistics)"),
        ("MACs", f"{counts['macs']:,} ({human(counts['macs'])} per sample)"),
        ("FLOPs", f"{counts['flops']:,} (2 x MACs)"),
        (f"forward activations @ batch {batch}", human_bytes(memory["forward_activations"])),
        (
            f"training activations @ batch {batch}",
            human_bytes(memory["training_activations"]) + " (kept for backward, and gradients)",
        ),
        (f"inference total @ batch {batch}", human_bytes(memory["inference_total"])),
        (
            f"training total @ batch {batch}",
            human_bytes(memory["training_total"]) + " (params, grads, momentum, activations, "
            "workspace)",
        ),
    ]


def _shrink(widths: list[int], header: list[str], max_width: int | None) -> list[int]:
    """Narrow the widest text column, one character at a time, until a row fits `max_width`."""
    widths = list(widths)
    text = [header.index(c) for c in ("name", "layer", "input", "tensor") if c in header]
    while max_width and sum(widths) + 2 * (len(widths) - 1) > max_width:
        column = max(text, key=lambda i: widths[i])
        if widths[column] <= max(len(header[column]), 6):
            break
        widths[column] -= 1
    return widths


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def render_text(
    report: dict, depth: int | None = None, wide: bool = False, max_width: int | None = None
) -> str:
    """The table; column widths come from every layer of the net, folded or not, so a report's
    lines move only where the net changed."""
    header, everything = layer_table(report, wide=wide)
    shown = everything
    if depth is not None:
        _, shown = layer_table(report, fold(report, depth), wide)
    numeric = {header.index(c) for c in ("#", "params", "MACs", "RF")}
    widths = [max(len(r[i]) for r in [header, *everything, *shown]) for i in range(len(header))]
    widths = _shrink(widths, header, max_width)

    def line(cells):
        return "  ".join(
            _cut(c, w).rjust(w) if i in numeric else _cut(c, w).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line([h.ljust(w) for h, w in zip(header, widths, strict=True)]))
    title = f"{report['network']}: input {_shape(report['input_shape'])} -> {_outputs(report)}"
    out = [title, rule, line(header), rule, *(line(r) for r in shown), rule]
    label_width = max(len(k) for k, _ in totals(report))
    out += [f"{k.ljust(label_width)}  {v}" for k, v in totals(report)]
    return "\n".join(out)


def _outputs(report: dict, markdown: bool = False) -> str:
    """`output 10`, or with several heads `outputs p3 18x8x8 (loss), p4 18x4x4`."""
    heads = report.get("outputs") or []
    if len(heads) <= 1:
        shape = _shape(report["output_shape"])
        return shape if markdown else f"output {shape}"
    shown = ", ".join(
        f"{h['name']} {_shape(h['shape'])}" + (" (loss)" if h["loss"] else "") for h in heads
    )
    return shown if markdown else f"outputs {shown}"


def summary(checked) -> str:
    """The outputs for one line of `cnnc check`: `output 10` or `outputs p3 18x8x8, p4 18x4x4`."""
    if len(checked.outputs) <= 1:
        return f"output {fmt(checked.output.shape)}"
    return "outputs " + ", ".join(f"{name} {fmt(layer.shape)}" for name, layer in checked.outputs)


def render_markdown(report: dict, depth: int | None = None, wide: bool = False) -> str:
    header, rows = layer_table(report, fold(report, depth) if depth is not None else None, wide)

    def cells(values):
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    numeric = ("#", "params", "MACs", "RF")
    align = ["---:" if h in numeric else "---" for h in header]
    out = [
        f"### `{report['network']}`: {_shape(report['input_shape'])} → "
        + _outputs(report, markdown=True),
        "",
        cells(header),
        "| " + " | ".join(align) + " |",
    ]
    out += [cells([r[0], f"`{r[1]}`", f"`{r[2]}`", *r[3:]]) for r in rows]
    out += ["", "| total | |", "| --- | ---: |"]
    out += [f"| {k} | {v} |" for k, v in totals(report)]
    return "\n".join(out)


# ---- the input sizes at which a spec checks ---------------------------------------------------


def sizes(graph, low: int, high: int) -> list[int]:
    """Every square input size in low..high (same channels) for which every layer checks: the
    windows fit and the merges (a U-Net's skips) line up."""
    from .check import checks_at

    channels = graph.input_shape[0]
    return [s for s in range(low, high + 1) if checks_at(graph, (channels, s, s))]


def sizes_at_aspect(graph, low: int, high: int, aspect: tuple[int, int]) -> list[tuple]:
    """Every input height in low..high whose width at aspect H:W is whole, and for which every
    layer checks, as (height, width)."""
    from .check import checks_at

    ah, aw = aspect
    channels = graph.input_shape[0]
    pairs = [(h, h * aw // ah) for h in range(low, high + 1) if h * aw % ah == 0]
    return [(h, w) for h, w in pairs if w >= 1 and checks_at(graph, (channels, h, w))]


def sizes_per_axis(graph, heights: tuple[int, int], widths: tuple[int, int]):
    """The heights in one range and the widths in another at which the spec checks, each axis
    on its own: every layer's window arithmetic runs per axis, so any valid height goes with any
    valid width. Returns (heights, widths); both empty when no pair checks."""
    from .check import checks_at

    channels, own_h, own_w = graph.input_shape

    def works(h, w):
        return checks_at(graph, (channels, h, w))

    hs, ws = range(heights[0], heights[1] + 1), range(widths[0], widths[1] + 1)
    # a width that works with some height, to scan the heights against, and the other way
    anchor = next(
        ((h, w) for h, w in [(own_h, own_w), *((own_h, w) for w in ws)] if works(h, w)), None
    ) or next(((h, w) for h in hs for w in ws if works(h, w)), None)
    if anchor is None:
        return [], []
    return [h for h in hs if works(h, anchor[1])], [w for w in ws if works(anchor[0], w)]


def _runs(found: list[int]) -> str:
    runs, start = [], found[0]
    for previous, size in zip(found, [*found[1:], None], strict=True):
        if size != previous + 1:
            runs.append(f"{start}..{previous}" if previous > start else f"{start}")
            start = size
    step = math.gcd(*found) if len(found) > 1 else 0
    if step > 1 and found == list(range(found[0], found[-1] + 1, step)):
        return f"every multiple of {step} from {found[0]} to {found[-1]}"
    return ", ".join(runs)


def render_axes(heights: list[int], widths: list[int], ranges, current) -> str:
    (hl, hh), (wl, wh) = ranges
    head = f"input sizes at which the spec checks (channels {current[0]}), each axis on its own:"
    if not heights or not widths:
        return f"{head} none in heights {hl}..{hh}, widths {wl}..{wh}"
    return "\n".join(
        [head, f"  heights {hl}..{hh}: {_runs(heights)}", f"  widths {wl}..{wh}: {_runs(widths)}"]
    )


def render_aspect(found: list[tuple], low: int, high: int, aspect, current) -> str:
    head = (
        f"input sizes at which the spec checks (channels {current[0]}), height {low}..{high}, "
        f"height:width {aspect[0]}:{aspect[1]}:"
    )
    if not found:
        return f"{head} none"
    return f"{head}\n  heights {_runs([h for h, _ in found])}\n  " + ", ".join(
        f"{h}x{w}" for h, w in found
    )


def render_sizes(found: list[int], low: int, high: int, current: tuple[int, ...]) -> str:
    head = f"input sizes {low}..{high} at which the spec checks (channels {current[0]}):"
    if not found:
        return f"{head} none"
    return f"{head}\n  {_runs(found)}"
