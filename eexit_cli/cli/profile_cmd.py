"""``eexit profile``: measure the per-exit latency d_n of an ONNX model."""

from __future__ import annotations

import math

import click
from rich.table import Table

from eexit_cli.cli.common import (
    CONTEXT_SETTINGS,
    check_output_target,
    EXIT_CODES_HELP,
    get_state,
    global_options,
    output_option,
    progress,
    stdout_is_terminal,
    write_json_output,
)
from eexit_cli.io.atomic import STDOUT, resolve_output


def _parse_outputs(ctx, param, value):
    if value is None:
        return None
    names = [n.strip() for n in value.split(",")]
    if any(not n for n in names):
        raise click.BadParameter(f"expected comma-separated output names, got {value!r}")
    return names


MAX_INPUT_ELEMENTS = 2**28
"""The largest input accepted by --input-shape, in elements (1 GiB of float32)."""


def _parse_shapes(ctx, param, values):
    from eexit_cli.profiling.onnx_profiler import parse_shape

    shapes = {}
    for text in values:
        try:
            name, shape = parse_shape(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        if name in shapes:
            raise click.BadParameter(f"shape of {name!r} given twice")
        size = math.prod(shape)
        if size > MAX_INPUT_ELEMENTS:
            raise click.BadParameter(
                f"{text!r} has {size:,} elements; at most {MAX_INPUT_ELEMENTS:,} per input are "
                "profiled (latency is measured at batch 1: did you mean 1x...?)"
            )
        shapes[name] = shape
    return shapes


def _time(seconds: float) -> str:
    """A duration with a unit that keeps 3-4 significant digits readable."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds / 1e-9:.4g} ns"


def _table(result) -> Table:
    table = Table(title="Latency per exit (batch 1)", title_justify="left")
    level = f"{100 * result.exits[0].ci_level:.0f}%"
    for col in ("exit", "name", "median d_n", "IQR/median", f"{level} CI of median", "min", "calls"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for n, e in enumerate(result.exits, start=1):
        table.add_row(
            str(n),
            e.name,
            _time(e.median),
            f"{100 * e.relative_iqr:.1f}%",
            f"{_time(e.ci_low)} - {_time(e.ci_high)}",
            _time(e.minimum),
            str(e.count),
        )
    return table


@click.command("profile", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("model", type=click.Path(dir_okay=False))
@output_option("Write the latency JSON here ('-' = stdout). Default: stdout when it is not a terminal.")
@click.option("--outputs", callback=_parse_outputs, metavar="NAME,NAME,...",
              help="The exits' output tensors in exit order (default: the graph's outputs in order).")
@click.option("--input-shape", "input_shapes", multiple=True, callback=_parse_shapes, metavar="NAME=DIMS",
              help="Shape of an input with symbolic dimensions, e.g. input=1x3x32x32 (repeatable). "
                   "Without it a symbolic batch dimension is 1. At most 2^28 elements per input.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Where to run; cuda needs onnxruntime-gpu.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="onnxruntime intra-op threads; 1 gives the steadiest timings.")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True,
              help="Untimed calls per exit before measuring.")
@click.option("--repeat", type=click.IntRange(min=1), default=50, show_default=True,
              help="Timed calls per exit in each round.")
@click.option("--rounds", type=click.IntRange(min=1), default=20, show_default=True,
              help="Rounds; each times every exit --repeat times, exits in shuffled order.")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Start no new round once any exit has spent this long in timed calls.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the random inputs and of the order of exits within rounds.")
@global_options
def profile(model, output, outputs, input_shapes, device, threads, warmup, repeat, rounds, time_budget, seed):
    """Measure the latency d_n of stopping at each exit of an ONNX model.

    MODEL is an ONNX early-exit model with one output per exit. For each exit n
    the graph from the inputs to exits 1..n is cut out and timed on random input
    of batch size 1, so d_n counts the backbone up to exit n and the heads of
    exits 1..n. Exits are timed in interleaved rounds; d_n is the median time per
    call. The result is the latency JSON that `eexit tune` reads (unit: seconds),
    with the spread, a confidence interval of each median and a description of
    the machine. Profile on the machine the model will serve from, with nothing
    else running. Needs the 'onnx' extra: pip install 'eexit[onnx]'.

    \b
    Example:
      eexit profile model.onnx -o latency.json
      eexit profile model.onnx --outputs exit_1,exit_2,exit_3 --input-shape input=1x3x32x32
    """
    from eexit_cli.profiling.onnx_profiler import profile_onnx

    state = get_state()
    # say so now rather than after the measurement
    to_stdout = output == "-" or (output is None and not stdout_is_terminal())
    check_output_target(output, [model], to_stdout=to_stdout or resolve_output(output) == STDOUT)
    with progress("profiling", total=None) as update:
        result = profile_onnx(
            model,
            outputs=outputs,
            input_shapes=input_shapes,
            device=device,
            threads=threads,
            warmup=warmup,
            repeat=repeat,
            rounds=rounds,
            seed=seed,
            time_budget=time_budget,
            progress=lambda done, total: update(done, total=total),
        )
    data = result.to_latency_dict()

    if state.err.is_terminal and not state.quiet:
        state.err.print(_table(result))
        if result.call_overhead is not None:
            state.err.print(
                f"A call of a one-node graph with the same inputs takes {_time(result.call_overhead.median)} "
                "(included in every d_n).",
                markup=False, highlight=False,
            )
    for warning in result.warnings:
        state.err.print(f"[yellow]warning[/]: {warning}", highlight=False)
    if output not in (None, "-") and resolve_output(output) != STDOUT:
        write_json_output(data, output)
    elif to_stdout or resolve_output(output) == STDOUT:
        write_json_output(data, "-")
    else:
        state.err.print("note: no -o given and stdout is a terminal; nothing saved (use -o latency.json)",
                        markup=False, highlight=False)
