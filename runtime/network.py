"""The Python API: a compiled spec with its arenas, for people who do not use the command line.

net = Network.from_file("specs/lenet5.cnn", batch=64)
probabilities = net.forward(x)                 # x: (n, 1, 28, 28) float32, n <= 64
loss, correct = net.loss_and_grad(x, labels)   # gradients land in net.gradients()
net.parameters()["conv1.weight"]               # a writable view into the parameter arena
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cnnc.compiler.check import Checked, check_file, require_loss_head
from cnnc.compiler.lower import Plan, lower
from cnnc.compiler.weights import initial as initial_weights

from . import executor, memory
from .dataset import IGNORED_LABEL
from .kernels.loss import count_correct, softmax_cross_entropy, softmax_cross_entropy_map
from .segmentation import is_map

IGNORE_INDEX = IGNORED_LABEL  # pixels no loss or metric counts (VOC, Cityscapes: 255)


class InputError(ValueError):
    """An array handed to a Network does not fit the plan it was compiled to."""


class Network:
    def __init__(self, checked: Checked, batch: int = 64, training: bool = True, seed: int = 0):
        if batch < 1:
            raise InputError(f"batch must be at least 1, not {batch}")
        if training:
            require_loss_head(checked)
        self.checked, self.batch, self.training = checked, batch, training
        self.plan: Plan = lower(checked, training=training)
        plan = self.plan
        memory.check_plan(plan, batch, numba.get_num_threads())  # refused, not died allocating
        self.rows = np.ascontiguousarray([s.row for s in plan.steps], dtype=np.int64)
        self.frows = np.ascontiguousarray([s.frow for s in plan.steps], dtype=np.float64)
        self.executor = executor.for_plan(plan)  # compiled for the kinds this plan uses
        self.threads = numba.get_num_threads()
        self.A = np.zeros(max(plan.arena_size * batch, 1), np.float32)
        self.P = np.zeros(max(plan.param_size, 1), np.float32)
        self.G = np.zeros_like(self.P)
        self.S = np.zeros(max(plan.state_size, 1), np.float32)
        self.W = np.zeros(max(plan.workspace * self.threads, 1), np.float32)
        self.steps_run = 0
        self._n, self._training = 0, training  # batch size and mode of the last forward pass
        self.set_loss()
        self.initialize(seed)

    @classmethod
    def from_file(
        cls,
        path: str,
        batch: int = 64,
        training: bool = True,
        seed: int = 0,
        input_shape: tuple[int, int, int] | None = None,
    ) -> Network:
        return cls(check_file(path, input_shape, verify_expects=False), batch, training, seed)

    # ---- parameters -----------------------------------------------------------------------

    def initialize(self, seed: int = 0) -> None:
        """PyTorch's default initialisation: compiler/weights.initial, shared with the exporters."""
        self.S[:] = 0.0
        self.load_state_dict(initial_weights(self.checked, seed, self.plan))

    @staticmethod
    def _view(arena: np.ndarray, entry) -> np.ndarray:
        return arena[entry.offset : entry.offset + math.prod(entry.shape)].reshape(entry.shape)

    def parameters(self) -> dict[str, np.ndarray]:
        """Name -> writable view into the parameter arena ("conv1.weight", "bn1.bias", ...)."""
        return {e.name: self._view(self.P, e) for e in self.plan.params}

    def gradients(self) -> dict[str, np.ndarray]:
        return {e.name: self._view(self.G, e) for e in self.plan.params}

    def buffers(self) -> dict[str, np.ndarray]:
        """BN running statistics, by name ("bn1.running_mean", ...)."""
        return {e.name: self._view(self.S, e) for e in self.plan.buffers}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: view.copy() for name, view in {**self.parameters(), **self.buffers()}.items()}

    def load_state_dict(self, tensors: dict[str, np.ndarray]) -> None:
        """Copy named tensors in; names and shapes must match (the first mismatch is named)."""
        own = {**self.parameters(), **self.buffers()}
        for name, view in own.items():
            if name not in tensors:
                raise InputError(f"the weights have no tensor `{name}` that this spec needs")
            if tuple(tensors[name].shape) != view.shape:
                raise InputError(
                    f"tensor `{name}` has shape {tuple(tensors[name].shape)} in the weights but "
                    f"{view.shape} in this spec"
                )
        extra = sorted(set(tensors) - set(own))
        if extra:
            raise InputError(f"the weights have a tensor `{extra[0]}` that this spec lacks")
        for name, view in own.items():
            view[...] = tensors[name]

    # ---- running ----------------------------------------------------------------------------

    @property
    def dense(self) -> bool:
        """Whether the output is a map (KxHxW, H*W > 1) scored per pixel, not one vector."""
        return is_map(self.plan.tensors[self.plan.logits].shape)

    @property
    def classes(self) -> int:
        """The class count: the output's length, or a map's channel count."""
        shape = self.plan.tensors[self.plan.logits].shape
        return shape[0] if self.dense else math.prod(shape)

    def set_loss(self, ignore_index: int = IGNORE_INDEX, class_weights=None) -> None:
        """The per-pixel loss of a map output: the label that no loss counts, and one weight per
        class (as F.cross_entropy's ignore_index and weight). Classification ignores both."""
        weights = np.ones(self.classes) if class_weights is None or len(class_weights) == 0 else (
            np.asarray(class_weights, dtype=np.float64)
        )
        if weights.shape != (self.classes,):
            raise InputError(
                f"{len(weights)} class weights given but the network has {self.classes} classes"
            )
        if not np.isfinite(weights).all() or weights.min() < 0 or weights.max() == 0:
            raise InputError("class weights must be finite, not negative and not all zero")
        self.ignore_index, self.class_weights = int(ignore_index), np.ascontiguousarray(weights)

    def _load_input(self, x) -> int:
        x = np.asarray(x)
        expected = self.plan.input_shape
        if x.ndim == len(expected):
            x = x[None]
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(expected):
            raise InputError(
                f"expected input of shape (n, {', '.join(map(str, expected))}), "
                f"got {tuple(x.shape)}"
            )
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise InputError(f"expected a float32 array, got dtype {x.dtype}")
        n = x.shape[0]
        if not 1 <= n <= self.batch:
            raise InputError(
                f"batch of {n} does not fit this network, built for 1..{self.batch}; "
                f"build it with batch={n} or more"
            )
        slot = self.plan.tensors[0]
        self._tensor(slot.offset, slot.shape, n)[...] = x
        return n

    def _tensor(self, offset: int, shape, n: int) -> np.ndarray:
        size = math.prod(shape)
        return self.A[offset * n : (offset + size) * n].reshape((n, *shape))

    def _labels(self, y, n: int) -> np.ndarray:
        if self.dense:
            return self._masks(y, n)
        y = np.ascontiguousarray(y, dtype=np.int64).reshape(-1)
        if y.shape[0] != n:
            raise InputError(f"{n} inputs but {y.shape[0]} labels")
        if n and (y.min() < 0 or y.max() >= self.classes):
            raise InputError(f"labels must be in 0..{self.classes - 1}, got {y.min()}..{y.max()}")
        return y

    def _masks(self, y, n: int) -> np.ndarray:
        """(n, H, W) integer class maps as one flat int64 array, checked against the output."""
        y = np.asarray(y)
        k, h, w = self.plan.tensors[self.plan.logits].shape
        if y.ndim != 3 or y.shape[0] != n or y.shape[1:] != (h, w):
            raise InputError(
                f"the output is a {k}x{h}x{w} map, so the labels must be ({n}, {h}, {w}) masks, "
                f"got shape {tuple(y.shape)}"
            )
        if y.dtype.kind not in "iub":
            raise InputError(f"masks must hold integer class indices, not {y.dtype}")
        y = np.ascontiguousarray(y, dtype=np.int64).reshape(-1)
        bad = (y < 0) | ((y >= k) & (y != self.ignore_index))
        if bad.any():
            value = int(y[bad][0])
            raise InputError(
                f"mask labels must be in 0..{k - 1} (or {self.ignore_index}, ignored), "
                f"found {value}"
            )
        return y

    def _map_loss(self, logits, labels, n: int, gradient: bool) -> tuple[float, float]:
        """(mean pixel loss, correct pixels in images' worth: pixel accuracy x n)."""
        k, h, w = logits.shape
        loss, correct, counted = softmax_cross_entropy_map(
            self.A,
            logits.offset,
            logits.grad_offset if gradient else -1,
            k,
            h * w,
            labels,
            self.class_weights,
            self.ignore_index,
            n,
        )
        return float(loss), (correct / counted * n if counted else 0.0)

    def _check_batch_statistics(self, n: int) -> None:
        """BN in training mode normalises each channel by its batch statistics; with a single
        value per channel the output is the bias and every gradient before it zero."""
        for step in self.plan.steps:
            shape = self.plan.tensors[step.output].shape
            if step.kind == "BN" and n * math.prod(shape[1:]) == 1:
                raise InputError(
                    f"{step.name}: BN in training mode needs more than one value per channel, "
                    f"but a batch of {n} gives it one (its input is {'x'.join(map(str, shape))}); "
                    "train with a batch of at least 2"
                )

    def forward(self, x, training: bool = False) -> np.ndarray | dict[str, np.ndarray]:
        """Run the network; returns a copy of the output, shape (n, *output_shape), or with
        several heads (`output a, b`) a dict of each head's copy by name, in the spec's order."""
        n = self._load_input(x)
        if training:
            self._check_batch_statistics(n)
        self.steps_run += 1
        self.executor.forward(
            self.rows, self.frows, self.A, self.P, self.G, self.S, self.W, n, training, self._seed()
        )
        self._n, self._training = n, training
        if len(self.plan.outputs) > 1:
            return self.outputs()
        out = self.plan.tensors[self.plan.output]
        return self._tensor(out.offset, out.shape, n).copy()

    def probabilities(self, x, mirrored: bool = False) -> np.ndarray:
        """Class probabilities (n, classes) of a classifier: its output if it ends in SOFTMAX,
        else the softmax of it. `mirrored`: the mean of the image's and its left-right mirror's
        (test-time augmentation, for nets trained with `flip`)."""
        if self.dense:
            raise InputError("class probabilities are for a classifier; this network outputs a map")
        scores = self._probabilities(self.forward(x))
        if mirrored:
            flipped = np.ascontiguousarray(np.asarray(x, np.float32)[..., ::-1])
            scores = (scores + self._probabilities(self.forward(flipped))) / 2
        return scores

    def _probabilities(self, output: np.ndarray) -> np.ndarray:
        scores = output.reshape(len(output), -1)
        if self.checked.output.node.kind == "SOFTMAX":
            return scores
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def outputs(self) -> dict[str, np.ndarray]:
        """A copy of every head of the last forward or evaluate call, by name."""
        heads = self.plan.outputs or (("output", self.plan.output),)
        return {
            name: self._tensor(t.offset, t.shape, self._n).copy()
            for name, index in heads
            for t in [self.plan.tensors[index]]
        }

    def _zero_head_grads(self, n: int) -> None:
        """The heads the loss does not read get a zero gradient (see Plan.zero_grads)."""
        for index in self.plan.zero_grads:
            slot = self.plan.tensors[index]
            self._tensor(slot.grad_offset, slot.shape, n)[...] = 0.0

    def backward(self, grad_output) -> None:
        """Backpropagate a gradient of the output (after forward(x, training=True)); parameter
        gradients are written (not accumulated) to gradients().

        With several heads, `grad_output` may be a dict of gradients by head name: the backward
        of a sum of per-head losses (a head left out contributes nothing)."""
        if not self.training:
            raise InputError("this network was built for inference; build it with training=True")
        n = self._n
        heads = self.plan.outputs or (("output", self.plan.output),)
        if isinstance(grad_output, dict):
            unknown = sorted(set(grad_output) - {name for name, _ in heads})
            if unknown:
                raise InputError(f"no head named {', '.join(map(repr, unknown))}; the heads are "
                                 f"{', '.join(name for name, _ in heads)}")  # fmt: skip
            given = {index: grad_output[name] for name, index in heads if name in grad_output}
        else:
            given = {self.plan.output: grad_output}
        grads = {}
        for index, value in given.items():
            slot = self.plan.tensors[index]
            grads[index] = grad = np.asarray(value, dtype=np.float32)
            if grad.shape != (n, *slot.shape):
                raise InputError(
                    f"expected a gradient of shape {(n, *slot.shape)}, got {grad.shape}"
                )
        if self.plan.logits != self.plan.output:
            # A final SOFTMAX accumulates into the logits' gradient, which loss_and_grad writes
            # whole and the lowered steps therefore never zero: zero it here.
            logits = self.plan.tensors[self.plan.logits]
            self._tensor(logits.grad_offset, logits.shape, n)[...] = 0.0
        for _, index in heads:  # the runtime writes every head's gradient first
            slot = self.plan.tensors[index]
            self._tensor(slot.grad_offset, slot.shape, n)[...] = grads.get(index, 0.0)
        self.G[:] = 0.0
        self.executor.backward(
            self.rows,
            self.frows,
            self.A,
            self.P,
            self.G,
            self.S,
            self.W,
            n,
            self._training,
            self._seed(),
            len(self.plan.steps) - 1,
        )

    def _seed(self) -> int:
        return (self.steps_run * 1_000_003) & 0x7FFFFFFF

    label_smoothing: float = 0.0  # the target is (1 - e) * onehot + e / classes in loss_and_grad

    def loss_and_grad(self, x, y) -> tuple[float, int]:
        """Forward in training mode, softmax cross-entropy against integer labels (smoothed by
        `self.label_smoothing`), backward. Returns (mean loss, correct predictions); parameter
        gradients are in gradients().

        A map output takes (n, H, W) masks and the per-pixel loss of `set_loss`; its "correct
        predictions" are the batch's pixel accuracy times n (a float)."""
        if not self.training:
            raise InputError("this network was built for inference; build it with training=True")
        n = self._load_input(x)
        labels = self._labels(y, n)
        self._check_batch_statistics(n)
        self.steps_run += 1
        plan = self.plan
        logits = plan.tensors[plan.logits]
        arenas = (self.A, self.P, self.G, self.S, self.W)
        seed = self._seed()
        self.executor.forward(self.rows, self.frows, *arenas, n, True, seed)
        if self.dense:
            loss, correct = self._map_loss(logits, labels, n, gradient=True)
        else:
            loss = softmax_cross_entropy(
                self.A,
                logits.offset,
                logits.grad_offset,
                self.classes,
                labels,
                n,
                float(self.label_smoothing),
            )
            correct = int(count_correct(self.A, logits.offset, self.classes, labels, n))
        self._zero_head_grads(n)
        self.G[:] = 0.0
        self.executor.backward(self.rows, self.frows, *arenas, n, True, seed, plan.backward_from)
        self._n = n
        return float(loss), correct

    def evaluate(self, x, y) -> tuple[float, int]:
        """Inference on one batch: (summed loss, correct predictions)."""
        n = self._load_input(x)
        labels = self._labels(y, n)
        logits = self.plan.tensors[self.plan.logits].offset
        arenas = (self.A, self.P, self.G, self.S, self.W)
        self.executor.forward(self.rows, self.frows, *arenas, n, False, 0)
        self._n = n
        if self.dense:
            loss, correct = self._map_loss(self.plan.tensors[self.plan.logits], labels, n, False)
            return loss * n, correct
        loss = softmax_cross_entropy(self.A, logits, -1, self.classes, labels, n) * n
        correct = count_correct(self.A, logits, self.classes, labels, n)
        return float(loss), int(correct)

    def output(self) -> np.ndarray:
        """A copy of the output of the last forward or evaluate call."""
        out = self.plan.tensors[self.plan.output]
        return self._tensor(out.offset, out.shape, self._n).copy()

    def first_nonfinite(self, x) -> str | None:
        """Run forward one step at a time and name the first layer whose output is not finite."""
        n = self._load_input(x)
        for number, step in enumerate(self.plan.steps):
            self.executor.forward_step(
                self.rows[number, 0],
                self.A,
                self.P,
                self.G,
                self.S,
                self.W,
                self.rows[number],
                self.frows[number],
                n,
                True,
                self._seed(),
            )
            slot = self.plan.tensors[step.output]
            if not np.isfinite(self._tensor(slot.offset, slot.shape, n)).all():
                return step.name
        return None
