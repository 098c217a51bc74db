"""Pieces shared by every subcommand: exit codes, consoles, output and budget options."""

from __future__ import annotations

import contextlib
import enum
import os
import sys
from typing import Iterator

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from eexit_cli.errors import InputError
from eexit_cli.io.atomic import STDOUT, check_output, resolve_output, stdout_is_open, write_json

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class ExitCode(enum.IntEnum):
    """Exit codes of every ``eexit`` command."""

    OK = 0
    """Success; for ``evaluate``: within budget and above the accuracy gate."""
    GATE_FAILED = 1
    """``evaluate``: mean latency over budget (beyond tolerance) or accuracy below the gate."""
    INPUT_ERROR = 2
    """Usage error or unusable input (file, dataset, option, value); nothing was written."""
    INFEASIBLE = 3
    """The budget cannot be met (below the fastest exit) or cannot be certified."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C); nothing was written."""
    INTERNAL_ERROR = 70
    """A bug: please report it with the output of ``--debug``."""


EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 budget violated or accuracy below the gate (evaluate); "
    "2 usage or input error; 3 budget cannot be met or certified; 130 interrupted; "
    "70 internal error (rerun with --debug)."
)


class State:
    """Per-invocation settings shared by the subcommands (set by the group)."""

    def __init__(self, quiet: bool = False, debug: bool = False):
        self.quiet = quiet
        self.debug = debug
        self.stdout_lost = False  # the reader of stdout went away (e.g. `| head`)
        self.err = Console(stderr=True, quiet=quiet, highlight=False, soft_wrap=False)
        if not self.err.is_terminal:
            # a log file or a CI job: long lines stay whole rather than wrapped at 80 columns
            self.err.soft_wrap = True

    @property
    def interactive(self) -> bool:
        return self.err.is_terminal and not self.quiet


def get_state(ctx: click.Context | None = None) -> State:
    ctx = ctx or click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def output_option(help_text: str = "Write the JSON here ('-' = stdout). Default: stdout."):
    """The shared ``-o/--output`` option."""
    return click.option(
        "-o",
        "--output",
        "output",
        type=click.Path(allow_dash=True),
        default=None,
        help=help_text,
    )


def ignore_index_option(func):
    """The shared ``--ignore-index`` option (samples with this label are left out)."""
    return click.option(
        "--ignore-index", "ignore_index", type=int, default=None, metavar="LABEL",
        help="Leave out samples whose label is LABEL (e.g. -100, the PyTorch/Hugging Face "
             "label of padding tokens). Needs /labels in SPLIT.",
    )(func)


def check_output_target(output: str | None, inputs=(), *, to_stdout: bool | None = None,
                        option: str = "-o/--output") -> None:
    """Refuse, before any work, an output that would destroy an input or cannot be written,
    and a result meant for stdout when stdout is closed."""
    check_output(output, inputs, option)
    if to_stdout is None:
        to_stdout = resolve_output(output) == STDOUT
    if to_stdout and not stdout_is_open():
        raise InputError("stdout is closed; give -o FILE or run with stdout open")


def write_json_output(data, output: str | None) -> None:
    """Write a result to ``output`` (atomically) or to stdout when it is None or '-'.

    When the reader of stdout has gone away (``| head``, ``| true``) the rest of the
    output is dropped and the command goes on, so its verdict on stderr and its exit
    code are kept.
    """
    try:
        write_json(data, "-" if output in (None, "-") else output)
    except BrokenPipeError:
        discard_stdout()


def discard_stdout() -> None:
    """Point stdout at /dev/null after a broken pipe (later writes and the final flush
    then succeed quietly) and remember that the output was lost."""
    get_state().stdout_lost = True
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


@contextlib.contextmanager
def progress(description: str, total: int | None = None) -> Iterator:
    """A progress bar on stderr; a no-op callback when stderr is not a terminal or --quiet.

    Yields ``update(done, total=None)``.
    """
    state = get_state()
    if not state.interactive:
        yield lambda done, total=None: None
        return
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=state.err,
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=total)

        def update(done, total=None):
            if total is not None:
                bar.update(task, total=total)
            bar.update(task, completed=done)

        yield update


def _set_quiet(ctx, param, value):
    if value:
        state = get_state(ctx)
        state.quiet = True
        state.err.quiet = True
    return value


def _set_debug(ctx, param, value):
    if value:
        get_state(ctx).debug = True
    return value


def global_options(func):
    """``--quiet`` and ``--debug``, accepted before or after the subcommand name."""
    func = click.option(
        "-q", "--quiet", is_flag=True, expose_value=False, is_eager=True, callback=_set_quiet,
        help="No tables, progress bars or notes on stderr (errors and evaluate's one-line "
             "verdict are still printed).",
    )(func)
    func = click.option(
        "--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
        help="Show the full traceback of an error.",
    )(func)
    return func


def print_verdict(state: State, passed: bool, line: str) -> None:
    """A gate's one-line verdict (``PASS: ...`` or ``FAIL: ...``) on stderr.

    Printed even with --quiet, like errors: a CI log must always say why a gate failed.
    Coloured at a terminal, plain text elsewhere.
    """
    if state.err.is_terminal and not state.quiet:
        word, rest = line.split(":", 1)
        state.err.print(f"[{'green' if passed else 'red'}]{word}[/]:", end="")
        state.err.print(rest, markup=False, highlight=False)
    else:
        click.echo(line, err=True)
