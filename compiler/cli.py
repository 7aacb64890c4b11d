"""The `cnnc` command. Exit codes: 0 fine, 1 a spec error or a failed `expect`, 2 a usage or I/O
error. `check`, `report` and `compile` run without numba (never loaded); `train`, `eval` and
`predict` load it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import Diagnostic, SpecError

EXIT_OK, EXIT_SPEC, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A bad command line or an unreadable file: exit 2."""


def _shape_arg(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a size such as 3x32x32") from None
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"`{text}` is not a size such as 3x32x32")
    return values


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"`{text}` must be at least 1")
    return value


def spec_files(paths: list[str]) -> list[Path]:
    found = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            inside = sorted(path.rglob("*.cnn"))
            if not inside:
                raise UsageError(f"{text}: no .cnn files in this folder")
            found += inside
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(f"{text}: no such file or folder")
    return found


def load(path: str | Path, input_shape=None, verify_expects: bool = True):
    """Parse, expand and check one spec file; SpecError or UsageError on failure."""
    from .check import check_file

    try:
        return check_file(str(path), input_shape, verify_expects)
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder; give a .cnn file") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read it ({error.strerror or error})") from None


def _source(path) -> str | None:
    """The text to show under a diagnostic; no more than the parser would read (think /dev/zero)."""
    from .syntax import MAX_SOURCE_BYTES

    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_SOURCE_BYTES + 1).decode("utf-8-sig", "replace")
    except OSError:
        return None


def _diagnostic_json(d: Diagnostic) -> dict:
    return {
        "severity": d.severity,
        "message": d.message,
        "line": d.loc.line,
        "col": d.loc.col,
        "end_line": d.loc.end_line,
        "end_col": d.loc.end_col,
        "notes": list(d.notes),
        "fix": d.fix,
    }


def _github_escape(text: str, property_: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property_ else text


def _github(d: Diagnostic) -> str:
    props = [f"file={_github_escape(d.path, True)}"]
    if d.loc.line:
        props += [
            f"line={d.loc.line}",
            f"col={d.loc.col}",
            f"endLine={d.loc.end_line}",
            f"endColumn={d.loc.end_col}",
        ]
    props.append("title=cnnc")
    body = "\n".join([d.message, *d.notes, *([f"fix: {d.fix}"] if d.fix else [])])
    return f"::{d.severity} {','.join(props)}::{_github_escape(body)}"


def cmd_check(args) -> int:
    files = spec_files(args.paths)
    results, failed = [], 0
    for path in files:
        try:
            checked = load(path, args.input)
            results.append(
                {
                    "path": str(path),
                    "ok": True,
                    "network": checked.graph.name,
                    "params": checked.params,
                    "macs": checked.macs,
                    "output_shape": list(checked.output.shape),
                    "diagnostics": [],
                }
            )
            if args.format == "text":
                print(
                    f"{path}: ok  {checked.graph.name}: {checked.params:,} params, "
                    f"{checked.macs:,} MACs, output {'x'.join(map(str, checked.output.shape))}"
                )
        except SpecError as error:
            failed += 1
            results.append(
                {
                    "path": str(path),
                    "ok": False,
                    "diagnostics": [_diagnostic_json(d) for d in error.diagnostics],
                }
            )
            if args.format == "text":
                print(error.render(_source(path)))
            elif args.format == "github":
                print("\n".join(_github(d) for d in error.diagnostics))
    if args.format == "json":
        print(
            json.dumps(
                {"ok": failed == 0, "checked": len(files), "failed": failed, "files": results},
                indent=2,
            )
        )
    elif args.format == "text" and len(files) > 1:
        print(f"{len(files)} specs checked: {len(files) - failed} ok, {failed} with errors")
    return EXIT_SPEC if failed else EXIT_OK


def cmd_report(args) -> int:
    from . import report

    checked = _load_or_raise(args.spec, args.input)
    built = report.build(checked, batch=args.batch)
    if args.format == "json":
        report.validate(built)
        print(json.dumps(built, indent=2))
    elif args.format == "markdown":
        print(report.render_markdown(built))
    else:
        print(report.render_text(built))
    return EXIT_OK


def _load_or_raise(path, input_shape=None):
    files = spec_files([path])
    if len(files) != 1 or Path(path).is_dir():
        raise UsageError(f"{path}: give one .cnn file")
    return load(files[0], input_shape, verify_expects=False)


def cmd_compile(args) -> int:
    from .lower import lower
    from .plan_text import render_plan

    checked = _load_or_raise(args.spec, args.input)
    plan = lower(checked, training=not args.inference)
    if args.output:
        write_atomic(args.output, json.dumps(plan_json(plan), indent=1))
    print(render_plan(plan, args.batch, args.threads))
    if args.output:
        print(f"plan written to {args.output}")
    return EXIT_OK


def plan_json(plan) -> dict:
    import jsonschema

    from .plan_text import plan_schema

    data = plan.to_json()
    jsonschema.validate(data, plan_schema())
    return data


def write_atomic(path: str, text: str) -> None:
    """Write through a temporary file and a rename, so a failure never leaves half a file."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        temporary.write_text(text)
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"{path}: cannot write it ({error.strerror or error})") from None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="cnnc", description="A declarative CNN architecture compiler."
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="shape-check specs and verify their `expect` lines")
    check.add_argument("paths", nargs="+", metavar="PATH", help=".cnn files or folders")
    check.add_argument("--format", choices=("text", "json", "github"), default="text")
    check.add_argument("--input", type=_shape_arg, metavar="CxHxW", help="override the input size")
    check.set_defaults(run=cmd_check)

    report = sub.add_parser("report", help="print the per-layer shape, parameter and cost table")
    report.add_argument("spec")
    report.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    report.add_argument("--batch", type=positive_int, default=1)
    report.add_argument("--input", type=_shape_arg, metavar="CxHxW")
    report.set_defaults(run=cmd_report)

    compile_ = sub.add_parser("compile", help="lower a spec to an execution plan")
    compile_.add_argument("spec")
    compile_.add_argument("-o", "--output", help="write the plan as JSON")
    compile_.add_argument("--batch", type=positive_int, default=1)
    compile_.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="threads the runtime will use (default: all cores)",
    )
    compile_.add_argument("--inference", action="store_true", help="plan forward only")
    compile_.add_argument("--input", type=_shape_arg, metavar="CxHxW")
    compile_.set_defaults(run=cmd_compile)

    try:
        from cnnc.runtime.commands import add_commands
    except ImportError:  # pragma: no cover - the runtime is part of the same distribution
        add_commands = None
    if add_commands is not None:
        add_commands(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except SpecError as error:
        path = error.diagnostics[0].path if error.diagnostics else None
        print(error.render(_source(path) if path else None), file=sys.stderr)
        return EXIT_SPEC
    except UsageError as error:
        print(f"cnnc: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cnnc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
