"""The README's Python example runs as written."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_python_api_example_runs(monkeypatch):
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README.md has no python example"
    monkeypatch.chdir(ROOT)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_language_examples_of_todays_layers_check():
    """Each whole spec in docs/LANGUAGE.md's section on today's layers checks, expects included."""
    from cnnc.compiler.check import check
    from cnnc.compiler.expand import expand
    from cnnc.compiler.syntax import parse

    text = (ROOT / "docs" / "LANGUAGE.md").read_text()
    section = text.split("## Layers of today's architectures")[1].split("\n## ")[0]
    specs = re.findall(r"(?m)^    input [^\n]*\n(?:    [^\n]*\n)+", section)
    assert len(specs) == 4
    for spec in specs:
        source = "\n".join(line[4:] for line in spec.splitlines())
        assert "expect" in source
        check(expand(parse(source, "LANGUAGE.md")), verify_expects=True)
