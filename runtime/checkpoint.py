"""Checkpoints: weights, optimizer state and training position in one safetensors file.

No pickle anywhere: tensors are safetensors, everything else is JSON in its string metadata.
Writes go to a temporary file in the same folder and are renamed over the old checkpoint, so an
interruption at any moment leaves either the old checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .errors import CheckpointError

FILENAME = "checkpoint.safetensors"
FORMAT = "cnnc-checkpoint-1"


def spec_hash(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def resolve(path: str | Path) -> Path:
    """A checkpoint file, or a run folder holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint here")
    return path


def save(path: str | Path, tensors: dict[str, np.ndarray], meta: dict) -> None:
    from safetensors.numpy import save_file

    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    metadata = {"format": FORMAT, "meta": json.dumps(meta)}
    try:
        save_file(
            {k: np.ascontiguousarray(v) for k, v in tensors.items()},
            str(temporary),
            metadata=metadata,
        )
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def load(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = resolve(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cnnc checkpoint (no `{FORMAT}` metadata)")
    try:
        meta = json.loads(metadata["meta"])
    except (KeyError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: its metadata is damaged") from None
    return tensors, meta


def split(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
