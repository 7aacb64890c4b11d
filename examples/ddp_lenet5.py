"""Train the exported LeNet-5 module with PyTorch DistributedDataParallel: 2 processes, the gloo
backend on 127.0.0.1, the bundled Fashion-MNIST sample.

    cnnc export specs/lenet5.cnn --to pytorch -o lenet5.py     # or let this script do it
    python examples/ddp_lenet5.py --module lenet5.py --steps 50 --out runs/ddp

Each rank trains on its half of every global batch; DDP averages the gradients, so both ranks
hold the same weights after every step. Each rank writes its final weights (safetensors, under
the spec's names) and its losses to --out; rank 0 prints the summary. On a GPU cluster the same
script runs with backend "nccl", one process per GPU, the module moved to its device, and
torchrun's environment in place of the loopback address.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import socket
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2


def export_module(spec: Path, out: Path) -> Path:
    """`cnnc export SPEC --to pytorch`, into the run folder."""
    from cnnc.cli import main

    target = out / f"{spec.stem}.py"
    if main(["export", str(spec), "--to", "pytorch", "-o", str(target)]) != 0:
        raise SystemExit(f"cnnc export {spec} failed")
    return target


def load_module_class(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    classes = [
        v for v in vars(module).values() if isinstance(v, type) and hasattr(v, "from_safetensors")
    ]
    return module, classes[0]


def training_data():
    """The bundled sample, normalised by its training statistics (as `cnnc train` does)."""
    from cnnc.runtime.batches import compute_normalization, normalize
    from cnnc.runtime.sources import load_data

    data = load_data("default")
    norm = compute_normalization(data)
    return normalize(data.x, norm), data.y.astype(np.int64)


def worker(rank: int, args, port: int) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from safetensors.torch import save_file
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD)  # fmt: skip
    try:
        _, cls = load_module_class(Path(args.module))
        weights = Path(args.module).with_suffix(".safetensors")  # what `cnnc export` wrote
        torch.manual_seed(args.seed)  # else the same initial weights on both ranks
        model = cls.from_safetensors(str(weights)) if weights.exists() else cls()
        last = list(model.named_modules())[-1]
        if isinstance(last[1], torch.nn.Softmax):  # train on logits: cross_entropy has the softmax
            parent, _, attr = last[0].rpartition(".")
            setattr(model.get_submodule(parent), attr, torch.nn.Identity())
        ddp = DistributedDataParallel(model)
        optimizer = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9)
        x, y = training_data()
        order = np.random.default_rng(args.seed).permutation(len(x))  # one order for all ranks
        losses = []
        for step in range(args.steps):
            batch = order[(step * args.batch) % len(x) :][: args.batch]
            mine = batch[rank::WORLD]  # this rank's half of the global batch
            inputs, labels = torch.from_numpy(x[mine]), torch.from_numpy(y[mine])
            optimizer.zero_grad()
            loss = F.cross_entropy(ddp(inputs), labels)
            loss.backward()  # gradients all-reduced (averaged) across the ranks here
            optimizer.step()
            losses.append(float(loss.detach()))
        out = Path(args.out)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(out / f"rank{rank}.safetensors"))
        (out / f"rank{rank}.json").write_text(json.dumps({"losses": losses}))
        dist.barrier()
        if rank == 0:
            head, tail = np.mean(losses[:5]), np.mean(losses[-5:])
            print(
                f"{WORLD} ranks, {args.steps} steps of {args.batch}: loss {head:.3f} -> {tail:.3f}"
            )
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", help="an exported module file (default: export the spec)")
    parser.add_argument("--spec", default=str(ROOT / "specs" / "lenet5.cnn"))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=64, help="global batch (both ranks)")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/ddp_lenet5")
    args = parser.parse_args(argv)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.module is None:
        args.module = str(export_module(Path(args.spec), Path(args.out)))
    import torch.multiprocessing as mp

    mp.spawn(worker, args=(args, free_port()), nprocs=WORLD, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
