"""`cnnc train`, `cnnc eval` and `cnnc predict`; their arguments are parsed in `cli`.

The runtime (numpy, numba, the kernels) is imported inside each command, so building the parser
loads none of it. Errors are raised, not printed: `cli.main` maps them to exit codes.
"""

from __future__ import annotations

from pathlib import Path

from cnnc.compiler.files import load


def cmd_train(args) -> int:
    from cnnc.compiler.training import train_config
    from cnnc.runtime import checkpoint
    from cnnc.runtime.dataset import limit
    from cnnc.runtime.sources import load_data
    from cnnc.runtime.train import TrainConfig, Trainer

    checked = load(args.spec, verify_expects=False)  # the one parse and check of this command
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
    }
    if args.resume:
        _, meta = checkpoint.load(args.resume)
        settings = {**settings, **meta["config"]}
    config = TrainConfig.merged(settings, overrides)
    dataset = load_data(args.data, image_shape=tuple(checked.graph.input_shape))
    if args.limit:
        dataset = limit(dataset, args.limit)
    from cnnc import run_folder

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
        trainer = Trainer(args.spec, config, dataset, out, quiet=args.quiet, checked=checked)
        trainer.network.executor.compile_backward()  # now, under the progress lines, not at 0%
    finally:
        executor.on_compile(None)
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
        again = [f"--data {args.data}"] if args.data else []
        again += [f"--limit {args.limit}"] if args.limit else []
        raise KeyboardInterrupt(
            "\ninterrupted; checkpoint saved. Continue with: cnnc train "
            + " ".join([args.spec, *again, "--resume", str(out)])
        ) from None
    if args.quiet and "test_acc" in result:
        print(f"test accuracy {result['test_acc']:.4f}")
    return 0


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
    from cnnc.runtime.network import Network
    from cnnc.runtime.train import load_weights

    checked = load(spec, verify_expects=False)
    network = Network(checked, batch=batch, training=False)
    meta = load_weights(network, weights)
    return checked, network, meta


def cmd_eval(args) -> int:
    import json

    from cnnc.runtime.dataset import check_input_shape
    from cnnc.runtime.sources import load_data
    from cnnc.runtime.train import evaluate

    checked, network, meta = _network_with_weights(args.spec, args.weights, args.batch)
    dataset = load_data(args.data, image_shape=tuple(checked.graph.input_shape))
    check_input_shape(dataset, tuple(checked.graph.input_shape))
    part = dataset.test() or dataset
    loss, accuracy, confusion = evaluate(network, part, meta["normalization"], args.batch)
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
        return 0
    print(f"{part.name}: {int(confusion.sum())} images  loss {loss:.4f}  accuracy {accuracy:.4f}")
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
    import numpy as np

    from cnnc.runtime.batches import normalize
    from cnnc.runtime.images import load_images

    checked, network, meta = _network_with_weights(args.spec, args.weights, len(args.images))
    chw = tuple(checked.graph.input_shape)
    x = normalize(load_images(args.images, chw), meta["normalization"])
    probabilities = network.forward(x).reshape(len(args.images), -1)
    if checked.output.node.kind != "SOFTMAX":
        shifted = probabilities - probabilities.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    names = meta.get("classes") or [str(i) for i in range(probabilities.shape[1])]
    for path, row in zip(args.images, probabilities, strict=True):
        best = np.argsort(-row)[: args.top]
        ranked = ", ".join(f"{names[i]} {row[i]:.3f}" for i in best)
        print(f"{path}: {ranked}")
    return 0
