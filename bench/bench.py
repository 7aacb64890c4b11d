#!/usr/bin/env python
"""cnnc against PyTorch CPU eager, in one process: the same spec, the same weights, interleaved.

    python bench/bench.py                      # the whole suite (a few minutes)
    python bench/bench.py --quick              # a short smoke run
    python bench/bench.py --cases 'lenet-*,cli-*' --repeats 9 --json out.json

See bench/README.md for what each case measures.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# glibc reads its malloc tuning only at process start: re-execute with it set (PyTorch's best
# CPU setting: large blocks stay on the heap instead of being mmapped and page-faulted per step).
MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
if any(key not in os.environ for key in MALLOC):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**MALLOC, **os.environ})

import numba  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from cnnc.compiler.check import check_file  # noqa: E402
from cnnc.runtime.network import Network  # noqa: E402
from cnnc.runtime.optim import Optimizer, OptimizerConfig  # noqa: E402

try:
    import torch
    import torch.nn.functional as F

    from cnnc.runtime import to_torch
except ImportError:
    torch = None

ROOT = Path(__file__).resolve().parent.parent
LR = 0.01
# name, spec, train|infer, batch, target speedup (torch time / cnnc time); the targets of issue 13
COMPUTE = [
    ("lenet-train-b1", "lenet5.cnn", "train", 1, 10.0),
    ("lenet-train-b16", "lenet5.cnn", "train", 16, 1.5),
    ("lenet-train-b64", "lenet5.cnn", "train", 64, 3.0),
    ("lenet-train-b256", "lenet5.cnn", "train", 256, 2.0),
    ("lenet-infer-b1", "lenet5.cnn", "infer", 1, 10.0),
    ("lenet-infer-b256", "lenet5.cnn", "infer", 256, 3.0),
    ("cifar-train-b64", "cifar_net.cnn", "train", 64, 1.5),
    ("cifar-train-b128", "cifar_net.cnn", "train", 128, 1.5),
    ("resnet-train-b32", "resnet_cifar.cnn", "train", 32, 1.5),
    ("mobilenet-train-b64", "bench/specs/mobilenet_cifar.cnn", "train", 64, 1.5),
    ("unet-train-b8", "unet_small.cnn", "train", 8, 1.5),
    ("se-train-b64", "bench/specs/se_cifar.cnn", "train", 64, 1.5),
]
# name, spec, batch of the first training step, target seconds for cold / warm start
STARTUP = [
    ("start-lenet", "lenet5.cnn", 64, 10.0, 0.5),
    ("start-resnet", "resnet_cifar.cnn", 32, 10.0, 0.5),
]
CLI = [("cli-check", "check", 0.5), ("cli-report", "report", None)]
ALL = ["sgemm"] + [c[0] for c in COMPUTE] + [s[0] for s in STARTUP] + [c[0] for c in CLI]


def spec(name: str) -> str:
    """A zoo spec by file name, or a path from the repository root (bench/specs/...)."""
    return str(ROOT / name if "/" in name else ROOT / "specs" / name)


def stats(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "samples": values,
    }


def interleaved(fns: dict, repeats: int, block_s: float) -> dict:
    """Warm each callable up, size a block of calls to take about block_s, then time blocks
    A B A B ... `repeats` times. Returns name -> seconds per call of each block."""
    counts = {}
    for name, fn in fns.items():
        for _ in range(3):
            fn()
        one = min(_timed(fn, 1) for _ in range(3))
        counts[name] = max(1, min(2000, round(block_s / max(one, 1e-7))))
        _timed(fn, counts[name])
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn, counts[name]))
    return times


def _timed(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def torch_model(checked, net, logits: bool):
    """The spec as its exported torch module (`cnnc export --to pytorch`) with the network's
    weights; its forward is one plain call per layer. With `logits` the final SOFTMAX is an
    Identity so that F.cross_entropy sees the logits, as cnnc's fused loss does."""
    module = to_torch.build(checked, net)
    last = checked.graph.nodes[checked.graph.output]
    if logits:
        if last.kind != "SOFTMAX":
            raise SystemExit(f"{checked.graph.path}: training needs a final SOFTMAX")
        parent, _, attr = last.name.rpartition(".")
        setattr(module.get_submodule(parent), attr, torch.nn.Identity())
    return module


def fastest_torch(step, args) -> bool:
    """Give PyTorch its faster convolution path for this case: oneDNN (the default) or its
    native im2col + MKL path, which wins on small inputs. Leaves the winner enabled."""

    def on(flag):
        torch.backends.mkldnn.enabled = flag
        step()

    trial = interleaved({f: lambda f=f: on(f) for f in (True, False)}, 3, args.block / 2)
    best = min(trial, key=lambda flag: statistics.median(trial[flag]))
    torch.backends.mkldnn.enabled = best
    return best


def steps(checked, mode: str, batch: int, sides=("cnnc", "torch")) -> tuple[dict, float | None]:
    """One step of each side on the same weights and inputs: {side: callable}, and the
    difference of their results (loss for a classifier, output otherwise). A training step of a
    net without a class output (the U-Net) backpropagates a fixed random output gradient."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *checked.graph.input_shape), dtype=np.float32)
    out_shape = tuple(checked.output.shape)
    classify = len(out_shape) == 1
    y = np.arange(batch) % out_shape[0]
    grad = rng.standard_normal((batch, *out_shape), dtype=np.float32)
    fns, check = {}, None
    net = Network(checked, batch, training=(mode == "train"), seed=0) if "cnnc" in sides else None
    if net is not None and mode == "train":
        opt = Optimizer(OptimizerConfig("sgd", LR, 0.9), net.P.size)

        def cnnc_step():
            if classify:
                net.loss_and_grad(x, y)
            else:
                net.forward(x, training=True)
                net.backward(grad)
            opt.step(net.P, net.G, LR)

        fns["cnnc"] = cnnc_step
    elif net is not None:
        fns["cnnc"] = lambda: net.forward(x)
    if torch is None or "torch" not in sides:
        return fns, check
    tx, ty, tg = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(grad)
    model = torch_model(checked, net, logits=(mode == "train" and classify))
    if mode == "train":
        topt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, foreach=True)

        def objective():
            out = model(tx)
            return F.cross_entropy(out, ty) if classify else (out * tg).sum()

        if net is not None:
            with torch.no_grad():
                if classify:
                    check = abs(objective().item() - net.loss_and_grad(x, y)[0])
                else:
                    check = float(np.abs(model(tx).numpy() - net.forward(x, training=True)).max())

        def torch_step():
            topt.zero_grad(set_to_none=True)
            objective().backward()
            topt.step()
    else:
        model.eval()
        if net is not None:
            with torch.inference_mode():
                check = float(np.abs(model(tx).numpy() - net.forward(x)).max())

        def torch_step():
            with torch.inference_mode():
                model(tx)

    fns["torch"] = torch_step
    return fns, check


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key + ":"))


def rss_child(spec_name: str, mode: str, batch: int, side: str) -> None:
    """Print the peak resident memory one side's training step adds (bytes), in this process:
    kernels loaded and libraries warmed at batch 1 first, then the peak-RSS mark reset
    (/proc/self/clear_refs), then the network, optimizer and data built at `batch` and 3 steps."""
    checked = check_file(spec(spec_name), verify_expects=False)
    for _ in range(2):
        steps(checked, mode, 1, (side,))[0][side]()
    import gc

    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    base = _status_kib("VmRSS")
    fn = steps(checked, mode, batch, (side,))[0][side]
    for _ in range(3):
        fn()
    print((_status_kib("VmHWM") - base) * 1024)


def step_memory(spec_name: str, mode: str, batch: int, side: str) -> int | None:
    """rss_child in a fresh process (peak RSS cannot be measured for one side of a shared one)."""
    env = {**os.environ, "NUMBA_NUM_THREADS": str(numba.get_num_threads())}
    argv = [sys.executable, __file__, "--rss-child", spec_name, mode, str(batch), side]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0 or not Path("/proc/self/clear_refs").exists():
        return None
    return int(done.stdout.split()[-1])


def compute_case(name, spec_name, mode, batch, target, args) -> dict:
    checked = check_file(spec(spec_name), verify_expects=False)
    fns, check = steps(checked, mode, batch)
    if "torch" in fns:
        mkldnn = fastest_torch(fns["torch"], args)
    before = fork_join()
    times = interleaved(fns, args.repeats, args.block)
    fork_join_s = max(before, fork_join())
    if torch is not None:
        torch.backends.mkldnn.enabled = True
    flops = (6 if mode == "train" else 2) * checked.macs * batch
    result = {
        "case": name,
        "spec": spec_name,
        "mode": mode,
        "batch": batch,
        "flops": flops,
        "target_speedup": target,
        "check_diff": check,
        "fork_join_s": fork_join_s,
    }
    if "torch" in fns:
        result["torch_conv"] = "onednn" if mkldnn else "native"
    if mode == "train":
        result["rss"] = {side: step_memory(spec_name, mode, batch, side) for side in fns}
    for side, values in times.items():
        result[side] = stats(values)
        result[side]["gflops"] = flops / statistics.median(values) / 1e9
    if "torch" in result:
        result["speedup"] = result["torch"]["median"] / result["cnnc"]["median"]
        pairs = [t / c for t, c in zip(times["torch"], times["cnnc"], strict=True)]
        result["speedup_paired"] = stats(pairs)
    return result


@numba.njit(parallel=True)
def _touch(a):
    for i in numba.prange(a.shape[0]):
        a[i] += 1.0


def fork_join() -> float:
    """Median seconds of an empty numba parallel region: a few µs when the cores are free."""
    touch = np.zeros(64, np.float32)
    _touch(touch)
    return statistics.median(_timed(lambda: _touch(touch), 1) for _ in range(100))


def sgemm(args) -> dict:
    """The machine's float32 matmul rate (numpy's OpenBLAS, 1024x1024), one and all threads;
    and the cost of an empty numba parallel region, which tells how busy the other cores are."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((1024, 1024), dtype=np.float32) for _ in range(2))
    c = np.empty_like(a)
    result = {"case": "sgemm", "n": 1024, "fork_join_s": fork_join()}
    for label, threads in (("1 thread", 1), ("all threads", os.cpu_count())):
        with threadpool_limits(threads, user_api="blas"):
            times = interleaved({"mm": lambda: np.matmul(a, b, out=c)}, args.repeats, args.block)
        rates = [2 * 1024**3 / t / 1e9 for t in times["mm"]]
        result[label] = {"peak_gflops": max(rates), "median_gflops": statistics.median(rates)}
    return result


CHILD = """
import sys, time
import numpy as np
from cnnc.runtime.network import Network
from cnnc.runtime.optim import Optimizer, OptimizerConfig
net = Network.from_file(sys.argv[1], batch=int(sys.argv[2]))
x = np.zeros((net.batch, *net.plan.input_shape), np.float32)
net.loss_and_grad(x, np.zeros(net.batch, np.int64))
Optimizer(OptimizerConfig("sgd", 0.01, 0.9), net.P.size).step(net.P, net.G, 0.01)
print(time.time())
"""


def start_to_first_step(spec_name: str, batch: int, cache: str) -> float:
    env = {**os.environ, "NUMBA_NUM_THREADS": str(numba.get_num_threads())}
    if cache:
        env["NUMBA_CACHE_DIR"] = cache
    start = time.time()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, spec(spec_name), str(batch)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.split()[-1]) - start


def startup_case(name, spec_name, batch, cold_target, warm_target, args) -> dict:
    """Process start to first training step done: with an empty numba cache, then with it
    (--quick: no cold compile; warm start with numba's own cache, filled by the cases above)."""
    result = {
        "case": name,
        "spec": spec_name,
        "batch": batch,
        "cold_s": None,
        "target_cold_s": cold_target,
        "target_warm_s": warm_target,
    }
    with tempfile.TemporaryDirectory(prefix="cnnc-bench-cache-") as cache:
        cache = None if args.quick else cache
        if cache:
            result["cold_s"] = start_to_first_step(spec_name, batch, cache)
        warm = [start_to_first_step(spec_name, batch, cache) for _ in range(args.starts)]
    return result | {"warm": stats(warm)}


def cli_case(name, command, target, args) -> dict:
    exe = Path(sys.executable).with_name("cnnc")
    argv = [str(exe)] if exe.exists() else [shutil.which("cnnc") or "cnnc"]
    argv += [command, spec("resnet50.cnn")]
    times = []
    for _ in range(args.starts + 2):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return {
        "case": name,
        "command": " ".join(["cnnc", *argv[1:2], "specs/resnet50.cnn"]),
        "wall": stats(times),
        "target_s": target,
    }


def machine() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in lscpu.splitlines()
            if line.startswith("Model name")
        ),
        "unknown",
    )
    blas = sorted(
        {
            f"{i['prefix']} {i['version']} {i.get('architecture', '')}".strip()
            for i in threadpool_info()
            if i["user_api"] == "blas"
        }
    )
    git = (
        subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        or None
    )
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "cpu": model,
        "git": git,
        "cpus": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "torch": torch.__version__ if torch else None,
        "torch_threads": torch.get_num_threads() if torch else None,
        "blas": blas,
        "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")},
        "malloc": {k: os.environ[k] for k in MALLOC},
    }


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def verdict(value, target, higher_is_better=True) -> str:
    if target is None:
        return ""
    ok = value >= target if higher_is_better else value < target
    return f"{'≥' if higher_is_better else '<'}{target:g} {'ok' if ok else 'MISS'}"


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(info: dict, results: list[dict]) -> str:
    out = [
        f"cnnc bench  {info['date']}  git {info['git']}  {info['cpu']}  ({info['cpus']} CPUs, "
        f"numba threads {info['numba_threads']}, "
        + (
            f"torch {info['torch']} threads {info['torch_threads']})"
            if info["torch"]
            else "torch not installed)"
        ),
        f"BLAS: {'; '.join(info['blas'])}; "
        f"{' '.join(f'{k}={v}' for k, v in info['openblas_env'].items()) or 'no OPENBLAS_*'}"
        f"; load average at start {info['load_avg_start'][0]:.2f}",
        "",
    ]
    peak = next((r for r in results if r["case"] == "sgemm"), None)
    if peak:
        out.append(
            "sgemm 1024x1024 float32 (numpy): "
            + ", ".join(
                f"{k} {v['peak_gflops']:.0f} GFLOP/s" for k, v in peak.items() if "thread" in k
            )
        )
        threads = info["numba_threads"]
        out.append(
            f"an empty numba parallel region ({threads} thread{'s' * (threads > 1)}) takes "
            f"{fmt_time(peak['fork_join_s'])} (a few µs on an idle machine; milliseconds "
            "when other processes keep the cores busy)"
        )
        peak = max(v["peak_gflops"] for k, v in peak.items() if "thread" in k)
    rows = [
        [
            "case",
            "batch",
            "cnnc median [min-max]",
            "torch median [min-max]",
            "speedup",
            "cnnc GFLOP/s",
            "% sgemm",
            "torch GFLOP/s",
            "torch conv",
            "|diff|",
            "fork-join",
            "target",
            "step RSS cnnc / torch",
        ]
    ]
    for r in (r for r in results if "mode" in r):
        t = r.get("torch")
        rows.append(
            [
                r["case"],
                str(r["batch"]),
                _span(r["cnnc"]),
                _span(t) if t else "-",
                f"{r['speedup']:.2f}x" if t else "-",
                f"{r['cnnc']['gflops']:.1f}",
                f"{100 * r['cnnc']['gflops'] / peak:.0f}%" if peak else "-",
                f"{t['gflops']:.1f}" if t else "-",
                r.get("torch_conv", "-"),
                f"{r['check_diff']:.1e}" if r["check_diff"] is not None else "-",
                fmt_time(r["fork_join_s"]),
                verdict(r["speedup"], r["target_speedup"]) if t else "",
                _memory(r.get("rss")),
            ]
        )
    if len(rows) > 1:
        out += [
            "",
            "speedup = torch time / cnnc time (medians); |diff| = |loss difference| "
            "(train) or max |output difference| (infer, U-Net) on identical weights; fork-join = "
            "an empty parallel region around the case (ms: the cores were busy); step RSS = the "
            "peak resident memory a training step adds (network, optimizer, data; own process)",
            table(rows),
        ]
    rows = [["case", "measure", "seconds", "target"]]
    for r in results:
        if "cold_s" in r:
            if r["cold_s"] is not None:
                rows.append(
                    [
                        r["case"],
                        "cold compile (empty cache)",
                        f"{r['cold_s']:.2f}",
                        verdict(r["cold_s"], r["target_cold_s"], False),
                    ]
                )
            rows.append(
                [
                    r["case"],
                    "warm start (median)",
                    f"{r['warm']['median']:.2f}",
                    verdict(r["warm"]["median"], r["target_warm_s"], False),
                ]
            )
        elif "command" in r:
            rows.append(
                [
                    r["case"],
                    r["command"],
                    f"{r['wall']['median']:.3f}",
                    verdict(r["wall"]["median"], r["target_s"], False),
                ]
            )
    if len(rows) > 1:
        out += [
            "",
            "start-up: process start to first training step done; CLI: wall time",
            table(rows),
        ]
    out += ["", f"load average at end {os.getloadavg()[0]:.2f}"]
    return "\n".join(out)


def _memory(rss: dict | None) -> str:
    """'12.3 / 45.6 MB <= ok' (cnnc's step memory against torch's, target cnnc <= torch)."""
    if not rss or rss.get("cnnc") is None:
        return ""
    mb = {side: f"{v / 1e6:.1f}" if v is not None else "-" for side, v in rss.items()}
    text = f"{mb['cnnc']} / {mb.get('torch', '-')} MB"
    if rss.get("torch") is not None:
        text += " ok" if rss["cnnc"] <= rss["torch"] else " MISS"
    return text


def _span(s: dict) -> str:
    return f"{fmt_time(s['median'])} [{fmt_time(s['min'])}-{fmt_time(s['max'])}]"


def main() -> int:
    if sys.argv[1:2] == ["--rss-child"]:  # step_memory's child: SPEC MODE BATCH SIDE
        spec_name, mode, batch, side = sys.argv[2:6]
        rss_child(spec_name, mode, int(batch), side)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--cases",
        help=f"comma-separated names or globs, e.g. 'lenet-*,sgemm'; cases: {', '.join(ALL)}",
    )
    parser.add_argument("--repeats", type=int, help="timed blocks per side (default 7, quick 3)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="threads for numba and torch (default: all CPUs)",
    )
    args = parser.parse_args()
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.block = 0.05 if args.quick else 0.3  # seconds per timed block
    args.starts = 1 if args.quick else 3  # warm starts / CLI runs (+2)
    patterns = args.cases.split(",") if args.cases else ["*"]
    chosen = [c for c in ALL if any(fnmatch.fnmatch(c, p) or c == p for p in patterns)]
    if not chosen:
        parser.error(f"no case matches {args.cases!r}; cases: {', '.join(ALL)}")
    numba.set_num_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    else:
        print("torch is not installed: timing cnnc alone", file=sys.stderr)
    runners = {"sgemm": (sgemm, ())} | {c[0]: (compute_case, c) for c in COMPUTE}
    runners |= {c[0]: (startup_case, c) for c in STARTUP} | {c[0]: (cli_case, c) for c in CLI}
    info, results = machine(), []
    for name in chosen:
        print(f"... {name}", file=sys.stderr, flush=True)
        run, case = runners[name]
        results.append(run(*case, args))
    print(report(info, results))
    if args.json:
        info["load_avg_end"] = os.getloadavg()
        Path(args.json).write_text(json.dumps({"machine": info, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
