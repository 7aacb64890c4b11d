"""Tests for cnnc.compiler.errors: locations, the rendering of a diagnostic, collecting problems."""

from __future__ import annotations

import pytest

from cnnc.compiler.errors import (
    NO_LOC,
    Diagnostic,
    Loc,
    Problems,
    ShapeError,
    SpecError,
    did_you_mean,
)

SOURCE = "network n\ninput 1x28x28\nCONV 6@5x5 -> RELU\n"


def test_render_points_a_caret_under_the_span():
    diagnostic = Diagnostic("no good", Loc(3, 15, 3, 19), path="a.cnn")
    assert diagnostic.render(SOURCE).splitlines() == [
        "a.cnn:3:15: error: no good",
        "  CONV 6@5x5 -> RELU",
        "                ^^^^",
    ]


def test_render_adds_notes_then_the_fix():
    diagnostic = Diagnostic(
        "bad", Loc(2, 1, 2, 6), notes=("(5 - 2) / 2 + 1 = 2.5",), fix="pad it", path="a.cnn"
    )
    lines = diagnostic.render(SOURCE).splitlines()
    assert lines[0] == "a.cnn:2:1: error: bad"
    assert lines[2] == "  ^^^^^"
    assert lines[3:] == ["  (5 - 2) / 2 + 1 = 2.5", "  fix: pad it"]


def test_render_without_source_or_location():
    assert Diagnostic("x", Loc(2, 3, 2, 4), path="a.cnn").render() == "a.cnn:2:3: error: x"
    assert Diagnostic("x", path="a.cnn").render(SOURCE) == "a.cnn: error: x"
    assert Diagnostic("x").loc == NO_LOC


def test_a_span_over_several_lines_gets_one_caret():
    lines = Diagnostic("x", Loc(2, 3, 3, 4)).render(SOURCE).splitlines()
    assert lines[-1] == "    ^"


@pytest.mark.parametrize(
    "source",
    ["", "\n", "one line", "a\fb\nc", "a\u2028b\nc", "a\r\nb\r\n"],
    ids=["empty", "newline", "short", "formfeed", "line-separator", "crlf"],
)
def test_render_never_fails_whatever_the_source(source):
    for line in range(1, 5):
        text = Diagnostic("x", Loc(line, 2, line, 3)).render(source)
        assert text.startswith(f"<spec>:{line}:2: error: x")
        assert "\r" not in text


def test_lines_are_counted_at_newlines_only_as_lark_does():
    # str.splitlines() would also split at \f and \u2028 and show the wrong line
    text = Diagnostic("x", Loc(2, 1, 2, 2)).render("a\fb\u2028c\nsecond\n")
    assert text.splitlines()[1] == "  second"


def test_tabs_keep_the_caret_aligned():
    # lark counts a tab as one column
    lines = Diagnostic("x", Loc(1, 3, 1, 7)).render("\t\tCONV").splitlines()
    assert lines[1:] == ["    CONV", "    ^^^^"]


def test_a_very_long_line_is_shown_as_a_window_around_the_caret():
    line = "RELU -> " * 5000 + "FOO"
    col = len(line) - 2
    lines = Diagnostic("x", Loc(1, col, 1, col + 3)).render(line).splitlines()
    assert max(len(text) for text in lines) < 200
    shown, caret = lines[1], lines[2]
    assert shown.startswith("  ...")
    assert shown[caret.index("^") : caret.index("^") + 3] == "FOO"


def test_spec_error_keeps_every_diagnostic():
    first, second = Diagnostic("one", Loc(1, 1, 1, 2)), Diagnostic("two", Loc(2, 1, 2, 2))
    error = SpecError([first, second])
    assert error.diagnostics == [first, second]
    assert str(error) == "one\ntwo"
    assert error.render(SOURCE).count("error:") == 2
    assert SpecError(first).diagnostics == [first]


def test_problems_collect_and_raise_together():
    problems = Problems("a.cnn")
    problems.raise_if_any()  # nothing yet
    problems.add("one", Loc(1, 1, 1, 2), notes=["n"], fix="f")
    problems.add("two")
    with pytest.raises(SpecError) as caught:
        problems.raise_if_any()
    one, two = caught.value.diagnostics
    assert (one.message, one.notes, one.fix, one.path) == ("one", ("n",), "f", "a.cnn")
    assert (two.message, two.loc) == ("two", NO_LOC)


def test_shape_error_carries_message_notes_fix_and_whether_sizes_matter():
    error = ShapeError("m", notes=["a"], fix="f", sizes=True)
    assert (error.message, error.notes, error.fix, error.sizes) == ("m", ("a",), "f", True)
    assert ShapeError("m").sizes is False


def test_did_you_mean():
    assert did_you_mean("CONVV", ["CONV", "DECONV", "POOL"]) == "did you mean `CONV`?"
    assert did_you_mean("stirde", {"stride": 1, "pad": 2}) == "did you mean `stride`?"
    assert did_you_mean("zzzz", ["CONV"]) == ""
    assert did_you_mean("x", []) == ""


def test_loc_of_a_token():
    class Token:
        line, column, end_line, end_column = 3, 4, 3, 9

    assert Loc.of(Token()) == Loc(3, 4, 3, 9)
