"""Every registered command has help with an example and is documented; --version and
``python -m eexit_cli`` work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from eexit_cli import __version__
from eexit_cli.cli.main import cli

CLI_DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _commands(group: click.Group, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        yield prefix + (name,)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


COMMANDS = list(_commands(cli))


def invoke(*args):
    return CliRunner().invoke(cli, list(args), prog_name="eexit")


def test_the_core_commands_are_registered():
    assert ("evaluate",) in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_command_help_has_an_example(path):
    result = invoke(*path, "--help")
    assert result.exit_code == 0, result.stderr
    assert f"eexit {' '.join(path)}" in result.stdout
    assert re.search(r"examples?:", result.stdout, re.IGNORECASE), result.stdout
    assert "Exit codes" in result.stdout
    assert invoke(*path, "-h").stdout == result.stdout


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_command_is_documented(path):
    if not CLI_DOC.is_file():
        pytest.skip(f"{CLI_DOC} not written yet")
    text = CLI_DOC.read_text()
    assert f"eexit {' '.join(path)}" in text, f"docs/cli.md does not document `eexit {' '.join(path)}`"


def test_cli_reference_is_generated_from_the_current_help():
    sys.path.insert(0, str(CLI_DOC.parent))
    try:
        import make_cli_reference
    finally:
        sys.path.pop(0)
    assert CLI_DOC.read_text() == make_cli_reference.render(), (
        "docs/cli.md is stale: run `python docs/make_cli_reference.py > docs/cli.md`"
    )


def test_group_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0
    for (name, *_rest) in COMMANDS:
        assert name in result.stdout
    assert "Exit codes" in result.stdout


def test_version():
    for flag in ("--version", "-V"):
        result = invoke(flag)
        assert result.exit_code == 0
        assert __version__ in result.stdout
        assert result.stdout.startswith("eexit")


def test_unknown_command_is_a_usage_error():
    result = invoke("frobnicate")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert "frobnicate" in result.stderr


def test_python_dash_m():
    proc = subprocess.run(
        [sys.executable, "-m", "eexit_cli", "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert "evaluate" in proc.stdout
    assert proc.stderr == ""
    proc = subprocess.run(
        [sys.executable, "-m", "eexit_cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert __version__ in proc.stdout
