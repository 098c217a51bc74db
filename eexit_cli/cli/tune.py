"""``eexit tune``: thresholds that maximise accuracy under a mean-latency budget."""

from __future__ import annotations

import re
import time

import click
import numpy as np
from rich.table import Table

from eexit_cli.cli.common import (
    CONTEXT_SETTINGS,
    EXIT_CODES_HELP,
    get_state,
    global_options,
    output_option,
    progress,
    write_json_output,
)
from eexit_cli.core.replay import replay
from eexit_cli.core.latency import increasing_warning, parse_budget, parse_fraction, parse_level
from eexit_cli.errors import InputError
from eexit_cli.io.exits import read_exits
from eexit_cli.io.jsonfiles import (
    FRONTIER_FORMAT,
    latency_from_costs,
    read_latency,
    thresholds_to_dict,
)

METHODS = ("ippp", "heuristic", "single")
MIN_SAMPLES_PER_EXIT = 10
_RANGE = re.compile(r"^\s*(?P<lo>[^.:][^:]*?)\s*\.\.\s*(?P<hi>[^:]+?)\s*:\s*(?P<n>\d+)\s*$")


def parse_budgets(texts: tuple[str, ...], costs) -> list[float]:
    """Budgets from repeated ``--budget`` values and ``LO..HI:COUNT`` sweeps, sorted, unique."""
    budgets: list[float] = []
    for text in texts:
        m = _RANGE.match(text)
        if m:
            lo = parse_budget(m.group("lo"), costs)
            hi = parse_budget(m.group("hi"), costs)
            n = int(m.group("n"))
            if n < 1:
                raise ValueError(f"budget sweep {text!r} needs a count of at least 1")
            if hi < lo:
                raise ValueError(f"budget sweep {text!r} goes down; write LOW..HIGH:COUNT")
            budgets.extend(np.linspace(lo, hi, n).tolist() if n > 1 else [lo])
        else:
            budgets.append(parse_budget(text, costs))
    return sorted(set(float(b) for b in budgets))


def _parse_costs(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of numbers (e.g. 1,2.1,3.3)", param_hint="--costs"
        ) from None
    return values


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
        console.print(
            f"budget        {e['budget']:.6g} {unit}\n"
            f"mean latency  {tun['mean_latency']:.6g} {unit}  ({100 * (tun['mean_latency'] / e['budget'] - 1):+.2f}% vs budget, tuning split)\n"
            f"accuracy      {tun['accuracy']:.4f}  (tuning split)\n"
            f"time          {tun['seconds']:.3f} s",
            markup=False, highlight=False,
        )
        g = tun.get("guarantee")
        if g:
            console.print(
                f"certified     mean latency <= {g['upper_bound']:.6g} {unit} with probability >= "
                f"{g['level']:.3g} ({g['bound']}; internal budget {g['internal_budget']:.6g}, "
                f"{g['calibration_size']} calibration samples)",
                markup=False, highlight=False,
            )
        return
    t = Table(title="Frontier (tuning split)", title_justify="left")
    for col in ("budget", "mean latency", "vs budget", "accuracy", "seconds"):
        t.add_column(col, justify="right")
    for e in entries:
        tun = e["tuning"]
        t.add_row(f"{e['budget']:.6g}", f"{tun['mean_latency']:.6g}",
                  f"{100 * (tun['mean_latency'] / e['budget'] - 1):+.2f}%", f"{tun['accuracy']:.4f}",
                  f"{tun['seconds']:.3f}")
    console.print(t)


@click.command("tune", context_settings=CONTEXT_SETTINGS, epilog=EXIT_CODES_HELP)
@click.argument("split", type=click.Path(dir_okay=False))
@click.option("--latency", "latency_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Latency profile (eexit.latency/v1), e.g. from `eexit profile`.")
@click.option("--costs", "costs_text", metavar="D1,D2,...",
              help="Per-exit costs d_1..d_N instead of --latency (any unit: seconds, FLOPs, ...).")
@click.option("--unit", default="cost", show_default=True, help="Unit of --costs.")
@click.option("--budget", "budget_texts", multiple=True, required=True, metavar="GAMMA",
              help="Mean-latency budget in the profile's unit, or a percentage of d_N (60%). "
                   "Repeat it, or give a sweep LOW..HIGH:COUNT (40%..80%:20), to write a frontier.")
@output_option("Write the thresholds JSON here, atomically ('-' = stdout). Default: stdout.")
@click.option("--confidence", type=click.Choice(["max_softmax", "entropy", "margin", "scores"]),
              default=None, help="Confidence measure computed from /logits or /probs "
                                 "[default: max_softmax; a /scores file brings its own].")
@click.option("--method", type=click.Choice(METHODS), default="ippp", show_default=True,
              help="ippp: the paper's warm start + iPPP; heuristic: Huang et al.'s geometric rule; "
                   "single: one threshold shared by all exits.")
@click.option("--polish/--no-polish", default=True, show_default=True,
              help="After the solve, improve the exact accuracy on the tuning split with moves "
                   "that keep the budget.")
@click.option("--guarantee", "guarantee_text", metavar="LEVEL",
              help="Certify the budget on new data with this probability (e.g. 95%), holding out "
                   "a calibration part of SPLIT (see docs/guarantee.md).")
@click.option("--calibration-fraction", default="30%", show_default=True, metavar="FRACTION",
              help="Share of SPLIT held out for --guarantee.")
@click.option("--bound", "bound_name", default=None, metavar="NAME",
              help="Upper confidence bound used by --guarantee (see docs/guarantee.md).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the --guarantee split.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, metavar="N",
              help="Processes for a frontier (several budgets); each solves a run of neighbouring "
                   "budgets. [default: the CPU cores available]")
@click.option("--k", "k", type=float, default=None, help="Steepness of the logistic (eq. 3), on scores scaled to [0, 1].")
@click.option("--T", "T", type=int, default=None, help="Outer iterations of Algorithm 1 (at most).")
@click.option("--J", "J", type=int, default=None, help="Inner accelerated-gradient steps per outer iteration.")
@click.option("--gamma", type=float, default=None, help="Proximal parameter γ (eq. 16).")
@click.option("--mu", type=float, default=None, help="Strong-convexity parameter μ.")
@click.option("--eta", type=float, default=None, help="Smoothness parameter η (step 1/η).")
@click.option("--beta", type=float, default=None, help="Penalty parameter β (eq. 16), for costs scaled by d_N.")
@global_options
def tune(split, latency_path, costs_text, unit, budget_texts, output, confidence, method, polish,
         guarantee_text, calibration_fraction, bound_name, seed, jobs, k, T, J, gamma, mu, eta, beta):
    """Tune exit thresholds on a validation split for a mean-latency budget.

    Maximises the accuracy of early-exit inference on SPLIT (an exit-outputs HDF5
    file) subject to mean latency <= GAMMA, with the paper's warm start and
    inexact proximal-point penalty method, then makes the budget hold exactly
    on SPLIT and polishes the thresholds with exact moves. Costs may be in any
    unit; they are normalised internally, so the defaults work for all.

    \b
    Examples:
      eexit tune val.h5 --latency latency.json --budget 60% -o thresholds.json
      eexit tune val.h5 --costs 0.32,0.53,0.76,1.0,1.07 --unit relative --budget 0.5
      eexit tune val.h5 --latency latency.json --budget 40%..80%:20 -o frontier.json
      eexit tune val.h5 --latency latency.json --budget 60% --guarantee 95% -o t.json
    """
    from eexit_cli.core.tuner import tune as tune_thresholds

    state = get_state()
    if (latency_path is None) == (costs_text is None):
        raise click.UsageError("give exactly one of --latency FILE or --costs D1,D2,...")
    latency = read_latency(latency_path) if latency_path else latency_from_costs(_parse_costs(costs_text), unit)
    source = latency_path or "--costs"
    try:
        budgets = parse_budgets(budget_texts, latency.per_exit)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--budget") from None
    params = {name: v for name, v in dict(k=k, T=T, J=J, gamma=gamma, mu=mu, eta=eta, beta=beta).items()
              if v is not None}
    for name, v in params.items():
        if not v > 0:
            raise click.BadParameter(f"must be positive, got {v}", param_hint=f"--{name}")
    level = None
    if guarantee_text is not None:
        try:
            level = parse_level(guarantee_text, "--guarantee")
            cal_fraction = parse_fraction(calibration_fraction, "--calibration-fraction")
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        if not 0 < cal_fraction < 1:
            raise click.BadParameter("must be strictly between 0% and 100%", param_hint="--calibration-fraction")

    outputs = read_exits(split, confidence=confidence)
    if outputs.n_exits != latency.n_exits:
        raise InputError(
            f"{source}: the latency profile has {latency.n_exits} exits but {split} has "
            f"{outputs.n_exits} (N disagrees)"
        )
    min_samples = MIN_SAMPLES_PER_EXIT * outputs.n_exits
    if outputs.n_samples < min_samples:
        raise InputError(
            f"{split}: {outputs.n_samples} samples are too few to tune {outputs.n_exits} exits on; "
            f"use a validation split of at least {min_samples} samples"
        )
    warn = increasing_warning(latency.per_exit)
    if warn and not state.quiet:
        state.err.print(f"[yellow]warning[/]: {source}: {warn}", highlight=False, soft_wrap=True)

    def solve(scores, correct, budget, init=None, progress_cb=None):
        return tune_thresholds(scores, correct, latency.per_exit, budget, method=method,
                               score_range=outputs.score_range, polish=polish, init=init,
                               progress=progress_cb, **params)

    entries = []

    def add_entry(budget, res_dict, thresholds):
        hard = replay(outputs.scores, outputs.correct, thresholds, latency.per_exit)
        res_dict["split"] = str(split)
        res_dict["samples"] = outputs.n_samples
        res_dict["accuracy"] = hard.accuracy
        res_dict["mean_latency"] = hard.mean_latency
        res_dict["per_exit_fraction"] = [float(f) for f in hard.fraction]
        entries.append(thresholds_to_dict(thresholds, outputs.confidence, budget, latency,
                                          exit_names=outputs.exit_names, tuning=res_dict))
        for w in res_dict.get("warnings", []) or []:
            if not state.quiet and w != warn:
                state.err.print(f"[yellow]warning[/]: {w}", highlight=False, soft_wrap=True)

    with progress("tuning", total=len(budgets)) as bar:
        if level is None and len(budgets) > 1:
            from eexit_cli.core.frontier import available_cores, tune_frontier

            results = tune_frontier(outputs.scores, outputs.correct, latency.per_exit, budgets,
                                    jobs=jobs or available_cores(), method=method,
                                    score_range=outputs.score_range, polish=polish,
                                    progress=lambda done, _total: bar(done), **params)
            for budget, res in zip(budgets, results):
                add_entry(budget, res.to_dict(), res.thresholds)
        else:
            prev = None
            for i, budget in enumerate(budgets):
                started = time.perf_counter()
                if level is not None:
                    from eexit_cli.core.guarantee import certify

                    kwargs = {} if bound_name is None else {"bound": bound_name}
                    g = certify(outputs.scores, outputs.correct, latency.per_exit, budget, level=level,
                                tune_fn=lambda s, c, d, b, init=None: solve(s, c, b, init=init),
                                calibration_fraction=cal_fraction, seed=seed, **kwargs)
                    res = g.tune_result
                    tuning = res.to_dict()
                    tuning["guarantee"] = {k: v for k, v in g.to_dict().items() if k != "tune_result"}
                    tuning["seconds"] = time.perf_counter() - started
                    thresholds = g.thresholds
                else:
                    res = solve(outputs.scores, outputs.correct, budget,
                                init=prev if len(budgets) > 1 else None)
                    tuning = res.to_dict()
                    thresholds = res.thresholds
                prev = thresholds
                add_entry(budget, tuning, thresholds)
                bar(i + 1)

    if len(entries) == 1:
        result = entries[0]
    else:
        result = {
            "format": FRONTIER_FORMAT,
            "confidence": outputs.confidence,
            "split": str(split),
            "budgets": budgets,
            "entries": entries,
        }
    write_json_output(result, output)
    if state.interactive:
        _summary(state.err, entries, latency.unit, outputs.exit_names)
    if not state.quiet and len(entries) == 1 and entries[0]["tuning"].get("message"):
        state.err.print(f"note: {entries[0]['tuning']['message']}", markup=False, highlight=False,
                        soft_wrap=True)
