"""The commands for reviewing specs in pull requests: `fmt` and `diff`. Like `check`, they never
import numpy or numba, so they run fast as pre-commit hooks."""

from __future__ import annotations

import difflib
import json
import math
import sys
from pathlib import Path

from cnnc.compiler.errors import SpecError
from cnnc.compiler.files import UsageError, read_source, spec_files, write_atomic

WOULD_CHANGE = 1  # `fmt --check`: a file is not in the canonical layout


def _unified(path: str, old: str, new: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), path, path
    )
    return "".join(lines)


def cmd_fmt(args) -> int:
    """Rewrite every file whose layout is not canonical; `--check`/`--diff` only report."""
    from cnnc.compiler.fmt import format_source
    from cnnc.compiler.syntax import decode

    changed, failed = [], 0
    for path in spec_files(args.paths):
        try:
            data = path.read_bytes()
        except OSError as error:
            raise UsageError(f"{path}: cannot read it ({error.strerror or error})") from None
        try:
            old = decode(data, str(path))
            new = format_source(old, str(path))
        except SpecError as error:
            failed += 1
            print(error.render(read_source(path)), file=sys.stderr)
            continue
        if new == old:
            continue
        changed.append(path)
        if args.check or args.diff:
            sys.stdout.write(_unified(str(path), old, new))
        else:
            write_atomic(str(path), new)
            print(f"reformatted {path}")
    if args.check and changed:
        print(f"{len(changed)} file(s) would be reformatted; run `cnnc fmt`", file=sys.stderr)
    if failed:
        return 1
    return WOULD_CHANGE if args.check and changed else 0


def _pairs_from_git(rev: str, paths: list[str]) -> list[tuple[str, str | None, str | None]]:
    """(path, source at rev, source now) for every spec in `paths` at either side."""
    from cnnc.compiler.diff import git_files, git_show

    now = {str(p) for p in spec_files(paths)} if paths else set()
    then = set(git_files(rev, paths))
    out = []
    for path in sorted(now | then):
        old = git_show(rev, path) if path in then else None
        new = read_source(path) if Path(path).exists() else None
        if old != new:
            out.append((path, old, new))
    return out


def cmd_diff(args) -> int:
    from cnnc.compiler import diff

    if args.git is None:
        if len(args.paths) != 2:
            raise UsageError("give two .cnn files, or `--git REV -- PATH...`")
        pairs = [(p, read_source(p), None) for p in args.paths]
        for path, text, _ in pairs:
            if text is None:
                raise UsageError(f"{path}: cannot read it")
        items = [(f"{args.paths[0]}", pairs[0][1], args.paths[1], pairs[1][1])]
    else:
        items = [
            (f"{rev_path}@{args.git}", old, rev_path, new)
            for rev_path, old, new in _pairs_from_git(args.git, args.paths or ["."])
        ]
    results, texts = [], []
    for path_a, old, path_b, new in items:
        if old is None or new is None:
            state = "added" if old is None else "deleted"
            results.append({"path": path_b, "file": state})
            texts.append(
                f"{path_b}: {state}" if args.format != "markdown" else f"### `{path_b}`: {state}"
            )
            continue
        found = diff.compare(
            diff.check_source(old, path_a, args.input), diff.check_source(new, path_b, args.input)
        )
        results.append(found)
        render = diff.render_markdown if args.format == "markdown" else diff.render_text
        texts.append(render(found))
    if args.format == "json":
        print(json.dumps(results[0] if args.git is None else results, indent=2))
    elif texts:
        print("\n\n".join(texts))
    elif args.git is not None:
        print(f"no spec changed since {args.git}")
    return 0


def add_commands(sub, shape_arg) -> None:
    fmt = sub.add_parser("fmt", help="rewrite specs in the canonical layout")
    fmt.add_argument("paths", nargs="+", metavar="PATH", help=".cnn files or folders")
    fmt.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 with a diff if a file would change",
    )
    fmt.add_argument("--diff", action="store_true", help="write nothing; print the diff")
    fmt.set_defaults(run=cmd_fmt)

    diff = sub.add_parser(
        "diff", help="the architectural difference of two specs (layers, shapes, costs)"
    )
    diff.add_argument("paths", nargs="*", metavar="PATH", help="A.cnn B.cnn, or folders with --git")
    diff.add_argument("--git", metavar="REV", help="compare the working tree with revision REV")
    diff.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    diff.add_argument("--input", type=shape_arg, metavar="CxHxW", help="override the input size")
    diff.set_defaults(run=cmd_diff)


def _size_range(text: str) -> tuple[int, int]:
    import argparse

    low, _, high = text.partition("..")
    try:
        values = int(low), int(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a range such as 16..512") from None
    if not 1 <= values[0] <= values[1] <= 4096:
        raise argparse.ArgumentTypeError(f"`{text}`: give 1 <= LOW <= HIGH <= 4096")
    return values


def _at_least_1(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"`{text}` must be a whole number of at least 1")
    return int(text)


def add_report_options(report) -> None:
    report.add_argument(
        "--depth", type=_at_least_1, metavar="N", help="fold block calls deeper than N levels"
    )
    report.add_argument("--wide", action="store_true", help="add kernel, stride and input columns")
    report.add_argument("--max-width", type=_at_least_1, metavar="COLS", help="narrow the table")
    report.add_argument(
        "--sizes", action="store_true", help="list the input sizes at which the spec checks"
    )
    report.add_argument(
        "--range", type=_size_range, default=(16, 512), metavar="LOW..HIGH", help="for --sizes"
    )
    report.add_argument(
        "--aspect",
        type=_aspect,
        metavar="H:W",
        help="for --sizes: the width follows the height at this ratio (default: the input's)",
    )
    report.add_argument(
        "--width-range",
        type=_size_range,
        metavar="LOW..HIGH",
        help="for --sizes: heights over --range and widths over this, each on its own",
    )


def _aspect(text: str) -> tuple[int, int]:
    import argparse

    h, _, w = text.partition(":")
    try:
        values = int(h), int(w)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a ratio such as 3:4") from None
    if min(values) < 1 or max(values) > 4096:
        raise argparse.ArgumentTypeError(f"`{text}`: give H:W with 1 <= H, W <= 4096")
    return values


def cmd_sizes(args) -> int:
    """`report --sizes`: the spec need not check at its own input size, only parse and expand."""
    from cnnc.compiler import report
    from cnnc.compiler.expand import at_input, expand
    from cnnc.compiler.files import spec_files
    from cnnc.compiler.syntax import parse_file

    files = spec_files([args.spec])
    if len(files) != 1 or Path(args.spec).is_dir():
        raise UsageError(f"{args.spec}: give one .cnn file")
    try:
        graph = expand(parse_file(str(files[0])))
    except OSError as error:
        raise UsageError(f"{args.spec}: cannot read it ({error.strerror or error})") from None
    if args.input is not None:
        graph = at_input(graph, args.input)
    low, high = args.range
    channels, h, w = graph.input_shape
    if args.width_range is not None:
        heights, widths = report.sizes_per_axis(graph, args.range, args.width_range)
        if args.format == "json":
            ranges = {"heights": list(args.range), "widths": list(args.width_range)}
            print(json.dumps({"channels": channels, "range": ranges, "heights": heights,
                              "widths": widths}))  # fmt: skip
        else:
            ranges = (args.range, args.width_range)
            print(report.render_axes(heights, widths, ranges, graph.input_shape))
        return 0
    gcd = math.gcd(h, w)
    aspect = args.aspect or (h // gcd, w // gcd)
    if aspect[0] != aspect[1]:
        pairs = report.sizes_at_aspect(graph, low, high, aspect)
        if args.format == "json":
            sizes = [list(p) for p in pairs]
            print(json.dumps({"channels": channels, "range": [low, high],
                              "aspect": list(aspect), "sizes": sizes}))  # fmt: skip
        else:
            print(report.render_aspect(pairs, low, high, aspect, graph.input_shape))
        return 0
    found = report.sizes(graph, low, high)
    if args.format == "json":
        print(json.dumps({"channels": graph.input_shape[0], "range": [low, high], "sizes": found}))
    else:
        print(report.render_sizes(found, low, high, graph.input_shape))
    return 0
