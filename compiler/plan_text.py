"""The readable summary of a Plan printed by `cnnc compile`, and the plan's JSON Schema."""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files

from .layers import fmt
from .lower import Plan
from .report import human_bytes


@cache
def plan_schema() -> dict:
    return json.loads(files(__package__).joinpath("schemas/plan.schema.json").read_text())


def render_plan(plan: Plan, batch: int, threads: int | None = None) -> str:
    mode = "training" if plan.training else "inference"
    lines = [
        f"{plan.network}: {mode} plan, {len(plan.steps)} steps, "
        f"{len(plan.tensors)} tensors in {plan.arena_size:,} floats per sample"
    ]
    names = {t.index: t.name for t in plan.tensors}
    width = max(len(s.name) for s in plan.steps)
    for number, step in enumerate(plan.steps):
        tensor = plan.tensors[step.output]
        inputs = ", ".join(names[i] for i in step.inputs)
        grad = f" grad@{tensor.grad_offset}" if tensor.grad_offset >= 0 else ""
        params = sum(1 for _ in step.params)
        extra = f" params:{params}" if params else ""
        extra += f" ws:{step.workspace:,}" if step.workspace else ""
        lines.append(
            f"  {number:3d} {step.name.ljust(width)} {step.kind:9s} <- {inputs:24s} "
            f"{fmt(tensor.shape):>10s} @{tensor.offset}{grad}{extra}"
        )
    if plan.training:
        kept = ", ".join(names[i] for i in plan.saved) or "none"
        lines.append(f"kept for backward: {kept}")
        fused = plan.backward_from < len(plan.steps) - 1
        lines.append(
            f"loss: {'fused softmax + cross-entropy on ' if fused else 'cross-entropy on '}"
            f"{names[plan.logits]}"
        )
    memory = plan.memory(batch, threads)
    lines.append(f"memory at batch {batch} ({threads or 'all'} threads):")
    labels = {
        "parameters": f"parameters ({plan.param_size:,} floats)",
        "gradients": "parameter gradients",
        "optimizer_state": "optimizer state (SGD momentum; Adam doubles it)",
        "state": "BN running and batch statistics",
        "activations": "activations and their gradients (arena)"
        if plan.training
        else "activations (arena)",
        "workspace": f"workspace ({plan.workspace:,} floats per thread)",
        "total": "total",
    }
    for key, label in labels.items():
        lines.append(f"  {label:52s} {human_bytes(memory[key]):>12s}  ({memory[key]:,} B)")
    return "\n".join(lines)
