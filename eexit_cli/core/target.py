"""The fastest thresholds that keep an accuracy target: minimise mean latency s.t. accuracy >= A.

:func:`tune_fastest` swaps the objective and the constraint of P2.  It uses the
structure of the problem rather than a second solver: the best accuracy
reachable within a mean-latency budget, ``F(Γ)``, grows with ``Γ``, so the
smallest budget whose tuned thresholds reach the target is found by a coarse
sweep (each budget from the default starts) and a bisection between the last
budget that missed and the first that reached it.
Every tuned result that reaches the target is kept, the cheapest wins, and an
exact polish on the hard rule (:meth:`HardProblem.polish` with the latency
objective and ``min_hits``) then lowers its mean latency further at fixed
accuracy: the target, the tail budgets and nothing else constrain it.

The tuner is a heuristic, so ``F`` is monotone only approximately; keeping
every result that reaches the target, not only the bisection's last one,
makes the search robust to a small dip.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..errors import InfeasibleBudgetError
from .exact import HardProblem
from .replay import check_problem
from .tail import constraint_rows
from .tuner import _POLISH_LEVELS, TuneResult, _result, _swept_all, _tails, tune

__all__ = ["tune_fastest", "hits_needed"]

#: Budgets of the coarse sweep that brackets the target (the bisection refines it).
COARSE_BUDGETS = 8
#: The bisection stops when the bracket is this narrow, relative to d_N.
BUDGET_RTOL = 1e-4


def hits_needed(min_accuracy: float, n_samples: int) -> int:
    """Correct answers needed for accuracy >= ``min_accuracy`` on ``n_samples`` samples.

    ``ceil(A M)``, robust to the rounding of ``A M`` (0.97 * 100 is 97.00000000000001).
    """
    return max(0, math.ceil(float(min_accuracy) * n_samples - 1e-9))


def tune_fastest(scores, correct, costs, min_accuracy: float, *, tail=None, method: str = "ippp",
                 polish: bool = True, coarse: int = COARSE_BUDGETS, rtol: float = BUDGET_RTOL,
                 progress=None, **tune_kwargs) -> TuneResult:
    """Thresholds with the lowest mean latency whose accuracy on the split is >= ``min_accuracy``.

    Parameters
    ----------
    scores, correct, costs
        As for :func:`~eexit_cli.core.tuner.tune`.
    min_accuracy : float
        The target ``A`` in [0, 1]; the result answers at least ``ceil(A M)``
        tuning samples correctly (exactly, by replay).
    tail : optional
        Tail-latency budgets, as for :func:`~eexit_cli.core.tuner.tune`; they
        hold too.
    method : {"ippp", "heuristic", "single"}
        The tuner run at each budget of the search.
    polish : bool
        ``"ippp"`` only: polish each tuned result for accuracy, and the final one
        for latency at fixed accuracy.
    coarse : int
        Budgets of the coarse sweep.
    rtol : float
        Width of the final bracket of budgets, relative to ``d_N``.
    progress : callable(done, total), optional
    **tune_kwargs
        Passed to :func:`~eexit_cli.core.tuner.tune` (``score_range``, ``k``, ...).

    Returns
    -------
    TuneResult
        ``budget`` is None and ``min_accuracy`` is recorded in ``params``;
        ``stages["search"]`` lists every budget tried with its hard accuracy and
        mean latency, ``stages["fastest"]`` the exact polish at fixed accuracy.

    Raises
    ------
    InfeasibleBudgetError
        When even the most accurate thresholds found (no latency limit beyond the
        tail budgets) miss the target; the message names the accuracy they reach.
    ValueError
        For malformed inputs.
    """
    t_start = time.perf_counter()
    scores, correct, costs = check_problem(scores, correct, costs)
    try:
        a = float(min_accuracy)
    except (TypeError, ValueError):
        raise ValueError(f"min_accuracy must be a number in [0, 1], got {min_accuracy!r}") from None
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"min_accuracy must lie in [0, 1], got {min_accuracy!r}")
    if int(coarse) != coarse or coarse < 2:
        raise ValueError(f"coarse must be an integer >= 2, got {coarse!r}")
    if not (math.isfinite(rtol) and rtol > 0):
        raise ValueError(f"rtol must be positive, got {rtol!r}")
    tails = _tails(tail)
    n_exits, m = scores.shape
    need = hits_needed(a, m)
    d_min, d_max = float(costs.min()), float(costs.max())
    tried: list[dict] = []
    feasible: list[TuneResult] = []
    calls = [0]
    total = coarse + int(math.ceil(math.log2(max(coarse, 2) / rtol))) + 2

    def run(budget, init=None):
        res = tune(scores, correct, costs, budget, tail=tails, method=method, polish=polish,
                   init=init, **tune_kwargs)
        calls[0] += 1
        if progress is not None:
            progress(min(calls[0], total - 1), total)
        hits = int(round(res.accuracy * m))
        tried.append({"budget": budget, "accuracy": res.accuracy, "mean_latency": res.mean_latency,
                      "reached": hits >= need})
        if hits >= need:
            feasible.append(res)
        return hits >= need, res

    # the most accurate thresholds found: the budget cannot bind at d_max
    ok, top = run(d_max)
    if not ok:
        kept, fix = ((", tail budgets kept", "lower the target or relax the tail budget") if tails
                     else ("", "lower the target"))
        raise InfeasibleBudgetError(
            f"accuracy target {a:.6g} ({need} of {m} samples) is above the best accuracy found on "
            f"the tuning split, {top.accuracy:.6g} (mean latency {top.mean_latency:.6g}, no "
            f"mean-latency limit{kept}); {fix}"
        )

    # coarse sweep from the cheapest budget up, each budget from the default starts: a
    # chain of warm starts from tight budgets can hold the looser ones in a local
    # optimum that leaves much of their budget unused
    grid = np.linspace(d_min, top.mean_latency, coarse)
    lo = None
    hi = top.mean_latency
    for b in grid[:-1]:
        ok, res = run(float(b))
        if ok:
            hi = float(b)
            break
        lo = float(b)
    # bisection between the last budget that missed and the first that reached it
    if lo is not None:
        init_lo = None
        while hi - lo > rtol * d_max:
            mid = 0.5 * (lo + hi)
            ok, res = run(mid, init=init_lo)
            if ok:
                hi = mid
            else:
                lo, init_lo = mid, res.thresholds

    best = min(feasible, key=lambda r: (r.mean_latency, -r.accuracy))
    stages = {"search": tried}
    params = dict(best.params)
    params.update({"min_accuracy": a, "hits_needed": need, "coarse": int(coarse), "rtol": rtol,
                   "budget_of_start": best.budget})
    final_t = best.thresholds
    lo_box, hi_box = params["score_range"]
    if polish and method == "ippp":
        t0 = time.perf_counter()
        rows, bounds = constraint_rows(costs, None, tails, m)
        hard = HardProblem(scores, correct, rows, bounds, lo_box, hi_box, min_hits=need,
                           objective="cost")
        # the cheapest few results that reach the target are the starts
        starts = sorted(feasible, key=lambda r: (r.mean_latency, -r.accuracy))[:3]
        out_best, rounds_total = None, 0
        seen = set()
        for r in starts:
            st = hard.state(hard.index_of(r.thresholds))
            sig = tuple(int(x) for x in st.index)
            if sig in seen or not hard.feasible(st):
                continue
            seen.add(sig)
            out, rounds = hard.polish(st, levels=_POLISH_LEVELS)
            rounds_total += rounds
            if out_best is None or out.key() > out_best.key():
                out_best = out
        before = best.mean_latency
        if out_best is not None and out_best.mean_latency < before:
            final_t = hard.thresholds_of(out_best.index)
        # on tiny problems every state (unless the pair sweeps covered them all), kept
        # when strictly better than the polish and than the start (lower latency, or as
        # low with more hits)
        full = hard.exhaustive() if out_best is None or not _swept_all(hard) else None
        exhaustive = full is not None and (out_best is None or full.key() > out_best.key()) \
            and full.key() > hard.state(hard.index_of(best.thresholds)).key()
        if exhaustive:
            out_best, final_t = full, hard.thresholds_of(full.index)
        stages["fastest"] = {
            "start_mean_latency": before,
            "mean_latency": out_best.mean_latency if out_best is not None else before,
            "exhaustive": exhaustive,
            "rounds": rounds_total,
            "seconds": time.perf_counter() - t0,
        }
    stages["start"] = best.to_dict()
    if progress is not None:
        progress(total, total)
    notes = [
        f"fastest thresholds found with accuracy >= {a:.6g} on the tuning split "
        f"({need} of {m} samples): {len(tried)} budgets tuned, the cheapest that reached the "
        f"target had mean latency {best.mean_latency:.6g}"
    ]
    if "fastest" in stages and stages["fastest"]["mean_latency"] < best.mean_latency:
        notes.append(f"the exact polish at fixed accuracy lowered it to {stages['fastest']['mean_latency']:.6g}")
    out = _result(final_t, method, None, scores, correct, costs, None, best.converged, best.status,
                  notes, best.iterations, best.gradient_evaluations, t_start, params, stages,
                  list(best.warnings), tails)
    if int(round(out.accuracy * m)) < need:  # pragma: no cover - guarded by the exact machinery
        raise RuntimeError("internal error: thresholds miss the accuracy target")
    return out
