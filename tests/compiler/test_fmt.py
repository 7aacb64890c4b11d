"""cnnc fmt: canonical, idempotent, and never changing what a spec means (checked over the zoo
and over generated specs with odd spacing and comments)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnc.cli import main
from cnnc.compiler.check import check
from cnnc.compiler.errors import SpecError
from cnnc.compiler.expand import expand
from cnnc.compiler.fmt import format_source
from cnnc.compiler.syntax import parse

SPECS = sorted((Path(__file__).parents[2] / "specs").glob("*.cnn"))


def meaning(source: str):
    """What must not change: every node, every shape, params and MACs, or the errors."""
    try:
        checked = check(expand(parse(source, "t.cnn")))
    except SpecError as error:
        return ("error", tuple(d.message for d in error.diagnostics))
    nodes = tuple((n.name, n.kind, repr(n.attrs), n.inputs) for n in checked.graph.nodes)
    return (nodes, tuple(layer.shape for layer in checked.layers), checked.params, checked.macs)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_zoo_keeps_its_meaning_and_is_a_fixed_point(path):
    source = path.read_text()
    once = format_source(source, str(path))
    assert format_source(once, str(path)) == once
    assert meaning(once) == meaning(source)
    assert once.count("#") == source.count("#")  # every comment kept


MESSY = """\
# header comment
input   1x28x28   # the input
network  messy

expect params<=100k
block  b( c ,k = 3 ) {   in->CONV c@k  p1->y
   ADD( y , in )   ->  out }
CONV 4@3x3   p1 -> RELU->b( 4 , k=1 )  x2   # stem
     # between the lines
     -> POOL max 2x2 -> FC  10
train {
  epochs 2   # few
  batch 8
}
"""

CANONICAL = """\
# header comment
network messy
input 1x28x28  # the input

block b(c, k=3) {
  in -> CONV c@k p1 -> y
  ADD(y, in) -> out
}
CONV 4@3x3 p1 -> RELU -> b(4, k=1) x2  # stem
  # between the lines
  -> POOL max 2x2 -> FC 10

expect params <= 100k

train {
  epochs 2  # few
  batch 8
}
"""


def test_a_messy_spec_gets_the_canonical_layout():
    assert format_source(MESSY) == CANONICAL
    assert meaning(CANONICAL) == meaning(MESSY)


def test_long_chains_are_broken_at_arrows():
    source = "input 3x8x8\n" + " -> ".join(["CONV 8@3x3 p1 -> BN -> RELU"] * 8) + "\n"
    out = format_source(source)
    assert max(len(line) for line in out.splitlines()) <= 100
    assert format_source(out) == out and meaning(out) == meaning(source)


def test_expressions_keep_their_grouping():
    source = "input 3x8x8\nblock b(c, k=1) { CONV 2*(c+1)@(k*2+1) p=k-(1-1) }\nb(2)\n"
    out = format_source(source)
    assert "CONV 2*(c+1)@(k*2+1) p=k-(1-1)" in out
    assert meaning(out) == meaning(source)


words = st.sampled_from([" ", "  ", "\t"])
layer = st.sampled_from(
    [
        "CONV 4@3x3 p1",
        "CONV 2@1x1 s2",
        "POOL max 2x2",
        "RELU",
        "BN eps=1e-3",
        "FC 7",
        "DROPOUT 0.5",
        "UPSAMPLE 2",
        "CONV kernel=3x3 dw same",
        "POOL avg global",
        "LEAKYRELU .1",
    ]
)


@st.composite
def messy_specs(draw) -> str:
    def sp():
        return draw(words)

    def chain(first: str) -> str:
        links = [first, *draw(st.lists(layer, min_size=1, max_size=4))]
        text = links[0]
        for link in links[1:]:
            glue = draw(st.sampled_from([f"{sp()}->{sp()}", "->", "\n  -> ", f"  # c\n{sp()}-> "]))
            text += glue + link
        return text

    lines = [f"input{sp()}{draw(st.integers(1, 3))}x{draw(st.integers(4, 16))}x12"]
    if draw(st.booleans()):
        lines.insert(0, f"# {draw(st.text('abc xyz', max_size=10))}")
    lines.append(chain(draw(layer)) + f"{sp()}->{sp()}a")
    lines.append(chain("a") + f"{sp()}->{sp()}b" + draw(st.sampled_from(["", "  # named"])))
    lines.append(draw(st.sampled_from(["ADD(a,b)", "CONCAT( a , b )", "b -> FC 3"])))
    if draw(st.booleans()):
        lines.insert(1, f"expect{sp()}params{sp()}<={sp()}{draw(st.integers(0, 9999))}")
    if draw(st.booleans()):
        lines.insert(1, "train {\n epochs 3\n}")
    return draw(st.sampled_from(["\n", "\n\n"])).join(lines) + "\n"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messy_specs())
def test_generated_specs_keep_their_meaning(source):
    out = format_source(source)
    assert format_source(out) == out
    assert meaning(out) == meaning(source)
    assert out.count("#") == source.count("#")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_check_diff_and_write(tmp_path, capsys):
    messy, clean = tmp_path / "messy.cnn", tmp_path / "clean.cnn"
    messy.write_text(MESSY)
    clean.write_text(CANONICAL)
    os.utime(clean, (1_000_000, 1_000_000))
    code, out, err = run(capsys, "fmt", "--check", str(tmp_path))
    assert code == 1 and "+network messy" in out and "would be reformatted" in err
    assert messy.read_text() == MESSY  # --check writes nothing
    code, out, _ = run(capsys, "fmt", "--diff", str(messy))
    assert code == 0 and out.startswith("---") and messy.read_text() == MESSY
    code, out, _ = run(capsys, "fmt", str(tmp_path))
    assert code == 0 and out.strip() == f"reformatted {messy}"
    assert messy.read_text() == CANONICAL
    assert clean.stat().st_mtime == 1_000_000  # a file that would not change is not touched
    assert not list(tmp_path.glob(".*tmp*"))
    assert run(capsys, "fmt", "--check", str(tmp_path))[0] == 0


def test_cli_a_syntax_error_is_reported_and_the_file_left_alone(tmp_path, capsys):
    bad = tmp_path / "bad.cnn"
    bad.write_text("input 1x8x8\nCONV 2@3x3 RELU\n")
    code, _, err = run(capsys, "fmt", str(bad))
    assert code == 1 and "bad.cnn:2" in err
    assert bad.read_text() == "input 1x8x8\nCONV 2@3x3 RELU\n"


NEW_FORMS = """input 3x32x32
block unit(c,s=1) {
  in->CONV c@3x3 stride=s p1 nobias->BN->y
  if s!=1 or in.c!=c and not c<2 {
      in -> CONV c@1x1 stride=s->short
  } else if c>100 {
    in->POOL max 1->short
  } else {
   in -> short   # the identity
  }
  ADD(y,short)
}
block stage(c, n) { unit(c,s=2) -> unit(c) xn }
CONV 8@3x3 -> stage(16,2) -> CONV in.c@1x1 -> POOL max 3 s2 -> FC 10
expect stage1.unit2.y==16x15x15
"""


def test_conditionals_sizes_and_repeats_from_parameters_get_one_layout():
    once = format_source(NEW_FORMS)
    assert format_source(once) == once and meaning(once) == meaning(NEW_FORMS)
    assert (
        "  if s != 1 or in.c != c and not c < 2 {\n    in -> CONV c@1x1 stride=s -> short\n" in once
    )
    assert (
        "  } else if c > 100 {\n" in once
        and "  } else {\n    in -> short  # the identity\n" in once
    )
    assert "unit(c) xn }" in once and "expect stage1.unit2.y == 16x15x15" in once


def test_the_output_line_comes_after_the_chains():
    source = (
        "input 3x16x16\noutput p3,p4   # the heads\nCONV 8@3x3 p1 s2 -> f1\n"
        "f1 -> CONV 6@1x1 -> p3\nf1 -> POOL max 2 -> FC 4 -> p4\n"
        "expect p3 == 6x8x8\ntrain {\n  loss   p4\n}\n"
    )
    once = format_source(source)
    assert format_source(once) == once and meaning(once) == meaning(source)
    assert "-> p4\n\noutput p3, p4  # the heads\n\nexpect p3 == 6x8x8\n" in once
    assert "train {\n  loss p4\n}\n" in once


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("CONV 16@3x3 p1 s2", "CONV 16@3x3 s2 p1"),
        ("CONV nobias g2 p1 16@3x3 d2 s1", "CONV 16@3x3 s1 p1 d2 g2 nobias"),
        ("CONV dw same 3x3", "CONV 3x3 same dw"),
        ("POOL s2 2x2 max", "POOL max 2x2 s2"),
        ("POOL global avg", "POOL avg global"),
        ("POOL 3 p1 max s2", "POOL max 3 s2 p1"),
        ("BN momentum=0.2 eps=1e-3", "BN eps=1e-3 momentum=0.2"),
        ("LRN beta=0.75 3 alpha=1e-4", "LRN 3 alpha=1e-4 beta=0.75"),
        ("FC nobias 10", "FC 10 nobias"),
        ("CONV 4@3x3 wobble s2", "CONV 4@3x3 wobble s2"),  # an error: kept as written
    ],
)
def test_a_layers_arguments_follow_the_registry_order(written, canonical):
    source = f"input 4x16x16\n{written} -> FC 2\n"
    once = format_source(source)
    assert once.split("\n")[2] == f"{canonical} -> FC 2"
    assert format_source(once) == once and meaning(once) == meaning(source)


def test_a_repeat_from_a_parameter_stays_last():
    source = "input 4x16x16\nblock b(n) { CONV p1 4@3x3 xn }\nb(2) -> FC 2\n"
    once = format_source(source)
    assert "CONV 4@3x3 p1 xn" in once and meaning(once) == meaning(source)
