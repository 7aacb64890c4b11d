"""Optimizers over the flat parameter arena, with PyTorch's update rules.

Each update is one compiled pass over the arena; the optimizer state is one or two arrays of the
arena's size, so a checkpoint stores it as plain tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .kernels.common import U, chunk, nchunks, parallel_chunks
from .kernels.config import JIT

# A momentum buffer whose gradient stays zero decays geometrically into float32 denormals,
# where every operation takes ~100x longer (measured: a LeNet-5 batch-1 step 150 -> 413 us).
# Below this magnitude it is set to zero; its contribution to a weight is below 1e-30 * lr.
_FLUSH = np.float32(1e-30)
_FLOPS = 4  # per parameter, roughly: what nchunks weighs against SERIAL_WORK


@njit(**JIT)
def _sgd_chunk(c, nch, P, G, V, lr, momentum, weight_decay, nesterov):
    """Float32 arithmetic, as torch's, on unsigned indices, so the loop vectorises."""
    lo, hi = chunk(c, nch, P.shape[0])
    lr, momentum, weight_decay = np.float32(lr), np.float32(momentum), np.float32(weight_decay)
    if momentum == 0.0:
        for i in range(U(lo), U(hi)):
            P[i] -= lr * (G[i] + weight_decay * P[i])
        return
    for i in range(U(lo), U(hi)):
        g = G[i] + weight_decay * P[i]
        v = momentum * V[i] + g
        v = v if abs(v) >= _FLUSH else np.float32(0.0)
        V[i] = v
        P[i] -= lr * (g + momentum * v if nesterov else v)


_sgd_chunks = parallel_chunks("sgd_chunks", _sgd_chunk)


@njit(**JIT)
def sgd_update(P, G, V, lr, momentum, weight_decay, nesterov):
    """torch.optim.SGD (dampening 0): the momentum buffer starts at the first gradient."""
    size = P.shape[0]
    _sgd_chunks(nchunks(_FLOPS * size, size), (P, G, V, lr, momentum, weight_decay, nesterov))


@njit(**JIT)
def _adam_chunk(c, nch, P, G, M, V, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """Float32 arithmetic, as torch's, on unsigned indices; moments below 1e-30 (M) and 1e-38
    (V, a square) flushed to zero, as the momentum in _sgd_chunk."""
    lo, hi = chunk(c, nch, P.shape[0])
    correction1 = np.float32(1.0 - beta1**step)
    root2 = np.float32(np.sqrt(1.0 - beta2**step))
    step_size = np.float32(lr) / correction1
    # torch's order: m.lerp_(g, 1 - b1); v.mul_(b2).addcmul_(g, g, value=1 - b2), each weight
    # rounded from float64 once
    w1, b2, w2 = np.float32(1.0 - beta1), np.float32(beta2), np.float32(1.0 - beta2)
    e = np.float32(eps)
    decay = np.float32(1.0 - lr * weight_decay) if decoupled else np.float32(1.0)
    coupled = np.float32(0.0) if decoupled else np.float32(weight_decay)
    zero, tiny = np.float32(0.0), np.float32(1e-38)
    for i in range(U(lo), U(hi)):
        p = P[i] * decay
        g = G[i] + coupled * p
        m = M[i] + w1 * (g - M[i])
        v = V[i] * b2 + w2 * g * g
        m = m if abs(m) >= _FLUSH else zero
        v = v if v >= tiny else zero
        M[i], V[i] = m, v
        P[i] = p - step_size * (m / (np.sqrt(v) / root2 + e))


_adam_chunks = parallel_chunks("adam_chunks", _adam_chunk)


@njit(**JIT)
def adam_update(P, G, M, V, lr, beta1, beta2, eps, weight_decay, decoupled, step):
    """torch.optim.Adam, or AdamW when `decoupled` (weight decay applied to the weights)."""
    size = P.shape[0]
    args = (P, G, M, V, lr, beta1, beta2, eps, weight_decay, decoupled, step)
    _adam_chunks(nchunks(2 * _FLOPS * size, size), args)


@dataclass(frozen=True)
class OptimizerConfig:
    name: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    @property
    def slots(self) -> int:
        if self.name == "sgd":
            return 1 if self.momentum else 0
        return 2


class Optimizer:
    """Holds the state arrays of one optimizer over a parameter arena of `size` floats."""

    def __init__(self, config: OptimizerConfig, size: int):
        self.config = config
        self.state = {f"slot{i}": np.zeros(size, np.float32) for i in range(max(config.slots, 1))}
        self.steps = 0

    def step(self, P: np.ndarray, G: np.ndarray, lr: float) -> None:
        c = self.config
        self.steps += 1
        if c.name == "sgd":
            sgd_update(P, G, self.state["slot0"], lr, c.momentum, c.weight_decay, c.nesterov)
        else:
            adam_update(
                P,
                G,
                self.state["slot0"],
                self.state["slot1"],
                lr,
                c.beta1,
                c.beta2,
                c.eps,
                c.weight_decay,
                c.name == "adamw",
                self.steps,
            )
