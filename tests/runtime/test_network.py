"""Whole networks: the compiled plan against PyTorch (forward, loss and every parameter gradient),
finite-difference gradient checks on branchy graphs, and the API's errors."""

from pathlib import Path

import numpy as np
import pytest

from cnnc.compiler.check import check
from cnnc.compiler.expand import expand
from cnnc.compiler.syntax import parse
from cnnc.runtime.network import InputError, Network

SPECS = Path(__file__).parents[2] / "specs"

BRANCHY = {
    "residual_bn": """input 3x8x8
        CONV 8@3x3 p1 -> BN -> RELU -> a
        a -> CONV 8@3x3 p1 nobias -> BN -> RELU -> CONV 8@3x3 p1 nobias -> BN -> b
        a -> CONV 8@1x1 nobias -> BN -> short
        ADD(b, short) -> RELU -> POOL avg global -> FC 5 -> SOFTMAX""",
    "concat_depthwise_deconv": """input 4x9x9
        CONV 8@3x3 p1 -> LEAKYRELU 0.1 -> a
        a -> CONV 3x3 dw p1 -> ELU -> b
        a -> POOL max 3x3 s2 p1 ceil -> DECONV 6@3x3 s2 p1 -> TANH -> c
        CONCAT(a, b, c) -> CONV 4@1x1 -> SIGMOID -> FC 6 -> SOFTMAX""",
    "unet_like": """input 2x8x8
        CONV 4@3x3 p1 -> RELU -> e1
        e1 -> POOL max 2x2 -> CONV 8@3x3 p1 dilation=1 -> RELU -> UPSAMPLE 2 -> u
        CONCAT(u, e1) -> CONV 4@3x3 p2 d2 g2 -> LRN 3 alpha=0.01 beta=0.75 k=2 -> FC 3""",
    "pools_and_strides": """input 3x11x13
        CONV 6@3x5 s2x1 p1x2 -> RELU -> POOL avg 3x3 s2 p1 ceil
        -> POOL sum 2x2 s1 -> CONV 6@2x2 s2 g3 -> FLATTEN -> BN -> FC 7 -> SOFTMAX""",
    "avg_exclude_pad_and_outpad": """input 2x7x7
        POOL avg 3x3 s2 p1 exclude_pad -> DECONV 3@3x3 s2 p1 op1 -> RELU
        -> POOL max 2x2 s2 p1 -> FC 4 -> SOFTMAX""",
}


def build(text: str, batch: int, training: bool = True, seed: int = 1):
    checked = check(expand(parse(text)), verify_expects=False)
    return checked, Network(checked, batch=batch, training=training, seed=seed)


def relative_error(actual, expected, floor: float = 1e-12) -> float:
    """Largest difference relative to the reference's magnitude (at least `floor`: a gradient that
    is zero in exact arithmetic, such as a bias before BN, is float32 rounding noise here)."""
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), floor))


def compare_with_torch(text: str, batch: int = 3, tolerance: float = 1e-4):
    torch = pytest.importorskip("torch")
    from cnnc.runtime import to_torch

    checked, net = build(text, batch)
    module = to_torch.build(checked, net).double()
    rng = np.random.default_rng(7)
    x = rng.standard_normal((batch, *checked.graph.input_shape)).astype(np.float32)
    if net.dense:  # a map: per-pixel labels, one column of them ignored
        y = rng.integers(0, net.classes, (batch, *checked.output.shape[1:]))
        y[..., 0] = 255
    else:
        y = rng.integers(0, net.classes, batch)

    module.eval()
    expected = module(torch.from_numpy(x).double()).detach().numpy()
    assert relative_error(net.forward(x), expected) < tolerance

    loss, _ = net.loss_and_grad(x, y)
    module.train()
    output = module(torch.from_numpy(x).double())
    output = output if net.dense else output.reshape(batch, -1)
    labels = torch.from_numpy(y)
    if checked.output.node.kind == "SOFTMAX":
        reference = torch.nn.functional.nll_loss(torch.log(output), labels, ignore_index=255)
    else:
        reference = torch.nn.functional.cross_entropy(output, labels, ignore_index=255)
    reference.backward()
    assert loss == pytest.approx(reference.item(), rel=tolerance)
    expected_grads = to_torch.gradients(module, checked)
    for name, grad in net.gradients().items():
        assert relative_error(grad, expected_grads[name], 1e-2) < tolerance, name
    for name, value in net.buffers().items():  # BN running statistics after one training step
        layer, _, role = name.rpartition(".")
        owner = module.layers[layer.replace(".", "__")]
        assert relative_error(value, getattr(owner, role).detach().numpy()) < tolerance, name


@pytest.mark.parametrize("name", sorted(BRANCHY))
def test_branchy_graphs_match_torch(name):
    compare_with_torch(BRANCHY[name])


SMALL_ZOO = ["lenet5", "lenet5_classic", "cifar_net", "resnet_cifar", "fashion_small", "unet_small"]


@pytest.mark.parametrize("name", SMALL_ZOO)
def test_small_zoo_specs_match_torch(name):
    path = SPECS / f"{name}.cnn"
    if not path.exists():
        pytest.skip(f"{path.name} is not in the zoo")
    text = path.read_text().replace("DROPOUT", "DROPOUT 0.0 #")  # masks are not comparable
    compare_with_torch(text, batch=2)


def random_spec(rng: np.random.Generator) -> str:
    """A random chain of layers that usually shape-checks (the caller skips those that don't)."""
    c, size = int(rng.integers(1, 4)), int(rng.integers(6, 12))
    lines = [f"input {c}x{size}x{size}"]
    links = []
    for _ in range(int(rng.integers(2, 6))):
        choice = rng.integers(0, 6)
        if choice == 0:
            k = int(rng.integers(1, 4))
            links.append(
                f"CONV {int(rng.integers(1, 6))}@{k}x{k} s{int(rng.integers(1, 3))} "
                f"p{int(rng.integers(0, k))}"
            )
        elif choice == 1:
            links.append(
                f"POOL {rng.choice(['max', 'avg'])} 2x2 s{int(rng.integers(1, 3))}"
                + (" ceil" if rng.random() < 0.5 else "")
            )
        elif choice == 2:
            links.append(str(rng.choice(["RELU", "TANH", "SIGMOID", "ELU", "LEAKYRELU 0.2"])))
        elif choice == 3:
            links.append("BN")
        elif choice == 4:
            links.append(f"DECONV {int(rng.integers(1, 4))}@2x2 s2")
        else:
            links.append("CONV 3x3 dw p1")
    links.append(f"FC {int(rng.integers(2, 6))}")
    return "\n".join(lines + [" -> ".join(links)])


@pytest.mark.parametrize("seed", range(12))
def test_random_small_specs_match_torch(seed):
    from cnnc.compiler.errors import SpecError

    text = random_spec(np.random.default_rng(seed))
    try:
        check(expand(parse(text)), verify_expects=False)
    except SpecError:
        pytest.skip("this random spec does not shape-check")
    compare_with_torch(text)


@pytest.mark.parametrize("name", ["residual_bn", "concat_depthwise_deconv", "unet_like"])
def test_gradients_match_finite_differences(name):
    """Central differences of the loss on the float32 network, at the largest gradients."""
    checked, net = build(BRANCHY[name], batch=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, *checked.graph.input_shape)).astype(np.float32)
    y = rng.integers(0, net.classes, 2)
    net.loss_and_grad(x, y)
    analytic = net.G.copy()
    for index in np.argsort(-np.abs(analytic))[:6]:
        original = net.P[index]
        step = 1e-2 * max(1.0, abs(float(original)))
        net.P[index] = original + step
        plus, _ = net.loss_and_grad(x, y)
        net.P[index] = original - step
        minus, _ = net.loss_and_grad(x, y)
        net.P[index] = original
        numeric = (plus - minus) / (2 * step)
        assert numeric == pytest.approx(analytic[index], rel=3e-2, abs=1e-4)


def test_backward_of_any_output_gradient():
    checked, net = build("input 1x6x6\nCONV 2@3x3 -> RELU -> UPSAMPLE 2", batch=2)
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    out = net.forward(x, training=True)
    net.backward(np.ones_like(out))
    assert np.abs(net.gradients()["conv1.weight"]).sum() > 0


def test_parameters_are_named_views():
    _, net = build("input 1x4x4\nCONV 2@3x3 -> FC 3 -> SOFTMAX", batch=1)
    params = net.parameters()
    assert set(params) == {"conv1.weight", "conv1.bias", "fc1.weight", "fc1.bias"}
    params["fc1.bias"][:] = [0.0, 0.0, 100.0]
    assert net.forward(np.zeros((1, 1, 4, 4), np.float32))[0].argmax() == 2


def test_clear_errors_for_bad_inputs():
    _, net = build("input 1x4x4\nCONV 2@3x3 -> FC 3 -> SOFTMAX", batch=2)
    with pytest.raises(InputError, match=r"expected input of shape \(n, 1, 4, 4\)"):
        net.forward(np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(InputError, match="built for 1..2"):
        net.forward(np.zeros((3, 1, 4, 4), np.float32))
    with pytest.raises(InputError, match="float32"):
        net.forward(np.full((1, 1, 4, 4), "a"))
    with pytest.raises(InputError, match="labels must be in 0..2"):
        net.loss_and_grad(np.zeros((2, 1, 4, 4), np.float32), [0, 5])
    _, inference = build("input 1x4x4\nFC 3", batch=1, training=False)
    with pytest.raises(InputError, match="inference"):
        inference.loss_and_grad(np.zeros((1, 1, 4, 4), np.float32), [0])


def test_one_plan_serves_every_batch_size_up_to_its_maximum():
    checked, net = build(BRANCHY["residual_bn"], batch=5, training=False)
    x = np.random.default_rng(1).standard_normal((5, 3, 8, 8)).astype(np.float32)
    full = net.forward(x)
    for n in (1, 2, 4):
        assert np.allclose(net.forward(x[:n]), full[:n], atol=1e-6)
