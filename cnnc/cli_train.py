"""`cnnc train`, `cnnc eval` and `cnnc predict`; their arguments are parsed in `cli`.

The runtime (numpy, numba, the kernels) is imported inside each command, so building the parser
loads none of it. Errors are raised, not printed: `cli.main` maps them to exit codes.
"""

from __future__ import annotations

from pathlib import Path

from cnnc.compiler.files import UsageError, load


def _augment_arg(text: str) -> dict:
    import argparse

    from cnnc.runtime.augment import parse_augment

    try:
        return parse_augment(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _smoothing(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"`{text}` is not a label smoothing in [0, 1)")
    return value


def _count(text: str) -> int:
    import argparse

    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"`{text}` is not a whole number >= 0")
    return int(text)


TTA_HELP = (
    "test-time augmentation: average each image's class probabilities with its left-right "
    "mirror's (classifiers; helps nets trained with flip; default: off)"
)


def add_training_options(train) -> None:
    """The options of validation-driven training and augmentation (issue 16)."""
    train.add_argument("--tta", action="store_true", help="for the final test: " + TTA_HELP)
    train.add_argument(
        "--augment",
        type=_augment_arg,
        metavar="'NAME[=V] ...'",
        help="random augmentation of each training batch, e.g. 'crop=2 flip cutout=8'; names: "
        "crop, flip, rotate, scale, translate, brightness, contrast, saturation, cutout "
        "(default: the spec's `augment`, else none; 'none' switches the spec's off)",
    )
    train.add_argument(
        "--label-smoothing",
        type=_smoothing,
        metavar="E",
        help="train against (1-E)*onehot + E/classes (default: the spec's, else 0)",
    )
    train.add_argument(
        "--monitor",
        choices=("val_loss", "val_acc", "train_loss", "train_acc"),
        help="the metric that picks best.safetensors and drives --early-stop and the plateau "
        "schedule (default: the spec's, else val_loss; train_* without --validation)",
    )
    train.add_argument(
        "--early-stop",
        type=_count,
        metavar="N",
        help="stop after N epochs without a better --monitor (default: the spec's, else 0: never)",
    )
    train.add_argument(
        "--patience",
        type=positive_int_arg,
        metavar="N",
        help="--schedule plateau: multiply the lr by --gamma after N epochs without a better "
        "--monitor (default: the spec's, else 2)",
    )
    train.add_argument(
        "--input",
        type=_shape,
        metavar="CxHxW",
        help="train at this input size instead of the spec's, e.g. 1x28x28 for a 3x224x224 zoo "
        "spec on Fashion-MNIST; the run records it, so eval, predict and resume use it too "
        "(default: the spec's `input`)",
    )
    train.add_argument(
        "--classes",
        type=positive_int_arg,
        metavar="K",
        help="make the last FC or CONV K wide, the data's class count (default: the spec's width)",
    )
    train.add_argument(
        "--gamma",
        type=_gamma,
        help="the lr factor of --schedule step and plateau (default: the spec's, else 0.1)",
    )


def _gamma(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"`{text}` is not an lr factor in (0, 1]")
    return value


def _shape(text: str) -> tuple[int, ...]:
    from cnnc.compiler.files import shape_arg

    return shape_arg(text)


def positive_int_arg(text: str) -> int:
    from cnnc.cli import positive_int

    return positive_int(text)


def cmd_train(args) -> int:
    from cnnc.compiler.check import require_loss_head
    from cnnc.compiler.training import train_config
    from cnnc.runtime import checkpoint
    from cnnc.runtime.dataset import limit
    from cnnc.runtime.sources import load_data
    from cnnc.runtime.train import TrainConfig, Trainer

    saved_run = {}
    if args.resume:
        saved_run = _saved_run(args)
    elif args.spec is None:
        raise UsageError("give the spec to train (or --resume DIR to continue a run)")
    adapted = {"input": args.input, "classes": args.classes}
    # the one parse and check of this command
    checked = load(args.spec, args.input, verify_expects=False, classes=args.classes)
    require_loss_head(checked)  # several heads: the train section names the one the loss reads
    settings = train_config(checked.graph.train, args.spec)
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
        "ignore_index": getattr(args, "ignore_index", None),
        "class_weights": getattr(args, "class_weights", None),
        "label_smoothing": args.label_smoothing,
        "monitor": args.monitor,
        "early_stop": args.early_stop,
        "patience": args.patience,
        "gamma": args.gamma,
        **(args.augment or {}),
    }
    if args.resume:
        _, meta = checkpoint.load(args.resume)
        checkpoint.require_training_state(meta, checkpoint.resolve(args.resume))
        settings = {**settings, **meta["config"]}
    config = TrainConfig.merged(settings, overrides)
    dataset = load_data(
        args.data, image_shape=tuple(checked.graph.input_shape), masks=_is_map(checked)
    )
    if args.limit:
        dataset = limit(dataset, args.limit)
    from cnnc import run_folder

    run_options = {**saved_run, "data": _data_name(args.data), "limit": args.limit}
    run_options |= {
        key: list(value) if key == "input" else value
        for key, value in adapted.items()
        if value is not None
    }
    resume = getattr(args, "resume", None)
    if resume and Path(resume).is_file():  # `--resume RUN/checkpoint.safetensors`
        resume = str(Path(resume).parent)
    out = Path(resume or args.out or Path("runs") / checked.graph.name)
    run_folder.resolve(out, bool(resume), bool(getattr(args, "overwrite", False)))
    if not args.quiet:
        print(f"{checked.graph.name}: {checked.params:,} params; {dataset.describe()}")
        print(
            f"training {config.epochs} epochs, batch {config.batch}, {config.optimizer} "
            f"lr {config.lr:g} ({config.schedule}), into {out}/"
        )
    from cnnc.runtime import executor

    executor.on_compile(None if args.quiet else _compiling())
    try:
        trainer = Trainer(
            args.spec,
            config,
            dataset,
            out,
            quiet=args.quiet,
            checked=checked,
            run=run_options,
            tta=args.tta,
        )
        trainer.network.executor.compile_backward()  # now, under the progress lines, not at 0%
    finally:
        executor.on_compile(None)
    if not args.quiet and (trainer.augment or config.label_smoothing or trainer.val_set):
        extras = [f"augment {trainer.augment.describe()}"] if trainer.augment else []
        extras += [f"label smoothing {config.label_smoothing:g}"] if config.label_smoothing else []
        if trainer.val_set is not None:
            extras.append(f"{len(trainer.val_set)} held out; best.safetensors by {config.monitor}")
        print("; ".join(extras))
    if args.resume:
        trainer.resume(args.resume)
        if not args.quiet:
            print(
                f"resuming at epoch {trainer.progress.epoch + 1}, batch "
                f"{trainer.progress.batch_index + 1}"
            )
    try:
        with run_folder.claimed(out):
            result = trainer.run()
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"\ninterrupted; checkpoint saved. Continue with: cnnc train --resume {out}"
        ) from None
    if args.quiet and "test_miou" in result:
        print(f"test pixel accuracy {result['test_acc']:.4f}  mIoU {result['test_miou']:.4f}")
    elif args.quiet and "test_acc" in result:
        print(f"test accuracy {result['test_acc']:.4f}")
    return 0


def _is_map(checked) -> bool:
    """Whether the spec's output is a map scored per pixel (its default data is then masks)."""
    from cnnc.runtime.segmentation import is_map

    return is_map(checked.output.shape)


def _data_name(data: str | None) -> str | None:
    """--data as the run stores it: a path made absolute, so a resume from elsewhere finds it."""
    if data and Path(data).exists():
        return str(Path(data).resolve())
    return data


def _saved_run(args) -> dict:
    """`--resume DIR` alone: the spec, data and limit the run was started with, unless given."""
    from cnnc.runtime import checkpoint

    folder = Path(args.resume)
    folder = folder.parent if folder.is_file() else folder
    _, meta = checkpoint.load(folder)
    saved = meta.get("run") or {}
    if args.spec is None:
        spec = folder / "spec.cnn"
        if not spec.is_file() or spec.is_symlink():
            raise UsageError(
                f"{folder}: holds no spec.cnn; give the spec: cnnc train SPEC --resume"
            )
        args.spec = str(spec)
    if args.data is None:
        args.data = saved.get("data")
    if args.limit is None:
        args.limit = saved.get("limit")
    if args.input is None and saved.get("input"):
        args.input = tuple(saved["input"])
    if args.classes is None:
        args.classes = saved.get("classes")
    return saved


def _run_target(args) -> tuple[str, str, str]:
    """(spec, weights, warning) from `SPEC --weights W`, `RUN` or `RUN/best.safetensors`; a
    spec that is not the one the weights were trained from is named in the warning, printed
    once the weights have loaded (a load error says more)."""
    from cnnc.model import is_run, run_paths
    from cnnc.runtime import checkpoint

    if args.weights is None:
        if not is_run(args.spec):
            raise UsageError(
                f"{args.spec}: give a run folder (holding spec.cnn and a checkpoint), or the "
                "spec and its weights: SPEC --weights RUN"
            )
        spec, weights = run_paths(args.spec)
        return str(spec), str(weights), ""
    if is_run(args.spec) and Path(args.spec).is_dir():
        spec, weights = run_paths(args.spec, checkpoint.resolve(args.weights))
        return str(spec), str(weights), ""
    weights = checkpoint.resolve(args.weights)  # --weights RUN: its last checkpoint, as before
    _, meta = checkpoint.load(weights)
    try:
        source = Path(args.spec).read_text()
    except (OSError, UnicodeDecodeError):
        source = None
    warning = ""
    if source is not None and meta.get("spec_hash") not in (None, checkpoint.spec_hash(source)):
        warning = (
            f"cnnc: warning: {args.spec} is not the spec {weights} was trained from (its hash "
            f"differs); results may not mean what they did. The run's own spec is "
            f"{weights.parent / 'spec.cnn'}: `cnnc eval {weights.parent}` uses it"
        )
    return args.spec, str(weights), warning


def _compiling():
    """A progress printer for the kernel compilation: silent while kernels load from the cache
    (milliseconds each); once one takes long, a header and then a line per kernel."""
    shown = []

    def report(done: int, total: int, name: str, seconds: float) -> None:
        if not shown and seconds < 0.5:
            return
        if not shown:
            print("compiling kernels for this network (first run only, cached afterwards)")
            shown.append(True)
        print(f"  {name} ({done}/{total}) {seconds:.1f} s", flush=True)

    return report


def _network_with_weights(spec: str, weights: str, batch: int):
    from cnnc.model import adapted_as_trained
    from cnnc.runtime.network import Network
    from cnnc.runtime.train import load_weights

    input_shape, classes = adapted_as_trained(weights)
    checked = load(spec, input_shape, verify_expects=False, classes=classes)
    network = Network(checked, batch=batch, training=False)
    meta = load_weights(network, weights)
    return checked, network, meta


def _refuse_tta_on_maps(args, dense: bool) -> None:
    if args.tta and dense:
        raise UsageError("--tta averages class probabilities; this network outputs a map")


def cmd_eval(args) -> int:
    import json
    import sys

    from cnnc.runtime.dataset import check_input_shape
    from cnnc.runtime.sources import load_data
    from cnnc.runtime.train import evaluate

    spec, weights, warning = _run_target(args)
    checked, network, meta = _network_with_weights(spec, weights, args.batch)
    if warning:
        print(warning, file=sys.stderr)
    if args.data is None:
        args.data = (meta.get("run") or {}).get("data")
    dataset = load_data(
        args.data, image_shape=tuple(checked.graph.input_shape), masks=network.dense
    )
    check_input_shape(dataset, tuple(checked.graph.input_shape))
    part = dataset.test() or dataset
    _refuse_tta_on_maps(args, network.dense or dataset.dense)
    if network.dense or dataset.dense:
        from cnnc.cli_dense import eval_masks
        from cnnc.runtime.segmentation import check_targets

        config = meta.get("config", {})
        network.set_loss(config.get("ignore_index", 255), config.get("class_weights") or None)
        check_targets(part, network)
        return eval_masks(args, network, part, meta["normalization"])
    loss, accuracy, confusion = evaluate(
        network, part, meta["normalization"], args.batch, mirrored=args.tta
    )
    names = list(part.classes) or [str(i) for i in range(len(confusion))]
    per_class = [float(confusion[i, i] / max(confusion[i].sum(), 1)) for i in range(len(names))]
    if args.format == "json":
        print(
            json.dumps(
                {
                    "images": int(confusion.sum()),
                    "tta": args.tta,
                    "loss": loss,
                    "accuracy": accuracy,
                    "classes": names,
                    "per_class_accuracy": per_class,
                    "confusion": confusion.tolist(),
                },
                indent=2,
            )
        )
        return 0
    averaged = ", each averaged with its mirror" if args.tta else ""
    print(
        f"{part.name}: {int(confusion.sum())} images{averaged}  loss {loss:.4f}  "
        f"accuracy {accuracy:.4f}"
    )
    width = max(len(n) for n in names)
    print("per-class accuracy:")
    for name, value in zip(names, per_class, strict=True):
        print(f"  {name.ljust(width)}  {value:.4f}")
    print("confusion matrix (rows: true class, columns: predicted):")
    print(" " * (width + 2) + " ".join(f"{i:>5d}" for i in range(len(names))))
    for i, name in enumerate(names):
        print(f"  {name.ljust(width)}" + " ".join(f"{v:>5d}" for v in confusion[i]))
    return 0


def cmd_predict(args) -> int:
    import json
    import sys

    import numpy as np

    from cnnc.model import is_run
    from cnnc.runtime.batches import normalize
    from cnnc.runtime.images import describe_conversion, load_images

    if args.weights is None and not is_run(args.spec):
        raise UsageError(
            f"{args.spec}: give a run folder first (cnnc predict RUN IMAGE...), or the spec "
            "and --weights"
        )
    spec, weights, warning = _run_target(args)
    paths = image_paths(args.images)
    checked, network, meta = _network_with_weights(spec, weights, min(len(paths), 256))
    if warning:
        print(warning, file=sys.stderr)
    chw = tuple(checked.graph.input_shape)
    _refuse_tta_on_maps(args, network.dense)
    if network.dense:
        from cnnc.cli_dense import predict_masks

        images, scores = [], []
        for start in range(0, len(paths), network.batch):
            chunk = load_images(paths[start : start + network.batch], chw)
            images.append(chunk)
            scores.append(network.forward(normalize(chunk, meta["normalization"])).copy())
        args.images = [str(path) for path in paths]
        return predict_masks(
            args, np.concatenate(scores), np.concatenate(images), meta.get("classes")
        )
    names = list(meta.get("classes") or [])
    results = []
    for start in range(0, len(paths), network.batch):
        chunk = paths[start : start + network.batch]
        notes = [describe_conversion(path, chw) for path in chunk]
        x = normalize(load_images(chunk, chw), meta["normalization"])
        scores = network.probabilities(x, mirrored=args.tta)
        if len(names) != scores.shape[1]:
            names = [str(i) for i in range(scores.shape[1])]
        for path, row, note in zip(chunk, scores, notes, strict=True):
            best = np.argsort(-row)[: args.top]
            results.append(
                {
                    "image": str(path),
                    "top": [{"class": names[i], "probability": float(row[i])} for i in best],
                    "converted": note,
                }
            )
    if args.format == "json":
        print(json.dumps({"weights": weights, "predictions": results}, indent=2))
        return 0
    for result in results:
        if result["converted"]:
            print(f"cnnc: {result['image']}: {result['converted']}", file=sys.stderr)
        ranked = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in result["top"])
        print(f"{result['image']}: {ranked}")
    return 0


def image_paths(items: list[str]) -> list[str]:
    """Image files named by paths, folders (every image file under them, sorted) and globs."""
    import glob

    from cnnc.runtime.images import IMAGE_EXTENSIONS

    found = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            inside = sorted(
                str(p)
                for p in path.rglob("*")
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not inside:
                raise UsageError(f"{item}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in it")
            found += inside
        elif not path.exists() and glob.has_magic(item):
            matched = sorted(glob.glob(item, recursive=True))
            if not matched:
                raise UsageError(f"{item}: no file matches this pattern")
            found += matched
        else:
            found.append(item)
    return found
