"""Cold-cache compilation on two cores.

Numba compiles one function at a time in a process (a global compiler lock), and with an empty
cache the row adapters of a plan are nearly all of its start-up. So when more than one of them
is missing from the cache and a second core is free, a child process compiles part of them
into a private cache folder while this process compiles the rest; their cache files then move
into the shared cache, where loading one takes milliseconds. (PyTorch's inductor compiles in
worker processes for the same reason.) Whoever finishes first takes over the other's work: each
kernel is claimed (an exclusively created file) before it is compiled, the child from the front
of its list, this process, done with its own, from the back.

Numba's cache takes no lock: two processes saving entries of one function under different
signatures can overwrite each other's data file. The child therefore writes only to its own
folder, and only the entries of the kernels it was given move over: each is one row adapter,
compiled only for KERNEL_ARGS and linked with its callees, so nothing else is needed to load it.

Everything here is an optimisation: if the child fails, or numba's cache is laid out otherwise,
the kernels it had are compiled here as before.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numba

# A kernel given to the child: ("forward" or "backward", index in the kernel table).
KernelId = tuple[str, int]
# A child still compiling after this long is stopped and its kernels compiled here (a kernel
# takes seconds, a minute on a crowded machine).
CHILD_TIMEOUT_S = 600


def is_cached(kernel, signature) -> bool:
    """Whether numba's cache holds `kernel` for `signature` (read from its index, not loaded)."""
    try:
        cache = kernel._cache
        key = cache._index_key(signature, kernel.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - another numba layout: assume cold, compile as before
        return False


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Child:
    """A process compiling some kernels into its own cache folder."""

    def __init__(self, kernels: dict[KernelId, object]):
        self.kernels = kernels
        cache = Path(numba.config.CACHE_DIR)  # <root>/<digest of the kernel sources>
        cache.parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="compiling-", dir=cache.parent))
        self.digest = cache.name
        self.claims = self.root / "claims"
        self.claims.mkdir()
        self.taken: set[KernelId] = set()  # claimed back by this process
        names = [f"{table}:{index}" for table, index in kernels]
        env = {**os.environ, "NUMBA_CACHE_DIR": str(self.root), CLAIMS: str(self.claims)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cnnc.runtime.compile_pool", *names],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def take(self, kernel: KernelId) -> bool:
        """Claim one of the child's kernels for this process; False once the child has it."""
        if claim(self.claims, kernel):
            self.taken.add(kernel)
            return True
        return False

    def collect(self) -> None:
        """Wait for the child, then move its kernels' cache entries into the shared cache (data
        files first, the index last, each by an atomic rename) and remove its folder."""
        try:
            if self.process.wait(timeout=CHILD_TIMEOUT_S) != 0:
                return
            shared = Path(numba.config.CACHE_DIR)
            for kid, kernel in self.kernels.items():
                if kid in self.taken:
                    continue
                cache = kernel._cache._cache_file
                relative = Path(cache._cache_path).relative_to(shared)
                source = self.root / self.digest / relative
                index = source / cache._index_name
                if not index.is_file():
                    continue
                target = Path(cache._cache_path)
                target.mkdir(parents=True, exist_ok=True)
                base = cache._index_name[: -len(".nbi")]
                for data in source.glob(f"{base}.*.nbc"):
                    os.replace(data, target / data.name)
                os.replace(index, target / index.name)
        except Exception:  # noqa: BLE001 - a timeout, a failed move: those kernels compile here
            pass
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Stop the child if it still runs and remove its folder."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


CLAIMS = "CNNC_COMPILE_CLAIMS"  # the child's environment: the folder of claims


def claim(folder: Path, kernel: KernelId) -> bool:
    """Create the kernel's claim; False if the other process made it first."""
    try:
        os.close(os.open(folder / f"{kernel[0]}-{kernel[1]}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def start(todo: list[tuple[KernelId, object]], signature) -> tuple[Child | None, list]:
    """Hand about half of the uncached kernels in `todo` to a child process when a second core
    is free. Returns the child (or None) and the (id, kernel) pairs left to this process, in
    order. The backward kernels go to the child first: a training plan's forward and backward
    kernels take about as long to compile, and the forward ones are needed first."""
    cold = [(kid, kernel) for kid, kernel in todo if not is_cached(kernel, signature)]
    if len(cold) < 2 or _cores() < 2 or os.environ.get("CNNC_COMPILE_CHILD") == "0":
        return None, todo
    backward = [item for item in cold if item[0][0] == "backward"]
    given = backward if 0 < len(backward) < len(cold) else cold[1::2]
    try:
        child = Child(dict(given))
    except OSError:  # no folder or process to spare: compile everything here
        return None, todo
    handed = {kid for kid, _ in given}
    return child, [item for item in todo if item[0] not in handed]


def _main(names: list[str]) -> None:
    from cnnc.runtime.executor import KERNEL_ARGS
    from cnnc.runtime.table import BACKWARD, FORWARD

    tables = {"forward": FORWARD, "backward": BACKWARD}
    claims = Path(os.environ[CLAIMS])
    for name in names:
        table, index = name.split(":")
        if claim(claims, (table, int(index))):
            tables[table][int(index)].compile(KERNEL_ARGS)


if __name__ == "__main__":
    _main(sys.argv[1:])
