"""Dense prediction end to end: a tiny U-Net learns the bundled segmentation sample, mask data
is checked against the output, and eval/predict report IoU and write mask pictures."""

import json

import numpy as np
import pytest

from cnnc.cli import main
from cnnc.runtime import metrics
from cnnc.runtime.dataset import DataError, Dataset, limit
from cnnc.runtime.network import InputError, Network
from cnnc.runtime.segmentation import check_targets, overlay, palette
from cnnc.runtime.sources import load_data
from cnnc.runtime.train import TrainConfig, Trainer

TINY_UNET = """network tiny_unet
input 1x64x64
CONV 4@3x3 p1 -> RELU -> e1
  -> POOL max 2x2 -> CONV 8@3x3 p1 -> RELU -> DECONV 4@2x2 s2 -> up
CONCAT(up, e1) -> CONV 4@3x3 p1 -> RELU -> CONV 2@1x1 -> SOFTMAX
"""


@pytest.fixture(scope="module")
def sample():
    return limit(load_data(None, masks=True), 400)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, sample):
    root = tmp_path_factory.mktemp("seg")
    spec = root / "tiny_unet.cnn"
    spec.write_text(TINY_UNET)
    config = TrainConfig(optimizer="adam", lr=0.01, epochs=2, batch=16, validation=0.1, seed=1)
    trainer = Trainer(str(spec), config, sample, root / "run", quiet=True)
    return spec, root / "run", trainer.run()


def test_a_tiny_unet_learns_the_sample_well_past_the_all_background_baseline(trained, sample):
    _, run, result = trained
    test = sample.test()
    confusion = np.zeros((2, 2), np.int64)
    metrics.add_pixels(confusion, test.y, np.zeros_like(test.y), 255)
    baseline = metrics.mean_iou(confusion)  # every pixel called background
    assert 0.40 < baseline < 0.45
    assert result["test_miou"] > baseline + 0.3
    assert result["test_acc"] > 0.9
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert {"val_miou", "val_iou", "val_acc"} <= set(record) and len(record["val_iou"]) == 2


def test_eval_reports_pixel_accuracy_and_iou_per_class(trained, capsys):
    spec, run, result = trained
    assert main(["eval", str(spec), "--weights", str(run), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["classes"] == ["background", "item"] and report["pixels"] == 300 * 64 * 64
    assert abs(report["mean_iou"] - result["test_miou"]) < 1e-9
    assert len(report["per_class_iou"]) == 2
    assert main(["eval", str(spec), "--weights", str(run)]) == 0
    text = capsys.readouterr().out
    assert "pixel accuracy" in text and "mIoU" in text and "background" in text


def test_predict_writes_a_palette_mask_and_an_overlay(trained, tmp_path, capsys):
    Image = pytest.importorskip("PIL.Image")
    spec, run, _ = trained
    canvas = load_data(None, masks=True).test()
    image = tmp_path / "canvas.png"
    Image.fromarray(np.asarray(canvas.x[0, 0])).save(image)
    out = tmp_path / "out"
    args = ["predict", str(spec), "--weights", str(run), str(image), "--out", str(out)]
    assert main([*args, "--format", "json"]) == 0
    (answer,) = json.loads(capsys.readouterr().out)
    assert abs(sum(answer["fractions"].values()) - 1) < 1e-9
    mask = Image.open(out / "canvas_mask.png")
    assert mask.mode == "P" and mask.size == (64, 64)
    labels = np.asarray(mask)
    assert abs((labels == 1).mean() - answer["fractions"]["item"]) < 1e-9
    agreement = (labels == canvas.y[0]).mean()
    assert agreement > 0.85
    assert Image.open(out / "canvas_overlay.png").mode == "RGB"


def _network(text=TINY_UNET, **kw):
    from cnnc.compiler.check import check
    from cnnc.compiler.expand import expand
    from cnnc.compiler.syntax import parse

    return Network(check(expand(parse(text)), verify_expects=False), batch=4, **kw)


def test_masks_must_fit_the_output_and_its_classes(sample):
    net = _network()
    x = np.zeros((2, 1, 64, 64), np.float32)
    with pytest.raises(
        InputError, match=r"labels must be \(2, 64, 64\) masks, got shape \(2, 32, 32\)"
    ):
        net.loss_and_grad(x, np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(
        InputError, match=r"mask labels must be in 0\.\.1 \(or 255, ignored\), found 7"
    ):
        net.loss_and_grad(x, np.full((2, 64, 64), 7, np.uint8))
    small = Dataset(
        sample.x[:, :, :32, :32], np.ascontiguousarray(sample.y[:, :32, :32]), sample.classes, "s"
    )
    with pytest.raises(DataError, match="output is 2x64x64 but the masks of s are 32x32"):
        check_targets(small, net)
    with pytest.raises(DataError, match="one label per image"):
        check_targets(load_data(None), net)
    classifier = _network("input 1x64x64\nPOOL avg 8x8 -> FC 2 -> SOFTMAX")
    with pytest.raises(DataError, match="has a mask per image but the spec's output is 2"):
        check_targets(sample, classifier)
    with pytest.raises(InputError, match="3 class weights"):
        net.set_loss(class_weights=[1, 2, 3])


def test_an_ignored_pixel_changes_neither_loss_nor_gradient():
    net = _network()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 64, 64)).astype(np.float32)
    y = (rng.random((2, 64, 64)) < 0.3).astype(np.uint8)
    y[:, :8] = 255
    loss, _ = net.loss_and_grad(x, y)
    grads = {k: v.copy() for k, v in net.gradients().items()}
    net.set_loss(ignore_index=0)  # now class 0 is ignored instead and 255 is out of range
    with pytest.raises(InputError, match="found 255"):
        net.loss_and_grad(x, y)
    net.set_loss()
    again, _ = net.loss_and_grad(x, y)
    assert again == loss
    for name, g in net.gradients().items():
        np.testing.assert_array_equal(g, grads[name])


def test_palette_and_overlay_follow_voc():
    assert palette(3).tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0]]
    image = np.full((1, 2, 2), 0.5, np.float32)
    painted = overlay(image, np.array([[0, 1], [1, 0]]), 2)
    assert painted[0, 0].tolist() == [128, 128, 128]  # background is not tinted
    assert painted[0, 1].tolist() == [128, 64, 64]
