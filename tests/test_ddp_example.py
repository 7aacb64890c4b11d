"""examples/ddp_lenet5.py: two gloo ranks on the loopback train the exported LeNet-5 module; both
end with the same weights and the loss falls."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_two_ranks_end_equal_and_learn(tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend")
    from safetensors.torch import load_file

    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ddp_lenet5.py"), "--steps", "40",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 ranks, 40 steps" in done.stdout
    first, second = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2))
    assert first.keys() == second.keys() and "conv1.weight" in first
    for name in first:
        assert torch.equal(first[name], second[name]), name
    exported = load_file(str(tmp_path / "lenet5.safetensors"))  # the weights it started from
    assert not torch.equal(first["fc3.weight"], exported["param/fc3.weight"])
    for rank in range(2):
        losses = json.loads((tmp_path / f"rank{rank}.json").read_text())["losses"]
        assert len(losses) == 40
        assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
