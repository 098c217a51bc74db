"""``eexit tune``: thresholds for a mean- or tail-latency budget, or an accuracy target."""

from __future__ import annotations

import math

import click
from rich.table import Table

from eexit_cli.api.tuning import check_calibration, check_tuning_inputs, feasible_hint, tune_outputs
from eexit_cli.cli.common import (
    CONTEXT_SETTINGS,
    EXIT_CODES_HELP,
    check_output_target,
    get_state,
    global_options,
    ignore_index_option,
    output_option,
    progress,
    write_json_output,
)
from eexit_cli.core.latency import (MAX_BUDGETS, increasing_warning, parse_budgets, parse_fraction, parse_level,
                                    parse_share, slack_budget_warning)
from eexit_cli.core.tail import parse_tail
from eexit_cli.io.isolated import read_exits_isolated as read_exits
from eexit_cli.io.jsonfiles import latency_from_costs, read_latency

METHODS = ("ippp", "heuristic", "single")
MAX_ITERATIONS = 1_000_000  # --T and --J
MAX_PARAMETER = 1e12  # --k, --gamma, --mu, --eta, --beta


def _parse_costs(text: str) -> list[float]:
    items = text.replace(" ", "").split(",")
    if items and items[-1] == "" and len(items) > 1:
        items = items[:-1]  # a trailing comma is harmless
    if any(x == "" for x in items):
        raise click.BadParameter(
            f"{text!r} has an empty item; give one cost per exit, e.g. 1,2.1,3.3", param_hint="--costs"
        )
    try:
        return [float(x) for x in items]
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of numbers (e.g. 1,2.1,3.3)", param_hint="--costs"
        ) from None


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def _summary(console, entries: list[dict], unit: str, exit_names: list[str]) -> None:
    if len(entries) == 1:
        e = entries[0]
        tun = e["tuning"]
        t = Table(title=f"Thresholds ({tun['method']})", title_justify="left")
        for col in ("exit", "name", "threshold", "exiting (tuning split)"):
            t.add_column(col, justify="right")
        fr = tun.get("per_exit_fraction") or [None] * len(exit_names)
        thr = e["thresholds"] + [None]
        for i, (name, th, f) in enumerate(zip(exit_names, thr, fr)):
            t.add_row(str(i + 1), name, "(last)" if th is None else f"{th:.6g}",
                      "-" if f is None else f"{f:.4f}")
        console.print(t)
        lines = []
        if e["budget"] is not None:
            lines.append(f"budget        {e['budget']:.6g} {unit}")
            lines.append(f"mean latency  {tun['mean_latency']:.6g} {unit}  "
                         f"({100 * (tun['mean_latency'] / e['budget'] - 1):+.2f}% vs budget, tuning split)")
        else:
            lines.append(f"mean latency  {tun['mean_latency']:.6g} {unit}  (tuning split)")
        for rec in tun.get("tail") or []:
            lines.append(f"p{100 * rec['level']:g} latency {rec['quantile']:.6g} {unit}  (budget "
                         f"{rec['latency']:.6g}; {rec['over']} of at most {rec['allowed']} samples "
                         "above it, tuning split)")
        target = (tun.get("params") or {}).get("min_accuracy")
        lines.append(f"accuracy      {tun['accuracy']:.4f}  (tuning split"
                     + ("" if target is None else f"; target >= {target:.4f}") + ")")
        if tun.get("seconds") is not None:
            lines.append(f"time          {tun['seconds']:.3f} s")
        console.print("\n".join(lines), markup=False, highlight=False)
        g = tun.get("guarantee")
        if g and g.get("budget") is None:
            for r in g.get("requirements") or []:
                console.print(
                    f"certified     {_certified_line(r, unit)} with probability >= {g['level']:.3g} "
                    f"({g['bound']}; {g['calibration_size']} calibration samples)",
                    markup=False, highlight=False,
                )
        elif g:
            console.print(
                f"certified     mean latency <= {g['upper_bound']:.6g} {unit} with probability >= "
                f"{g['level']:.3g} ({g['bound']}; internal budget {g['internal_budget']:.6g}, "
                f"{g['calibration_size']} calibration samples)",
                markup=False, highlight=False,
            )
        return
    t = Table(title="Frontier (tuning split)", title_justify="left")
    # (a frontier always has a budget per entry)
    for col in ("budget", "mean latency", "vs budget", "accuracy", "seconds"):
        t.add_column(col, justify="right")
    for e in entries:
        tun = e["tuning"]
        t.add_row(f"{e['budget']:.6g}", f"{tun['mean_latency']:.6g}",
                  f"{100 * (tun['mean_latency'] / e['budget'] - 1):+.2f}%", f"{tun['accuracy']:.4f}",
                  "-" if tun.get("seconds") is None else f"{tun['seconds']:.3f}")
    console.print(t)


@click.command("tune", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("split", type=click.Path(dir_okay=False))
@click.option("--latency", "latency_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Latency profile (eexit.latency/v1), e.g. from `eexit profile`.")
@click.option("--costs", "costs_text", metavar="D1,D2,...",
              help="Per-exit costs d_1..d_N instead of --latency (any unit: seconds, FLOPs, ...).")
@click.option("--unit", default="cost", show_default=True,
              help="Unit of --costs (s, ms, us, ns convert into each other; other names only match).")
@click.option("--budget", "budget_texts", multiple=True, metavar="GAMMA",
              help="Mean-latency budget in the profile's unit (2.1), a percentage of d_N (60%) or "
                   "a time (2.1ms, converted to a profile in s, ms, us or ns). Repeat it, or give a "
                   f"sweep LOW..HIGH:COUNT (40%..80%:20), to write a frontier (at most {MAX_BUDGETS} "
                   "budgets); budgets that cannot be met are skipped and listed.")
@click.option("--tail", "tail_texts", multiple=True, metavar="P:X",
              help="Tail-latency budget: the P-quantile of per-sample latency is at most X "
                   "(95%:60% = p95 <= 60% of d_N; 0.99:0.004; p99:4ms). Alone, with --budget (both "
                   "hold exactly on SPLIT), or with an accuracy target. Repeatable.")
@click.option("--min-accuracy", "min_accuracy_text", metavar="A",
              help="Instead of a budget: the fastest thresholds (lowest mean latency) whose accuracy "
                   "on SPLIT is at least A (0.97 or 97%).")
@click.option("--max-drop", "max_drop_text", metavar="D",
              help="Instead of a budget: the fastest thresholds whose accuracy on SPLIT is at most "
                   "D below the last exit's (1% = one accuracy point).")
@output_option("Write the thresholds JSON here, atomically ('-' = stdout). Default: stdout.")
@click.option("--confidence", type=click.Choice(["max_softmax", "entropy", "margin", "scores"]),
              default=None, help="Confidence measure computed from /logits or /probs "
                                 "[default: max_softmax; a /scores file brings its own].")
@click.option("--method", type=click.Choice(METHODS), default="ippp", show_default=True,
              help="ippp: the paper's warm start + iPPP; heuristic: Huang et al.'s geometric rule; "
                   "single: one threshold shared by all exits.")
@click.option("--polish/--no-polish", default=True, show_default=True,
              help="After the solve, improve the exact accuracy on the tuning split with moves "
                   "that keep every budget (with an accuracy target: lower the mean latency at "
                   "that accuracy).")
@click.option("--guarantee", "guarantee_text", metavar="LEVEL",
              help="Certify the budget, tail budgets and accuracy target on new data with this "
                   "probability (e.g. 95%), holding out a calibration part of SPLIT (see "
                   "docs/guarantee.md).")
@click.option("--calibration-fraction", default="30%", show_default=True, metavar="FRACTION",
              help="Share of SPLIT held out for --guarantee (30% or 0.3).")
@click.option("--bound", "bound_name", default=None, metavar="NAME",
              help="Upper confidence bound used by --guarantee (see docs/guarantee.md).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1),
              help="Seed of the --guarantee split.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Processes for a frontier (several budgets); each solves a run of neighbouring "
                   "budgets. [default: the CPU cores available]")
@ignore_index_option
@click.option("--allow-renamed-exits", is_flag=True,
              help="Accept a latency profile whose exit_names differ from SPLIT's (the exits are "
                   "still matched by position). Without it, differing names stop the command.")
@click.option("--no-timings", is_flag=True,
              help="Leave wall-clock times out of the JSON, so equal inputs give byte-identical "
                   "files (e.g. for DVC or make).")
@click.option("--k", "k", type=float, default=None, help="Steepness of the logistic (eq. 3), on scores scaled to [0, 1].")
@click.option("--T", "T", type=click.IntRange(1, MAX_ITERATIONS), default=None,
              help="Outer iterations of Algorithm 1 (at most).")
@click.option("--J", "J", type=click.IntRange(1, MAX_ITERATIONS), default=None,
              help="Inner accelerated-gradient steps per outer iteration.")
@click.option("--gamma", type=float, default=None, help="Proximal parameter γ (eq. 16).")
@click.option("--mu", type=float, default=None, help="Strong-convexity parameter μ.")
@click.option("--eta", type=float, default=None, help="Smoothness parameter η (step 1/η).")
@click.option("--beta", type=float, default=None, help="Penalty parameter β (eq. 16), for costs scaled by d_N.")
@global_options
def tune(split, latency_path, costs_text, unit, budget_texts, tail_texts, min_accuracy_text,
         max_drop_text, output, confidence, method, polish, guarantee_text, calibration_fraction,
         bound_name, seed, jobs, ignore_index, allow_renamed_exits, no_timings, k, T, J, gamma, mu,
         eta, beta):
    """Tune exit thresholds on a validation split for a latency budget or an accuracy target.

    Maximises the accuracy of early-exit inference on SPLIT (an exit-outputs HDF5
    file) subject to mean latency <= GAMMA and/or tail budgets (--tail: the
    p-quantile of latency <= X), with the paper's warm start and inexact
    proximal-point penalty method, then makes every budget hold exactly on SPLIT
    and polishes the thresholds with exact moves. With --min-accuracy or
    --max-drop it answers the opposite question: the lowest mean latency whose
    accuracy on SPLIT reaches the target (exit 3, naming the best accuracy found,
    when none does). Costs may be in any unit; they are normalised internally,
    so the defaults work for all. `eexit info SPLIT` suggests sensible budgets.

    \b
    Examples:
      eexit tune val.h5 --latency latency.json --budget 60% -o thresholds.json
      eexit tune val.h5 --costs 0.32,0.53,0.76,1.0,1.07 --unit relative --budget 0.5
      eexit tune val.h5 --latency latency.json --budget 40%..80%:20 -o frontier.json
      eexit tune val.h5 --latency latency.json --budget 60% --guarantee 95% -o t.json
      eexit tune val.h5 --latency latency.json --tail 95%:70% --budget 55% -o t.json
      eexit tune val.h5 --latency latency.json --min-accuracy 97% -o fastest.json
      eexit tune val.h5 --latency latency.json --max-drop 0.5% --tail p99:80%
    """
    state = get_state()
    ctx = click.get_current_context()
    target_given = min_accuracy_text is not None or max_drop_text is not None
    if not (budget_texts or tail_texts or target_given):
        raise click.UsageError(
            "give what to tune for: --budget GAMMA, --tail P:X, --min-accuracy A or --max-drop D "
            "(e.g. --budget 60%; `eexit info SPLIT` suggests budgets)"
        )
    if min_accuracy_text is not None and max_drop_text is not None:
        raise click.UsageError("give one accuracy target: --min-accuracy or --max-drop, not both")
    if target_given and budget_texts:
        raise click.UsageError(
            "--min-accuracy/--max-drop minimise the mean latency, so they take no --budget; "
            "combine them with --tail, or use --budget alone"
        )
    min_accuracy = max_drop = None
    try:
        if min_accuracy_text is not None:
            min_accuracy = parse_share(min_accuracy_text, "--min-accuracy")
        if max_drop_text is not None:
            max_drop = parse_share(max_drop_text, "--max-drop", "100 points")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--min-accuracy" if min_accuracy_text else "--max-drop") from None
    if (latency_path is None) == (costs_text is None):
        raise click.UsageError("give exactly one of --latency FILE or --costs D1,D2,...")
    if latency_path is not None and _given(ctx, "unit"):
        raise click.UsageError("--unit applies to --costs only; a --latency file carries its own unit")
    if guarantee_text is None:
        for name in ("calibration_fraction", "bound_name", "seed"):
            if _given(ctx, name):
                flag = {"bound_name": "--bound"}.get(name, "--" + name.replace("_", "-"))
                raise click.UsageError(f"{flag} applies to --guarantee only; add --guarantee LEVEL (e.g. 95%)")
    params = {name: v for name, v in dict(k=k, T=T, J=J, gamma=gamma, mu=mu, eta=eta, beta=beta).items()
              if v is not None}
    for name, v in params.items():
        if not (math.isfinite(v) and 0 < v <= MAX_PARAMETER):
            raise click.BadParameter(f"must be positive and at most {MAX_PARAMETER:g}, got {v}",
                                     param_hint=f"--{name}")
    level = cal_fraction = None
    if guarantee_text is not None:
        try:
            level = parse_level(guarantee_text, "--guarantee")
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--guarantee") from None
        try:
            cal_fraction = parse_fraction(calibration_fraction, "--calibration-fraction")
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--calibration-fraction") from None
        if not 0 < cal_fraction < 1:
            raise click.BadParameter("must be strictly between 0% and 100%", param_hint="--calibration-fraction")
    check_output_target(output, [split] + ([latency_path] if latency_path else []))

    latency = read_latency(latency_path) if latency_path else latency_from_costs(_parse_costs(costs_text), unit)
    source = latency_path or "--costs"
    try:
        budgets = parse_budgets(budget_texts, latency.per_exit, latency.unit) if budget_texts else [None]
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None  # the message names --budget
    try:
        tails = [parse_tail(t, latency.per_exit, latency.unit) for t in tail_texts]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--tail") from None

    outputs = read_exits(split, confidence=confidence, ignore_index=ignore_index)
    check_tuning_inputs(outputs, latency, source, allow_renamed_exits)
    if level is not None:
        try:
            check_calibration(outputs.n_samples, outputs.n_exits, cal_fraction, calibration_fraction)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--calibration-fraction") from None
    warn = increasing_warning(latency.per_exit)
    if warn and not state.quiet:
        state.err.print(f"[yellow]warning[/]: {source}: {warn}", highlight=False, soft_wrap=True)
    slack = slack_budget_warning(budgets, latency.per_exit, latency.unit, budget_texts)
    if slack and not state.quiet:
        state.err.print(f"[yellow]warning[/]: --budget: {slack}", highlight=False, soft_wrap=True)
    with progress("tuning", total=len(budgets)) as bar:
        tuned = tune_outputs(outputs, latency, budgets, method=method, polish=polish, guarantee=level,
                             calibration_fraction=cal_fraction if level is not None else 0.3,
                             bound=bound_name, seed=seed, params=params, latency_source=source,
                             allow_renamed_exits=allow_renamed_exits,
                             percent_hint=any("%" in t for t in budget_texts), progress=bar,
                             tail=tails, min_accuracy=min_accuracy, max_drop=max_drop, jobs=jobs)
    if not state.quiet:
        for w in tuned.warnings:
            if not w.endswith(warn or "\0"):
                state.err.print(f"[yellow]warning[/]: {w}", highlight=False, soft_wrap=True)
    entries, skipped = tuned.entries, tuned.skipped
    result = tuned.to_dict(timings=not no_timings)
    hint = feasible_hint(latency.per_exit, latency.unit, any("%" in t for t in budget_texts))
    write_json_output(result, output)
    if skipped:
        listed = ", ".join(f"{s['budget']:.6g}" for s in skipped[:8]) + (", ..." if len(skipped) > 8 else "")
        state.err.print(
            f"warning: skipped {len(skipped)} of {len(budgets)} budgets that cannot be met ({listed} "
            f"{latency.unit}); {hint}; the frontier holds the other {len(entries)}",
            markup=False, highlight=False, soft_wrap=True,
        )
    if state.interactive:
        _summary(state.err, entries, latency.unit, outputs.exit_names)
    # notes, like tables, are for a person at a terminal (README: off with -q or off a terminal)
    if state.interactive and len(entries) == 1 and entries[0]["tuning"].get("message"):
        state.err.print(f"note: {entries[0]['tuning']['message']}", markup=False, highlight=False,
                        soft_wrap=True)


def _certified_line(rec: dict, unit: str) -> str:
    if rec["name"] == "accuracy":
        return f"accuracy >= {rec['lower_bound']:.4f} (target {rec['limit']:.4f})"
    if rec["name"] == "mean_latency":
        return f"mean latency <= {rec['upper_bound']:.6g} {unit}"
    return (f"share above {rec['latency']:.6g} {unit} <= {rec['upper_bound']:.4g} "
            f"(p{100 * rec['level']:g} budget)")
