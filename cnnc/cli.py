"""The `cnnc` command: its parser, the compiler's commands (`check`, `report`, `compile`) and the
one table from error to exit code. The runtime's commands (`train`, `eval`, `predict`) are in
`cli_train`.

A command returns 0 or raises; `main` prints what it raised and maps it through `EXIT_CODES`:
0 fine, 1 a spec error, a failed `expect` or training that cannot go on, 2 a usage, I/O, data or
checkpoint error, 130 interrupted. Nothing here imports numpy or numba: `check`, `report` and
`compile` never load them, the runtime's commands import the runtime when they run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from cnnc import __version__
from cnnc.compiler import reference
from cnnc.compiler.errors import Diagnostic, SpecError
from cnnc.compiler.files import UsageError, load, load_one, read_source, spec_files, write_atomic
from cnnc.compiler.files import shape_arg as _shape_arg
from cnnc.runtime import memory, show
from cnnc.runtime.errors import CheckpointError, DataError, ResourceError, TrainingError

from . import cli_draw, cli_export, cli_review, cli_train

EXIT_CODES: dict[type[BaseException], int] = {
    SpecError: 1,  # a spec that does not check, or a failed `expect`
    TrainingError: 1,  # NaN, or a spec/data mismatch found while training
    UsageError: 2,  # a bad command line, an unreadable or unwritable file
    DataError: 2,
    CheckpointError: 2,
    ResourceError: 2,  # a plan larger than memory or --max-memory
    KeyboardInterrupt: 130,
    BrokenPipeError: 0,  # output piped into `head`: not a failure
}


def exit_code(error: BaseException) -> int:
    """The code for `error`: its own type's entry, else its nearest base class's."""
    return next(EXIT_CODES[kind] for kind in type(error).__mro__ if kind in EXIT_CODES)


def _message(error: BaseException) -> str | None:
    """What `main` prints on stderr for an error in EXIT_CODES."""
    if isinstance(error, SpecError):
        path = error.diagnostics[0].path if error.diagnostics else None
        return error.render(read_source(path) if path else None)
    if isinstance(error, KeyboardInterrupt):
        return str(error) or "cnnc: interrupted"
    if isinstance(error, BrokenPipeError):
        return None
    return f"cnnc: error: {error}"


def main(argv: list[str] | None = None) -> int:
    from .terminal import escaped_output

    with escaped_output():  # names, paths and source lines from files may hold escape codes
        args = parser().parse_args(argv)
        try:
            with memory.bounded(getattr(args, "max_memory", None)):
                return args.run(args)
        except tuple(EXIT_CODES) as error:
            message = _message(error)
            if message is not None:
                print(message, file=sys.stderr)
            return exit_code(error)


# ---- check, report, compile ----------------------------------------------------------------


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
    """Every file is checked and reported, so a spec error is caught here, not in `main`."""
    from cnnc.compiler.report import summary

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
                    "outputs": {n: list(layer.shape) for n, layer in checked.outputs},
                    "diagnostics": [],
                }
            )
            if args.format == "text":
                print(
                    f"{path}: ok  {checked.graph.name}: {checked.params:,} params, "
                    f"{checked.macs:,} MACs, {summary(checked)}"
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
                print(error.render(read_source(path)))
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
    return EXIT_CODES[SpecError] if failed else 0


def cmd_report(args) -> int:
    from cnnc.compiler import report

    if args.sizes:
        return cli_review.cmd_sizes(args)
    built = report.build(load_one(args.spec, args.input), batch=args.batch)
    if args.format == "json":
        report.validate(built)
        print(json.dumps(built, indent=2))
    elif args.format == "markdown":
        print(report.render_markdown(built, args.depth, args.wide))
    else:
        print(report.render_text(built, args.depth, args.wide, args.max_width))
    return 0


def cmd_compile(args) -> int:
    from cnnc.compiler.lower import lower
    from cnnc.compiler.plan_text import render_plan

    plan = lower(load_one(args.spec, args.input), training=not args.inference)
    if args.output:
        write_atomic(args.output, json.dumps(plan_json(plan), indent=1))
    print(render_plan(plan, args.batch, args.threads))
    if args.output:
        print(f"plan written to {args.output}")
    return 0


def plan_json(plan) -> dict:
    import jsonschema

    from cnnc.compiler.plan_text import plan_schema

    data = plan.to_json()
    jsonschema.validate(data, plan_schema())
    return data


# ---- the parser ------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"`{text}` must be at least 1")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"`{text}` is not a seed: give a whole number 0..2**32-1")
    return value


def _float_in(in_range, out_of_range: str):
    """An argparse type: a float for which `in_range` holds, else `TEXT` + `out_of_range`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"`{text}` is not a number") from None
        if not in_range(value):
            raise argparse.ArgumentTypeError(f"`{text}` {out_of_range}")
        return value

    return parse


_positive_float = _float_in(lambda v: 0 < v < math.inf, "must be a positive finite number")
_non_negative = _float_in(lambda v: 0 <= v < math.inf, "is out of range: give 0 or more")
_momentum = _float_in(lambda v: 0 <= v < 1, "is out of range: momentum is in [0, 1)")


def _size(text: str) -> int:
    try:
        return memory.parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_max_memory(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--max-memory",
        type=_size,
        metavar="SIZE",
        help="refuse plans needing more (e.g. 4G; default: the memory available)",
    )


def _fraction(text: str) -> float:
    value = _positive_float(text) if text not in ("0", "0.0") else 0.0
    if value >= 1:
        raise argparse.ArgumentTypeError(f"`{text}` must be below 1")
    return value


def _label(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"`{text}` must not be negative")
    return value


def _weights(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a list of numbers: 1,4,2") from None
    if any(not math.isfinite(v) or v < 0 for v in values) or not any(values):
        raise argparse.ArgumentTypeError(f"`{text}`: weights are finite, >= 0, not all zero")
    return values


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="cnnc", description="A declarative CNN architecture compiler."
    )
    top.add_argument("--version", action="version", version=f"cnnc {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="shape-check specs and verify their `expect` lines")
    check.add_argument("paths", nargs="+", metavar="PATH", help=".cnn files or folders")
    check.add_argument(
        "--format",
        choices=("text", "json", "github"),
        default="text",
        help="output format; github prints workflow annotations",
    )
    check.add_argument("--input", type=_shape_arg, metavar="CxHxW", help="override the input size")
    check.set_defaults(run=cmd_check)

    report = sub.add_parser("report", help="print the per-layer shape, parameter and cost table")
    report.add_argument("spec", help="the .cnn spec")
    report.add_argument(
        "--format", choices=("text", "json", "markdown"), default="text", help="output format"
    )
    report.add_argument(
        "--batch", type=positive_int, default=1, help="batch size the memory figures assume"
    )
    report.add_argument(
        "--input", type=_shape_arg, metavar="CxHxW", help="override the spec's input size"
    )
    cli_review.add_report_options(report)
    report.set_defaults(run=cmd_report)

    compile_ = sub.add_parser("compile", help="lower a spec to an execution plan")
    compile_.add_argument("spec", help="the .cnn spec")
    compile_.add_argument("-o", "--output", help="write the plan as JSON to this file")
    compile_.add_argument(
        "--batch", type=positive_int, default=1, help="batch size the plan's sizes assume"
    )
    compile_.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="threads the runtime will use (default: all cores)",
    )
    compile_.add_argument("--inference", action="store_true", help="plan forward only")
    compile_.add_argument(
        "--input", type=_shape_arg, metavar="CxHxW", help="override the spec's input size"
    )
    compile_.set_defaults(run=cmd_compile)

    train = sub.add_parser("train", help="train a spec on data (default: the bundled sample)")
    train.add_argument(
        "spec", nargs="?", help="the .cnn spec (default with --resume: the run's spec.cnn)"
    )
    train.add_argument(
        "--data",
        default=None,
        help="default (bundled Fashion-MNIST sample), fashion-mnist, mnist, a .npz, "
        "an IDX folder or an image folder",
    )
    from cnnc.compiler.training import DEFAULTS

    spec_else = "(default: the spec's train section, else {})"
    train.add_argument(
        "--epochs", type=positive_int, help="passes over the data " + spec_else.format(DEFAULTS["epochs"])
    )
    train.add_argument("--batch", type=positive_int, help="batch size " + spec_else.format(DEFAULTS["batch"]))
    train.add_argument("--lr", type=_positive_float, help="learning rate " + spec_else.format("0.05 for sgd, 0.001 for adam/adamw"))
    train.add_argument(
        "--schedule",
        choices=("constant", "step", "cosine", "plateau"),
        help="learning-rate schedule: cosine to 0 per step, step (x gamma every `step` epochs), "
        "plateau (x gamma after --patience epochs without a better --monitor) "
        + spec_else.format(DEFAULTS["schedule"]),
    )
    train.add_argument(
        "--optimizer", choices=("sgd", "adam", "adamw"), help="optimizer " + spec_else.format(DEFAULTS["optimizer"])
    )
    train.add_argument("--momentum", type=_momentum, help="SGD momentum " + spec_else.format(DEFAULTS["momentum"]))
    train.add_argument(
        "--nesterov",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Nesterov momentum for SGD; --no-nesterov for plain momentum "
        + spec_else.format("on" if DEFAULTS["nesterov"] else "off"),
    )
    train.add_argument(
        "--weight-decay",
        type=_non_negative,
        help="L2 weight decay, 0 or more " + spec_else.format(DEFAULTS["weight_decay"]),
    )
    train.add_argument(
        "--seed",
        type=_seed,
        help="seed of the initial weights, the shuffle, dropout and augmentation "
        + spec_else.format(0),
    )
    train.add_argument(
        "--validation",
        type=_fraction,
        help="fraction of the training data held out, stratified, to validate each epoch and "
        "pick best.safetensors " + spec_else.format(0),
    )
    train.add_argument(
        "--ignore-index",
        type=_label,
        help="mask label no loss or metric counts (default: the train section's, else 255)",
    )
    train.add_argument(
        "--class-weights",
        type=_weights,
        metavar="W,W,...",
        help="per-class loss weights for masks (default: all 1)",
    )
    cli_train.add_training_options(train)
    train.add_argument(
        "--limit", type=positive_int, help="train on the first N samples only (default: all)"
    )
    train.add_argument("--out", default=None, help="run folder (default runs/<network>)")
    train.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run saved in DIR with its spec, data and settings (default: start anew)",
    )
    train.add_argument(
        "--overwrite", action="store_true", help="replace the run already in the run folder"
    )
    train.add_argument(
        "--quiet", action="store_true", help="print only the test accuracy (default: progress)"
    )
    _add_max_memory(train)
    train.set_defaults(run=cli_train.cmd_train)

    evaluate = sub.add_parser(
        "eval", help="accuracy, per-class accuracy, confusion matrix; masks: pixel accuracy, IoU"
    )
    evaluate.add_argument(
        "spec",
        metavar="RUN|SPEC",
        help="a run folder (its spec.cnn and best.safetensors, else its last checkpoint) or a "
        "checkpoint in one; or a spec, with --weights",
    )
    evaluate.add_argument(
        "--weights",
        default=None,
        help="a checkpoint or a run folder (its last checkpoint) for SPEC (default: none)",
    )
    evaluate.add_argument(
        "--data",
        default=None,
        help="the data to evaluate, its test part if it has one (default: the run's --data, "
        "else the bundled sample)",
    )
    evaluate.add_argument("--batch", type=positive_int, default=256, help="images per forward pass")
    evaluate.add_argument("--tta", action="store_true", help=cli_train.TTA_HELP)
    evaluate.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format"
    )
    _add_max_memory(evaluate)
    evaluate.set_defaults(run=cli_train.cmd_eval)

    predict = sub.add_parser("predict", help="top-k classes for images, or masks (map outputs)")
    predict.add_argument("spec", metavar="RUN|SPEC", help="a run folder, or a spec with --weights")
    predict.add_argument(
        "images", nargs="+", metavar="IMAGE", help="image files, folders of them, or globs"
    )
    predict.add_argument(
        "--weights",
        default=None,
        help="a checkpoint or a run folder (its last checkpoint) for SPEC (default: none)",
    )
    predict.add_argument(
        "--top", type=positive_int, default=3, help="classes to show per image (default 3)"
    )
    predict.add_argument("--tta", action="store_true", help=cli_train.TTA_HELP)
    predict.add_argument(
        "--format", choices=("text", "json"), default="text", help="output format (default text)"
    )
    predict.add_argument(
        "--out", help="folder for the mask and overlay PNGs of a map output (default: beside)"
    )
    _add_max_memory(predict)
    predict.set_defaults(run=cli_train.cmd_predict)
    cli_review.add_commands(sub, _shape_arg)

    cli_draw.add_commands(sub)
    cli_export.add_commands(sub)
    show.add_commands(sub)
    layers = sub.add_parser("layers", help="every layer kind, its arguments and their defaults")
    layers.add_argument(
        "--format", choices=("text", "markdown"), default="text", help="output format"
    )
    layers.set_defaults(run=cmd_layers)
    _state_defaults(top)
    return top


def _state_defaults(top: argparse.ArgumentParser) -> None:
    """Every option's help ends with its default, so `--help` never leaves one to guess."""
    for command in _subparsers(top):
        for action in command._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            if action.help is None:
                action.help = action.dest.replace("_", " ")
            if "default" in action.help:
                continue
            if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
                action.help += " (default: off)" if action.const else " (default: on)"
            elif action.default is None:
                action.help += " (default: none)"
            else:
                action.help += " (default: %(default)s)"


def _subparsers(top: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += list(dict.fromkeys(action.choices.values()))
    return found


def cmd_layers(args) -> int:
    print(reference.markdown() if args.format == "markdown" else reference.text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
