"""Tests for cnnc.compiler.expand: blocks and repeats inlined, names resolved, arguments
interpreted; and every mistake in names, arguments and structure reported, all in one run."""

from __future__ import annotations

import pytest

from cnnc.compiler import expand as E
from cnnc.compiler.errors import SpecError
from cnnc.compiler.expand import Graph, expand
from cnnc.compiler.syntax import parse

HEAD = "input 3x32x32\n"


def graph(source: str) -> Graph:
    return expand(parse(source, "t.cnn"))


def errors(source: str) -> list:
    with pytest.raises(SpecError) as caught:
        graph(source)
    assert all(d.path == "t.cnn" for d in caught.value.diagnostics)
    return caught.value.diagnostics


def error(source: str):
    (diagnostic,) = errors(source)
    return diagnostic


def kinds(g: Graph) -> list[str]:
    return [node.kind for node in g.nodes]


# ---- expansion ---------------------------------------------------------------------------------


def test_a_chain_becomes_numbered_nodes():
    g = graph(HEAD + "CONV 6@5x5 -> RELU -> CONV 6@3x3 -> RELU -> FC 10")
    assert [n.name for n in g.nodes] == ["input", "conv1", "relu1", "conv2", "relu2", "fc1"]
    assert [n.inputs for n in g.nodes] == [(), (0,), (1,), (2,), (3,), (4,)]
    assert g.output == 5 and g.input_shape == (3, 32, 32) and g.name == "t"


def test_repeats_and_block_calls_are_inlined():
    g = graph(
        HEAD + "block unit(c) {\n  in -> CONV c@3x3 p1 -> y\n  ADD(y, in) -> out\n}\n"
        "CONV 4@1x1 -> unit(4) x2 -> RELU x3"
    )
    assert kinds(g) == ["INPUT", "CONV", "CONV", "ADD", "CONV", "ADD", "RELU", "RELU", "RELU"]
    names = [n.name for n in g.nodes]
    assert names[2:6] == ["unit1.conv1", "unit1.add1", "unit2.conv1", "unit2.add1"]
    assert g.nodes[3].inputs == (2, 1)  # ADD(y, in): in is what flowed into the call
    assert g.tensors == {"unit1.y": 2, "unit1.out": 3, "unit2.y": 4, "unit2.out": 5}
    assert g.nodes[2].call_locs[0].line == 6


def test_block_parameters_defaults_and_expressions():
    g = graph(
        HEAD + "block b(c, k=3, g=c // 2) { in -> CONV c*2@k groups=g -> out }\n"
        "b(4) -> b(c=2, k=1) -> b(8, 5, 1)"
    )
    convs = [(n.attrs["filters"], n.attrs["kernel"], n.attrs["groups"]) for n in g.nodes[1:]]
    assert convs == [(8, (3, 3), 2), (4, (1, 1), 1), (16, (5, 5), 1)]


def test_nested_blocks_qualify_names():
    g = graph(
        HEAD + "block inner(c) { in -> CONV c@1x1 -> out }\n"
        "block outer(c) { in -> inner(c) -> inner(c) -> out }\n"
        "outer(2) -> FC 3"
    )
    assert [n.name for n in g.nodes[1:]] == [
        "outer1.inner1.conv1",
        "outer1.inner2.conv1",
        "fc1",
    ]
    assert len(g.nodes[1].call_locs) == 2


def test_a_chain_continues_from_the_last_one_and_names_can_be_taken_midway():
    g = graph(HEAD + "CONV 2@3x3 -> a -> RELU\nCONV 2@3x3 -> b\nADD(b, b) -> FC 3")
    assert kinds(g) == ["INPUT", "CONV", "RELU", "CONV", "ADD", "FC"]
    assert g.tensors == {"a": 1, "b": 3} and g.nodes[3].inputs == (2,)


def test_top_level_in_is_the_input_and_out_is_the_output():
    g = graph(HEAD + "in -> CONV 2@1x1 -> a\nin -> CONV 2@1x1 -> b\nADD(a, b) -> out\n")
    assert g.output == g.tensors["out"] == 3
    assert g.nodes[1].inputs == g.nodes[2].inputs == (0,)


def test_concat_of_many_and_merge_inputs_in_order():
    g = graph(
        HEAD + "CONV 1@1x1 -> a\nin -> CONV 2@1x1 -> b\nin -> CONV 3@1x1 -> c\nCONCAT(c, a, b)"
    )
    assert g.nodes[-1].inputs == (3, 1, 2)


# ---- mistakes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "where", "message", "fix"),
    [
        ("CONVV 6@3x3", (2, 1), "unknown layer `CONVV`", "did you mean `CONV`?"),
        ("CONV 6@3x3 -> FOO", (2, 15), "unknown layer `FOO`", "layers: CONV, DECONV"),
        ("CONV 6@3x3 strid=2", (2, 12), "CONV has no argument `strid`", "`stride`?"),
        ("CONV 6@3x3 nobais", (2, 12), "CONV has no argument `nobais`", "`nobias`?"),
        ("CONV 6@3x3 s2 s3", (2, 15), "CONV gets `stride` twice", "keep one"),
        ("CONV 6@3x3 kernel=5", (2, 12), "CONV gets `kernel` twice", "keep one"),
        ("CONV 6@3x3 s", (2, 12), "`s` needs a number: `s2` sets the stride to 2", "`s1`"),
        ("CONV 6@3x3 relu", (2, 12), "CONV has no argument `relu`", "`-> RELU`"),
        ("CONV s2", (2, 1), "CONV needs its kernel", "CONV takes: <filters>@<kernel> sN"),
        ("CONV 6", (2, 6), "CONV takes no bare number", "CONV takes:"),
        ("CONV 6@3x3 2x2", (2, 12), "CONV gets `kernel` twice", None),
        ("RELU 2", (2, 6), "RELU takes no bare number", "RELU takes no arguments"),
        ("RELU 2x2", (2, 6), "RELU takes no size `2x2`", None),
        ("FC 10@3", (2, 4), "FC takes no `filters@kernel`", "FC takes: <units>"),
        ("FC", (2, 1), "FC needs its units", None),
        ("FC 0", (2, 4), "FC units must be a positive whole number, not `0`", "`FC 1`"),
        ("FC 2.5", (2, 4), "FC units must be a positive whole number, not `2.5`", None),
        ("FC 2000000", (2, 4), "FC units must be at most 1048576", None),
        ("POOL max 2x2 s0", (2, 14), "POOL stride must be a positive size", "`s1` is the smallest"),
        ("CONV 6@0x3", (2, 6), "CONV kernel must be a positive size", None),
        ("CONV 6@3x3x3", (2, 6), "CONV kernel must be a positive size", None),
        ("CONV 0@3x3", (2, 6), "CONV filters must be a positive whole number", None),
        ("CONV 6@3x3 g0", (2, 12), "CONV groups must be a positive", "`g1` is the smallest"),
        ("CONV 6@3x3 bias=2", (2, 12), "CONV bias must be 0 or 1", None),
        ("POOL 2x2 mode=foo", (2, 10), "POOL mode must be one of max, avg, sum", None),
        ("LEAKYRELU slope=3x3", (2, 11), "LEAKYRELU slope must be a number", None),
        ("CONV k@3x3", (2, 6), "unknown parameter `k` (parameters: none here)", None),
        ("FC 4/0", (2, 4), "division by zero: 4 / 0", None),
        ("FC 100000000000*100000000000", (2, 4), "this number is out of range", None),
        ("LEAKYRELU 1e400", (2, 11), "this number is out of range", None),
        ("RELU(a, b)", (2, 1), "`RELU(...)` is not a merge; merges are MUL, ADD, CONCAT", None),
        ("CONV 2@1x1 -> a\nADD(a)", (3, 1), "ADD needs at least two inputs", "`ADD(a, b)`"),
        ("CONV 2@1x1 -> ADD", (2, 15), "ADD merges named branches: write `ADD(a, b)`", None),
        ("ADD(a, in) -> FC 3", (2, 5), "`a` is not defined here (defined: in)", None),
        ("CONV 1@1x1 -> feat\nADD(faet, in)", (3, 5), "`faet` is not defined", "`feat`?"),
        ("CONV 2@1x1 g=2", (2, 12), "CONV has no argument `g`", "`groups=...`"),
        ("relu -> FC 3", (2, 1), "`relu` is not defined here", "capitals: `RELU`"),
        (
            "ADD(a, in) -> FC 3\nCONV 3@1x1 -> a",
            (2, 5),
            "`a` is used before it is defined (at line 3)",
            "move the chain that ends in `-> a` above this line",
        ),
        (
            "CONV 3@1x1 -> a\nCONV 3@1x1 -> a",
            (3, 15),
            "`a` is already defined (first at line 2)",
            None,
        ),
        ("CONV 3@1x1 -> a\na", (3, 1), "`a` alone does nothing", "`a -> ...`"),
        ("FC 3 x0", (2, 1), "repeat count x0 is outside 1..1000", None),
        ("FC 3 x1001", (2, 1), "repeat count x1001 is outside 1..1000", None),
        ("nothing(3)", (2, 1), "unknown block `nothing`", "define it first"),
        ("conv(3)", (2, 1), "unknown block `conv`", "capitals: `CONV`"),
    ],
)
def test_mistakes_are_located_and_explained(source, where, message, fix):
    diagnostic = error(HEAD + source)
    assert (diagnostic.loc.line, diagnostic.loc.col) == where
    assert message in diagnostic.message
    assert diagnostic.fix, "every mistake suggests a fix"
    if fix is not None:
        assert fix in diagnostic.fix


@pytest.mark.parametrize(
    ("blocks", "call", "message"),
    [
        ("block b(c) { in -> out }", "b(1, 2)", "block `b` takes 1 argument(s) (c), but gets 2"),
        ("block b(c) { in -> out }", "b(d=2)", "block `b` has no parameter `d`"),
        ("block b(c) { in -> out }", "b(1, c=2)", "parameter `c` is given twice"),
        ("block b(c) { in -> out }", "b()", "block `b` needs parameter `c`"),
        ("block b(c, c) { in -> out }", "b(1, 2)", "parameter `c` is listed twice"),
        ("block b() { in -> out }\nblock b() { in -> out }", "b()", "block `b` is defined twice"),
        ("block b(c) { in -> CONV 2@1x1 -> c }", "b(1)", "`c` is a block parameter"),
        ("block b() { in -> b() -> out }", "b()", "block `b` calls itself (b -> b)"),
        (
            "block a() { in -> b() -> out }\nblock b() { in -> a() -> out }",
            "a()",
            "block `a` calls itself (a -> b -> a)",
        ),
        ("block b() { in -> RELU -> y }\nblock u() { in -> out }", "b()", "never called"),
    ],
)
def test_block_mistakes(blocks, call, message):
    found = errors(HEAD + blocks + "\n" + call)
    assert any(message in d.message for d in found)
    assert all(d.fix for d in found), "every mistake suggests a fix"


def test_blocks_nested_past_the_bound():
    blocks = "".join(f"block b{i}() {{ in -> b{i + 1}() -> out }}\n" for i in range(40))
    diagnostic = error(HEAD + blocks + "block b40() { in -> RELU -> out }\nb0()")
    assert f"blocks nest deeper than {E.MAX_CALL_DEPTH}" in diagnostic.message


def test_expansion_past_the_node_bound_stops_early():
    source = (
        HEAD + "block a() { in -> RELU x1000 -> out }\nblock b() { in -> a() x1000 -> out }\nb()"
    )
    diagnostic = error(source)
    assert "expands to more than 100,000 layers" in diagnostic.message


# ---- dead code ---------------------------------------------------------------------------------


def test_a_named_tensor_nobody_reads_is_an_error():
    diagnostic = error(HEAD + "CONV 2@1x1 -> side\nin -> FC 3")
    assert diagnostic.message == "`side` is computed but never used"
    assert (diagnostic.loc.line, diagnostic.loc.col) == (2, 15)


def test_an_unnamed_chain_end_nobody_reads_is_an_error():
    diagnostic = error(HEAD + "CONV 2@1x1 -> RELU\nin -> FC 3")
    assert diagnostic.message == "the end of this chain is never used"
    assert (diagnostic.loc.line, diagnostic.loc.col) == (2, 15)


def test_a_dead_branch_in_a_block_is_reported_once_however_often_it_is_called():
    diagnostic = error(
        HEAD + "block b() {\n  in -> CONV 2@1x1 -> unused\n  in -> RELU -> out\n}\nb() x3"
    )
    assert "`unused` is computed but never used" in diagnostic.message
    assert diagnostic.loc.line == 3


def test_a_name_used_by_the_next_chain_or_as_the_output_is_not_dead():
    graph(HEAD + "CONV 2@1x1 -> a\nRELU -> FC 3")  # the next chain continues from `a`
    graph(HEAD + "CONV 2@1x1 -> a -> RELU -> b")  # `a` flows on; `b` is the output
    graph(HEAD + "block b() { in -> RELU -> y }\nb() -> FC 3")  # a block's last tensor is its out


# ---- headers and input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message", "fix"),
    [
        ("FC 3", "the spec has no input shape", "`input 1x28x28`"),
        ("input 3x32x32\n", "the spec has no layers", "add a chain"),
        ("input 3x0x32\nFC 3", "input 3x0x32 has a size of 0", "`input 3x32x32`"),
        ("input 3x32\nFC 3", "input must be CxHxW, not 3x32", None),
        ("input 3x2000000x1\nFC 3", "input 3x2000000x1 is too large", None),
        ("input 64x4096x4096\nFC 3", "input 64x4096x4096 is too large", None),
        ("input 3x8x8\ninput 3x8x8\nFC 3", "the header line is repeated", "keep one"),
    ],
)
def test_header_mistakes(source, message, fix):
    diagnostic = error(source)
    assert message in diagnostic.message
    assert diagnostic.loc.line >= 1
    if fix is not None:
        assert fix in diagnostic.fix


def test_a_single_number_input_is_a_vector_of_that_many_channels():
    assert graph("input 10\nFC 3").input_shape == (10, 1, 1)


def test_the_network_name_defaults_to_the_file_name():
    assert expand(parse("input 1x8x8\nFC 3", "specs/my_net.cnn")).name == "my_net"
    assert graph("network other\ninput 1x8x8\nFC 3").name == "other"


# ---- every independent problem in one run ------------------------------------------------------


def test_independent_mistakes_are_all_reported():
    found = errors(
        "input 3x0x32\n"
        "block b(c) { in -> CONV c@3x3 -> out }\n"
        "CONVV 6@3x3 -> FC 0\n"
        "in -> CONV 6@3x3 s -> b(1, 2) -> b(d=1) -> missing\n"
        "ADD(missing, nowhere)\n"
    )
    assert [(d.loc.line, d.loc.col, d.message.split()[0]) for d in found] == [
        (1, 7, "input"),  # a size of 0
        (3, 1, "unknown"),  # CONVV
        (3, 19, "FC"),  # FC 0
        (4, 18, "`s`"),  # needs a number
        (4, 23, "block"),  # b(1, 2): too many arguments
        (4, 36, "block"),  # b(d=1): no parameter d
        (4, 34, "block"),  # b(d=1): c is missing
        # `missing` is not reported: its chain failed already
        (5, 14, "`nowhere`"),
    ]


def test_a_layer_after_a_mistake_is_still_checked_but_not_blamed():
    found = errors(HEAD + "FOO -> CONV 2@3x3 s0 -> RELU -> FC 10")
    assert [d.message.split()[0] for d in found] == ["unknown", "CONV"]


# ---- traps that used to pass silently -----------------------------------------------------------


@pytest.mark.parametrize(
    ("chain", "where", "fix"),
    [
        ("CONV 3@3x3 -> relu -> FC 10", (2, 15), "capitals: `RELU`"),
        ("CONV 3@3x3 -> bn -> relu -> FC 10", (2, 15), "capitals: `BN`"),
        ("CONV 3@3x3 -> batchnorm -> FC 10", (2, 15), "did you mean `BN`?"),
        ("CONV 3@3x3 -> maxpool -> FC 10", (2, 15), "did you mean `POOL max`?"),
    ],
)
def test_a_lowercase_keyword_in_a_chain_is_an_error_not_a_name(chain, where, fix):
    diagnostic = errors(HEAD + chain)[0]
    assert (diagnostic.loc.line, diagnostic.loc.col) == where
    assert "names a tensor here, so no layer is applied" in diagnostic.message
    assert fix in diagnostic.fix


def test_a_keyword_spelled_name_that_is_read_is_a_name():
    g = graph(HEAD + "CONV 3@3x3 -> SIGMOID -> scale -> RELU -> x\nADD(x, scale) -> FC 10")
    assert "scale" in g.tensors and "x" in g.tensors
    g = graph(HEAD + "CONV 3@3x3 -> pool\npool -> FC 10")
    assert g.tensors["pool"] == 1


def test_everyday_words_among_the_synonyms_stay_names():
    g = graph(HEAD + "CONV 3@3x3 -> sum -> FC 10")
    assert kinds(g) == ["INPUT", "CONV", "FC"]


@pytest.mark.parametrize(
    ("source", "where", "fix"),
    [
        ("CONV 6@5 x5 -> FC 10", (2, 1), "`CONV 6@5x5` (no space)"),
        ("CONV 6@5 x5 -> FC 10", (2, 1), "`CONV 6@5x5 x5`"),
        ("POOL max 2 x2 -> FC 10", (2, 1), "`POOL max 2x2`"),
    ],
)
def test_a_one_number_size_before_a_repeat_is_refused(source, where, fix):
    diagnostic = error(HEAD + source)
    assert (diagnostic.loc.line, diagnostic.loc.col) == where
    assert "reads as" in diagnostic.message and fix in diagnostic.fix


def test_a_full_size_before_a_repeat_repeats():
    assert kinds(graph(HEAD + "CONV 6@5x5 p2 x3 -> FC 10")) == ["INPUT", *["CONV"] * 3, "FC"]
    assert kinds(graph(HEAD + "CONV 6@5 p2 x3 -> FC 10")) == ["INPUT", *["CONV"] * 3, "FC"]


@pytest.mark.parametrize(
    ("word", "fix"),
    [
        ("BATCHNORM", "did you mean `BN`?"),
        ("BATCHNORM2D", "did you mean `BN`?"),
        ("MAXPOOL", "did you mean `POOL max`?"),
        ("AVGPOOL", "did you mean `POOL avg`?"),
        ("LINEAR", "did you mean `FC`?"),
        ("DENSE", "did you mean `FC`?"),
        ("CONV2D", "did you mean `CONV`?"),
        ("CONVTRANSPOSE", "did you mean `DECONV`?"),
        ("CONVTRANSPOSE2D", "did you mean `DECONV`?"),
    ],
)
def test_other_frameworks_names_get_a_did_you_mean(word, fix):
    diagnostic = error(HEAD + f"CONV 3@3x3 -> {word} -> FC 10")
    assert diagnostic.message == f"unknown layer `{word}`" and diagnostic.fix == fix
    assert diagnostic.loc.col == 15


def test_synonyms_follow_the_registry(monkeypatch):
    """A synonym names a kind only while the registry has it: added kinds are picked up."""
    from cnnc.compiler import errors as errors_module
    from cnnc.compiler.layers import REGISTRY

    assert errors_module.kind_for("swish", REGISTRY) == ("SILU" if "SILU" in REGISTRY else None)
    monkeypatch.setitem(REGISTRY, "SILU", REGISTRY["RELU"])
    assert errors_module.kind_for("SWISH", REGISTRY) == "SILU"
    assert errors_module.kind_for("silu", REGISTRY) == "SILU"


def test_a_merge_synonym_gets_a_did_you_mean():
    diagnostic = error(HEAD + "CONV 3@3x3 -> a\nCONV 3@3x3 -> b\nSUM(a, b) -> FC 10")
    assert "is not a merge" in diagnostic.message and "`ADD`" in diagnostic.fix


# ---- block conveniences --------------------------------------------------------------------------


def test_a_repeat_count_from_a_parameter():
    source = HEAD + "block unit(c) { CONV c@3x3 p1 -> RELU }\n"
    source += "block stage(c, n) { unit(c) xn -> CONV c@1x1 xn }\nstage(8, 3) -> FC 10"
    assert kinds(graph(source)) == ["INPUT", *["CONV", "RELU"] * 3, *["CONV"] * 3, "FC"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("stage(8, 0)", "repeat count x0 is outside 1..1000"),
        ("stage(8, 1.5)", "repeat `xn` needs a whole number, but `n` is 1.5"),
    ],
)
def test_a_bad_repeat_from_a_parameter_is_located(call, message):
    source = HEAD + "block stage(c, n) { CONV c@3x3 p1 -> RELU -> pair(c) xn }\n"
    source += "block pair(c) { CONV c@1x1 }\n" + call + " -> FC 10"
    assert message in error(source).message


def test_an_unknown_repeat_word_after_a_call():
    source = HEAD + "block unit(c) { CONV c@3x3 p1 }\nunit(4) xk -> FC 10"
    diagnostic = error(source)
    assert (diagnostic.loc.line, diagnostic.loc.col) == (3, 9)
    assert "must be a repeat" in diagnostic.message


def test_a_block_reads_its_input_sizes():
    source = HEAD + (
        "block se(r=4) {\n"
        "  in -> POOL avg global -> CONV in.c//r@1x1 -> RELU -> CONV in.c@1x1 -> SIGMOID -> g\n"
        "  in -> CONV in.h@1x1 -> CONV in.w*2@1x1 -> y\n"
        "  CONCAT(y, g)\n"
        "}\n"
        "CONV 16@3x3 p1 -> POOL max 2 -> se() -> FC 10\n"
    )
    g = graph(source.replace("CONCAT(y, g)", "y -> POOL avg global -> q\n  CONCAT(q, g)"))
    convs = [n.attrs["filters"] for n in g.nodes if n.kind == "CONV"]
    assert convs == [16, 4, 16, 16, 32] and g.reads_sizes
    assert not graph(HEAD + "CONV 3@1x1 -> FC 2").reads_sizes


def test_reading_a_size_of_an_unknown_tensor_or_field():
    diagnostic = error(HEAD + "block b() { CONV x.c@1x1 }\nb() -> FC 3")
    assert "`x` is not a tensor here" in diagnostic.message and diagnostic.loc.col == 18
    diagnostic = error(HEAD + "block b() { CONV in.k@1x1 }\nb() -> FC 3")
    assert "no size `k`" in diagnostic.message and "`in.c`" in diagnostic.fix


def test_a_default_reads_the_input_of_each_repetition():
    block = "block grow(c=in.c*2, k=c//3) { in -> CONV k@1x1 -> CONV c@1x1 }\n"
    g = graph(HEAD + block + "grow() x3 -> FC 2")
    assert [n.attrs["filters"] for n in g.nodes if n.kind == "CONV"] == [2, 6, 4, 12, 8, 24]
    assert g.reads_sizes
    g = graph(HEAD + block + "grow(5) x2 -> FC 2")
    assert [n.attrs["filters"] for n in g.nodes if n.kind == "CONV"] == [1, 5, 1, 5]


def test_a_bad_default_is_reported_once_at_the_default():
    diagnostic = error(HEAD + "block b(c=x.c) { in -> CONV c@1x1 }\nb() x3 -> FC 3")
    assert "`x` is not a tensor here (tensors: in)" in diagnostic.message
    assert (diagnostic.loc.line, diagnostic.loc.col) == (2, 11)


def test_a_size_read_after_a_shape_error_reports_that_error():
    source = HEAD + "block b() { CONV 4@64x64 -> y\n  y -> CONV y.c@1x1 }\nb() -> FC 3"
    diagnostic = errors(source)[0]
    assert "needs at least 64 rows" in diagnostic.message and diagnostic.loc.line == 2


RESIDUAL = HEAD + (
    "block unit(c, s=1) {\n"
    "  in -> CONV c@3x3 stride=s p1 -> y\n"
    "  if s != 1 or in.c != c {\n"
    "    in -> CONV c@1x1 stride=s -> short\n"
    "  } else if c > 100 {\n"
    "    in -> POOL max 1 -> short\n"
    "  } else {\n"
    "    in -> short\n"
    "  }\n"
    "  ADD(y, short)\n"
    "}\n"
)


@pytest.mark.parametrize(
    ("calls", "shortcut"),
    [
        ("unit(3)", []),
        ("unit(3, s=2)", ["CONV"]),
        ("unit(8)", ["CONV"]),
        ("unit(3) -> CONV 128@1x1 -> unit(128)", ["POOL"]),
    ],
)
def test_if_chooses_a_form_from_parameters_and_sizes(calls, shortcut):
    g = graph(RESIDUAL + calls + " -> FC 10")
    last = [n.kind for n in g.nodes if n.name.startswith(f"unit{calls.count('unit')}.")]
    assert last == ["CONV", *shortcut, "ADD"]


@pytest.mark.parametrize(
    ("condition", "taken"),
    [
        ("c == 3 and not c > 4", True),
        ("c == 4 or c == 3 and c < 2", False),
        ("not c == 3 or c >= 3", True),
        ("c * 2 - 1 == 5", True),
    ],
)
def test_conditions_combine_with_and_or_not(condition, taken):
    source = HEAD + f"block b(c) {{\n  if {condition} {{\n    CONV c@1x1\n  }}\n  RELU\n}}\n"
    g = graph(source + "b(3) -> FC 10")
    assert ("CONV" in kinds(g)) is taken


def test_a_name_from_a_branch_not_taken_is_not_defined():
    source = HEAD + "block b(c) {\n  if c > 3 {\n    CONV c@1x1 -> z\n  }\n  z -> RELU\n}\n"
    diagnostic = error(source + "b(3) -> FC 10")
    assert "`z` is not defined here" in diagnostic.message and diagnostic.loc.line == 6


def test_a_condition_on_an_unknown_parameter_reports_once():
    source = HEAD + "block b(c) {\n  if k > 3 {\n    CONV c@1x1 -> z\n  }\n  z -> RELU\n}\n"
    (diagnostic,) = errors(source + "b(3) -> FC 10")
    assert "unknown parameter `k`" in diagnostic.message


# ---- several outputs -----------------------------------------------------------------------------

HEADS = HEAD + (
    "CONV 8@3x3 p1 s2 -> RELU -> f1\n"
    "f1 -> CONV 8@3x3 p1 s2 -> RELU -> f2\n"
    "f1 -> CONV 6@1x1 -> p3\n"
    "f2 -> CONV 6@1x1 -> p4\n"
)


def test_an_output_line_names_every_head():
    g = graph(HEADS + "output p3, p4\n")
    assert g.outputs == (("p3", 5), ("p4", 6)) and g.output == 5 and not g.loss_chosen
    assert g.output_names == ["p3", "p4"] and g.outputs_loc.line == 6
    single = graph(HEAD + "CONV 3@1x1 -> FC 2")
    assert single.outputs == (("output", 2),) and single.loss_chosen


@pytest.mark.parametrize(
    ("tail", "where", "message"),
    [
        ("output p3\n", (5, 21), "`p4` is computed but never used"),
        ("output p3, p3, p4\n", (6, 12), "`p3` is listed twice as an output"),
        ("output p3, p5\n", (6, 12), "`p5` is not defined here"),
        ("output p3, in, p4\n", (6, 12), "`in` is the network input"),
        ("output p3, p4\noutput p3\n", (7, 1), "the header line is repeated"),
    ],
)
def test_output_line_mistakes_are_located(tail, where, message):
    diagnostic = errors(HEADS + tail)[0]
    assert (diagnostic.loc.line, diagnostic.loc.col) == where and message in diagnostic.message


def test_a_chain_end_not_listed_as_an_output_says_so():
    diagnostic = error(HEADS + "f2 -> FC 3\noutput p3, p4\n")
    assert "never used" in diagnostic.message and "`output` line" in diagnostic.fix
