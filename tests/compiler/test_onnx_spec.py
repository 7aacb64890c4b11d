"""Writing imported layers as a spec (compiler/onnx_spec.py): identifiers, chains, named merges
and heads. The round trips of the whole zoo are in test_onnx_import.py."""

from __future__ import annotations

from cnnc.compiler.check import check
from cnnc.compiler.expand import expand
from cnnc.compiler.onnx_spec import Layer, identifier, write_spec
from cnnc.compiler.syntax import parse


def test_identifiers_are_valid_names_no_keyword_or_earlier_name_takes():
    taken: set[str] = set()
    assert identifier("/layer1/Relu_output_0", taken) == "relu_output_0"
    assert identifier("relu_output_0", taken) == "relu_output_0_2"
    assert identifier("42", taken) == "t42"
    assert identifier("output", taken) == "output_2"
    assert identifier("", taken) == "t"


def test_chains_name_a_tensor_only_where_the_graph_branches_merges_or_a_head_ends():
    layers = [
        Layer("CONV", ["4@3x3", "p1"], [-1], output="stem"),
        Layer("RELU", [], [0], output="r"),
        Layer("CONV", ["4@3x3", "p1"], [1], output="branch"),
        Layer("ADD", [], [1, 2], output="sum"),
        Layer("FC", ["10"], [3], output="logits"),
        Layer("FC", ["2"], [1], output="aux"),
        Layer("RELU", [], [0], output="dead"),  # nothing reads it: left out
    ]
    text, ordered, heads = write_spec(layers, [4], "net", (3, 8, 8), "a header")
    assert text.splitlines() == [
        "# a header",
        "network net",
        "input 3x8x8",
        "",
        "CONV 4@3x3 p1 -> RELU -> r",
        "  -> CONV 4@3x3 p1 -> branch",
        "ADD(r, branch)",
        "  -> FC 10",
    ]
    assert [layer.output for layer in ordered] == ["stem", "r", "branch", "sum", "logits"]
    assert heads == []
    text, ordered, heads = write_spec(layers, [4, 5], "net", (3, 8, 8), "a header")
    assert heads == ["logits", "aux"] and text.splitlines()[-1] == "output logits, aux"
    assert "  -> FC 10 -> logits" in text and "r -> FC 2 -> aux" in text
    heads = check(expand(parse(text)), verify_expects=False).outputs
    assert [(name, layer.shape) for name, layer in heads] == [("logits", (10,)), ("aux", (2,))]
