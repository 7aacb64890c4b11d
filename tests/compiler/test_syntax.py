"""Tests for cnnc.compiler.syntax: the grammar, the AST with its locations, and syntax errors
that say what went wrong in the author's words (never lark's terminal names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cnnc.compiler import syntax
from cnnc.compiler.errors import Loc, SpecError
from cnnc.compiler.syntax import (
    BinOp,
    Call,
    Chain,
    Dims,
    FiltersArg,
    KwArg,
    Layer,
    Merge,
    Neg,
    Num,
    Ref,
    decode,
    parse,
    parse_file,
)

SPECS = Path(__file__).parents[2] / "specs"


def syntax_error(source: str):
    """The one diagnostic a syntax error produces."""
    with pytest.raises(SpecError) as caught:
        parse(source, "t.cnn")
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.path == "t.cnn"
    return diagnostic


def first_chain(source: str) -> Chain:
    return parse("input 1x8x8\n" + source).chains[0]


# ---- the language ------------------------------------------------------------------------------


def test_lenet5_parses_into_its_parts():
    spec = parse_file(str(SPECS / "lenet5.cnn"))
    assert spec.name == "lenet5"
    assert spec.input.values == (1, 28, 28)
    assert len(spec.chains) == 1  # continuation lines join the first chain
    kinds = [link.kind for link in spec.chains[0].links]
    assert kinds[:3] == ["CONV", "RELU", "POOL"] and kinds[-1] == "SOFTMAX"
    assert [(e.target, e.op, e.value) for e in spec.expects] == [
        ("params", "==", 61706),
        ("macs", "==", 416520),
        ("output", "==", 10),
    ]
    assert [s.key for s in spec.train] == ["optimizer", "schedule", "epochs", "batch"]


def test_a_layer_keeps_its_arguments_and_location():
    (layer,) = first_chain("CONV 6@5x5 s2 p1 nobias kernel=3x3 x2").links
    assert isinstance(layer, Layer)
    assert (layer.kind, layer.repeat) == ("CONV", 2)
    filters, stride, pad, nobias, kernel = layer.args
    assert filters == FiltersArg(
        Num(6, Loc(2, 6, 2, 7)), Dims((5, 5), Loc(2, 8, 2, 11)), filters.loc
    )
    assert filters.loc == Loc(2, 6, 2, 11)
    assert [stride.name, pad.name, nobias.name] == ["s2", "p1", "nobias"]
    assert kernel == KwArg("kernel", Dims((3, 3), Loc(2, 32, 2, 35)), Loc(2, 25, 2, 35))
    assert layer.loc == Loc(2, 1, 2, 38)


@pytest.mark.parametrize(
    ("text", "value"),
    [("12", 12), ("0.5", 0.5), ("1e-3", 0.001), (".25", 0.25), ("100k", 100_000)]
    + [("1.5M", 1_500_000), ("2G", 2_000_000_000), ("0.5k", 500), ("1.0005k", 1000.5)],
)
def test_numbers(text, value):
    (layer,) = first_chain(f"DROPOUT {text}").links
    (number,) = layer.args
    assert number.value == value and type(number.value) is type(value)


@pytest.mark.parametrize(
    ("text", "shape"),
    [
        ("2+3*4", ("+", 2, ("*", 3, 4))),
        ("(2+3)*4", None),  # an argument may not start with "(": that reads as a merge
        ("c*2-1", ("-", ("*", "c", 2), 1)),
        ("c//2", ("//", "c", 2)),
        ("c/2/2", ("/", ("/", "c", 2), 2)),
        ("c*(2+1)", ("*", "c", ("+", 2, 1))),
    ],
)
def test_expression_precedence(text, shape):
    def tree(expr):
        if isinstance(expr, Num):
            return expr.value
        if isinstance(expr, Ref):
            return expr.name
        if isinstance(expr, Neg):
            return ("neg", tree(expr.operand))
        assert isinstance(expr, BinOp)
        return (expr.op, tree(expr.left), tree(expr.right))

    if shape is None:
        with pytest.raises(SpecError):
            first_chain(f"FC {text}")
        return
    (layer,) = first_chain(f"FC {text}").links
    assert tree(layer.args[0]) == shape


def test_negative_numbers_in_block_arguments():
    spec = parse("input 1x8x8\nblock b(a=-1) { in -> out }\nb(a=-(2)) -> FC 3")
    assert isinstance(spec.blocks[0].params[0].default, Neg)
    call = spec.chains[0].links[0]
    assert isinstance(call.args[0].value, Neg)


def test_chains_names_merges_and_calls():
    spec = parse(
        "input 1x8x8\n"
        "block twice(c, k=3) {\n"
        "  in -> CONV c@k p1 -> y\n"
        "  ADD(y, in) -> out\n"
        "}\n"
        "CONV 4@3x3 p1 -> a\n"
        "a -> twice(4, k=1) x2 -> b\n"
        "CONCAT(a, b) -> FC 10\n"
    )
    (block,) = spec.blocks
    assert (block.name, [p.name for p in block.params]) == ("twice", ["c", "k"])
    assert block.params[0].default is None and block.params[1].default == Num(3, Loc(2, 18, 2, 19))
    assert len(block.chains) == 2
    filters = block.chains[0].links[1].args[0]
    assert filters.count == Ref("c", filters.count.loc) and filters.kernel.name == "k"
    first, second, third = spec.chains
    assert isinstance(first.links[-1], Ref) and first.links[-1].name == "a"
    call = second.links[1]
    assert isinstance(call, Call) and (call.block, call.repeat) == ("twice", 2)
    assert [(a.key, a.value.value) for a in call.args] == [(None, 4), ("k", 1)]
    merge = third.links[0]
    assert isinstance(merge, Merge) and [r.name for r in merge.inputs] == ["a", "b"]


def test_a_block_may_be_written_on_one_line_or_many():
    one = parse("input 1x8x8\nblock b(c) { in -> CONV c@3x3 -> out }\nb(2)")
    many = parse("input 1x8x8\nblock b(c) {\n\n  in -> CONV c@3x3\n    -> out\n\n}\nb(2)")
    assert len(one.blocks[0].chains) == len(many.blocks[0].chains) == 1


def test_continuations_comments_and_blank_lines():
    spec = parse(
        "# a comment\n\n"
        "network n   # trailing comment\n"
        "input 1x8x8\n"
        "CONV 2@3x3\n"
        "  # a comment inside the chain\n"
        "\n"
        "  -> RELU \\\n"
        "  -> FC 3\n"
    )
    assert [link.kind for link in spec.chains[0].links] == ["CONV", "RELU", "FC"]


def test_windows_line_endings():
    spec = parse("input 1x8x8\r\nCONV 2@3x3\r\n  -> FC 3\r\nexpect output == 3\r\n")
    assert len(spec.chains) == 1 and spec.expects[0].value == 3


def test_expect_forms():
    spec = parse(
        "input 1x8x8\nFC 3\nexpect params <= 100k\nexpect output == 3\nexpect t != 2x4x4\n"
        "expect macs > 1.5M\nexpect flops >= 1\nexpect params < 2G"
    )
    assert [(e.target, e.op, e.value) for e in spec.expects] == [
        ("params", "<=", 100_000),
        ("output", "==", 3),
        ("t", "!=", (2, 4, 4)),
        ("macs", ">", 1_500_000),
        ("flops", ">=", 1),
        ("params", "<", 2_000_000_000),
    ]
    assert spec.expects[2].target_loc == Loc(5, 8, 5, 9)


def test_train_settings():
    spec = parse("input 1x8x8\nFC 3\ntrain {\n  optimizer sgd lr=0.1 nesterov\n  epochs 3\n}")
    optimizer, epochs = spec.train
    assert optimizer.key == "optimizer"
    assert [v.name if isinstance(v, Ref) else v.key for v in optimizer.values] == [
        "sgd",
        "lr",
        "nesterov",
    ]
    assert epochs.values[0].value == 3


def test_repeated_headers_are_kept_for_the_expander_to_report():
    spec = parse("network a\nnetwork b\ninput 1x8x8\ninput 1x4x4\nFC 3")
    assert (spec.name, spec.input.values) == ("a", (1, 8, 8))
    assert [loc.line for loc in spec.header_locs] == [2, 4]


def test_an_empty_spec_parses_to_nothing():
    for source in ("", "\n\n", "# only a comment\n"):
        spec = parse(source)
        assert (spec.input, spec.chains, spec.blocks) == (None, (), ())


# ---- syntax errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "where", "message", "fix"),
    [
        (
            "input 1x8x8\nCONV 6@5x5 RELU\n",
            (2, 12),
            "one statement per line; did you forget `->`?",
            "write `-> RELU` to chain it, or start a new line",
        ),
        ("input 1x8x8 CONV 6@5x5\n", (1, 13), "one statement per line", "start a new line"),
        ("input 1x8x8\nFC 3 expect params == 1\n", (2, 6), "one statement per line", None),
        ("input 1x8x8\nconv 6@5x5\n", (2, 6), "unexpected `6`", "written in capitals: `CONV`"),
        ("input 1x8x8\nFC 3 -> relu 0.5\n", (2, 14), "unexpected `0.5`", "capitals: `RELU`"),
        (
            "input 1x8x8\nblock b(c) {\n  in -> CONV c@3x3 -> out\n\nb(2)\n",
            (2, 12),
            "this `{` is never closed",
            "add `}`",
        ),
        ("input 1x8x8\nFC 3 -> -> RELU\n", (2, 9), "unexpected `->`", "between the arrows"),
        ("input 1x8x8\nFC 3 -> input\n", (2, 9), "`input` is a keyword", "another name"),
        ("input 1x8x8\nblock b(C) { in -> out }\n", (2, 9), "unexpected `C`", "lowercase"),
        ("input 1x8x8\nADD(a,\n  b)\n", (2, 7), "unexpected end of line", "same line"),
        ("input 1x8x8\nFC 3 ;\n", (2, 6), "unexpected character ';'", "`s2`"),
        ("input 1x8x8\nFC 3 ->", (2, 8), "unexpected end of file", None),
        ("input 1x8x8\nFC 3\nexpect params = 3\n", (3, 15), "unexpected `=`", None),
        ("input 1x8x8x\n", (1, 8), "unexpected `x8x8x`", None),
    ],
)
def test_syntax_errors_are_located_and_explained(source, where, message, fix):
    diagnostic = syntax_error(source)
    assert (diagnostic.loc.line, diagnostic.loc.col) == where
    assert message in diagnostic.message
    if fix is None:
        assert diagnostic.fix is None or "__" not in diagnostic.fix
    else:
        assert fix in diagnostic.fix


def test_every_terminal_is_described_in_words():
    words = syntax._terminal_words()
    for terminal in syntax._parser().terminals:
        if terminal.name.startswith("__IGNORE") or terminal.name == "COMMENT":
            continue
        assert terminal.name in words
        assert "__" not in words[terminal.name] and "anon" not in words[terminal.name].lower()
    assert words[syntax.ARROW] == "`->`"
    assert words["__ANON_1"] == "`//`"


@pytest.mark.parametrize(
    "source",
    ["FC 3 -> ", "FC (", "CONV 6@", "ADD(", "FC 3 x2 x2", "block b(", "expect", "expect x ==", "@"]
    + ["block b() {", "train {", "FC 3)", "-> FC 3", "input", "network", "}", "ADD(a b)"],
)
def test_no_message_leaks_grammar_internals(source):
    diagnostic = syntax_error("input 1x8x8\n" + source)
    text = diagnostic.render("input 1x8x8\n" + source)
    assert "__" not in text and "anon" not in text.lower() and "$END" not in text
    assert diagnostic.loc.line >= 1


def test_brackets_nested_too_deep_are_an_error_not_a_crash():
    diagnostic = syntax_error("input 1x8x8\nblock b(c=" + "(" * 100 + "1" + ")" * 100 + ") {}")
    assert "nest deeper" in diagnostic.message and diagnostic.loc.line == 2


def test_an_expression_too_long_to_read_is_an_error_not_a_crash():
    diagnostic = syntax_error("input 1x8x8\nFC " + "+".join(["1"] * 3000))
    assert "too deeply" in diagnostic.message


# ---- files and bytes ---------------------------------------------------------------------------


def test_decode_accepts_utf8_and_drops_a_byte_order_mark():
    assert decode("input 1x8x8 # größe\n".encode(), "t.cnn").endswith("größe\n")
    assert decode(b"\xef\xbb\xbfinput 1x8x8\n", "t.cnn") == "input 1x8x8\n"


def test_decode_rejects_non_utf8_with_a_location():
    with pytest.raises(SpecError) as caught:
        decode(b"input 1x8x8\nFC 3 \xff\n", "t.cnn")
    (diagnostic,) = caught.value.diagnostics
    assert "not UTF-8" in diagnostic.message and "0xff" in diagnostic.message
    assert (diagnostic.loc.line, diagnostic.loc.col) == (2, 6)


def test_decode_rejects_binary_and_oversized_files():
    with pytest.raises(SpecError, match="NUL bytes"):
        decode(b"input 1x8x8\n\x00\x01", "t.cnn")
    with pytest.raises(SpecError, match="over 262,144 bytes"):
        decode(b"#" * (syntax.MAX_SOURCE_BYTES + 1), "t.cnn")


def test_parse_file_reads_at_most_the_limit(tmp_path):
    path = tmp_path / "big.cnn"
    path.write_bytes(b"# " + b"x" * (10 << 20))
    with pytest.raises(SpecError, match="over"):
        parse_file(str(path))
    good = tmp_path / "good.cnn"
    good.write_text("input 1x8x8\nFC 3\n")
    assert parse_file(str(good)).path == str(good)


# ---- every independent syntax error in one run ---------------------------------------------


def syntax_errors(source: str) -> list:
    with pytest.raises(SpecError) as caught:
        parse(source, "t.cnn")
    return caught.value.diagnostics


def test_every_independent_syntax_error_is_reported_in_one_run():
    source = (
        "input 1x28x28\n"
        "CONV 6@5x5 -> POOL max 2x2 s2\n"
        "  -> FC 10 ;\n"  # a statement over two lines: both are skipped
        "block b(c) {\n"
        "  in -> CONV c@3x3 RELU\n"  # the block's one chain: the block still parses
        "}\n"
        "b(3) -> FC 2 )\n"
        "ADD(a,\n"
        "  b) junk(\n"  # brackets left open: skipped to where they close
        ")\n"
        "expect params = 3\n"
    )
    found = [(d.loc.line, d.loc.col, d.message) for d in syntax_errors(source)]
    assert [(line, col) for line, col, _ in found] == [(3, 12), (5, 20), (7, 14), (8, 7), (11, 15)]
    assert "unexpected character ';'" in found[0][2] and "did you forget `->`?" in found[1][2]


def test_a_syntax_error_at_the_end_of_the_file_ends_the_search():
    found = syntax_errors("input 1x8x8\nFC 3 ;\nblock b() {\n  FC 2\n")
    assert [(d.loc.line, d.message) for d in found] == [
        (2, "unexpected character ';'"),
        (3, "this `{` is never closed"),
    ]


def test_the_repaired_source_keeps_every_line():
    with pytest.raises(syntax.SyntaxErrors) as caught:
        parse("input 1x8x8\nFC 3 ;\n  -> RELU\nblock b() { FC 2 ) }\nFC 1\n", "t.cnn")
    assert caught.value.repaired == "input 1x8x8\nin \n\nin \nFC 1\n"
