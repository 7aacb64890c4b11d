"""Cold-cache compilation on two cores (runtime/compile_pool.py), each case in a fresh process
with an empty cache: a child compiles kernels into its own folder and they load from the shared
cache; a network's kernels are each compiled once, here or by the child; and it computes what
it should."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cnnc.runtime.compile_pool import claim

NETWORK = """
import json, numpy as np
from cnnc.compiler.check import check
from cnnc.compiler.expand import expand
from cnnc.compiler.syntax import parse
from cnnc.runtime import executor
from cnnc.runtime.executor import KERNEL_ARGS
from cnnc.runtime.network import Network
from cnnc.runtime.table import KERNELS
reports = []
executor.on_compile(lambda done, total, name, seconds: reports.append([done, total, name]))
net = Network(check(expand(parse("input 5\\nFC 3 -> RELU")), verify_expects=False), batch=2)
x = np.arange(10, dtype=np.float32).reshape(2, 5, 1, 1)
out = net.forward(x, training=True)
net.backward(np.ones((2, 3), np.float32))
expected = (out > 0).astype(np.float32).T @ x.reshape(2, 5)
kernels = {f"{kind} {direction}": KERNELS[kind][d] for kind in ("FC", "RELU")
           for d, direction in enumerate(("forward", "backward"))}
print(json.dumps({
    "reports": reports,
    "hits": {name: k.stats.cache_hits.get(KERNEL_ARGS, 0) for name, k in kernels.items()},
    "misses": {name: k.stats.cache_misses.get(KERNEL_ARGS, 0) for name, k in kernels.items()},
    "weight_grad": net.gradients()["fc1.weight"].tolist(),
    "expected_grad": expected.tolist(),
}))
"""

CHILD = """
import json
from cnnc.runtime import compile_pool
from cnnc.runtime.executor import KERNEL_ARGS
from cnnc.runtime.table import KERNELS, KIND_ORDER
kernel = KERNELS["FC"][1]
before = compile_pool.is_cached(kernel, KERNEL_ARGS)
child = compile_pool.Child({("backward", KIND_ORDER.index("FC")): kernel})
child.collect()
after = compile_pool.is_cached(kernel, KERNEL_ARGS)
kernel.compile(KERNEL_ARGS)
print(json.dumps([before, after, kernel.stats.cache_hits.get(KERNEL_ARGS, 0)]))
"""


def run_cold(tmp_path, program: str, **env):
    cache = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, "NUMBA_CACHE_DIR": str(cache), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    leftovers = [p.name for p in cache.iterdir() if p.name.startswith("compiling-")]
    assert not leftovers  # the child's own folder is gone
    return json.loads(result.stdout.splitlines()[-1])


def test_a_child_compiles_into_its_own_folder_and_the_kernel_then_loads_from_the_cache(tmp_path):
    assert run_cold(tmp_path, CHILD) == [False, True, 1]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a second core")
def test_each_kernel_of_a_network_is_compiled_once_here_or_by_the_child(tmp_path):
    report = run_cold(tmp_path, NETWORK)
    names = [name for _, _, name in report["reports"]]
    assert len(names) == 4 and [r[:2] for r in report["reports"]] == [[i, 4] for i in (1, 2, 3, 4)]
    assert names[:2] == ["FC forward", "RELU forward"]  # compiled here first
    for name in report["hits"]:
        by_child = f"{name}, second core" in names
        assert by_child or name in names, name
        assert (report["hits"][name], report["misses"][name]) == ((1, 0) if by_child else (0, 1))
    assert report["weight_grad"] == report["expected_grad"]  # ones, masked by the ReLU, @ x


def test_without_the_child_everything_compiles_here(tmp_path):
    report = run_cold(tmp_path, NETWORK, CNNC_COMPILE_CHILD="0")
    assert all(hits == 0 for hits in report["hits"].values())
    assert report["weight_grad"] == report["expected_grad"]
    assert [name for _, _, name in report["reports"]] == [
        "FC forward", "RELU forward", "FC backward", "RELU backward"
    ]  # fmt: skip


def test_a_claim_is_made_once(tmp_path):
    assert claim(tmp_path, ("backward", 3)) and not claim(tmp_path, ("backward", 3))
    assert claim(tmp_path, ("forward", 3))


def test_a_child_past_its_time_is_stopped_and_its_folder_removed(monkeypatch):
    from cnnc.runtime import compile_pool

    monkeypatch.setattr(compile_pool, "CHILD_TIMEOUT_S", 0.2)
    popen = subprocess.Popen
    hang = [sys.executable, "-c", "import time; time.sleep(60)"]
    monkeypatch.setattr(compile_pool.subprocess, "Popen", lambda _, **kw: popen(hang, **kw))
    child = compile_pool.Child({})
    child.collect()
    assert child.process.returncode is not None and not child.root.exists()
