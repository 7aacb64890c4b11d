"""`cnnc COMMAND --help` states the default of every option; `cnnc --version` answers."""

import argparse

import pytest

from cnnc import __version__
from cnnc.cli import _subparsers, main, parser


def test_every_option_of_every_command_has_help_with_its_default():
    missing = []
    for command in _subparsers(parser()):
        for action in command._actions:
            if not action.option_strings or isinstance(action, argparse._HelpAction):
                continue
            if not action.help or "default" not in action.help:
                missing.append(f"{command.prog} {action.option_strings[0]}")
    assert not missing, missing


def test_help_renders_for_every_command(capsys):
    for command in _subparsers(parser()):
        command.format_help()  # no %-formatting error in any help string
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"cnnc {__version__}"
