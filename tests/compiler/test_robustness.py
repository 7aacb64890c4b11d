"""No input may crash the compiler: generated text, bytes and specs go through parse, expand and
check and through `cnnc check`, and only SpecError (exit 1) or a usage error (exit 2) may come
back, never a traceback. Pathological files are checked to fail fast and with a location."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cnnc.cli import main
from cnnc.compiler import report
from cnnc.compiler.check import check
from cnnc.compiler.errors import SpecError
from cnnc.compiler.expand import expand
from cnnc.compiler.syntax import parse

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

TOKENS = [
    *("CONV", "DECONV", "POOL", "FC", "RELU", "BN", "ADD", "CONCAT", "UPSAMPLE", "DROPOUT"),
    *("FLATTEN", "SOFTMAX", "LRN", "LEAKYRELU", "FOO", "conv", "relu"),
    *("6@5x5", "c@3x3", "3x3", "2x2", "1x28x28", "3", "0", "2", "-1", "0.5", "1e5", "100k"),
    *("1.5M", "1e400", "99999999999999999999", "s2", "p1", "s0", "s", "d2", "g2", "dw", "op1"),
    *("nobias", "max", "avg", "ceil", "global", "same", "valid", "kernel=3x3", "stride=0"),
    *("->", "\n", "\n  ->", "(", ")", "{", "}", ",", "=", "@", "x2", "x0", "x1001", "+", "-"),
    *("*", "/", "//", "a", "b", "in", "out", "c", "k=3", "block", "network", "input", "expect"),
    *("train", "params", "output", "==", "<=", "#c\n", "\\\n", "\t", ";", "\x00", "\ufeff"),
]
PRELUDES = [
    "",
    "input 3x32x32\n",
    "input 1x28x28\nblock b(c, k=3) { in -> CONV c@k p1 -> y\n ADD(y, in) -> out }\n",
]


def located_or_file_level(error: SpecError, source: str) -> None:
    lines = source.count("\n") + 1
    for diagnostic in error.diagnostics:
        assert diagnostic.message
        assert 0 <= diagnostic.loc.line <= lines
        diagnostic.render(source)  # rendering never fails either


def compile_text(source: str) -> None:
    """Parse, expand and check, asserting that only SpecError can come out."""
    try:
        checked = check(expand(parse(source, "t.cnn")))
    except SpecError as error:
        located_or_file_level(error, source)
        return
    data = report.build(checked)
    report.validate(data)
    report.render_text(data)
    report.render_markdown(data)


@FUZZ
@given(
    prelude=st.sampled_from(PRELUDES),
    tokens=st.lists(st.sampled_from(TOKENS), max_size=40),
    glue=st.sampled_from([" ", "", "\n"]),
)
@example(prelude="", tokens=[], glue="")
@example(prelude="input 1x8x8\n", tokens=["CONV", "6@5x5", "RELU"], glue=" ")
def test_token_soup_never_crashes(prelude, tokens, glue):
    compile_text(prelude + glue.join(tokens))


@FUZZ
@given(st.text(max_size=200))
def test_any_text_never_crashes(text):
    compile_text(text)
    compile_text("input 1x8x8\nFC 3\n" + text)


# ---- generated specs that mostly make sense ----------------------------------------------------

small = st.integers(0, 4)
layer = st.one_of(
    st.builds(
        "CONV {}@{}x{} s{} p{} d{}".format,
        st.integers(1, 8),
        st.integers(1, 5),
        st.integers(1, 5),
        st.integers(1, 3),
        small,
        st.integers(1, 2),
    ),
    st.builds("DECONV {}@{}x{} s{} p{}".format, st.integers(1, 8), small, small, small, small),
    st.builds(
        "POOL {} {}x{} s{} p{} {}".format,
        st.sampled_from(["max", "avg", "sum"]),
        st.integers(1, 4),
        st.integers(1, 4),
        st.integers(1, 3),
        st.integers(0, 2),
        st.sampled_from(["", "ceil"]),
    ),
    st.builds("FC {}".format, st.integers(1, 20)),
    st.builds("UPSAMPLE {}".format, st.integers(1, 3)),
    st.builds("DROPOUT {}".format, st.sampled_from(["0", "0.5", "1"])),
    st.sampled_from(["RELU", "BN", "SOFTMAX", "TANH", "FLATTEN", "LRN", "POOL avg global"]),
    st.sampled_from(["CONV 4@3x3 same", "CONV kernel=1 dw", "LEAKYRELU 0.1", "ELU"]),
)
chain = st.lists(layer, min_size=1, max_size=5).map(" -> ".join)


@st.composite
def specs(draw) -> str:
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(1, 24)), draw(st.integers(1, 24))
    lines = [f"input {c}x{h}x{w}", draw(chain) + " -> a"]
    branches = ["a"]
    for name in draw(st.lists(st.sampled_from("bcd"), max_size=3, unique=True)):
        lines.append(f"{draw(st.sampled_from(['in', 'a']))} -> {draw(chain)} -> {name}")
        branches.append(name)
    if len(branches) > 1:
        merge = draw(st.sampled_from(["ADD", "CONCAT"]))
        lines.append(f"{merge}({', '.join(branches)}) -> {draw(chain)}")
    else:
        lines.append(f"a -> {draw(chain)}")
    if draw(st.booleans()):
        lines.append(f"expect params <= {draw(st.integers(0, 10_000))}")
    return "\n".join(lines) + "\n"


@FUZZ
@given(specs())
def test_generated_specs_check_or_fail_with_located_errors(source):
    try:
        check(expand(parse(source, "t.cnn")))
    except SpecError as error:
        assert all(d.loc.line >= 1 for d in error.diagnostics), error.render(source)
        return
    compile_text(source)


# ---- through the command ---------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=300), fmt=st.sampled_from(["text", "json", "github"]))
@example(data=b"\xff\xfe\x00", fmt="text")
@example(data=b"input 1x8x8\nFC 3\n", fmt="json")
def test_random_bytes_through_cnnc_check(tmp_path, capsys, data, fmt):
    path = tmp_path / "fuzz.cnn"
    path.write_bytes(data)
    assert main(["check", "--format", fmt, str(path)]) in (0, 1)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err


@FUZZ
@given(tokens=st.lists(st.sampled_from(TOKENS), max_size=30))
def test_token_soup_through_cnnc_check_and_report(tmp_path, capsys, tokens):
    path = tmp_path / "soup.cnn"
    path.write_text("input 1x16x16\n" + " ".join(tokens), encoding="utf-8")
    assert main(["check", str(path)]) in (0, 1)
    assert main(["report", "--format", "json", str(path)]) in (0, 1)
    capsys.readouterr()


# ---- pathological files ------------------------------------------------------------------------


def check_fast(tmp_path: Path, capsys, content: bytes | str, seconds: float = 5.0) -> str:
    """Run `cnnc check` on the content: it must exit 1 within the time and say why."""
    path = tmp_path / "patho.cnn"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    start = time.perf_counter()
    code = main(["check", str(path)])
    elapsed = time.perf_counter() - start
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "Traceback" not in out + err
    assert elapsed < seconds, f"took {elapsed:.1f} s"
    return out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"input 1x8x8\n#" + b"x" * (10 << 20), "over 262,144 bytes"),
        (bytes(range(256)) * 4, "not UTF-8"),
        (b"input 1x8x8\n\x00\x00", "NUL bytes"),
        ("input 1x8x8\nblock b(c=" + "(" * 5000 + "1" + ")" * 5000 + ") { in -> out }", "nest"),
        ("input 1x8x8\nFC " + "+".join(["1"] * 3_000), "too deeply"),
        ("input 1x8x8\nFC " + "-" * 20_000 + "1", "unexpected `-`"),
        ("input 1x8x8\nFC 3 x99999999999999999999999", "repeat count"),
        ("input 99999999999999999999x1x1\nFC 3", "too large"),
        ("input 1x8x8\nFC 99999999999999999999999999999999999/7", "out of range"),
        ("input 1x8x8\nCONV 1048576@3x3 p1 -> CONV 1048576@3x3", "past the bound"),
        ("\n" * 200_000, "no input shape"),
    ],
    ids=[
        "10MB",
        "binary",
        "nul",
        "deep-brackets",
        "long-sum",
        "many-minus",
        "huge-repeat",
        "huge-input",
        "huge-number",
        "huge-params",
        "blank-lines",
    ],
)
def test_pathological_files_fail_fast_with_a_message(tmp_path, capsys, content, message):
    assert message in check_fast(tmp_path, capsys, content)


def test_deeply_nested_block_calls(tmp_path, capsys):
    blocks = "".join(f"block b{i}() {{ in -> b{i + 1}() -> out }}\n" for i in range(200))
    out = check_fast(
        tmp_path, capsys, "input 1x8x8\n" + blocks + "block b200() { in -> out }\nb0()"
    )
    assert "blocks nest deeper than" in out


def test_line_endings_and_encodings_that_are_fine(tmp_path, capsys):
    for content in (
        b"\xef\xbb\xbfinput 1x8x8\r\nFC 3\r\n",
        b"input 1x8x8\n\n\n   FC 3   # trailing\n\n",
        "input 1x8x8 # größe ✓\nFC 3\n".encode(),
    ):
        path = tmp_path / "fine.cnn"
        path.write_bytes(content)
        assert main(["check", str(path)]) == 0, capsys.readouterr()
    capsys.readouterr()


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_device_is_not_read(capsys):
    # issue 14: a device or a pipe is refused before reading (a FIFO would block forever)
    for command in ("check", "report"):
        assert main([command, "/dev/zero"]) == 2
        out, err = capsys.readouterr()
        assert "not a regular file" in out + err
