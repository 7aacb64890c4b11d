"""Cold-cache compilation on two cores (runtime/compile_pool.py), in a fresh process with an
empty cache: the child compiles the backward kernels, this process loads them from the cache,
and the result computes what it should."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROGRAM = """
import json, numpy as np
from cnnc.runtime.executor import KERNEL_ARGS
from cnnc.compiler.check import check
from cnnc.compiler.expand import expand
from cnnc.compiler.syntax import parse
from cnnc.runtime.network import Network
from cnnc.runtime.table import KERNELS
net = Network(check(expand(parse("input 5\\nFC 3")), verify_expects=False), batch=2)
x = np.arange(10, dtype=np.float32).reshape(2, 5, 1, 1)
net.forward(x, training=True)
net.backward(np.ones((2, 3), np.float32))
forward, backward = KERNELS["FC"]
print(json.dumps({
    "forward_hits": forward.stats.cache_hits.get(KERNEL_ARGS, 0),
    "backward_hits": backward.stats.cache_hits.get(KERNEL_ARGS, 0),
    "weight_grad": net.gradients()["fc1.weight"].tolist(),
}))
"""


def run_cold(tmp_path, **env) -> dict:
    cache = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        env={**os.environ, "NUMBA_CACHE_DIR": str(cache), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    leftovers = [p.name for p in cache.iterdir() if p.name.startswith("compiling-")]
    assert not leftovers  # the child's own folder is gone
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a second core")
def test_a_child_compiles_the_backward_kernels_and_they_load_from_the_cache(tmp_path):
    report = run_cold(tmp_path)
    assert report["forward_hits"] == 0  # compiled here
    assert report["backward_hits"] == 1  # compiled by the child, loaded here
    # dL/dW for a gradient of ones: each row is the sum of the inputs
    assert report["weight_grad"] == [[5.0, 7.0, 9.0, 11.0, 13.0]] * 3


def test_without_the_child_everything_compiles_here(tmp_path):
    report = run_cold(tmp_path, CNNC_COMPILE_CHILD="0")
    assert (report["forward_hits"], report["backward_hits"]) == (0, 0)
    assert report["weight_grad"] == [[5.0, 7.0, 9.0, 11.0, 13.0]] * 3
