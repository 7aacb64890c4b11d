"""The model zoo in specs/: every spec checks (its own `expect` lines included), and the
published figures below are checked independently, so an `expect` line edited to follow a
regression still fails here.

Figures: torchvision's weights tables (params; MACs = its GFLOPS column, which counts
multiply-accumulates) for the ImageNet nets; the arithmetic in each spec's header comment for
the small nets, cross-checked against equivalent PyTorch modules. MACs follow cnnc's
convention: conv = output elements x (in channels / groups) x kh x kw, transposed conv = input
elements x (out channels / groups) x kh x kw, FC = in x out, everything else 0.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from cnnc.compiler.check import Checked, check_file
from cnnc.compiler.errors import SpecError
from cnnc.compiler.training import train_config

SPECS = Path(__file__).parents[2] / "specs"
ALL_SPECS = sorted(p.stem for p in SPECS.glob("*.cnn"))

# name: (params, MACs, output shape)
PUBLISHED: dict[str, tuple[int, int, tuple[int, ...]]] = {
    "lenet5": (61_706, 416_520, (10,)),
    "lenet5_classic": (61_706, 416_520, (10,)),
    "alexnet": (61_100_840, 714_188_480, (1000,)),
    "vgg16": (138_357_544, 15_470_264_320, (1000,)),
    "vgg16_bn": (138_365_992, 15_470_264_320, (1000,)),
    "resnet18": (11_689_512, 1_814_073_344, (1000,)),
    "resnet50": (25_557_032, 4_089_184_256, (1000,)),
    "googlenet": (6_624_904, 1_498_376_192, (1000,)),
    "densenet121": (7_978_856, 2_834_161_664, (1000,)),
    "mobilenet_v2": (3_504_872, 300_774_272, (1000,)),
    "squeezenet1_1": (1_235_496, 349_151_936, (1000,)),
    "unet_small": (29_330, 25_001_984, (2, 64, 64)),
    "cifar_net": (1_116_970, 25_528_832, (10,)),
    "resnet_cifar": (78_042, 12_501_632, (10,)),
    "fashion_small": (65_834, 18_289_792, (10,)),
    # issue 9: torchvision, weights=None, at 3x224x224; MACs of the conv and FC layers
    "efficientnet_b0": (5_288_548, 385_814_752, (1000,)),
    "mobilenet_v3_small": (2_542_856, 56_510_400, (1000,)),
    "mobilenet_v3_large": (5_483_032, 216_589_760, (1000,)),
    "regnet_y_400mf": (4_344_144, 401_842_848, (1000,)),
    "shufflenet_v2_x1_0": (2_278_604, 144_907_992, (1000,)),
    "convnext_tiny": (28_589_128, 4_455_531_264, (1000,)),
    "deeplabv3_resnet50": (39_638_869, 31_310_548_992, (21, 224, 224)),
}

# named tensors whose shapes are part of the published description
TENSORS: dict[str, dict[str, tuple[int, ...]]] = {
    "unet_small": {"e1": (8, 64, 64), "e2": (16, 32, 32)},
}


@cache
def checked(name: str, verify_expects: bool = True) -> Checked:
    path = SPECS / f"{name}.cnn"
    try:
        return check_file(str(path), verify_expects=verify_expects)
    except SpecError as error:
        pytest.fail(error.render(path.read_text()), pytrace=False)


@pytest.mark.parametrize("name", ALL_SPECS)
def test_spec_checks_with_its_expectations(name):
    assert checked(name).graph.expects, f"specs/{name}.cnn has no `expect` lines"


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_figures(name):
    assert (SPECS / f"{name}.cnn").exists(), f"specs/{name}.cnn is missing"
    spec = checked(name, verify_expects=False)
    params, macs, output = PUBLISHED[name]
    assert (spec.params, spec.macs, spec.output.shape) == (params, macs, output)


@pytest.mark.parametrize("name", sorted(TENSORS))
def test_named_tensor_shapes(name):
    spec = checked(name, verify_expects=False)
    tensors = spec.graph.tensors
    shapes = {t: spec.layers[tensors[t]].shape for t in TENSORS[name] if t in tensors}
    assert shapes == TENSORS[name]


def test_fashion_small_fits_its_budget_and_carries_its_training():
    spec = checked("fashion_small")
    assert spec.params <= 100_000
    config = train_config(spec.graph.train)
    assert (config["optimizer"], config["schedule"], config["epochs"], config["batch"]) == (
        "sgd",
        "cosine",
        15,
        128,
    )


def test_yolov5s_has_ultralytics_params_and_three_detect_heads():
    # Ultralytics' yolov5s.yaml (v6.0+, 80 classes) at 3x640x640: 7,235,389 params; Detect heads
    # of 3 anchors x 85 at strides 8, 16 and 32
    spec = checked("yolov5s", verify_expects=False)
    heads = {name: layer.shape for name, layer in spec.outputs}
    assert spec.params == 7_235_389
    assert heads == {"p3": (255, 80, 80), "p4": (255, 40, 40), "p5": (255, 20, 20)}
