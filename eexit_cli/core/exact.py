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
early exit and a row of ones for the last exit (int32, ``4 N M`` bytes), the
samples in rank order and where each rank starts in it (int32, at most
``8 (N-1) M`` bytes), the sorted distinct scores of every exit (at most
``8 (N-1) M`` bytes) and the exit every sample takes in the current state
(``M`` or ``2M`` bytes); it reads ``correct`` (``N M`` bytes) and never copies
``scores``.  Everything else lives only during one sweep (or, for the window
tables of one state and threshold, until the next) and is O(M), except during
:meth:`HardProblem.trade`: two histograms over every candidate of every exit
(``16 (N-1) M`` bytes at most) for the whole search, and as much again for the
tables of one round.  Peak memory is therefore about ``20 (N-1) M`` bytes on top
of the caller's arrays; there are no caches that grow with the number of moves.

A move changes only the samples whose decision flips at a changed threshold:
their new exits are recomputed (from the first changed exit on) and the
per-exit counts and hits are updated from them, without a pass over every
exit (a move that changes more than a quarter of the samples, such as the
repair's common shift, is evaluated in full instead).  A sweep over one
threshold ``n`` looks only at the samples that reach ``n``; the pair sweeps
``(i, j)`` share the work that depends on ``i`` alone and look, for each
``j``, only at the samples that pass from ``i`` to ``j``.  Sums run in integer
fixed point (each row scaled so that every total is an integer below 2**52)
and the tables are int64: one histogram of every quantity, running sums laid
out so that numpy adds whole rows, and the bounds compared with the raw sums
before any cell is read (:meth:`HardProblem._choose`).  The window sweeps of
one state and threshold ``i`` are tabulated for every ``j`` at once, each table
as a function of the candidate at ``i`` plus one of the candidate at ``j`` plus
rectangles for the few samples ranked inside both windows.
"""

from __future__ import annotations

import functools
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
    """``make_index`` and ``order`` of a two-threshold sweep.

    The tables of :func:`_pair_tables` hold cell ``b * gi.size + a`` for candidate
    ``gi[a]`` at threshold ``i`` and ``gj[b]`` at ``j``; ties go to the smallest
    ``a * gj.size + b`` (``a`` first)."""
    ki, kj = gi.size, gj.size

    def make_index(f):
        b, a = divmod(f, ki)
        out = index.copy()
        out[i], out[j] = gi[a], gj[b]
        return out

    def order(cells):
        b, a = np.divmod(cells, ki)
        return a * kj + b

    return make_index, order


@functools.lru_cache(maxsize=512)
def _quantile_positions(size: int, coarse: int):
    """Stride and sorted positions of the ``coarse`` quantiles of ``size`` values
    (in the strided subset of at most 8,192 of them) that the pair grids use."""
    if coarse > 1:
        # np.linspace(0, size, coarse), as numpy computes it
        levels = np.arange(coarse, dtype=np.float64) * (size / (coarse - 1))
        levels[-1] = size
    else:
        levels = np.zeros(coarse)
    np.ceil(levels, out=levels)
    levels = levels[levels > 0]
    stride = -(-size // 8192)
    n_pick = -(-size // stride)
    pos = np.ceil(levels * (n_pick / size)).astype(np.intp) - 1
    # nondecreasing: distinct values by comparing neighbours
    keep = np.ones(pos.size, dtype=bool)
    np.not_equal(pos[1:], pos[:-1], out=keep[1:])
    keep &= (pos >= 0) & (pos < n_pick)
    pos = pos[keep]
    pos.flags.writeable = False
    return stride, pos


def _floor_limit(x: float) -> int:
    """The largest int64 ``v`` with ``float(v) <= x`` for integers below 2**53 in size."""
    if x >= 2.0 ** 62:
        return 2 ** 62
    if x <= -(2.0 ** 62):
        return -(2 ** 62)
    return math.floor(x)


def _prefix(rho, w, k: int) -> np.ndarray:
    """(Q, k) int64: entry ``[q, a]`` sums ``w[q]`` over the samples with ``rho <= a``.

    ``rho`` holds values in ``0..k``; ``w`` (Q, S) integer-valued floats (exact sums)."""
    nq = w.shape[0]
    if nq == 1:
        h = np.bincount(rho, weights=w[0], minlength=k + 1)
    else:
        flat = rho + (np.arange(nq, dtype=np.intp) * (k + 1))[:, None]
        h = np.bincount(flat.reshape(-1), weights=w.reshape(-1), minlength=nq * (k + 1))
    if k > 16_384:  # large: the plain running sum along each quantity's row is faster
        out = h.reshape(nq, k + 1)[:, :k].astype(np.int64)
        return np.cumsum(out, axis=1, out=out)
    # written into a (k, Q) buffer: the running sum then adds whole rows of Q values
    # (2-3x faster than along each quantity's row while the buffer stays in cache);
    # returned as a (Q, k) view
    out = np.empty((k, nq), dtype=np.int64)
    np.cumsum(h.reshape(nq, k + 1)[:, :k], axis=1, dtype=np.int64, out=out.T)
    return out.T


def _pair_tables(rho_i, rho_j, d2, ki: int, kj: int, c1):
    """The tables of a two-threshold sweep as ``(neg, off)``: entry ``[q, a]`` of

        ``c1[q, a]`` plus the sum of ``d2[q]`` over the samples with ``rho_i <= a``
        and ``rho_j > b``

    is ``off[q, a] - neg[q, b, a]``; ``neg`` (Q, kj, ki) and ``off`` (Q, ki), int64.

    ``rho_i`` in ``0..ki``, ``rho_j`` in ``0..kj``; ``d2`` (Q, S) integer-valued floats
    (exact sums); ``c1`` (Q, ki) int64.  One histogram for every quantity, a running
    sum over ``a`` (along rows: numpy adds whole rows), then one over ``b`` written
    transposed, so that it too adds whole rows; ``neg`` holds the sums over
    ``rho_j <= b``, ``off`` the totals over every ``b`` plus ``c1``.
    """
    nq = d2.shape[0]
    cells = (ki + 1) * (kj + 1)
    flat = rho_i.astype(np.intp) * (kj + 1)
    flat += rho_j
    if nq > 1:
        flat = (flat + (np.arange(nq, dtype=np.intp) * cells)[:, None]).reshape(-1)
    h = np.bincount(flat, weights=d2.reshape(-1), minlength=nq * cells)
    h = h.astype(np.int64).reshape(nq, ki + 1, kj + 1)
    np.cumsum(h, axis=1, out=h)  # rho_i <= a
    c = np.empty((nq, kj + 1, ki), dtype=np.int64)
    np.cumsum(h[:, :ki, :], axis=2, out=c.transpose(0, 2, 1))  # rho_j <= b
    off = c[:, kj, :] + c1
    return c[:, :kj, :], off


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
        # one more row, of ones, for the last exit: every sample that gets there leaves
        self._ranks_pad = np.empty((n, m), dtype=itype)
        self._ranks_pad[ne] = 1
        self._ranks = self._ranks_pad[:ne]
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
        self._icost_int = self._icost.astype(np.int64)
        # a fixed-point total v (an integer below 2**53) meets row r when
        # v <= _ibound[r] * (1 + 1e-12), i.e. when v <= _ilimit[r] (None: no bound)
        self._ilimit = [_floor_limit(b * (1.0 + 1e-12)) if math.isfinite(b) else None
                        for b in self._ibound]
        self._corr_flat = self.correct.reshape(-1)
        self._exit_dtype = np.int8 if n <= 127 else np.int16
        self._exit = None  # exits of the current state
        self._exit_owner = None
        self._current = None
        self._serial = 0
        self._wtables = None  # the tables of the window sweeps (i, j) of one state and i
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
            # the samples ranked above the threshold, read from the order by rank
            out[self._order[n, self._pos[n][index[n]]:]] = n
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
        k = ne - n - 1
        if 0 < k and sub.size * k <= 16_384:
            # few samples: one comparison of every later exit (and of the last, which
            # everyone leaves), no loop over exits
            thr = np.zeros(k + 1, dtype=np.intp)
            thr[:k] = index[n + 1:ne]
            lv = self._ranks_pad[n + 1:, sub] > thr[:, None]
            out = lv.argmax(axis=0).astype(self._exit_dtype)
            out += n + 1
            return out
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
        spans = [sorted((int(st.index[n]), int(new_index[n]))) for n in changed]
        if sum(int(self._pos[n][hi] - self._pos[n][lo]) for n, (lo, hi) in zip(changed, spans)) \
                * 4 > self.n_samples:
            # large bands (e.g. every threshold shifted): a full evaluation costs less
            new_e = self.exits(new_index)
            hits, counts = self._summarise(new_e)
            return self._make(new_index, hits, counts), (None, new_e)
        parts = [self._band(n, lo, hi) for n, (lo, hi) in zip(changed, spans)]
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
        if sub is None:  # every sample's exit
            self._exit = new_e
        else:
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
        """Hits and fixed-point row totals of a state (exact, int64; kept with the state)."""
        out = st._cache.get("totals")
        if out is None:
            out = np.empty(self._n_q(), dtype=np.int64)
            out[0] = st.hits
            out[1:] = self._icost_int @ st.counts
            st._cache["totals"] = out
        return out

    # ---------------------------------------------------------------- choice
    def _conditions(self, st):
        """``(quantity, upper, bound)``: what a cell must meet to beat ``st`` or tie it,
        ``quantity <= bound`` (upper) or ``>= bound``: every row within its limit,
        ``min_hits``, and the objective no worse than ``st``'s."""
        cur = self._totals(st)
        acc = self.objective == "accuracy"
        conds = []
        lo_h = self.min_hits
        if acc:
            lo_h = int(cur[0]) if lo_h is None else max(lo_h, int(cur[0]))
        for r, lim in enumerate(self._ilimit):
            if r == 0 and not acc:
                lim = int(cur[1]) if lim is None else min(lim, int(cur[1]))
            if lim is not None:
                conds.append((1 + r, True, lim))
        if lo_h is not None:
            conds.append((0, False, lo_h))
        return conds

    def _choose(self, st, neg, off, make_index, order=None):
        """Pick the best feasible cell of the tables ``off[q, None, :] - neg[q]``;
        verify it exactly.

        ``neg`` (1 + R, rows, cols) and ``off`` (1 + R, cols) hold exact integers
        (int64): hits, then the fixed-point rows.  Best = the objective, then its
        tie-break, then the first cell in ``order`` (a function of flat cell
        indices, ``row * cols + col``, returning their rank; default: the flat
        index).  Only cells strictly better than ``st`` are evaluated;
        ``make_index`` maps a flat index to candidate indices.  The tables are
        only compared with bounds (``neg >= off - bound``) until the few cells
        that can beat ``st`` are known.
        """
        cur = self._totals(st)
        cur_h, cur_l = int(cur[0]), int(cur[1])
        acc = self.objective == "accuracy"
        mask = None
        for q, upper, bound in self._conditions(st):
            thr = off[q] - bound
            m = np.greater_equal(neg[q], thr) if upper else np.less_equal(neg[q], thr)
            mask = m if mask is None else np.logical_and(mask, m, out=mask)
        if mask is None:
            cand = np.arange(neg[0].size)
        else:
            cand = np.flatnonzero(mask)
        if cand.size == 0:
            return st
        col = cand % off.shape[-1]
        hits = off[0, col] - neg[0].reshape(-1)[cand]
        lat = off[1, col] - neg[1].reshape(-1)[cand]
        if acc:
            prim, sec, cur_p, cur_s = hits, -lat, cur_h, -cur_l
        else:
            prim, sec, cur_p, cur_s = -lat, hits, -cur_l, cur_h
        low = -(2 ** 62)  # below every total
        for _ in range(4):
            best = int(prim.max())
            if best < cur_p or best == low:
                return st
            sel = np.flatnonzero(prim == best)
            sc = sec[sel]
            top = int(sc.max())
            if best == cur_p and not top > cur_s:
                return st
            sel = sel[sc == top]
            k = int(sel[0] if order is None or sel.size == 1 else sel[np.argmin(order(cand[sel]))])
            new, delta = self._try(st, make_index(int(cand[k])))
            if delta is not None and self.feasible(new) and new.key() > st.key():
                self._commit(new, delta)
                return new
            prim[k] = low  # fixed-point rounding made it look better than it is
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
        # h[q, k]: the gain summed over the samples ranked at most k, which pass
        h = _prefix(rk, w, size)
        k_now = int(st.index[n])
        # tables[q, k] = totals - h[q, k] + h[q, k_now]
        off = (self._totals(st) + h[:, k_now])[:, None]

        def make_index(k):
            out = st.index.copy()
            out[n] = k
            return out

        return self._choose(st, h[:, None, :], off, make_index)

    @staticmethod
    def _lut(grid, size):
        """``lut[r]`` = number of grid entries below rank ``r``, for r = 0..size."""
        # grid holds sorted distinct candidates below size: runs of equal values
        bounds = np.empty(grid.size + 2, dtype=np.intp)
        bounds[0] = 0
        np.add(grid, 1, out=bounds[1:-1])
        bounds[-1] = size + 1
        return np.repeat(np.arange(grid.size + 1, dtype=np.int32), np.diff(bounds))

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
            # quantiles only place grid points: those of an evenly strided subset of
            # at most 8,192 samples serve as well, at a fraction of the cost
            stride, pos = _quantile_positions(ranks.size, coarse)
            pick = ranks[::stride] if stride > 1 else ranks
            # one sort: much faster than a partition at ~100 positions, same values
            q = np.sort(pick)[pos].astype(np.intp)
            np.minimum(q, size - 1, out=q)
            parts.append(q)
        x = np.concatenate(parts)
        x.sort()
        keep = np.empty(x.size, dtype=bool)
        keep[0] = True
        np.not_equal(x[1:], x[:-1], out=keep[1:])
        return x[keep]

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
        base = self._totals(st) + (v_i.sum(axis=1)
                                   - self._values_at(self._exit[sub], sub).sum(axis=1)).astype(np.int64)
        c1 = _prefix(rho, v_e1 - v_i, ki)
        c1 += base[:, None]
        # number of samples passing from i to at least exit j, for j = 0..N-1
        depth = np.searchsorted(-e1.astype(np.int16), -np.arange(self.n_exits), side="right")
        return {"serial": st._cache["serial"], "sub": sub, "e1": e1, "rho": rho, "gi": gi,
                "v_e1": v_e1, "c1": c1, "depth": depth}

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
                   exhaustive: int = 256, prep=None, window_js=None) -> HardState:
        """Best state changing thresholds ``i < j`` together, over a 2-D candidate grid.

        Every combination of the two grids (:meth:`pair_grids`) is evaluated
        exactly with a 2-D histogram and cumulative sums, O(S + |grid_i| |grid_j|)
        for the S samples reaching ``i``.  An exit with at most ``exhaustive``
        candidates uses all of them, so on small problems the sweep is exhaustive
        over the pair.  ``prep``: what :meth:`_pair_prep` shares for ``i`` (made here
        when not given).  ``window_js``: on the window level (``coarse = 0``), the
        ``j`` that will be swept with ``i`` while the state stays ``st``; their
        tables are made at once (:meth:`_window_tables`).
        """
        if not i < j:
            raise ValueError("sweep_pair needs i < j")
        if coarse <= 0 and self.n_candidates(i) > exhaustive and self.n_candidates(j) > exhaustive:
            return self._sweep_window(st, i, j, local, window_js)
        if prep is None or prep["serial"] != st._cache["serial"]:
            prep = self._pair_prep(st, i, local, coarse, exhaustive)
        self._load(st)
        cnt = int(prep["depth"][j])
        if cnt == 0:
            return st  # nobody passing i reaches j: a single sweep of i covers the pair
        gi, rho_all, c1 = prep["gi"], prep["rho"], prep["c1"]
        ki = gi.size
        sub = prep["sub"][:cnt]
        rho_i = rho_all[:cnt]
        at_j = int(prep["depth"][j + 1]) if j + 1 < self.n_exits else cnt
        rk_j = self._ranks[j, sub]
        gj = self._grid(j, int(st.index[j]), rk_j, local, coarse, exhaustive)
        kj = gj.size
        rho_j = self._rho(gj, j, rk_j)
        # leaving at j rather than going on to e1 ...
        d2 = self._values_here(j, sub)
        d2 -= prep["v_e1"][:, :cnt]
        if at_j < cnt:
            # ... except for the samples passing i whose exit was j: passing j too, they
            # go to z instead of e1 (for every candidate at j, and for rho_i <= a)
            z = self._next_after(j, sub[at_j:], st.index)
            corr = self._values_at(z, sub[at_j:])
            corr -= prep["v_e1"][:, at_j:cnt]
            c1 = c1 + _prefix(rho_i[at_j:], corr, ki)
            d2[:, at_j:] -= corr
        # samples with rho_i <= a pass i; those with rho_j > b then leave at j
        return self._choose(st, *_pair_tables(rho_i, rho_j, d2, ki, kj, c1),
                            *_pair_index(st.index, i, j, gi, gj))

    def _window_tables(self, st: HardState, i: int, js, local: int) -> dict:
        """The tables of the window sweeps ``(i, j)`` for every ``j`` in ``js``, at once.

        Only the samples ranked inside a window can change across the grid: at
        ``i``, those reaching ``i`` (set A, shared by every ``j``); at ``j``, those
        that reach ``i`` and pass it for every candidate of its window (set
        B_j).  They are read from the orders by rank, so the cost is
        O(window samples), whatever M.  A sample of A enters the table of every
        ``j`` up to the exit it takes after ``i``.  Most samples change only
        with one threshold across the windows, so a table is a function of
        ``a`` plus a function of ``b`` plus a few rectangles; the bounds are
        compared with those two functions without building the tables.
        Returns them (:meth:`_window_table` builds table ``t``; window ``t``
        has ``kj[t]`` cells at ``j``, from candidate ``lo_j[t]``) and
        ``better[t]``: whether table ``t`` has a feasible cell that beats
        ``st`` (what :meth:`_choose` would look for).
        """
        ex = self._load(st)
        idx = st.index
        ne = self.n_exits - 1
        nq = self._n_q()
        m = self.n_samples
        js = np.asarray(js, dtype=np.intp)
        nj = js.size
        gi = self._grid(i, int(idx[i]), None, local, 0, 0)
        lo_i, ki = int(gi[0]), gi.size
        sizes = np.array([self.n_candidates(int(j)) for j in js], dtype=np.intp)
        lo_j = np.maximum(idx[js] - local, 0)
        kj = np.minimum(idx[js] + local + 1, sizes) - lo_j
        kk = int(kj.max())
        # A: ranked inside the window at i, reaching i
        a_set = self._band(i, lo_i, int(gi[-1]))
        a_set = a_set[ex[a_set] >= i]
        na = a_set.size
        # B_j: ranked inside the window at j, reaching i and ranked at most lo_i there
        # (they pass i for every candidate; those ranked inside it are in A already,
        # those above it always leave at i)
        parts = [self._band(int(j), int(lo_j[t]), int(lo_j[t] + kj[t] - 1)) for t, j in enumerate(js)]
        b_lab = np.repeat(np.arange(nj, dtype=np.intp), [p.size for p in parts])
        b_set = np.concatenate(parts)
        keep = (self._ranks[i, b_set] <= lo_i) & (ex[b_set] >= i)
        b_set, b_lab = b_set[keep], b_lab[keep]
        u = np.concatenate([a_set, b_set])
        if u.size == 0:  # nobody can change: no table beats st
            return {"key": (st._cache["serial"], i, local), "lab": {int(j): t for t, j in enumerate(js)},
                    "better": np.zeros(nj, dtype=bool)}
        # the exit each takes once it passes i (e1), and once it passes that one too (e2)
        thr = np.zeros(ne - i, dtype=np.intp)
        thr[:-1] = idx[i + 1:ne]
        lv = self._ranks_pad[i + 1:, u] > thr[:, None]
        f1 = lv.argmax(axis=0)
        lv &= np.arange(ne - i)[:, None] > f1
        e1 = f1 + (i + 1)
        e2 = lv.argmax(axis=0) + (i + 1)  # meaningless where e1 is the last exit (unused)
        v_i = self._values_here(i, u)
        v_e1 = self._values_at(e1, u)
        # the position in js of every exit (-1: not swept)
        lab_of = np.full(ne + 1, -1, dtype=np.intp)
        lab_of[js] = np.arange(nj)
        rho_a = np.searchsorted(gi, self._ranks[i, a_set], side="left")
        # everyone in A (and B_j) leaves at i: the totals without what they do now
        part = self._totals(st) + (v_i[:, :na].sum(axis=1)
                                   - self._values_at(ex[a_set], a_set).sum(axis=1)).astype(np.int64)
        # --- c1[t, q, a]: base_t plus what passing i adds for rho_i <= a, for j = js[t]
        # shared by every j: A passing i to e1
        c1 = np.empty((nj, nq, ki), dtype=np.int64)
        c1[:] = _prefix(rho_a, v_e1[:, :na] - v_i[:, :na], ki)
        c1 += part[:, None]
        # per j: A whose e1 is j go on to e2; B_j pass i to e1 (or to e2 when e1 is j),
        # and leave i's totals
        at = np.flatnonzero(lab_of[e1[:na]] >= 0)
        lab_b_e2 = e1[na:] == js[b_lab]
        zb = np.where(lab_b_e2, e2[na:], e1[na:])
        corr_lab = np.concatenate([lab_of[e1[at]], b_lab])
        corr_rho = np.concatenate([rho_a[at], np.zeros(b_set.size, dtype=np.intp)])
        corr_w = np.concatenate([self._values_at(e2[at], a_set[at]) - v_e1[:, at],
                                 self._values_at(zb, b_set) - self._values_at(ex[b_set], b_set)],
                                axis=1)
        flat = corr_lab * (nq * (ki + 1)) + corr_rho
        flat = (flat + (np.arange(nq, dtype=np.intp) * (ki + 1))[:, None]).reshape(-1)
        h = np.bincount(flat, weights=corr_w.reshape(-1), minlength=nj * nq * (ki + 1))
        h = h.reshape(nj, nq, ki + 1)[:, :, :ki].astype(np.int64)
        c1 += np.cumsum(h, axis=2, out=h)
        # --- the table samples: A for every j up to its e1, B_j when it passes j too
        ta_lab, ta = np.divmod(np.flatnonzero(js[:, None] <= e1[None, :na]), na) if na else (
            np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp))
        tb = np.flatnonzero(e1[na:] >= js[b_lab])
        lab = np.concatenate([ta_lab, b_lab[tb]])
        pos = np.concatenate([ta, tb + na])  # into u
        rho_i = np.concatenate([rho_a[ta], np.zeros(tb.size, dtype=np.intp)])
        jj = js[lab]
        sm = u[pos]
        z = np.where(e1[pos] == jj, e2[pos], e1[pos])
        d2 = self._values_at(jj, sm)
        d2 -= self._values_at(z, sm)
        rho_j = self._ranks[jj, sm].astype(np.intp)
        rho_j -= lo_j[lab]
        np.clip(rho_j, 0, kj[lab], out=rho_j)
        # The samples ranked above the window at j leave there for every b: their sums
        # over rho_i <= a make a function G of a alone.  Those passing i for every a
        # (rho_i = 0) make a function F of b alone.  The few ranked inside both
        # windows add rectangles E (a >= rho_i, b < rho_j).  T = G[a] + F[b] + E[a, b].
        kjl = kj[lab]
        g_sel = rho_j == kjl
        f_sel = ~g_sel & (rho_i == 0)
        e_sel = ~g_sel & ~f_sel & (rho_j > 0)
        g = np.flatnonzero(g_sel)
        flat = (lab[g] * nq) * (ki + 1) + rho_i[g]
        flat = (flat + (np.arange(nq, dtype=np.intp) * (ki + 1))[:, None]).reshape(-1)
        h = np.bincount(flat, weights=d2[:, g].reshape(-1), minlength=nj * nq * (ki + 1))
        h = h.reshape(nj, nq, ki + 1)[:, :, :ki].astype(np.int64)
        big_g = np.cumsum(h, axis=2, out=h)  # rho_i <= a
        big_g += c1
        f = np.flatnonzero(f_sel)
        flat = (lab[f] * nq) * (kk + 1) + rho_j[f]
        flat = (flat + (np.arange(nq, dtype=np.intp) * (kk + 1))[:, None]).reshape(-1)
        h = np.bincount(flat, weights=d2[:, f].reshape(-1), minlength=nj * nq * (kk + 1))
        h = h.reshape(nj, nq, kk + 1).astype(np.int64)
        np.cumsum(h, axis=2, out=h)
        big_f = h[:, :, kk:] - h[:, :, :kk]  # rho_j > b
        e = np.flatnonzero(e_sel)
        rects = (lab[e], rho_i[e], rho_j[e], d2[:, e].astype(np.int64))
        # --- which tables have a feasible cell beating st
        mask = np.ones((nj, ki, kk), dtype=bool)
        conds = self._conditions(st)
        for q, upper, bound in conds:
            thr = (bound - big_g[:, q])[:, :, None]
            fq = big_f[:, q, None, :]
            if upper:
                mask &= fq <= thr
            else:
                mask &= fq >= thr
        # ... and beat it: more hits or a lower row 0 (the objective or its tie-break)
        cur = self._totals(st)
        cur_h, cur_l = int(cur[0]), int(cur[1])
        up = big_f[:, 0, None, :] >= (cur_h + 1 - big_g[:, 0])[:, :, None]
        up |= big_f[:, 1, None, :] <= (cur_l - 1 - big_g[:, 1])[:, :, None]
        mask &= up
        mask &= (np.arange(kk)[None, :] < kj[:, None])[:, None, :]
        better = mask.any(axis=(1, 2))
        wt = {"key": (st._cache["serial"], i, local), "lab": {int(j): t for t, j in enumerate(js)},
              "gi": gi, "lo_j": lo_j, "kj": kj, "g": big_g, "f": big_f, "rects": rects}
        for t in np.unique(rects[0]).tolist():  # tables with rectangles: dense
            tab = self._window_table(wt, t)
            m_t = (tab[0] >= cur_h + 1) | (tab[1] <= cur_l - 1)
            for q, upper, bound in conds:
                m_t &= (tab[q] <= bound) if upper else (tab[q] >= bound)
            better[t] = m_t.any()
        wt["better"] = better
        return wt

    @staticmethod
    def _window_table(wt: dict, t: int) -> np.ndarray:
        """Table ``t`` of :meth:`_window_tables`, dense: (1 + R, ki, kj) int64, cell
        ``[q, a, b]`` for candidates ``gi[a]`` at ``i`` and ``lo_j[t] + b`` at ``j``."""
        kj = int(wt["kj"][t])
        tab = wt["g"][t][:, :, None] + wt["f"][t][:, None, :kj]
        lab, r_i, r_j, w = wt["rects"]
        for s in np.flatnonzero(lab == t).tolist():
            tab[:, r_i[s]:, :r_j[s]] += w[:, s, None, None]
        return tab

    def _window_ready(self, st: HardState, i: int, j: int, local: int) -> bool:
        """Whether the tables of the window sweep ``(i, j)`` for ``st`` are at hand."""
        wt = self._wtables
        return wt is not None and wt["key"] == (st._cache["serial"], i, local) and j in wt["lab"]

    def _sweep_window(self, st: HardState, i: int, j: int, local: int, window_js=None) -> HardState:
        """:meth:`sweep_pair` over windows of ``local`` candidates on each side.

        The tables come from :meth:`_window_tables`, for ``window_js`` (the ``j``
        that will be swept with ``i`` while the state stays ``st``; default:
        ``j`` alone) at once; they are kept until another state or ``i`` is swept.
        """
        if not self._window_ready(st, i, j, local):
            js = sorted(set(window_js or ()) | {j})
            self._wtables = self._window_tables(st, i, js, local)
        wt = self._wtables
        t = wt["lab"][j]
        if not wt["better"][t]:
            return st
        kj, lo = int(wt["kj"][t]), int(wt["lo_j"][t])
        gj = np.arange(lo, lo + kj, dtype=np.intp)
        # the table as _choose reads it: off[q, a] - neg[q, b, a], with off = 0
        neg = np.negative(self._window_table(wt, t).transpose(0, 2, 1))
        return self._choose(st, neg, np.zeros((neg.shape[0], neg.shape[2]), dtype=np.int64),
                            *_pair_index(st.index, i, j, wt["gi"], gj))

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
        would leave (``N - 1``: none before the last).  ``sub=None``: every sample."""
        ne = self.n_exits - 1
        if sub is None:
            # every sample: those ranked above each threshold, read from the order by rank
            e2 = np.full(self.n_samples, ne, dtype=np.intp)
            for j in range(ne - 1, 0, -1):
                above = self._order[j, self._pos[j][index[j]]:]
                e2[above[ex[above] < j]] = j
            return e2
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
        e2 = self._second_exits(None, exi, idx)
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

                def sweeps(j):  # whether the pair (i, j) is swept at this state
                    return checked.get((i, j)) != (st._cache["serial"], level) and not (
                        prune_now and failed.get((level, i, j), -1) >= touched[i:j + 1].max())

                for at_j, j in enumerate(js):
                    if not sweeps(j):
                        if checked.get((i, j)) != (st._cache["serial"], level):
                            skipped += 1
                        continue
                    tag = (st._cache["serial"], level)
                    if coarse > 0 and (prep is None or prep["serial"] != st._cache["serial"]):
                        prep = self._pair_prep(st, i, local, coarse, exhaustive)
                    window_js = None
                    if coarse <= 0 and not self._window_ready(st, i, j, local):
                        # the window tables of every pair (i, j) still to sweep at this
                        # state come at once
                        window_js = [j2 for j2 in js[at_j:] if self.n_candidates(j2) > exhaustive
                                     and sweeps(j2)]
                    self.pair_sweeps += 1
                    new = self.sweep_pair(st, i, j, local=local, coarse=coarse,
                                          exhaustive=exhaustive, prep=prep, window_js=window_js)
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
