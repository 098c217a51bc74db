"""Thresholds whose mean latency on new data is within the budget with high probability.

Thresholds tuned so that the mean latency on the validation split equals the
budget exceed it on new data about half of the time.  :func:`certify` holds out
a random calibration part of the validation samples, tunes candidates on the
rest for a sequence of internal budgets below the budget, and keeps a candidate
only when an upper confidence bound on its mean latency, computed on the
calibration part, is within the budget (Learn-then-Test with fixed-sequence
testing; docs/guarantee.md gives the argument and the assumptions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from eexit_cli.core.bounds import DEFAULT_BOUND, get_bound
from eexit_cli.core.replay import check_problem, exit_indices
from eexit_cli.errors import InfeasibleBudgetError

if TYPE_CHECKING:  # the real tuner; certify only needs the TuneFn interface below
    from eexit_cli.core.tuner import tune  # noqa: F401

__all__ = ["Candidate", "GuaranteeResult", "Requirement", "certify", "internal_budgets"]

MAX_MARGIN = 4.0  # most cautious candidate: budget minus this many estimated bound widths
MIN_MARGIN = 0.25  # boldest candidate before the budget itself, in estimated widths
_NAMES = {"mean_latency": "mean latency", "error": "accuracy"}


class TuneFn(Protocol):
    """``tune_fn(scores, correct, costs, budget, init=None)`` -> object with ``.thresholds``."""

    def __call__(self, scores, correct, costs, budget, init=None) -> Any: ...


@dataclass(frozen=True)
class Requirement:
    """One certified requirement: the mean of a per-sample statistic in ``[lo, hi]`` is at most ``limit``.

    Mean latency is the statistic ``d_exit`` (``lo, hi = min d, max d``); a tail
    budget "p-quantile <= X" is ``1[d_exit > X]`` with limit ``1 - p``; an
    accuracy target ``A`` is the error ``1 - correct_exit`` with limit ``1 - A``.
    ``floor`` is the smallest internal limit a candidate is tuned for.
    """

    name: str
    limit: float
    lo: float
    hi: float
    floor: float

    def internal(self, margin: float) -> float:
        return float(max(self.limit - margin, self.floor))


@dataclass(frozen=True)
class Candidate:
    """One tested candidate: tuned on the tuning part, bounded on the calibration part.

    ``internal``, ``calibration_means`` and ``upper_bounds`` hold one value per
    requirement (mean latency first when there is a budget); the scalar fields
    describe mean latency (``internal_budget`` is None without a budget).
    """

    internal_budget: float | None
    tuning_mean: float
    calibration_mean: float
    upper_bound: float | None
    certified: bool
    internal: tuple = ()
    calibration_means: tuple = ()
    upper_bounds: tuple = ()
    names: tuple = ()

    def to_dict(self) -> dict:
        out = {
            "internal_budget": self.internal_budget,
            "tuning_mean_latency": self.tuning_mean,
            "calibration_mean_latency": self.calibration_mean,
            "upper_bound": self.upper_bound,
            "certified": self.certified,
        }
        if self.names and self.names != ("mean_latency",):
            out["requirements"] = [
                {"name": n, "internal": i, "calibration_mean": c, "upper_bound": u}
                for n, i, c, u in zip(self.names, self.internal, self.calibration_means, self.upper_bounds)
            ]
        return out


@dataclass(frozen=True)
class GuaranteeResult:
    """Certified thresholds and the record of how they were certified.

    Attributes
    ----------
    thresholds : ndarray, shape (N-1,)
        Thresholds tuned on the tuning part at ``internal_budget``.
    budget : float
        The budget Γ that is certified.
    level : float
        ``1 - delta``: the probability, over the draw of the validation samples
        and the split, that the expected mean latency on new data is <= budget.
    bound : str
        Name of the upper confidence bound (``eexit_cli.core.bounds.BOUNDS``).
    upper_bound : float
        Upper confidence bound on the expected mean latency of ``thresholds``.
    internal_budget : float
        Budget the chosen candidate was tuned for on the tuning part.
    calibration_mean : float
        Mean latency of ``thresholds`` on the calibration part.
    seed : int
        Seed of the random split.
    tuning_size, calibration_size : int
        Number of samples in each part.
    width_estimate : float
        Estimated bound width that set the spacing of the internal budgets.
    candidates : tuple of Candidate
        Every tested candidate, in the order tested (most cautious first).
    tune_result : object
        What ``tune_fn`` returned for the chosen candidate.
    """

    thresholds: np.ndarray
    budget: float
    level: float
    bound: str
    upper_bound: float
    internal_budget: float
    calibration_mean: float
    seed: int
    tuning_size: int
    calibration_size: int
    width_estimate: float
    candidates: tuple[Candidate, ...]
    tune_result: Any = field(repr=False)
    requirements: tuple = ()

    def to_dict(self) -> dict:
        """JSON-ready record (``tune_result`` via its own ``to_dict`` when it has one)."""
        tr = self.tune_result
        if hasattr(tr, "to_dict"):
            tr = tr.to_dict()
        elif tr is not None and not isinstance(tr, (dict, list, str, int, float, bool)):
            tr = repr(tr)
        return {
            "budget": self.budget,
            "level": self.level,
            "bound": self.bound,
            "upper_bound": self.upper_bound,
            "internal_budget": self.internal_budget,
            "calibration_mean_latency": self.calibration_mean,
            "seed": self.seed,
            "tuning_size": self.tuning_size,
            "calibration_size": self.calibration_size,
            "width_estimate": self.width_estimate,
            "thresholds": [float(t) for t in self.thresholds],
            "candidates": [c.to_dict() for c in self.candidates],
            "requirements": list(self.requirements),
            "tune_result": tr,
        }


def internal_budgets(budget: float, d_min: float, width: float, n_candidates: int) -> list[float]:
    """The internal budgets to test, most cautious first, ending with ``budget`` itself.

    Parameters
    ----------
    budget : float
        The budget Γ to certify.
    d_min : float
        Smallest per-exit cost ``d_1``: no thresholds go below it.
    width : float
        Estimated width (upper bound minus mean) of the bound on the calibration part.
    n_candidates : int
        Length of the sequence before clipping and removing duplicates.

    Returns
    -------
    list of float
        Increasing internal budgets in ``(d_min, budget]``.

    Notes
    -----
    A candidate tuned for ``Γ - m`` passes roughly when the margin ``m`` exceeds
    the bound's width plus the sampling error of the calibration mean (about
    half a width), so the margins run geometrically from ``MAX_MARGIN`` widths
    down to ``MIN_MARGIN`` widths, then 0.  Starting cautious matters: testing
    stops at the first candidate that fails, so the first one should pass
    almost surely, and the fine geometric steps near one width leave little
    latency unused.  Internal budgets below ``d_1`` are raised to just above it
    (where every sample leaves at the first exit); duplicates are dropped.
    """
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be at least 1, got {n_candidates}")
    if n_candidates == 1:
        margins = [0.0]
    elif n_candidates == 2:
        margins = [MAX_MARGIN * width, 0.0]
    else:
        margins = list(np.geomspace(MAX_MARGIN, MIN_MARGIN, n_candidates - 1) * width) + [0.0]
    floor = d_min + 1e-3 * (budget - d_min) if budget > d_min else budget
    out: list[float] = []
    for m in margins:
        b = float(max(budget - m, floor))
        if not out or b > out[-1]:
            out.append(b)
    return out


def _check_args(level, calibration_fraction, budget, n_candidates):
    try:
        level = float(level)
    except (TypeError, ValueError):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}") from None
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1 (e.g. 0.95), got {level}")
    calibration_fraction = float(calibration_fraction)
    if not 0.0 < calibration_fraction < 1.0:
        raise ValueError(
            f"calibration_fraction must lie strictly between 0 and 1, got {calibration_fraction}"
        )
    if budget is not None:
        budget = float(budget)
        if not (math.isfinite(budget) and budget > 0):
            raise ValueError(f"budget must be positive and finite, got {budget}")
    if int(n_candidates) != n_candidates or n_candidates < 1:
        raise ValueError(f"n_candidates must be a positive integer, got {n_candidates!r}")
    return level, calibration_fraction, budget, int(n_candidates)


def certify(
    scores,
    correct,
    costs,
    budget: float,
    *,
    level: float,
    tune_fn: TuneFn | Callable[..., Any],
    calibration_fraction: float = 0.3,
    seed: int = 0,
    bound: str = DEFAULT_BOUND,
    n_candidates: int = 12,
    budgets=None,
    tail=None,
    min_accuracy: float | None = None,
    max_drop: float | None = None,
) -> GuaranteeResult:
    """Tune thresholds whose expected mean latency on new data is <= budget w.p. >= level.

    With ``tail`` and/or ``min_accuracy`` the same procedure certifies every
    requirement at once (see :func:`_certify_requirements`): the share of new
    samples slower than each tail latency, and the expected accuracy.
    ``max_drop`` sets the accuracy target to the last exit's accuracy on the
    tuning part minus ``max_drop`` (so the target, too, depends on the tuning
    part only).

    Parameters
    ----------
    scores : array_like, shape (N, M)
        Confidence of exit n on validation sample m.
    correct : array_like of bool, shape (N, M)
        Whether exit n's prediction for sample m is right.
    costs : array_like, shape (N,)
        ``d_1 .. d_N``, latency of inference that stops at each exit.
    budget : float
        Mean-latency budget Γ, in the unit of ``costs``.
    level : float
        Confidence ``1 - delta`` in (0, 1), e.g. 0.95.
    tune_fn : callable
        ``tune_fn(scores, correct, costs, budget, init=None)`` returning an object
        with ``.thresholds`` of shape (N-1,); ``init`` receives the previous
        candidate's thresholds as a warm start.  It is only ever given the tuning
        part.  An :class:`~eexit_cli.errors.InfeasibleBudgetError` from it drops
        that candidate from the sequence.
    calibration_fraction : float
        Share of the samples held out for calibration, in (0, 1).
    seed : int
        Seed of the random split into tuning and calibration parts.
    bound : str
        Name of the upper confidence bound (see ``eexit_cli.core.bounds.BOUNDS``).
    n_candidates : int
        Length of the internal-budget sequence (see :func:`internal_budgets`).
    budgets : sequence of float, optional
        Explicit internal budgets instead of the automatic sequence; they are
        tested from the smallest up.

    Returns
    -------
    GuaranteeResult

    Raises
    ------
    InfeasibleBudgetError
        When even the most cautious candidate cannot be certified; the message
        gives the smallest bound reached and what would help.
    ValueError
        For bad arguments, naming the parameter.

    Notes
    -----
    For candidate thresholds ``θ_j`` (fixed given the tuning part) the null
    hypotheses ``H_j: E[latency(θ_j)] > Γ`` are tested in a fixed order, from the
    smallest internal budget up, each at level ``delta`` by ``bound_j <= Γ`` on
    the calibration part; testing stops at the first failure and the last
    rejected ``H_j`` is returned.  A wrong certification needs the first true
    null in the order to be rejected, which has probability at most ``delta``,
    so no multiplicity correction is needed.  Testing from the budget downwards
    and returning the first success would not be valid: every true null tested
    on the way would be another chance of error.
    """
    scores, correct, costs = check_problem(scores, correct, costs)
    if budget is None and tail is None and min_accuracy is None and max_drop is None:
        raise ValueError("budget must be positive and finite, got None")
    level, calibration_fraction, budget, n_candidates = _check_args(
        level, calibration_fraction, budget, n_candidates
    )
    if tail is not None or min_accuracy is not None or max_drop is not None:
        if budgets is not None:
            raise ValueError("budgets (an explicit schedule) applies to a mean-latency budget alone")
        return _certify_requirements(scores, correct, costs, budget, tail, min_accuracy, max_drop,
                                     level=level, tune_fn=tune_fn,
                                     calibration_fraction=calibration_fraction, seed=seed,
                                     bound=bound, n_candidates=n_candidates)
    bound_fn = get_bound(bound)
    if seed is None or int(seed) != seed:
        raise ValueError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    delta = 1.0 - level
    n_samples = scores.shape[1]
    n_cal = int(round(calibration_fraction * n_samples))
    n_tune = n_samples - n_cal
    if n_cal < 1 or n_tune < 1:
        raise InfeasibleBudgetError(
            f"cannot split {n_samples} validation samples with calibration fraction "
            f"{calibration_fraction:g}: {n_tune} tuning and {n_cal} calibration samples; "
            "use more validation samples"
        )
    lo, hi = float(costs.min()), float(costs.max())
    if budget < lo:
        raise InfeasibleBudgetError(
            f"budget {budget:.6g} is below the smallest per-exit cost {lo:.6g}; no thresholds "
            "can meet it"
        )

    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_samples)
    tune_idx, cal_idx = np.sort(perm[n_cal:]), np.sort(perm[:n_cal])
    s_tune, c_tune = scores[:, tune_idx], correct[:, tune_idx]
    s_cal = scores[:, cal_idx]

    def latencies(s, thresholds):
        return costs[exit_indices(s, np.asarray(thresholds, dtype=np.float64))]

    # The boldest candidate (tuned for the budget itself) is needed anyway to
    # estimate the bound width; it only looks at the tuning part.
    results: dict[float, Any] = {}
    if budgets is None and budget >= hi:
        schedule, width = [budget], 0.0  # every threshold set is within such a budget
    elif budgets is None:
        results[budget] = tune_fn(s_tune, c_tune, costs, budget, init=None)
        lat_tune = latencies(s_tune, results[budget].thresholds)
        # width of the bound on a sample of the calibration size drawn from the
        # tuning latencies: the candidates' calibration latencies will look alike
        sub = np.random.default_rng([seed, 1]).choice(lat_tune, size=n_cal, replace=n_cal > n_tune)
        width = bound_fn(sub, lo, hi, delta) - float(sub.mean())
        width = max(width, 1e-3 * (hi - lo))
        schedule = internal_budgets(budget, lo, width, n_candidates)
    else:
        schedule = sorted({float(b) for b in np.atleast_1d(np.asarray(budgets, dtype=np.float64))})
        if not schedule or not all(math.isfinite(b) and b > 0 for b in schedule):
            raise ValueError("budgets must be a non-empty list of positive, finite internal budgets")
        width = float("nan")

    tested: list[Candidate] = []
    chosen = None
    init = None
    for b in schedule:
        res = results.get(b)
        if res is None:
            try:
                res = tune_fn(s_tune, c_tune, costs, b, init=init)
            except InfeasibleBudgetError:
                continue  # depends on the tuning part only: leaving it out keeps the order fixed
        thresholds = np.asarray(res.thresholds, dtype=np.float64)
        lat_cal = latencies(s_cal, thresholds)
        ub = float(bound_fn(lat_cal, lo, hi, delta))
        ok = ub <= budget
        tested.append(
            Candidate(
                internal_budget=b,
                tuning_mean=float(latencies(s_tune, thresholds).mean()),
                calibration_mean=float(lat_cal.mean()),
                upper_bound=ub,
                certified=ok,
            )
        )
        if not ok:
            break
        chosen = (tested[-1], thresholds, res)
        init = thresholds

    if chosen is None:
        raise InfeasibleBudgetError(_infeasible_message(
            budget, level, bound, bound_fn, tested, n_samples, n_cal, calibration_fraction, lo, hi
        ))
    cand, thresholds, res = chosen
    return GuaranteeResult(
        thresholds=thresholds,
        budget=budget,
        level=level,
        bound=bound,
        upper_bound=cand.upper_bound,
        internal_budget=cand.internal_budget,
        calibration_mean=cand.calibration_mean,
        seed=seed,
        tuning_size=n_tune,
        calibration_size=n_cal,
        width_estimate=float(width),
        candidates=tuple(tested),
        tune_result=res,
    )


def _infeasible_message(budget, level, bound, bound_fn, tested, n_samples, n_cal,
                        calibration_fraction, lo, hi) -> str:
    delta = 1.0 - level
    # what thresholds that send every sample out at the cheapest exit would get:
    # no candidate can be certified below this with these calibration samples
    floor = float(bound_fn(np.full(n_cal, lo), lo, hi, delta))
    if tested:
        best = min(tested, key=lambda c: c.upper_bound)
        got = (f"the smallest upper bound reached was {best.upper_bound:.6g} (candidate tuned for "
               f"{best.internal_budget:.6g}, calibration mean {best.calibration_mean:.6g})")
    else:
        got = "the tuner found no thresholds for any internal budget"
    return (
        f"cannot certify mean latency <= {budget:.6g} at level {level:g} with {n_cal} calibration "
        f"samples ({calibration_fraction:g} of {n_samples}, bound {bound}): {got}; even "
        f"thresholds that stop every sample at the cheapest exit ({lo:.6g}) would only be "
        f"bounded by {floor:.6g}. What would help: more validation samples, a larger budget, "
        "a lower level, or a larger calibration fraction"
    )


def _split(n_samples, calibration_fraction, seed):
    if seed is None or int(seed) != seed:
        raise ValueError(f"seed must be an integer, got {seed!r}")
    n_cal = int(round(calibration_fraction * n_samples))
    n_tune = n_samples - n_cal
    if n_cal < 1 or n_tune < 1:
        raise InfeasibleBudgetError(
            f"cannot split {n_samples} validation samples with calibration fraction "
            f"{calibration_fraction:g}: {n_tune} tuning and {n_cal} calibration samples; "
            "use more validation samples"
        )
    perm = np.random.default_rng(int(seed)).permutation(n_samples)
    return np.sort(perm[n_cal:]), np.sort(perm[:n_cal])


def _certify_requirements(scores, correct, costs, budget, tail, min_accuracy, max_drop, *, level, tune_fn,
                          calibration_fraction, seed, bound, n_candidates) -> GuaranteeResult:
    """Certify a mean-latency budget, tail budgets and an accuracy target together.

    Every requirement ``r`` is "the expected value of a per-sample statistic in
    ``[lo_r, hi_r]`` is at most ``limit_r``" (:class:`Requirement`).  Candidate
    ``j`` is tuned on the tuning part for the internal limits ``limit_r - f_j w_r``
    (``w_r`` the estimated width of requirement ``r``'s bound, ``f_j`` running
    geometrically from 4 down to 1/4, then 0) and is certified when the upper
    bound of every requirement on the calibration part is within its limit.

    Soundness: the null hypothesis of candidate ``j`` is "some requirement is
    violated".  If requirement ``r`` is violated, rejecting needs ``U_r <= limit_r``,
    which has probability at most ``delta``; so each null is tested at level
    ``delta`` whatever the number of requirements (an intersection-union
    test), and fixed-sequence testing needs no correction across candidates.
    A tail budget's statistic ``1[d_exit > X]`` has mean ``P(latency > X)`` on new
    data, so certifying it at ``1 - p`` certifies that the p-quantile of the
    latency distribution is at most ``X``; an accuracy target's statistic is the
    error ``1 - correct``.
    """
    from .tuner import _tails

    bound_fn = get_bound(bound)
    tails = _tails(tail)
    delta = 1.0 - level
    n_samples = scores.shape[1]
    tune_idx, cal_idx = _split(n_samples, calibration_fraction, seed)
    n_tune, n_cal = tune_idx.size, cal_idx.size
    s_tune, c_tune = scores[:, tune_idx], correct[:, tune_idx]
    s_cal, c_cal = scores[:, cal_idx], correct[:, cal_idx]
    d_lo, d_hi = float(costs.min()), float(costs.max())
    if max_drop is not None:
        min_accuracy = max(0.0, float(np.mean(c_tune[-1])) - float(max_drop))
    if budget is not None and budget < d_lo:
        raise InfeasibleBudgetError(
            f"budget {budget:.6g} is below the smallest per-exit cost {d_lo:.6g}; no thresholds "
            "can meet it"
        )
    if min_accuracy is not None and not 0.0 <= float(min_accuracy) <= 1.0:
        raise ValueError(f"min_accuracy must lie in [0, 1], got {min_accuracy!r}")

    reqs: list[Requirement] = []
    if budget is not None:
        floor = d_lo + 1e-3 * (budget - d_lo) if budget > d_lo else budget
        reqs.append(Requirement("mean_latency", budget, d_lo, d_hi, floor))
    for tb in tails:
        reqs.append(Requirement(f"tail_{tb.label()}", tb.share, 0.0, 1.0, 0.0))
    if min_accuracy is not None:
        reqs.append(Requirement("error", 1.0 - float(min_accuracy), 0.0, 1.0, 0.0))

    def stats(s, c, thresholds):
        ex = exit_indices(s, np.asarray(thresholds, dtype=np.float64))
        lat = costs[ex]
        out = []
        if budget is not None:
            out.append(lat)
        for tb in tails:
            out.append((lat > tb.latency).astype(np.float64))
        if min_accuracy is not None:
            out.append(1.0 - c[ex, np.arange(ex.size)].astype(np.float64))
        return lat, out

    def run(limits, init):
        kwargs = {}
        i = 0
        b = None
        if budget is not None:
            b, i = limits[0], 1
        if tails:
            kwargs["tail"] = [_tightened(tb, limits[i + k]) for k, tb in enumerate(tails)]
            i += len(tails)
        if min_accuracy is not None:
            kwargs["min_accuracy"] = 1.0 - limits[i]
        return tune_fn(s_tune, c_tune, costs, b, init=init, **kwargs)

    # the boldest candidate, tuned for the limits themselves, sets the widths
    bold_limits = tuple(r.limit for r in reqs)
    results: dict = {}
    try:
        results[bold_limits] = run(bold_limits, None)
    except InfeasibleBudgetError:
        results[bold_limits] = None
    widths = []
    rng = np.random.default_rng([int(seed), 1])
    if results[bold_limits] is not None:
        _, st = stats(s_tune, c_tune, results[bold_limits].thresholds)
        pick = rng.choice(n_tune, size=n_cal, replace=n_cal > n_tune)
        for r, v in zip(reqs, st):
            sub = v[pick]
            widths.append(max(float(bound_fn(sub, r.lo, r.hi, delta)) - float(sub.mean()),
                              1e-3 * (r.hi - r.lo)))
    else:
        widths = [float(bound_fn(np.full(n_cal, 0.5 * (r.lo + r.hi)), r.lo, r.hi, delta)) - 0.5 * (r.lo + r.hi)
                  for r in reqs]
    if n_candidates == 1:
        factors = [0.0]
    elif n_candidates == 2:
        factors = [MAX_MARGIN, 0.0]
    else:
        factors = list(np.geomspace(MAX_MARGIN, MIN_MARGIN, n_candidates - 1)) + [0.0]
    schedule = []
    for f in factors:
        lim = tuple(r.internal(f * w) for r, w in zip(reqs, widths))
        if not schedule or lim != schedule[-1]:
            schedule.append(lim)

    tested: list[Candidate] = []
    chosen = None
    init = None
    names = tuple(r.name for r in reqs)
    for lim in schedule:
        res = results.get(lim)
        if res is None:
            if lim in results:
                continue  # the boldest candidate was infeasible on the tuning part
            try:
                res = run(lim, init)
            except InfeasibleBudgetError:
                continue  # depends on the tuning part only: leaving it out keeps the order fixed
        thresholds = np.asarray(res.thresholds, dtype=np.float64)
        lat_cal, st_cal = stats(s_cal, c_cal, thresholds)
        lat_tune, _ = stats(s_tune, c_tune, thresholds)
        ubs = tuple(float(bound_fn(v, r.lo, r.hi, delta)) for r, v in zip(reqs, st_cal))
        ok = all(u <= r.limit for u, r in zip(ubs, reqs))
        lat_ub = ubs[0] if budget is not None else None
        tested.append(Candidate(
            internal_budget=lim[0] if budget is not None else None,
            tuning_mean=float(lat_tune.mean()),
            calibration_mean=float(lat_cal.mean()),
            upper_bound=lat_ub,
            certified=ok,
            internal=lim,
            calibration_means=tuple(float(v.mean()) for v in st_cal),
            upper_bounds=ubs,
            names=names,
        ))
        if not ok:
            break
        chosen = (tested[-1], thresholds, res)
        init = thresholds

    if chosen is None:
        if tested:
            c = tested[0]
            worst = max(range(len(reqs)), key=lambda k: c.upper_bounds[k] - reqs[k].limit)
            if reqs[worst].name == "error":
                got = (f"the most cautious candidate's accuracy lower bound was "
                       f"{1.0 - c.upper_bounds[worst]:.6g} against a target of {1.0 - reqs[worst].limit:.6g}")
            else:
                got = (f"the most cautious candidate's {reqs[worst].name} bound was "
                       f"{c.upper_bounds[worst]:.6g} against a limit of {reqs[worst].limit:.6g}")
        else:
            got = "the tuner found no thresholds for any internal limits"
        raise InfeasibleBudgetError(
            f"cannot certify {', '.join(_NAMES.get(n, n) for n in names)} at level {level:g} with {n_cal} calibration samples "
            f"({calibration_fraction:g} of {n_samples}, bound {bound}): {got}. What would help: more "
            "validation samples, looser limits, a lower level, or a larger calibration fraction"
        )
    cand, thresholds, res = chosen
    records = []
    for r, lim, ub, cm in zip(reqs, cand.internal, cand.upper_bounds, cand.calibration_means):
        rec = {"name": r.name, "limit": r.limit, "internal": lim, "calibration_mean": cm,
               "upper_bound": ub}
        if r.name == "error":
            rec = {"name": "accuracy", "limit": 1.0 - r.limit, "internal": 1.0 - lim,
                   "calibration_mean": 1.0 - cm, "lower_bound": 1.0 - ub}
        elif r.name.startswith("tail_"):
            tb = tails[[f"tail_{t.label()}" for t in tails].index(r.name)]
            rec.update({"level": tb.level, "latency": tb.latency,
                        "statement": f"P(latency > {tb.latency:.6g}) <= {ub:.6g} <= {r.limit:.6g}"})
        records.append(rec)
    return GuaranteeResult(
        thresholds=thresholds,
        budget=budget,
        level=level,
        bound=bound,
        upper_bound=cand.upper_bound,
        internal_budget=cand.internal_budget,
        calibration_mean=cand.calibration_mean,
        seed=int(seed),
        tuning_size=n_tune,
        calibration_size=n_cal,
        width_estimate=float(widths[0]) if widths else float("nan"),
        candidates=tuple(tested),
        tune_result=res,
        requirements=tuple(records),
    )


def _tightened(tb, share: float):
    """The tail budget ``tb`` tightened to the share ``share`` of slower samples."""
    from .tail import TailBudget

    return TailBudget(level=min(1.0, 1.0 - share), latency=tb.latency)
