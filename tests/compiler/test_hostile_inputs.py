"""Issue 14, the compiler's side: no code from a cache, no writes through symlinks, no files
outside a checked folder, no raw escape codes, no blocking on pipes, refused negative slopes."""

import os
import pickle

import pytest

from cnnc.cli import main
from cnnc.compiler import syntax
from cnnc.compiler.files import write_bytes_atomic
from cnnc.terminal import escape

SPEC = "network a\ninput 7\nFC 7 -> RELU -> FC 5\n"


class _Planted:
    def __reduce__(self):
        return (os.mkdir, ("/tmp/cnnc-planted-pickle-ran",))


def test_a_planted_grammar_cache_is_never_unpickled(tmp_path, monkeypatch):
    if os.path.isdir("/tmp/cnnc-planted-pickle-ran"):
        os.rmdir("/tmp/cnnc-planted-pickle-ran")
    cache = tmp_path / "cnnc"
    cache.mkdir()
    blob = pickle.dumps(_Planted())
    (cache / "grammar.lark-cache").write_bytes(blob)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    syntax._parser.cache_clear()
    try:
        for name in os.listdir(cache):  # and the JSON table, once written, tampered with
            (cache / name).write_bytes(blob)
        syntax._parser()
        syntax._parser.cache_clear()
        written = [n for n in os.listdir(cache) if n.endswith(".json")]
        assert written
        (cache / written[0]).write_bytes(blob)
        assert syntax._parser().parse(SPEC) is not None
    finally:
        syntax._parser.cache_clear()
    assert not os.path.exists("/tmp/cnnc-planted-pickle-ran")


def test_a_damaged_grammar_table_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    syntax._parser.cache_clear()
    try:
        syntax._parser()
        (table,) = (tmp_path / "cnnc").glob("grammar-*.json")
        table.write_text(table.read_text().replace('"RBRACE"', '"LBRACE"', 1))
        syntax._parser.cache_clear()
        assert syntax.parse(SPEC).name == "a"
    finally:
        syntax._parser.cache_clear()


def test_atomic_writes_refuse_symlinks_and_special_files(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "plan.json"
    link.symlink_to(victim)
    with pytest.raises(OSError):
        write_bytes_atomic(link, b"x")
    assert victim.read_text() == "keep"
    planted = tmp_path / f".out.tmp{os.getpid()}"
    planted.symlink_to(victim)
    write_bytes_atomic(tmp_path / "out", b"new")
    assert victim.read_text() == "keep" and (tmp_path / "out").read_bytes() == b"new"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError):
        write_bytes_atomic(fifo, b"x")


def test_check_dir_ignores_symlinks_out_of_it(tmp_path, capsys):
    outside = tmp_path / "secret.cnn"
    outside.write_text("SECRET first line\n")
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "good.cnn").write_text(SPEC)
    (folder / "evil.cnn").symlink_to(outside)
    assert main(["check", str(folder)]) == 0
    assert "SECRET" not in capsys.readouterr().out


def test_fifo_as_spec_is_refused(tmp_path, capsys):
    fifo = tmp_path / "spec.cnn"
    os.mkfifo(fifo)
    assert main(["check", str(fifo)]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_control_characters_in_echoed_source_are_escaped(tmp_path, capsys):
    path = tmp_path / "bad.cnn"
    path.write_text("network a\ninput 7\nFC 7 -> \x1b]0;pwned\x07BOGUS\n")
    assert main(["check", str(path)]) == 1
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err
    assert escape("a\x1b[2Jb\n\t\u202e") == "a\\x1b[2Jb\n\t\\u202e"


@pytest.mark.parametrize(
    "layer", ["ELU alpha=-0.5", "LEAKYRELU slope=-0.5", "LEAKYRELU slope=-1e-3"]
)
def test_negative_slopes_are_refused_where_written(tmp_path, capsys, layer):
    path = tmp_path / "neg.cnn"
    path.write_text(f"network a\ninput 7\nFC 7 -> {layer} -> FC 5\n")
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr()
    text = err.out + err.err
    assert ":3:9: error:" in text and "is negative" in text


def test_a_number_too_long_for_int_is_a_located_error(tmp_path, capsys):
    path = tmp_path / "huge.cnn"
    path.write_text("network a\ninput 7\nFC " + "9" * 4400 + "\n")
    assert main(["check", str(path)]) == 1
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert ":3:4: error: a number with 4,400 digits" in text and "Traceback" not in text
