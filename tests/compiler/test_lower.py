"""Lowering: slot placement never overlaps two live tensors, rows follow the ABI, the plan's JSON
validates, and the report's memory figures are the plan's."""

from pathlib import Path

import jsonschema
import pytest

from cnnc.compiler import abi
from cnnc.compiler.check import check, check_file
from cnnc.compiler.expand import expand
from cnnc.compiler.layers import KIND_INDEX, numel
from cnnc.compiler.lower import _place, lower
from cnnc.compiler.plan_text import plan_schema, render_plan
from cnnc.compiler.report import build
from cnnc.compiler.syntax import parse

SPECS = Path(__file__).parents[2] / "specs"
RESIDUAL = """input 3x8x8
CONV 8@3x3 p1 -> BN -> RELU -> a
a -> CONV 8@3x3 p1 -> BN -> b
a -> DROPOUT 0.5 -> c
ADD(b, c) -> RELU -> FC 4 -> SOFTMAX
"""


def checked(text: str):
    return check(expand(parse(text)), verify_expects=False)


def test_placement_never_overlaps_intervals_that_meet_in_time():
    intervals = [(0, 3, 10, "a"), (2, 5, 7, "b"), (4, 6, 12, "c"), (6, 9, 3, "d"), (0, 9, 1, "e")]
    offsets, size = _place(intervals)
    for i, (s1, e1, n1, k1) in enumerate(intervals):
        for s2, e2, n2, k2 in intervals[i + 1 :]:
            if s1 <= e2 and s2 <= e1:
                a, b = offsets[k1], offsets[k2]
                assert a + n1 <= b or b + n2 <= a, (k1, k2)
    assert size == max(offsets[k] + n for _, _, n, k in intervals)
    assert size < sum(n for _, _, n, _ in intervals)  # something was reused


def _lowest_free_placement(intervals):
    """The definition _place implements, by brute force: largest first (then earliest), each
    block at the lowest offset that no block placed before it and alive with it overlaps."""
    placed, offsets = [], {}
    for start, end, size, key in sorted(intervals, key=lambda i: (-i[2], i[0])):
        busy = sorted((o, o + n) for (a, b, o, n) in placed if a <= end and start <= b)
        offset = 0
        for low, high in busy:
            if offset + size <= low:
                break
            offset = max(offset, high)
        placed.append((start, end, offset, size))
        offsets[key] = offset
    return offsets, max((o + n for _, _, o, n in placed), default=0)


def test_placement_is_the_lowest_free_offset_largest_first():
    import random

    rng = random.Random(14)
    for _ in range(400):
        horizon = rng.randint(0, 70)
        intervals = []
        for key in range(rng.randint(0, 30)):
            start = rng.randint(0, horizon)
            end = rng.randint(start, horizon)
            intervals.append((start, end, rng.choice((16, 32, 48, 64, 256, 1024)), key))
        assert _place(intervals) == _lowest_free_placement(intervals), intervals


def test_placement_of_a_long_training_chain_matches_the_definition(monkeypatch):
    import cnnc.compiler.lower as lowering

    seen = {}
    real = lowering._place
    monkeypatch.setattr(lowering, "_place", lambda iv: seen.setdefault("it", iv) and real(iv))
    body = " -> ".join(["CONV 4@3x3 p1 -> RELU"] * 150)
    lower(checked(f"input 4x8x8\n{body} -> FC 10\n"))
    assert real(seen["it"]) == _lowest_free_placement(seen["it"])


@pytest.mark.parametrize("training", [True, False])
def test_a_step_never_writes_over_its_own_inputs(training):
    plan = lower(checked(RESIDUAL), training=training)
    for step in plan.steps:
        out = plan.tensors[step.output]
        for source in step.inputs:
            inp = plan.tensors[source]
            end_out = out.offset + numel(out.shape)
            end_in = inp.offset + numel(inp.shape)
            assert end_out <= inp.offset or end_in <= out.offset


def test_rows_follow_the_abi():
    plan = lower(checked(RESIDUAL))
    add = next(s for s in plan.steps if s.kind == "ADD")
    row = add.row
    assert row[abi.KIND] == KIND_INDEX["ADD"] and row[abi.NIN] == 2
    assert row[abi.OUT] == plan.tensors[add.output].offset
    for j, source in enumerate(add.inputs):
        base = abi.IN + abi.IN_STRIDE * j
        assert row[base + abi.IN_OFF] == plan.tensors[source].offset
        assert row[base + abi.IN_DOFF] == plan.tensors[source].grad_offset
    conv = plan.steps[0]
    assert conv.row[abi.IN + abi.IN_DOFF] == -1  # nobody needs the input's gradient
    assert conv.row[abi.WS] == conv.workspace > 0
    dropout = next(s for s in plan.steps if s.kind == "DROPOUT")
    assert dropout.aux_offset >= 0 and dropout.frow[0] == 0.5


def test_a_tensor_read_twice_is_zeroed_once_by_its_last_reader():
    plan = lower(checked(RESIDUAL))
    a = next(s.output for s in plan.steps if s.name == "relu1")
    readers = [i for i, s in enumerate(plan.steps) if a in s.inputs]
    zeroing = [i for i in readers if plan.steps[i].row[abi.ZERO] & 1]
    assert zeroing == [max(readers)]


def test_final_softmax_is_fused_into_the_loss():
    plan = lower(checked(RESIDUAL))
    assert plan.steps[plan.backward_from + 1].kind == "SOFTMAX"
    assert plan.tensors[plan.logits].name == "fc1"


def test_inference_plans_keep_no_gradients_and_need_less():
    training, inference = lower(checked(RESIDUAL)), lower(checked(RESIDUAL), training=False)
    assert all(t.grad_offset == -1 for t in inference.tensors)
    assert inference.arena_size < training.arena_size


def test_plan_json_validates_and_the_summary_names_every_step():
    plan = lower(check_file(str(SPECS / "resnet18.cnn"), verify_expects=False))
    jsonschema.validate(plan.to_json(), plan_schema())
    text = render_plan(plan, batch=8, threads=2)
    assert all(step.name in text for step in plan.steps)
    assert "total" in text


def test_report_memory_is_the_plans():
    c = checked(RESIDUAL)
    report = build(c, batch=16, threads=2)
    assert report["memory"]["training_total"] == lower(c).memory(16, 2)["total"]
    assert report["memory"]["forward_activations"] == lower(c, False).memory(16, 2)["activations"]


def test_memory_figures_add_up():
    memory = lower(checked(RESIDUAL)).memory(batch=4, threads=2, optimizer_slots=2)
    parts = sum(v for k, v in memory.items() if k != "total")
    assert memory["total"] == parts and memory["optimizer_state"] == 2 * memory["parameters"]


HEADS = (
    "input 3x16x16\n"
    "CONV 8@3x3 p1 s2 -> RELU -> f1\n"
    "f1 -> CONV 8@3x3 p1 s2 -> FC 5 -> SOFTMAX -> main\n"
    "f1 -> CONV 6@1x1 -> aux\n"
    "output main, aux\n"
)


@pytest.mark.parametrize(
    ("loss", "output", "logits", "backward_from", "zero_grads"),
    [
        ("main", 5, 4, 5, (5, 6)),  # SOFTMAX is not the last step: it runs on a zero gradient
        ("aux", 6, 6, 5, (5,)),  # the last step, as a single output is
    ],
)
def test_every_head_stays_live_and_the_loss_reads_the_named_one(
    loss, output, logits, backward_from, zero_grads
):
    c = check(expand(parse(HEADS + f"train {{\n  loss {loss}\n}}\n")))
    plan = lower(c, training=True)
    assert (plan.output, plan.logits, plan.backward_from) == (output, logits, backward_from)
    assert plan.zero_grads == zero_grads and plan.outputs == (("main", 5), ("aux", 6))
    count = len(plan.steps)
    for head in (5, 6):  # each head's value outlives the forward pass: nothing reuses its slot
        slot = plan.tensors[head]
        for other in plan.tensors:
            if other.index not in (head,) and other.index > head:
                overlap = slot.offset < other.offset + numel(other.shape) and (
                    other.offset < slot.offset + numel(slot.shape)
                )
                assert not overlap, (head, other.index)
    assert count == 6
    jsonschema.validate(plan.to_json(), plan_schema())
