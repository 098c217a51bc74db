"""One-sided upper confidence bounds on the mean of bounded i.i.d. variables.

Every bound here has the signature ``upper_bound(x, lo, hi, delta) -> float``:
given i.i.d. samples ``x`` of a variable that lies in ``[lo, hi]`` with unknown
mean ``mu``, it returns ``U`` with ``P(mu <= U) >= 1 - delta``.  The bounds
work on ``z = (x - lo) / (hi - lo)`` in ``[0, 1]`` and map the result back; it
is always clipped to ``[lo, hi]``.

``BOUNDS`` maps the names used by ``eexit tune --bound`` to the functions;
``DEFAULT_BOUND`` is the one used when none is named.  The default was chosen on
per-sample latencies of tuned thresholds (a few discrete costs d_n, most mass on
one or two exits); ``benchmarks/bench_bounds.py`` prints the widths that
motivated the choice, and docs/guarantee.md gives the formulas.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import bdtr

__all__ = [
    "BOUNDS",
    "DEFAULT_BOUND",
    "betting",
    "empirical_bernstein",
    "get_bound",
    "hoeffding",
    "hoeffding_bentkus",
]

_BISECTION_STEPS = 60  # halves [0, 1] down to ~1e-18: below float64 resolution of the result
_BET_CAP = 0.5  # largest fraction of the capital risked on one sample (Waudby-Smith & Ramdas)
_ORDER_SEED = 20210201  # fixed, data-independent: see betting()


def _check(x, lo, hi, delta) -> tuple[np.ndarray, float, float, float]:
    """Validate the common arguments; return z in [0, 1], lo, hi, delta."""
    try:
        lo = float(lo)
        hi = float(hi)
        delta = float(delta)
    except (TypeError, ValueError):
        raise ValueError("lo, hi and delta must be numbers") from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"lo and hi must be finite, got lo={lo}, hi={hi}")
    if hi < lo:
        raise ValueError(f"hi must be at least lo, got lo={lo}, hi={hi}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must lie strictly between 0 and 1, got {delta}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be a 1-D array of samples, got shape {x.shape}")
    if x.size == 0:
        raise ValueError("x has no samples")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or Inf")
    span = hi - lo
    slack = 1e-12 * max(abs(lo), abs(hi), 1.0)  # costs copied through float arithmetic
    if x.min() < lo - slack or x.max() > hi + slack:
        raise ValueError(
            f"x must lie in [lo, hi] = [{lo}, {hi}], got values in [{x.min()}, {x.max()}]"
        )
    z = np.zeros_like(x) if span == 0 else np.clip((x - lo) / span, 0.0, 1.0)
    return z, lo, hi, delta


def _back(u: float, lo: float, hi: float) -> float:
    return float(min(max(lo + (hi - lo) * u, lo), hi))


def hoeffding(x, lo, hi, delta) -> float:
    """Hoeffding's bound: ``mean + (hi - lo) * sqrt(ln(1/delta) / (2 n))``.

    Parameters
    ----------
    x : array_like, shape (n,)
        i.i.d. samples, each in ``[lo, hi]``.
    lo, hi : float
        Range of the variable (for latencies: ``d_1`` and ``d_N``).
    delta : float
        Error probability, in (0, 1); the bound holds with probability ``1 - delta``.

    Returns
    -------
    float
        Upper confidence bound on the mean, in ``[lo, hi]``.
    """
    z, lo, hi, delta = _check(x, lo, hi, delta)
    n = z.size
    return _back(z.mean() + math.sqrt(math.log(1.0 / delta) / (2.0 * n)), lo, hi)


def _kl_bernoulli(y: float, p: float) -> float:
    """Bernoulli relative entropy h1(y, p) = y ln(y/p) + (1-y) ln((1-y)/(1-p))."""
    out = 0.0
    if y > 0.0:
        out += y * math.log(y / p)
    if y < 1.0:
        out += (1.0 - y) * math.log((1.0 - y) / (1.0 - p))
    return out


def _hb_pvalue(zbar: float, n: int, r: float) -> float:
    """p-value of H0: mean >= r given the sample mean ``zbar`` of n samples in [0, 1]."""
    if r <= zbar:
        return 1.0
    if r >= 1.0:
        return 0.0 if zbar < 1.0 else 1.0
    p_hoeffding = math.exp(-n * _kl_bernoulli(zbar, r))
    k = min(math.ceil(n * zbar), n)
    p_bentkus = math.e * float(bdtr(k, n, r))
    return min(p_hoeffding, p_bentkus)


def hoeffding_bentkus(x, lo, hi, delta) -> float:
    """Hoeffding-Bentkus bound: invert the smaller of two binomial-tail p-values.

    With ``z_i`` in [0, 1], ``zbar`` their mean and ``H0: mu >= r``, both

    * Hoeffding (1963, Thm. 1, relative-entropy form):
      ``P(zbar <= y) <= exp(-n h1(y, r))`` for ``y <= r``, and
    * Bentkus (2004): ``P(zbar <= y) <= e * P(Binomial(n, r) <= ceil(n y))``

    hold for every distribution on [0, 1] with mean ``r`` and only grow as the
    mean drops to ``r`` from above, so ``p(r) = min(...)`` evaluated at the
    observed ``zbar`` is a valid p-value for ``H0``.  The bound is
    ``sup{r : p(r) > delta}``, found by bisection (``p`` decreases in ``r``).
    This is the form used by risk-controlling prediction sets and Learn-then-Test.

    Parameters and return value as in :func:`hoeffding`.
    """
    z, lo, hi, delta = _check(x, lo, hi, delta)
    n = z.size
    zbar = float(z.mean())
    if _hb_pvalue(zbar, n, 1.0) > delta:
        return hi
    a, b = zbar, 1.0  # p(a) > delta >= p(b)
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (a + b)
        if _hb_pvalue(zbar, n, mid) > delta:
            a = mid
        else:
            b = mid
    return _back(b, lo, hi)


def empirical_bernstein(x, lo, hi, delta) -> float:
    """Maurer & Pontil's empirical Bernstein bound (2009, Thm. 4).

    ``zbar + sqrt(2 V ln(2/delta) / n) + 7 ln(2/delta) / (3 (n - 1))`` with ``V``
    the unbiased sample variance of ``z``; tighter than Hoeffding when the
    variance is small and n is large, looser for small n.  Needs ``n >= 2``
    (returns ``hi`` for a single sample).

    Parameters and return value as in :func:`hoeffding`.
    """
    z, lo, hi, delta = _check(x, lo, hi, delta)
    n = z.size
    if n < 2:
        return hi
    log_term = math.log(2.0 / delta)
    var = float(z.var(ddof=1))
    u = z.mean() + math.sqrt(2.0 * var * log_term / n) + 7.0 * log_term / (3.0 * (n - 1))
    return _back(u, lo, hi)


def _bets(z: np.ndarray, delta: float) -> np.ndarray:
    """Predictable bets lambda'_t of the hedged capital process, before truncation."""
    n = z.size
    t = np.arange(1, n + 1)
    mean = (0.5 + np.cumsum(z)) / (t + 1)
    var = (0.25 + np.cumsum((z - mean) ** 2)) / (t + 1)
    prev_var = np.concatenate(([0.25], var[:-1]))  # uses samples 1..t-1 only
    return np.sqrt(2.0 * math.log(1.0 / delta) / (n * prev_var))


def _log_capital(z: np.ndarray, lam: np.ndarray, m: float) -> float:
    """ln K_n(m), K_n(m) = prod_i (1 + lambda_i (m - z_i)), bets capped to keep factors positive."""
    cap = _BET_CAP / (1.0 - m) if m < 1.0 else np.inf
    return float(np.sum(np.log1p(np.minimum(lam, cap) * (m - z))))


def betting(x, lo, hi, delta) -> float:
    """Betting bound of Waudby-Smith & Ramdas (2023), one-sided, final capital.

    For a candidate mean ``m`` a gambler bets against ``H0: mu >= m`` with capital
    ``K_t(m) = prod_{i<=t} (1 + lambda_i (m - z_i))``.  Under ``H0`` it is a
    non-negative supermartingale (each factor has conditional mean
    ``1 + lambda_i (m - mu) <= 1``), so ``E[K_n(m)] <= 1`` and by Markov's
    inequality ``P(K_n(m) >= 1/delta) <= delta``.  The bound is the smallest
    ``m`` that is rejected.  The bets are predictable (built from ``z_1..z_{t-1}``):
    ``lambda_t = min(sqrt(2 ln(1/delta) / (n s2_{t-1})), c / (1 - m))`` with the
    regularised running variance ``s2`` and ``c = 1/2``; the cap keeps every
    factor positive, and each factor grows with ``m``, so the rejected set is an
    interval ``[m*, 1]`` and bisection finds ``m*``.  The bets shrink where the
    variance is small, which makes the bound much tighter than Hoeffding's there.

    Rejecting when the running maximum ``max_t K_t(m)`` reaches ``1/delta`` (Ville's
    inequality; the confidence-sequence form) is also valid and 20-25% tighter on
    average, but its width varies several times more from sample to sample and
    can fall below the sample mean; the final capital gives a stable width, which
    the schedule of :func:`eexit_cli.core.guarantee.certify` relies on.

    The capital depends on the order of the samples.  They are visited in a
    fixed pseudo-random order that does not depend on their values, so the bound
    is valid for any exchangeable sample whatever order it is given in (e.g.
    sorted) and is a deterministic function of ``x``.

    Parameters and return value as in :func:`hoeffding`.
    """
    z, lo, hi, delta = _check(x, lo, hi, delta)
    n = z.size
    z = z[np.random.default_rng(_ORDER_SEED).permutation(n)]
    lam = _bets(z, delta)
    threshold = math.log(1.0 / delta)
    if _log_capital(z, lam, 1.0) < threshold:
        return hi
    a, b = 0.0, 1.0  # K(a) never reaches 1/delta (each factor <= 1 at m = 0); K(b) does
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (a + b)
        if _log_capital(z, lam, mid) >= threshold:
            b = mid
        else:
            a = mid
    return _back(b, lo, hi)


BOUNDS = {
    "hoeffding": hoeffding,
    "hoeffding_bentkus": hoeffding_bentkus,
    "empirical_bernstein": empirical_bernstein,
    "betting": betting,
}

DEFAULT_BOUND = "betting"


def get_bound(name: str):
    """The bound function registered under ``name``; ``ValueError`` listing the names."""
    try:
        return BOUNDS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"bound must be one of {', '.join(sorted(BOUNDS))}, got {name!r}"
        ) from None
