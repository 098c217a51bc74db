"""What a split allows: per-exit accuracy, the oracle, and the range of useful budgets.

:func:`split_info` answers "what budgets make sense for this model at all?"
before any sweep is run:

* below the smallest per-exit cost ``min d_n`` no thresholds meet a mean-latency
  budget (every sample leaving at the cheapest exit is the least a split can
  spend);
* above the mean latency ``L*`` of the most accurate thresholds the tuner finds
  (tuned with a budget that cannot bind, ``d_N``), accuracy no longer grows: those
  thresholds meet every budget ``>= L*``, so a larger budget only returns them
  again.  A sweep beyond ``L*`` gives identical entries.

The suggested sweep runs from the first to the second, with budgets spaced at
least :data:`MIN_SPACING` of ``d_N`` apart (and far more than the smallest
change of mean latency one sample can make).  Spacing alone does not make the
entries differ: where a larger budget buys no accuracy the tuner returns the
same thresholds again.  So the sweep is run (as ``tune`` runs a frontier) and
its count lowered until no two entries have the same accuracy and mean latency.
"""

from __future__ import annotations

import math

import numpy as np

from .latency import parse_budgets
from .replay import check_problem

__all__ = ["split_info", "suggested_sweep", "MIN_SPACING", "MAX_SWEEP"]

#: Smallest spacing of the suggested budgets, as a share of d_N.
MIN_SPACING = 0.005
#: Most budgets in a suggested sweep.
MAX_SWEEP = 20


def _ceil_to(x: float, step: float) -> float:
    return math.ceil(x / step - 1e-9) * step


def suggested_sweep(smallest: float, largest: float, costs, n_samples: int,
                    count: int | None = None) -> dict:
    """A ``--budget LO..HI:COUNT`` sweep over ``[smallest, largest]`` with distinct entries.

    ``LO`` and ``HI`` are written as percentages of ``d_N`` with two decimals,
    rounded up (a budget rounded down below ``min d_n`` would be infeasible).
    The count gives a spacing of at least ``MIN_SPACING * d_N`` and at least
    ten times the smallest change one sample makes to the mean latency
    (``min |d_i - d_j| / M``), and at most :data:`MAX_SWEEP` budgets.
    """
    costs = np.asarray(costs, dtype=np.float64)
    d_n = float(costs[-1])
    lo_pct = _ceil_to(100.0 * smallest / d_n, 0.01)
    hi_pct = max(_ceil_to(100.0 * largest / d_n, 0.01), lo_pct)
    diffs = np.diff(np.unique(costs))
    grain = float(diffs.min()) / n_samples if diffs.size else 0.0
    spacing = max(MIN_SPACING * d_n, 10.0 * grain)
    width = (hi_pct - lo_pct) / 100.0 * d_n
    most = int(min(MAX_SWEEP, max(1, math.floor(width / spacing) + 1)))
    count = most if count is None else int(max(1, min(count, most)))
    text = f"{lo_pct:.2f}%" if count == 1 else f"{lo_pct:.2f}%..{hi_pct:.2f}%:{count}"
    # the very budgets `tune --budget TEXT` will tune for
    budgets = parse_budgets([text], costs)
    return {"text": text, "count": count, "budgets": budgets}


def _distinct(entries) -> bool:
    keys = [(round(e.accuracy * 1e12), float(e.mean_latency)) for e in entries]
    return len(set(keys)) == len(keys)


def split_info(scores, correct, costs=None, *, tune_fn=None, frontier_fn=None) -> dict:
    """Summary of a split: per exit, the last exit, the oracle and (with costs) useful budgets.

    Parameters
    ----------
    scores, correct : array_like, shape (N, M)
    costs : array_like, shape (N,), optional
        Per-exit costs; without them no budgets are given.
    tune_fn : callable(budget) -> result with ``accuracy``, ``mean_latency``, ``thresholds``
        The tuner that finds the most accurate thresholds (run once, at ``d_N``);
        required with ``costs``.
    frontier_fn : callable(budgets) -> list of such results, optional
        Runs a sweep the way ``tune`` does; when given, the suggested count is
        lowered until the sweep's entries all differ (``suggested["checked"]``).

    Returns
    -------
    dict
        ``per_exit`` (``exit``, ``accuracy``: the exit answering every sample,
        ``mean_confidence``, ``cost``), ``last_exit_accuracy``, ``oracle``
        (``accuracy`` and, with costs, ``mean_latency`` of stopping every sample at
        its first correct exit, or the last exit when none is), and with costs
        ``budgets``: ``smallest`` (min d_n), ``largest`` (``L*``), the accuracy
        reached there, both as a share of d_N, and ``suggested`` (see
        :func:`suggested_sweep`).
    """
    scores, correct, costs = check_problem(scores, correct, costs)
    n_exits, m = scores.shape
    per_exit = [
        {"exit": n + 1, "accuracy": float(np.mean(correct[n])),
         "mean_confidence": float(np.mean(scores[n])),
         "cost": None if costs is None else float(costs[n])}
        for n in range(n_exits)
    ]
    any_right = correct.any(axis=0)
    first_right = np.where(any_right, np.argmax(correct, axis=0), n_exits - 1)
    oracle = {"accuracy": float(np.mean(any_right))}
    out = {
        "exits": n_exits,
        "samples": m,
        "per_exit": per_exit,
        "last_exit_accuracy": float(np.mean(correct[-1])),
        "best_single_exit": int(np.argmax([p["accuracy"] for p in per_exit])) + 1,
        "oracle": oracle,
    }
    if costs is None:
        return out
    if tune_fn is None:
        raise ValueError("tune_fn is needed to find the largest useful budget")
    d_n = float(costs[-1])
    oracle["mean_latency"] = float(np.mean(costs[first_right]))
    oracle["mean_latency_share"] = oracle["mean_latency"] / d_n
    smallest = float(np.min(costs))
    top = tune_fn(float(np.max(costs)))
    largest = max(float(top.mean_latency), smallest)
    out["budgets"] = {
        "smallest": smallest,
        "smallest_share": smallest / d_n,
        "largest": largest,
        "largest_share": largest / d_n,
        "best_accuracy": float(top.accuracy),
        "best_thresholds": [float(t) for t in top.thresholds],
        "suggested": suggested_sweep(smallest, largest, costs, m),
    }
    if frontier_fn is not None:
        sweep = out["budgets"]["suggested"]
        tried = []
        for count in _counts(sweep["count"]):
            sweep = suggested_sweep(smallest, largest, costs, m, count)
            tried.append(sweep["count"])
            if sweep["count"] == 1 or _distinct(frontier_fn(sweep["budgets"])):
                sweep["checked"] = True
                break
        else:
            sweep["checked"] = False
        sweep["counts_tried"] = tried
        out["budgets"]["suggested"] = sweep
    return out


def _counts(first: int) -> list[int]:
    """Counts to try, from ``first`` down: about 3/4 each step, then 3 and 2."""
    out, c = [], first
    while c > 2:
        out.append(c)
        c = min(c - 1, int(c * 0.75))
    out.append(2)
    return sorted(set(out), reverse=True)
