"""``eexit info``: what a split allows (per-exit accuracy, the oracle, useful budgets)."""

from __future__ import annotations

import click
from rich.table import Table

from eexit_cli.cli.common import (
    CONTEXT_SETTINGS,
    EXIT_CODES_HELP,
    get_state,
    global_options,
    ignore_index_option,
    progress,
    stdout_is_terminal,
    write_json_output,
)
from eexit_cli.errors import InputError
from eexit_cli.io.isolated import read_exits_isolated as read_exits
from eexit_cli.io.jsonfiles import latency_from_costs, read_latency

INFO_FORMAT = "eexit.info/v1"


def _table(info: dict, unit: str | None, names: list[str], console) -> None:
    t = Table(title="Exits (each answering every sample)", title_justify="left")
    cols = ["exit", "name", "accuracy", "mean confidence"]
    if unit is not None:
        cols += [f"cost [{unit}]", "% of d_N"]
    for c in cols:
        t.add_column(c, justify="right")
    d_n = info["per_exit"][-1]["cost"]
    for row, name in zip(info["per_exit"], names):
        cells = [str(row["exit"]), name, f"{row['accuracy']:.4f}", f"{row['mean_confidence']:.4g}"]
        if unit is not None:
            cells += [f"{row['cost']:.6g}", f"{100 * row['cost'] / d_n:.1f}%"]
        t.add_row(*cells)
    console.print(t)
    o = info["oracle"]
    lines = [
        f"last exit     accuracy {info['last_exit_accuracy']:.4f}",
        f"oracle        accuracy {o['accuracy']:.4f} (stops every sample at its first correct exit"
        + ("" if "mean_latency" not in o else
           f"; mean latency {o['mean_latency']:.6g} {unit}, {100 * o['mean_latency_share']:.1f}% of d_N")
        + ")",
    ]
    b = info.get("budgets")
    if b:
        lines += [
            f"smallest budget {b['smallest']:.6g} {unit} ({100 * b['smallest_share']:.2f}% of d_N): "
            "below it nothing is feasible",
            f"largest budget  {b['largest']:.6g} {unit} ({100 * b['largest_share']:.2f}% of d_N): "
            f"accuracy {b['best_accuracy']:.4f}, no higher above it",
            f"suggested     --budget {b['suggested']['text']}",
        ]
    else:
        lines.append("budgets       give --latency FILE or --costs to see the useful range")
    console.print("\n".join(lines), markup=False, highlight=False)


@click.command("info", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("split", type=click.Path(dir_okay=False))
@click.option("--latency", "latency_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Latency profile (eexit.latency/v1): adds costs and the range of useful budgets.")
@click.option("--costs", "costs_text", metavar="D1,D2,...", help="Per-exit costs instead of --latency.")
@click.option("--unit", default="cost", show_default=True, help="Unit of --costs.")
@click.option("--confidence", type=click.Choice(["max_softmax", "entropy", "margin", "scores"]),
              default=None, help="Confidence measure computed from /logits or /probs "
                                 "[default: max_softmax; a /scores file brings its own].")
@click.option("--json", "as_json", is_flag=True,
              help="Print the JSON summary on stdout (the default when stdout is not a terminal).")
@ignore_index_option
@global_options
def info(split, latency_path, costs_text, unit, confidence, as_json, ignore_index):
    """Show what a split allows before tuning: exits, oracle, useful budgets.

    For every exit of SPLIT (an exit-outputs HDF5 file): its accuracy if it
    answered every sample, its mean confidence and its cost; the accuracy of the
    last exit and of an oracle that stops each sample at its first correct exit.
    With costs (--latency or --costs): the smallest useful budget (below it no
    thresholds are feasible), the largest (the mean latency of the most accurate
    thresholds found; above it accuracy no longer grows), both in the cost unit
    and as a percentage of d_N, and a --budget sweep between them whose entries
    differ (checked by running it as `tune` does with its default --jobs on this
    machine; with another --jobs the runs of neighbouring budgets, and so the
    entries, may differ).

    \b
    Examples:
      eexit info val.h5 --latency latency.json
      eexit info val.h5 --costs 0.32,0.53,0.76,1.0,1.07 --json | jq .budgets.suggested.text
    """
    from eexit_cli.core.info import split_info
    from eexit_cli.core.tuner import tune as tune_thresholds

    state = get_state()
    if latency_path is not None and costs_text is not None:
        raise click.UsageError("give at most one of --latency FILE or --costs D1,D2,...")
    latency = None
    if latency_path is not None:
        latency = read_latency(latency_path)
    elif costs_text is not None:
        from eexit_cli.cli.tune import _parse_costs

        latency = latency_from_costs(_parse_costs(costs_text), unit)
    outputs = read_exits(split, confidence=confidence, ignore_index=ignore_index)
    if latency is not None and latency.n_exits != outputs.n_exits:
        raise InputError(
            f"{latency_path or '--costs'}: the latency profile has {latency.n_exits} exits but "
            f"{split} has {outputs.n_exits} (N disagrees)"
        )
    costs = None if latency is None else latency.per_exit
    box = outputs.score_range if outputs.variant != "scores" else None

    def top(budget):
        return tune_thresholds(outputs.scores, outputs.correct, costs, budget, score_range=box)

    def frontier(budgets):
        # as `tune --budget LO..HI:K` runs it by default: runs of neighbouring budgets, one
        # per core, each budget starting from the previous one's thresholds
        from eexit_cli.core.frontier import available_cores, tune_frontier

        with progress(f"checking a sweep of {len(budgets)} budgets", total=len(budgets)) as bar:
            return tune_frontier(outputs.scores, outputs.correct, costs, budgets,
                                 jobs=available_cores(), score_range=box,
                                 progress=lambda done, _total: bar(done))

    summary = split_info(outputs.scores, outputs.correct, costs, tune_fn=top,
                         frontier_fn=None if latency is None else frontier)
    names = outputs.exit_names
    for row, name in zip(summary["per_exit"], names):
        row["name"] = name
    result = {"format": INFO_FORMAT, "split": str(split), "confidence": outputs.confidence,
              "unit": None if latency is None else latency.unit, **summary}
    if state.interactive:
        _table(summary, None if latency is None else latency.unit, names, state.err)
    if as_json or not stdout_is_terminal():
        write_json_output(result, "-")
    elif not state.interactive and not state.quiet:
        _table(summary, None if latency is None else latency.unit, names, state.err)
