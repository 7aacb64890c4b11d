"""report: Checked -> a JSON-able dict (validated by schemas/report.schema.json), and its renderings
as a terminal table and as Markdown for a pull-request comment."""

from __future__ import annotations

import json
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
    for layer in checked.layers:
        node = layer.node
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


def _table(report: dict) -> tuple[list[str], list[list[str]]]:
    header = ["#", "name", "layer", "output", "params", "MACs", "RF"]
    rows = []
    for row in report["layers"]:
        rf = row["receptive_field"]
        rows.append(
            [
                str(row["index"]),
                row["name"],
                _merge_call(row)
                if row["kind"] != "INPUT" and REGISTRY[row["kind"]].merge
                else row["layer"],
                _shape(row["output_shape"]),
                f"{row['params']:,}" if row["params"] else "",
                human(row["macs"]) if row["macs"] else "",
                f"{rf[0]}" if rf[0] == rf[1] else f"{rf[0]}x{rf[1]}",
            ]
        )
    return header, rows


def _totals(report: dict) -> list[tuple[str, str]]:
    totals, memory = report["totals"], report["memory"]
    batch = memory["batch"]
    return [
        ("params", f"{totals['params']:,} ({human_bytes(memory['parameters'])})"),
        ("trainable", f"{totals['trainable_params']:,}"),
        ("buffers", f"{totals['buffers']:,} (BN running statistics)"),
        ("MACs", f"{totals['macs']:,} ({human(totals['macs'])} per sample)"),
        ("FLOPs", f"{totals['flops']:,} (2 x MACs)"),
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


def render_text(report: dict) -> str:
    header, rows = _table(report)
    numeric = {0, 4, 5, 6}
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(header))
    title = (
        f"{report['network']}: input {_shape(report['input_shape'])} -> output "
        f"{_shape(report['output_shape'])}"
    )
    out = [title, rule, line(header), rule, *(line(r) for r in rows), rule]
    label_width = max(len(k) for k, _ in _totals(report))
    out += [f"{k.ljust(label_width)}  {v}" for k, v in _totals(report)]
    return "\n".join(out)


def render_markdown(report: dict) -> str:
    header, rows = _table(report)

    def cells(values):
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    align = ["---:", "---", "---", "---", "---:", "---:", "---:"]
    out = [
        f"### `{report['network']}`: {_shape(report['input_shape'])} → "
        f"{_shape(report['output_shape'])}",
        "",
        cells(header),
        "| " + " | ".join(align) + " |",
    ]
    out += [cells([r[0], f"`{r[1]}`", f"`{r[2]}`", *r[3:]]) for r in rows]
    out += ["", "| total | |", "| --- | ---: |"]
    out += [f"| {k} | {v} |" for k, v in _totals(report)]
    return "\n".join(out)
