"""Exact machinery on hard thresholds: repair to the constraints and polish the objective.

The smoothed problem (eqs. 9-10) only approximates hard early exit, so thresholds
from the warm start or from Algorithm 1 may break the budget on the tuning split
by a little and may leave accuracy on the table.  This module works on the hard
rule itself (the one of :mod:`eexit_cli.core.replay`).

The problem
-----------
Every sample ``m`` leaves at one exit ``e(m)``.  The constraints are ``R >= 1``
linear rows of per-exit costs: row ``r`` is a vector ``c_r`` of shape ``(N,)``
and holds when ``mean_m c_r[e(m)] <= b_r``.  Mean latency is the row
``c = d`` with ``b = Gamma``; "the p-quantile of latency is at most X" is the
row ``c_n = 1[d_n > X]`` with ``b = 1 - p``.  Bounds may be ``+inf`` (a row
that is only measured).  Two objectives:

* ``objective="accuracy"`` (default): maximise the number of correctly answered
  samples ("hits"); ties go to the lower mean of row 0, then to the first
  candidate found;
* ``objective="cost"``: minimise the mean of row 0 subject to ``hits >=
  min_hits`` (e.g. the fastest thresholds for a target accuracy); ties go to more
  hits.

``min_hits`` is accepted with either objective.  Every accepted state meets every
constraint exactly: feasibility is decided on ``(counts / M) @ c_r``, the very
expression :func:`~eexit_cli.core.replay.replay` computes for mean latency.

Methods
-------
* :meth:`HardProblem.repair` moves every threshold down by the same amount, the
  smallest that makes the state feasible (bisection; exact when the rows do not
  decrease with the exit index, as latency does not).
* :meth:`HardProblem.polish` improves the objective with exact moves that keep
  every constraint: one threshold at a time over every distinct candidate, and
  two thresholds at once over a grid that is exhaustive when the exits have few
  distinct scores, and otherwise combines full resolution near the current
  values with quantiles of the samples reaching each exit.
* :meth:`HardProblem.trade` (objective "accuracy") prices every single-threshold
  move exactly, predicts the best pair moves by adding two exits' prices under
  the slack of row 0, and keeps the predicted moves that an exact check confirms.

Thresholds are represented by candidate indices.  At exit ``n`` with sorted
distinct scores ``u_1 < ... < u_K``, index ``k`` means "the samples whose score
ranks above ``k`` leave": threshold ``c_0`` lies below ``u_1`` (everyone reaching
the exit leaves), ``c_k`` is the midpoint of ``u_k`` and ``u_{k+1}`` (midpoints
generalise better than a threshold sitting on a sample's score) and ``c_K`` is
the largest score (nobody leaves, the rule being "strictly above").  Any real
threshold maps to the index with the same hard behaviour on the data.

Cost and memory
---------------
The problem keeps, for the whole search, the rank of every sample at every
early exit (int32, ``4 (N-1) M`` bytes), the sorted distinct scores of every
exit (at most ``8 (N-1) M`` bytes) and the exit every sample takes in the
current state (``M`` or ``2M`` bytes); it reads ``correct`` (``N M`` bytes) and
never copies ``scores``.  Everything else lives only during one sweep and is
O(M), except during :meth:`HardProblem.trade`: two histograms over every
candidate of every exit (``16 (N-1) M`` bytes at most) for the whole search,
and as much again for the tables of one round.  Peak memory is therefore about ``13 (N-1) M`` bytes on top of the
caller's arrays; there are no caches that grow with the number of moves.

A move changes only the samples whose decision flips at a changed threshold:
their new exits are recomputed (from the first changed exit on) and the
per-exit counts and hits are updated from them, without a pass over every
exit.  A sweep over one threshold ``n`` looks only at the samples that reach
``n``; the pair sweeps ``(i, j)`` share the work that depends on ``i`` alone and
look, for each ``j``, only at the samples that pass from ``i`` to ``j``.
Sums run in integer fixed point (each row scaled so that every total is an
integer below 2**52, exact in float64).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["HardProblem", "HardState", "OBJECTIVES"]

OBJECTIVES = ("accuracy", "cost")


@dataclass(frozen=True)
class HardState:
    """Hard thresholds as candidate indices, with their exact outcome.

    Attributes
    ----------
    index : ndarray of int, shape (N-1,)
        Candidate index of every threshold.
    hits : int
        Correctly answered samples.
    counts : ndarray of int, shape (N,)
        Samples leaving at each exit.
    means : ndarray, shape (R,)
        ``mean_m c_r[e(m)]`` of every constraint row.

    ``mean_latency`` is ``means[0]``.  States of one problem compare by
    ``key()``: the objective first, then its tie-break (see the module docstring).
    """

    index: np.ndarray
    hits: int
    counts: np.ndarray
    means: np.ndarray
    _key: tuple = field(default=(), compare=False, repr=False)
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def mean_latency(self) -> float:
        return float(self.means[0])

    def key(self):
        return self._key


def _pair_index(index: np.ndarray, i: int, j: int, gi: np.ndarray, gj: np.ndarray):
    """``make_index`` of a two-threshold sweep: cell ``a * gj.size + b`` of the table
    is ``index`` with candidate ``gi[a]`` at threshold ``i`` and ``gj[b]`` at ``j``."""
    kj = gj.size

    def make_index(f):
        a, b = divmod(f, kj)
        out = index.copy()
        out[i], out[j] = gi[a], gj[b]
        return out

    return make_index


class HardProblem:
    """Hard-threshold early exit on one split, prepared for exact searches.

    Parameters
    ----------
    scores : ndarray, shape (N, M)
    correct : ndarray of bool, shape (N, M)
    costs : ndarray, shape (N,) or (R, N)
        Per-exit costs of the constraint rows; a vector is one row (mean latency).
    budget : float or ndarray, shape (R,)
        Upper bound on the mean over samples of each row; ``inf`` for none.
    lower, upper : float, optional
        The box of the confidence measure; the "everyone leaves" and "nobody
        leaves" thresholds are placed at or beyond it.
    objective : {"accuracy", "cost"}
        Maximise hits (ties: lower mean of row 0), or minimise the mean of row 0
        (ties: more hits).
    min_hits : int, optional
        A further constraint ``hits >= min_hits`` (required for ``"cost"``, where
        otherwise every sample would go to the cheapest exit).

    Attributes
    ----------
    evaluations : int
        Full evaluations of a state (O(N M) each).
    moves : int
        Incremental evaluations of a neighbouring state.
    pair_sweeps : int
        Pair sweeps run by :meth:`polish`.
    trades_tried : int
        Predicted moves checked exactly by :meth:`trade`.
    """

    def __init__(self, scores, correct, costs, budget, lower=None, upper=None, *,
                 objective: str = "accuracy", min_hits=None):
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[0] < 2 or scores.shape[1] < 1:
            raise ValueError(f"scores must have shape (N >= 2, M >= 1), got {scores.shape}")
        self.n_exits, self.n_samples = scores.shape
        n, m = self.n_exits, self.n_samples
        correct = np.asarray(correct)
        if correct.shape != scores.shape:
            raise ValueError(f"correct has shape {correct.shape}, expected {scores.shape} like scores")
        self.correct = correct if correct.dtype == bool else correct.astype(bool)
        rows = np.asarray(costs, dtype=np.float64)
        if rows.ndim == 1:
            rows = rows[None, :]
        if rows.ndim != 2 or rows.shape[1] != n or rows.shape[0] < 1:
            raise ValueError(f"costs must have shape ({n},) or (R, {n}), got {np.shape(costs)}")
        if not np.all(np.isfinite(rows)):
            raise ValueError("costs must be finite")
        bounds = np.atleast_1d(np.asarray(budget, dtype=np.float64))
        if bounds.shape != (rows.shape[0],) or np.any(np.isnan(bounds)):
            raise ValueError(f"budget must hold one bound per row of costs ({rows.shape[0]}), "
                             f"not NaN, got {np.asarray(budget).tolist()}")
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if objective == "cost" and min_hits is None:
            raise ValueError("objective 'cost' needs min_hits (the accuracy to keep)")
        if min_hits is not None:
            min_hits = int(min_hits)
            if not 0 <= min_hits <= m:
                raise ValueError(f"min_hits must lie in [0, {m}], got {min_hits}")
        self.objective = objective
        self.min_hits = min_hits
        self.rows = rows
        self.bounds = bounds
        self.n_rows = rows.shape[0]
        # the historical single-row view
        self.costs = rows[0]
        self.budget = float(bounds[0])
        self.lower, self.upper = lower, upper

        ne = n - 1
        self._values = []
        itype = np.int32 if m < 2**31 - 1 else np.int64
        self._ranks = np.empty((ne, m), dtype=itype)
        # samples by rank at each exit, and where each rank starts in that order:
        # the samples ranked in (lo, hi] are _order[n][_pos[n][lo]:_pos[n][hi]]
        self._order = np.empty((ne, m), dtype=itype)
        self._pos = []
        first = np.empty(m, dtype=bool)
        for k in range(ne):
            # one sort gives the distinct values and the ranks (1-based)
            order = np.argsort(scores[k])
            srt = scores[k][order]
            first[0] = True
            np.not_equal(srt[1:], srt[:-1], out=first[1:])
            self._values.append(srt[first])
            del srt
            self._ranks[k, order] = np.cumsum(first, dtype=self._ranks.dtype)
            self._order[k] = order
            self._pos.append(np.append(np.flatnonzero(first), m).astype(itype))
            del order
        # integer fixed point per row: |total| < 2**52 stays exact in float64
        self._scale = np.empty(self.n_rows)
        self._icost = np.empty_like(rows)
        for r in range(self.n_rows):
            top = float(np.max(np.abs(rows[r])))
            self._scale[r] = 2.0 ** 51 / (m * top) if top > 0 else 1.0
            self._icost[r] = np.rint(rows[r] * self._scale[r])
        with np.errstate(invalid="ignore"):
            self._ibound = bounds * self._scale * m
        self._corr_flat = self.correct.reshape(-1)
        self._exit_dtype = np.int8 if n <= 127 else np.int16
        self._exit = None  # exits of the current state
        self._exit_owner = None
        self._current = None
        self._serial = 0
        self.evaluations = 0
        self.moves = 0
        self.pair_sweeps = 0
        self.trades_tried = 0
        # passing an exit never makes row 0 cheaper: single-move costs grow with k
        self._row0_grows = bool(np.all(np.diff(self._icost[0]) >= 0))

    # ------------------------------------------------------------- candidates
    @staticmethod
    def candidates(u, lower=None, upper=None) -> np.ndarray:
        """Candidate thresholds for sorted distinct scores ``u`` (see module docstring)."""
        u = np.asarray(u, dtype=np.float64)
        c = np.empty(u.size + 1)
        a, b = u[:-1], u[1:]
        mid = 0.5 * a + 0.5 * b
        # adjacent floats: the midpoint may round onto b; a itself separates them
        bad = ~((mid >= a) & (mid < b))
        mid[bad] = a[bad]
        c[1:-1] = mid
        c[0] = HardProblem._below(u, lower)
        top = float(u[-1])
        if upper is not None and upper > top:
            top = float(upper)
        c[-1] = top
        return c

    @staticmethod
    def _below(u, lower):
        span = float(u[-1] - u[0])
        below = u[0] - max(span, abs(float(u[0])), 1.0) * 1e-9
        if lower is not None and lower < below:
            below = float(lower)
        if not below < u[0]:
            below = np.nextafter(u[0], -np.inf)
        return float(below)

    def candidate(self, n: int, k: int) -> float:
        """Threshold value of candidate ``k`` at exit ``n`` (as :meth:`candidates`)."""
        u = self._values[n]
        k = int(k)
        if k <= 0:
            return self._below(u, self.lower)
        if k >= u.size:
            top = float(u[-1])
            return float(self.upper) if self.upper is not None and self.upper > top else top
        a, b = float(u[k - 1]), float(u[k])
        mid = 0.5 * a + 0.5 * b
        return mid if a <= mid < b else a

    def index_of(self, thresholds) -> np.ndarray:
        """Candidate indices with the same hard behaviour as ``thresholds``."""
        t = np.asarray(thresholds, dtype=np.float64)
        return np.array(
            [np.searchsorted(self._values[n], t[n], side="right") for n in range(self.n_exits - 1)],
            dtype=np.intp,
        )

    def thresholds_of(self, index) -> np.ndarray:
        """Threshold values (midpoints) for candidate indices."""
        return np.array([self.candidate(n, k) for n, k in enumerate(index)], dtype=np.float64)

    def n_candidates(self, n: int) -> int:
        return self._values[n].size + 1

    # ------------------------------------------------------------- evaluation
    def _make(self, index, hits: int, counts) -> HardState:
        counts = np.asarray(counts, dtype=np.int64)
        fraction = counts / self.n_samples
        # one dot product per row: the very expression replay() computes
        means = np.array([float(fraction @ row) for row in self.rows])
        lat = float(means[0])
        key = (int(hits), -lat) if self.objective == "accuracy" else (-lat, int(hits))
        self._serial += 1
        return HardState(np.asarray(index, dtype=np.intp), int(hits), counts, means, key,
                         {"serial": self._serial})

    def exits(self, index) -> np.ndarray:
        """0-based exit of every sample (as :func:`replay.exit_indices`)."""
        ne = self.n_exits - 1
        out = np.full(self.n_samples, ne, dtype=self._exit_dtype)
        for n in range(ne - 1, -1, -1):
            out[self._ranks[n] > index[n]] = n
        return out

    def _summarise(self, ex) -> tuple[int, np.ndarray]:
        counts = np.bincount(ex, minlength=self.n_exits)
        flat = ex.astype(np.int64)
        flat *= self.n_samples
        flat += np.arange(self.n_samples)
        hits = int(np.count_nonzero(self._corr_flat[flat]))
        return hits, counts

    def state(self, index) -> HardState:
        """Exact outcome of candidate indices (as :func:`replay.replay`); becomes current."""
        index = np.array(index, dtype=np.intp)
        if index.shape != (self.n_exits - 1,):
            raise ValueError(f"index must have shape ({self.n_exits - 1},), got {index.shape}")
        self.evaluations += 1
        ex = self.exits(index)
        hits, counts = self._summarise(ex)
        st = self._make(index, hits, counts)
        self._exit, self._exit_owner = ex, st._cache["serial"]
        self._current = st
        return st

    def evaluate(self, index) -> HardState:
        """Exact outcome of candidate indices, as :meth:`state`, updated from the
        current state when there is one (a move) instead of from scratch."""
        cur = self._current
        if cur is not None and self._exit_owner == cur._cache["serial"]:
            return self.move(cur, index)
        return self.state(index)

    def feasible(self, st: HardState) -> bool:
        """Every row within its bound (and ``hits >= min_hits``), exactly."""
        if self.min_hits is not None and st.hits < self.min_hits:
            return False
        return bool(np.all(st.means <= self.bounds))

    def _load(self, st: HardState) -> np.ndarray:
        """The exits of ``st``, recomputed only when another state is current."""
        if self._exit_owner != st._cache["serial"]:
            self.evaluations += 1
            self._exit = self.exits(st.index)
            self._exit_owner = st._cache["serial"]
            self._current = st
        return self._exit

    def _band(self, n: int, lo: int, hi: int) -> np.ndarray:
        """The samples whose rank at exit ``n`` lies in ``(lo, hi]``."""
        pos = self._pos[n]
        return self._order[n, pos[lo]:pos[hi]].astype(np.intp)

    def _next_after(self, n: int, sub, index) -> np.ndarray:
        """Exit taken by the samples ``sub`` once they pass exit ``n``."""
        ne = self.n_exits - 1
        out = np.full(sub.size, ne, dtype=self._exit_dtype)
        pending = sub
        pos = np.arange(sub.size)
        for j in range(n + 1, ne):
            if pending.size == 0:
                break
            lv = self._ranks[j, pending] > index[j]
            out[pos[lv]] = j
            keep = ~lv
            pending, pos = pending[keep], pos[keep]
        return out

    def move(self, st: HardState, new_index) -> HardState:
        """Outcome of ``new_index``, updated from ``st`` over the samples that change.

        Only samples that reach the first changed exit and whose decision flips
        at some changed exit can change; their exits are recomputed from there.
        The result becomes the current state.
        """
        new, delta = self._try(st, new_index)
        if delta is not None:
            self._commit(new, delta)
        return new

    def _try(self, st: HardState, new_index):
        """Outcome of ``new_index`` from ``st`` and the exits that change; ``st`` stays current."""
        new_index = np.asarray(new_index, dtype=np.intp)
        changed = np.flatnonzero(new_index != st.index)
        if changed.size == 0:
            return st, None
        ex = self._load(st)
        self.moves += 1
        p = int(changed[0])
        parts = []
        for n in changed:
            lo, hi = sorted((int(st.index[n]), int(new_index[n])))
            parts.append(self._band(n, lo, hi))
        if len(parts) == 1:
            sub = parts[0]
        elif sum(b.size for b in parts) * 16 < self.n_samples:
            sub = np.unique(np.concatenate(parts))
        else:  # large bands: marking is O(M), sorting them would cost more
            mark = np.zeros(self.n_samples, dtype=bool)
            for b in parts:
                mark[b] = True
            sub = np.flatnonzero(mark)
        sub = sub[ex[sub] >= p]
        old_e = ex[sub]
        new_e = self._next_after(p - 1, sub, new_index)
        counts = st.counts + np.bincount(new_e, minlength=self.n_exits) \
            - np.bincount(old_e, minlength=self.n_exits)
        cf = self._corr_flat
        hits = st.hits + int(np.count_nonzero(cf[new_e.astype(np.int64) * self.n_samples + sub])) \
            - int(np.count_nonzero(cf[old_e.astype(np.int64) * self.n_samples + sub]))
        return self._make(new_index, hits, counts), (sub, new_e)

    def _commit(self, new: HardState, delta) -> None:
        sub, new_e = delta
        self._exit[sub] = new_e
        self._exit_owner = new._cache["serial"]
        self._current = new

    # ------------------------------------------------------------------ repair
    def repair(self, thresholds) -> tuple[HardState, float]:
        """Shift every threshold down by the same amount until the state is feasible.

        The amount is the smallest that works (bisection on the hard outcome,
        which only changes where a shifted threshold crosses a score; exact when
        no row decreases with the exit index).  Returns the state and the shift:
        0 when ``thresholds`` are feasible already, NaN when no shift works, in
        which case every sample is sent to the exit cheapest in row 0.
        """
        t = np.asarray(thresholds, dtype=np.float64)
        st = self.evaluate(self.index_of(t))
        if self.feasible(st):
            return st, 0.0
        bottom = min(float(v[0]) for v in self._values)
        hi = max(float(np.max(t)) - bottom, 0.0)
        hi = hi + max(hi, 1.0) * 1e-6 + 1e-300
        while not (np.max(t - hi) < bottom):
            hi *= 2.0
        st_hi = self.move(st, self.index_of(t - hi))
        if not self.feasible(st_hi):
            return self._cheapest_state(), float("nan")
        lo, st_lo = 0.0, st
        for _ in range(2000):
            if int(np.sum(st_lo.index - st_hi.index)) <= 1:
                break  # at most one score crossing in between: st_hi is the first feasible
            mid = 0.5 * (lo + hi)
            if not lo < mid < hi:
                break
            idx = self.index_of(t - mid)
            if np.array_equal(idx, st_hi.index):
                hi = mid
            elif np.array_equal(idx, st_lo.index):
                lo = mid
            else:
                s_mid = self.move(st_hi, idx)
                if self.feasible(s_mid):
                    hi, st_hi = mid, s_mid
                else:
                    lo, st_lo = mid, s_mid
        return st_hi, hi

    def _cheapest_state(self) -> HardState:
        target = int(np.argmin(self.costs))
        idx = np.array([self.n_candidates(n) - 1 for n in range(self.n_exits - 1)], dtype=np.intp)
        if target < self.n_exits - 1:
            idx[target] = 0
        return self.state(idx)

    # ------------------------------------------------------------- quantities
    def _n_q(self) -> int:
        return 1 + self.n_rows

    def _values_at(self, exits, sub) -> np.ndarray:
        """(1 + R, |sub|): hits and fixed-point row costs of samples ``sub`` at ``exits``."""
        out = np.empty((self._n_q(), sub.size))
        e64 = exits.astype(np.int64)
        out[0] = self._corr_flat[e64 * self.n_samples + sub]
        for r in range(self.n_rows):
            np.take(self._icost[r], e64, out=out[1 + r])
        return out

    def _values_here(self, n: int, sub) -> np.ndarray:
        out = np.empty((self._n_q(), sub.size))
        out[0] = self.correct[n, sub]
        out[1:] = self._icost[:, n][:, None]
        return out

    def _totals(self, st: HardState) -> np.ndarray:
        """Hits and fixed-point row totals of a state (exact integers in float64)."""
        out = np.empty(self._n_q())
        out[0] = st.hits
        out[1:] = self._icost @ st.counts.astype(np.float64)
        return out

    # ---------------------------------------------------------------- choice
    def _choose(self, st, tables, make_index, order=None):
        """Pick the best feasible cell of ``tables`` (1 + R, cells); verify it exactly.

        Best = the objective, then its tie-break, then the first cell in
        ``order`` (a function of flat cell indices returning their rank;
        default: the flat index).  Only cells strictly better than ``st`` are
        evaluated; ``make_index`` maps a flat index to candidate indices.
        """
        hits = tables[0]
        ok = np.ones(hits.shape, dtype=bool)
        for r in range(self.n_rows):
            b = self._ibound[r]
            if math.isfinite(b):
                ok &= tables[1 + r] <= b * (1.0 + 1e-12)
        if self.min_hits is not None:
            ok &= hits >= self.min_hits
        if self.objective == "accuracy":
            prim, sec = hits, -tables[1]
        else:
            prim, sec = -tables[1], hits
        cur = self._totals(st)
        cur_p, cur_s = (cur[0], -cur[1]) if self.objective == "accuracy" else (-cur[1], cur[0])
        pm = np.where(ok, prim, -np.inf)
        for _ in range(4):
            best = pm.max()
            if not best >= cur_p:
                return st
            cand = np.flatnonzero(pm == best)
            sc = sec[cand]
            top = sc.max()
            if best == cur_p and not top > cur_s:
                return st
            cand = cand[sc == top]
            f = int(cand[0] if order is None or cand.size == 1 else cand[np.argmin(order(cand))])
            new, delta = self._try(st, make_index(f))
            if delta is not None and self.feasible(new) and new.key() > st.key():
                self._commit(new, delta)
                return new
            pm[f] = -np.inf  # fixed-point rounding made it look better than it is
        return st

    # ---------------------------------------------------------------- sweeps
    def _reach(self, st, n):
        """Samples reaching exit ``n`` and the exit each takes when it passes ``n``."""
        ex = self._load(st)
        sub = np.flatnonzero(ex >= n)
        e1 = ex[sub]
        at = np.flatnonzero(e1 == n)
        if at.size:
            e1[at] = self._next_after(n, sub[at], st.index)
        return sub, e1

    def sweep_one(self, st: HardState, n: int) -> HardState:
        """Best state changing only threshold ``n``, over every candidate (exact)."""
        sub, e1 = self._reach(st, n)
        if sub.size == 0:
            return st
        size = self.n_candidates(n)
        rk = self._ranks[n, sub]
        # gain of leaving at n rather than passing, summed over the samples ranked above k
        w = self._values_here(n, sub)
        w -= self._values_at(e1, sub)
        gains = np.empty((self._n_q(), size))
        for q in range(self._n_q()):
            h = np.bincount(rk, weights=w[q], minlength=size)
            np.cumsum(h, out=h)
            np.subtract(h[-1], h, out=gains[q])
        k_now = int(st.index[n])
        tables = gains + (self._totals(st) - gains[:, k_now])[:, None]

        def make_index(k):
            out = st.index.copy()
            out[n] = k
            return out

        return self._choose(st, tables, make_index)

    @staticmethod
    def _lut(grid, size):
        """``lut[r]`` = number of grid entries below rank ``r``, for r = 0..size."""
        ind = np.zeros(size + 1, dtype=np.int32)
        ind[grid[grid < size] + 1] = 1
        return np.cumsum(ind, dtype=np.int32)

    def _grid(self, n: int, cur: int, ranks, local: int, coarse: int, exhaustive: int):
        """Candidate indices for exit ``n`` in a pair sweep (sorted, unique).

        All of them when there are at most ``exhaustive``; otherwise a window of
        ``local`` on each side of ``cur``, both ends and ``coarse`` quantiles of
        ``ranks`` (the ranks at ``n`` of the samples that reach it; of a strided
        subset of 8,192 of them when there are more).  A quantile is not paired
        with the candidate just below it: after a far move the window level searches
        around the new thresholds anyway, and with (32, 96) the tables have about
        0.4 of the cells they would have with both.  ``coarse = 0``: the window alone.
        """
        size = self.n_candidates(n)
        if size <= exhaustive:
            return np.arange(size, dtype=np.intp)
        lo = max(0, cur - local)
        hi = min(size, cur + local + 1)
        if coarse <= 0:
            return np.arange(lo, hi, dtype=np.intp)
        parts = [np.arange(lo, hi, dtype=np.intp), np.array([0, size - 1], dtype=np.intp)]
        if ranks.size > 0 and coarse > 0:
            levels = np.ceil(np.linspace(0.0, ranks.size, coarse))
            levels = levels[levels > 0]
            # quantiles only place grid points: those of an evenly strided subset of
            # at most 8,192 samples serve as well, at a fraction of the cost
            stride = -(-ranks.size // 8192)
            pick = ranks[::stride] if stride > 1 else ranks
            pos = np.unique(np.ceil(levels * (pick.size / ranks.size)).astype(np.intp) - 1)
            pos = pos[(pos >= 0) & (pos < pick.size)]
            q = np.partition(pick, pos)[pos].astype(np.intp)
            np.minimum(q, size - 1, out=q)
            parts.append(q)
        return np.unique(np.concatenate(parts))

    def _rho(self, grid, n: int, ranks) -> np.ndarray:
        """For every rank, the number of grid candidates below it (the sample leaves at
        grid candidate ``g`` exactly when its rho is above ``g``)."""
        size = self.n_candidates(n)
        if ranks.size * 8 < size:
            return np.searchsorted(grid, ranks, side="left")
        return self._lut(grid, size)[ranks]

    def _pair_prep(self, st, i, local, coarse, exhaustive):
        """What the pair sweeps ``(i, j)`` for every ``j > i`` share, for state ``st``."""
        sub, e1 = self._reach(st, i)
        # deepest first: the samples that pass from i to j are then a prefix for every j
        perm = np.argsort(-e1.astype(np.int16), kind="stable")
        sub, e1 = sub[perm], e1[perm]
        rk = self._ranks[i, sub]
        gi = self._grid(i, int(st.index[i]), rk, local, coarse, exhaustive)
        rho = self._rho(gi, i, rk)
        v_i = self._values_here(i, sub)
        v_e1 = self._values_at(e1, sub)
        ki = gi.size
        # everyone reaching i leaves at i, plus what passing adds for rho_i <= a
        base = self._totals(st) - self._values_at(self._exit[sub], sub).sum(axis=1) + v_i.sum(axis=1)
        d1 = v_e1 - v_i
        c1 = np.empty((self._n_q(), ki))
        for q in range(self._n_q()):
            c1[q] = np.cumsum(np.bincount(rho, weights=d1[q], minlength=ki + 1))[:ki]
        # number of samples passing from i to at least exit j, for j = 0..N-1
        depth = np.searchsorted(-e1.astype(np.int16), -np.arange(self.n_exits), side="right")
        return {"serial": st._cache["serial"], "sub": sub, "e1": e1, "rho": rho, "gi": gi,
                "v_e1": v_e1, "c1": c1 + base[:, None], "depth": depth}

    def pair_grids(self, st: HardState, i: int, j: int, *, local: int = 32, coarse: int = 96,
                   exhaustive: int = 256):
        """The candidate grids ``(grid_i, grid_j)`` that :meth:`sweep_pair` searches."""
        if coarse <= 0 and self.n_candidates(i) > exhaustive and self.n_candidates(j) > exhaustive:
            return (self._grid(i, int(st.index[i]), None, local, 0, exhaustive),
                    self._grid(j, int(st.index[j]), None, local, 0, exhaustive))
        prep = self._pair_prep(st, i, local, coarse, exhaustive)
        cnt = int(prep["depth"][j])
        rk_j = self._ranks[j, prep["sub"][:cnt]]
        return prep["gi"], self._grid(j, int(st.index[j]), rk_j, local, coarse, exhaustive)

    def sweep_pair(self, st: HardState, i: int, j: int, *, local: int = 32, coarse: int = 96,
                   exhaustive: int = 256, prep=None) -> HardState:
        """Best state changing thresholds ``i < j`` together, over a 2-D candidate grid.

        Every combination of the two grids (:meth:`pair_grids`) is evaluated
        exactly with a 2-D histogram and cumulative sums, O(S + |grid_i| |grid_j|)
        for the S samples reaching ``i``.  An exit with at most ``exhaustive``
        candidates uses all of them, so on small problems the sweep is exhaustive
        over the pair.
        """
        if not i < j:
            raise ValueError("sweep_pair needs i < j")
        if coarse <= 0 and self.n_candidates(i) > exhaustive and self.n_candidates(j) > exhaustive:
            return self._sweep_window(st, i, j, local)
        if prep is None or prep["serial"] != st._cache["serial"]:
            prep = self._pair_prep(st, i, local, coarse, exhaustive)
        self._load(st)
        cnt = int(prep["depth"][j])
        if cnt == 0:
            return st  # nobody passing i reaches j: a single sweep of i covers the pair
        gi, rho_all, c1 = prep["gi"], prep["rho"], prep["c1"]
        ki = gi.size
        sub = prep["sub"][:cnt]
        e1 = prep["e1"][:cnt]
        rho_i = rho_all[:cnt]
        at_j = int(prep["depth"][j + 1]) if j + 1 < self.n_exits else cnt
        # samples passing i whose exit was j: z = where they go when passing j too
        z = e1.copy()
        if at_j < cnt:
            z[at_j:] = self._next_after(j, sub[at_j:], st.index)
        v_z = prep["v_e1"][:, :cnt].copy()
        if at_j < cnt:
            v_z[:, at_j:] = self._values_at(z[at_j:], sub[at_j:])
            corr = v_z[:, at_j:] - prep["v_e1"][:, at_j:cnt]
            c1 = c1.copy()
            for q in range(self._n_q()):
                c1[q] += np.cumsum(np.bincount(rho_i[at_j:], weights=corr[q], minlength=ki + 1))[:ki]
        rk_j = self._ranks[j, sub]
        gj = self._grid(j, int(st.index[j]), rk_j, local, coarse, exhaustive)
        kj = gj.size
        rho_j = self._rho(gj, j, rk_j)
        d2 = self._values_here(j, sub)
        d2 -= v_z
        flat = rho_i.astype(np.int64) * (kj + 1)
        flat += rho_j
        tables = np.empty((self._n_q(), ki, kj))
        for q in range(self._n_q()):
            h = np.bincount(flat, weights=d2[q], minlength=(ki + 1) * (kj + 1))
            h = h.reshape(ki + 1, kj + 1)[:ki]
            np.cumsum(h, axis=0, out=h)  # rho_i <= a
            cs = np.cumsum(h, axis=1)  # rho_j <= b
            # samples with rho_j > b leave at j
            np.subtract(cs[:, -1:], cs[:, :kj], out=tables[q])
            tables[q] += c1[q][:, None]
        return self._choose(st, tables.reshape(self._n_q(), -1), _pair_index(st.index, i, j, gi, gj))

    def _sweep_window(self, st: HardState, i: int, j: int, local: int) -> HardState:
        """:meth:`sweep_pair` over windows of ``local`` candidates on each side.

        Only the samples ranked inside a window can change across the grid: at
        ``i``, those reaching ``i``; at ``j``, those that pass from ``i`` to ``j``
        (and do not always leave at ``i``).  They are read from the orders by
        rank, so the sweep costs O(window samples), whatever M.
        """
        ex = self._load(st)
        idx = st.index
        gi = self._grid(i, int(idx[i]), None, local, 0, 0)
        gj = self._grid(j, int(idx[j]), None, local, 0, 0)
        ki, kj = gi.size, gj.size
        band_i = self._band(i, int(gi[0]), int(gi[-1]))
        band_j = self._band(j, int(gj[0]), int(gj[-1]))
        # those ranked inside the window at i are in band_i already; those above it
        # always leave at i
        band_j = band_j[self._ranks[i, band_j] <= gi[0]]
        sub = np.concatenate([band_i, band_j])
        sub = sub[ex[sub] >= i]
        if sub.size == 0:
            return st
        e1 = ex[sub]
        at = np.flatnonzero(e1 == i)
        if at.size:
            e1[at] = self._next_after(i, sub[at], idx)
        through = e1 >= j
        z = e1.copy()
        at = np.flatnonzero(e1 == j)
        if at.size:
            z[at] = self._next_after(j, sub[at], idx)
        v_i = self._values_here(i, sub)
        v_e1 = self._values_at(e1, sub)
        v_z = self._values_at(z, sub)
        # everyone in sub leaves at i, plus what passing adds for rho_i <= a
        base = self._totals(st) - self._values_at(ex[sub], sub).sum(axis=1) + v_i.sum(axis=1)
        rho_i = np.searchsorted(gi, self._ranks[i, sub], side="left")
        d1 = np.where(through, v_z, v_e1) - v_i
        t = np.flatnonzero(through)
        rho_j = np.searchsorted(gj, self._ranks[j, sub[t]], side="left")
        d2 = self._values_here(j, sub[t]) - v_z[:, t]
        flat = rho_i[t].astype(np.int64) * (kj + 1) + rho_j
        tables = np.empty((self._n_q(), ki, kj))
        for q in range(self._n_q()):
            c1 = np.cumsum(np.bincount(rho_i, weights=d1[q], minlength=ki + 1))[:ki]
            h = np.bincount(flat, weights=d2[q], minlength=(ki + 1) * (kj + 1))
            h = h.reshape(ki + 1, kj + 1)[:ki]
            np.cumsum(h, axis=0, out=h)
            cs = np.cumsum(h, axis=1)
            np.subtract(cs[:, -1:], cs[:, :kj], out=tables[q])
            tables[q] += (c1 + base[q])[:, None]
        return self._choose(st, tables.reshape(self._n_q(), -1), _pair_index(idx, i, j, gi, gj))

    # ------------------------------------------------------------------ trades
    def move_tables(self, st: HardState) -> list:
        """Every single-threshold move from ``st``, priced: for each exit ``n``, the
        arrays ``(dh, dc)`` over every candidate ``k`` of ``n``, the change of hits and
        of the fixed-point total of row 0 when threshold ``n`` alone moves to ``k``
        (exact for that move; 0 at the current candidate), or None when no sample
        reaches ``n``.

        A sample reaching ``n`` leaves there when its rank is above ``k`` and
        otherwise takes the exit it takes now (when that is past ``n``) or its
        second exit (the first one past ``n`` where it would leave, when it leaves
        at ``n`` now): the tables are cumulative sums of per-exit histograms by
        rank of what leaving rather than passing is worth (:meth:`_move_hist`).
        """
        return self._tables_of(self._move_hist(st))

    def _second_exits(self, sub, ex, index) -> np.ndarray:
        """For samples ``sub`` leaving at ``ex``: the first exit past ``ex`` where each
        would leave (``N - 1``: none before the last)."""
        ne = self.n_exits - 1
        e2 = np.full(sub.size, ne, dtype=np.intp)
        for j in range(ne - 1, 0, -1):
            lv = self._ranks[j, sub] > index[j]
            lv &= ex < j
            e2[lv] = j
        return e2

    def _move_hist(self, st: HardState) -> dict:
        """Per exit ``n``, histograms by rank at ``n`` of the hits and row-0 fixed-point
        cost of leaving at ``n`` rather than passing it, over the samples that reach
        ``n``; with every sample's exit and second exit (one pass per exit).  The
        histograms of all exits lie end to end in one array each (exit ``n`` at
        ``off[n]:off[n + 1]``)."""
        ex = self._load(st)
        ne, m = self.n_exits - 1, self.n_samples
        idx = st.index
        exi = ex.astype(np.intp)
        e2 = self._second_exits(np.arange(m), exi, idx)
        order = np.argsort(ex, kind="stable")  # a radix sort of small integers
        eo = exi[order]
        # the samples reaching n are order[start[n]:], those leaving at n the first
        # start[n + 1] - start[n] of them
        start = np.searchsorted(eo, np.arange(ne + 1), side="left")
        cf, ic = self._corr_flat, self._icost[0]
        e2o = e2[order]
        now_h = cf[eo * m + order].astype(np.float64)
        e2_h = cf[e2o * m + order].astype(np.float64)
        now_c, e2_c = ic[eo], ic[e2o]
        off = np.zeros(ne + 1, dtype=np.intp)
        off[1:] = np.cumsum([self.n_candidates(n) for n in range(ne)])
        hh, hc = np.zeros(off[-1]), np.zeros(off[-1])
        for n in range(ne):
            s, t = int(start[n]), int(start[n + 1])
            sub = order[s:]
            size = self.n_candidates(n)
            rk = self._ranks[n, sub]
            wh = self.correct[n, sub].astype(np.float64)
            wh[: t - s] -= e2_h[s:t]
            wh[t - s:] -= now_h[t:]
            wc = np.empty(sub.size)
            np.subtract(ic[n], e2_c[s:t], out=wc[: t - s])
            np.subtract(ic[n], now_c[t:], out=wc[t - s:])
            hh[off[n]:off[n + 1]] = np.bincount(rk, weights=wh, minlength=size)
            hc[off[n]:off[n + 1]] = np.bincount(rk, weights=wc, minlength=size)
        return {"index": idx.copy(), "ex": exi, "e2": e2, "hh": hh, "hc": hc, "off": off,
                "reach": m - start[:ne]}

    def _hist_update(self, hist: dict, st: HardState) -> dict:
        """:meth:`_move_hist` of ``st`` from that of an earlier state, updated over the
        samples whose exit or second exit changed; those are among the samples ranked
        between the old and the new candidate of a threshold that moved."""
        ex = self._load(st)
        old = hist["index"]
        moved = np.flatnonzero(old != st.index)
        if moved.size == 0:
            return hist
        parts = [self._band(n, *sorted((int(old[n]), int(st.index[n])))) for n in moved]
        sub = parts[0] if len(parts) == 1 else np.unique(np.concatenate(parts))
        if sub.size * 4 > self.n_samples:
            return self._move_hist(st)
        ne, m = self.n_exits - 1, self.n_samples
        cf, ic, off = self._corr_flat, self._icost[0], hist["off"]
        new_ex = ex[sub].astype(np.intp)
        new_e2 = self._second_exits(sub, new_ex, st.index)
        old_ex, old_e2 = hist["ex"][sub], hist["e2"][sub]
        diff = np.flatnonzero((old_ex != new_ex) | (old_e2 != new_e2))
        if diff.size:
            sub, new_ex, new_e2 = sub[diff], new_ex[diff], new_e2[diff]
            old_ex, old_e2 = old_ex[diff], old_e2[diff]
            # take out what the samples added before, put in what they add now: every
            # (exit n, sample) with n at most the sample's exit, for both at once
            both = np.concatenate([sub, sub])
            e_all = np.concatenate([old_ex, new_ex])
            p2_all = np.concatenate([old_e2, new_e2])
            n_i, s_i = np.nonzero(np.arange(ne)[:, None] <= e_all[None, :])
            smp, e = both[s_i], e_all[s_i]
            p = np.where(e > n_i, e, p2_all[s_i])
            sign = np.where(s_i < sub.size, -1.0, 1.0)
            flat = off[n_i] + self._ranks[n_i, smp]
            wh = self.correct[n_i, smp].astype(np.float64)
            wh -= cf[p * m + smp]
            wh *= sign
            wc = ic[n_i] - ic[p]
            wc *= sign
            size = hist["hh"].size
            if flat.size * 8 < size:  # few: no pass over every candidate
                np.add.at(hist["hh"], flat, wh)
                np.add.at(hist["hc"], flat, wc)
            else:
                hist["hh"] += np.bincount(flat, weights=wh, minlength=size)
                hist["hc"] += np.bincount(flat, weights=wc, minlength=size)
            reach = hist["reach"]
            for e_set, w in ((old_ex, -1), (new_ex, 1)):
                c = np.cumsum(np.bincount(e_set, minlength=ne + 1)[::-1])[::-1]
                reach += w * c[:ne]
            hist["ex"][sub] = new_ex
            hist["e2"][sub] = new_e2
        hist["index"] = st.index.copy()
        return hist

    def _tables_of(self, hist: dict) -> list:
        """The tables of :meth:`move_tables` from the histograms of :meth:`_move_hist`."""
        out = []
        off = hist["off"]
        for n in range(self.n_exits - 1):
            hh, hc = hist["hh"][off[n]:off[n + 1]], hist["hc"][off[n]:off[n + 1]]
            if hist["reach"][n] == 0:
                out.append(None)
                continue
            k0 = int(hist["index"][n])
            gh = np.cumsum(hh)
            gc = np.cumsum(hc)
            # moving to k: the samples ranked in (k, k0] start leaving at n (k < k0)
            # or those in (k0, k] stop (k > k0)
            np.subtract(gh[k0], gh, out=gh)
            np.subtract(gc[k0], gc, out=gc)
            out.append((gh, gc))
        return out

    @staticmethod
    def _frontier(dh, dc, floor, ceiling, sorted_dc=False):
        """The moves of one exit that no other beats on both counts, among those with
        ``dh >= floor`` and ``dc <= ceiling``: ascending ``dc`` with strictly ascending
        ``dh`` (the cheapest move of each gain).  Returns ``(dc, dh, k)``.  ``sorted_dc``:
        ``dc`` is known not to decrease with ``k``."""
        if not sorted_dc and dc.size > 1 and not np.all(dc[1:] >= dc[:-1]):
            o = np.argsort(dc, kind="stable")
            dc, dh = dc[o], dh[o]
        else:
            o = None  # rows that grow with the exit index: sorted by k already
        hi = int(np.searchsorted(dc, ceiling, side="right"))
        ok = dh[:hi] >= floor
        lo = int(np.argmax(ok)) if hi else 0
        if hi == 0 or not ok[lo]:
            e = np.zeros(0)
            return e, e, np.zeros(0, dtype=np.intp)
        # earlier moves all gain less than floor: the window's running maximum decides
        sdc, sdh = dc[lo:hi], dh[lo:hi]
        keep = np.empty(sdh.size, dtype=bool)
        keep[0] = True
        np.greater(sdh[1:], np.maximum.accumulate(sdh)[:-1], out=keep[1:])
        k = np.flatnonzero(keep)
        return sdc[k], sdh[k], (k + lo if o is None else o[k + lo])

    def _trades(self, st: HardState, tables=None) -> list:
        """Single and pair moves predicted to improve ``st``, best predicted first, as
        ``(gain, -cost, ((exit, k), ...))``.

        A pair's prediction adds the two exits' single-move tables (it ignores that
        moving ``i`` changes who reaches ``j``) and keeps the best combination whose
        predicted row-0 total stays within its bound: for every frontier move of
        ``i``, the best frontier move of ``j`` that fits in what is left.
        """
        ne = self.n_exits - 1
        tabs = self.move_tables(st) if tables is None else tables
        b = self._ibound[0]
        slack = (b * (1.0 + 1e-12) if math.isfinite(b) else np.inf) - self._totals(st)[1]
        # a move of n can be part of an improving pair only if some other exit's best
        # gain makes up for its loss and some other exit's cheapest move pays for it
        # (the current candidate of every exit gains 0 at cost 0)
        top = np.array([0.0 if tb is None else float(tb[0].max()) for tb in tabs])
        low = np.array([0.0 if tb is None else float(tb[1].min()) for tb in tabs])
        fr = []
        for n, tb in enumerate(tabs):
            if tb is None:
                fr.append((np.zeros(1), np.zeros(1), np.array([int(st.index[n])])))
                continue
            others = np.arange(ne) != n
            floor = -top[others].max() if ne > 1 else 0.0
            ceiling = slack - (low[others].min() if ne > 1 else 0.0)
            fr.append(self._frontier(tb[0], tb[1], floor, ceiling, self._row0_grows))
        out = []
        for n, (dc, dh, k) in enumerate(fr):
            p = int(np.searchsorted(dc, slack, side="right")) - 1
            if p >= 0 and (dh[p] > 0 or (dh[p] == 0 and dc[p] < 0)):
                out.append((float(dh[p]), -float(dc[p]), ((n, int(k[p])),)))
        for j in range(1, ne):
            dcj, dhj, kj = fr[j]
            sizes = [fr[i][0].size for i in range(j)]
            if dcj.size == 0 or sum(sizes) == 0:
                continue
            q_dc = np.concatenate([fr[i][0] for i in range(j)])
            q_dh = np.concatenate([fr[i][1] for i in range(j)])
            q_k = np.concatenate([fr[i][2] for i in range(j)])
            pos = np.searchsorted(dcj, slack - q_dc, side="right") - 1
            ok = pos >= 0
            pc = np.maximum(pos, 0)
            gain = np.where(ok, q_dh + dhj[pc], -np.inf)
            cost = q_dc + dcj[pc]
            # per exit i < j: the best gain, then the lowest cost, then the first
            segs = [i for i in range(j) if sizes[i]]
            bounds = np.concatenate([[0], np.cumsum([sizes[i] for i in segs])[:-1]])
            g_best = np.maximum.reduceat(gain, bounds)
            lens = [sizes[i] for i in segs]
            at_best = gain == np.repeat(g_best, lens)
            c_best = np.minimum.reduceat(np.where(at_best, cost, np.inf), bounds)
            hit = np.flatnonzero(at_best & (cost == np.repeat(c_best, lens)))
            firsts = hit[np.searchsorted(hit, bounds)]
            for i, f in zip(segs, firsts):
                g, c = float(gain[f]), float(cost[f])
                if g > 0 or (g == 0 and c < 0):
                    out.append((g, -c, ((i, int(q_k[f])), (j, int(kj[pc[f]])))))
        out.sort(key=lambda x: (x[0], x[1]), reverse=True)
        return out

    def trade(self, st: HardState, *, max_rounds: int = 1000, patience: int = 4,
              known: dict | None = None) -> tuple[HardState, int]:
        """Improve the objective with priced moves of one or two thresholds.

        Each round prices every single-threshold move exactly
        (:meth:`move_tables`: one pass per exit, over every candidate) and
        predicts the best pair moves by adding two exits' tables under the
        slack of row 0 (:meth:`_trades`): a far move of one threshold paid for by
        another, the trade a binding budget needs and a single sweep cannot make.
        The predicted moves are tried best first, each checked exactly; every
        one that improves the state and touches no threshold moved earlier in the
        round is kept, and once one has been kept the round ends after
        ``patience`` failed tries in a row (later predictions, made before the
        state changed, rarely hold).  The search stops after a round in which no
        predicted move improves the state: a state where every move of one
        threshold and every predicted pair move has been checked.

        ``known`` (a dict, shared between calls on one problem): the search is a
        function of the state a round starts from, so it records every such state
        with the state the search ended in, and a later search that reaches one of
        them stops there with that end (several starts often meet on the way).

        ``objective="accuracy"`` without ``min_hits`` only.  Every accepted state
        is feasible.  Returns the final state and the number of rounds.
        """
        if self.objective != "accuracy" or self.min_hits is not None:
            raise ValueError("trade handles objective 'accuracy' without min_hits; use polish")
        if not self.feasible(st):
            raise ValueError("trade needs a feasible state; repair it first")
        rounds = 0
        hist = None
        path = []
        while rounds < max_rounds:
            sig = tuple(int(k) for k in st.index)
            if known is not None and sig in known:
                st = known[sig]  # the search went on from here before: same end
                break
            path.append(sig)
            rounds += 1
            hist = self._move_hist(st) if hist is None else self._hist_update(hist, st)
            moved = False
            used: set = set()
            misses = 0
            for _, _, mv in self._trades(st, self._tables_of(hist)):
                if any(n in used for n, _ in mv):
                    continue
                if moved and misses >= patience:
                    break
                idx = st.index.copy()
                for n, k in mv:
                    idx[n] = k
                self.trades_tried += 1
                new, delta = self._try(st, idx)
                if delta is not None and self.feasible(new) and new.key() > st.key():
                    self._commit(new, delta)
                    st, moved, misses = new, True, 0
                    used.update(n for n, _ in mv)
                else:
                    misses += 1
            if not moved:
                break
        if known is not None and rounds < max_rounds:
            known.update((sig, st) for sig in path)
        return st, rounds

    # ------------------------------------------------------------------ polish
    def polish(self, st: HardState, *, levels=((8, 24), (32, 96)), exhaustive: int = 256,
               max_rounds: int = 100, pairs=None) -> tuple[HardState, int]:
        """Improve the objective (then its tie-break) within every constraint.

        Exact one-threshold sweeps over every exit alternate with two-threshold
        sweeps over ``pairs`` (all pairs by default) until nothing improves.  The
        pair grids come in ``levels`` of ``(local, coarse)`` sizes: the search
        runs on the first (cheap) level until it is stuck, then tries the next;
        any improvement there sends it back to the first.  No ``levels``: single
        sweeps only.

        Pruning: a pair is not swept again while the state is unchanged since
        its last sweep, and neither is a single threshold.  Once a level has had
        one round over every pair, its later rounds skip the pairs that found
        nothing there since the last change of any threshold from ``i`` to ``j``
        (moves elsewhere rarely open a move for them).  On the first level a
        round that improves nothing with pairs skipped is followed by one that
        sweeps them all, so the search leaves the first level only when no pair
        of it improves the state; the finer levels, whose sweeps read every
        sample reaching ``i``, trust the skips.  A state that ends a polish
        stuck remembers it: polishing it again with more levels (same pairs)
        starts at the first new level.  Every accepted state is feasible.

        Returns the final state and the number of rounds run.
        """
        if not self.feasible(st):
            raise ValueError("polish needs a feasible state; repair it first")
        ne = self.n_exits - 1
        if pairs is None:
            pairs = [(i, j) for i in range(ne) for j in range(i + 1, ne)]
        levels = tuple(tuple(lv) for lv in levels)
        if not levels:
            return self._singles(st, {}, max_rounds), 1
        setting = (exhaustive, tuple(tuple(p) for p in pairs))
        by_i: dict = {}
        for i, j in pairs:
            by_i.setdefault(i, []).append(j)
        rounds = 0
        level = 0
        stuck = st._cache.get("stuck")
        skip_ones = False
        if stuck is not None and stuck[1] == setting and levels[: len(stuck[0])] == stuck[0]:
            if len(stuck[0]) >= len(levels):
                return st, 0
            level, skip_ones = len(stuck[0]), True
        checked: dict = {}
        checked_one: dict = {}
        tick = 0
        touched = np.zeros(ne, dtype=np.int64)  # tick of each threshold's last change
        failed: dict = {}  # (level, pair) -> tick of its last sweep there that found nothing
        failed_one: dict = {}  # exit -> tick of its last single sweep that found nothing
        full_round = [False] * len(levels)  # a round without skipping ran at the level
        prune = False
        while rounds < max_rounds:
            rounds += 1
            start = st.key()
            local, coarse = levels[level]
            prune_now = prune and full_round[level]
            if not skip_ones:
                box = [tick]
                st = self._singles(st, checked_one, max_rounds, failed_one, touched, box,
                                   prune=prune_now)
                tick = box[0]
            skip_ones = False
            skipped = 0
            for i, js in by_i.items():
                prep = None
                for j in js:
                    tag = (st._cache["serial"], level)
                    if checked.get((i, j)) == tag:
                        continue
                    if prune_now and failed.get((level, i, j), -1) >= touched[i:j + 1].max():
                        skipped += 1
                        continue
                    if coarse > 0 and (prep is None or prep["serial"] != st._cache["serial"]):
                        prep = self._pair_prep(st, i, local, coarse, exhaustive)
                    self.pair_sweeps += 1
                    new = self.sweep_pair(st, i, j, local=local, coarse=coarse,
                                          exhaustive=exhaustive, prep=prep)
                    if new is st:
                        checked[(i, j)] = tag
                        failed[(level, i, j)] = tick
                    else:
                        tick += 1
                        touched[new.index != st.index] = tick
                    st = new
            if not prune_now:
                full_round[level] = True
            if st.key() > start:
                level, prune = 0, True
            elif skipped and level == 0:
                prune = False  # the cheap level sweeps every pair before concluding
            elif level + 1 < len(levels):
                level += 1
                prune = True
            else:
                st._cache["stuck"] = (levels, setting)
                break
        return st, rounds

    def _singles(self, st, checked_one, max_rounds, failed=None, touched=None, tick=None,
                 prune=False):
        """Single sweeps until none improves.  ``failed``/``touched``/``tick`` record
        when each exit's sweep last found nothing and when each threshold last
        changed; with ``prune``, an exit whose sweep found nothing since its own
        threshold last changed is skipped."""
        for _ in range(max_rounds):
            before = st.key()
            for n in range(self.n_exits - 1):
                serial = st._cache["serial"]
                if checked_one.get(n) == serial:
                    continue
                if prune and failed.get(n, -1) >= touched[n]:
                    continue
                new = self.sweep_one(st, n)
                if new is st:
                    checked_one[n] = serial
                    if failed is not None:
                        failed[n] = tick[0]
                elif touched is not None:
                    tick[0] += 1
                    touched[new.index != st.index] = tick[0]
                st = new
            if not st.key() > before:
                break
        return st
