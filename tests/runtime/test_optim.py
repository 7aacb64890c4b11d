"""Tests for cnnc.runtime.optim and the learning-rate schedules: every update rule, step by step,
against torch.optim with the same hyperparameters, and each schedule against its
torch.optim.lr_scheduler counterpart. The comparisons with torch are skipped without it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnnc.compiler.training import TrainConfig
from cnnc.runtime.optim import Optimizer, OptimizerConfig
from cnnc.runtime.train import learning_rate, optimizer_config

SIZE = 257  # odd, so no chunking of the prange loop lines up with it
STEPS = 5
RTOL = 1e-6

CASES = {
    "sgd": dict(name="sgd", lr=0.1, momentum=0.0),
    "sgd_momentum": dict(name="sgd", lr=0.1, momentum=0.9),
    "sgd_nesterov": dict(name="sgd", lr=0.1, momentum=0.9, nesterov=True),
    "adam": dict(name="adam", lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6),
    "adamw": dict(name="adamw", lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6),
}


def torch_optimizer(torch, config: OptimizerConfig, parameter):
    if config.name == "sgd":
        return torch.optim.SGD(
            [parameter],
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    kind = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return kind(
        [parameter],
        lr=config.lr,
        betas=(config.beta1, config.beta2),
        eps=config.eps,
        weight_decay=config.weight_decay,
    )


def torch_state(config: OptimizerConfig, optimizer, parameter) -> dict[str, np.ndarray]:
    """torch's state under cnnc's slot names (what a checkpoint stores)."""
    state = optimizer.state[parameter]
    if config.name == "sgd":
        return {"slot0": state["momentum_buffer"].numpy()} if config.momentum else {}
    return {"slot0": state["exp_avg"].numpy(), "slot1": state["exp_avg_sq"].numpy()}


def assert_close(actual, expected, what: str):
    scale = max(float(np.abs(expected).max()), 1e-30)
    error = float(np.abs(actual.astype(np.float64) - expected).max()) / scale
    assert error < RTOL, f"{what}: relative error {error:.2e}"


def run_both(config: OptimizerConfig, rates: list[float], seed: int = 0):
    """Step cnnc's optimizer and torch's on the same random parameters and gradients, comparing
    the parameters and the state after every step."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    P = rng.standard_normal(SIZE).astype(np.float32)
    parameter = torch.nn.Parameter(torch.from_numpy(P.copy()))
    reference = torch_optimizer(torch, config, parameter)
    ours = Optimizer(config, SIZE)
    for step, lr in enumerate(rates, 1):
        G = rng.standard_normal(SIZE).astype(np.float32)
        for group in reference.param_groups:
            group["lr"] = lr
        parameter.grad = torch.from_numpy(G.copy())
        reference.step()
        ours.step(P, G, lr)
        assert ours.steps == step
        assert_close(P, parameter.detach().numpy(), f"parameters after step {step}")
        expected_state = torch_state(config, reference, parameter)
        for name, value in expected_state.items():
            assert_close(ours.state[name], value, f"{name} after step {step}")
    return P, ours


@pytest.mark.parametrize("weight_decay", [0.0, 0.05], ids=["no_decay", "decay"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_update_matches_torch_step_by_step(case, weight_decay):
    config = OptimizerConfig(**CASES[case], weight_decay=weight_decay)
    run_both(config, [config.lr] * STEPS)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_learning_rate_that_changes_every_step_matches_torch(case):
    config = OptimizerConfig(**CASES[case], weight_decay=0.01)
    run_both(config, [config.lr * f for f in (1.0, 0.5, 2.0, 0.1, 0.0)], seed=1)


def test_adamw_decays_the_weights_and_adam_the_gradient():
    """With a zero gradient Adam's L2 term moves the weight by about lr per step whatever its size
    (the update is normalised); AdamW shrinks it by the factor 1 - lr * weight_decay."""
    P0 = np.full(SIZE, 2.0, np.float32)
    zero = np.zeros(SIZE, np.float32)
    coupled, decoupled = P0.copy(), P0.copy()
    Optimizer(OptimizerConfig("adam", lr=0.01, weight_decay=0.1), SIZE).step(coupled, zero, 0.01)
    Optimizer(OptimizerConfig("adamw", lr=0.01, weight_decay=0.1), SIZE).step(decoupled, zero, 0.01)
    assert coupled == pytest.approx(np.full(SIZE, 2.0 - 0.01), rel=1e-6)
    assert decoupled == pytest.approx(np.full(SIZE, 2.0 * (1 - 0.01 * 0.1)), rel=1e-6)


def test_state_has_the_slots_a_checkpoint_stores():
    assert set(Optimizer(OptimizerConfig("sgd", momentum=0.9), 4).state) == {"slot0"}
    assert set(Optimizer(OptimizerConfig("adam"), 4).state) == {"slot0", "slot1"}
    plain = Optimizer(OptimizerConfig("sgd", momentum=0.0), 4)
    assert OptimizerConfig("sgd", momentum=0.0).slots == 0
    P = np.ones(4, np.float32)
    plain.step(P, np.ones(4, np.float32), 0.5)
    assert np.array_equal(P, np.full(4, 0.5, np.float32))
    assert not plain.state["slot0"].any()  # allocated but never used without momentum


def test_the_trainer_passes_every_setting_to_the_optimizer():
    config = TrainConfig(
        optimizer="adamw",
        lr=0.3,
        momentum=0.7,
        nesterov=True,
        weight_decay=0.2,
        beta1=0.5,
        beta2=0.6,
        eps=1e-3,
    )
    assert optimizer_config(config) == OptimizerConfig("adamw", 0.3, 0.7, True, 0.2, 0.5, 0.6, 1e-3)


# ---- schedules ---------------------------------------------------------------------------------

BATCHES = 7  # steps per epoch


def schedule_config(**changes) -> TrainConfig:
    return TrainConfig(**{"lr": 0.2, "epochs": 5, **changes})


def torch_rates(scheduler: str, options: dict, per_batch: bool, lr: float, epochs: int):
    """The learning rate torch uses at every training step of `epochs` epochs."""
    torch = pytest.importorskip("torch")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = getattr(torch.optim.lr_scheduler, scheduler)(optimizer, **options)
    rates = []
    for _ in range(epochs):
        for _ in range(BATCHES):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if per_batch:
                scheduler.step()
        if not per_batch:
            scheduler.step()
    return rates


def our_rates(config: TrainConfig) -> list[float]:
    return [
        learning_rate(config, epoch, index, BATCHES)
        for epoch in range(config.epochs)
        for index in range(BATCHES)
    ]


def test_constant_schedule_matches_torch_constant():
    config = schedule_config(schedule="constant")
    expected = torch_rates("LambdaLR", {"lr_lambda": lambda _: 1.0}, False, 0.2, 5)
    assert our_rates(config) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("step", "gamma"), [(2, 0.5), (1, 0.1), (3, 0.3)])
def test_step_schedule_matches_torch_steplr_stepped_per_epoch(step, gamma):
    config = schedule_config(schedule="step", step=step, gamma=gamma)
    expected = torch_rates("StepLR", {"step_size": step, "gamma": gamma}, False, 0.2, 5)
    assert our_rates(config) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("epochs", [1, 3, 5])
def test_cosine_schedule_matches_torch_cosine_annealing_stepped_per_batch(epochs):
    config = schedule_config(schedule="cosine", epochs=epochs)
    expected = torch_rates("CosineAnnealingLR", {"T_max": epochs * BATCHES}, True, 0.2, epochs)
    assert our_rates(config) == pytest.approx(expected, rel=1e-6, abs=1e-12)
    assert our_rates(config)[0] == 0.2
    last = our_rates(config)[-1]  # one step short of zero
    assert last == pytest.approx(0.1 * (1 + math.cos(math.pi * (1 - 1 / (epochs * BATCHES)))))


def test_a_schedule_drives_the_optimizer_like_a_torch_scheduler():
    """Adam under the cosine schedule, against torch.optim.Adam under CosineAnnealingLR."""
    config = schedule_config(schedule="cosine", epochs=1, lr=0.05)
    rates = our_rates(config)
    expected = torch_rates("CosineAnnealingLR", {"T_max": BATCHES}, True, 0.05, 1)
    assert rates == pytest.approx(expected, rel=1e-6, abs=1e-12)
    run_both(OptimizerConfig("adam", lr=0.05, weight_decay=0.01), rates, seed=2)


def test_sgd_in_chunks_equals_the_serial_loop():
    from cnnc.runtime import optim

    rng = np.random.default_rng(3)
    size = (1 << 18) + 3
    P, G = rng.standard_normal((2, size)).astype(np.float32)
    V = rng.standard_normal(size).astype(np.float32)
    serial, chunked = (P.copy(), V.copy()), (P.copy(), V.copy())
    optim._sgd_chunks(1, (serial[0], G, serial[1], 0.1, 0.9, 1e-4, True))
    optim._sgd_chunks(3, (chunked[0], G, chunked[1], 0.1, 0.9, 1e-4, True))
    np.testing.assert_array_equal(serial[0], chunked[0])
    np.testing.assert_array_equal(serial[1], chunked[1])


def test_a_momentum_with_no_gradient_decays_to_zero_not_into_denormals():
    optimizer = Optimizer(OptimizerConfig("sgd", lr=0.1, momentum=0.5), 4)
    optimizer.state["slot0"][:] = 1e-29
    P, G = np.ones(4, np.float32), np.zeros(4, np.float32)
    for _ in range(3):
        optimizer.step(P, G, 0.1)
    assert np.all(optimizer.state["slot0"] == np.float32(1e-29) / 8)  # above the flush bound
    for _ in range(200):  # without the flush: 1e-29 * 0.5**100 is a float32 denormal
        optimizer.step(P, G, 0.1)
        assert np.all((optimizer.state["slot0"] == 0) | (optimizer.state["slot0"] >= 1e-30))
    assert np.all(optimizer.state["slot0"] == 0)
