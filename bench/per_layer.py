#!/usr/bin/env python
"""Where a cnnc training step spends its time, per plan step, next to PyTorch's phases.

    python bench/per_layer.py specs/cifar_net.cnn --batch 64
    python bench/per_layer.py specs/lenet5.cnn --batch 1 --ops      # + PyTorch's top operators

cnnc: each plan step's forward and backward kernel timed on its own (median of --repeats;
one Python call per kernel, so a few microseconds of dispatch are included per row).
PyTorch: forward, loss, backward and optimizer step of the same network and weights.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (re-executes with the malloc settings, as bench.py does)

# isort: split
import numba  # noqa: E402
import numpy as np  # noqa: E402

from cnnc.compiler.check import check_file  # noqa: E402
from cnnc.runtime import executor  # noqa: E402
from cnnc.runtime.kernels.loss import softmax_cross_entropy  # noqa: E402
from cnnc.runtime.network import Network  # noqa: E402
from cnnc.runtime.optim import Optimizer, OptimizerConfig  # noqa: E402


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sgemm_peak(threads: int, repeats: int) -> float:
    """The best float32 1024 x 1024 matmul rate (GFLOP/s) of numpy's OpenBLAS on `threads`."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((1024, 1024), dtype=np.float32) for _ in range(2))
    c = np.empty_like(a)
    with bench.threadpool_limits(threads, user_api="blas"):
        np.matmul(a, b, out=c)
        best = min(median_time(lambda: np.matmul(a, b, out=c), 3) for _ in range(repeats // 3 + 1))
    return 2 * 1024**3 / best / 1e9


def cnnc_profile(checked, batch, x, y, repeats):
    net = Network(checked, batch, training=True, seed=0)
    plan, n = net.plan, batch
    opt = Optimizer(OptimizerConfig("sgd", bench.LR, 0.9), net.P.size)
    for _ in range(3):
        net.loss_and_grad(x, y)
    args = (net.A, net.P, net.G, net.S, net.W)
    fwd, bwd = [[] for _ in plan.steps], [[] for _ in plan.steps]
    for _ in range(repeats):
        net.forward(x, training=True)  # loads the input; the pass is then redone step by step
        for s in range(len(plan.steps)):
            start = time.perf_counter()
            net.executor.forward_step(net.rows[s, 0], *args, net.rows[s], net.frows[s], n, True, s)
            fwd[s].append(time.perf_counter() - start)
        logits = plan.tensors[plan.logits]
        softmax_cross_entropy(net.A, logits.offset, logits.grad_offset, net.classes, y, n)
        net.G[:] = 0.0
        for s in range(plan.backward_from, -1, -1):
            start = time.perf_counter()
            executor.zero_input_grads(net.A, net.rows[s], n)
            net.executor.backward_step(net.rows[s, 0], *args, net.rows[s], net.frows[s], n, True, s)
            bwd[s].append(time.perf_counter() - start)
    whole = median_time(lambda: net.loss_and_grad(x, y), repeats)
    update = median_time(lambda: opt.step(net.P, net.G, bench.LR), repeats)
    macs = {layer.node.name: layer.macs for layer in checked.layers}
    rows = [
        (
            step.name,
            step.kind,
            statistics.median(fwd[s]),
            statistics.median(bwd[s]) if bwd[s] else 0.0,
            macs.get(step.name, 0) * batch,
        )
        for s, step in enumerate(plan.steps)
    ]
    return rows, whole, update


def torch_profile(checked, batch, x, y, repeats, ops):
    import torch
    import torch.nn.functional as F

    net = Network(checked, batch, training=True, seed=0)
    model = bench.torch_model(checked, net, logits=True)
    opt = torch.optim.SGD(model.parameters(), lr=bench.LR, momentum=0.9, foreach=True)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    phases = {"forward": [], "loss": [], "backward": [], "optimizer": []}
    for rep in range(repeats + 3):
        marks = [time.perf_counter()]
        opt.zero_grad(set_to_none=True)
        out = model(tx)
        marks.append(time.perf_counter())
        loss = F.cross_entropy(out, ty)
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        opt.step()
        marks.append(time.perf_counter())
        if rep >= 3:
            for values, a, b in zip(phases.values(), marks, marks[1:], strict=False):
                values.append(b - a)
    result = {name: statistics.median(values) for name, values in phases.items()}
    if ops:
        with torch.autograd.profiler.profile() as prof:
            for _ in range(repeats):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(tx), ty).backward()
                opt.step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--ops", action="store_true", help="print PyTorch's top operators")
    args = parser.parse_args()
    if args.threads:
        numba.set_num_threads(args.threads)
    checked = check_file(args.spec, verify_expects=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, *checked.graph.input_shape), dtype=np.float32)
    y = np.arange(args.batch) % checked.output.shape[0]
    rows, whole, update = cnnc_profile(checked, args.batch, x, y, args.repeats)
    fmt = bench.fmt_time
    peak = sgemm_peak(numba.get_num_threads(), args.repeats)
    table = [["step", "kind", "forward", "backward", "fwd GFLOP/s", "bwd GFLOP/s", "% peak"]]
    for name, kind, f, b, macs in rows:
        rate = 6 * macs / (f + b) / 1e9 if macs and b else None
        table.append(
            [
                name,
                kind,
                fmt(f),
                fmt(b) if b else "-",
                f"{2 * macs / f / 1e9:.1f}" if macs else "",
                f"{4 * macs / b / 1e9:.1f}" if macs and b else "",
                f"{100 * rate / peak:.0f}%" if rate else "",
            ]
        )
    total_f, total_b = sum(r[2] for r in rows), sum(r[3] for r in rows)
    total_macs = sum(r[4] for r in rows)
    overall = 6 * total_macs / (total_f + total_b) / 1e9
    table.append(["sum", "", fmt(total_f), fmt(total_b), "", "", f"{100 * overall / peak:.0f}%"])
    print(
        f"cnnc {checked.graph.name} batch {args.batch}, {numba.get_num_threads()} threads; "
        f"% peak = forward + backward GFLOP/s of the step / sgemm 1024 peak, {peak:.0f} GFLOP/s"
    )
    print(bench.table(table))
    print(f"loss_and_grad (one call) {fmt(whole)}, optimizer step {fmt(update)}")
    if bench.torch is not None:
        bench.torch.set_num_threads(args.threads or numba.get_num_threads())
        phases = torch_profile(checked, args.batch, x, y, args.repeats, args.ops)
        print(
            f"\ntorch ({bench.torch.get_num_threads()} threads): "
            + ", ".join(f"{name} {fmt(t)}" for name, t in phases.items())
            + f"; total {fmt(sum(phases.values()))}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
