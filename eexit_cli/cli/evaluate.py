"""``eexit evaluate``: replay hard thresholds on a split and gate on the budget."""

from __future__ import annotations

import math

import click
from rich.table import Table

from eexit_cli.api.evaluation import BudgetError, TailError, evaluate_sets
from eexit_cli.cli.common import (
    CONTEXT_SETTINGS,
    check_output_target,
    EXIT_CODES_HELP,
    ExitCode,
    get_state,
    global_options,
    ignore_index_option,
    print_verdict,
    stdout_is_terminal,
    write_json_output,
)
from eexit_cli.core.latency import parse_fraction, slack_budget_warning
from eexit_cli.io.isolated import read_exits_isolated as read_exits
from eexit_cli.io.atomic import STDOUT, resolve_output
from eexit_cli.io.jsonfiles import FRONTIER_FORMAT, read_latency, read_thresholds_or_frontier



def _fmt(x, digits=4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"


def _table(reports: list[dict], unit: str, console) -> None:
    multi = len(reports) > 1
    if multi:
        t = Table(title="Evaluation per budget", title_justify="left")
        for col in ("budget", "method", "accuracy", f"mean latency [{unit}]", "violation", "certified bound", "verdict"):
            t.add_column(col, justify="right")
        for r in reports:
            cert = r.get("certified")
            t.add_row(
                _fmt(r["budget"]),
                str(r.get("method") or "-"),
                f"{r['accuracy']:.4f}",
                _fmt(r["mean_latency"]),
                "-" if r["violation"] is None else f"{100 * r['violation']:+.2f}%",
                _fmt(cert.get("upper_bound")) if cert else "-",
                "[green]pass[/]" if r["passed"] else "[red]FAIL[/]",
            )
        console.print(t)
        return
    r = reports[0]
    t = Table(title="Per-exit outcome", title_justify="left")
    for col in ("exit", "name", f"latency [{unit}]", "threshold", "exiting", "fraction", "accuracy"):
        t.add_column(col, justify="right")
    thr = r["thresholds"] + [None]
    for row, th in zip(r["per_exit"], thr):
        t.add_row(
            str(row["exit"]),
            row["name"],
            _fmt(row["latency"]),
            "(last)" if th is None else _fmt(th, 6),
            str(row["count"]),
            f"{row['fraction']:.4f}",
            _fmt(row["accuracy"]),
        )
    console.print(t)
    lines = [
        f"accuracy      {r['accuracy']:.4f}"
        + ("" if r["min_accuracy"] is None else f"   (gate >= {r['min_accuracy']:.4f})"),
        f"mean latency  {_fmt(r['mean_latency'], 6)} {unit}",
    ]
    if r["budget"] is not None:
        lines.append(f"budget        {_fmt(r['budget'], 6)} {unit}")
        lines.append(
            f"violation     {100 * r['violation']:+.2f}%   (tolerance {100 * r['tolerance']:.2f}%)"
        )
    q = r.get("latency_quantiles") or {}
    if q:
        lines.append("quantiles     " + "  ".join(f"{k} {_fmt(v, 6)}" for k, v in q.items()) + f" {unit}")
    for t in r.get("tail") or []:
        lines.append(
            f"tail budget   p{100 * t['level']:g} {_fmt(t['quantile'], 6)} {unit} <= {_fmt(t['latency'], 6)}: "
            f"{'ok' if t['within'] else 'OVER'} ({t['over']} samples above, at most {t['allowed']})"
        )
    if r.get("certified"):
        c = r["certified"]
        lines.append(
            f"certified     mean latency <= {_fmt(c.get('upper_bound'), 6)} {unit} with "
            f"probability >= {_fmt(c.get('level'))} ({c.get('bound')})"
        )
    console.print("\n".join(lines), markup=False)


@click.command("evaluate", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("split", type=click.Path(dir_okay=False))
@click.argument("thresholds", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--budget", "budget_text", metavar="GAMMA",
              help="Override the budget: a mean latency in the report's unit, a percentage of the "
                   "last exit's latency (60%), or a time (1.8ms, converted).")
@click.option("--latency", "latency_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Override the latency profile stored in THRESHOLDS (e.g. one measured on the "
                   "deployment machine by `eexit profile`). Budgets are converted to its unit "
                   "(s, ms, us, ns); other units must match.")
@click.option("--tolerance", "tolerance_text", default="0%", show_default=True, metavar="FRACTION",
              help="Allowed relative excess over the budget before the gate fails (2% or 0.02; "
                   "a bare number above 1 is refused).")
@click.option("--min-accuracy", "min_accuracy_text", metavar="FRACTION",
              help="Also fail (exit 1) when accuracy is below this (0.9 or 90%).")
@click.option("--tail", "tail_texts", multiple=True, metavar="P:X",
              help="Gate on a tail budget: fail when the P-quantile of per-sample latency is above X "
                   "(95%:60%, 0.99:0.004, p99:4ms), instead of the tail budgets stored in THRESHOLDS. "
                   "Repeatable; --tolerance does not apply.")
@click.option("--allow-renamed-exits", is_flag=True,
              help="Accept files whose exit_names differ (exits are matched by position). Without "
                   "it, a split, thresholds file or profile naming other exits, or the same exits "
                   "in another order, stops the command.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the JSON report on stdout (the default when stdout is not a terminal).")
@click.option("-o", "--output", type=click.Path(allow_dash=True), default=None,
              help="Also write the JSON report to this file (atomically; '-' = stdout).")
@click.option("--plot", "plot_path", type=click.Path(), default=None, metavar="FILE.png",
              help="Draw accuracy against mean latency (needs the 'plot' extra).")
@ignore_index_option
@global_options
def evaluate(split, thresholds, budget_text, latency_path, tolerance_text, min_accuracy_text,
             tail_texts, allow_renamed_exits, as_json, output, plot_path, ignore_index):
    """Replay thresholds on a split and check the latency budget.

    SPLIT is an exit-outputs HDF5 file (usually the test split); THRESHOLDS is the
    JSON written by `eexit tune` (a single threshold set or a frontier); give
    several files to compare them (e.g. frontiers of different --method). Each sample
    leaves at the first exit whose confidence is strictly above its threshold; the
    last exit answers the rest. Reports accuracy, mean latency, the budget and the
    violation (mean latency - budget) / budget, and the share and accuracy of the
    samples leaving at each exit.

    Also reports the p50, p90, p95 and p99 of per-sample latency (the latency of the
    exit each sample takes). The exit code gates a CI job: 0 when the mean latency is
    within the budget (plus --tolerance), every tail budget holds (stored in
    THRESHOLDS by `tune --tail`, or given with --tail) and accuracy is at least
    --min-accuracy, 1 when not. The one-line verdict (PASS or FAIL and why) is
    printed on stderr even with --quiet.

    \b
    Examples:
      eexit evaluate test.h5 thresholds.json --tolerance 1% --min-accuracy 0.9
      eexit evaluate test.h5 ippp.json heuristic.json --plot frontier.png
      eexit evaluate test.h5 thresholds.json --tail 95%:70%
    """
    state = get_state()
    try:
        tolerance = parse_fraction(tolerance_text, "--tolerance")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        min_accuracy = None if min_accuracy_text is None else parse_fraction(min_accuracy_text, "--min-accuracy")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if min_accuracy is not None and min_accuracy > 1:
        raise click.BadParameter(f"must be at most 1 (100%), got {min_accuracy_text!r}",
                                 param_hint="--min-accuracy")
    inputs = [split, *thresholds] + ([latency_path] if latency_path else [])
    to_stdout = as_json or output == "-" or (output is None and not stdout_is_terminal())
    check_output_target(output, inputs, to_stdout=to_stdout or resolve_output(output) == STDOUT)
    check_output_target(plot_path, inputs + ([output] if output not in (None, "-") else []),
                        to_stdout=False, option="--plot")

    files = []  # (path, format, threshold sets)
    for path in thresholds:
        fmt, sets_in_file, _raw = read_thresholds_or_frontier(path)
        files.append((path, fmt, sets_in_file))
    sets = [(path, ts) for path, _fmt, file_sets in files for ts in file_sets]
    if budget_text is not None and any(fmt == FRONTIER_FORMAT for _p, fmt, _s in files):
        raise click.BadParameter(
            "cannot override the budget of a frontier file (each entry has its own budget)",
            param_hint="--budget",
        )
    latency_override = read_latency(latency_path) if latency_path else None
    try:
        evaluation = evaluate_sets(
            split, sets, latency=latency_override, latency_source=latency_path, budget=budget_text,
            tolerance=tolerance, min_accuracy=min_accuracy, ignore_index=ignore_index,
            thresholds_files=list(thresholds), allow_renamed_exits=allow_renamed_exits,
            reader=read_exits, tail=list(tail_texts) if tail_texts else None)
    except BudgetError as exc:
        raise click.BadParameter(str(exc), param_hint="--budget") from None
    except TailError as exc:
        raise click.BadParameter(str(exc), param_hint="--tail") from None
    result = evaluation.report
    reports = result["entries"]
    unit = result["unit"]
    passed = result["passed"]
    if not state.quiet:
        slack = {r["budget"] for r in reports if r["budget"] is not None
                 and slack_budget_warning([r["budget"]], [e["latency"] for e in r["per_exit"]])}
        if slack:
            line = slack_budget_warning(slack, [e["latency"] for e in reports[0]["per_exit"]], unit,
                                        [budget_text] if budget_text else ())
            state.err.print(f"[yellow]warning[/]: {line}; the latency gate cannot fail", highlight=False,
                            soft_wrap=True)

    if plot_path is not None:
        from eexit_cli.cli.plots import plot_evaluation

        plot_evaluation(reports, unit, plot_path)

    if state.interactive:
        _table(reports, unit, state.err)
        if plot_path is None and len(reports) > 1:
            from eexit_cli.cli.plots import render_terminal

            state.err.print(render_terminal(reports, unit))
    if output not in (None, "-") and resolve_output(output) != STDOUT:
        write_json_output(result, output)
    if to_stdout or resolve_output(output) == STDOUT:
        write_json_output(result, "-")
    verdict(state, reports, unit, min_accuracy)
    if not passed:
        click.get_current_context().exit(ExitCode.GATE_FAILED)


def verdict(state, reports: list[dict], unit: str, min_accuracy) -> None:
    """The one-line verdict on stderr, printed even with --quiet (like errors)."""
    n_fail = sum(not r["passed"] for r in reports)
    if n_fail == 0:
        line = (f"PASS: {len(reports)} threshold set(s) within budget"
                + ("" if not any(r.get("tail") for r in reports) else " and tail budgets")
                + ("" if min_accuracy is None else " and accuracy gate"))
    else:
        worst = max((r for r in reports if not r["passed"]), key=lambda r: r["violation"] or 0)
        why = []
        if not worst["within_budget"]:
            why.append(f"mean latency {_fmt(worst['mean_latency'], 6)} {unit} is "
                       f"{100 * worst['violation']:+.2f}% over budget {_fmt(worst['budget'], 6)} {unit}")
        if not worst["accuracy_ok"]:
            why.append(f"accuracy {worst['accuracy']:.4f} < {worst['min_accuracy']:.4f}")
        for t in worst.get("tail") or []:
            if not t["within"]:
                why.append(f"p{100 * t['level']:g} latency {_fmt(t['quantile'], 6)} {unit} > "
                           f"{_fmt(t['latency'], 6)} {unit} ({t['over']} samples above, at most "
                           f"{t['allowed']})")
        line = f"FAIL: {n_fail} of {len(reports)} set(s); " + "; ".join(why)
    print_verdict(state, n_fail == 0, line)
