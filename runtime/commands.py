"""`cnnc train`, `cnnc eval` and `cnnc predict`. Imported by the CLI to build its parser, so
nothing heavy (numba, the kernels) is imported until a command runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnc.compiler.cli import positive_int

EXIT_OK, EXIT_SPEC, EXIT_USAGE = 0, 1, 2


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}` is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"`{text}` must be positive")
    return value


def _fraction(text: str) -> float:
    value = _positive_float(text) if text not in ("0", "0.0") else 0.0
    if value >= 1:
        raise argparse.ArgumentTypeError(f"`{text}` must be below 1")
    return value


def add_commands(sub) -> None:
    train = sub.add_parser("train", help="train a spec on data (default: the bundled sample)")
    train.add_argument("spec")
    train.add_argument(
        "--data",
        default=None,
        help="default (bundled Fashion-MNIST sample), fashion-mnist, mnist, a .npz, "
        "an IDX folder or an image folder",
    )
    train.add_argument("--epochs", type=positive_int)
    train.add_argument("--batch", type=positive_int)
    train.add_argument("--lr", type=_positive_float)
    train.add_argument("--schedule", choices=("constant", "step", "cosine"))
    train.add_argument("--optimizer", choices=("sgd", "adam", "adamw"))
    train.add_argument("--momentum", type=float)
    train.add_argument("--nesterov", action="store_true", default=None)
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--validation", type=_fraction, help="fraction held out (default 0)")
    train.add_argument("--limit", type=positive_int, help="train on the first N samples only")
    train.add_argument("--out", default=None, help="run folder (default runs/<network>)")
    train.add_argument("--resume", metavar="DIR", help="continue the run saved in DIR")
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(run=cmd_train)

    evaluate = sub.add_parser("eval", help="accuracy, per-class accuracy and confusion matrix")
    evaluate.add_argument("spec")
    evaluate.add_argument("--weights", required=True, help="a checkpoint or a run folder")
    evaluate.add_argument("--data", default=None)
    evaluate.add_argument("--batch", type=positive_int, default=256)
    evaluate.add_argument("--format", choices=("text", "json"), default="text")
    evaluate.set_defaults(run=cmd_eval)

    predict = sub.add_parser("predict", help="top-k classes for images")
    predict.add_argument("spec")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--weights", required=True)
    predict.add_argument("--top", type=positive_int, default=3)
    predict.set_defaults(run=cmd_predict)


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"cnnc: error: {message}", file=sys.stderr)
    return code


def _spec_settings(spec: str) -> tuple[dict, object]:
    from cnnc.compiler.cli import load
    from cnnc.compiler.training import train_config

    checked = load(spec, verify_expects=False)
    return train_config(checked.graph.train, spec), checked


def limit(dataset, count: int):
    """The first `count` training and test samples (a quick run, or a test's slice)."""
    from dataclasses import replace

    part = dataset.take(range(min(count, len(dataset))))
    if dataset.x_test is None:
        return part
    keep = min(count, len(dataset.x_test))
    return replace(part, x_test=dataset.x_test[:keep], y_test=dataset.y_test[:keep])


def cmd_train(args) -> int:
    from . import checkpoint, data
    from .train import TrainConfig, Trainer, TrainingError

    settings, checked = _spec_settings(args.spec)
    overrides = {
        "epochs": args.epochs,
        "batch": args.batch,
        "lr": args.lr,
        "schedule": args.schedule,
        "optimizer": args.optimizer,
        "momentum": args.momentum,
        "nesterov": args.nesterov,
        "weight_decay": args.weight_decay,
        "seed": args.seed,
        "validation": args.validation,
    }
    if args.resume:
        try:
            _, meta = checkpoint.load(args.resume)
        except checkpoint.CheckpointError as error:
            return _fail(str(error))
        settings = {**settings, **meta["config"]}
    config = TrainConfig.merged(settings, overrides)
    try:
        dataset = data.load_data(args.data, image_shape=tuple(checked.graph.input_shape))
        if args.limit:
            dataset = limit(dataset, args.limit)
        out = Path(args.resume or args.out or Path("runs") / checked.graph.name)
        if not args.quiet:
            print(f"{checked.graph.name}: {checked.params:,} params; {dataset.describe()}")
            print(
                f"training {config.epochs} epochs, batch {config.batch}, {config.optimizer} "
                f"lr {config.lr:g} ({config.schedule}), into {out}/"
            )
        trainer = Trainer(args.spec, config, dataset, out, quiet=args.quiet)
        if args.resume:
            trainer.resume(args.resume)
            if not args.quiet:
                print(
                    f"resuming at epoch {trainer.progress.epoch + 1}, batch "
                    f"{trainer.progress.batch_index + 1}"
                )
        result = trainer.run()
    except data.DataError as error:
        return _fail(str(error))
    except checkpoint.CheckpointError as error:
        return _fail(str(error))
    except TrainingError as error:
        return _fail(str(error), EXIT_SPEC)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; checkpoint saved. Continue with: cnnc train {args.spec} "
            f"--resume {out}",
            file=sys.stderr,
        )
        return 130
    if args.quiet and "test_acc" in result:
        print(f"test accuracy {result['test_acc']:.4f}")
    return EXIT_OK


def _network_with_weights(spec: str, weights: str, batch: int):
    from cnnc.compiler.cli import load

    from .network import Network
    from .train import load_weights

    checked = load(spec, verify_expects=False)
    network = Network(checked, batch=batch, training=False)
    meta = load_weights(network, weights, Path(spec).read_text())
    return checked, network, meta


def cmd_eval(args) -> int:
    import json

    from . import checkpoint, data
    from .train import evaluate

    try:
        checked, network, meta = _network_with_weights(args.spec, args.weights, args.batch)
        dataset = data.load_data(args.data, image_shape=tuple(checked.graph.input_shape))
        data.check_input_shape(dataset, tuple(checked.graph.input_shape))
        part = dataset.test() or dataset
        loss, accuracy, confusion = evaluate(network, part, meta["normalization"], args.batch)
    except (checkpoint.CheckpointError, data.DataError) as error:
        return _fail(str(error))
    names = list(part.classes) or [str(i) for i in range(len(confusion))]
    per_class = [float(confusion[i, i] / max(confusion[i].sum(), 1)) for i in range(len(names))]
    if args.format == "json":
        print(
            json.dumps(
                {
                    "images": int(confusion.sum()),
                    "loss": loss,
                    "accuracy": accuracy,
                    "classes": names,
                    "per_class_accuracy": per_class,
                    "confusion": confusion.tolist(),
                },
                indent=2,
            )
        )
        return EXIT_OK
    print(f"{part.name}: {int(confusion.sum())} images  loss {loss:.4f}  accuracy {accuracy:.4f}")
    width = max(len(n) for n in names)
    print("per-class accuracy:")
    for name, value in zip(names, per_class, strict=True):
        print(f"  {name.ljust(width)}  {value:.4f}")
    print("confusion matrix (rows: true class, columns: predicted):")
    print(" " * (width + 2) + " ".join(f"{i:>5d}" for i in range(len(names))))
    for i, name in enumerate(names):
        print(f"  {name.ljust(width)}" + " ".join(f"{v:>5d}" for v in confusion[i]))
    return EXIT_OK


def cmd_predict(args) -> int:
    import numpy as np

    from . import checkpoint, data

    try:
        checked, network, meta = _network_with_weights(args.spec, args.weights, len(args.images))
        chw = tuple(checked.graph.input_shape)
        x = data.normalize(data.load_images(args.images, chw), meta["normalization"])
    except (checkpoint.CheckpointError, data.DataError) as error:
        return _fail(str(error))
    probabilities = network.forward(x).reshape(len(args.images), -1)
    if checked.output.node.kind != "SOFTMAX":
        shifted = probabilities - probabilities.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    names = meta.get("classes") or [str(i) for i in range(probabilities.shape[1])]
    for path, row in zip(args.images, probabilities, strict=True):
        best = np.argsort(-row)[: args.top]
        ranked = ", ".join(f"{names[i]} {row[i]:.3f}" for i in best)
        print(f"{path}: {ranked}")
    return EXIT_OK
