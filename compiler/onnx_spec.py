"""Writing imported layers out as a spec (compiler/onnx_import.py builds the layers): chains
that follow the graph, a tensor named only where the graph branches or merges or a head ends,
a new line at each weighted layer, and every name a valid identifier no keyword takes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Layer:
    kind: str
    args: list[str]
    inputs: list[int]  # layer indices; -1 is the network input
    weights: dict = field(default_factory=dict)  # role -> array
    onnx: str = ""  # the ONNX node it came from
    output: str = ""  # its ONNX tensor


RESERVED = {"network", "input", "block", "expect", "train", "output", "in", "out"}
BREAK_BEFORE = {"CONV", "DECONV", "FC"}  # a chain's new line starts at a weighted layer


def identifier(text: str, taken: set[str]) -> str:
    name = re.sub(r"[^A-Za-z0-9_]+", "_", text.rsplit("/", 1)[-1]).strip("_").lower() or "t"
    if not re.match(r"[a-z_]", name):
        name = f"t{name}"
    if not re.search(r"[a-z]", name):
        name = f"t_{name}"
    base, n = name, 1
    while name in taken or name in RESERVED:
        n += 1
        name = f"{base}_{n}"
    taken.add(name)
    return name


def _live(layers: list[Layer], outputs: list[int]) -> list[int]:
    """The layers the outputs depend on, in order (dead branches and dropped layers removed)."""
    keep, stack = set(), list(outputs)
    while stack:
        index = stack.pop()
        if index >= 0 and index not in keep:
            keep.add(index)
            stack.extend(layers[index].inputs)
    return sorted(keep)


def write_spec(
    layers: list[Layer], outputs: list[int], name: str, shape, header: str
) -> tuple[str, list, list[str]]:
    """The spec text, the layers in the order its nodes are created, and the heads' names when
    there are several outputs (each a named tensor, listed on an `output` line)."""
    order = _live(layers, outputs)
    heads = set(outputs) if len(outputs) > 1 else set()
    readers: dict[int, list[int]] = {}
    for index in order:
        for source in layers[index].inputs:
            readers.setdefault(source, []).append(index)
    names, taken = {-1: "in"}, set()
    lines = [*(f"# {line}" for line in header.splitlines()), f"network {name}",
             f"input {'x'.join(map(str, shape))}", ""]  # fmt: skip
    chain: list[str] = []
    current = None  # the tensor the open chain ends at

    def name_of(index: int) -> str:
        if index not in names:
            names[index] = identifier(layers[index].output or layers[index].onnx, taken)
        return names[index]

    def close():
        if chain:
            lines.append(chain[0] + "".join(chain[1:]))
            chain.clear()

    for position, index in enumerate(order):
        layer = layers[index]
        text = " ".join([layer.kind, *layer.args])
        merge = len(layer.inputs) > 1  # ADD, CONCAT, MUL, UPSAMPLE(y, x): named branches
        if merge:
            close()
            branches = f"{layer.kind}({', '.join(name_of(i) for i in layer.inputs)})"
            chain.append(" ".join([branches, *layer.args]))
        elif chain and layer.inputs[0] == current:
            joint = "\n  -> " if layer.kind in BREAK_BEFORE else " -> "
            chain.append(joint + text)
        else:
            close()
            start = layer.inputs[0]
            first = start == -1 and position == 0
            chain.append(text if first else f"{name_of(start)} -> {text}")
        current = index
        later = readers.get(index, [])
        following = order[position + 1] if position + 1 < len(order) else None
        chained = len(later) == 1 and later[0] == following and len(layers[following].inputs) == 1
        if (later and not chained) or index in heads:
            chain.append(f" -> {name_of(index)}")
    close()
    head_names = [name_of(index) for index in outputs] if heads else []
    if head_names:
        lines.append(f"output {', '.join(head_names)}")
    return "\n".join(lines) + "\n", [layers[i] for i in order], head_names
