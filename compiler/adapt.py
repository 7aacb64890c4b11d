"""Adapting a spec's classifier to the data without editing the spec: `cnnc train --classes K`.

The class count is set by the last layer with a width of its own (FC units, CONV/DECONV filters)
on the way back from the output the loss reads; the layers after it (SOFTMAX, DROPOUT, FLATTEN,
a global pool, an upsampling) keep its width. A pure pass over the expanded graph: the spec file
is untouched and the run records `classes`, so eval, predict and resume rebuild the same net.
"""

from __future__ import annotations

from dataclasses import replace

from .errors import Diagnostic, SpecError
from .expand import Graph

WIDTH_OPTION = {"FC": "units", "CONV": "filters", "DECONV": "filters"}


def with_classes(graph: Graph, classes: int) -> Graph:
    """The graph with its classifier `classes` wide; SpecError when no single layer sets it."""
    node = graph.nodes[graph.output]
    while node.kind not in WIDTH_OPTION:
        if len(node.inputs) != 1 or node.kind == "INPUT":
            where = "the input" if node.kind == "INPUT" else f"{node.kind} {node.name}"
            raise SpecError(
                Diagnostic(
                    f"--classes {classes}: no FC or CONV sets the width of the output; the "
                    f"way back from it reaches {where} first",
                    node.loc,
                    fix="change the width of the last layer in the spec instead",
                    path=graph.path,
                )
            )
        node = graph.nodes[node.inputs[0]]
    attrs = {**node.attrs, WIDTH_OPTION[node.kind]: classes}
    nodes = tuple(replace(n, attrs=attrs) if n is node else n for n in graph.nodes)
    return replace(graph, nodes=nodes)


def require_classes(checked, classes: int) -> None:
    """The adapted net really ends in `classes` (a RESHAPE after the classifier could undo it)."""
    shape = checked.output.shape
    if shape[0] != classes:
        raise SpecError(
            Diagnostic(
                f"--classes {classes}: the output is still {'x'.join(map(str, shape))} after "
                "changing the last FC or CONV; a later layer sets its width",
                checked.graph.nodes[checked.graph.output].loc,
                fix="change the width of the last layer in the spec instead",
                path=checked.graph.path,
            )
        )
