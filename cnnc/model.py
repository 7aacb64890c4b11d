"""A trained model from a run folder: `cnnc.load("runs/lenet5")` -> Model.

The run folder holds everything needed: `spec.cnn` (the spec trained), `best.safetensors` (the
epoch the monitored metric chose; `checkpoint.safetensors`, the last epoch, when there is no
best) with its normalisation statistics, class names and input size in the metadata.

    model = cnnc.load("runs/lenet5")
    probabilities = model.predict(images)   # (N, classes); images: arrays or PIL images
    model.classes[probabilities.argmax(1)[0]]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnc.compiler.files import UsageError

BEST, LAST, SPEC = "best.safetensors", "checkpoint.safetensors", "spec.cnn"


def run_paths(path: str | Path, weights: str | Path | None = None) -> tuple[Path, Path]:
    """(spec, weights) of a run folder or of a checkpoint file inside one; the best epoch's
    weights unless `weights` names others."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if weights is None and path.is_file():
        weights = path
    elif weights is None:
        weights = folder / BEST if (folder / BEST).is_file() else folder / LAST
    spec = folder / SPEC
    if not spec.is_file() or spec.is_symlink():
        raise UsageError(f"{folder}: not a run folder (no {SPEC}); give the spec too")
    if not Path(weights).is_file():
        raise UsageError(f"{folder}: holds no checkpoint ({BEST} or {LAST})")
    return spec, Path(weights)


def is_run(path: str | Path) -> bool:
    path = Path(path)
    return (path.is_dir() and (path / SPEC).is_file()) or path.suffix == ".safetensors"


class Model:
    """A network in inference mode with its weights, normalisation and class names."""

    def __init__(self, spec: str | Path, weights: str | Path, batch: int = 64):
        from cnnc.compiler.files import load as load_spec
        from cnnc.runtime.network import Network
        from cnnc.runtime.train import load_weights

        self.spec_path, self.weights_path = Path(spec), Path(weights)
        input_shape, classes = adapted_as_trained(weights)
        self.checked = load_spec(spec, input_shape, verify_expects=False, classes=classes)
        self.network = Network(self.checked, batch=batch, training=False)
        meta = load_weights(self.network, weights)
        self.meta = meta
        self.normalization = meta.get("normalization")
        count = self.network.classes
        names = list(meta.get("classes") or [])
        self.classes = names if len(names) == count else [str(i) for i in range(count)]
        self.input_shape = tuple(self.checked.graph.input_shape)
        self.batch = batch

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        return (
            f"Model({self.checked.graph.name}, input {shape}, {len(self.classes)} classes, "
            f"weights {self.weights_path})"
        )

    def predict(self, images, tta: bool = False) -> np.ndarray:
        """Class probabilities, (N, classes), for images given as PIL images, a list of them,
        uint8 (0..255) or float (0..1) arrays (N, C, H, W), (C, H, W), (H, W) or (N, H, W)
        for grey, or (H, W, 3) for one RGB image. The training normalisation is applied.
        `tta`: average each image's probabilities with its left-right mirror's."""
        from cnnc.runtime.batches import normalize

        x = self._as_batch(images)
        out = np.empty((len(x), len(self.classes)), np.float32)
        for start in range(0, len(x), self.batch):
            chunk = normalize(x[start : start + self.batch], self.normalization)
            out[start : start + len(chunk)] = self.network.probabilities(chunk, mirrored=tta)
        return out

    def _as_batch(self, images) -> np.ndarray:
        c, h, w = self.input_shape
        if _is_pil(images):
            images = [images]
        if isinstance(images, list | tuple) and images and _is_pil(images[0]):
            from cnnc.runtime.images import image_to_array

            return np.stack([image_to_array(img, self.input_shape) for img in images])
        x = np.asarray(images)
        if x.dtype != np.uint8:
            x = x.astype(np.float32)
        if x.ndim == 3 and x.shape[-1] == 3 and c == 3 and x.shape[0] != 3:
            x = x.transpose(2, 0, 1)  # one channels-last RGB image
        if x.ndim == 2 or (x.ndim == 3 and c == 1 and x.shape != (c, h, w)):
            x = x[..., None, :, :] if x.ndim == 3 else x[None]
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1:] != (c, h, w):
            raise ValueError(
                f"images of shape {tuple(np.shape(images))} do not fit this model's input "
                f"{c}x{h}x{w}; give (N, {c}, {h}, {w}) arrays or PIL images (resized for you)"
            )
        return x


def _is_pil(value) -> bool:
    return type(value).__module__.startswith("PIL.")


def adapted_as_trained(weights) -> tuple[tuple[int, int, int] | None, int | None]:
    """The input size and class count a run was trained at when `cnnc train --input` or
    `--classes` changed the spec's (None: the spec's own)."""
    from cnnc.runtime import checkpoint

    run = checkpoint.load(weights)[1].get("run") or {}
    shape = run.get("input")
    return (tuple(shape) if shape else None), run.get("classes")


def load(path: str | Path, batch: int = 64) -> Model:
    """The model of a run folder (its best checkpoint) or of one checkpoint file in it."""
    spec, weights = run_paths(path)
    return Model(spec, weights, batch)
