"""Arguments: a layer's words and key=value options become its attributes (compiler/arguments.py),
with the registry's defaults and every spelling the docs give."""

from __future__ import annotations

import pytest
from test_expand import HEAD, graph


def test_arguments_are_interpreted_with_defaults():
    g = graph(HEAD + "CONV 6@5x3 s2 p1x2 d2 nobias -> POOL avg 3x3 ceil -> FC 10")
    conv, pool, fc = g.nodes[1:]
    assert conv.attrs == {
        "filters": 6,
        "kernel": (5, 3),
        "stride": (2, 2),
        "pad": (1, 2),
        "dilation": (2, 2),
        "groups": 1,
        "bias": False,
    }
    assert (pool.attrs["mode"], pool.attrs["kernel"], pool.attrs["stride"]) == ("avg", (3, 3), None)
    assert pool.attrs["ceil"] is True and fc.attrs == {"units": 10, "bias": True}


@pytest.mark.parametrize(
    ("text", "attrs"),
    [
        ("CONV 8@3 same dw", {"kernel": (3, 3), "pad": "same", "groups": "dw"}),
        ("CONV 8@3x3 valid g2", {"pad": (0, 0), "groups": 2}),
        ("CONV 8@3x3 stride=2x1 groups=4", {"stride": (2, 1), "groups": 4}),
        ("CONV 8@3x3 bias=0", {"bias": False}),
        ("CONV kernel=3 filters=2*4", {"filters": 8, "kernel": (3, 3)}),
        ("DECONV 8@2x2 s2 op1", {"outpad": (1, 1)}),
        ("POOL max 2x2 s1 p1 exclude_pad", {"pad": (1, 1), "count_pad": False}),
        ("POOL avg global", {"global": True, "mode": "avg"}),
        ("POOL 3x3 mode=sum floor", {"mode": "sum", "ceil": False}),
        ("DROPOUT 0.25", {"rate": 0.25}),
        ("LEAKYRELU 0.2", {"slope": 0.2}),
        ("UPSAMPLE 2x3", {"scale": (2, 3)}),
        ("UPSAMPLE", {"scale": (2, 2)}),
        ("LRN 3 alpha=2e-4", {"size": 3, "alpha": 2e-4}),
        ("BN eps=1e-3 momentum=0.01", {"eps": 1e-3, "momentum": 0.01}),
    ],
)
def test_argument_spellings(text, attrs):
    node = graph(HEAD + text).nodes[1]
    assert {key: node.attrs[key] for key in attrs} == attrs


def test_a_pool_window_as_one_number():
    g = graph(HEAD + "POOL max 3 s2 -> POOL avg 2 -> FC 10")
    assert g.nodes[1].attrs["kernel"] == (3, 3) and g.nodes[2].attrs["kernel"] == (2, 2)
    assert g.nodes[1].attrs["stride"] == (2, 2)
