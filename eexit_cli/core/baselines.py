"""Baseline threshold rules the paper compares against.

* :func:`heuristic`: the rule of Huang et al. (MSDNet, 2017).  The fraction of
  samples leaving at exit ``n`` is assumed to be ``P_n = q^n / sum_i q^i``; ``q``
  is chosen so that the expected cost ``sum_n P_n d_n`` equals the budget, and the
  thresholds are then read off the tuning split: at each exit, among the samples
  still undecided, the ``ceil(P_n M)`` most confident leave (samples tied with the
  last of them leave too).
* :func:`single`: one threshold shared by every exit (the "single-threshold
  method" of the paper), the largest whose hard mean latency meets the budget.

Both finish with hard mean latency within the budget on the tuning split: if
the rule itself overshoots (rounding of counts, ties, costs that are not
increasing), every threshold is moved down together by the smallest amount that
fixes it (:meth:`HardProblem.repair`) and the result says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .exact import HardProblem
from .replay import check_problem

__all__ = ["BaselineResult", "geometric_exit_fractions", "heuristic", "single"]


@dataclass(frozen=True)
class BaselineResult:
    """Thresholds of a baseline rule, with what it took to meet the budget.

    Attributes
    ----------
    thresholds : ndarray, shape (N-1,)
        Final thresholds (hard mean latency <= budget on the tuning split).
    raw_thresholds : ndarray, shape (N-1,)
        Thresholds of the rule itself, before any repair.
    repaired : bool
        Whether the rule's own thresholds broke the budget and were moved down.
    shift : float
        Amount every threshold was moved down by (0 when not repaired).
    accuracy, mean_latency : float
        Hard replay of ``thresholds`` on the tuning split.
    raw_accuracy, raw_mean_latency : float
        Hard replay of ``raw_thresholds``.
    info : dict
        Rule-specific details (``q`` and the target exit fractions for the heuristic).
    """

    thresholds: np.ndarray
    raw_thresholds: np.ndarray
    repaired: bool
    shift: float
    accuracy: float
    mean_latency: float
    raw_accuracy: float
    raw_mean_latency: float
    info: dict = field(default_factory=dict)


def geometric_exit_fractions(costs, budget: float) -> tuple[np.ndarray, float]:
    """Exit fractions ``P_n proportional to q^n`` with expected cost ``budget``.

    Returns ``(P, q)``.  For a budget at or beyond the cost range the fractions
    put everything on the first (or last) exit.
    """
    d = np.asarray(costs, dtype=np.float64)
    n = np.arange(d.size, dtype=np.float64)

    def fractions(log_q):
        z = n * log_q
        w = np.exp(z - z.max())
        return w / w.sum()

    def excess(log_q):
        return float(fractions(log_q) @ d) - budget

    lo, hi = -1.0, 1.0
    while excess(lo) > 0 and lo > -745.0:
        lo *= 2.0
    while excess(hi) < 0 and hi < 745.0:
        hi *= 2.0
    f_lo, f_hi = excess(lo), excess(hi)
    if f_lo > 0 or f_hi < 0 or f_lo == f_hi:
        log_q = lo if abs(f_lo) <= abs(f_hi) else hi
    elif f_lo == 0:
        log_q = lo
    elif f_hi == 0:
        log_q = hi
    else:
        from scipy.optimize import brentq  # slow to import: only where a root is needed

        log_q = brentq(excess, lo, hi, xtol=1e-14)
    return fractions(log_q), float(np.exp(np.clip(log_q, -700.0, 700.0)))


def _finish(hard: HardProblem, raw, info) -> BaselineResult:
    raw = np.asarray(raw, dtype=np.float64)
    raw_state = hard.evaluate(hard.index_of(raw))
    state, shift = hard.repair(raw)
    repaired = not hard.feasible(raw_state)
    final = hard.thresholds_of(state.index) if repaired else raw
    n = hard.n_samples
    return BaselineResult(
        thresholds=final,
        raw_thresholds=raw,
        repaired=repaired,
        shift=float(shift) if repaired else 0.0,
        accuracy=state.hits / n,
        mean_latency=state.mean_latency,
        raw_accuracy=raw_state.hits / n,
        raw_mean_latency=raw_state.mean_latency,
        info=info,
    )


def _hard(scores, correct, costs, budget, hard):
    if hard is not None:
        return hard
    scores, correct, costs = check_problem(scores, correct, costs)
    return HardProblem(scores, correct, costs, budget)


def heuristic(scores, correct, costs, budget: float, *, hard: HardProblem | None = None) -> BaselineResult:
    """Huang et al.'s geometric rule, ended within the budget.

    Parameters
    ----------
    scores : array_like, shape (N, M)
    correct : array_like of bool, shape (N, M)
    costs : array_like, shape (N,)
    budget : float
        Gamma, in the unit of ``costs``.
    hard : HardProblem, optional
        A prepared problem on the same data and budget (saves its setup).

    Returns
    -------
    BaselineResult
        ``info`` holds ``q`` and the target exit ``fractions``.
    """
    hard = _hard(scores, correct, costs, budget, hard)
    n_exits, m = hard.n_exits, hard.n_samples
    # without a mean-latency budget (tail budgets only) the rule starts from "spend
    # everything" and the repair brings it within the tail budgets
    fractions, q = geometric_exit_fractions(hard.costs, min(hard.budget, float(np.max(hard.costs))))
    thresholds = np.empty(n_exits - 1)
    undecided = np.arange(m)
    for n in range(n_exits - 1):
        values = hard._values[n]
        take = min(int(np.ceil(fractions[n] * m - 1e-9)), undecided.size)
        if take <= 0:
            thresholds[n] = hard.candidate(n, values.size)  # nobody leaves
            continue
        ranks = hard._ranks[n].take(undecided)
        # the take-th highest rank; the candidate just below it lets at least
        # `take` samples leave (ties at the boundary leave together)
        k = int(np.partition(ranks, ranks.size - take)[ranks.size - take]) - 1
        thresholds[n] = hard.candidate(n, k)
        undecided = undecided[ranks <= k]
    return _finish(hard, thresholds, {"q": q, "fractions": [float(x) for x in fractions]})


def single(scores, correct, costs, budget: float, *, hard: HardProblem | None = None) -> BaselineResult:
    """One threshold for every exit: the largest whose hard mean latency meets the budget.

    The candidates are the midpoints between consecutive distinct scores of the
    early exits (plus one below all and one at the top); with increasing costs
    the hard mean latency does not decrease as the shared threshold grows, so a
    bisection over them is exact.
    """
    hard = _hard(scores, correct, costs, budget, hard)
    ne = hard.n_exits - 1
    u = np.unique(np.concatenate(hard._values))
    cands = HardProblem.candidates(u)

    def state(i):
        return hard.evaluate(hard.index_of(np.full(ne, cands[i])))

    lo, hi = 0, cands.size - 1
    if hard.feasible(state(hi)):
        best = hi
    elif not hard.feasible(state(lo)):
        best = lo  # repaired below
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if hard.feasible(state(mid)):
                lo = mid
            else:
                hi = mid
        best = lo
    return _finish(hard, np.full(ne, cands[best]), {"candidates": int(cands.size)})
