"""The hard problem and its states: candidates, evaluation, moves, feasibility, repair.

:class:`_Problem` holds what every search of :class:`~eexit_cli.core.exact.HardProblem`
reads (the problem itself is stated in :mod:`eexit_cli.core.exact`), the exact
outcome of a state, the incremental evaluation of a move and the repair.

Candidates
----------
Thresholds are represented by candidate indices.  At exit ``n`` with sorted
distinct scores ``u_1 < ... < u_K``, index ``k`` means "the samples whose score
ranks above ``k`` leave": threshold ``c_0`` lies below ``u_1`` (everyone reaching
the exit leaves), ``c_k`` is the midpoint of ``u_k`` and ``u_{k+1}`` (midpoints
generalise better than a threshold sitting on a sample's score) and ``c_K`` is
the largest score, or the box's ``upper`` end when that lies above it (nobody
leaves, the rule being "strictly above").  Any real
threshold maps to the index with the same hard behaviour on the data.

Moves
-----
A move changes only the samples whose decision flips at a changed threshold:
their new exits are recomputed (from the first changed exit on) and the
per-exit counts and hits are updated from them, without a pass over every
exit (a move that changes more than a quarter of the samples, such as the
repair's common shift, is evaluated in full instead).  Sums over samples run in
integer fixed point: each row is scaled so that every total is an integer below
2**52 (:meth:`_Problem._totals`), which the sweeps' int64 tables add exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

OBJECTIVES = ("accuracy", "cost")
#: The repair's guesses look at this many score crossings at most.
_GUESS_ALL = 4096


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
    ``key()``: the objective first, then its tie-break (see :mod:`eexit_cli.core.exact`).
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


#: The problem's per-exit sort packs the index into the scores' bits up to this many
#: samples: on synthetic rows (benchmarks/synth.py) ``argsort`` and its gather took
#: 0.12 / 0.95 / 2.2 / 5.3 / 12.9 ms at 1e4 / 65,536 / 131,072 / 262,144 / 5e5 samples,
#: the packed sort 0.07 / 0.54 / 1.7 / 8.6 / 19.5 ms (past a 1 MiB array it loses).
_PACKED_SORT = 131_072


def _sorted(x: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order that sorts the float64 vector ``x`` (ties in index order, NaN last) and
    ``x`` in that order; ``index`` is ``arange(x.size)`` as int64.

    Up to ``_PACKED_SORT`` scores, the float's bits, made signed-order-preserving
    and cleared below the bits of an index, carry the index itself: one integer
    sort.  Where two distinct scores agree on all the bits kept (rare: 64 minus
    the index's bits), or a NaN is met, and beyond that size, ``argsort`` decides.
    """
    m = x.size
    low = (1 << max(1, (m - 1).bit_length())) - 1
    if 1 < m <= _PACKED_SORT:
        key = np.ascontiguousarray(x, dtype=np.float64).view(np.int64)
        if key[np.argmin(x)] >= 0:  # no negative score: the bits sort as they are (-0.0 first)
            key = key & ~low
        else:  # negative floats: their bits (but the sign) reversed
            key = key ^ ((key >> 63) & 0x7FFF_FFFF_FFFF_FFFF)
            key &= ~low
        key |= index
        key.sort()
        key &= low
        srt = x[key]
        if not (srt[0] != srt[0] or srt[-1] != srt[-1] or np.any(srt[1:] < srt[:-1])):
            return key, srt
    order = np.argsort(x)
    return order, x[order]


def _floor_limit(x: float) -> int:
    """The largest int64 ``v`` with ``float(v) <= x`` for integers below 2**53 in size."""
    if x >= 2.0 ** 62:
        return 2 ** 62
    if x <= -(2.0 ** 62):
        return -(2 ** 62)
    return math.floor(x)


def _first_true(lv: np.ndarray) -> np.ndarray:
    """The row of the first True in every column of the boolean ``(K, S)`` array
    ``lv``, whose last row is all True: ``lv.argmax(axis=0)``, as int8 (int16 for
    K > 127), by the least of ``j`` (True) or ``K`` (False) over the rows, a
    reduction that runs along the rows at once (argmax over axis 0 goes column by
    column)."""
    k = lv.shape[0]
    dt, top = (np.int8, 127) if k <= 127 else (np.int16, 32767)
    code = lv.view(np.int8) * (np.arange(k, dtype=dt) - dt(top))[:, None]
    code += dt(top)
    return code.min(axis=0)


class _Problem:
    """The data of one split prepared for exact searches, the exact outcome of
    states and moves, and the repair (the base of
    :class:`~eexit_cli.core.exact.HardProblem`, whose docstring lists the
    parameters)."""

    def __init__(self, scores, correct, costs, budget, lower=None, upper=None, *,
                 objective: str = "accuracy", min_hits=None):
        raw = np.asarray(scores)
        scores = np.asarray(raw, dtype=np.float64)
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
        index = np.arange(m, dtype=np.int64)
        seq = None  # 0..M: the leading ranks and starts, while every score differs
        for k in range(ne):
            # one sort gives the distinct values and the ranks (1-based)
            order, srt = _sorted(scores[k], index)
            first[0] = True
            np.not_equal(srt[1:], srt[:-1], out=first[1:])
            self._values.append(srt[first])
            del srt
            self._order[k] = order
            if seq is None:
                seq = np.arange(m + 1, dtype=itype)
                seq.flags.writeable = False
            # ranks in sorted order: 1..M up to the first tie, then a running count
            tie = int(first.argmin()) if not first.all() else m
            if tie == m:
                self._ranks[k, order] = seq[1:]
                self._pos.append(seq)
            else:
                rs = np.empty(m, dtype=itype)
                rs[:tie] = seq[1:tie + 1]
                np.cumsum(first[tie:], dtype=itype, out=rs[tie:])
                rs[tie:] += tie
                self._ranks[k, order] = rs
                self._pos.append(np.concatenate(
                    (seq[:tie], np.flatnonzero(first[tie:]).astype(itype) + tie, seq[m:])))
            del order
        # integer fixed point per row: |total| < 2**52 stays exact in float64
        scale = np.empty(self.n_rows)
        self._icost = np.empty_like(rows)
        for r in range(self.n_rows):
            top = float(np.max(np.abs(rows[r])))
            scale[r] = 2.0 ** 51 / (m * top) if top > 0 else 1.0
            self._icost[r] = np.rint(rows[r] * scale[r])
        with np.errstate(invalid="ignore"):
            self._ibound = bounds * scale * m
        self._icost_int = self._icost.astype(np.int64)
        # a fixed-point total v (an integer below 2**53) meets row r when
        # v <= _ibound[r] * (1 + 1e-12), i.e. when v <= _ilimit[r] (None: no bound)
        self._ilimit = [_floor_limit(b * (1.0 + 1e-12)) if math.isfinite(b) else None
                        for b in self._ibound]
        self._corr_flat = self.correct.reshape(-1)
        self._exit_dtype = np.int8 if n <= 127 else np.int16
        self._exit = None  # exits of the current state
        self._current = None
        self._serial = 0
        self._wtables = None  # the tables of the window sweeps (i, j) of one state and i
        self.evaluations = 0
        self.moves = 0
        self.pair_sweeps = 0
        self.trades_tried = 0
        # passing an exit never makes row 0 cheaper: single-move costs grow with k
        self._row0_grows = bool(np.all(np.diff(self._icost[0]) >= 0))
        # the repair's guesses read scores (a reference, never a copy: float input as given)
        self._score_rows = raw if raw.dtype.kind == "f" else scores
        # shifting every threshold down moves samples to earlier exits only: no bounded
        # row then grows, so feasibility cannot be lost along the shift
        bounded = np.isfinite(bounds)
        self._shift_monotone = min_hits is None and bool(
            np.all(np.diff(rows[bounded], axis=1) >= 0))
        # a sample leaving at exit n instead of n + 1 lowers row r by _drops[r, n]
        self._drops = np.diff(self._icost_int, axis=1)
        # a bound on the rounding error of a float mean (counts / M) @ row
        self._row_scale = np.max(np.abs(rows), axis=1)
        self._row_scale[self._row_scale == 0] = 1.0
        self._mean_rounding = (n + 2) * 2.0 ** -52 * self._row_scale

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
        c[0] = _Problem._below(u, lower)
        c[-1] = _Problem._top(u, upper)
        return c

    @staticmethod
    def _top(u, upper) -> float:
        """The "nobody leaves" candidate: the largest score, or ``upper`` beyond it."""
        top = float(u[-1])
        return float(upper) if upper is not None and upper > top else top

    @staticmethod
    def _below(u, lower) -> float:
        """The "everyone leaves" candidate: just below the smallest score, or ``lower``
        below that."""
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
            return self._top(u, self.upper)
        a, b = float(u[k - 1]), float(u[k])
        mid = 0.5 * a + 0.5 * b
        return mid if a <= mid < b else a

    def index_of(self, thresholds) -> np.ndarray:
        """Candidate indices with the same hard behaviour as ``thresholds``."""
        t = np.asarray(thresholds, dtype=np.float64)
        if t.shape != (self.n_exits - 1,):
            return np.array([np.searchsorted(self._values[n], t[n], side="right")
                             for n in range(self.n_exits - 1)], dtype=np.intp)
        return np.array([v.searchsorted(x, side="right") for v, x in zip(self._values, t.tolist())],
                        dtype=np.intp)

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
        # every exit's comparison at once (the last exit: every sample leaves), in
        # blocks of samples that keep the temporaries small
        thr = np.zeros(self.n_exits, dtype=self._ranks_pad.dtype)
        thr[:-1] = index
        thr = thr[:, None]
        m, step = self.n_samples, 1 << 16
        if m <= step:
            return _first_true(self._ranks_pad > thr).astype(self._exit_dtype, copy=False)
        out = np.empty(m, dtype=self._exit_dtype)
        for a in range(0, m, step):
            out[a:a + step] = _first_true(self._ranks_pad[:, a:a + step] > thr)
        return out

    def _summarise(self, ex) -> tuple[int, np.ndarray]:
        counts = np.bincount(ex, minlength=self.n_exits)
        flat = ex.astype(np.int64)
        flat *= self.n_samples
        flat += np.arange(self.n_samples)
        hits = int(np.count_nonzero(self._corr_flat[flat]))
        return hits, counts

    def _hits(self, exits, sub) -> int:
        """Correct answers of the samples ``sub`` at ``exits``."""
        return int(np.count_nonzero(self._corr_flat[exits.astype(np.int64) * self.n_samples + sub]))

    def state(self, index) -> HardState:
        """Exact outcome of candidate indices (as :func:`replay.replay`); becomes current."""
        index = np.array(index, dtype=np.intp)
        if index.shape != (self.n_exits - 1,):
            raise ValueError(f"index must have shape ({self.n_exits - 1},), got {index.shape}")
        self.evaluations += 1
        ex = self.exits(index)
        hits, counts = self._summarise(ex)
        st = self._make(index, hits, counts)
        self._exit, self._current = ex, st
        return st

    def evaluate(self, index) -> HardState:
        """Exact outcome of candidate indices, as :meth:`state`, updated from the
        current state when there is one (a move) instead of from scratch."""
        if self._current is not None:
            return self.move(self._current, index)
        return self.state(index)

    def feasible(self, st: HardState) -> bool:
        """Every row within its bound (and ``hits >= min_hits``), exactly."""
        if self.min_hits is not None and st.hits < self.min_hits:
            return False
        return bool(np.all(st.means <= self.bounds))

    def _load(self, st: HardState) -> np.ndarray:
        """The exits of ``st``, recomputed only when another state is current."""
        cur = self._current
        if cur is None or cur._cache["serial"] != st._cache["serial"]:
            self.evaluations += 1
            self._exit, self._current = self.exits(st.index), st
        return self._exit

    def _band(self, n: int, lo: int, hi: int) -> np.ndarray:
        """The samples whose rank at exit ``n`` lies in ``(lo, hi]``."""
        pos = self._pos[n]
        return self._order[n, pos[lo]:pos[hi]].astype(np.intp)

    def _above(self, n: int, k: int) -> np.ndarray:
        """The samples ranked above candidate ``k`` at exit ``n`` (a view of the order
        by rank)."""
        return self._order[n, self._pos[n][k]:]

    def _between(self, old, new, changed) -> np.ndarray:
        """The samples ranked between the ``old`` and the ``new`` candidate of a
        threshold in ``changed``: the only ones whose exits can differ between the two
        indices (in order by rank for one threshold, else sorted)."""
        parts = [self._band(n, *sorted((int(old[n]), int(new[n])))) for n in changed]
        if len(parts) == 1:
            return parts[0]
        if sum(b.size for b in parts) * 16 < self.n_samples:
            # sorted, each once (a sort and a comparison of neighbours: cheaper on
            # these few than np.unique)
            out = np.concatenate(parts)
            out.sort()
            if out.size > 1:
                keep = np.empty(out.size, dtype=bool)
                keep[0] = True
                np.not_equal(out[1:], out[:-1], out=keep[1:])
                out = out[keep]
            return out
        # large bands: marking is O(M), sorting them would cost more
        mark = np.zeros(self.n_samples, dtype=bool)
        for b in parts:
            mark[b] = True
        return np.flatnonzero(mark)

    def _next_after(self, n: int, sub, index) -> np.ndarray:
        """Exit taken by the samples ``sub`` once they pass exit ``n``."""
        ne = self.n_exits - 1
        k = ne - n - 1
        if 0 < k and sub.size * k <= 65_536:
            # not too many samples and exits: one comparison of every later exit (and
            # of the last, which everyone leaves) and the first row where each leaves
            thr = np.zeros(k + 1, dtype=self._ranks_pad.dtype)
            thr[:k] = index[n + 1:ne]
            # (take: rows laid end to end, which the reduction over rows needs)
            lv = self._ranks_pad[n + 1:].take(sub, axis=1) > thr[:, None]
            out = _first_true(lv).astype(self._exit_dtype, copy=False)
            out += n + 1
            return out
        # exit by exit, over the samples that have not left yet
        out = np.full(sub.size, ne, dtype=self._exit_dtype)
        pending = sub
        pos = np.arange(sub.size)
        for j in range(n + 1, ne):
            if pending.size == 0:
                break
            lv = self._ranks[j].take(pending) > index[j]
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
        """Outcome of ``new_index`` from ``st`` and the exits that change; ``st`` stays current.

        A move of one threshold needs no pass over the later exits when it goes
        down: the samples of its band that reach it leave there."""
        new_index = np.asarray(new_index, dtype=np.intp)
        old = st.index
        changed = np.flatnonzero(new_index != old)
        if changed.size == 0:
            return st, None
        ex = self._load(st)
        self.moves += 1
        p = int(changed[0])
        if changed.size == 1:
            a, b = int(old[p]), int(new_index[p])
            pos = self._pos[p]
            lo, hi = (int(pos[b]), int(pos[a])) if b < a else (int(pos[a]), int(pos[b]))
            if (hi - lo) * 4 <= self.n_samples:
                sub = self._order[p, lo:hi].astype(np.intp)
                old_e = ex[sub]
                if b < a:
                    # ranked in (b, a]: those reaching p passed it and now leave there
                    keep = old_e > p
                    sub, old_e = sub[keep], old_e[keep]
                    new_e = np.full(sub.size, p, dtype=self._exit_dtype)
                    gained = int(np.count_nonzero(self.correct[p, sub]))
                else:
                    # ranked in (a, b]: those reaching p left there and now pass it
                    keep = old_e >= p
                    sub, old_e = sub[keep], old_e[keep]
                    new_e = self._next_after(p, sub, new_index)
                    gained = self._hits(new_e, sub)
                counts = st.counts + np.bincount(new_e, minlength=self.n_exits) \
                    - np.bincount(old_e, minlength=self.n_exits)
                hits = st.hits + gained - self._hits(old_e, sub)
                return self._make(new_index, hits, counts), (sub, new_e)
        elif sum(int(self._pos[n][max(old[n], new_index[n])] - self._pos[n][min(old[n], new_index[n])])
                 for n in changed.tolist()) * 4 <= self.n_samples:
            sub = self._between(old, new_index, changed)
            sub = sub[ex[sub] >= p]
            old_e = ex[sub]
            new_e = self._next_after(p - 1, sub, new_index)
            counts = st.counts + np.bincount(new_e, minlength=self.n_exits) \
                - np.bincount(old_e, minlength=self.n_exits)
            hits = st.hits + self._hits(new_e, sub) - self._hits(old_e, sub)
            return self._make(new_index, hits, counts), (sub, new_e)
        # large bands (e.g. every threshold shifted): a full evaluation costs less
        new_e = self.exits(new_index)
        hits, counts = self._summarise(new_e)
        return self._make(new_index, hits, counts), (None, new_e)

    def _commit(self, new: HardState, delta) -> None:
        sub, new_e = delta
        if sub is None:  # every sample's exit
            self._exit = new_e
        else:
            self._exit[sub] = new_e
        self._current = new

    # ------------------------------------------------------------------ repair
    def repair(self, thresholds) -> tuple[HardState, float]:
        """Shift every threshold down by the same amount until the state is feasible.

        The amount is the smallest that works (bisection on the hard outcome,
        which only changes where a shifted threshold crosses a score; exact when
        no row decreases with the exit index).  Returns the state and the shift:
        0 when ``thresholds`` are feasible already, NaN when no shift works, in
        which case every sample is sent to the exit cheapest in row 0.

        The shift returned is the upper end of that bisection once it stops
        (halving ``[0, s0]``, ``s0`` the first shift that sends every sample to
        the first exit, until one score crossing or no float separates the ends).
        When feasibility cannot decrease along the shift (no bounded row
        decreases with the exit index, no ``min_hits``, and the bound lies clear
        of the float rounding of the two states around the answer), the state
        is found by :meth:`_first_feasible` and the bisection's ends are then
        replayed on floats alone (:meth:`_replay_shift`): same state, same shift,
        a few evaluations instead of one per halving.
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
        # every threshold below every score: everyone leaves at the first exit
        st_hi = self._first_exit_state()
        if not self.feasible(st_hi):
            return self._cheapest_state(), float("nan")
        if self._shift_monotone:
            found = self._first_feasible(t, st, hi, st_hi)
            if found is not None and self._clear_of_bounds(*found):
                prev, ans = found
                return ans, self._replay_shift(t, hi, prev.index, ans.index)
        return self._bisect_shift(t, st, hi, st_hi)

    def _bisect_shift(self, t, st_lo, hi, st_hi) -> tuple[HardState, float]:
        """The bisection of :meth:`repair` on ``[0, hi]``, one evaluation per halving."""
        lo = 0.0
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

    def _first_exit_state(self) -> HardState:
        """Every sample leaving at the first exit (every index 0), without a pass."""
        counts = np.zeros(self.n_exits, dtype=np.int64)
        counts[0] = self.n_samples
        hits = int(np.count_nonzero(self.correct[0]))
        return self._make(np.zeros(self.n_exits - 1, dtype=np.intp), hits, counts)

    def _first_feasible(self, t, st_lo, hi, st_hi):
        """The last infeasible and the first feasible state along the common shift
        of ``t`` in ``(0, hi]`` (``st_lo`` at shift 0 infeasible, ``st_hi`` at ``hi``
        feasible; feasibility assumed not to decrease with the shift).

        Each step evaluates exactly the states at the two shifts on either side of
        the crossing :meth:`_shift_guess` predicts.  Its prediction looks at the
        crossings below a reach: every crossing of the bracket once they are at most
        ``_GUESS_ALL``, else those below the regula falsi point of the largest
        relative excess of a row over its bound (Illinois: an end kept twice in a
        row counts half), where the state is evaluated instead when even those are
        too many.  Once a prediction fails to narrow the bracket, it is halved.  The
        bracket ends at one score crossing, or where no float separates its ends
        (several crossings at the same shift).  None if it has not ended after 200
        steps."""
        lo, guided, reach, kept = 0.0, True, None, 0
        g_lo, g_hi = self._excess(st_lo), self._excess(st_hi)
        for _ in range(200):
            count = int(np.sum(st_lo.index - st_hi.index))
            if count <= 1 or not np.nextafter(lo, hi) < hi:
                return st_lo, st_hi
            shifts = (0.5 * (lo + hi),)
            if guided:
                if count <= _GUESS_ALL:
                    reach = hi
                elif reach is None or not lo < reach < hi:
                    w = hi - lo
                    reach = min(max(lo + w * (g_lo / (g_lo - g_hi)), lo + w / 32), hi - w / 32)
                kind, shifts = self._shift_guess(t, lo, st_lo, hi, st_hi, reach)
                if kind == "further":  # beyond the crossings looked at: look further
                    if reach >= hi:
                        guided = False
                    elif shifts[0] < hi:
                        reach = shifts[0]
                    else:  # past the bracket: the state between the reach and its end
                        reach = 0.5 * (reach + hi)
                        if not lo < reach < hi:
                            guided = False
                        else:
                            shifts = (reach,)
                            kind = "probe"
                    if kind == "further" or not guided:
                        continue
            narrowed = False
            for s in shifts:
                if not lo < s < hi:
                    continue
                idx = self.index_of(t - s)
                if np.array_equal(idx, st_hi.index):
                    hi = s
                    continue
                if np.array_equal(idx, st_lo.index):
                    lo = s
                    continue
                base = st_lo if self._current is st_lo else st_hi
                new = self.move(base, idx)
                narrowed = True
                if self.feasible(new):
                    hi, st_hi, g_hi = s, new, self._excess(new)
                    if kept == 1:
                        g_lo *= 0.5
                    kept = 1
                else:
                    lo, st_lo, g_lo = s, new, self._excess(new)
                    if kept == -1:
                        g_hi *= 0.5
                    kept = -1
            if not narrowed:
                guided = False  # the prediction missed the bracket's crossings: halve
            reach = None
        return None

    def _excess(self, st: HardState) -> float:
        """The largest excess of a bounded row's mean over its bound, relative to the
        row's largest cost (positive exactly when some bound is broken)."""
        fin = np.isfinite(self.bounds)
        return float(np.max((st.means[fin] - self.bounds[fin]) / self._row_scale[fin]))

    def _shift_guess(self, t, lo, st_lo, hi, st_hi, reach):
        """``("guess", shifts)``: the shifts on either side of the predicted first
        feasible one; ``("further", (reach,))`` when the prediction lies beyond the
        crossings looked at; ``("probe", (reach,))`` when those are too many to
        look at (the state at ``reach`` is then evaluated).

        The crossings looked at: those at shifts below ``reach`` (every one of the
        bracket when ``reach`` is its end ``hi``), if at most ``_GUESS_ALL``.  A
        sample at exit ``n`` leaves there once the shift passes about
        ``t_n - s_nm``: from those shifts (their running minimum over the exits)
        come the exits of the samples concerned at every shift, and the first
        shift at which the fixed-point totals of every row come within their
        bounds.  A guide only: the states at the shifts returned are evaluated
        exactly."""
        ne = self.n_exits - 1
        lo_i, hi_i = st_lo.index, st_hi.index
        kl = hi_i if reach >= hi else np.maximum(hi_i, self.index_of(t - reach))
        if int(np.sum(lo_i - kl)) > _GUESS_ALL:
            return "probe", (reach,)
        order, pos = self._order, self._pos
        parts = [order[n, pos[n][a]:pos[n][b]] for n, a, b in
                 zip(range(ne), kl.tolist(), lo_i.tolist()) if a < b]
        if not parts:  # no crossing below the reach
            return "further", (lo + (reach - lo) * 4.0,)
        mark = np.zeros(self.n_samples, dtype=bool)
        mark[np.concatenate(parts)] = True
        sub = np.flatnonzero(mark)
        # the shift at which each sample would leave at each exit, then the running
        # minimum over the exits: the shift from which it leaves there or earlier;
        # below lo it has left already, from reach on it is not looked at
        lv = np.take(self._score_rows[:ne], sub, axis=1)
        lv = np.subtract(t[:, None], lv, out=lv if lv.dtype == np.float64 else None)
        for n in range(1, ne):
            np.minimum(lv[n - 1], lv[n], out=lv[n])
        flat = np.flatnonzero((lv >= lo) & (lv < reach))
        key = lv.ravel()[flat]
        order = np.argsort(key)
        key = key[order]
        at = flat[order] // sub.size
        totals = self._totals(st_lo)
        p, grow = 0, 1.0
        for r in range(self.n_rows):
            limit = self._ilimit[r]
            need = 0 if limit is None else int(totals[1 + r]) - limit
            if need <= 0:
                continue
            cum = np.cumsum(self._drops[r][at])
            pr = int(np.searchsorted(cum, need, side="left"))
            if pr >= key.size:
                got = int(cum[-1]) if cum.size else 0
                grow = max(grow, 4.0 if got <= 0 else 1.5 * need / got)
            p = max(p, pr)
        if key.size == 0 or grow > 1.0 or not key[p] < reach:
            return "further", (lo + (reach - lo) * min(max(grow, 1.25), 4.0),)
        # the crossings on either side of the predicted one, those that move no
        # sample included (the state's index changes there all the same)
        v = float(key[p])
        vals = self._values
        cross = np.concatenate([t[n] - vals[n][a:b] for n, a, b in
                                zip(range(ne), kl.tolist(), lo_i.tolist()) if a < b])
        below = cross[cross < v]
        above = cross[cross > v]
        a = float(below.max()) if below.size else lo
        b = float(above.min()) if above.size else reach
        return "guess", (0.5 * (a + v), 0.5 * (v + b))

    def _clear_of_bounds(self, prev: HardState, ans: HardState) -> bool:
        """Whether feasibility along the shift is decided the same by exact means and by
        their float values: ``ans`` meets every bound and ``prev`` breaks one, each by
        more than twice the rounding of a mean (states on either side, whose exact
        means lie further out, then fall the same way)."""
        if int(np.sum(prev.index - ans.index)) < 1 or not self.feasible(ans) or self.feasible(prev):
            return False
        slack = self._mean_rounding
        fin = np.isfinite(self.bounds)
        if np.any(ans.means[fin] > self.bounds[fin] - 2.0 * slack[fin]):
            return False
        return bool(np.any(prev.means[fin] > self.bounds[fin] + 2.0 * slack[fin]))

    def _replay_shift(self, t, hi, prev_idx, ans_idx) -> float:
        """The shift :meth:`_bisect_shift` returns, from the states ``prev_idx`` (the last
        infeasible along the shift) and ``ans_idx`` (the first feasible) alone.

        The bisection's ends move by its tests only, and each test is a float
        comparison here: a shift ``s`` reaches ``ans_idx`` when ``t_n - s`` drops
        below the score crossed last (at an exit ``n`` that changes between the
        two states), and the search stops once its low end gives ``prev_idx`` and
        its high end ``ans_idx`` (when they differ by one crossing)."""
        vals = self._values
        tl, pl, al = t.tolist(), prev_idx.tolist(), ans_idx.tolist()
        n_star = next(n for n, (p, q) in enumerate(zip(pl, al)) if p != q)
        t_star, v_star = tl[n_star], float(vals[n_star][al[n_star]])
        lo = 0.0
        if sum(pl) - sum(al) == 1:
            # the low end gives prev_idx once t_n - lo lies below the score just above
            # prev_idx at every exit, the high end ans_idx while t_n - hi lies at or
            # above the score just below ans_idx (Python floats: the same IEEE
            # subtraction as index_of's; the pairs likeliest to fail first)
            low = sorted(((tn, float(vals[n][k])) for n, (tn, k) in enumerate(zip(tl, pl))
                          if k < vals[n].size), key=lambda p: p[1] - p[0])
            high = sorted(((tn, float(vals[n][k - 1])) for n, (tn, k) in enumerate(zip(tl, al))
                           if k > 0), key=lambda p: p[0] - p[1])
            lo_ok = all(tn - lo < v for tn, v in low)
            hi_ok = all(tn - hi >= v for tn, v in high)
        else:  # several crossings at one shift: the bisection runs out of floats
            low = high = None
            lo_ok = hi_ok = False
        for _ in range(2000):
            if lo_ok and hi_ok:
                break
            mid = 0.5 * (lo + hi)
            if not lo < mid < hi:
                break
            if t_star - mid < v_star:
                hi = mid
                if not hi_ok and high is not None:
                    hi_ok = all(tn - hi >= v for tn, v in high)
            else:
                lo = mid
                if not lo_ok and low is not None:
                    lo_ok = all(tn - lo < v for tn, v in low)
        return hi

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
