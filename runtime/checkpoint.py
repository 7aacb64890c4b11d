"""Checkpoints: weights, optimizer state and training position in one safetensors file.

No pickle anywhere: tensors are safetensors, everything else is JSON in its string metadata.
Writes go to a temporary file in the same folder and are renamed over the old checkpoint, so an
interruption at any moment leaves either the old checkpoint or the new one, never half of one.

Loading trusts nothing in the file: the JSON metadata is validated against
``compiler/schemas/checkpoint.schema.json`` (the config's keys are TrainConfig's fields), every
tensor must be float32, and each tensor's SHA-256, stored beside the metadata, must match, so a
flipped byte is reported rather than trained on.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
from dataclasses import fields
from importlib.resources import files
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


def _digests(tensors: dict[str, np.ndarray]) -> dict[str, str]:
    return {name: hashlib.sha256(array.tobytes()).hexdigest() for name, array in tensors.items()}


def save(path: str | Path, tensors: dict[str, np.ndarray], meta: dict) -> None:
    """Write atomically; a full disk or an unwritable folder raises CheckpointError and leaves
    the previous checkpoint as it was."""
    from safetensors import SafetensorError
    from safetensors.numpy import save_file

    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    metadata = {"format": FORMAT, "meta": json.dumps(meta), "sha256": json.dumps(_digests(tensors))}
    try:
        save_file(tensors, str(temporary), metadata=metadata)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except (OSError, SafetensorError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        kept = "the previous checkpoint is intact" if path.is_file() else "nothing was saved"
        raise CheckpointError(f"{path}: cannot save the checkpoint ({reason}); {kept}") from None
    finally:
        with contextlib.suppress(OSError):  # never created (a read-only folder), or gone
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
        meta = json.loads(metadata["meta"], parse_constant=_no_constant, parse_float=_finite)
    except (KeyError, ValueError, RecursionError):
        raise CheckpointError(f"{path}: its metadata is damaged (not JSON)") from None
    _validate(meta, path)
    _check_tensors(tensors, metadata, path)
    return tensors, meta


def require_training_state(meta: dict, path) -> None:
    """A weights-only file (written by `cnnc export`/`cnnc import`) cannot resume a run."""
    if "progress" not in meta:
        raise CheckpointError(
            f"{path}: it holds weights only, no training state, so it cannot resume a run; "
            "evaluate or export it with --weights instead"
        )


def _no_constant(name: str):
    raise ValueError(f"{name} is not a number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


@functools.cache
def meta_schema() -> dict:
    """The shipped schema, with any TrainConfig field it does not list typed from its default."""
    from cnnc.compiler.training import CHOICES, TrainConfig

    text = files("cnnc.compiler").joinpath("schemas/checkpoint.schema.json").read_text()
    schema = json.loads(text)
    config = schema["properties"]["config"]["properties"]
    for field in fields(TrainConfig):
        if field.name not in config:
            kind = type(field.default)  # a default of another type (None, a tuple): any value
            config[field.name] = {
                bool: {"type": "boolean"},
                int: {"type": "integer"},
                float: {"type": "number"},
                str: {"type": "string"},
            }.get(kind, {})
    for name in list(config):
        if name not in {f.name for f in fields(TrainConfig)}:
            del config[name]
    for name, options in CHOICES.items():  # one list of choices: the spec's train section's
        if name in config:
            config[name] = {"enum": list(options)}
    return schema


def _validate(meta, path: Path) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(meta_schema())
    problem = jsonschema.exceptions.best_match(validator.iter_errors(meta))
    if problem is not None:
        where = ".".join(str(p) for p in problem.absolute_path)
        message = problem.message if len(problem.message) < 200 else problem.message[:200] + "…"
        raise CheckpointError(
            f"{path}: its metadata is damaged: " + (f"`{where}`: " if where else "") + message
        )


def _check_tensors(tensors: dict[str, np.ndarray], metadata: dict, path: Path) -> None:
    for name, array in tensors.items():
        if array.dtype != np.float32:
            raise CheckpointError(
                f"{path}: tensor `{name}` is {array.dtype}; cnnc checkpoints hold float32 only"
            )
    if "sha256" not in metadata:  # written before checksums were stored
        return
    try:
        stored = json.loads(metadata["sha256"])
    except ValueError:
        stored = None
    if not isinstance(stored, dict) or set(stored) != set(tensors):
        raise CheckpointError(f"{path}: its tensor checksums are damaged or name other tensors")
    for name, digest in _digests(tensors).items():
        if stored[name] != digest:
            raise CheckpointError(
                f"{path}: tensor `{name}` does not match its checksum: the file is corrupted"
            )


def check_fits(meta: dict, channels: int, output_shape: tuple[int, ...], path) -> None:
    """The parts of valid metadata that must agree with the network they are loaded into: one
    normalization value per input channel, a class name per output (or per output channel, for
    a network that classifies every pixel)."""
    for key in ("mean", "std"):
        if len(meta["normalization"][key]) != channels:
            raise CheckpointError(
                f"{path}: its normalization `{key}` has {len(meta['normalization'][key])} "
                f"values but the spec's input has {channels} channels"
            )
    names, outputs = meta["classes"], math.prod(output_shape)
    if names and len(names) not in (outputs, output_shape[0]):
        raise CheckpointError(
            f"{path}: it names {len(names)} classes but the network has {outputs} outputs"
        )


def split(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
