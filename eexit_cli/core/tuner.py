"""Threshold tuning for a mean-latency budget: the public entry point.

:func:`tune` runs one of three methods on a tuning split and returns a
:class:`TuneResult`:

``"ippp"``
    The method of the paper: warm start (eqs. 20-21), then Algorithm 1 (iPPP) on
    the smoothed problem P2 (eqs. 9-10, 16); then, on the hard rule, a repair
    that brings the hard mean latency within the budget and (``polish=True``) an
    exact local search for hard accuracy started from several points.
``"heuristic"``
    Huang et al.'s geometric rule (:func:`eexit_cli.core.baselines.heuristic`).
``"single"``
    One threshold shared by every exit (:func:`eexit_cli.core.baselines.single`).

Every method returns thresholds whose HARD mean latency on the tuning split is
within the budget.

Normalisation
-------------
The smoothed problem is solved in normalised units: scores are mapped to
[0, 1] by the box ``score_range`` (default: the observed minimum and maximum)
and costs and budget are divided by the largest cost ``d_N``.  The parameters
``k``, ``gamma``, ``mu``, ``eta``, ``beta`` and ``tol`` therefore mean the same
whatever the unit of the costs (seconds, relative, FLOPs) and whatever the
range of the confidence measure.  The paper's own settings translate as
``beta_here = beta_paper * d_N**2`` and ``k_here = k_paper * (hi - lo)``: its
``beta = 2e7`` (B-AlexNet, seconds), ``500`` (S-ResNet-18, relative) and
``1e-14`` (MSDNet, FLOPs) are about 190, 570 and 1.9e4 here.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import InfeasibleBudgetError
from .baselines import heuristic as _heuristic
from .baselines import single as _single
from .exact import HardProblem
from .ippp import ippp as _ippp
from .ippp import warm_start as _warm_start
from .replay import check_problem, replay_checked
from .smooth import SmoothProblem
from .tail import TailBudget, constraint_rows

__all__ = ["TuneResult", "tune", "METHODS", "DEFAULT_K", "DEFAULT_BETA", "DEFAULT_TOL",
           "DEFAULT_HARD_TOL", "SMOOTH_SAMPLES_MIN", "SMOOTH_SAMPLES_MAX", "SMOOTH_TAIL_SAMPLES",
           "smooth_sample_count"]

METHODS = ("ippp", "heuristic", "single")

#: Logistic steepness on scores normalised to [0, 1] (see :func:`tune`).
DEFAULT_K = 100.0
#: Penalty parameter on the constraint normalised by ``d_N`` (see :func:`tune`).
DEFAULT_BETA = 100.0
#: (local, coarse) grid sizes of the pair sweeps in the polish, cheap first: a window
#: of 32 candidates on each side of the current thresholds (read by rank: its cost
#: does not grow with M), then the window plus 96 quantiles of the samples reaching
#: each exit (every such sample is read).
_POLISH_LEVELS = ((32, 0), (32, 96))
#: The priced search (HardProblem.trade) prices every candidate of every exit in each
#: round, O(N M); with more candidates than this at some exit the pair-grid polish,
#: whose cheap level reads only the samples near the current thresholds, is faster
#: (benchmarks/RESULTS.md: at N = 12, M = 1e5 the priced search took 1.2x the time, at
#: N = 32, M = 1e6 2.3x the time and twice the memory; at M = 1e4 a half to a third).
_TRADE_MAX = 65_536
#: Exits with at most this many candidates are searched exhaustively by pair sweeps
#: (HardProblem.polish's default).
_EXHAUSTIVE = 256
#: Polish starts go best first; a start whose objective trails the best polished one
#: by more than this many times the largest gain any start made on the cheap level is
#: not polished (it would have to gain more than twice what any start gained).
_START_MARGIN = 2.0
#: Outer-step size below which Algorithm 1 stops early (normalised score units).
DEFAULT_TOL = 1e-3
#: Algorithm 1 also stops once fewer than this share of the samples change exit
#: between outer iterates, three iterations in a row (see :func:`tune`).
DEFAULT_HARD_TOL = 0.01
#: The smoothed problem is solved on a random subset of this many samples when the split
#: has more and no tail budget asks for more (:func:`smooth_sample_count`, :func:`tune`).
SMOOTH_SAMPLES_MIN = 4_096
#: A tail budget asks for a subset on which its allowed share ``1 - p`` is this many
#: samples (:func:`smooth_sample_count`).
SMOOTH_TAIL_SAMPLES = 200
#: The subset never has more samples than this.
SMOOTH_SAMPLES_MAX = 65_536


@dataclass(frozen=True)
class TuneResult:
    """Outcome of :func:`tune`.

    Attributes
    ----------
    thresholds : ndarray, shape (N-1,)
        ``t_1 .. t_{N-1}`` in the original units of the scores.
    method : str
    budget : float or None
        Gamma, in the unit of the costs (None: no mean-latency budget).
    accuracy, mean_latency : float
        Hard replay of ``thresholds`` on the tuning split (``mean_latency <= budget``).
    tail : tuple of dict
        One record per tail budget: ``level`` p, ``latency`` X, ``quantile`` (the
        hard p-quantile of latency on the tuning split, ``<= X``), ``over`` and
        ``allowed`` (samples above X, and the most allowed).
    smooth_accuracy, smooth_latency : float or None
        The smoothed accuracy ``-o(t)`` and latency ``c(t) + Gamma`` (eqs. 9-10) of
        ``thresholds`` with steepness ``k``; None for the baselines.
    converged : bool
        For ``"ippp"``: Algorithm 1 stopped because its iterates stopped moving.
        Always True for the baselines (direct rules).
    status : str
        ``"converged"``, ``"max_iterations"`` or ``"ok"`` (baselines).
    message : str
        One human-readable sentence about the outcome.
    iterations, gradient_evaluations : int
        Outer iterations of Algorithm 1 and gradient evaluations of ``phi_t``.
    seconds : float
        Wall time of the solve.
    params : dict
        Every parameter, as used.
    stages : dict
        Intermediate results by stage (e.g. ``warm_start``, ``ippp``, ``repaired``,
        ``polished``), each with thresholds and hard (and where meaningful smooth)
        accuracy and latency.
    warnings : tuple of str
    """

    thresholds: np.ndarray
    method: str
    budget: float
    accuracy: float
    mean_latency: float
    smooth_accuracy: float | None
    smooth_latency: float | None
    converged: bool
    status: str
    message: str
    iterations: int
    gradient_evaluations: int
    seconds: float
    params: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)
    warnings: tuple = ()
    tail: tuple = ()

    def to_dict(self) -> dict:
        """JSON-ready plain Python types (no numpy scalars; NaN and inf become None)."""
        return {
            "method": self.method,
            "budget": _plain(self.budget),
            "thresholds": _plain(self.thresholds),
            "accuracy": _plain(self.accuracy),
            "mean_latency": _plain(self.mean_latency),
            "smooth_accuracy": _plain(self.smooth_accuracy),
            "smooth_latency": _plain(self.smooth_latency),
            "converged": bool(self.converged),
            "status": self.status,
            "message": self.message,
            "iterations": int(self.iterations),
            "gradient_evaluations": int(self.gradient_evaluations),
            "seconds": _plain(self.seconds),
            "params": _plain(self.params),
            "stages": _plain(self.stages),
            "warnings": list(self.warnings),
            "tail": _plain(list(self.tail)),
        }


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_plain(v) for v in x.tolist()]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def _positive(name, value, integer=False):
    try:
        ok = math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if integer:
        ok = ok and float(value) == int(value)
    if not ok:
        kind = "a positive integer" if integer else "positive and finite"
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return int(value) if integer else float(value)


def _tails(tail) -> list[TailBudget]:
    if tail is None:
        return []
    items = [tail] if isinstance(tail, (TailBudget, dict)) or (
        isinstance(tail, tuple) and len(tail) == 2 and not isinstance(tail[0], (TailBudget, tuple, dict))
    ) else list(tail)
    out = []
    for item in items:
        if isinstance(item, TailBudget):
            out.append(item)
        elif isinstance(item, dict):
            out.append(TailBudget(float(item["level"]), float(item["latency"])))
        else:
            try:
                level, limit = item
            except (TypeError, ValueError):
                raise ValueError(f"tail must be (level, latency) pairs or TailBudget, got {item!r}") from None
            out.append(TailBudget(float(level), float(limit)))
    return out


def tail_records(tails, latencies) -> list[dict]:
    """What each tail budget looks like on per-sample ``latencies`` (hard)."""
    from .tail import latency_quantile

    lat = np.asarray(latencies, dtype=np.float64)
    return [
        {**tb.to_dict(), "quantile": latency_quantile(lat, tb.level), "over": tb.over(lat),
         "allowed": tb.allowed(lat.size), "share_over": tb.over(lat) / lat.size}
        for tb in tails
    ]


def smooth_sample_count(n_samples: int, shares=()) -> int:
    """Samples of the random subset on which :func:`tune` solves the smoothed problem.

    ``min(n_samples, max(SMOOTH_SAMPLES_MIN, SMOOTH_TAIL_SAMPLES / q), SMOOTH_SAMPLES_MAX)``
    over the allowed shares ``q > 0`` of the tail budgets (``shares``; a share of 0 lets no
    sample above the tail limit, which any subset resolves), rounded up to a whole sample.
    """
    need = SMOOTH_SAMPLES_MIN
    for q in shares:
        q = float(q)
        if q > 0:
            need = max(need, math.ceil(SMOOTH_TAIL_SAMPLES / q - 1e-9))
    return int(min(int(n_samples), need, SMOOTH_SAMPLES_MAX))


def tune(scores, correct, costs, budget=None, *, tail=None, method: str = "ippp",
         score_range=None, polish: bool = True, init=None, k: float = DEFAULT_K, T: int = 100,
         J: int = 10, gamma: float = 10.0, mu: float = 1.0, eta: float = 100.0,
         beta: float = DEFAULT_BETA, tol: float = DEFAULT_TOL, hard_tol: float = DEFAULT_HARD_TOL,
         smooth_samples: int | None = None, progress=None) -> TuneResult:
    """Choose exit thresholds that maximise accuracy under mean- and tail-latency budgets.

    Parameters
    ----------
    scores : array_like, shape (N, M)
        Confidence of exit n on tuning sample m; higher = more confident.
    correct : array_like of bool, shape (N, M)
        Whether exit n answers sample m correctly.
    costs : array_like, shape (N,)
        ``d_1 .. d_N``: mean latency of inference that stops at each exit, in any
        unit (seconds, relative, FLOPs).
    budget : float or None
        Gamma, the mean-latency budget, in the unit of ``costs``; None for none
        (then ``tail`` must be given).
    tail : TailBudget, (level, latency) pair, or a list of them, optional
        Tail-latency budgets "the p-quantile of latency <= X" (:mod:`.tail`):
        at most ``M - ceil(p M)`` tuning samples may take an exit with
        ``d_n > X``.  Each is one more constraint row of the smoothed problem
        and of the exact repair and polish, and holds exactly on the split.
    method : {"ippp", "heuristic", "single"}
    score_range : (float, float), optional
        The box ``S = [lo, hi]`` of the confidence measure (e.g. ``(0, 1)`` for the
        max softmax).  Default: the observed minimum and maximum.  Scores outside
        it widen it (with a warning).
    polish : bool, default True
        ``"ippp"`` only: after the repair, improve hard accuracy by exact local
        search within the budget, started from the repaired iPPP result, the
        repaired warm start, Huang et al.'s heuristic and ``init``, keeping the
        best.  The baselines are returned as their rules define them.
    init : array_like, shape (N-1,), optional
        Starting thresholds for Algorithm 1 (original score units) instead of the
        warm start, e.g. the solution for a neighbouring budget.
    k : float
        Logistic steepness (eq. 3) on normalised scores.
    T, J : int
        Outer and inner iterations of Algorithm 1.
    gamma, mu, eta : float
        Proximal parameter, strong convexity and smoothness parameters of
        Algorithm 1 (the paper's 10, 1, 100), on normalised scores.
    beta : float
        Penalty parameter of eq. (16) on the normalised constraint ``c / d_N``.
    tol : float
        Algorithm 1 stops once an outer step ``||t^(t+1) - t^(t)||`` is below
        ``tol`` (normalised scores); 0 always runs ``T`` outer iterations.
    hard_tol : float
        Algorithm 1 also stops once, three outer iterations in a row, fewer than
        this share of the (smoothed problem's) samples change exit under the
        hard rule from one outer iterate to the next; 0 turns this off.
    smooth_samples : int, optional
        The warm start and Algorithm 1 work on a fixed random subset of this
        many samples when the split has more (the repair and the polish always
        use every sample); ``smooth_accuracy`` and ``smooth_latency`` are then
        those of the subset.  Default: :func:`smooth_sample_count`, 4,096
        samples, more where a tail budget's allowed share needs them (200 / (1 - p)
        for a p-quantile), at most 65,536.
    progress : callable(done, total), optional
        Called as the solve advances.

    Returns
    -------
    TuneResult

    Raises
    ------
    ValueError
        For malformed inputs or parameters (the message names the parameter).
    InfeasibleBudgetError
        When ``budget`` is below the smallest achievable mean latency, or a
        tail latency below the smallest cost.

    Notes
    -----
    Defaults.  ``k = 100``: on scores normalised to [0, 1] the logistic
    transition is about 4/k = 0.04 wide.  With k = 30 (the paper's CNN setting)
    the hard latency of the iPPP output exceeds the budget by up to 14-20% on
    synthetic 13-17 exit problems, with k = 100 (the paper's LSTM setting) by
    up to 2-7%, with k = 300 by less but the final polished accuracy is lower
    (gap to the best of the three 0.023 points against 0.015 for k = 30 and 100).
    ``beta = 100``: on the constraint normalised by ``d_N`` (the paper's values
    are about 190-1.9e4 here).  With the polish on, the final accuracy hardly
    depends on beta.  Without it, on the three reference models beta = 100 and
    500 give the same hard accuracy after repair (within 0.01 points on
    average), while on synthetic 3-17 exit problems (max-softmax and raw-logit
    scores) the repaired iPPP result trails the best configuration by 1.7
    points on average with beta = 100 against 3.9 with 500 and 9.7 with 2000:
    a large penalty gradient ``beta * c * grad c`` against the fixed step
    ``1/eta`` makes the inner iterations overshoot along the constraint.
    ``tol = 1e-3``: a tenth of the logistic's scale 1/k at k = 100; steps below it move
    the smoothed indicators by well under a percent, and the hard outcome
    (decided afterwards by the exact repair and polish) no longer changes
    measurably, while stopping there saves most of the 1,000 gradient
    evaluations of the paper's T = 100, J = 10.
    ``hard_tol = 0.01``: on many-exit problems the outer steps stay above
    ``tol`` for all T = 100 iterations while each moves well under 1% of the
    samples to another exit; the exact polish that follows moves single
    samples.  Capping Algorithm 1 at 5 to 100 outer iterations changed the
    polished accuracy by at most 0.03 points on average on S-ResNet-18, MSDNet
    and synthetic 13- and 17-exit problems; on a synthetic 24-exit problem at
    one budget the early stop cost 0.3 points, which ``hard_tol=0`` (all T
    iterations, about 1.4x the time there) recovers (benchmarks/RESULTS.md).
    ``smooth_samples``: one gradient costs O(N M), and the exact repair and
    polish on every sample decide the final thresholds, so the smoothed
    problem only has to land near a good optimum.  On synthetic 3- to 32-exit
    problems of 1e4 to 2e5 samples and the three reference models (640
    budgets), a subset of 4,096 samples against one of 65,536 (all samples up
    to that) changed the final hits by +0.003 points of accuracy on average
    (standard deviation 0.03, worst budget -0.08) at 0.76 of the time per
    budget; 2,048 samples by +0.003 (deviation 0.035, worst -0.16) at 0.71:
    the polish starts land in other local optima, both ways.  A tail budget's
    smoothed row counts the few samples above its limit: with p95 and p99
    budgets, subsets holding about 100 (p95 at 2,048) or 40 (p99 at 4,096)
    expected samples above the limit lost 0.024 and 0.011 points on average,
    80 lost 0.003 and 200 0.0007, hence 200 / (1 - p) samples; with the rule, p90 to
    p99.5 budgets on 5e4 samples changed the hits by +0.003 points on average
    (worst -0.04), a fixed 4,096 by -0.012 and -0.017 at p98 and p99
    (benchmarks/RESULTS.md).
    """
    t_start = time.perf_counter()
    scores, correct, costs = check_problem(scores, correct, costs)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    tails = _tails(tail)
    if budget is not None:
        try:
            budget = float(budget)
        except (TypeError, ValueError):
            raise ValueError(f"budget must be a positive finite number, got {budget!r}") from None
        if not (math.isfinite(budget) and budget > 0):
            raise ValueError(f"budget must be positive and finite, got {budget!r}")
    elif not tails:
        raise ValueError("give a mean-latency budget, a tail budget, or both")
    k = _positive("k", k)
    T = _positive("T", T, integer=True)
    J = _positive("J", J, integer=True)
    gamma = _positive("gamma", gamma)
    mu = _positive("mu", mu)
    eta = _positive("eta", eta)
    beta = _positive("beta", beta)
    try:
        tol = float(tol)
    except (TypeError, ValueError):
        tol = float("nan")
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be non-negative and finite, got {tol!r}")
    try:
        hard_tol = float(hard_tol)
    except (TypeError, ValueError):
        hard_tol = float("nan")
    if not 0 <= hard_tol <= 1:
        raise ValueError(f"hard_tol must lie in [0, 1], got {hard_tol!r}")
    if smooth_samples is not None:
        smooth_samples = _positive("smooth_samples", smooth_samples, integer=True)
    if progress is not None and not callable(progress):
        raise ValueError("progress must be callable(done, total) or None")
    n_exits, n_samples = scores.shape
    warnings: list[str] = []

    # -- the box S
    obs_lo, obs_hi = float(scores.min()), float(scores.max())
    if score_range is None:
        lo, hi = obs_lo, obs_hi
    else:
        try:
            lo, hi = (float(v) for v in score_range)
        except (TypeError, ValueError):
            raise ValueError(f"score_range must be a pair (lo, hi), got {score_range!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"score_range must be finite with lo < hi, got {score_range!r}")
        if obs_lo < lo or obs_hi > hi:
            warnings.append(
                f"scores span [{obs_lo:.6g}, {obs_hi:.6g}], outside score_range "
                f"[{lo:.6g}, {hi:.6g}]; the range was widened to include them"
            )
            lo, hi = min(lo, obs_lo), max(hi, obs_hi)
    width = hi - lo
    if not width > 0:
        width = 1.0  # every score equal: any box will do

    # -- costs and budget
    if np.any(np.diff(costs) <= 0):
        warnings.append(
            "costs are not increasing with the exit index; the smoothed problem and the "
            "repair assume deeper exits cost more, results may be poor"
        )
    min_cost, max_cost = float(costs.min()), float(costs.max())
    for tb in tails:
        if tb.latency < min_cost:
            raise InfeasibleBudgetError(
                f"tail budget {tb.label()} <= {tb.latency:.6g} is below the smallest per-exit cost "
                f"{min_cost:.6g} (exit {int(np.argmin(costs)) + 1}): every sample takes longer, "
                "in the unit of the costs"
            )
    if budget is not None and budget < min_cost:
        raise InfeasibleBudgetError(
            f"budget {budget:.6g} is below the smallest achievable mean latency "
            f"{min_cost:.6g} (every sample leaving at exit {int(np.argmin(costs)) + 1}), "
            "in the unit of the costs"
        )
    notes = []
    if budget is not None and budget >= max_cost:
        notes.append(
            f"the budget {budget:.6g} is at or above the largest cost {max_cost:.6g}, so the "
            "latency constraint cannot bind; thresholds maximise accuracy alone"
        )

    init_arr = None
    if init is not None:
        init_arr = np.asarray(init, dtype=np.float64)
        if init_arr.shape != (n_exits - 1,) or not np.all(np.isfinite(init_arr)):
            raise ValueError(f"init must hold N-1 = {n_exits - 1} finite thresholds, got shape {init_arr.shape}")

    if smooth_samples is None:
        smooth_samples = smooth_sample_count(n_samples, [tb.allowed(n_samples) / n_samples for tb in tails])
    params = {
        "method": method, "k": k, "T": T, "J": J, "gamma": gamma, "mu": mu, "eta": eta,
        "beta": beta, "tol": tol, "hard_tol": hard_tol, "smooth_samples": min(smooth_samples, n_samples),
        "polish": bool(polish and method == "ippp"),
        "score_range": [lo, hi], "init": None if init_arr is None else init_arr.tolist(),
        "cost_scale": max_cost,
        "normalised_budget": None if budget is None else budget / max_cost,
        "tail": [tb.to_dict() for tb in tails],
    }

    rows = [tb.row(costs) for tb in tails]
    allowed = [tb.allowed(n_samples) for tb in tails]
    hard_rows, hard_bounds = constraint_rows(costs, budget, tails, n_samples)
    hard = HardProblem(scores, correct, hard_rows, hard_bounds, lo, hi)
    stages: dict = {}

    if method != "ippp":
        fn = _heuristic if method == "heuristic" else _single
        res = fn(scores, correct, costs, budget, hard=hard)
        stages[method] = {
            "thresholds": res.raw_thresholds, "accuracy": res.raw_accuracy,
            "mean_latency": res.raw_mean_latency, **res.info,
        }
        if res.repaired:
            stages["repaired"] = {
                "thresholds": res.thresholds, "accuracy": res.accuracy,
                "mean_latency": res.mean_latency, "shift": res.shift,
            }
            notes.append(
                "the rule's thresholds exceeded the budget on the tuning split "
                f"(mean latency {res.raw_mean_latency:.6g}) and were moved down together"
            )
        if progress is not None:
            progress(1, 1)
        final_t = np.asarray(res.thresholds, dtype=np.float64)
        return _result(final_t, method, budget, scores, correct, costs, None, True, "ok",
                       notes, 0, 0, t_start, params, stages, warnings, tails)

    # ---------------------------------------------------------------- iPPP
    # normalised problem; the normalised costs are rounded to 40 bits so that
    # costs given in seconds, milliseconds or FLOPs give bit-identical problems
    if n_samples > smooth_samples:
        pick = _subset(n_samples, smooth_samples)
        u = (scores[:, pick] - lo) / width
        c_sub = correct[:, pick]
    else:
        u = (scores - lo) / width
        c_sub = correct
    dn = _round_bits(costs / max_cost)
    gn = None if budget is None else _round_bits(budget / max_cost)
    # the smoothed tail rows' limits are shares, the same on the subset as on the split
    smooth = SmoothProblem(u, c_sub, dn, gn, k, dtype=np.float32,
                           extra_rows=np.array(rows, dtype=np.float64).reshape(len(tails), n_exits),
                           extra_limits=[a / n_samples for a in allowed])
    del c_sub

    def to_orig(t):
        return lo + width * np.asarray(t, dtype=np.float64)

    def to_norm(t):
        return (np.asarray(t, dtype=np.float64) - lo) / width

    def smooth_vals(t_norm):
        return smooth.values(np.clip(t_norm, 0.0, 1.0))

    # the root to 1e-6 in normalised scores, far below the logistic's scale 1/k:
    # Algorithm 1 moves on from it anyway
    ws = _warm_start(smooth, 0.0, 1.0, xtol=1e-6)
    stages["warm_start"] = _stage(hard, to_orig(ws.thresholds), smooth_vals(ws.thresholds),
                                  step=ws.step, status=ws.status)
    start = ws.thresholds if init_arr is None else np.clip(to_norm(init_arr), 0.0, 1.0)
    total = T + (1 if polish else 0)
    hard_exits = _exits_of(u)
    del u
    res = _ippp(smooth, start, 0.0, 1.0, T=T, J=J, gamma=gamma, mu=mu, eta=eta, beta=beta,
                tol=tol, hard_exits=hard_exits, hard_tol=hard_tol,
                progress=None if progress is None else (lambda d, _t: progress(d, total)))
    del hard_exits
    t_solved = time.perf_counter()
    t_ippp = to_orig(res.thresholds)
    stages["ippp"] = _stage(hard, t_ippp, smooth_vals(res.thresholds),
                            iterations=res.iterations, smallest_step=res.smallest_step,
                            stopped=res.stopped, seconds=t_solved - t_start)

    repaired, shift = hard.repair(t_ippp)
    was_repaired = shift != 0.0  # 0 exactly when t_ippp is feasible (NaN: no shift works)
    if was_repaired:
        rep_t = hard.thresholds_of(repaired.index)
        stages["repaired"] = _stage(hard, rep_t, None, state=repaired, shift=shift)
    else:
        rep_t = t_ippp
    final_t, final_state = rep_t, repaired
    if polish:
        starts = {"ippp": repaired}
        starts["warm_start"] = hard.repair(to_orig(ws.thresholds))[0]
        h = _heuristic(scores, correct, costs, budget, hard=hard)
        starts["heuristic"] = hard.evaluate(hard.index_of(h.thresholds))
        if init_arr is not None:
            starts["init"] = hard.repair(init_arr)[0]
        sweeps0, trades0 = hard.pair_sweeps, hard.trades_tried
        best_name, best, rounds_total = _polish_starts(hard, starts)
        if best is not None and best.key() > repaired.key():
            final_t, final_state = hard.thresholds_of(best.index), best
        elif best is not None:
            best_name = "ippp"
        stages["polished"] = _stage(hard, final_t, None, state=final_state, start=best_name,
                                    rounds=rounds_total,
                                    pair_sweeps=hard.pair_sweeps - sweeps0,
                                    trades=hard.trades_tried - trades0,
                                    seconds=time.perf_counter() - t_solved)
        if progress is not None:
            progress(total, total)

    final_n = to_norm(final_t)
    sa, sl = smooth_vals(final_n)
    status = "converged" if res.converged else "max_iterations"
    if res.stopped == "tol":
        notes.insert(0, f"Algorithm 1 stopped after {res.iterations} outer iterations "
                        f"(step below tol={tol:g})")
    elif res.stopped == "hard":
        notes.insert(0, f"Algorithm 1 stopped after {res.iterations} outer iterations "
                        f"(fewer than {hard_tol:.3g} of the samples changing exit)")
    else:
        notes.insert(0, f"Algorithm 1 ran all T={T} outer iterations")
    if was_repaired:
        notes.append("the iPPP thresholds exceeded the budget on the tuning split and were "
                     "moved down together")
    return _result(final_t, method, budget, scores, correct, costs, (sa, sl * max_cost),
                   res.converged, status, notes, res.iterations, res.gradient_evaluations,
                   t_start, params, stages, warnings, tails)


def _polish_starts(hard: HardProblem, starts: dict):
    """Polish the feasible ``starts`` (name -> HardState, in order of preference) and
    return ``(name, state, rounds)`` of the best result (``(None, None, rounds)`` when
    no start is feasible).

    The starts go best first, except those too far behind to catch up
    (``_START_MARGIN``).  With one constraint row (a mean-latency budget) each
    start gets the priced search (:meth:`HardProblem.trade`), and on small
    problems, where the pair sweeps are exhaustive, the winner also gets the
    cheap pair level; with tail rows too, or with more than ``_TRADE_MAX``
    candidates at some exit, each start gets the cheap pair level and only the
    best goes on to the finer grids.  Last, on problems small enough
    (:meth:`HardProblem.exhaustive`, a few tens of ms at most) where the pair
    sweeps did not cover every state already (:func:`_swept_all`), every state
    is tried, and the best replaces the polished result when strictly better (a
    move of three thresholds or more at once, which the searches do not try);
    its name is then ``"exhaustive"``."""
    trade = (hard.n_rows == 1 and hard.objective == "accuracy" and hard.min_hits is None
             and max(hard.n_candidates(n) for n in range(hard.n_exits - 1)) <= _TRADE_MAX)
    best_name, best, rounds_total, seen, known = None, None, 0, set(), {}
    gain = 0.0  # the largest gain of the objective a start made in its first search
    rank = {name: r for r, name in enumerate(starts)}
    for name, st in sorted(starts.items(), key=lambda kv: kv[1].key(), reverse=True):
        if not hard.feasible(st):
            continue
        sig = tuple(int(x) for x in st.index)
        if sig in seen:
            continue
        seen.add(sig)
        if best is not None and best.key()[0] - st.key()[0] > _START_MARGIN * gain:
            continue
        if trade:
            out, rounds = hard.trade(st, known=known)
        else:
            out, rounds = hard.polish(st, levels=_POLISH_LEVELS[:1])
        rounds_total += rounds
        gain = max(gain, out.key()[0] - st.key()[0])
        # equal results: the start listed first wins (the iPPP result before the others)
        if best is None or (out.key(), -rank[name]) > (best.key(), -rank[best_name]):
            best_name, best = name, out
    if best is not None and not trade:
        best, rounds = hard.polish(best, levels=_POLISH_LEVELS)
        rounds_total += rounds
    elif best is not None and all(hard.n_candidates(n) <= _EXHAUSTIVE
                                  for n in range(hard.n_exits - 1)):
        best, rounds = hard.polish(best, levels=_POLISH_LEVELS[:1], exhaustive=_EXHAUSTIVE)
        rounds_total += rounds
    full = hard.exhaustive() if best is None or not _swept_all(hard) else None
    if full is not None and (best is None or full.key() > best.key()):
        best_name, best = "exhaustive", full
    return best_name, best, rounds_total


def _swept_all(hard: HardProblem) -> bool:
    """Whether the pair sweeps of the polish cover every state: at most two thresholds,
    each with at most ``_EXHAUSTIVE`` candidates (the pair grids are then complete, and a
    polish ends only once the sweep of the pair finds nothing better)."""
    return hard.n_exits <= 3 and all(hard.n_candidates(n) <= _EXHAUSTIVE
                                     for n in range(hard.n_exits - 1))


@functools.lru_cache(maxsize=4)
def _subset(n_samples: int, size: int) -> np.ndarray:
    """The sorted indices of the fixed random subset of ``size`` of ``n_samples`` samples
    (seed 0), read-only; kept for the next call (the draw costs about 0.5 ms at
    M = 10,000, size 4,096, and a sweep of budgets asks for the same subset each time)."""
    pick = np.sort(np.random.default_rng(0).choice(n_samples, size, replace=False))
    pick.flags.writeable = False
    return pick


def _exits_of(scores):
    """``f(t)``: the 0-based exit of every sample of ``scores`` (N, M) under hard thresholds
    ``t``, as :func:`~eexit_cli.core.replay.exit_indices` gives it, for Algorithm 1's early
    stop.  A sample leaves at the first exit whose score is strictly above its threshold;
    a last column of +inf, above any threshold, stands for the last exit.  One comparison
    of an (M, N) copy and one argmax along its rows of N: 64 us against 164 us for a
    comparison and a masked write per exit at N = 13, M = 4,096."""
    n_exits = scores.shape[0]
    rows = np.empty((scores.shape[1], n_exits))
    rows[:, :-1] = scores[:-1].T
    rows[:, -1] = np.inf
    t_row = np.zeros(n_exits)

    def exits(t):
        t_row[:-1] = t
        return np.argmax(rows > t_row, axis=1)

    return exits


def _round_bits(x, bits: int = 40):
    m, e = np.frexp(np.asarray(x, dtype=np.float64))
    return np.ldexp(np.round(m * 2.0 ** bits) / 2.0 ** bits, e)


def _stage(hard: HardProblem, thresholds, smooth, state=None, **extra) -> dict:
    """The record of one stage: the hard outcome of ``thresholds`` (``state`` when it
    is theirs already), the smoothed one and ``extra``."""
    index = hard.index_of(thresholds)
    st = state if state is not None and np.array_equal(state.index, index) else hard.evaluate(index)
    out = {
        "thresholds": np.asarray(thresholds, dtype=np.float64),
        "accuracy": st.hits / hard.n_samples,
        "mean_latency": st.mean_latency,
        "within_budget": hard.feasible(st),
    }
    if smooth is not None:
        out["smooth_accuracy"] = smooth[0]
        out["smooth_latency"] = smooth[1] * float(np.max(hard.costs))
    out.update(extra)
    return out


def _result(thresholds, method, budget, scores, correct, costs, smooth, converged, status,
            notes, iterations, gevals, t_start, params, stages, warnings, tails=()) -> TuneResult:
    rep = replay_checked(scores, correct, thresholds, costs)  # checked where tune() began
    if budget is not None and rep.mean_latency > budget:  # pragma: no cover - guarded by the exact machinery
        raise RuntimeError("internal error: tuned thresholds exceed the budget")
    lat = costs[rep.exit_index] if tails else None  # per-sample latencies: for tail budgets only
    if any(not tb.holds(lat) for tb in tails):  # pragma: no cover - guarded by the exact machinery
        raise RuntimeError("internal error: tuned thresholds exceed a tail budget")
    message = "; ".join(notes) if notes else "ok"
    return TuneResult(
        thresholds=np.asarray(thresholds, dtype=np.float64).copy(),
        method=method,
        budget=budget,
        accuracy=rep.accuracy,
        mean_latency=rep.mean_latency,
        smooth_accuracy=None if smooth is None else float(smooth[0]),
        smooth_latency=None if smooth is None else float(smooth[1]),
        converged=bool(converged),
        status=status,
        message=message,
        iterations=int(iterations),
        gradient_evaluations=int(gevals),
        seconds=time.perf_counter() - t_start,
        params=params,
        stages=stages,
        warnings=tuple(warnings),
        tail=tuple(tail_records(tails, lat)) if tails else (),
    )
