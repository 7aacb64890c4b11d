"""Training, evaluation and prediction from a spec.

The loop is deterministic given the seed: the shuffle order of an epoch is drawn from a numpy
Generator whose state at the start of that epoch is checkpointed with the batch reached, and
dropout masks are a pure function of the step count, so a run interrupted and resumed ends with
the same weights, bit for bit, as one that never stopped.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cnnc.compiler.check import Checked, check_file
from cnnc.compiler.training import TrainConfig

from . import checkpoint, metrics, run_files, segmentation
from .augment import Augment
from .batches import batch_count, compute_normalization, iter_batches, split_validation
from .dataset import Dataset, check_input_shape, shape_text
from .errors import DataError, TrainingError
from .metrics_log import read_metrics
from .monitor import Watch, metric_name, observe
from .network import InputError, Network
from .optim import Optimizer, OptimizerConfig


def optimizer_config(config: TrainConfig) -> OptimizerConfig:
    return OptimizerConfig(
        config.optimizer,
        config.lr,
        config.momentum,
        config.nesterov,
        config.weight_decay,
        config.beta1,
        config.beta2,
        config.eps,
    )


def learning_rate(config: TrainConfig, epoch: int, batch_index: int, batches: int) -> float:
    """The schedule, per step: constant, step decay every `step` epochs, or cosine to zero."""
    if config.schedule == "step":
        return config.lr * config.gamma ** (epoch // config.step)
    if config.schedule == "cosine":
        progress = (epoch * batches + batch_index) / max(config.epochs * batches, 1)
        return 0.5 * config.lr * (1.0 + math.cos(math.pi * progress))
    return config.lr  # plateau: scaled by the trainer's Watch.lr_scale


class _Interrupt:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps."""

    def __init__(self):
        self.signal = None

    def __enter__(self):
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, number, frame):
        self.signal = number

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)


@dataclass
class Progress:
    """Where training is: enough to resume it exactly."""

    epoch: int = 0
    batch_index: int = 0
    rng_state: dict | None = None  # the shuffle Generator at the start of `epoch`
    steps_run: int = 0
    sums: tuple[float, int, int] = (0.0, 0, 0)  # loss sum, correct, seen in the epoch so far
    watch: dict = field(default_factory=lambda: asdict(Watch()))  # best metric, plateau, stop
    history: list = field(default_factory=list)  # every finished epoch's metrics record


def _meta(spec_source, config, progress, norm, classes, network, optimizer_steps, run=None):
    return {
        "run": run or {},  # how the command line named the data etc., for `--resume DIR` alone
        "spec_hash": checkpoint.spec_hash(spec_source),
        "network": network.plan.network,
        "config": asdict(config),
        "progress": asdict(progress),
        "normalization": norm,
        "classes": list(classes),
        "optimizer_steps": optimizer_steps,
    }


def save_checkpoint(
    path, network, optimizer, spec_source, config, progress, norm, classes, run=None
):
    tensors = {f"param/{k}": v for k, v in network.parameters().items()}
    tensors.update({f"buffer/{k}": v for k, v in network.buffers().items()})
    tensors.update({f"optim/{k}": v for k, v in optimizer.state.items()})
    meta = _meta(spec_source, config, progress, norm, classes, network, optimizer.steps, run)
    checkpoint.save(path, tensors, meta)


def load_weights(network: Network, path) -> dict:
    """Load a checkpoint's weights into a network; returns its metadata."""
    tensors, meta = checkpoint.load(path)
    weights = {**checkpoint.split(tensors, "param/"), **checkpoint.split(tensors, "buffer/")}
    try:
        network.load_state_dict(weights)
    except ValueError as error:
        raise checkpoint.CheckpointError(f"{path}: {error}") from None
    plan = network.plan
    checkpoint.check_fits(meta, plan.input_shape[0], plan.tensors[plan.logits].shape, path)
    return meta


@contextmanager
def _hint(flag: str):
    """A mismatch between the data and the spec, with the `cnnc train` option that adapts it."""
    try:
        yield
    except DataError as error:
        if not flag:
            raise
        raise DataError(f"{error}; {flag}") from None


class Trainer:
    """Trains the spec at `spec_path`; `checked` is that spec already checked (the command line
    passes the one it read the train section from), checked here when None."""

    def __init__(
        self,
        spec_path: str,
        config: TrainConfig,
        dataset: Dataset,
        out: Path,
        quiet: bool = False,
        log=print,
        checked: Checked | None = None,
        run: dict | None = None,
        tta: bool = False,
    ):
        self.tta = tta  # the final test also averages each image with its mirror
        self.run_options = run or {}
        self.spec_source = Path(spec_path).read_text()
        if checked is None:
            checked = check_file(spec_path, verify_expects=False)
        self.checked = checked
        self.config, self.out, self.quiet, self.log = config, out, quiet, log
        chw = tuple(self.checked.graph.input_shape)
        with _hint(f"or train with --input {shape_text(dataset.shape)}"):
            check_input_shape(dataset, chw)
        self.network = Network(self.checked, batch=config.batch, training=True, seed=config.seed)
        self.network.set_loss(config.ignore_index, config.class_weights or None)
        self.network.label_smoothing = config.label_smoothing
        wrong_width = dataset.num_classes != self.network.classes
        with _hint(f"or train with --classes {dataset.num_classes}" if wrong_width else ""):
            segmentation.check_targets(dataset, self.network)
        self.train_set, self.val_set = split_validation(
            dataset.without_test(), config.validation, config.seed
        )
        self.test_set = dataset.test()
        self._check_batch_sizes()
        self.classes = dataset.classes
        self.norm = compute_normalization(self.train_set)
        self.optimizer = Optimizer(optimizer_config(config), self.network.P.size)
        self.progress = Progress()
        self.augment = Augment.from_config(config)
        self.augment.check(chw)

    def _check_batch_sizes(self) -> None:
        """Refuse before the first step what BN in training mode would refuse mid-epoch."""
        n = len(self.train_set)
        for size in {min(self.config.batch, n), n % self.config.batch} - {0}:
            try:
                self.network._check_batch_statistics(size)
            except InputError as error:
                last = "" if size == min(self.config.batch, n) else " (the epoch's last batch)"
                raise TrainingError(f"{error}{last}") from None

    # -- resume --

    def resume(self, path) -> None:
        tensors, meta = checkpoint.load(path)
        checkpoint.require_training_state(meta, path)
        if meta.get("spec_hash") != checkpoint.spec_hash(self.spec_source):
            raise checkpoint.CheckpointError(
                f"{path}: it was trained from a different spec (the spec's hash differs)"
            )
        load_weights(self.network, path)
        for name, array in checkpoint.split(tensors, "optim/").items():
            if name not in self.optimizer.state or array.shape != self.optimizer.state[name].shape:
                raise checkpoint.CheckpointError(
                    f"{path}: its optimizer state `{name}` does not fit this optimizer"
                )
            self.optimizer.state[name][...] = array
        missing = sorted(set(self.optimizer.state) - set(checkpoint.split(tensors, "optim/")))
        if missing:
            raise checkpoint.CheckpointError(
                f"{path}: it holds no optimizer state `{'`, `'.join(missing)}` for this optimizer "
                "(was it trained with another one?); resume with the run's own optimizer"
            )
        self.optimizer.steps = meta["optimizer_steps"]
        progress = meta["progress"]
        self.progress = Progress(
            progress["epoch"],
            progress["batch_index"],
            progress["rng_state"],
            progress["steps_run"],
            tuple(progress["sums"]),
            {**asdict(Watch()), **progress.get("watch", {})},
            list(progress.get("history", [])),
        )
        self.network.steps_run = self.progress.steps_run
        self.norm = meta["normalization"]

    # -- the loop --

    def run(self) -> dict:
        config, network, progress = self.config, self.network, self.progress
        self.out.mkdir(parents=True, exist_ok=True)
        run_files.write(self.out / "spec.cnn", self.spec_source)
        metrics_path = self.out / "metrics.jsonl"
        run_files.write_metrics(metrics_path, progress.history)  # a line a kill lost is back
        batches = batch_count(self.train_set, config.batch)
        rng = np.random.default_rng(config.seed)
        history = []
        watch = Watch(**progress.watch)
        monitored = metric_name(config.monitor, self.val_set is not None)
        if (
            monitored != config.monitor
            and not self.quiet
            and (config.early_stop or config.schedule == "plateau")
        ):
            self.log(f"(no validation split: {monitored} stands in for {config.monitor})")
        with _Interrupt() as interrupt:
            while progress.epoch < config.epochs and not watch.stopped:
                if progress.rng_state is not None:
                    rng.bit_generator.state = progress.rng_state
                progress.rng_state = rng.bit_generator.state
                started = time.perf_counter()
                loss_sum, correct, seen = progress.sums
                progress_seen_at_start = seen
                iterator = iter_batches(
                    self.train_set,
                    config.batch,
                    norm=self.norm,
                    rng=rng,
                    augment=self._augmenter(progress.epoch),
                    start=progress.batch_index,
                )
                bar = self._bar(progress.epoch, batches, progress.batch_index)
                # an epoch resumed after its last batch runs none: the record still needs its lr
                lr = learning_rate(config, progress.epoch, max(batches - 1, 0), batches)
                lr *= watch.lr_scale
                for index, (x, y) in enumerate(iterator, start=progress.batch_index):
                    lr = learning_rate(config, progress.epoch, index, batches) * watch.lr_scale
                    loss, hits = network.loss_and_grad(x, y)
                    self._check_finite(loss, x, progress)
                    self.optimizer.step(network.P, network.G, lr)
                    loss_sum, correct, seen = (
                        loss_sum + loss * len(y),
                        correct + hits,
                        seen + len(y),
                    )
                    progress.batch_index, progress.sums = index + 1, (loss_sum, correct, seen)
                    progress.steps_run = network.steps_run
                    if bar is not None:
                        elapsed = time.perf_counter() - started
                        done = seen - progress_seen_at_start
                        bar.set_postfix_str(
                            f"loss {loss_sum / seen:.4f} acc {correct / seen:.3f} "
                            f"{done / max(elapsed, 1e-9):,.0f} img/s",
                            refresh=False,
                        )
                        bar.update(1)
                    if interrupt.signal is not None:
                        if bar is not None:
                            bar.close()
                        self._save()
                        raise KeyboardInterrupt
                if bar is not None:
                    bar.close()
                seconds = time.perf_counter() - started
                record = {
                    "epoch": progress.epoch + 1,
                    "train_loss": loss_sum / max(seen, 1),
                    "train_acc": correct / max(seen, 1),
                    "lr": lr,
                    "seconds": round(seconds, 3),
                    "images_per_s": round((seen - progress_seen_at_start) / seconds, 1),
                }
                if self.val_set is not None:
                    record["val_loss"], record["val_acc"], confusion = self.evaluate(self.val_set)
                    if network.dense:
                        record.update(_iou_fields("val", confusion))
                is_best = observe(watch, monitored, record, config)
                progress.epoch += 1
                progress.batch_index, progress.sums = 0, (0.0, 0, 0)
                progress.rng_state = rng.bit_generator.state
                progress.watch = asdict(watch)
                progress.history = [*progress.history, record]
                if is_best:
                    self._save(run_files.BEST)
                self._save()  # the checkpoint holds the record too: no kill loses its line
                run_files.write_metrics(metrics_path, progress.history)
                history.append(record)
                self._epoch_line(record, is_best, monitored)
                if watch.stopped and not self.quiet:
                    self.log(
                        f"early stop: no better {monitored} for {watch.since_best} epochs "
                        f"(best {watch.best:.4f} at epoch {watch.best_epoch})"
                    )
        result = {"epochs": history, "best_epoch": watch.best_epoch, "monitor": monitored}
        if self.test_set is not None:
            loss, accuracy, confusion = self.evaluate(self.test_set)
            result.update(test_loss=loss, test_acc=accuracy)
            if network.dense:
                result.update(_iou_fields("test", confusion))
                self.log(
                    f"test: loss {loss:.4f}  pixel accuracy {accuracy:.4f}  mIoU "
                    f"{result['test_miou']:.4f}  ({len(self.test_set)} images)"
                )
            else:
                self.log(
                    f"test: loss {loss:.4f}  accuracy {accuracy:.4f}  ({len(self.test_set)} images)"
                )
                if self.tta:
                    tta_loss, tta_accuracy, _ = evaluate(
                        network, self.test_set, self.norm, self.config.batch, mirrored=True
                    )
                    result.update(tta_test_loss=tta_loss, tta_test_acc=tta_accuracy)
                    self.log(
                        f"test, each image averaged with its mirror (--tta): loss {tta_loss:.4f}"
                        f"  accuracy {tta_accuracy:.4f}"
                    )
            best = self.out / run_files.BEST
            if watch.best_epoch and watch.best_epoch != progress.epoch and best.exists():
                loss, accuracy = self._evaluate_checkpoint(best, self.test_set)
                result.update(best_test_loss=loss, best_test_acc=accuracy)
                self.log(
                    f"test of {best.name} (epoch {watch.best_epoch}, best {monitored}): "
                    f"loss {loss:.4f}  accuracy {accuracy:.4f}"
                )
            else:
                result.update(best_test_loss=result["test_loss"], best_test_acc=accuracy)
        self._plot(metrics_path)
        return result

    def _augmenter(self, epoch: int):
        if not self.augment:
            return None
        augment, seed = self.augment, self.config.seed
        return lambda x, batch: augment(x, seed, epoch, batch)

    def _evaluate_checkpoint(self, path: Path, dataset: Dataset) -> tuple[float, float]:
        """Test another checkpoint's weights, then put the last weights back."""
        current = {k: v.copy() for k, v in self.network.state_dict().items()}
        load_weights(self.network, path)
        try:
            return self.evaluate(dataset)[:2]
        finally:
            self.network.load_state_dict(current)

    def _bar(self, epoch, batches, start):
        if self.quiet:
            return None
        from tqdm import tqdm

        return tqdm(
            total=batches,
            initial=start,
            leave=False,
            unit="batch",
            disable=None,
            # one speed (img/s, in the postfix), and room for the loss in 80 columns
            bar_format="{desc} {percentage:3.0f}%|{bar:10}| {elapsed}<{remaining}{postfix}",
            desc=f"epoch {epoch + 1}/{self.config.epochs}",
        )

    def _epoch_line(self, record, is_best: bool = False, monitored: str = "") -> None:
        text = (
            f"epoch {record['epoch']:>3}/{self.config.epochs}  train loss "
            f"{record['train_loss']:.4f} acc {record['train_acc']:.4f}"
        )
        if "val_loss" in record:
            text += f"  val loss {record['val_loss']:.4f} acc {record['val_acc']:.4f}"
        if "val_miou" in record:
            text += f" mIoU {record['val_miou']:.4f}"
        text += f"  {record['images_per_s']:,.0f} img/s  {record['seconds']:.1f}s"
        if is_best and record["epoch"] > 1:
            text += f"  * best {monitored}"
        if not self.quiet:
            self.log(text)

    def _save(self, name: str = checkpoint.FILENAME) -> None:
        save_checkpoint(
            self.out / name,
            self.network,
            self.optimizer,
            self.spec_source,
            self.config,
            self.progress,
            self.norm,
            self.classes,
            self.run_options,
        )

    def _check_finite(self, loss: float, x, progress: Progress) -> None:
        step = self.network.steps_run
        if math.isfinite(loss) and math.isfinite(float(self.network.G.sum(dtype=np.float64))):
            return
        where = self.network.first_nonfinite(x)
        what = "the loss" if not math.isfinite(loss) else "the gradients"
        if where is not None:
            place = f"first in the output of layer `{where}`"
        else:
            bad = [name for name, g in self.network.gradients().items() if not np.isfinite(g).all()]
            place = f"first in the gradient of `{bad[-1]}`" if bad else "in the loss"
        saved = self.out / checkpoint.FILENAME
        raise TrainingError(
            f"{what} became NaN or infinite at step {step} (epoch {progress.epoch + 1}, batch "
            f"{progress.batch_index + 1}), {place}; the weights were not updated"
            + (f" and the last good checkpoint {saved} is intact" if saved.exists() else "")
            + ". Try a smaller learning rate."
        )

    def evaluate(self, dataset: Dataset) -> tuple[float, float, np.ndarray]:
        return evaluate(self.network, dataset, self.norm, self.config.batch)

    def _plot(self, metrics_path: Path) -> None:
        try:
            notes = plot_curves(metrics_path, self.out / "curves.png")
            if not self.quiet:
                for note in notes:
                    self.log(note)
        except ImportError:
            if not self.quiet:
                self.log("(install matplotlib, `pip install cnnc[plot]`, for curves.png)")


def _iou_fields(part: str, confusion) -> dict:
    figures = metrics.summary(confusion)
    return {f"{part}_miou": figures["mean_iou"], f"{part}_iou": figures["per_class_iou"]}


def evaluate(network: Network, dataset: Dataset, norm, batch: int, mirrored: bool = False):
    """(mean loss, accuracy, confusion matrix[true, predicted]) over a dataset; for a map
    output the pixel accuracy and the confusion of pixels. `mirrored` (classifiers): each
    image's probabilities averaged with its left-right mirror's, the loss that of the mean."""
    if network.dense:
        return segmentation.evaluate_masks(network, dataset, norm, batch)
    classes = network.classes
    top = int(dataset.y.max())
    if top >= classes:
        raise DataError(
            f"{dataset.name}: labels go up to {top} but the network has {classes} outputs; "
            "evaluate on data with the classes it was trained on"
        )
    confusion = np.zeros((classes, classes), np.int64)
    loss_sum = 0.0
    for x, y in iter_batches(dataset, batch, norm=norm):
        if mirrored:
            p = network.probabilities(x, mirrored=True)
            loss_sum -= float(np.log(np.maximum(p[np.arange(len(y)), y], 1e-30)).sum())
            predicted = p.argmax(axis=1)
        else:
            batch_loss, _ = network.evaluate(x, y)
            loss_sum += batch_loss
            predicted = network.output().reshape(len(y), -1).argmax(axis=1)
        np.add.at(confusion, (y, predicted), 1)
    total = max(confusion.sum(), 1)
    return loss_sum / total, float(np.trace(confusion)) / total, confusion


def plot_curves(metrics_path: Path, png_path: Path) -> list[str]:
    """Draw the loss and accuracy curves; returns a note per metrics line it had to skip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records, notes = read_metrics(metrics_path)
    epochs = [r["epoch"] for r in records]
    panels = ["loss", "acc"] + (["miou"] if records and "val_miou" in records[0] else [])
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for key, axis in zip(panels, axes, strict=True):
        if key != "miou":  # mIoU is measured on validation only
            axis.plot(epochs, [r[f"train_{key}"] for r in records], "o-", label="train")
        held = [r for r in records if isinstance(r.get(f"val_{key}"), int | float)]
        if held:
            axis.plot([r["epoch"] for r in held], [r[f"val_{key}"] for r in held], "o-",
                      c="C1", label="validation")  # fmt: skip
        axis.set_xlabel("epoch")
        axis.set_ylabel({"loss": "cross-entropy", "acc": "accuracy", "miou": "mean IoU"}[key])
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    try:
        run_files.write_png(png_path, figure)
    finally:
        plt.close(figure)
    return notes
