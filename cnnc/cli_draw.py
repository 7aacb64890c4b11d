"""`cnnc draw SPEC [-o net.svg|png|html] [--depth N|all] [--input CxHxW]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnc.compiler.draw import place, render_svg
from cnnc.compiler.draw_paint import html, render_png
from cnnc.compiler.files import read_source, shape_arg, write_bytes_atomic

# ---- the command line ---------------------------------------------------------------------------

FORMATS = (".svg", ".png", ".html")


def _depth(text: str) -> int:
    if text == "all":
        return 1 << 10
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number or `all`") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"`{text}` must be 0 or more")
    return value


def add_commands(subparsers) -> None:
    """Register `cnnc draw` on the CLI's subparsers."""
    draw = subparsers.add_parser(
        "draw",
        help="the architecture as a diagram (.svg, .png or .html)",
        description="Draw the network: one box per layer (blocks folded into one box), arrows "
        "for the data flow. SVG needs nothing; PNG needs matplotlib (pip install 'cnnc[plot]'); "
        "HTML is one offline page with the diagram and the per-layer table.",
    )
    draw.add_argument("spec")
    draw.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="net.svg, net.png or net.html (default: SVG on stdout)",
    )
    draw.add_argument(
        "--depth",
        type=_depth,
        default=0,
        metavar="N",
        help="open N levels of blocks (default 0: every block call is one box; `all` opens all)",
    )
    draw.add_argument("--input", type=shape_arg, metavar="CxHxW", help="override the input shape")
    draw.set_defaults(run=run_draw)


def _error(message: str) -> int:
    print(f"cnnc: error: {message}", file=sys.stderr)
    return 2


def run_draw(args) -> int:
    """`cnnc draw`: 0 written, 1 the spec does not check, 2 a usage or I/O error."""
    from cnnc.compiler.check import check_file
    from cnnc.compiler.errors import SpecError

    out = getattr(args, "output", None)
    suffix = Path(out).suffix.lower() if out else ".svg"
    if suffix not in FORMATS:
        return _error(f"{out}: the picture's name must end in .svg, .png or .html")
    try:
        checked = check_file(args.spec, getattr(args, "input", None), verify_expects=False)
    except SpecError as error:
        print(error.render(read_source(args.spec)), file=sys.stderr)
        return 1
    except IsADirectoryError:
        return _error(f"{args.spec}: is a folder; give a .cnn file")
    except OSError as error:
        return _error(f"{args.spec}: cannot read it ({error.strerror or error})")
    depth = getattr(args, "depth", 0)
    placed = place(checked, depth)
    try:
        if suffix == ".png":
            data = render_png(placed)
        elif suffix == ".html":
            data = html(checked, depth).encode()
        else:
            data = render_svg(placed).encode()
    except ImportError as error:
        return _error(str(error))
    if out is None:
        sys.stdout.write(data.decode())
        return 0
    try:
        write_bytes_atomic(out, data)
    except OSError as error:
        return _error(f"{out}: cannot write it ({error.strerror or error})")
    layers = len(checked.graph.nodes) - 1
    print(f"{out}: {checked.graph.name}, {layers} layers in {len(placed.boxes) - 1} boxes")
    return 0
