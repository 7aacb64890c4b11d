"""How much augmentation slows a LeNet-5 training epoch (issue 16 asks <= ~10%).

Interleaves batches with and without augmentation in one process, so the ratio holds on a
loaded machine: python bench/augment_overhead.py [SPEC] [BATCHES]
"""

import sys
import time

import numpy as np

from cnnc.compiler.files import load
from cnnc.runtime.augment import Augment
from cnnc.runtime.batches import compute_normalization, iter_batches
from cnnc.runtime.network import Network
from cnnc.runtime.optim import Optimizer, OptimizerConfig
from cnnc.runtime.sources import load_data

spec = sys.argv[1] if len(sys.argv) > 1 else "specs/lenet5.cnn"
batches = int(sys.argv[2]) if len(sys.argv) > 2 else 120
data = load_data(None)
net = Network(load(spec, verify_expects=False), batch=64, training=True)
optimizer = Optimizer(OptimizerConfig("sgd", 0.05, 0.9), net.P.size)
norm = compute_normalization(data)
settings = {
    "none": None,
    "crop=2 flip": Augment(crop=2, flip=True),
    "crop=2 flip cutout=8": Augment(crop=2, flip=True, cutout=8),
    "all (rotate scale translate brightness contrast too)": Augment(
        crop=2, flip=True, rotate=10, scale=0.1, translate=1, brightness=0.2, contrast=0.2, cutout=8
    ),
}
times = {name: [] for name in settings}
rng = np.random.default_rng(0)
streams = {
    name: iter_batches(
        data,
        64,
        norm=norm,
        rng=rng,
        augment=None if a is None else (lambda x, b, a=a: a(x, 0, 0, b)),
    )
    for name, a in settings.items()
}
for x, y in iter_batches(data, 64, norm=norm):  # compile and warm up
    net.loss_and_grad(x, y)
    break
for _ in range(batches):
    for name, stream in streams.items():
        started = time.perf_counter()
        x, y = next(stream)
        net.loss_and_grad(x, y)
        optimizer.step(net.P, net.G, 0.05)
        times[name].append(time.perf_counter() - started)
base = np.median(times["none"])
print(f"{spec}, batch 64, {batches} batches each, median step {base * 1e3:.2f} ms")
for name, values in times.items():
    step = np.median(values)
    print(f"  {name:55s} {step * 1e3:7.2f} ms/step  {100 * (step / base - 1):+5.1f}%")
