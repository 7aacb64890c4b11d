"""ONNX import: round trips of every spec in the zoo keep params, MACs and every shape; the
onnx package's own backend-test models; located refusals; the command line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper  # noqa: E402

from cnnc.compiler.check import check_file  # noqa: E402
from cnnc.compiler.onnx_import import ImportError_, import_file, import_model  # noqa: E402

SPECS = Path(__file__).parents[2] / "specs"
ZOO = sorted(p.stem for p in SPECS.glob("*.cnn"))
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(p.name for p in LIGHT.glob("*.onnx"))
# operators these models use that cnnc has no layer for: model -> (node, operator)
BLOCKED: dict = {}  # (light_shufflenet imports since Reshape-Transpose-Reshape is SHUFFLE)


def _checked(name: str):
    from test_onnx_export import exported

    return exported(name)


@pytest.mark.parametrize("name", ZOO)
def test_round_trip_keeps_params_macs_and_shapes(name):
    """DROPPATH is the identity at inference, and exported as one: it is the layer that does not
    come back."""
    checked, weights, model = _checked(name)
    imported = import_model(model, f"{name}.onnx")
    again = imported.checked
    assert (again.params, again.macs) == (checked.params, checked.macs)
    heads = [(head, layer.shape) for head, layer in checked.outputs]
    assert [(head, layer.shape) for head, layer in again.outputs] == heads  # yolov5s: p3, p4, p5
    kept = [l for l in checked.layers if l.node.kind != "DROPPATH"]
    assert [(l.node.kind, l.shape) for l in again.layers] == [(l.node.kind, l.shape) for l in kept]
    assert again.graph.name == checked.graph.name
    by_position = dict(
        zip((l.node.name for l in again.layers), (l.node.name for l in kept), strict=True)
    )
    for name_, value in imported.weights.items():
        layer, _, role = name_.rpartition(".")
        np.testing.assert_array_equal(value, weights[f"{by_position[layer]}.{role}"])


def test_imported_spec_reads_as_chains_and_named_merges():
    _, _, model = _checked("resnet_cifar")
    text = import_model(model, "resnet_cifar.onnx").spec
    assert "CONV 16@3x3 p1 nobias -> BN -> RELU -> relu1" in text
    assert "ADD(relu1, basic1_bn2) -> RELU" in text
    assert "expect params == 78042" in text and "expect macs == 12501632" in text
    _, _, model = _checked("lenet5")
    lines = import_model(model, "lenet5.onnx").spec.splitlines()
    assert "CONV 6@5x5 p2 -> RELU -> POOL max 2x2" in lines
    assert "  -> FC 10 -> SOFTMAX" in lines


def test_several_outputs_come_back_as_named_heads():
    _, _, model = _checked("yolov5s")
    text = import_model(model, "yolov5s.onnx").spec
    assert "output p3, p4, p5" in text.splitlines()
    assert "expect p3 == 255x4x4" in text and "expect p5 == 255x1x1" in text  # at 3x32x32
    assert "expect output" not in text


def test_an_output_that_no_layer_computes_or_that_repeats_is_refused():
    for outputs in (["x", "y"], ["y", "y"]):
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "twice",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, 2, 4, 4]) for o in outputs],
        )
        with pytest.raises(ImportError_, match=f"distinct tensor computed by a layer; this "
                           f"model's outputs are {', '.join(outputs)}"):  # fmt: skip
            import_model(helper.make_model(graph), "twice.onnx")


def onnx_figures(path: Path) -> tuple[int, int]:
    """Params and MACs read off the ONNX graph itself: the weights of Conv, Gemm and BN (scale and
    shift), and each Conv's and Gemm's multiply-adds from the shapes ONNX infers."""
    from cnnc.compiler.onnx_import import Graph

    graph = Graph(onnx.load(str(path)), str(path))
    params = macs = 0
    for node in graph.nodes:
        sizes = [graph.constants[n].size if n in graph.constants else 0 for n in node.input]
        if node.op_type in ("Conv", "Gemm"):
            params += sum(sizes[1:])
            weight = graph.constants[node.input[1]]
            out = graph.shapes[node.output[0]]
            if node.op_type == "Conv":
                macs += math.prod(out[1:]) * math.prod(weight.shape[1:])
            else:
                macs += weight.size
        elif node.op_type == "BatchNormalization":
            params += sizes[1] + sizes[2]
    return params, macs


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_onnx_shipped_models(name):
    if not LIGHT_MODELS:
        pytest.skip("this onnx wheel ships no light models")
    if name in BLOCKED:
        node, op = BLOCKED[name]
        with pytest.raises(ImportError_, match=rf"node `{node}` \({op}\)"):
            import_file(str(LIGHT / name))
        return
    imported = import_file(str(LIGHT / name))
    assert (imported.checked.params, imported.checked.macs) == onnx_figures(LIGHT / name)


def tiny_model(*nodes, initializers=(), out_shape=(1, 2, 4, 4), opset=18):
    graph = helper.make_graph(
        list(nodes), "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        list(initializers),
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_an_operator_cnnc_lacks_is_named_with_its_node():
    model = tiny_model(helper.make_node("Sin", ["x"], ["y"], name="wave"))
    with pytest.raises(ImportError_, match=r"tiny.onnx: node `wave` \(Sin\): cnnc has no "):
        import_model(model, "tiny.onnx")


def test_asymmetric_conv_padding_imports_as_four_sides():
    weight = onnx.numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", pads=[0, 0, 1, 1])
    imported = import_model(tiny_model(node, initializers=[weight]), "tiny.onnx")
    assert "CONV 2@3x3 pad=0x0x1x1 nobias" in imported.spec
    assert imported.checked.output.shape == (2, 3, 3)


def test_asymmetric_padding_with_ceil_mode_is_refused_by_node():
    node = helper.make_node("MaxPool", ["x"], ["y"], name="m", kernel_shape=[2, 2],
                            strides=[2, 2], pads=[0, 0, 1, 0], ceil_mode=1)  # fmt: skip
    with pytest.raises(ImportError_, match=r"node `m` \(MaxPool\): asymmetric padding"):
        import_model(tiny_model(node), "tiny.onnx")


def test_weights_computed_at_run_time_are_refused():
    model = tiny_model(
        helper.make_node("Relu", ["x"], ["w"], name="r"),
        helper.make_node("Conv", ["x", "w"], ["y"], name="c"),
    )
    with pytest.raises(ImportError_, match=r"node `c` \(Conv\): its weight must be a constant"):
        import_model(model, "tiny.onnx")


def test_caffe_style_scale_after_bn_folds_into_the_bn():
    c = 2
    rng = np.random.default_rng(0)
    tensors = {k: rng.uniform(0.5, 1.5, c).astype(np.float32) for k in "gbmvst"}
    inits = [onnx.numpy_helper.from_array(v, k) for k, v in tensors.items()]
    model = tiny_model(
        helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["z"], name="bn"),
        helper.make_node("Unsqueeze", ["s", "axes"], ["s3"], name="u"),
        helper.make_node("Mul", ["z", "s3"], ["zs"], name="scale"),
        helper.make_node("Add", ["zs", "t"], ["y"], name="shift"),
        initializers=[*inits, onnx.numpy_helper.from_array(np.array([1, 2], np.int64), "axes")],
    )
    imported = import_model(model, "tiny.onnx")
    assert [l.node.kind for l in imported.checked.layers[1:]] == ["BN"]
    w = imported.weights
    np.testing.assert_allclose(w["bn1.weight"], tensors["g"] * tensors["s"], rtol=1e-6)
    np.testing.assert_allclose(w["bn1.bias"], tensors["b"] * tensors["s"] + tensors["t"],
                               rtol=1e-6)  # fmt: skip


def test_import_command_writes_a_spec_that_checks(capsys, tmp_path):
    from cnnc.cli import main

    _, _, model = _checked("unet_small")
    onnx.save(model, str(tmp_path / "u.onnx"))
    code = main(["import", str(tmp_path / "u.onnx"), "-o", str(tmp_path / "u.cnn"),
                 "--weights-out", str(tmp_path / "u.safetensors")])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "29,330 params" in out
    assert main(["check", str(tmp_path / "u.cnn")]) == 0
    checked = check_file(str(tmp_path / "u.cnn"))
    from cnnc.runtime import checkpoint

    tensors, meta = checkpoint.load(tmp_path / "u.safetensors")
    assert meta["network"] == "unet_small"
    assert sum(v.size for v in tensors.values()) == checked.params


def test_import_of_a_damaged_file_is_a_usage_error(capsys, tmp_path):
    from cnnc.cli import main

    (tmp_path / "bad.onnx").write_bytes(b"\x00not protobuf at all\xff" * 10)
    code = main(["import", str(tmp_path / "bad.onnx"), "-o", str(tmp_path / "x.cnn")])
    assert code == 2 and "not a readable ONNX model" in capsys.readouterr().err
    assert not (tmp_path / "x.cnn").exists()


# specs whose exports use today's operators, and test_network's modern blocks and resizes
COMPUTED_AGAIN = ["tiny_efficientnet", "mobilenet_v3_small", "shufflenet_v2_x1_0", "regnet_y_400mf"]
SMALL_CASES = ["branchy_modern", "branchy_resize_adaptive_dilated_four_sided"]


@pytest.mark.parametrize("name", COMPUTED_AGAIN + SMALL_CASES)
def test_reexport_of_the_import_computes_what_the_export_computes(name):
    """onnxruntime on export(spec) and on export(import(export(spec))): the imported layers mean
    what the exported operators meant (GELU's form, align_corners, SHUFFLE's groups ...)."""
    ort = pytest.importorskip("onnxruntime")
    from test_onnx_export import RUNTIME_CASES

    from cnnc.compiler import weights as initial_weights
    from cnnc.compiler.check import check
    from cnnc.compiler.expand import expand
    from cnnc.compiler.onnx_export import to_onnx
    from cnnc.compiler.syntax import parse

    if name in COMPUTED_AGAIN:
        checked, weights, model = _checked(name)
    else:
        checked = check(expand(parse(RUNTIME_CASES[name])), verify_expects=False)
        weights = initial_weights.initial(checked, seed=5)
        model = to_onnx(checked, weights)
    imported = import_model(model, f"{name}.onnx")
    again = to_onnx(imported.checked, imported.weights)
    x = np.random.default_rng(1).standard_normal((2, *checked.graph.input_shape), np.float32)

    def run(m):
        session = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"input": x})[0]

    np.testing.assert_allclose(run(again), run(model), rtol=1e-5, atol=1e-6)
