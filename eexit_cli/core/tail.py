"""Tail-latency budgets: "the p-quantile of latency is at most X".

With batch size 1 a sample's latency is the cost ``d_n`` of the exit it takes,
so on a split of ``M`` samples

    q_p <= X   <=>   #{m : d_exit(m) <= X} >= ceil(p M)
               <=>   #{m : d_exit(m) > X}  <= M - ceil(p M),

where ``q_p`` is the empirical p-quantile in its inverted-CDF form (the
smallest latency ``L_(j)`` of the sorted sample with ``j >= p M``, which is what
:func:`latency_quantile` returns).  The count on the right is a sum over samples
of the per-exit row ``r_n = 1[d_n > X]`` taken at each sample's exit: the same
shape as the mean-latency constraint with another cost vector, so the smoothed
problem (eqs. 2-10) and the exact repair and polish handle it as one more row.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from .latency import parse_budget

__all__ = ["TailBudget", "parse_tail", "latency_quantile", "latency_quantiles", "constraint_rows",
           "QUANTILES"]

#: Quantiles of latency that reports show.
QUANTILES = (0.5, 0.9, 0.95, 0.99)

# p M is computed in floating point: 0.95 * 10000 = 9500.000000000002 must count as
# 9500 samples, not 9501
_COUNT_SLACK = 1e-9


def _rank(level: float, n_samples: int) -> int:
    """``ceil(p M)``, the rank of the p-quantile, robust to the rounding of ``p M``."""
    return max(1, min(n_samples, math.ceil(level * n_samples - _COUNT_SLACK)))


@dataclass(frozen=True)
class TailBudget:
    """The requirement "the ``level``-quantile of latency is at most ``latency``".

    Attributes
    ----------
    level : float
        ``p`` in (0, 1), e.g. 0.95 for p95.
    latency : float
        ``X``, in the unit of the costs.
    """

    level: float
    latency: float

    def __post_init__(self):
        # level 1 (no sample may be slower) is allowed: --guarantee tightens towards it
        if not (isinstance(self.level, (int, float)) and 0.0 < float(self.level) <= 1.0):
            raise ValueError(f"tail level must lie in (0, 1], got {self.level!r}")
        if not (math.isfinite(float(self.latency)) and float(self.latency) > 0):
            raise ValueError(f"tail latency must be positive and finite, got {self.latency!r}")

    @property
    def share(self) -> float:
        """``1 - p``: the largest share of samples allowed above ``latency``."""
        return 1.0 - float(self.level)

    def row(self, costs) -> np.ndarray:
        """Per-exit indicator ``r_n = 1[d_n > X]`` (int64)."""
        return (np.asarray(costs, dtype=np.float64) > self.latency).astype(np.int64)

    def allowed(self, n_samples: int) -> int:
        """Most samples of ``n_samples`` that may take longer than ``latency``."""
        return int(n_samples) - _rank(self.level, int(n_samples))

    def over(self, latencies) -> int:
        """How many of ``latencies`` exceed ``latency``."""
        return int(np.count_nonzero(np.asarray(latencies) > self.latency))

    def holds(self, latencies) -> bool:
        """Whether the empirical ``level``-quantile of ``latencies`` is at most ``latency``."""
        lat = np.asarray(latencies)
        return self.over(lat) <= self.allowed(lat.size)

    def label(self) -> str:
        return f"p{100 * float(self.level):g}"

    def to_dict(self) -> dict:
        return {"level": float(self.level), "latency": float(self.latency)}


def latency_quantile(latencies, level: float) -> float:
    """Empirical ``level``-quantile, inverted-CDF form: ``L_(ceil(p M))`` of the sorted sample."""
    lat = np.sort(np.asarray(latencies, dtype=np.float64).ravel())
    if lat.size == 0:
        raise ValueError("latency_quantile needs at least one latency")
    return float(lat[_rank(level, lat.size) - 1])


def latency_quantiles(latencies, levels=QUANTILES) -> dict[str, float]:
    """``{"p50": ..., "p90": ..., ...}`` for ``levels`` (see :func:`latency_quantile`)."""
    lat = np.sort(np.asarray(latencies, dtype=np.float64).ravel())
    return {f"p{100 * p:g}": float(lat[_rank(p, lat.size) - 1]) for p in levels}


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def parse_tail(text: str, costs, unit: str | None = None) -> TailBudget:
    """Parse ``P:X``: ``P`` as ``95%``, ``0.95`` or ``p95``; ``X`` as a budget (a number in the
    costs' unit, a percentage of d_N or a time converted into ``unit``).

    Raises ``ValueError`` saying what would be right.
    """
    s = str(text).strip()
    head, sep, tail = s.partition(":")
    example = "e.g. 95%:60% (p95 latency <= 60% of d_N) or 0.99:0.004"
    if not sep or not head.strip() or not tail.strip():
        raise ValueError(f"tail budget {text!r} is not P:X; {example}")
    h = head.strip().lower()
    m_pct = re.fullmatch(rf"({_NUM})\s*%", h)
    m_p = re.fullmatch(rf"p\s*({_NUM})", h)
    if m_pct:
        level = float(m_pct.group(1)) / 100.0
    elif m_p:
        level = float(m_p.group(1)) / 100.0
    elif re.fullmatch(_NUM, h):
        level = float(h)
    else:
        raise ValueError(f"tail level {head.strip()!r} is not a number or percentage; {example}")
    if not 0.0 < level < 1.0:
        raise ValueError(
            f"tail level {head.strip()!r} must lie strictly between 0% and 100%; {example}"
        )
    try:
        limit = parse_budget(tail.strip(), costs, unit, "tail latency")
    except ValueError as exc:
        raise ValueError(f"tail latency {tail.strip()!r}: {exc}") from None
    return TailBudget(level=level, latency=limit)


def constraint_rows(costs, budget, tails, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and bounds of the exact machinery (:class:`~eexit_cli.core.exact.HardProblem`).

    Row 0 is mean latency (bound ``budget``, ``inf`` when None), then one row
    ``1[d_n > X]`` per tail budget.  Its bound on the share of samples is put
    half a sample above the allowed count, ``(allowed + 1/2) / M``: shares are
    multiples of ``1/M``, so this admits exactly the allowed counts whatever the
    rounding of ``1 - p`` in floating point.
    """
    costs = np.asarray(costs, dtype=np.float64)
    rows = [costs] + [tb.row(costs).astype(np.float64) for tb in tails]
    bounds = [math.inf if budget is None else float(budget)]
    bounds += [(tb.allowed(n_samples) + 0.5) / n_samples for tb in tails]
    return np.array(rows), np.array(bounds)
