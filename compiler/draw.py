"""draw: Checked -> a diagram of the network, as SVG text (or PNG, or an HTML page with the table).

Three steps, each a plain function: `fold` turns the checked graph into boxes (a layer, or a block
call folded into one box with its repeat count, down to `depth` levels of blocks); `place` lays
them out; `svg` writes the placed shapes (draw_paint.py paints the same shapes as a PNG and
wraps the SVG in an HTML page; `cnnc draw` lives in cnnc/cli_draw.py).

The layout is layered, top to bottom, and needs no graph library (no graphviz binary, nothing to
install; the SVG is written here because every pure-Python SVG writer would be a dependency for
forty lines of `<rect>` and `<path>`):
- a box's row is the longest path to it from the input, so every arrow points down;
- the main column holds the longest path to the output; side branches take the nearest free
  column to its right and keep it until their last reader, so a branch runs straight down;
- an arrow that skips rows from the main column (a residual shortcut, a U-Net skip) is routed
  around the left of everything it passes, in its own lane, nested shortest-inside;
- when the network also upsamples (an encoder-decoder), each row is shifted right by the
  resolution of its main box, so the encoder steps right as the maps shrink and the decoder
  steps back as they grow: the U-Net's U, lying on its side, with its skips along the left.

Output is deterministic: the same spec gives the same bytes (coordinates rounded to 0.1 px,
no dates, no ids drawn from memory addresses), so a diagram can be committed and diffed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from xml.sax.saxutils import escape

from .check import Checked
from .layers import REGISTRY, Shape, describe, fmt

# ---- fold: the graph as boxes ------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    """One box of the diagram: a layer, or the layers of a block call folded together."""

    index: int  # position in the diagram's box list (topological order)
    members: tuple[int, ...]  # node indices, contiguous
    output: int  # the member node whose tensor leaves the box
    kind: str  # a registry key, "INPUT", or "BLOCK"
    title: str  # "CONV 6@5x5 p2", "bottleneck(64) ×2"
    name: str  # "conv1", "bottleneck2–3"
    shape: Shape
    params: int
    macs: int
    inputs: tuple[int, ...]  # box indices, each once
    frames: tuple[str, ...] = ()  # the expanded block calls around it, outermost first
    repeat: int = 1
    line: int = 0
    tags: tuple[str, ...] = ()  # the spec's names for its output tensor: "e1", "y"


@dataclass(frozen=True)
class Frame:
    """An expanded block call, drawn as a labelled outline around its boxes."""

    key: str  # the call's instance prefix: "bottleneck2", "inception3.basic2"
    label: str  # "bottleneck2: bottleneck(64)"
    level: int  # 0 for a call at the top of the spec


def _call_text(source_lines: list[str], loc) -> str:
    """The call as the spec writes it, without its repeat suffix: `bottleneck(64)`."""
    if loc.line < 1 or loc.line > len(source_lines):
        return "block"
    if loc.end_line == loc.line:
        text = source_lines[loc.line - 1][loc.col - 1 : loc.end_col - 1]
    else:
        text = source_lines[loc.line - 1][loc.col - 1 :]
        text += " ".join(source_lines[loc.line : loc.end_line - 1])
        text += " " + source_lines[loc.end_line - 1][: loc.end_col - 1]
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s*\(\s*", "(", text)
    text = re.sub(r"\s*\)", ")", text)
    return re.sub(r"\s*x[0-9]+$", "", text)


def fold(checked: Checked, depth: int = 0) -> tuple[list[Box], list[Frame]]:
    """The boxes of the diagram: every layer inside fewer than `depth + 1` block calls is its own
    box; deeper ones are folded into the box of their call at level `depth`, and the instances of
    a repeated call (`x3`) into one box. Returns the boxes in topological order and the frames of
    the expanded calls."""
    graph = checked.graph
    lines = graph.source.split("\n")
    groups: dict[tuple, list[int]] = {}  # key -> member nodes, in node order
    frames: dict[str, Frame] = {}
    instances: dict[tuple, list[str]] = {}  # (parent prefix, call loc) -> instance prefixes
    for node in graph.nodes:
        parts = node.name.split(".")[:-1]  # the block instances around it, outermost first
        prefixes = [".".join(parts[: k + 1]) for k in range(len(parts))]
        for k, prefix in enumerate(prefixes):
            parent = prefixes[k - 1] if k else ""
            seen = instances.setdefault((parent, node.call_locs[k]), [])
            if prefix not in seen:
                seen.append(prefix)
        if len(parts) > depth:
            key = ("call", prefixes[depth - 1] if depth else "", node.call_locs[depth])
        else:
            key = ("node", node.index)
        groups.setdefault(key, []).append(node.index)
        for k, prefix in enumerate(prefixes[:depth]):
            if prefix not in frames:
                label = f"{prefix}: {_call_text(lines, node.call_locs[k])}"
                frames[prefix] = Frame(prefix, label, k)
    # the frame labels of repeated calls say which instance they are
    for prefixes in instances.values():
        if len(prefixes) > 1:
            for number, prefix in enumerate(prefixes, 1):
                if prefix in frames:
                    old = frames[prefix]
                    label = f"{old.label} x{len(prefixes)}, #{number}"
                    frames[prefix] = Frame(prefix, label, old.level)
    ordered = sorted(groups.items(), key=lambda item: item[1][0])
    box_of: dict[int, int] = {}
    for number, (_, members) in enumerate(ordered):
        for member in members:
            box_of[member] = number
    consumed_outside: dict[int, bool] = {}
    for node in graph.nodes:
        for source in node.inputs:
            if box_of[source] != box_of[node.index]:
                consumed_outside[source] = True
    boxes = []
    for number, (key, members) in enumerate(ordered):
        member_set = set(members)
        leaving = [m for m in members if consumed_outside.get(m) or m == graph.output]
        output = leaving[-1] if leaving else members[-1]
        inputs: list[int] = []
        for member in members:
            for source in graph.nodes[member].inputs:
                if source not in member_set and box_of[source] not in inputs:
                    inputs.append(box_of[source])
        first = graph.nodes[members[0]]
        layer = checked.layers[output]
        tags = tuple(
            name.rsplit(".", 1)[-1]
            for name, index in graph.tensors.items()
            if index == output and (key[0] == "node" or name.count(".") <= depth)
        )
        common = dict(
            index=number,
            members=tuple(members),
            output=output,
            shape=layer.shape,
            params=sum(checked.layers[m].param_count for m in members),
            macs=sum(checked.layers[m].macs for m in members),
            inputs=tuple(inputs),
            frames=tuple(_prefixes(first.name)[:depth]),
            tags=tags,
        )
        if key[0] == "node":
            title = "input" if first.kind == "INPUT" else describe(first.kind, first.attrs)
            name = first.name if first.kind != "INPUT" else ""
            boxes.append(
                Box(kind=first.kind, title=title, name=name, line=first.loc.line, **common)
            )
            continue
        loc = key[2]
        prefixes = instances[(key[1], loc)]
        first_instance = _prefixes(first.name)[depth]
        last_instance = _prefixes(graph.nodes[members[-1]].name)[depth]
        repeat = prefixes.index(last_instance) - prefixes.index(first_instance) + 1
        title = _call_text(lines, loc) + (f" ×{repeat}" if repeat > 1 else "")
        name = first_instance
        if repeat > 1:
            name += "–" + last_instance.rsplit(".", 1)[-1]
        boxes.append(
            Box(kind="BLOCK", title=title, name=name, repeat=repeat, line=loc.line, **common)
        )
    used = {f for box in boxes for f in box.frames}
    return boxes, [frames[key] for key in frames if key in used]


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")[:-1]
    return [".".join(parts[: k + 1]) for k in range(len(parts))]


# ---- place: rows, columns, lanes ---------------------------------------------------------------

FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
TITLE_PX, SMALL_PX, LABEL_PX = 12.0, 10.5, 10.0
CHAR = 0.602  # advance of a monospace glyph, in em (DejaVu Sans Mono)
BOX_H = 40.0
ROW_GAP = 24.0  # the free band between two rows, where arrows turn
LANE = 11.0  # distance between neighbouring skip lanes
FRAME_PAD, FRAME_STEP, FRAME_LABEL, FRAME_VPAD = 7.0, 7.0, 13.0, 5.0
MARGIN = 20.0
HEADER = 46.0

STYLE = {  # family: (fill, stroke)
    "input": ("#e2e8f0", "#475569"),
    "conv": ("#dbeafe", "#2563eb"),
    "pool": ("#dcfce7", "#16a34a"),
    "fc": ("#ede9fe", "#7c3aed"),
    "act": ("#fef3c7", "#d97706"),
    "norm": ("#fce7f3", "#db2777"),
    "merge": ("#ffedd5", "#ea580c"),
    "shape": ("#f1f5f9", "#64748b"),
    "block": ("#f8fafc", "#334155"),
}
ACTIVATIONS = {"RELU", "LEAKYRELU", "ELU", "TANH", "SIGMOID", "SOFTMAX"}
ACTIVATIONS |= {"RELU6", "SILU", "HSWISH", "HSIGMOID", "GELU", "MISH", "PRELU"}


def family(kind: str) -> str:
    if kind == "INPUT":
        return "input"
    if kind == "BLOCK":
        return "block"
    if kind in ("CONV", "DECONV"):
        return "conv"
    if kind in ("POOL", "UPSAMPLE"):
        return "pool"
    if kind == "FC":
        return "fc"
    if kind in ACTIVATIONS:
        return "act"
    if kind in ("BN", "LRN", "DROPOUT", "LN", "SCALE", "DROPPATH"):
        return "norm"
    if kind in REGISTRY and REGISTRY[kind].merge:
        return "merge"
    return "shape"


@dataclass(frozen=True)
class Text:
    x: float
    y: float  # baseline
    text: str
    size: float
    anchor: str = "start"  # start | middle | end
    bold: bool = False
    color: str = "#0f172a"
    halo: bool = False


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    stroke: str
    width: float = 1.2
    radius: float = 5.0
    dash: str = ""


@dataclass(frozen=True)
class Arrow:
    """An orthogonal route; corners are rounded when painted, the last point gets the head."""

    points: tuple[tuple[float, float], ...]
    source: int  # box indices
    target: int
    skip: bool = False  # routed through a lane


@dataclass
class Placed:
    width: float
    height: float
    boxes: list[Box]
    rects: dict[int, Rect]  # box index -> its outline
    stacks: dict[int, list[Rect]]  # repeated blocks: the cards behind
    texts: dict[int, list[Text]]  # box index -> its lines
    tooltips: dict[int, str]
    arrows: list[Arrow]
    frames: list[tuple[Frame, Rect, Text]]
    header: list[Text] = field(default_factory=list)


def _human(count: int) -> str:
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if count >= limit * 0.999995:
            return f"{count / limit:.2f}{suffix}"
    return f"{count:,}"


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(chars - 1, 1)] + "…"


def _detail(box: Box) -> str:
    parts = [fmt(box.shape)]
    if box.params:
        parts.append(f"{_human(box.params)} params")
    if box.kind == "BLOCK":
        parts.append(f"{len(box.members)} layers")
    return " · ".join(parts)


TITLE_CHAR, SMALL_CHAR = CHAR * TITLE_PX, CHAR * SMALL_PX
MIN_BOX_W, MAX_BOX_W, INSET = 170.0, 400.0, 8.0


def _tag(box: Box) -> str:
    return "-> " + ", ".join(box.tags) if box.tags else ""


def _needs(box: Box) -> tuple[float, float, float]:
    """The widths its two lines need: title and name; details and named tensors."""
    name = len(box.name) + 2 if box.name else 0
    tag = len(_tag(box)) + 2 if box.tags else 0
    return (
        MIN_BOX_W,
        len(box.title) * TITLE_CHAR + name * SMALL_CHAR + 2 * INSET,
        (len(_detail(box)) + tag) * SMALL_CHAR + 2 * INSET,
    )


def _lines(box: Box, r: Rect) -> list[Text]:
    """The box's text: title (bold) and name on top, shape and parameters below, each cut to fit
    (the full text is in the box's tooltip)."""
    room = (r.w - 2 * INSET) / SMALL_CHAR  # in small characters
    name = _clip(box.name, int(room / 2)) if box.name else ""
    spare = room - len(_detail(box)) - 2
    tag = _clip(_tag(box), int(max(spare, room / 3))) if box.tags else ""
    title_room = (r.w - 2 * INSET - (len(name) + 2 if name else 0) * SMALL_CHAR) / TITLE_CHAR
    detail_room = room - (len(tag) + 2 if tag else 0)
    x, right = r.x + INSET, r.x + r.w - INSET
    lines = [
        Text(x, r.y + 16, _clip(box.title, int(title_room + 0.01)), TITLE_PX, bold=True),
        Text(x, r.y + 32, _clip(_detail(box), int(detail_room + 0.01)), SMALL_PX, color="#334155"),
    ]
    if name:
        lines.append(Text(right, r.y + 16, name, SMALL_PX, "end", color="#64748b"))
    if tag:
        lines.append(Text(right, r.y + 32, tag, SMALL_PX, "end", color="#0f766e"))
    return lines


def _spatial(shape: Shape) -> int:
    return shape[1] * shape[2] if len(shape) == 3 else 1


def _rows(boxes: list[Box]) -> tuple[list[int], list[bool]]:
    """Each box's row (longest path from the input) and whether it is on the main column."""
    row = [0] * len(boxes)
    for box in boxes:
        row[box.index] = 1 + max((row[i] for i in box.inputs), default=-1)
    main = [False] * len(boxes)
    sinks = {b.index for b in boxes} - {i for box in boxes for i in box.inputs}
    current = max(sinks, key=lambda i: (row[i], -i)) if sinks else len(boxes) - 1
    while True:
        main[current] = True
        inputs = boxes[current].inputs
        if not inputs:
            break
        best = max(row[i] for i in inputs)
        current = next(i for i in inputs if row[i] == best)
    return row, main


def _columns(boxes: list[Box], row: list[int], main: list[bool]) -> list[int]:
    """Column 0 for the main path; a side box takes its input's column when that is free for its
    whole stay, else the nearest free column, and keeps it down to the row above its last reader."""
    readers: dict[int, list[int]] = {b.index: [] for b in boxes}
    for box in boxes:
        for source in box.inputs:
            readers[source].append(box.index)
    column = [0] * len(boxes)
    taken: dict[int, list[tuple[int, int]]] = {}

    def free(c: int, start: int, end: int) -> bool:
        return all(end < a or b < start for a, b in taken.get(c, []))

    for box in boxes:
        if main[box.index]:
            continue
        start = row[box.index]
        end = max([start] + [row[r] - 1 for r in readers[box.index]])
        wanted = [column[i] for i in box.inputs if not main[i]]
        choice = next((c for c in wanted if free(c, start, end)), None)
        if choice is None:
            choice = 1
            while not free(choice, start, end):
                choice += 1
        column[box.index] = choice
        taken.setdefault(choice, []).append((start, end))
    return column


def _levels(boxes: list[Box], row: list[int], main: list[bool]) -> dict[int, int]:
    """Row -> resolution level of its main box, when the network upsamples; else no shifts."""
    upsamples = any(
        len(box.shape) == 3
        and any(_spatial(box.shape) > _spatial(boxes[i].shape) for i in box.inputs)
        for box in boxes
    )
    if not upsamples:
        return {}
    sizes = sorted({_spatial(b.shape) for b in boxes if main[b.index]}, reverse=True)
    rank = {size: number for number, size in enumerate(sizes)}
    return {row[b.index]: rank[_spatial(b.shape)] for b in boxes if main[b.index]}


def _frame_stacks(frames: list[Frame], spans) -> tuple[dict, dict]:
    """How far each frame reaches above its first row and below its last: a label band for it
    and for each level of frames nested in it that opens (closes) in the same row."""
    above, below = {}, {}
    for frame in frames:
        first, last = spans[frame.key]
        inner = [f for f in frames if f.key.startswith(frame.key + ".")]
        opens = {f.level for f in inner if spans[f.key][0] == first}
        closes = {f.level for f in inner if spans[f.key][1] == last}
        above[frame.key] = (FRAME_LABEL + FRAME_VPAD) * (1 + len(opens))
        below[frame.key] = FRAME_VPAD * (1 + len(closes))
    return above, below


def _entries(coming: list[tuple[float, int]], centre: float, width: float) -> dict:
    """Where arrows meet a box's top: one arriving straight from above keeps the centre, the
    others sit beside it on the side they come from, nearest first, so no arrow kinks."""
    coming = sorted(coming)
    straight = [c for c in coming if abs(c[0] - centre) < 0.5][:1]
    if not straight:
        spacing = min(22.0, width * 0.6 / max(len(coming) - 1, 1))
        middle = (len(coming) - 1) / 2
        return {s: centre + (k - middle) * spacing for k, (_, s) in enumerate(coming)}
    left = [c for c in coming if c[0] < centre and c not in straight]
    right = [c for c in coming if c[0] >= centre and c not in straight]
    spacing = min(22.0, width * 0.45 / max(len(left), len(right), 1))
    places = {straight[0][1]: centre}
    places.update({s: centre - (k + 1) * spacing for k, (_, s) in enumerate(reversed(left))})
    places.update({s: centre + (k + 1) * spacing for k, (_, s) in enumerate(right)})
    return places


@dataclass
class _Grid:
    """What placing has worked out so far: rows, the main column, box outlines, row bands."""

    boxes: list[Box]
    row: list[int]
    main: list[bool]
    width: float  # of every box
    rects: dict[int, Rect]
    top: list[float]  # y of each row
    band: list[float]  # y where arrows into a row turn (the middle of the free gap above it)

    def left_of(self, r: int) -> float:
        """The left edge of the leftmost box in row r."""
        return min((self.rects[b.index].x for b in self.boxes if self.row[b.index] == r), default=0)


def place(checked: Checked, depth: int = 0) -> Placed:
    """Lay the folded graph out: boxes, arrows, frames and the header, in SVG pixels."""
    boxes, frames = fold(checked, depth)
    row, main = _rows(boxes)
    column = _columns(boxes, row, main)
    levels = _levels(boxes, row, main)
    width = min(max(max(_needs(b)) for b in boxes), MAX_BOX_W)
    frame_depth = max((f.level + 1 for f in frames), default=0)
    pad = {f.key: FRAME_PAD + FRAME_STEP * (frame_depth - 1 - f.level) for f in frames}
    column_gap = 26.0 + 2 * (FRAME_PAD + FRAME_STEP * max(frame_depth - 1, 0))
    indent = width / 2 + 26.0  # per resolution level: half a box, so a skip clears the arm

    spans = _frame_spans(boxes, row)
    above, below = _frame_stacks(frames, spans)
    top, band, height = _row_tops(max(row) + 1, spans, above, below)
    rects = {}
    for box in boxes:
        x = column[box.index] * (width + column_gap) + levels.get(row[box.index], 0) * indent
        rects[box.index] = Rect(x, top[row[box.index]], width, BOX_H, *STYLE[family(box.kind)])
    grid = _Grid(boxes, row, main, width, rects, top, band)
    arrows = _arrows(grid, _lanes(grid))
    outlines = [_outline(grid, f, spans[f.key], pad[f.key], above, below, arrows) for f in frames]

    # move everything right of the left margin
    dx = MARGIN - min(
        [r.x for r in rects.values()]
        + [x for a in arrows for x, _ in a.points]
        + [r.x for _, r, _ in outlines]
    )
    rects = {i: replace(r, x=r.x + dx) for i, r in rects.items()}
    arrows = [replace(a, points=tuple((x + dx, y) for x, y in a.points)) for a in arrows]
    outlines = [(f, replace(r, x=r.x + dx), replace(t, x=t.x + dx)) for f, r, t in outlines]

    texts, tooltips, stacks = {}, {}, {}
    for box in boxes:
        r = rects[box.index]
        texts[box.index] = _lines(box, r)
        tooltips[box.index] = _tooltip(checked, box)
        if box.repeat > 1:  # the cards of a repeated block, behind it
            fill, stroke = STYLE["block"]
            stacks[box.index] = [
                Rect(r.x + 3 * k, r.y - 3 * k, width, BOX_H, fill, stroke)
                for k in range(min(box.repeat, 3) - 1, 0, -1)
            ]
    header = _header(checked, depth, any(b.kind == "BLOCK" for b in boxes))
    right = max(
        [r.x + r.w + 3 * (min(b.repeat, 3) - 1) for b in boxes for r in [rects[b.index]]]
        + [r.x + r.w for _, r, _ in outlines]
        + [MARGIN + len(t.text) * CHAR * t.size for t in header]
    )
    return Placed(right + MARGIN, height, boxes, rects, stacks, texts, tooltips, arrows, outlines,
                  header)  # fmt: skip


def _frame_spans(boxes: list[Box], row: list[int]) -> dict[str, tuple[int, int]]:
    """Frame key -> (first row, last row) of the boxes it surrounds."""
    spans: dict[str, tuple[int, int]] = {}
    for box in boxes:
        r = row[box.index]
        for key in box.frames:
            first, last = spans.get(key, (r, r))
            spans[key] = (min(first, r), max(last, r))
    return spans


def _row_tops(rows: int, spans, above, below) -> tuple[list[float], list[float], float]:
    """The y of each row, the y where arrows into it turn, and the picture's height: the gap
    above a row is the free band plus what the frames ending above it and opening at it need."""
    opening, closing = [0.0] * rows, [0.0] * rows
    for key, (first, last) in spans.items():
        opening[first] = max(opening[first], above[key])
        closing[last] = max(closing[last], below[key])
    top, band = [0.0] * rows, [0.0] * rows
    y = HEADER + opening[0]
    for r in range(rows):
        if r:
            free = y + closing[r - 1]
            band[r] = free + ROW_GAP / 2
            y = free + ROW_GAP + opening[r]
        top[r] = y
        y += BOX_H
    return top, band, y + closing[-1] + MARGIN


def _lanes(grid: _Grid) -> dict[tuple[int, int], float]:
    """(source, target) -> the x of its lane, for every arrow from a main-column box that skips
    rows: left of every box it passes, shortest spans innermost, lanes side by side where their
    spans overlap (spans that only touch share a lane)."""
    row = grid.row
    skips = sorted(
        (
            (source, box.index)
            for box in grid.boxes
            for source in box.inputs
            if row[box.index] - row[source] > 1 and grid.main[source]
        ),
        key=lambda s: (row[s[1]] - row[s[0]], s[0], s[1]),
    )
    taken: list[tuple[int, int, float]] = []  # (first row, last row, x)
    lanes = {}
    for source, target in skips:
        low, high = row[source], row[target]
        edge = min(grid.left_of(r) for r in range(low, high + 1)) - 18.0
        k = 0
        while any(
            abs(edge - LANE * k - x) < LANE / 2 and a < high and low < b for a, b, x in taken
        ):
            k += 1
        taken.append((low, high, edge - LANE * k))
        lanes[(source, target)] = edge - LANE * k
    return lanes


def _arrows(grid: _Grid, lanes: dict[tuple[int, int], float]) -> list[Arrow]:
    """Orthogonal routes: down from the source's bottom, across in the band above the target,
    down into its top; a skip leaves the source's left side for its lane and enters the target
    from the left (from the top when another box stands left of the target)."""
    rects, row, half = grid.rects, grid.row, grid.width / 2
    from_left = {
        key for key in lanes if rects[key[1]].x <= grid.left_of(row[key[1]])
    }  # the others come in through the top
    arrivals: dict[int, list[tuple[float, int]]] = {}
    for box in grid.boxes:
        for source in box.inputs:
            if (source, box.index) not in from_left:
                x = lanes.get((source, box.index), rects[source].x + half)
                arrivals.setdefault(box.index, []).append((x, source))
    entry = {
        (source, target): x
        for target, coming in arrivals.items()
        for source, x in _entries(coming, rects[target].x + half, grid.width).items()
    }
    arrows = []
    for box in grid.boxes:
        t, b = rects[box.index], grid.band[row[box.index]]
        top = t.y - 3 * (min(box.repeat, 3) - 1)  # above the cards of a repeated block
        for source in box.inputs:
            s, key = rects[source], (source, box.index)
            if key in lanes:
                lane, start = lanes[key], (s.x, s.y + BOX_H / 2 + 6)
                if key in from_left:
                    end = t.y + BOX_H / 2 - 6
                    points = (start, (lane, start[1]), (lane, end), (t.x, end))
                else:
                    points = (
                        start,
                        (lane, start[1]),
                        (lane, b),
                        (entry[key], b),
                        (entry[key], top),
                    )
                arrows.append(Arrow(points, source, box.index, True))
                continue
            sx, ex = s.x + half, entry[key]
            if abs(sx - ex) < 0.05:
                points = ((sx, s.y + BOX_H), (ex, top))
            else:
                points = ((sx, s.y + BOX_H), (sx, b), (ex, b), (ex, top))
            arrows.append(Arrow(points, source, box.index))
    return arrows


def _outline(grid: _Grid, frame: Frame, span, pad: float, above, below, arrows):
    """A frame's dashed outline round its boxes (and the skip lanes that stay inside it), and its
    label, placed right of the arrow entering the first box, widening the frame into a free
    gutter when that makes room, else at the left (under a white halo)."""
    inside = {b.index for b in grid.boxes if frame.key in b.frames}
    rects, width = grid.rects, grid.width
    x0 = min(rects[i].x for i in inside) - pad
    x1 = max(rects[i].x for i in inside) + width + pad
    for arrow in arrows:
        if arrow.skip and arrow.source in inside and arrow.target in inside:
            x0 = min(x0, min(x for x, _ in arrow.points) - pad)
    y0 = grid.top[span[0]] - above[frame.key]
    y1 = grid.top[span[1]] + BOX_H + below[frame.key]
    opener = min(rects[i].x for i in inside if grid.row[i] == span[0])
    lx = opener + width / 2 + 8
    wanted = lx + len(frame.label) * CHAR * LABEL_PX + 6
    if wanted > x1 and not any(
        r.x < wanted and r.x + r.w > x1 and r.y < y1 and r.y + r.h > y0
        for i, r in rects.items()
        if i not in inside
    ):
        x1 = wanted
    if wanted > x1:
        lx = x0 + 6
    rect = Rect(x0, y0, x1 - x0, y1 - y0, "none", "#94a3b8", 1.0, 8.0, "4 3")
    text = _clip(frame.label, int((x1 - lx - 4) / (CHAR * LABEL_PX)))
    return frame, rect, Text(lx, y0 + FRAME_LABEL - 2, text, LABEL_PX, color="#475569", halo=True)


def _header(checked: Checked, depth: int, folded: bool) -> list[Text]:
    graph = checked.graph
    summary = (
        f"input {fmt(graph.input_shape)} → output {fmt(checked.output.shape)} · "
        f"{checked.params:,} params · {_human(checked.macs)} MACs · {len(graph.nodes) - 1} layers"
    )
    if folded:
        summary += f" · blocks folded (--depth {depth + 1} opens them)"
    return [
        Text(MARGIN, 22, graph.name, 15.0, bold=True),
        Text(MARGIN, 38, summary, SMALL_PX, color="#475569"),
    ]


def _tooltip(checked: Checked, box: Box) -> str:
    lines = [f"{box.name or 'input'}: {box.title}", f"output {fmt(box.shape)}"]
    if box.params:
        lines.append(f"{box.params:,} params")
    if box.macs:
        lines.append(f"{box.macs:,} MACs")
    rf = checked.layers[box.output].rf
    if box.kind != "INPUT":
        lines.append(f"receptive field {rf[0]}" if rf[0] == rf[1] else f"receptive field {rf}")
    if box.kind == "BLOCK":
        lines.append(f"{len(box.members)} layers: " + ", ".join(
            checked.graph.nodes[m].name for m in box.members[:12]
        ) + (", …" if len(box.members) > 12 else ""))  # fmt: skip
    if box.line:
        lines.append(f"line {box.line}")
    return "\n".join(lines)


# ---- paint: SVG ---------------------------------------------------------------------------------


def _n(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _route(points, radius: float = 6.0) -> list[tuple]:
    """Path commands for an orthogonal route with rounded corners: ("M"|"L", x, y), ("Q", ...)."""
    commands: list[tuple] = [("M", *points[0])]
    for k in range(1, len(points) - 1):
        (ax, ay), (bx, by), (cx, cy) = points[k - 1], points[k], points[k + 1]
        d1 = max(abs(bx - ax), abs(by - ay))
        d2 = max(abs(cx - bx), abs(cy - by))
        r = min(radius, d1 / 2, d2 / 2)
        if r < 0.5:
            commands.append(("L", bx, by))
            continue
        ux, uy = (bx - ax) / d1, (by - ay) / d1
        vx, vy = (cx - bx) / d2, (cy - by) / d2
        commands.append(("L", bx - ux * r, by - uy * r))
        commands.append(("Q", bx, by, bx + vx * r, by + vy * r))
    commands.append(("L", *points[-1]))
    return commands


def _head(points, size: float = 6.5) -> tuple[tuple[float, float], ...]:
    """The arrowhead triangle at the last point, pointing along the last segment."""
    (ax, ay), (bx, by) = points[-2], points[-1]
    length = max(abs(bx - ax), abs(by - ay)) or 1.0
    ux, uy = (bx - ax) / length, (by - ay) / length
    back = (bx - ux * size, by - uy * size)
    return (
        (bx, by),
        (back[0] - uy * size * 0.45, back[1] + ux * size * 0.45),
        (back[0] + uy * size * 0.45, back[1] - ux * size * 0.45),
    )


def _trimmed(points, size: float = 6.5):
    """The route stopped where the arrowhead starts, so the line's end hides under the head."""
    (ax, ay), (bx, by) = points[-2], points[-1]
    length = max(abs(bx - ax), abs(by - ay)) or 1.0
    cut = min(size * 0.8, length)
    return (*points[:-1], (bx - (bx - ax) / length * cut, by - (by - ay) / length * cut))


def _svg_text(t: Text) -> str:
    attrs = [f'x="{_n(t.x)}"', f'y="{_n(t.y)}"', f'font-size="{_n(t.size)}"']
    if t.anchor != "start":
        attrs.append(f'text-anchor="{t.anchor}"')
    if t.bold:
        attrs.append('font-weight="bold"')
    if t.color != "#0f172a":
        attrs.append(f'fill="{t.color}"')
    if t.halo:
        attrs.append('stroke="#ffffff" stroke-width="4" paint-order="stroke"')
    return f"<text {' '.join(attrs)}>{escape(t.text)}</text>"


def _svg_rect(r: Rect, extra: str = "") -> str:
    dash = f' stroke-dasharray="{r.dash}"' if r.dash else ""
    return (
        f'<rect x="{_n(r.x)}" y="{_n(r.y)}" width="{_n(r.w)}" height="{_n(r.h)}" '
        f'rx="{_n(r.radius)}" fill="{r.fill}" stroke="{r.stroke}" '
        f'stroke-width="{_n(r.width)}"{dash}{extra}/>'
    )


def _svg_path(commands) -> str:
    parts = []
    for command in commands:
        parts.append(command[0] + " ".join(_n(v) for v in command[1:]))
    return " ".join(parts)


def svg(checked: Checked, depth: int = 0) -> str:
    """The diagram as a standalone SVG document (UTF-8 text, same bytes for the same spec)."""
    return render_svg(place(checked, depth))


def render_svg(placed: Placed) -> str:
    w, h = placed.width, placed.height
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(w)}" height="{_n(h)}" '
        f'viewBox="0 0 {_n(w)} {_n(h)}" font-family="{FONT}">',
        f"<title>{escape(placed.header[0].text)}</title>",
        f'<rect width="{_n(w)}" height="{_n(h)}" fill="#ffffff"/>',
    ]
    out += [_svg_text(t) for t in placed.header]
    out.append('<g class="frames">')
    for frame, rect, label in placed.frames:
        out.append(f'<g class="frame" data-block="{escape(frame.key)}">')
        out += [_svg_rect(rect), _svg_text(label), "</g>"]
    out.append("</g>")
    out.append('<g class="edges" fill="none">')
    names = {b.index: b.name or "input" for b in placed.boxes}
    for arrow in placed.arrows:
        kind = " skip" if arrow.skip else ""
        colour = "#64748b" if arrow.skip else "#475569"
        head = " ".join(f"{_n(x)},{_n(y)}" for x, y in _head(arrow.points))
        out.append(
            f'<g class="edge{kind}" data-from="n{arrow.source}" data-to="n{arrow.target}">'
            f"<title>{escape(names[arrow.source])} → {escape(names[arrow.target])}</title>"
            f'<path d="{_svg_path(_route(_trimmed(arrow.points)))}" stroke="{colour}" '
            f'stroke-width="1.3"/><polygon points="{head}" fill="{colour}"/></g>'
        )
    out.append("</g>")
    out.append('<g class="nodes">')
    for box in placed.boxes:
        out.append(
            f'<g class="node" id="n{box.index}" data-name="{escape(box.name or "input")}" '
            f'data-kind="{box.kind}">'
        )
        out.append(f"<title>{escape(placed.tooltips[box.index])}</title>")
        out += [_svg_rect(r) for r in placed.stacks.get(box.index, [])]
        out.append(_svg_rect(placed.rects[box.index]))
        out += [_svg_text(t) for t in placed.texts[box.index]]
        out.append("</g>")
    out += ["</g>", "</svg>", ""]
    return "\n".join(out)
