"""The layer reference is written from the registry: every kind and argument appears."""

from cnnc.cli import main
from cnnc.compiler import reference
from cnnc.compiler.layers import KINDS


def test_every_kind_and_argument_is_listed(capsys):
    assert main(["layers"]) == 0
    text = capsys.readouterr().out
    for kind in KINDS:
        assert any(line.split()[0].startswith(kind.name) for line in text.splitlines()), kind.name
        for option in kind.options:
            assert f"    {option.name} " in text, (kind.name, option.name)


def test_markdown_has_one_row_per_kind():
    rows = [line for line in reference.markdown().splitlines() if line.startswith("| `")]
    assert len(rows) == len(KINDS)
    assert "`sN` stride (1)" in rows[0]
