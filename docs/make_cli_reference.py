"""Regenerate docs/cli.md from the commands' own --help text.

    python docs/make_cli_reference.py > docs/cli.md

A test checks that docs/cli.md is up to date.
"""

from __future__ import annotations

import click

from eexit_cli.cli.main import cli

HEADER = """# CLI reference

Generated from `--help` by `python docs/make_cli_reference.py > docs/cli.md`; do not edit by hand.
Every command also accepts `-q/--quiet` (no tables, progress bars or notes on stderr) and
`--debug` (full traceback on error). Data goes to stdout (or `-o FILE`); everything for people
goes to stderr.
"""


def _help(command: click.Command, path: list[str]) -> str:
    extra = dict(command.context_settings)
    extra.update(terminal_width=100, max_content_width=100)
    with command.make_context(" ".join(path), [], resilient_parsing=True, **extra) as ctx:
        return command.get_help(ctx)


def render() -> str:
    parts = [HEADER, "## eexit\n", "```text\n" + _help(cli, ["eexit"]) + "\n```\n"]
    for name in sorted(cli.commands):
        parts.append(f"## eexit {name}\n")
        parts.append("```text\n" + _help(cli.commands[name], ["eexit", name]) + "\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
