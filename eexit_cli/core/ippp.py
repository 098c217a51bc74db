"""Warm start (eqs. 20-21) and the iPPP method (Algorithm 1) on the smoothed problem.

Both functions work on a :class:`~eexit_cli.core.smooth.SmoothProblem` whose
thresholds live in a box ``[lower, upper]^(N-1)`` (the set ``S^(N-1)`` of the
paper).  They know nothing about units: :func:`eexit_cli.core.tuner.tune` hands
them a problem normalised to scores in [0, 1] and costs relative to ``d_N``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .smooth import SmoothProblem

__all__ = ["WarmStart", "warm_start", "IPPPResult", "ippp"]


@dataclass(frozen=True)
class WarmStart:
    """Outcome of the warm start.

    Attributes
    ----------
    thresholds : ndarray, shape (N-1,)
        ``t~ + s* d~`` (eq. 20).
    step : float
        ``s*``.
    status : str
        ``"root"`` when ``c(t~ + s* d~) = 0`` was solved (eq. 21); ``"budget_below_range"``
        when even ``s = 0`` exceeds the budget (``s* = 0``); ``"budget_above_range"`` when
        the whole segment is within the budget (``s*`` = the step to the upper limit).
    constraint : float
        ``c`` at the returned point.
    evaluations : int
        Evaluations of ``c`` (at distinct steps).
    """

    thresholds: np.ndarray
    step: float
    status: str
    constraint: float
    evaluations: int


def warm_start(problem: SmoothProblem, lower: float, upper: float, direction=None,
               xtol: float = 1e-12) -> WarmStart:
    """Warm start of eqs. (20)-(21).

    Starts at ``t~ = lower * 1`` (every threshold at the lower confidence limit)
    and moves along ``d~`` (all ones by default) to the root ``s*`` of
    ``c(t~ + s d~) = 0``, found with Brent's method on ``s in [0, s_max]`` where
    ``s_max`` reaches the upper limit of the box.  When ``c`` does not change sign
    on that segment the budget lies outside the smoothed latencies reachable
    along it, and the nearer end is returned (see ``WarmStart.status``).
    """
    if not upper > lower:
        raise ValueError(f"upper ({upper}) must exceed lower ({lower})")
    ne = problem.n_exits - 1
    d = np.ones(ne) if direction is None else np.asarray(direction, dtype=np.float64)
    if d.shape != (ne,) or np.any(d <= 0):
        raise ValueError("direction must be a positive vector with one entry per early exit")
    t0 = np.full(ne, float(lower))
    s_max = float(np.min((upper - lower) / d))
    seen: dict[float, float] = {}

    def c(s):
        # Brent's method starts by evaluating both ends again, and returns a point it has
        # evaluated: each step is computed once
        s = float(s)
        if s not in seen:
            seen[s] = problem.constraint(np.minimum(t0 + s * d, upper))
        return seen[s]

    c_lo, c_hi = c(0.0), c(s_max)
    if c_lo >= 0.0 and c_hi >= 0.0:
        # Either the budget is below every reachable smoothed latency, or costs are not
        # increasing; the end with the smaller excess is the better start.
        s, status, cs = (0.0, "budget_below_range", c_lo) if c_lo <= c_hi else (s_max, "budget_below_range", c_hi)
    elif c_lo <= 0.0 and c_hi <= 0.0:
        s, status, cs = s_max, "budget_above_range", c_hi
    else:
        from scipy.optimize import brentq  # ~0.5 s to import: only where a root is needed

        s = brentq(c, 0.0, s_max, xtol=xtol, rtol=4 * np.finfo(float).eps)
        status, cs = "root", c(s)
    return WarmStart(np.minimum(t0 + s * d, upper), float(s), status, float(cs), len(seen))


@dataclass(frozen=True)
class IPPPResult:
    """Outcome of Algorithm 1.

    Attributes
    ----------
    thresholds : ndarray, shape (N-1,)
        The outer iterate with the smallest step ``||t^(t+1) - t^(t)||`` (line 10).
    smallest_step : float
    iterations : int
        Outer iterations run (``<= T``).
    gradient_evaluations : int
    converged : bool
        True when the iterations stopped before ``T`` (see ``stopped``).
    last : ndarray
        The last outer iterate.
    stopped : str
        ``"tol"``: an outer step fell below ``tol``; ``"hard"``: the hard rule's
        exits stopped changing (``hard_tol``); ``"max_iterations"``: all ``T`` ran.
    """

    thresholds: np.ndarray
    smallest_step: float
    iterations: int
    gradient_evaluations: int
    converged: bool
    last: np.ndarray
    stopped: str = "max_iterations"


def ippp(problem: SmoothProblem, t0, lower: float, upper: float, *, T: int = 100, J: int = 10,
         gamma: float = 10.0, mu: float = 1.0, eta: float = 100.0, beta: float = 500.0,
         tol: float = 0.0, hard_exits=None, hard_tol: float = 0.0, patience: int = 3,
         progress=None) -> IPPPResult:
    """Inexact proximal-point penalty method, Algorithm 1 of the paper.

    Each outer iteration ``t`` minimises the strongly convex subproblem
    ``phi_t`` of eq. (16) approximately with ``J`` steps of Nesterov's
    accelerated projected gradient (step ``1/eta``, momentum
    ``(eta - mu)/(eta + mu)``), projecting onto the box ``[lower, upper]^(N-1)``.

    Parameters
    ----------
    problem : SmoothProblem
    t0 : array_like, shape (N-1,)
        Initial point ``t^(0)`` (projected onto the box).
    lower, upper : float
        The box ``S``.
    T, J, gamma, mu, eta, beta
        As in Algorithm 1 and eq. (16).
    tol : float, default 0
        Stop early once an outer step ``||t^(t+1) - t^(t)||_2`` is below ``tol``: the
        output rule (line 10) would then pick an iterate at least that still.
        0 runs all ``T`` outer iterations, as the paper does.
    hard_exits : callable(t) -> ndarray of int, optional
        The exit every sample takes under the hard rule with thresholds ``t``.
        With ``hard_tol > 0``, the iterations stop once, ``patience`` outer
        iterations in a row, fewer than a share ``hard_tol`` of the samples
        changed exit from one outer iterate to the next: the hard thresholds have
        stopped changing at that resolution, and moves of fewer samples are left
        to an exact search on the hard rule.
    progress : callable(done, total), optional
        Called after every outer iteration.

    Returns
    -------
    IPPPResult
    """
    ne = problem.n_exits - 1
    t_bar = np.clip(np.asarray(t0, dtype=np.float64), lower, upper)
    if t_bar.shape != (ne,):
        raise ValueError(f"t0 must have shape ({ne},), got {t_bar.shape}")
    step = 1.0 / eta
    momentum = (eta - mu) / (eta + mu)
    evals0 = problem.evaluations
    best_t, best_step = t_bar.copy(), np.inf
    converged = False
    stopped = "max_iterations"
    watch = hard_exits is not None and hard_tol > 0
    prev_exits = hard_exits(t_bar) if watch else None
    calm = 0
    it = 0
    for it in range(1, T + 1):
        v_prev = t_bar.copy()
        w = t_bar.copy()
        v = v_prev
        for _ in range(J):
            g = problem.phi_gradient(w, t_bar, gamma, beta)
            # the projection, as np.clip computes it at a fraction of its call overhead
            v = np.minimum(np.maximum(w - step * g, lower), upper)
            w = v + momentum * (v - v_prev)
            v_prev = v
        move = float(np.linalg.norm(v - t_bar))
        if move < best_step:
            # line 10: the output is the iterate t^(R) whose next step is smallest
            best_step, best_t = move, t_bar.copy()
        t_bar = v
        if progress is not None:
            progress(it, T)
        if move < tol:
            converged, stopped = True, "tol"
            break
        if watch:
            ex = hard_exits(t_bar)
            calm = calm + 1 if np.count_nonzero(ex != prev_exits) < hard_tol * ex.size else 0
            prev_exits = ex
            if calm >= patience:
                converged, stopped = True, "hard"
                break
    return IPPPResult(
        thresholds=best_t,
        smallest_step=best_step,
        iterations=it,
        gradient_evaluations=problem.evaluations - evals0,
        converged=converged,
        last=t_bar,
        stopped=stopped,
    )
