"""PyTorch export: the module file's parameter names and counts are the spec's for every spec in
the zoo; the written file runs without cnnc and, with the exported weights, computes what cnnc
computes. (Outputs and gradients against cnnc for branchy graphs and the small zoo are
tests/runtime/test_network.py, whose torch twin is this module.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnc.compiler.check import check_file
from cnnc.compiler.torch_export import class_name, module_source

torch = pytest.importorskip("torch")

from cnnc.compiler.torch_export import module_class  # noqa: E402

SPECS = Path(__file__).parents[2] / "specs"
ZOO = sorted(p.stem for p in SPECS.glob("*.cnn"))


def test_every_layer_kind_exports_to_pytorch_and_onnx():
    from cnnc.compiler.layers import REGISTRY
    from cnnc.compiler.onnx_export import EXPORTERS
    from cnnc.compiler.torch_export import MODULES

    assert set(REGISTRY) - set(MODULES) == set()
    assert set(REGISTRY) - set(EXPORTERS) == set()


def test_several_heads_forward_the_chosen_one_or_all():
    from cnnc.compiler.check import check
    from cnnc.compiler.expand import expand
    from cnnc.compiler.syntax import parse

    text = """input 3x8x8
    CONV 4@3x3 p1 -> RELU -> trunk
    trunk -> POOL avg global -> FC 5 -> main
    trunk -> POOL max 2x2 -> FC 3 -> aux
    output main, aux
    """
    checked = check(expand(parse(text)), verify_expects=False)
    source = module_source(checked)
    assert "        self.output = 'main'  # the head forward returns, one of main, aux" in source
    module = module_class(checked)()
    x = torch.randn(2, 3, 8, 8)
    assert tuple(module(x).shape) == (2, 5)
    module.output = "aux"
    assert tuple(module(x).shape) == (2, 3)
    module.output = None
    main, aux = module(x)
    assert tuple(main.shape) == (2, 5) and tuple(aux.shape) == (2, 3)


@pytest.mark.parametrize("name", ZOO)
def test_parameter_names_and_counts_are_the_specs(name):
    checked = check_file(str(SPECS / f"{name}.cnn"), verify_expects=False)
    with torch.device("meta"):  # shapes without memory
        module = module_class(checked)()
    wanted = {
        f"{layer.node.name}.{role}": tuple(shape)
        for layer in checked.layers[1:]
        for role, shape in layer.params.items()
    }
    assert {n: tuple(p.shape) for n, p in module.named_parameters()} == wanted
    assert sum(p.numel() for p in module.parameters()) == checked.params
    buffers = {n for n, _ in module.named_buffers() if not n.endswith("num_batches_tracked")}
    assert buffers == {
        f"{layer.node.name}.{role}" for layer in checked.layers[1:] for role in layer.buffers
    }


def test_forward_reads_like_the_spec():
    checked = check_file(str(SPECS / "resnet_cifar.cnn"), verify_expects=False)
    source = module_source(checked)
    assert "        self.basic1.conv1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)" in source
    assert "        x = self.basic1.add1(basic1_shortcut, basic1_y)" in source
    assert "        x = self.fc1(x.flatten(1))" in source
    assert "cnnc" not in "".join(line for line in source.splitlines() if "import" in line)
    compile(source, "resnet_cifar.py", "exec")


def test_exported_file_runs_alone_and_matches_cnnc(tmp_path, capsys):
    from cnnc.cli import main
    from cnnc.runtime.network import Network
    from cnnc.runtime.train import load_weights

    spec = SPECS / "lenet5.cnn"
    assert main(["export", str(spec), "--to", "pytorch", "-o", str(tmp_path / "lenet5.py")]) == 0
    assert "class Lenet5" in capsys.readouterr().out
    x = np.random.default_rng(4).standard_normal((3, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    script = (
        "import sys, json, numpy, torch, lenet5\n"
        "m = lenet5.Lenet5.from_safetensors('lenet5.safetensors').eval()\n"
        "y = m(torch.from_numpy(numpy.load('x.npy'))).detach().numpy()\n"
        "numpy.save('y.npy', y)\n"
        "print(json.dumps(sorted(k for k in sys.modules if k.split('.')[0] == 'cnnc')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={"PATH": "", "PYTHONPATH": ""})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []  # no cnnc module was imported
    net = Network(check_file(str(spec), verify_expects=False), batch=3, training=False)
    load_weights(net, tmp_path / "lenet5.safetensors")
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), net.forward(x), atol=1e-5)


def test_class_names_are_identifiers():
    assert class_name("resnet_cifar") == "ResnetCifar"
    assert class_name("3d_net").isidentifier()


def test_a_layer_name_that_is_also_a_block_call_is_a_clear_error():
    from cnnc.compiler.check import check
    from cnnc.compiler.expand import expand
    from cnnc.compiler.files import UsageError
    from cnnc.compiler.syntax import parse
    from cnnc.compiler.torch_export import module_source

    text = "input 3x8x8\nblock conv(c) {\n  in -> CONV c@3x3 p1 -> y\n}\nCONV 4@3x3 -> conv(4)\n"
    checked = check(expand(parse(text)))
    names = {layer.node.name for layer in checked.layers}
    assert {"conv1", "conv1.conv1"} <= names
    with pytest.raises(UsageError, match="conv1: the name of a layer and of a block call"):
        module_source(checked)
