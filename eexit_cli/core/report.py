"""Evaluation reports: one entry per threshold set, and the report around the entries.

Pure functions (numpy and the standard library only) shared by ``eexit evaluate`` and
the Python API, so both give the same numbers and the same JSON shape
(``eexit.evaluation/v2``, docs/formats.md).

The gate is decided without accumulated rounding: the mean latency is the exact
rational ``sum_n count_n * d_n / M`` rounded once to the nearest double (what a
per-sample replay that sums exactly and divides by M gives), and it is compared
with ``budget * (1 + tolerance)`` in exact arithmetic, so a set whose mean equals
the budget passes and one a float step over it fails.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from eexit_cli.core.replay import check_problem, exit_indices
from eexit_cli.core.tail import QUANTILES, TailBudget, latency_quantiles

EVALUATION_FORMAT = "eexit.evaluation/v2"

#: Keys of the report's top level that summarise every entry (see :func:`summarise`).
SUMMARY_KEYS = ("passed", "accuracy", "mean_latency", "violation", "within_budget", "accuracy_ok",
                "tail_ok")


def exact_mean(counts, costs) -> Fraction:
    """``sum_n counts_n * costs_n / sum_n counts_n`` as an exact rational."""
    total = sum((Fraction(float(d)) * int(c) for c, d in zip(counts, costs)), Fraction(0))
    return total / int(np.sum(counts))


def evaluation_entry(scores, correct, thresholds, costs, *, budget=None, tolerance=0.0,
                     min_accuracy=None, exit_names=None, unit=None, tail=()) -> dict:
    """Replay one threshold set and report it as a JSON-ready dict.

    Parameters
    ----------
    scores, correct : array_like, shape (N, M)
        Confidences (higher = more confident) and top-1 correctness per exit and sample.
    thresholds : array_like, shape (N-1,)
        ``t_1 .. t_{N-1}``; a sample leaves at the first exit whose score is strictly above.
    costs : array_like, shape (N,)
        ``d_1 .. d_N`` in ``unit``.
    budget : float or None
        Γ in ``unit``; None for no latency gate.
    tolerance : float
        Allowed relative excess ``(mean - Γ) / Γ`` (a fraction, >= 0).
    min_accuracy : float or None
        Accuracy gate in [0, 1].
    exit_names : list of str, optional
        N names (default ``exit_1 .. exit_N``).
    unit : str, optional
        Unit of ``costs`` and ``budget``, copied into the entry.
    tail : sequence of TailBudget
        Tail budgets "the p-quantile of latency <= X" (X in ``unit``) to gate on;
        ``--tolerance`` does not apply to them.

    Returns
    -------
    dict
        ``thresholds, budget, unit, accuracy, mean_latency, violation, tolerance,
        within_budget, min_accuracy, accuracy_ok, latency_quantiles, tail, tail_ok, passed,
        per_exit`` where ``latency_quantiles`` holds p50, p90, p95 and p99 of the per-sample
        latency (the inverted-CDF quantile: the smallest latency with at least that share of
        samples at or below it), ``tail`` one record per tail budget (``level``, ``latency``,
        ``quantile``, ``over`` and ``allowed`` samples above the latency, ``share_over``,
        ``within``), and ``per_exit`` lists per exit ``exit`` (1-based), ``name``,
        ``latency``, ``count``, ``fraction`` (the exit's share of samples) and ``accuracy``
        (None where no sample leaves).
    """
    scores, correct, costs = check_problem(scores, correct, costs)
    n_exits, n_samples = scores.shape
    names = list(exit_names) if exit_names is not None else [f"exit_{i + 1}" for i in range(n_exits)]
    if len(names) != n_exits:
        raise ValueError(f"exit_names has {len(names)} names for {n_exits} exits")
    if budget is not None:
        budget = float(budget)
        if not (math.isfinite(budget) and budget > 0):
            raise ValueError(f"budget must be positive and finite, got {budget!r}")
    tolerance = float(tolerance)
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a non-negative fraction, got {tolerance!r}")
    if min_accuracy is not None:
        min_accuracy = float(min_accuracy)
        if not 0 <= min_accuracy <= 1:
            raise ValueError(f"min_accuracy must be in [0, 1], got {min_accuracy!r}")

    idx = exit_indices(scores, thresholds)
    counts = np.bincount(idx, minlength=n_exits)
    hits = np.bincount(idx, weights=correct[idx, np.arange(n_samples)], minlength=n_exits).astype(np.int64)
    mean = float(exact_mean(counts, costs))
    accuracy = int(hits.sum()) / n_samples

    if budget is None:
        violation, within = None, True
    else:
        gamma = Fraction(budget)
        violation = float((Fraction(mean) - gamma) / gamma)
        within = Fraction(mean) <= gamma * (1 + Fraction(tolerance))
    acc_ok = min_accuracy is None or accuracy >= min_accuracy
    per_sample = costs[idx]
    tails = []
    for tb in tail:
        if not isinstance(tb, TailBudget):
            tb = TailBudget(float(tb[0]), float(tb[1]))
        over = tb.over(per_sample)
        tails.append({
            **tb.to_dict(),
            "quantile": latency_quantiles(per_sample, (tb.level,))[f"p{100 * tb.level:g}"],
            "over": over,
            "allowed": tb.allowed(n_samples),
            "share_over": over / n_samples,
            "within": over <= tb.allowed(n_samples),
        })
    tail_ok = all(t["within"] for t in tails)
    per_exit = [
        {
            "exit": n + 1,
            "name": names[n],
            "latency": float(costs[n]),
            "count": int(counts[n]),
            "fraction": int(counts[n]) / n_samples,
            "accuracy": int(hits[n]) / int(counts[n]) if counts[n] else None,
        }
        for n in range(n_exits)
    ]
    return {
        "thresholds": [float(t) for t in np.asarray(thresholds, dtype=float)],
        "budget": budget,
        "unit": unit,
        "accuracy": accuracy,
        "mean_latency": mean,
        "violation": violation,
        "tolerance": tolerance,
        "within_budget": bool(within),
        "min_accuracy": min_accuracy,
        "accuracy_ok": bool(acc_ok),
        "latency_quantiles": latency_quantiles(per_sample, QUANTILES),
        "tail": tails,
        "tail_ok": bool(tail_ok),
        "passed": bool(within and acc_ok and tail_ok),
        "per_exit": per_exit,
    }


def summarise(entries: list[dict]) -> dict:
    """The report's top-level summary of ``entries``: the worst case of each gated figure.

    ``accuracy`` is the lowest accuracy, ``mean_latency`` the highest mean latency and
    ``violation`` the largest violation (None when no entry has a budget) over the
    entries; ``passed``, ``within_budget``, ``accuracy_ok`` and ``tail_ok`` hold for every entry.
    With one entry these are that entry's own values.
    """
    if not entries:
        raise ValueError("a report needs at least one entry")
    violations = [e["violation"] for e in entries if e.get("violation") is not None]
    return {
        "passed": all(e["passed"] for e in entries),
        "accuracy": min(e["accuracy"] for e in entries),
        "mean_latency": max(e["mean_latency"] for e in entries),
        "violation": max(violations) if violations else None,
        "within_budget": all(e["within_budget"] for e in entries),
        "accuracy_ok": all(e["accuracy_ok"] for e in entries),
        "tail_ok": all(e.get("tail_ok", True) for e in entries),
    }


def evaluation_report(entries: list[dict], **fields) -> dict:
    """The whole ``eexit.evaluation/v2`` object: ``format``, ``fields`` (e.g. ``split``,
    ``samples``, ``unit``), the summary of :func:`summarise`, ``n_entries``, ``n_failed``
    and ``entries``."""
    report = {"format": EVALUATION_FORMAT, **fields}
    report.update(summarise(entries))
    report["n_entries"] = len(entries)
    report["n_failed"] = sum(not e["passed"] for e in entries)
    report["entries"] = list(entries)
    return report
