"""ONNX export: every spec in the zoo passes the full checker and strict shape inference with
cnnc's shapes for every tensor; onnxruntime computes what cnnc computes; the command line."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from cnnc.compiler.check import check, check_file, checks_at
from cnnc.compiler.expand import expand
from cnnc.compiler.syntax import parse

onnx = pytest.importorskip("onnx")

from cnnc.compiler import weights as initial_weights  # noqa: E402
from cnnc.compiler.onnx_export import BATCH, ExportError, tensor_names, to_onnx  # noqa: E402

SPECS = Path(__file__).parents[2] / "specs"
ZOO = sorted(p.stem for p in SPECS.glob("*.cnn"))
SMALL_ZOO = ["lenet5", "lenet5_classic", "cifar_net", "resnet_cifar", "fashion_small", "unet_small"]
# specs whose kinds the small zoo already compiles, at a small input (their kernels are shared)
SHARED_KINDS = {"resnet18": (3, 32, 32), "resnet50": (3, 32, 32)}
EXTRA_KINDS = {  # what the zoo lacks: RELU6, a 1-D BN, sum and ceil pools, LRN, UPSAMPLE
    "relu6_sum_pool": """input 3x9x9
        CONV 4@3x3 p1 -> RELU6 -> POOL sum 2x2 s2 ceil -> UPSAMPLE 2 -> POOL max 3x3 s2 p1 ceil
        -> FLATTEN -> BN -> FC 5 -> SOFTMAX""",
}


def smallest_input(path: Path):
    """The spec at the smallest square input it checks at from 32 up (its own if smaller)."""
    checked = check_file(str(path), verify_expects=False)
    c, h, _ = checked.graph.input_shape
    for size in range(min(h, 32), h + 1):
        if checks_at(checked.graph, (c, size, size)):
            return check_file(str(path), (c, size, size), verify_expects=False)
    return checked


@functools.cache
def exported(name: str):
    checked = smallest_input(SPECS / f"{name}.cnn")
    weights = initial_weights.initial(checked, seed=3)
    return checked, weights, to_onnx(checked, weights, {"classes": ["a", "b"]})


def inferred_shapes(model) -> dict[str, tuple]:
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                                 data_prop=True)  # sizes read with Shape
    shapes = {}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param
                                  for d in dims)  # fmt: skip
    return shapes


@pytest.mark.parametrize("name", ZOO)
def test_zoo_passes_the_checker_with_cnnc_shapes(name):
    checked, _, model = exported(name)
    onnx.checker.check_model(model, full_check=True)
    shapes = inferred_shapes(model)
    for layer, tensor in zip(checked.layers, tensor_names(checked), strict=True):
        batch, *rest = shapes[tensor]
        assert tuple(rest) == layer.shape, tensor
        assert isinstance(batch, str), f"{tensor}: the batch dimension is fixed to {batch}"
    assert shapes["input"][0] == BATCH
    for output in model.graph.output:  # one per head (`output p3, p4, p5`), else `output`
        assert shapes[output.name][0] == BATCH
    heads = [head for head, _ in checked.graph.outputs] if len(checked.graph.outputs) > 1 else []
    assert [o.name for o in model.graph.output] == (heads or ["output"])


def test_model_carries_names_opset_and_metadata():
    checked, weights, model = exported("lenet5")
    assert [o.version for o in model.opset_import] == [18]
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["output"]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["cnnc.network"] == "lenet5" and json.loads(props["classes"]) == ["a", "b"]
    stored = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert set(weights) <= set(stored)
    assert sum(stored[name].size for name in weights) == checked.params


def test_even_lrn_is_refused_by_name():
    checked = check(expand(parse("input 4x5x5\nLRN 4")))
    with pytest.raises(ExportError, match="lrn1: LRN 4 has an even size"):
        to_onnx(checked, initial_weights.initial(checked))


def test_adaptive_pool_with_unequal_windows_is_refused_by_name():
    checked = check(expand(parse("input 4x5x5\nPOOL avg adaptive 3x3")))
    with pytest.raises(ExportError, match="pool1: adaptive POOL 3x3 of a 5x5 input"):
        to_onnx(checked, initial_weights.initial(checked))


def test_initial_weights_are_the_runtime_initialisation():
    from cnnc.runtime.network import Network

    checked, _, _ = exported("resnet_cifar")
    net = Network(checked, batch=1, training=False, seed=5)
    ours = initial_weights.initial(checked, seed=5)
    theirs = net.state_dict()
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


# ---- onnxruntime computes what cnnc computes ---------------------------------------------------


def branchy() -> dict[str, str]:
    """test_network's branchy graphs (every kind and option the zoo lacks, mostly) and its
    modern blocks (gates, LN, SCALE, DROPPATH, PRELU, the new activations, SLICE, SHUFFLE)."""
    import importlib.util

    path = Path(__file__).parents[1] / "runtime" / "test_network.py"
    spec = importlib.util.spec_from_file_location("network_cases", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {**module.BRANCHY, "modern": module.MODERN}


def _runtime_cases():
    cases = {f"branchy_{k}": v for k, v in branchy().items()}
    cases.update(EXTRA_KINDS)
    for name in SMALL_ZOO:
        cases[name] = (SPECS / f"{name}.cnn").read_text()
    for name, shape in SHARED_KINDS.items():
        cases[name] = (SPECS / f"{name}.cnn", shape)
    return cases


RUNTIME_CASES = _runtime_cases()


@pytest.mark.parametrize("name", sorted(RUNTIME_CASES))
def test_onnxruntime_equals_cnnc_forward(name):
    ort = pytest.importorskip("onnxruntime")
    from cnnc.runtime.network import Network

    case = RUNTIME_CASES[name]
    if isinstance(case, tuple):
        checked = check_file(str(case[0]), case[1], verify_expects=False)
    else:
        checked = check(expand(parse(case)), verify_expects=False)
    weights = initial_weights.initial(checked, seed=11)
    rng = np.random.default_rng(2)
    for name_, value in weights.items():  # non-trivial BN statistics
        if name_.endswith("running_mean"):
            value[...] = rng.standard_normal(value.shape) * 0.1
        elif name_.endswith("running_var") or (name_.endswith(".weight") and value.ndim == 1):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
    net = Network(checked, batch=2, training=False)
    net.load_state_dict(weights)
    x = rng.standard_normal((2, *checked.graph.input_shape)).astype(np.float32)
    session = ort.InferenceSession(
        to_onnx(checked, weights).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (actual,) = session.run(None, {"input": x})
    expected = net.forward(x)
    scale = max(float(np.abs(expected).max()), 1.0)
    assert np.abs(actual.reshape(expected.shape) - expected).max() <= 1e-4 * scale


# ---- the command line --------------------------------------------------------------------------


def run(capsys, *argv):
    from cnnc.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_export_command_writes_a_checked_model(capsys, tmp_path):
    target = tmp_path / "lenet5.onnx"
    code, out, err = run(capsys, "export", str(SPECS / "lenet5.cnn"), "--to", "onnx", "-o",
                         str(target))  # fmt: skip
    assert code == 0, err
    assert "opset 18" in out and "61,706 params" in out
    onnx.checker.check_model(str(target), full_check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet5.onnx"]


def test_export_external_data_keeps_tensors_beside_the_model(capsys, tmp_path):
    target = tmp_path / "r.onnx"
    spec = str(SPECS / "resnet_cifar.cnn")
    code, _, err = run(capsys, "export", spec, "--to", "onnx", "-o", str(target),
                       "--external-data")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "r.onnx.data").stat().st_size > 4 * 70_000
    assert target.stat().st_size < 100_000
    model = onnx.load(str(target))
    onnx.checker.check_model(model, full_check=True)
    assert sum(onnx.numpy_helper.to_array(i).size for i in model.graph.initializer) >= 78042


def test_export_with_trained_weights_and_their_metadata(capsys, tmp_path):
    from cnnc.cli_export import save_weights

    checked = check_file(str(SPECS / "lenet5.cnn"), verify_expects=False)
    weights = initial_weights.initial(checked, seed=9)
    norm = {"mean": [0.25], "std": [0.5]}
    save_weights(str(tmp_path / "w.safetensors"), checked, weights,
                 {"normalization": norm, "classes": list("0123456789")})  # fmt: skip
    code, _, err = run(capsys, "export", str(SPECS / "lenet5.cnn"), "--weights",
                       str(tmp_path / "w.safetensors"), "--to", "onnx", "-o",
                       str(tmp_path / "m.onnx"))  # fmt: skip
    assert code == 0, err
    model = onnx.load(str(tmp_path / "m.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["normalization"]) == norm
    stored = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    np.testing.assert_array_equal(stored["conv1.weight"], weights["conv1.weight"])


def test_export_refuses_weights_of_another_spec(capsys, tmp_path):
    from cnnc.cli_export import save_weights

    other = check_file(str(SPECS / "cifar_net.cnn"), verify_expects=False)
    save_weights(str(tmp_path / "w.safetensors"), other, initial_weights.initial(other), {})
    code, _, err = run(capsys, "export", str(SPECS / "lenet5.cnn"), "--weights",
                       str(tmp_path / "w.safetensors"), "--to", "onnx", "-o",
                       str(tmp_path / "m.onnx"))  # fmt: skip
    assert code == 2 and "this spec" in err and "w.safetensors" in err
    assert not (tmp_path / "m.onnx").exists()


def test_missing_extra_names_it(capsys, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    code, _, err = run(capsys, "export", str(SPECS / "lenet5.cnn"), "--to", "onnx", "-o",
                       str(tmp_path / "m.onnx"))  # fmt: skip
    assert code == 2 and "pip install 'cnnc[onnx]'" in err
    code, _, err = run(capsys, "import", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "m.cnn"))
    assert code == 2 and "pip install 'cnnc[onnx]'" in err


OTHER_ZOO = [n for n in ZOO if n not in SMALL_ZOO and n not in SHARED_KINDS]


@pytest.mark.parametrize("name", OTHER_ZOO)
def test_onnxruntime_equals_the_torch_module_on_the_rest_of_the_zoo(name):
    """The specs whose kind sets cnnc would compile only for this test: onnxruntime against the
    exported torch module (which tests/runtime/test_network.py holds equal to cnnc)."""
    ort = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    from cnnc.compiler.torch_export import module_class

    checked, weights, model = exported(name)
    module = module_class(checked)().eval()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    x = np.random.default_rng(5).standard_normal((2, *checked.graph.input_shape), np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input": x})
    if len(outputs) > 1:
        module.output = None  # every head, in the order of the `output` line
    with torch.no_grad():
        produced = module(torch.from_numpy(x))
    expected = [t.numpy() for t in (produced if isinstance(produced, tuple) else (produced,))]
    assert len(expected) == len(outputs)
    for actual, wanted in zip(outputs, expected, strict=True):
        scale = max(float(np.abs(wanted).max()), 1.0)
        assert np.abs(actual - wanted).max() <= 1e-4 * scale
