"""Statistics of repeated latency measurements (pure functions, no I/O).

The profiler times every exit many times, in rounds. The tuner's budget is on the
*mean* latency, so d_n estimates the mean: a lightly trimmed mean (the mean of the
calls left after dropping the fastest and the slowest ``TRIM`` of them). On a busy
machine most calls wait for the CPU now and then, and only a mean follows that (the
median and more heavily trimmed means came out 20-60% low against measured adaptive
runs, see docs/profiling.md); the light trim keeps one rare stall of a
thousand calls from moving the estimate.
This module turns the raw per-call times of one exit into the figures the latency
JSON records: that estimate, the plain mean, median, quartiles and IQR, a
distribution-free confidence interval of the median from order statistics, the
minimum, and the spread of the per-round medians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.special import bdtr

CI_LEVEL = 0.95
# Share of the calls dropped at each end for the trimmed mean (d_n): one call in a
# thousand. See docs/profiling.md for the measurements behind it.
TRIM = 0.001


@dataclass(frozen=True)
class ExitTiming:
    """Timing statistics of one exit, in seconds.

    ``ci_low``/``ci_high`` bound the median at level ``ci_level`` from order statistics
    (distribution-free); they treat the calls as independent, so they describe the noise
    within this run, not how far another run on another day may land.
    """

    name: str
    median: float
    mean: float
    trimmed_mean: float
    q1: float
    q3: float
    ci_low: float
    ci_high: float
    ci_level: float
    minimum: float
    count: int
    round_median_min: float
    round_median_max: float
    trim: float = TRIM

    @property
    def estimate(self) -> float:
        """d_n: the trimmed mean, an estimate of the mean latency robust to rare extremes."""
        return self.trimmed_mean

    @property
    def iqr(self) -> float:
        """Interquartile range ``q3 - q1``."""
        return self.q3 - self.q1

    @property
    def relative_iqr(self) -> float:
        """IQR divided by the median (infinite for a zero median)."""
        return self.iqr / self.median if self.median > 0 else math.inf

    def to_dict(self) -> dict:
        """The per-exit object of the latency JSON's ``measurement.exits``."""
        return {
            "name": self.name,
            "trimmed_mean": self.trimmed_mean,
            "trim": self.trim,
            "median": self.median,
            "mean": self.mean,
            "q1": self.q1,
            "q3": self.q3,
            "iqr": round(self.iqr, 12),
            "relative_iqr": round(self.relative_iqr, 6),
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "ci_level": self.ci_level,
            "min": self.minimum,
            "count": self.count,
            "round_median_min": self.round_median_min,
            "round_median_max": self.round_median_max,
        }


def median_ci(sorted_values, level: float = CI_LEVEL) -> tuple[float, float, float]:
    """Distribution-free confidence interval of the median from order statistics.

    With X ~ Binomial(n, 1/2) the number of values below the median, the interval
    [x_(j), x_(n-j+1)] (1-based order statistics) covers the median with probability
    1 - 2 P(X <= j - 1); j is the largest index that keeps this at least ``level``.

    Parameters
    ----------
    sorted_values : array_like
        The sample, sorted in increasing order (not checked).
    level : float, optional
        Wanted coverage, in (0, 1).

    Returns
    -------
    low, high : float
        The ends of the interval, two of the sample's values.
    coverage : float
        The interval's actual coverage, at least ``level`` unless the sample is too
        small: then the interval is [min, max] and its coverage is below ``level``.

    Raises
    ------
    ValueError
        If the sample is empty or ``level`` is not in (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
    x = np.asarray(sorted_values)
    n = x.size
    if n == 0:
        raise ValueError("median_ci needs at least one value")
    cdf = bdtr(np.arange(n + 1), n, 0.5)  # P(X <= k)
    j = int(np.searchsorted(cdf, (1.0 - level) / 2.0, side="right"))
    if j == 0:
        return float(x[0]), float(x[-1]), max(0.0, float(1.0 - 2.0 * cdf[0]))
    return float(x[j - 1]), float(x[n - j]), float(1.0 - 2.0 * cdf[j - 1])


def trimmed_mean(sorted_values, trim: float = TRIM) -> float:
    """Mean of a sorted sample without its ``floor(trim * n)`` smallest and largest values.

    Parameters
    ----------
    sorted_values : array_like
        The sample, sorted in increasing order (not checked).
    trim : float, optional
        Share dropped at each end, in [0, 0.5).

    Raises
    ------
    ValueError
        If the sample is empty or ``trim`` is outside [0, 0.5).
    """
    if not 0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim!r}")
    x = np.asarray(sorted_values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("trimmed_mean needs at least one value")
    k = int(math.floor(trim * x.size))
    return float(x[k : x.size - k].mean())


def _seconds(ns: float) -> float:
    # the clock counts whole nanoseconds; rounding keeps float noise out of the JSON
    return round(float(ns) / 1e9, 12)


def exit_timing(name: str, rounds_ns: Sequence[Sequence[int]], level: float = CI_LEVEL,
                trim: float = TRIM) -> ExitTiming:
    """Statistics of the timed calls of one exit.

    Parameters
    ----------
    name : str
        The exit's name, copied into the result.
    rounds_ns : sequence of sequences of int
        Per-call times in nanoseconds, one sequence per round; every round needs at
        least one call.
    level : float, optional
        Coverage of the median's confidence interval (see `median_ci`).
    trim : float, optional
        Share of the calls dropped at each end for the trimmed mean.

    Returns
    -------
    ExitTiming
        Trimmed mean (the exit's d_n), median, mean, quartiles (linear interpolation), the
        median's confidence interval, minimum and count over all calls, and the
        smallest and largest per-round median; all in seconds, rounded to 1e-12.

    Raises
    ------
    ValueError
        If there are no rounds or a round is empty.
    """
    if len(rounds_ns) == 0 or any(len(r) == 0 for r in rounds_ns):
        raise ValueError("rounds_ns must hold at least one round, each with at least one time")
    ns = np.sort(np.concatenate([np.asarray(r, dtype=np.int64) for r in rounds_ns])).astype(np.float64)
    q1, median, q3 = np.percentile(ns, [25, 50, 75])
    low, high, _ = median_ci(ns, level)
    round_medians = [float(np.median(r)) for r in rounds_ns]
    return ExitTiming(
        name=name,
        median=_seconds(median),
        mean=_seconds(ns.mean()),
        trimmed_mean=_seconds(trimmed_mean(ns, trim)),
        q1=_seconds(q1),
        q3=_seconds(q3),
        ci_low=_seconds(low),
        ci_high=_seconds(high),
        ci_level=level,
        minimum=_seconds(ns[0]),
        count=int(ns.size),
        round_median_min=_seconds(min(round_medians)),
        round_median_max=_seconds(max(round_medians)),
        trim=trim,
    )


__all__ = ["CI_LEVEL", "TRIM", "ExitTiming", "exit_timing", "median_ci", "trimmed_mean"]
