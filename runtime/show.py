"""show: pictures of a trained run. `filters` draws the learned kernels of one convolution as an
image grid; `maps` runs one image through the network and draws what every convolution,
activation and pooling layer makes of it, then the class probabilities.

A run folder is what `cnnc train --out DIR` writes: `spec.cnn` and `checkpoint.safetensors`.
Pictures are drawn by matplotlib (`pip install 'cnnc[plot]'`); this module imports it, numpy and
the runtime only when a picture is asked for, so building the command line stays instant.

Feature maps are read one step at a time: an inference plan reuses arena slots as soon as a
tensor is dead, so after a whole forward pass most intermediate tensors are overwritten. Running
`network.executor.forward_step` per step and copying each step's output right away sees every tensor
with the plan unchanged (the same route `Network.first_nonfinite` takes).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from cnnc.compiler.files import write_bytes_atomic

MAX_FILTERS = 64  # filters drawn by `filters`
MAX_CHANNELS = 16  # feature maps drawn per layer by `maps`
MAX_LAYERS = 24  # layers drawn by `maps` when none are named
PER_CHANNEL_UP_TO = 8  # filters over more input channels are drawn averaged over them
SPATIAL_KINDS = ("CONV", "DECONV", "POOL", "UPSAMPLE")
ACTIVATIONS = ("RELU", "LEAKYRELU", "ELU", "TANH", "SIGMOID")
ACTIVATIONS += ("RELU6", "SILU", "HSWISH", "HSIGMOID", "GELU", "MISH", "PRELU")


class ShowError(Exception):
    """The run, the layer or the image asked for cannot be drawn; the message says why."""


# ---- the run ------------------------------------------------------------------------------------


def _spec_of(run_dir) -> Path:
    path = Path(run_dir)
    folder = path if path.is_dir() else path.parent
    spec = folder / "spec.cnn"
    if not path.exists():
        raise ShowError(f"{path}: no such run folder")
    if not spec.is_file():
        raise ShowError(
            f"{folder}: no spec.cnn here; give a run folder written by `cnnc train --out DIR`"
        )
    return spec


def _checked(run_dir):
    from cnnc.compiler.check import check_file

    return check_file(str(_spec_of(run_dir)), verify_expects=False)


def _weights(run_dir) -> tuple[dict, dict]:
    from . import checkpoint

    _spec_of(run_dir)
    return checkpoint.load(run_dir)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ShowError(
            "drawing pictures needs matplotlib, which is not installed: pip install 'cnnc[plot]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, fmt: str) -> bytes:
    import io

    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(
        buffer, format=fmt, dpi=100, metadata={"Software": None} if fmt == "png" else None
    )
    plt.close(figure)
    return buffer.getvalue()


def _did_you_mean(word: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _listing(names: list[str], most: int = 12) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", … ({len(names)} in all)" if len(names) > most else "")


# ---- filters ------------------------------------------------------------------------------------


def _conv_layers(checked) -> list:
    return [layer for layer in checked.layers if layer.node.kind in ("CONV", "DECONV")]


def _filter_bank(layer, tensors: dict):
    """The layer's kernels as (filters, input channels, kh, kw), a filter being what makes one
    output channel (a DECONV's weight is stored input-channel first, so it is transposed)."""
    import numpy as np

    name = layer.node.name
    weight = tensors.get(f"param/{name}.weight")
    if weight is None:
        raise ShowError(
            f"the checkpoint has no weights for `{name}`; was it trained from this spec?"
        )
    weight = np.asarray(weight, dtype=np.float32)
    if layer.node.kind == "DECONV":
        weight = weight.transpose(1, 0, 2, 3)
    return weight


def _normalised(kernel):
    """Scaled to 0..1 by its own min and max (a constant kernel is drawn mid-grey)."""
    low, high = float(kernel.min()), float(kernel.max())
    if high - low < 1e-12:
        return kernel * 0 + 0.5
    return (kernel - low) / (high - low)


def filters(run_dir, layer: str | None = None, fmt: str = "png") -> bytes:
    """The learned filters of one convolution (the first by default) as an image grid: RGB in
    colour when the layer reads a colour image, else one tile per input channel (up to 8) or
    their mean; every filter scaled to its own range."""

    from cnnc.compiler.layers import describe

    checked = _checked(run_dir)
    convs = _conv_layers(checked)
    if not convs:
        raise ShowError(f"{checked.graph.name} has no convolution whose filters could be drawn")
    if layer is None:
        chosen = convs[0]
    else:
        chosen = next((c for c in convs if c.node.name == layer), None)
        if chosen is None:
            names = [c.node.name for c in convs]
            known = [lay.node.name for lay in checked.layers]
            what = "is not a convolution" if layer in known else "is not a layer of this spec"
            raise ShowError(
                f"`{layer}` {what}{_did_you_mean(layer, names)} (convolutions: {_listing(names)})"
            )
    tensors, _ = _weights(run_dir)
    bank = _filter_bank(chosen, tensors)
    count, channels, kh, kw = bank.shape
    shown = bank[:MAX_FILTERS]
    reads_image = chosen is convs[0] and checked.graph.input_shape[0] == 3
    if channels == 3 and reads_image:
        mode, tiles = "rgb", [[_normalised(f).transpose(1, 2, 0)] for f in shown]
    elif channels <= PER_CHANNEL_UP_TO:
        mode, tiles = "channels", [list(_normalised(f)) for f in shown]
    else:
        mode, tiles = "mean", [[_normalised(f.mean(axis=0))] for f in shown]

    plt = _pyplot()
    group = len(tiles[0])
    per_row = max(1, min(math.ceil(math.sqrt(len(tiles))), 32 // group))
    rows = math.ceil(len(tiles) / per_row)
    per_row = math.ceil(len(tiles) / rows)
    # inches: a tile (larger when there are few), between channels, between filters
    tile = min(max(5.0 / (per_row * group), 0.45), 0.9)
    gap, spacing = 0.04, 0.22
    group_w = group * tile + (group - 1) * gap
    width = max(per_row * group_w + (per_row - 1) * spacing + 0.6, 6.5)
    height = rows * (tile + 0.28) + 1.25
    figure = plt.figure(figsize=(width, height))
    left0 = (width - (per_row * group_w + (per_row - 1) * spacing)) / 2
    for number, parts in enumerate(tiles):
        r, c = divmod(number, per_row)
        x = left0 + c * (group_w + spacing)
        y = height - 1.15 - (r + 1) * (tile + 0.28) + 0.28
        for k, part in enumerate(parts):
            axes = figure.add_axes(
                ((x + k * (tile + gap)) / width, y / height, tile / width, tile / height)
            )
            if mode == "rgb":
                axes.imshow(part, interpolation="nearest")
            else:
                axes.imshow(part, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            for spine in axes.spines.values():
                spine.set_color("#cbd5e1")
        figure.text(
            (x + group_w / 2) / width,
            (y - 0.06) / height,
            f"#{number}",
            ha="center",
            va="top",
            fontsize=8,
            color="#334155",
        )
    how = {
        "rgb": "drawn in colour (the input's RGB)",
        "channels": f"tiles: input channels 0..{channels - 1}" if channels > 1 else "",
        "mean": f"averaged over its {channels} input channels",
    }[mode]
    which = f"{count} filters" if count <= MAX_FILTERS else f"the first {MAX_FILTERS} of {count}"
    figure.text(
        0.5 / width,
        1 - 0.3 / height,
        f"{chosen.node.name}: {describe(chosen.node.kind, chosen.node.attrs)}",
        fontsize=12,
        fontweight="bold",
        va="center",
    )
    detail = f"{checked.graph.name} · {which}, {channels}x{kh}x{kw} each"
    detail += f" · {how}" if how else ""
    scale = "dark .. bright" if mode == "rgb" else "black .. white"
    for number, text in enumerate((detail, f"each filter scaled to its own min .. max ({scale})")):
        figure.text(0.5 / width, 1 - (0.58 + 0.22 * number) / height, text, fontsize=8.5,
                    color="#475569", va="center")  # fmt: skip
    return _save(figure, fmt)


# ---- feature maps ------------------------------------------------------------------------------


def _network(run_dir, checked):
    from .network import Network
    from .train import load_weights

    network = Network(checked, batch=1, training=False)
    meta = load_weights(network, Path(run_dir))
    return network, meta


def activations(network, x) -> dict[int, object]:
    """Every tensor of one forward pass of a single input (C, H, W), by node index: the plan's
    steps run one at a time and each output is copied before a later step can reuse its slot."""
    import numpy as np

    from cnnc.compiler import abi

    plan = network.plan
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(plan.input_shape)
    slot = plan.tensors[0]
    network.A[slot.offset : slot.offset + x.size] = x.ravel()  # batch 1: offsets are unscaled
    seen = {0: x.copy()}
    arenas = (network.A, network.P, network.G, network.S, network.W)
    for number, step in enumerate(plan.steps):
        row = network.rows[number]
        frow = network.frows[number]
        network.executor.forward_step(row[abi.KIND], *arenas, row, frow, 1, False, 0)
        out = plan.tensors[step.output]
        size = math.prod(out.shape)
        seen[step.output] = network.A[out.offset : out.offset + size].reshape(out.shape).copy()
    return seen


def _default_layers(checked) -> list:
    chosen = []
    for layer in checked.layers[1:]:
        kind, shape = layer.node.kind, layer.shape
        if layer.node.index == checked.graph.output:
            continue
        if kind in SPATIAL_KINDS + ACTIVATIONS and len(shape) == 3 and shape[1] * shape[2] > 1:
            chosen.append(layer)
    return chosen


def _named_layers(checked, names: list[str]) -> list:
    by_name = {layer.node.name: layer for layer in checked.layers[1:]}
    tensors = checked.graph.tensors
    chosen = []
    for name in names:
        if name in by_name:
            chosen.append(by_name[name])
        elif name in tensors:
            chosen.append(checked.layers[tensors[name]])
        else:
            known = list(by_name)
            raise ShowError(
                f"`{name}` is not a layer of {checked.graph.name}"
                f"{_did_you_mean(name, known + list(tensors))} (layers: {_listing(known)})"
            )
    return chosen


def _softmax(values, axis: int):
    import numpy as np

    shifted = values - values.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def maps(run_dir, image, layers: list[str] | str | None = None, fmt: str = "png") -> bytes:
    """The feature maps one image produces at each convolution, activation and pooling layer (or
    the named ones), a row of up to 16 channels per layer on one colour scale per layer, and the
    class probabilities at the end (per pixel, as maps, for a network with a spatial output)."""
    import numpy as np

    from cnnc.compiler.layers import describe
    from cnnc.compiler.layers import fmt as shape_text

    from .batches import normalize
    from .images import load_image

    checked = _checked(run_dir)
    if isinstance(layers, str):
        layers = [part.strip() for part in layers.split(",") if part.strip()]
    chosen = _named_layers(checked, layers) if layers else _default_layers(checked)
    note = ""
    if not layers and len(chosen) > MAX_LAYERS:
        note = f"{MAX_LAYERS} of {len(chosen)} layers, evenly spread (name others with --layers)"
        step = (len(chosen) - 1) / (MAX_LAYERS - 1)
        chosen = [chosen[round(k * step)] for k in range(MAX_LAYERS)]
    chw = tuple(checked.graph.input_shape)
    if chw[0] not in (1, 3):
        raise ShowError(f"{checked.graph.name} reads {chw[0]} channels; an image has 1 or 3")
    pixels = load_image(image, chw)
    network, meta = _network(run_dir, checked)
    x = normalize(pixels, meta.get("normalization"))
    seen = activations(network, x)

    output_layer = checked.output
    out = seen[checked.graph.output]
    classes = list(meta.get("classes") or [])
    if output_layer.node.kind != "SOFTMAX":
        out = _softmax(out, axis=0)

    plt = _pyplot()
    cell, gap, label_h = 0.68, 0.06, 0.34  # inches
    columns = MAX_CHANNELS
    width = columns * cell + (columns - 1) * gap + 0.8
    spatial_out = len(out.shape) == 3 and out.shape[1] * out.shape[2] > 1
    bars = 0.0 if spatial_out else 0.45 + 0.24 * min(out.size, 20)
    rows = 1 + len(chosen) + (1 if spatial_out else 0)
    height = 0.95 + rows * (cell + label_h) + bars + 0.2
    figure = plt.figure(figsize=(width, height))
    y = height - 0.95

    def row(title: str, subtitle: str, images, cmap: str, scale) -> None:
        nonlocal y
        y -= label_h
        figure.text(0.4 / width, (y + 0.1) / height, title, fontsize=9.5, fontweight="bold")
        if subtitle:
            offset = 0.4 + (len(title) + 2) * 0.075
            figure.text(offset / width, (y + 0.1) / height, subtitle, fontsize=8.5,
                        color="#475569")  # fmt: skip
        y -= cell
        for k, picture in enumerate(images):
            h, w = picture.shape[:2]
            tall = cell * min(1.0, h / w)
            wide = cell * min(1.0, w / h)
            axes = figure.add_axes(
                (
                    (0.4 + k * (cell + gap) + (cell - wide) / 2) / width,
                    (y + (cell - tall) / 2) / height,
                    wide / width,
                    tall / height,
                )
            )
            if picture.ndim == 3:
                axes.imshow(picture, interpolation="nearest")
            else:
                axes.imshow(picture, cmap=cmap, vmin=scale[0], vmax=scale[1],
                            interpolation="nearest")  # fmt: skip
            axes.set_xticks([])
            axes.set_yticks([])
            for spine in axes.spines.values():
                spine.set_color("#cbd5e1")

    shown_input = pixels.transpose(1, 2, 0) if chw[0] == 3 else pixels[0]
    row("input", f"{Path(image).name} · {shape_text(chw)}", [shown_input], "gray", (0, 1))
    for layer in chosen:
        tensor = seen[layer.node.index]
        if tensor.ndim != 3:
            tensor = tensor.reshape(-1, 1, 1)
        picked = tensor[:MAX_CHANNELS]
        low, high = float(picked.min()), float(picked.max())
        if high - low < 1e-12:
            high = low + 1.0
        count = tensor.shape[0]
        parts = [describe(layer.node.kind, layer.node.attrs), shape_text(layer.shape)]
        if count > MAX_CHANNELS:
            parts.append(f"channels 0-{MAX_CHANNELS - 1} of {count}")
        parts.append(f"scale {low:.3g} .. {high:.3g}")
        row(layer.node.name, " · ".join(parts), list(picked), "viridis", (low, high))

    head = f"{checked.graph.name}: feature maps of {Path(image).name}"
    if spatial_out:
        names = [classes[c] if c < len(classes) else f"class {c}" for c in range(out.shape[0])]
        winner = out.argmax(axis=0)
        images = list(out[: MAX_CHANNELS - 1])
        palette = plt.get_cmap("tab10")
        images.append(palette(winner % 10)[..., :3])
        share = ", ".join(f"{n} {float((winner == c).mean()):.0%}" for c, n in enumerate(names[:6]))
        row(
            "output",
            f"per-pixel class probabilities (0 .. 1): {', '.join(names[: MAX_CHANNELS - 1])}; "
            f"last: the most likely class per pixel ({share})",
            images,
            "magma",
            (0.0, 1.0),
        )
    else:
        probabilities = out.reshape(-1)
        order = np.argsort(-probabilities, kind="stable")[:20]
        names = [classes[c] if c < len(classes) else f"class {c}" for c in order]
        axes = figure.add_axes(
            (2.2 / width, 0.35 / height, (width - 3.2) / width, (bars - 0.45) / height)
        )
        values = probabilities[order]
        colours = ["#2563eb" if k == 0 else "#94a3b8" for k in range(len(order))]
        axes.barh(range(len(order)), values, color=colours)
        axes.set_yticks(range(len(order)), names, fontsize=8.5)
        axes.invert_yaxis()
        axes.set_xlim(0, 1)
        axes.tick_params(axis="x", labelsize=8)
        for k, value in enumerate(values):
            inside = value > 0.88  # the figure goes inside a long bar, in white
            x, colour = (value - 0.01, "white") if inside else (value + 0.01, "#0f172a")
            axes.text(x, k, f"{value:.3f}", va="center", ha="right" if inside else "left",
                      fontsize=8, color=colour)  # fmt: skip
        axes.spines[["top", "right"]].set_visible(False)
        title = "class probabilities"
        if len(probabilities) > len(order):
            title += f" (the top {len(order)} of {len(probabilities)})"
        axes.set_title(title, fontsize=9.5, fontweight="bold", loc="left")
        head += f" · predicted {names[0]} ({values[0]:.1%})"
    figure.text(0.4 / width, 1 - 0.35 / height, head, fontsize=12, fontweight="bold", va="center")
    subtitle = "each layer's maps share one colour scale (dark: low, bright: high)"
    if note:
        subtitle += f" · {note}"
    figure.text(0.4 / width, 1 - 0.62 / height, subtitle, fontsize=8.5, color="#475569",
                va="center")  # fmt: skip
    return _save(figure, fmt)


# ---- the command line ---------------------------------------------------------------------------

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def add_commands(subparsers) -> None:
    """Register `cnnc show filters` and `cnnc show maps` on the CLI's subparsers."""
    show = subparsers.add_parser(
        "show",
        help="pictures of a trained run: learned filters, an image's feature maps",
        description="Pictures of a run folder written by `cnnc train --out DIR` (needs "
        "matplotlib: pip install 'cnnc[plot]').",
    )
    what = show.add_subparsers(dest="what", metavar="filters|maps", required=True)
    shown = what.add_parser("filters", help="the learned filters of a convolution as a grid")
    shown.add_argument(
        "run_dir", metavar="RUN", help="a run folder (or its checkpoint.safetensors)"
    )
    shown.add_argument("-o", "--output", default="filters.png", help="default filters.png")
    shown.add_argument("--layer", metavar="NAME", help="a convolution (default: the first)")
    shown.set_defaults(run=run_show)
    mapped = what.add_parser("maps", help="the feature maps one image produces, and its classes")
    mapped.add_argument(
        "run_dir", metavar="RUN", help="a run folder (or its checkpoint.safetensors)"
    )
    mapped.add_argument("image", help="a PNG, JPEG or BMP (converted and resized to the input)")
    mapped.add_argument("-o", "--output", default="maps.png", help="default maps.png")
    mapped.add_argument(
        "--layers",
        metavar="A,B",
        help="layer names or named tensors, comma-separated (default: every conv, activation "
        "and pool layer)",
    )
    mapped.set_defaults(run=run_show)


def _fail(message: str, code: int = 2) -> int:
    print(f"cnnc: error: {message}", file=sys.stderr)
    return code


def run_show(args) -> int:
    """`cnnc show filters|maps`: 0 written, 1 the run's spec does not check, 2 anything else
    that cannot be drawn (no such run, layer or image; matplotlib missing; cannot write)."""
    from cnnc.compiler.errors import SpecError

    from .errors import CheckpointError, DataError

    out = Path(args.output)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        return _fail(f"{out}: the picture's name must end in .png, .svg or .pdf")
    try:
        if args.what == "filters":
            data = filters(args.run_dir, args.layer, fmt)
        else:
            data = maps(args.run_dir, args.image, args.layers, fmt)
    except SpecError as error:
        spec = Path(args.run_dir) if Path(args.run_dir).is_dir() else Path(args.run_dir).parent
        try:
            source = (spec / "spec.cnn").read_text(errors="replace")
        except OSError:
            source = None
        print(error.render(source), file=sys.stderr)
        return 1
    except (ShowError, CheckpointError, DataError) as error:
        return _fail(str(error))
    except OSError as error:
        return _fail(f"{error.filename or args.run_dir}: {error.strerror or error}")
    try:
        write_bytes_atomic(out, data)
    except OSError as error:
        return _fail(f"{out}: cannot write it ({error.strerror or error})")
    print(f"{out}: {args.what} of {args.run_dir}")
    return 0
