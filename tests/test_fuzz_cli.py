"""A bounded fuzz of `cnnc.cli.main()`: mutated zoo specs through check, report, compile and fmt,
random command lines, damaged checkpoint metadata and damaged data files. Whatever comes in,
main returns a code from EXIT_CODES (or argparse exits 2) and prints no traceback. Nothing here
compiles kernels: the runtime parts call the loaders that a command would call first."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnc.cli import EXIT_CODES, main

SPECS = sorted((Path(__file__).parent.parent / "specs").glob("*.cnn"))
ZOO = {p.name: p.read_bytes() for p in SPECS}
CODES = set(EXIT_CODES.values()) | {0, 1, 2, 3}  # 3: `fmt --check` would reformat
FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SNIPPETS = [b"", b"\x00", b"\xff", b"->", b"(", b")", b"{", b"}", b"x1000", b"x0", b"@", b"\n",
            b"999999999999999999999", b"1e999", b"CONV", b"ADD(", b"block", b"in", b"out",
            b"expect", b"train {", b"#", b"\t", b"\r", b"\xef\xbb\xbf", b"nan"]  # fmt: skip


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exited:  # argparse refusing the command line
            code = exited.code
    text = err.getvalue()
    assert "Traceback" not in text, text
    assert code in CODES, (argv, code, text)
    return code, text


@st.composite
def mutated_spec(draw) -> bytes:
    data = bytearray(ZOO[draw(st.sampled_from(sorted(ZOO)))])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        cut = draw(st.integers(0, 12))
        piece = draw(st.one_of(st.sampled_from(SNIPPETS), st.binary(max_size=6)))
        data[at : at + cut] = piece
    return bytes(data)


@FUZZ
@given(source=mutated_spec(), command=st.sampled_from(["check", "report", "compile", "fmt"]))
def test_mutated_zoo_specs_through_the_commands(tmp_path, source, command):
    spec = tmp_path / "mutant.cnn"
    spec.write_bytes(source)
    argv = {"check": ["check", str(spec), "--format", "json"], "report": ["report", str(spec)],
            "compile": ["compile", str(spec), "--inference"],
            "fmt": ["fmt", "--check", str(spec)]}[command]  # fmt: skip
    code, err = run(argv)
    if code == 1 and command != "fmt":
        assert str(spec) in err or command == "check"  # a spec error names the file


WORDS = ["check", "report", "compile", "fmt", "layers", "diff", "--format", "json", "text",
         "markdown", "github", "--batch", "0", "-1", "1", "99999999999999999999", "--input",
         "3x32x32", "0x0x0", "1x999999999x999999999", "--depth", "--threads", "--inference",
         "-o", "/proc/x", "/dev/null", "--sizes", "--max-width", "nan", "\x00",
         "\x1b[31m"]  # fmt: skip


@FUZZ
@given(words=st.lists(st.sampled_from(WORDS), max_size=7), spec=st.sampled_from(SPECS))
def test_random_command_lines(tmp_path, monkeypatch, words, spec):
    monkeypatch.chdir(tmp_path)  # `-o` targets land here
    copy = tmp_path / spec.name  # `fmt` rewrites what it is given: never the zoo itself
    copy.write_bytes(ZOO[spec.name])
    run([*words[:1], *([str(copy)] if words[:1] != ["layers"] else []), *words[1:]])


def _valid_meta() -> dict:
    from cnnc.compiler.training import TrainConfig
    from cnnc.runtime.train import Progress

    rng = np.random.default_rng(0).bit_generator.state
    return {
        "spec_hash": "0" * 64,
        "network": "n",
        "config": asdict(TrainConfig()),
        "progress": asdict(Progress(1, 2, rng, 3, (1.0, 2, 3))),
        "normalization": {"mean": [0.5], "std": [0.25]},
        "classes": ["a", "b"],
        "optimizer_steps": 3,
    }


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5),
                   st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3),
                   st.integers(), max_size=2))  # fmt: skip


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


@FUZZ
@given(data=st.data())
def test_damaged_checkpoint_metadata_is_a_checkpoint_error(tmp_path, data):
    from safetensors.numpy import save_file

    from cnnc.runtime import checkpoint
    from cnnc.runtime.errors import CheckpointError

    meta = _valid_meta()
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(list(_paths(meta))[1:]))
        parent = meta
        for key in where[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = data.draw(VALUES)
    tensors = {"param/w": np.arange(4, dtype=np.float32)}
    path = tmp_path / "c.safetensors"
    text = json.dumps(meta)
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + data.draw(st.sampled_from(["", "}", "NaN", "1e999", '"', "[[["]))
            + text[at:]
        )
    metadata = {"format": checkpoint.FORMAT, "meta": text,
                "sha256": json.dumps(checkpoint._digests(tensors))}  # fmt: skip
    save_file(tensors, str(path), metadata)
    try:
        _, loaded = checkpoint.load(path)
    except CheckpointError as error:
        assert str(error).startswith(f"{path}: ")
        return
    checkpoint.check_fits(loaded, 1, (2,), path) if loaded["classes"] else None


def _npz(x, y) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    return buffer.getvalue()


def _idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(np.uint8).tobytes()


GOOD_DATA = {
    "d.npz": _npz(np.zeros((4, 6, 6), np.uint8), np.array([0, 1, 0, 1])),
    "train-images-idx3-ubyte": _idx(np.zeros((4, 6, 6), np.uint8)),
}


@FUZZ
@given(name=st.sampled_from(sorted(GOOD_DATA)), data=st.data())
def test_damaged_data_files_are_data_errors(tmp_path, name, data):
    from cnnc.runtime.errors import DataError
    from cnnc.runtime.sources import load_data

    raw = bytearray(GOOD_DATA[name])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        raw[at : at + data.draw(st.integers(0, 8))] = data.draw(st.binary(max_size=8))
    (tmp_path / name).write_bytes(bytes(raw))
    if name.startswith("train-"):
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx(np.array([0, 1, 0, 1])))
    try:
        load_data(str(tmp_path / name))
    except DataError as error:
        assert str(tmp_path) in str(error) or name in str(error)


def test_a_zip_member_named_like_an_array_but_holding_junk(tmp_path):
    from cnnc.runtime.errors import DataError
    from cnnc.runtime.sources import load_data

    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': 1}    \n")
        archive.writestr("y.npy", b"")
    with pytest.raises(DataError, match="d.npz"):
        load_data(str(path))
