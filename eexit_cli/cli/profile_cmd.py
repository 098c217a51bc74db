"""``eexit profile``: measure the per-exit latency d_n of an ONNX or PyTorch model.

The model options (``model_options``) are shared with ``eexit check``."""

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
    table = Table(title=f"Latency per exit ({result.model.mode}, batch {result.batch})", title_justify="left")
    level = f"{100 * result.exits[0].ci_level:.0f}%"
    for col in ("exit", "name", "d_n", "median", "IQR/median", f"{level} CI of median", "min", "calls"):
        table.add_column(col, justify="left" if col == "name" else "right")
    for n, e in enumerate(result.exits, start=1):
        table.add_row(
            str(n),
            e.name,
            _time(e.estimate),
            _time(e.median),
            f"{100 * e.relative_iqr:.1f}%",
            f"{_time(e.ci_low)} - {_time(e.ci_high)}",
            _time(e.minimum),
            str(e.count),
        )
    return table


def model_options(func):
    """The options that say how to open and run a model (``profile`` and ``check``)."""
    options = [
        click.option("--outputs", callback=_parse_outputs, metavar="NAME,NAME,...",
                     help="ONNX: the exits' output tensors in exit order (default: the graph's outputs "
                          "in order). PyTorch: names for the exits, which also declares how many."),
        click.option("--input-shape", "input_shapes", multiple=True, callback=_parse_shapes, metavar="NAME=DIMS",
                     help="ONNX: shape of an input with symbolic dimensions, e.g. input=1x3x32x32 "
                          "(repeatable). Without it a symbolic batch dimension is 1. At most 2^28 "
                          "elements per input."),
        click.option("--mode", type=click.Choice(["staged", "prefix"]), default="staged", show_default=True,
                     help="staged: run stage after stage, checking each exit passed, as deployed. "
                          "prefix (ONNX only): one graph per exit, no checks between stages."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
                     help="Where to run; cuda needs onnxruntime-gpu or a CUDA build of torch."),
        click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Intra-op threads (onnxruntime or torch); 1 gives the steadiest timings."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def model_files(model: str) -> list[str]:
    """The file behind MODEL: the ONNX file, or the Python file of FILE.py:FACTORY."""
    from eexit_cli.profiling.models import is_torch_spec

    if is_torch_spec(model):
        target = model.rsplit(":", 1)[0]
        return [target] if target.endswith(".py") else []
    return [model]


def _to_stdout(output) -> bool:
    return output == "-" or (output is None and not stdout_is_terminal()) or resolve_output(output) == STDOUT


def check_output_early(output, inputs) -> None:
    """Refuse a bad -o (or a closed stdout) now rather than after the measurement."""
    check_output_target(output, inputs, to_stdout=_to_stdout(output))


def emit(data, output) -> None:
    """The JSON to -o, or to stdout when it is not a terminal (or -o -)."""
    if output not in (None, "-") and resolve_output(output) != STDOUT:
        write_json_output(data, output)
    elif _to_stdout(output):
        write_json_output(data, "-")
    else:
        get_state().err.print("note: no -o given and stdout is a terminal; nothing saved (use -o FILE.json)",
                              markup=False, highlight=False)


@click.command("profile", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("model")
@output_option("Write the latency JSON here ('-' = stdout). Default: stdout when it is not a terminal.")
@model_options
@click.option("--confidence", type=click.Choice(["max_softmax", "entropy", "margin"]), default="max_softmax",
              show_default=True, help="Confidence computed at each exit passed (staged mode).")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True,
              help="Untimed calls per exit before measuring.")
@click.option("--repeat", type=click.IntRange(min=1), default=50, show_default=True,
              help="Timed calls per exit in each round.")
@click.option("--rounds", type=click.IntRange(min=1), default=20, show_default=True,
              help="Rounds; each makes --repeat calls per exit, the exit drawn at random for every call.")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Start no new round once any exit has spent this long in timed calls.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the random inputs and of the order of the calls.")
@global_options
def profile(model, output, outputs, input_shapes, mode, device, threads, confidence, warmup, repeat, rounds,
            time_budget, seed):
    """Measure the latency d_n of stopping at each exit of an ONNX or PyTorch model.

    MODEL is an ONNX file with one output per exit, or a PyTorch factory
    FILE.py:FACTORY or package.module:FACTORY, where FACTORY() returns
    (model, example_input). A PyTorch model either has `stages` (N callables,
    stage(state) -> (state, exit_output)) or returns its N exit outputs from
    model(example_input), and is then cut with torch.fx.

    d_n is the time of one inference that stops at exit n, run as a deployment
    runs it: stages 1..n in sequence, and at each exit passed its confidence is
    computed and compared with a threshold. Calls are timed with the exit drawn at
    random for every call; d_n is the mean time per call (0.1% of the calls cut at
    each end), an estimate of the mean latency the budget is about. The result is the latency
    JSON that `eexit tune` reads (unit: seconds), with the median, quartiles, a
    confidence interval of the median, the batch size and the machine. Profile on
    the machine the model will serve from, with nothing else running. ONNX needs
    pip install 'eexit[onnx]', PyTorch pip install 'eexit[torch]'.

    \b
    Example:
      eexit profile model.onnx -o latency.json
      eexit profile model.onnx --outputs exit_1,exit_2,exit_3 --input-shape input=1x3x32x32
      eexit profile sample_data/torch_models.py:digits_gru -o latency.json
    """
    from eexit_cli.profiling.models import open_model
    from eexit_cli.profiling.record import profile_staged

    state = get_state()
    check_output_early(output, model_files(model))
    staged = open_model(model, outputs=outputs, input_shapes=input_shapes, mode=mode, device=device,
                        threads=threads, confidence=confidence, seed=seed)
    with progress("profiling", total=None) as update:
        result = profile_staged(
            staged,
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
                f"A call that does next to nothing through the same runtime takes "
                f"{_time(result.call_overhead.median)} (included in every d_n).",
                markup=False, highlight=False,
            )
    for warning in result.warnings:
        state.err.print(f"[yellow]warning[/]: {warning}", highlight=False)
    emit(data, output)
