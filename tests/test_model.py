"""A run folder is enough: cnnc.load, `cnnc eval RUN`, `cnnc predict RUN IMAGE...` and
`cnnc train --resume DIR` alone."""

import json

import numpy as np
import pytest

import cnnc
from cnnc.cli import main
from cnnc.runtime import checkpoint
from cnnc.runtime.batches import normalize
from cnnc.runtime.sources import load_data

TINY = """network tiny
input 1x28x28
CONV 8@5x5 s2 -> BN -> RELU -> POOL max 2x2 -> FC 10 -> SOFTMAX
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    spec = folder / "tiny.cnn"
    spec.write_text(TINY)
    args = ["train", str(spec), "--epochs", "1", "--limit", "600", "--batch", "50"]
    args += ["--validation", "0.2", "--quiet", "--out", str(folder / "run")]
    assert main(args) == 0
    return folder / "run"


def test_load_predicts_with_the_training_normalisation(run):
    model = cnnc.load(run)
    assert len(model.classes) == 10 and model.classes[0] == "T-shirt/top"
    data = load_data(None)
    x = data.x_test[:70]
    probabilities = model.predict(x)
    assert probabilities.shape == (70, 10)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    meta = checkpoint.load(run / "best.safetensors")[1]
    expected = model.network.forward(normalize(x[:5], meta["normalization"]))
    assert np.allclose(probabilities[:5], expected.reshape(5, -1), atol=1e-6)
    # the same images as floats in [0, 1], as (N, H, W) and one (H, W) image
    assert np.allclose(model.predict(x.astype(np.float32) / 255), probabilities, atol=1e-5)
    assert np.allclose(model.predict(x[:, 0]), probabilities, atol=1e-6)
    assert np.allclose(model.predict(x[0, 0]), probabilities[:1], atol=1e-6)
    pil = pytest.importorskip("PIL.Image")
    images = [pil.fromarray(image[0]) for image in x[:3]]
    assert np.allclose(model.predict(images), probabilities[:3], atol=1e-5)
    with pytest.raises(ValueError, match="do not fit this model's input 1x28x28"):
        model.predict(np.zeros((2, 3, 32, 32), np.uint8))


def test_eval_and_predict_take_the_run_folder_alone(run, tmp_path, capsys):
    assert main(["eval", str(run), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 2000  # the bundled sample's test part: the run's --data
    pil = pytest.importorskip("PIL.Image")
    folder = tmp_path / "images"
    folder.mkdir()
    pil.fromarray(np.full((28, 28), 90, np.uint8)).save(folder / "grey.png")
    pil.fromarray(np.full((40, 30, 3), 200, np.uint8)).save(folder / "colour.png")
    assert main(["predict", str(run), str(folder), "--format", "json", "--top", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["image"].rsplit("/", 1)[1] for p in out["predictions"]] == ["colour.png", "grey.png"]
    assert len(out["predictions"][0]["top"]) == 2
    assert "RGB to grey" in out["predictions"][0]["converted"]
    assert "resized 40x30 to 28x28" in out["predictions"][0]["converted"]
    assert out["predictions"][1]["converted"] == ""
    assert main(["predict", str(run), str(folder / "*.png")]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 2 and "converted RGB to grey" in captured.err


def test_tta_averages_each_image_with_its_mirror(run, capsys):
    model = cnnc.load(run)
    x = load_data(None).x_test[:40]
    mirrored = (model.predict(x) + model.predict(x[..., ::-1])) / 2
    assert np.allclose(model.predict(x, tta=True), mirrored, atol=1e-6)
    symmetric = np.concatenate([x[..., :14], x[..., :14][..., ::-1]], axis=-1)
    assert np.allclose(model.predict(symmetric, tta=True), model.predict(symmetric), atol=1e-6)

    data = load_data(None)
    labels = data.y_test
    probabilities = model.predict(data.x_test, tta=True)
    assert main(["eval", str(run), "--tta", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tta"] is True
    assert report["accuracy"] == pytest.approx((probabilities.argmax(1) == labels).mean())
    nll = -np.log(probabilities[np.arange(len(labels)), labels]).mean()
    assert report["loss"] == pytest.approx(nll, rel=1e-5)
    assert main(["eval", str(run), "--tta"]) == 0
    assert "2000 images, each averaged with its mirror" in capsys.readouterr().out


def test_train_with_tta_also_reports_the_mirror_averaged_test(tmp_path, capsys):
    spec = tmp_path / "tiny.cnn"
    spec.write_text(TINY)
    args = ["train", str(spec), "--epochs", "1", "--limit", "300", "--batch", "50", "--tta"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.splitlines()
    (line,) = [line for line in lines if "(--tta)" in line]
    assert line.startswith("test, each image averaged with its mirror (--tta): loss ")


def test_eval_warns_when_the_spec_is_not_the_one_trained(run, tmp_path, capsys):
    changed = tmp_path / "changed.cnn"
    changed.write_text(TINY.replace("POOL max", "POOL avg"))
    assert main(["eval", str(changed), "--weights", str(run)]) == 0
    assert "is not the spec" in capsys.readouterr().err
    assert main(["eval", str(changed)]) == 2
    assert "give a run folder" in capsys.readouterr().err


def test_resume_needs_only_the_folder(run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert main(["train", "--resume", str(copy), "--epochs", "2", "--quiet"]) == 0
    meta = checkpoint.load(copy)[1]
    assert meta["progress"]["epoch"] == 2
    assert meta["run"]["limit"] == 600  # the run's --limit came back without being given
    assert len((copy / "metrics.jsonl").read_text().splitlines()) == 2
    assert main(["train", "--quiet"]) == 2


def test_input_and_classes_adapt_a_spec_and_the_run_remembers_them(tmp_path, capsys):
    spec = tmp_path / "rgb.cnn"
    spec.write_text(TINY.replace("1x28x28", "3x32x32").replace("FC 10", "FC 4"))
    out = tmp_path / "run"
    args = ["train", str(spec), "--epochs", "1", "--limit", "100", "--batch", "50", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "no")]) == 2
    assert "or train with --input 1x28x28" in capsys.readouterr().err
    assert main([*args, "--input", "1x28x28", "--classes", "10", "--out", str(out)]) == 0
    capsys.readouterr()
    run = checkpoint.load(out)[1]["run"]
    assert run["input"] == [1, 28, 28] and run["classes"] == 10
    model = cnnc.load(out)
    assert model.input_shape == (1, 28, 28) and len(model.classes) == 10
    assert model.predict(load_data(None).x_test[:3]).shape == (3, 10)
    assert main(["eval", str(out), "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["per_class_accuracy"]) == 10
    assert main(["train", "--resume", str(out), "--epochs", "2", "--quiet"]) == 0
    assert checkpoint.load(out)[1]["progress"]["epoch"] == 2
