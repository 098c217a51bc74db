"""The ``eexit`` command group: global options and the translation of errors into
one-line messages and documented exit codes."""

from __future__ import annotations

import sys
import traceback

import click

from eexit_cli import __version__
from eexit_cli.cli.common import (
    CONTEXT_SETTINGS,
    EXIT_CODES_HELP,
    ExitCode,
    State,
    discard_stdout,
    get_state,
    global_options,
)
from eexit_cli.errors import EexitError, InfeasibleBudgetError


def _error_line(message: str, prog: str = "eexit") -> None:
    # one line whatever the message holds (e.g. a library's multi-line text)
    message = " ".join(str(message).split())
    click.echo(f"{prog}: error: {message}", err=True)


class EexitGroup(click.Group):
    """A click group that turns library errors into one line and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            prog = exc.ctx.command_path if exc.ctx is not None else "eexit"
            hint = f" (see '{prog} --help')" if exc.ctx is not None else ""
            _error_line(f"{exc.format_message()}{hint}", prog)
            sys.exit(ExitCode.INPUT_ERROR)
        except click.ClickException as exc:
            _error_line(exc.format_message())
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            _error_line("interrupted; nothing was written")
            sys.exit(ExitCode.INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        def _error(message: str) -> None:
            prog = " ".join(x for x in (ctx.command_path, ctx.invoked_subcommand) if x)
            _error_line(message, prog)

        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            _error("interrupted; nothing was written")
            ctx.exit(ExitCode.INTERRUPTED)
        except BrokenPipeError:
            # the reader of our stdout went away (e.g. `| head`) outside the guarded
            # writes; data writes are guarded (write_json_output), so this is output lost
            # before any verdict: never report success for it
            discard_stdout()
            _error("stdout was closed by its reader before the output was complete")
            ctx.exit(ExitCode.INPUT_ERROR)
        except Exception as exc:  # translated at the edge, see STYLE: errors
            if get_state().debug:
                # the traceback, then the same one line and exit code as without --debug
                traceback.print_exc(file=sys.stderr)
            if isinstance(exc, InfeasibleBudgetError):
                _error(str(exc))
                ctx.exit(ExitCode.INFEASIBLE)
            if isinstance(exc, (EexitError, ValueError)):
                _error(str(exc))
                ctx.exit(ExitCode.INPUT_ERROR)
            if isinstance(exc, OSError):
                name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
                _error(f"{name}{exc.strerror or exc}")
                ctx.exit(ExitCode.INPUT_ERROR)
            if isinstance(exc, MemoryError):
                _error("out of memory; try a smaller file or fewer budgets")
                ctx.exit(ExitCode.INTERNAL_ERROR)
            _error(f"internal error ({type(exc).__name__}: {exc}); rerun with --debug for the traceback")
            ctx.exit(ExitCode.INTERNAL_ERROR)


@click.group(
    cls=EexitGroup,
    context_settings=CONTEXT_SETTINGS,
    epilog=EXIT_CODES_HELP,
)
@click.version_option(__version__, "-V", "--version", prog_name="eexit")
@global_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Latency-aware early-exit inference.

    An early-exit model answers at the first exit whose confidence is above
    that exit's threshold. eexit picks the thresholds that maximise accuracy
    under a mean-latency budget (Tan et al., AAAI 2021) and checks them:

    \b
      eexit profile model.onnx -o latency.json          # per-exit latency d_n
      eexit tune val.h5 --latency latency.json --budget 60% -o thresholds.json
      eexit evaluate test.h5 thresholds.json            # exit 1 if over budget
      eexit check model.onnx thresholds.json test.h5    # exit 1 if the run disagrees

    Run `eexit COMMAND --help` for each command; file formats are in docs/formats.md.
    """
    if not isinstance(ctx.obj, State):
        ctx.obj = State()


def _register() -> None:
    from eexit_cli.cli.check_cmd import check
    from eexit_cli.cli.evaluate import evaluate
    from eexit_cli.cli.info import info
    from eexit_cli.cli.profile_cmd import profile
    from eexit_cli.cli.tune import tune

    for command in (profile, info, tune, evaluate, check):
        cli.add_command(command)


_register()


def main() -> None:
    try:
        cli.main(prog_name="eexit")
    except KeyboardInterrupt:
        # outside a command (while parsing or starting up)
        _error_line("interrupted; nothing was written")
        sys.exit(ExitCode.INTERRUPTED)
