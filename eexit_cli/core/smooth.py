"""Smoothed accuracy and latency of threshold-based early exit (paper, eqs. 2-10, 16).

The hard rule lets a sample leave at the first exit ``n < N`` whose confidence
``s_n`` is strictly above ``t_n``.  Replacing the step by the logistic function
``sigma(x) = 1 / (1 + exp(-k x))`` (eq. 3) gives smooth exit indicators

    g_n = sigma(s_n - t_n) * prod_{i<n} sigma(t_i - s_i)       (eq. 2)
    g_N = prod_{i<N} sigma(t_i - s_i)                          (eq. 4)

and with them a smoothed accuracy ``-o(t)`` (eqs. 5, 9) and a smoothed mean
latency ``c(t) + Gamma`` (eqs. 6, 10).

Gradients are computed in closed form in O(N*M) per evaluation.  With the
"pass" probability ``p_i = sigma(t_i - s_i)``, the expected value of a sample
that reaches exit ``n`` obeys the backward recursion

    V_N = w_N,    V_n = (1 - p_n) w_n + p_n V_{n+1},

where ``w_n`` is the per-exit reward (correctness for accuracy, ``d_n`` for
latency), and the derivative of ``V_1`` with respect to ``t_n`` is

    P_n * k p_n (1 - p_n) * (V_{n+1} - w_n),    P_n = prod_{i<n} p_i.

The recursion is run on ``D_n = V_{n+1} - w_n`` itself, which is what the
gradient needs: ``D_{n-1} = p_n D_n + (w_n - w_{n-1})``, with the differences of
the rewards computed once, and ``V_1 = w_1 + p_1 D_1``.

Only the few exits are looped over in Python; every operation is a whole row
of M samples.  The logistic function is evaluated as ``0.5 + 0.5 tanh(k x / 2)``,
which neither overflows nor produces NaN for any ``k``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "logistic",
    "exit_probabilities",
    "smooth_accuracy",
    "smooth_latency",
    "SmoothProblem",
]


def logistic(x, k: float):
    """Verhulst logistic ``1 / (1 + exp(-k x))`` (eq. 3), overflow-free for any ``k``.

    Computed as ``0.5 + 0.5 * tanh(k x / 2)``, which is exact in real
    arithmetic and bounded for every finite input.
    """
    x = np.asarray(x)
    return 0.5 + 0.5 * np.tanh((0.5 * k) * x)


def exit_probabilities(scores, thresholds, k: float) -> np.ndarray:
    """Smoothed exit indicators ``g_n(x_m, t)`` of eqs. (2) and (4).

    Parameters
    ----------
    scores : array_like, shape (N, M)
        Confidence of exit n on sample m.
    thresholds : array_like, shape (N-1,)
    k : float
        Steepness of the logistic function (eq. 3).

    Returns
    -------
    ndarray, shape (N, M)
        ``g[n, m]``; every column sums to one.
    """
    scores = np.asarray(scores, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    n_exits, n_samples = scores.shape
    g = np.empty((n_exits, n_samples))
    reach = np.ones(n_samples)
    for n in range(n_exits - 1):
        p = logistic(t[n] - scores[n], k)
        g[n] = reach * (1.0 - p)
        reach = reach * p
    g[n_exits - 1] = reach
    return g


def smooth_accuracy(scores, correct, thresholds, k: float) -> float:
    """Smoothed accuracy ``-o(t) = mean_m sum_n g_n [exit n right]`` (eqs. 5, 9)."""
    g = exit_probabilities(scores, thresholds, k)
    return float(np.mean(np.sum(g * np.asarray(correct, dtype=np.float64), axis=0)))


def smooth_latency(scores, thresholds, costs, k: float) -> float:
    """Smoothed mean latency ``mean_m sum_n d_n g_n`` (eqs. 6, 10); ``c(t)`` is this minus Gamma."""
    g = exit_probabilities(scores, thresholds, k)
    return float(np.mean(np.asarray(costs, dtype=np.float64) @ g))


class SmoothProblem:
    """Smoothed problem P2 (eqs. 9-10) with closed-form gradients.

    The arrays are copied once into contiguous buffers of ``dtype`` and every
    evaluation works in place, so that one evaluation costs a few passes over
    an (N-1, M) array.  float32 is about twice as fast as float64 on large
    problems and its gradients agree with float64 to about 1e-5 relative
    (tests/test_smooth.py), far below what moves a hard threshold.

    Parameters
    ----------
    scores : array_like, shape (N, M)
        Confidences, in the units in which thresholds are given to the methods.
    correct : array_like of bool, shape (N, M)
    costs : array_like, shape (N,)
        ``d_1 .. d_N``.
    budget : float
        Gamma; ``c(t) = latency(t) - budget`` (eq. 10).
    k : float
        Logistic steepness (eq. 3), in the units of ``scores``.
    dtype : numpy dtype, default float64
    """

    def __init__(self, scores, correct, costs, budget: float | None, k: float, dtype=np.float64,
                 *, extra_rows=None, extra_limits=None):
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[0] < 2:
            raise ValueError(f"scores must have shape (N >= 2, M), got {scores.shape}")
        if not (np.isfinite(k) and k > 0):
            raise ValueError(f"k must be positive and finite, got {k!r}")
        self.dtype = np.dtype(dtype)
        self.n_exits, self.n_samples = scores.shape
        self.k = float(k)
        # no mean-latency budget (e.g. a tail budget alone): c(t) = -inf never binds
        self.budget = math.inf if budget is None else float(budget)
        self.costs = np.asarray(costs, dtype=np.float64).copy()
        if extra_rows is None:
            extra_rows = np.zeros((0, self.n_exits))
            extra_limits = np.zeros(0)
        self.extra_rows = np.atleast_2d(np.asarray(extra_rows, dtype=np.float64)).copy()
        self.extra_limits = np.atleast_1d(np.asarray(extra_limits, dtype=np.float64)).copy()
        if self.extra_rows.shape[1:] != (self.n_exits,) or self.extra_limits.shape != self.extra_rows.shape[:1]:
            raise ValueError(
                f"extra_rows must have shape (K, {self.n_exits}) and extra_limits shape (K,), got "
                f"{self.extra_rows.shape} and {self.extra_limits.shape}"
            )
        self.limits = np.concatenate([[self.budget], self.extra_limits])
        dt = self.dtype
        ne = self.n_exits - 1
        # tanh argument 0.5*k*(t_n - s_n) = 0.5*k*t_n - hs[n]
        self._hs = np.ascontiguousarray(0.5 * self.k * scores[:ne], dtype=dt)
        correct = np.asarray(correct, dtype=bool)
        self._cost_dt = self.costs.astype(dt)
        m = self.n_samples
        self._p = np.empty((ne, m), dtype=dt)  # pass probabilities p_n
        self._dp = np.empty((ne, m), dtype=dt)  # 4 p_n (1 - p_n) P_n (k/4 applied to the sums)
        self._reach = np.empty((ne, m), dtype=dt)  # P_n = prod_{i<n} p_i
        self._reach[0].fill(1.0)
        # rewards per exit as (R, M) blocks: row 0 accuracy, row 1 cost, then one row
        # per extra constraint, so that the backward recursion of all of them runs
        # in one pass per exit
        rows = 2 + self.extra_rows.shape[0]
        w = np.empty((self.n_exits, rows, m), dtype=dt)
        w[:, 0] = correct
        w[:, 1] = self._cost_dt[:, None]
        w[:, 2:] = self.extra_rows.T.astype(dt)[:, :, None]
        # the recursion runs on D_n = V_{n+1} - w_n:  D_{n-1} = p_n D_n + (w_n - w_{n-1}),
        # two passes per exit; the differences of the rewards are fixed
        self._dw = np.empty((self.n_exits, rows, m), dtype=dt)
        np.subtract(w[1:], w[:-1], out=self._dw[1:])
        self._dw[0] = w[0]
        self._w0_sum = np.sum(w[0], axis=1, dtype=np.float64)
        del w
        self._diff = np.empty((rows, m), dtype=dt)  # D_n
        self.evaluations = 0

    # ------------------------------------------------------------------ values
    def _forward(self, t, need_grad: bool) -> None:
        ne = self.n_exits - 1
        p, dp, reach = self._p, self._dp, self._reach
        # whole (N-1, M) blocks at once: few exits, many samples, and every numpy
        # call has a fixed overhead comparable to a row's arithmetic
        shift = (0.5 * self.k * t).astype(self.dtype)
        np.subtract(shift[:, None], self._hs, out=p)
        np.tanh(p, out=p)
        if need_grad:
            # k p (1 - p) = k/4 (1 - tanh^2)
            np.multiply(p, p, out=dp)
            np.subtract(1.0, dp, out=dp)
        p *= 0.5
        p += 0.5
        for n in range(1, ne):
            np.multiply(reach[n - 1], p[n - 1], out=reach[n])
        if need_grad:
            np.multiply(dp, reach, out=dp)

    def values(self, t) -> tuple[float, float]:
        """Smoothed accuracy ``-o(t)`` and smoothed latency ``c(t) + Gamma``."""
        vals, _ = self._run_all(t, need_grad=False)
        return float(vals[0]), float(vals[1])

    def constraint_values(self, t) -> np.ndarray:
        """Every constraint ``c_k(t)``: the latency's (eq. 10), then the extra rows'.

        Row ``k`` is ``mean_m sum_n g_n(x_m, t) r_kn - limit_k``; for a tail budget
        ``r_kn = 1[d_n > X]`` and the limit is the allowed share ``1 - p``.
        """
        vals, _ = self._run_all(t, need_grad=False, need_acc=False)
        return vals[1:] - self.limits

    def constraint(self, t) -> float:
        """``max_k c_k(t)``: ``c(t)`` of eq. (10) when there is no extra row."""
        return float(np.max(self.constraint_values(t)))

    def value_and_grad(self, t):
        """Smoothed accuracy, latency and their gradients with respect to ``t``.

        Returns
        -------
        acc, lat : float
        grad_acc, grad_lat : ndarray of float64, shape (N-1,)
            ``-grad o(t)`` and ``grad c(t)``.
        """
        vals, grads = self._run_all(t, need_grad=True)
        return float(vals[0]), float(vals[1]), grads[0], grads[1]

    def rows_and_grads(self, t):
        """Smoothed values of every row (accuracy, latency, extra rows) and their gradients.

        Returns ``(values (R,), gradients (R, N-1))`` with ``R = 2 + K``.
        """
        return self._run_all(t, need_grad=True)

    def _run_all(self, t, need_grad: bool, need_acc: bool = True):
        t = np.asarray(t, dtype=np.float64)
        if t.shape != (self.n_exits - 1,):
            raise ValueError(f"thresholds must have shape ({self.n_exits - 1},), got {t.shape}")
        self.evaluations += 1
        self._forward(t, need_grad)
        ne = self.n_exits - 1
        p, dw, diff, dp = self._p, self._dw, self._diff, self._dp
        rows = dw.shape[1]
        inv_m = 1.0 / self.n_samples
        # the sums of the gradients in the working dtype, converted once at the end
        sums = np.zeros((ne, rows), dtype=self.dtype)
        # D_{N-1} = V_N - w_{N-1} = w_N - w_{N-1}; the derivative by t_n is P_n k p_n (1 - p_n) D_n
        diff[...] = dw[ne]
        for n in range(ne - 1, 0, -1):
            if need_grad:
                sums[n] = diff @ dp[n]
            np.multiply(diff, p[n], out=diff)
            np.add(diff, dw[n], out=diff)
        if need_grad:
            sums[0] = diff @ dp[0]
        # V_1 = w_1 + p_1 D_1, summed over the samples
        vals = (self._w0_sum + (diff @ p[0]).astype(np.float64)) * inv_m
        grads = sums.T.astype(np.float64, order="C") * (0.25 * self.k * inv_m)
        if not need_acc:
            vals[0] = np.nan
        return vals, grads

    # ----------------------------------------------------- proximal subproblem
    def phi(self, t, t_bar, gamma: float, beta: float) -> float:
        """Penalised proximal subproblem of eq. (16), with one penalty per constraint.

        ``phi_t(t) = o(t) + gamma/2 ||t - t_bar||^2 + beta/2 sum_k max(0, c_k(t))^2``
        (one term, the paper's, without extra rows).
        """
        vals, _ = self._run_all(t, need_grad=False)
        c = np.maximum(0.0, vals[1:] - self.limits)
        diff = np.asarray(t, dtype=np.float64) - np.asarray(t_bar, dtype=np.float64)
        return float(-vals[0] + 0.5 * gamma * float(diff @ diff) + 0.5 * beta * float(c @ c))

    def phi_grad(self, t, t_bar, gamma: float, beta: float):
        """Value and gradient of ``phi_t`` (eq. 16).

        Returns
        -------
        value : float
        grad : ndarray, shape (N-1,)
        acc, lat : float
            Smoothed accuracy and latency at ``t`` (free by-products).
        """
        t = np.asarray(t, dtype=np.float64)
        vals, grads = self._run_all(t, need_grad=True)
        c = np.maximum(0.0, vals[1:] - self.limits)
        diff = t - np.asarray(t_bar, dtype=np.float64)
        value = -vals[0] + 0.5 * gamma * float(diff @ diff) + 0.5 * beta * float(c @ c)
        grad = -grads[0] + gamma * diff + beta * (c @ grads[1:])
        return float(value), grad, float(vals[0]), float(vals[1])

    def phi_gradient(self, t, t_bar, gamma: float, beta: float) -> np.ndarray:
        """Gradient of ``phi_t`` (eq. 16) alone, as :meth:`phi_grad` computes it.

        Skips the smoothed accuracy and the value, which Algorithm 1 never uses.
        """
        t = np.asarray(t, dtype=np.float64)
        vals, grads = self._run_all(t, need_grad=True, need_acc=False)
        c = np.maximum(0.0, vals[1:] - self.limits)
        return -grads[0] + gamma * (t - t_bar) + beta * (c @ grads[1:])
