"""`--classes K`: the last layer with a width of its own becomes K wide; nothing else changes."""

import pytest

from cnnc.compiler.errors import SpecError
from cnnc.compiler.files import load


def spec(tmp_path, text):
    path = tmp_path / "net.cnn"
    path.write_text(text)
    return path


def test_the_last_fc_takes_the_class_count(tmp_path):
    path = spec(tmp_path, "input 1x28x28\nCONV 8@3x3 -> RELU -> FC 4 -> DROPOUT 0.5 -> SOFTMAX\n")
    checked = load(path, verify_expects=False, classes=10)
    assert checked.output.shape == (10,)
    assert checked.params == load(path).params + (8 * 26 * 26 + 1) * 6


def test_a_map_output_takes_it_from_the_last_conv(tmp_path):
    text = "input 3x16x16\nCONV 8@3x3 p1 -> RELU -> CONV 2@1x1 -> UPSAMPLE 2 -> SOFTMAX\n"
    checked = load(spec(tmp_path, text), classes=5, verify_expects=False)
    assert checked.output.shape == (5, 32, 32)


def test_a_zoo_spec_at_another_input_size_and_class_count():
    checked = load("specs/resnet18.cnn", (1, 28, 28), verify_expects=False, classes=10)
    assert checked.output.shape == (10,)
    # torchvision's 11,689,512 less conv1's two dropped input channels and fc's 990 classes
    assert checked.params == 11_689_512 - 2 * 64 * 7 * 7 - 990 * (512 + 1)


def test_a_merge_before_any_width_is_a_located_error(tmp_path):
    text = "input 1x8x8\nCONV 4@3x3 p1 -> a\nCONV 4@1x1 -> b\nADD(a, b) -> FLATTEN\n"
    with pytest.raises(SpecError) as error:
        load(spec(tmp_path, text), classes=3)
    (diagnostic,) = error.value.diagnostics
    assert "reaches ADD" in diagnostic.message and diagnostic.loc.line == 4
    assert "change the width of the last layer" in diagnostic.fix
