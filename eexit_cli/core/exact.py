"""Exact machinery on hard thresholds: repair to the budget and polish for accuracy.

The smoothed problem (eqs. 9-10) only approximates hard early exit, so thresholds
from the warm start or from Algorithm 1 may break the budget on the tuning split
by a little and may leave accuracy on the table.  This module works on the hard
rule itself (the one of :mod:`eexit_cli.core.replay`):

* :meth:`HardProblem.repair` moves every threshold down by the same amount, the
  smallest that brings the hard mean latency within the budget (bisection on the
  exact step function).
* :meth:`HardProblem.polish` improves hard accuracy with exact moves that keep
  the hard mean latency within the budget: one threshold at a time over every
  distinct candidate, and two thresholds at once over a grid that is exhaustive
  when the exits have few distinct scores, and otherwise combines full
  resolution near the current values with quantiles of the samples reaching
  each exit.

Thresholds are represented by candidate indices.  At exit ``n`` with sorted
distinct scores ``u_1 < ... < u_K``, index ``k`` means "the samples whose score
ranks above ``k`` leave": threshold ``c_0`` lies below ``u_1`` (everyone reaching
the exit leaves), ``c_k`` is the midpoint of ``u_k`` and ``u_{k+1}`` (midpoints
generalise better than a threshold sitting on a sample's score) and ``c_K`` is
the largest score (nobody leaves, the rule being "strictly above").  Any real
threshold maps to the index with the same hard behaviour on the data.

Sweeps count accuracy in whole samples and latency in integer fixed point (costs
scaled so that every sum is exact in float64), so cumulative sums are exact and
fast; every accepted state is re-evaluated exactly, the way
:func:`~eexit_cli.core.replay.replay` computes it, and is only accepted when its
hard mean latency is within the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["HardProblem", "HardState"]


@dataclass(frozen=True)
class HardState:
    """Hard thresholds as candidate indices, with their exact hits and mean latency.

    ``hits`` counts correctly answered samples; ``mean_latency`` is in the unit
    of the costs.  States compare by ``key()``: more hits first, then lower latency.
    """

    index: np.ndarray
    hits: int
    mean_latency: float
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def key(self):
        return (self.hits, -self.mean_latency)

    @property
    def row_totals(self) -> np.ndarray:
        """Sum over the samples of each count row at their exits (see ``HardProblem``)."""
        return self._cache["rows"]


class HardProblem:
    """Hard-threshold early exit on one split, prepared for exact searches.

    Parameters
    ----------
    scores : ndarray, shape (N, M)
    correct : ndarray of bool, shape (N, M)
    costs : ndarray, shape (N,)
    budget : float
        Gamma, in the unit of ``costs``.
    lower, upper : float, optional
        The box of the confidence measure; the "everyone leaves" and "nobody
        leaves" thresholds are placed at or beyond it.
    count_rows : array_like of int, shape (K, N), optional
        Extra constraints ``sum_m count_rows[k, exit(m)] <= count_limits[k]``
        (e.g. a tail budget: ``1[d_n > X]``, at most ``M - ceil(p M)`` samples).
    count_limits : array_like of int, shape (K,), optional
    min_hits : int, optional
        Only states with at least this many correct answers are feasible.
    objective : {"accuracy", "latency"}
        What the polish improves: most hits (ties: lower latency), or lowest
        mean latency (ties: more hits), e.g. with ``min_hits`` for an accuracy
        target.

    ``budget`` may be None (no mean-latency budget).
    """

    def __init__(self, scores, correct, costs, budget: float | None, lower=None, upper=None, *,
                 count_rows=None, count_limits=None, min_hits=None, objective: str = "accuracy"):
        self.scores = np.asarray(scores, dtype=np.float64)
        self.correct = np.asarray(correct, dtype=bool)
        self.costs = np.asarray(costs, dtype=np.float64)
        self.budget = math.inf if budget is None else float(budget)
        self.n_exits, self.n_samples = self.scores.shape
        if objective not in ("accuracy", "latency"):
            raise ValueError(f"objective must be 'accuracy' or 'latency', got {objective!r}")
        self.objective = objective
        self.min_hits = 0 if min_hits is None else int(min_hits)
        if count_rows is None:
            count_rows, count_limits = np.zeros((0, self.n_exits)), np.zeros(0)
        self._rows = np.atleast_2d(np.asarray(count_rows)).astype(np.int64)
        self._row_limits = np.atleast_1d(np.asarray(count_limits)).astype(np.int64)
        if self._rows.shape[1:] != (self.n_exits,) or self._row_limits.shape != self._rows.shape[:1]:
            raise ValueError(
                f"count_rows must have shape (K, {self.n_exits}) and count_limits (K,), got "
                f"{self._rows.shape} and {self._row_limits.shape}"
            )
        n_ch = 2 + self._rows.shape[0]  # channels: correct, cost, count rows
        ne = self.n_exits - 1
        m = self.n_samples
        self._values = []
        self._cands = []
        self._ranks = np.empty((ne, m), dtype=np.intp)
        self._order = np.empty((ne, m), dtype=np.intp)
        self._sorted_ranks = np.empty((ne, m), dtype=np.intp)
        self._cnt_le = []
        first = np.empty(m, dtype=bool)
        for n in range(ne):
            # one sort gives the distinct values, the ranks (1-based) and an order
            # of the samples by rank (ties in any order: only sums over whole
            # groups of tied samples are taken along it)
            order = np.argsort(self.scores[n])
            srt = self.scores[n, order]
            first[0] = True
            np.not_equal(srt[1:], srt[:-1], out=first[1:])
            u = srt[first]
            self._values.append(u)
            self._ranks[n, order] = self._sorted_ranks[n] = np.cumsum(first)
            self._order[n] = order
            # number of samples ranked <= k, for k = 0 .. K
            self._cnt_le.append(np.append(np.flatnonzero(first), m))
            self._cands.append(self.candidates(u, lower, upper))
        # integer fixed-point costs: |sum over samples| < 2**52 stays exact in float64
        dmax = float(np.max(np.abs(self.costs)))
        self._scale = float(2.0 ** 51 / (m * dmax))
        self._icost = np.rint(self.costs * self._scale).astype(np.int64)
        self._ibudget = self.budget * self._scale * m
        self._icorrect = self.correct.astype(np.int64)
        # per channel and exit what leaving there adds: a (M,) row for correctness,
        # a scalar for the cost and every count row
        self._here = [self._icorrect] + [self._icost] + [r for r in self._rows]
        # work buffers, reused by every sweep: allocating fresh (N, M) arrays per
        # move costs more in page faults than the arithmetic itself
        self._down_buf = np.empty((n_ch, self.n_exits, m), dtype=np.int64)
        for c, here in enumerate(self._here):
            self._down_buf[c, ne] = here[ne]
        self._down_owner = None
        self._down_level = ne
        self._w = np.empty((4, m), dtype=np.int64)
        self._cs = np.zeros(m + 1, dtype=np.int64)
        self._bool = np.empty((2, m), dtype=bool)
        self._rho = np.empty((3, m), dtype=np.intp)
        self._scratch_bufs: dict = {}
        self._grid_cache: dict = {}
        self._serial = 0
        self.evaluations = 0

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
        span = float(u[-1] - u[0])
        below = u[0] - max(span, abs(float(u[0])), 1.0) * 1e-9
        if lower is not None and lower < below:
            below = float(lower)
        if not below < u[0]:
            below = np.nextafter(u[0], -np.inf)
        c[0] = below
        top = float(u[-1])
        if upper is not None and upper > top:
            top = float(upper)
        c[-1] = top
        return c

    # ------------------------------------------------------------- conversion
    def index_of(self, thresholds) -> np.ndarray:
        """Candidate indices with the same hard behaviour as ``thresholds``."""
        t = np.asarray(thresholds, dtype=np.float64)
        return np.array(
            [np.searchsorted(self._values[n], t[n], side="right") for n in range(self.n_exits - 1)],
            dtype=np.intp,
        )

    def thresholds_of(self, index) -> np.ndarray:
        """Threshold values (midpoints) for candidate indices."""
        return np.array([self._cands[n][int(k)] for n, k in enumerate(index)], dtype=np.float64)

    def n_candidates(self, n: int) -> int:
        return self._values[n].size + 1

    # ------------------------------------------------------------- evaluation
    def state(self, index) -> HardState:
        """Exact hits and mean latency of candidate indices (as :func:`replay.replay`)."""
        index = np.array(index, dtype=np.intp)
        self.evaluations += 1
        ne = self.n_exits - 1
        alive = np.ones(self.n_samples, dtype=bool)
        counts = np.zeros(self.n_exits, dtype=np.int64)
        hits = 0
        reach = [alive]
        for n in range(ne):
            leaves = self._ranks[n] > index[n]
            leaves &= alive
            counts[n] = np.count_nonzero(leaves)
            hits += np.count_nonzero(leaves & self.correct[n])
            alive = alive & ~leaves
            reach.append(alive)
        counts[ne] = np.count_nonzero(alive)
        hits += np.count_nonzero(alive & self.correct[ne])
        lat = float((counts / self.n_samples) @ self.costs)
        st = HardState(index, int(hits), lat)
        self._serial += 1
        st._cache["reach"] = reach
        st._cache["serial"] = self._serial
        st._cache["ilat"] = int(counts @ self._icost)
        st._cache["rows"] = self._rows @ counts
        return st

    def within(self, st: HardState) -> bool:
        """Whether ``st`` meets the budget and every count row (accuracy not considered)."""
        return st.mean_latency <= self.budget and bool(np.all(st.row_totals <= self._row_limits))

    def feasible(self, st: HardState) -> bool:
        """Whether ``st`` meets the budget, every count row and ``min_hits``."""
        return self.within(st) and st.hits >= self.min_hits

    def key(self, st: HardState):
        """Order of states for the objective: larger is better."""
        if self.objective == "latency":
            return (-st._cache["ilat"], st.hits)
        return (st.hits, -st._cache["ilat"])

    def exits(self, index) -> np.ndarray:
        """0-based exit of every sample."""
        ne = self.n_exits - 1
        out = np.full(self.n_samples, ne, dtype=np.intp)
        for n in range(ne - 1, -1, -1):
            out[self._ranks[n] > index[n]] = n
        return out

    def _down(self, st: HardState, n: int):
        """Per channel (correctness, integer cost, count rows) the value of the exit a
        sample takes if it reaches exit ``n``: shape (channels, M).

        Rows ``n .. N-1`` of a shared buffer, valid for one state at a time.
        """
        serial = st._cache["serial"]
        if self._down_owner != serial:
            self._down_owner = serial
            self._down_level = self.n_exits - 1
        leaves = self._bool[1]
        buf = self._down_buf
        for level in range(self._down_level - 1, n - 1, -1):
            np.greater(self._ranks[level], st.index[level], out=leaves)
            # arithmetic select (next + leaves * (here - next)) is several times
            # faster than np.copyto(..., where=...)
            for c, here in enumerate(self._here):
                cur, nxt = buf[c, level], buf[c, level + 1]
                np.subtract(here[level], nxt, out=cur)
                cur *= leaves
                cur += nxt
        self._down_level = min(self._down_level, n)
        return buf[:, n]

    def _now(self, st: HardState) -> list:
        """Exact totals of every channel for ``st``: hits, integer latency, row totals."""
        return [st.hits, st._cache["ilat"], *st.row_totals.tolist()]

    def _accept(self, st: HardState, new_index) -> HardState:
        if np.array_equal(new_index, st.index):
            return st
        new = self.state(new_index)
        if self.feasible(new) and self.key(new) > self.key(st):
            return new
        return st

    # ------------------------------------------------------------------ repair
    def repair(self, thresholds) -> tuple[HardState, float]:
        """Shift every threshold down by the same amount until the budget holds.

        The amount is the smallest that works (bisection on the hard mean latency,
        which only changes where a shifted threshold crosses a score).  Returns
        the state and the shift: 0 when ``thresholds`` already meet the budget,
        NaN when no shift works (possible only when costs are not increasing), in
        which case every sample is sent to the cheapest exit.
        """
        t = np.asarray(thresholds, dtype=np.float64)
        st = self.state(self.index_of(t))
        if self.within(st):
            return st, 0.0
        bottom = min(float(v[0]) for v in self._values)
        hi = max(float(np.max(t)) - bottom, 0.0)
        hi = hi + max(hi, 1.0) * 1e-6 + 1e-300
        while not (np.max(t - hi) < bottom):
            hi *= 2.0
        st_hi = self.state(self.index_of(t - hi))
        if not self.within(st_hi):
            return self._cheapest_state(), float("nan")
        lo, idx_lo = 0.0, st.index
        for _ in range(2000):
            if int(np.sum(idx_lo - st_hi.index)) <= 1:
                break  # at most one score crossing in between: st_hi is the first feasible
            mid = 0.5 * (lo + hi)
            if not lo < mid < hi:
                break
            idx = self.index_of(t - mid)
            if np.array_equal(idx, st_hi.index):
                hi = mid
            elif np.array_equal(idx, idx_lo):
                lo = mid
            else:
                s_mid = self.state(idx)
                if self.within(s_mid):
                    hi, st_hi = mid, s_mid
                else:
                    lo, idx_lo = mid, idx
        return st_hi, hi

    def _cheapest_state(self) -> HardState:
        target = int(np.argmin(self.costs))
        idx = np.array([self.n_candidates(n) - 1 for n in range(self.n_exits - 1)], dtype=np.intp)
        if target < self.n_exits - 1:
            idx[target] = 0
        return self.state(idx)

    # ---------------------------------------------------------------- sweeps
    def _suffix_gains(self, n: int, weights) -> np.ndarray:
        """``G[k]`` = sum of ``weights`` over the samples ranked above ``k`` at exit ``n``, k = 0..K."""
        ws = self._w[3]
        np.take(weights, self._order[n], out=ws)
        cs = self._cs
        np.cumsum(ws, out=cs[1:])
        return cs[-1] - cs[self._cnt_le[n]]

    def sweep_one(self, st: HardState, n: int) -> HardState:
        """Best state changing only threshold ``n``, over every candidate (exact)."""
        reach = st._cache["reach"][n]
        down = self._down(st, n + 1)
        w = self._w[0]
        k_now = int(st.index[n])
        tables = []
        for c, (here, now) in enumerate(zip(self._here, self._now(st))):
            np.subtract(here[n], down[c], out=w)
            w *= reach
            # gain when the samples ranked above k leave at n instead of continuing
            gain = self._suffix_gains(n, w)
            gain += now - gain[k_now]
            tables.append(gain)
        return self._choose(st, tables, lambda f: self._with(st.index, {n: f}))

    def _with(self, index, changes):
        out = index.copy()
        for n, k in changes.items():
            out[n] = k
        return out

    def _scratch(self, name: str, shape, dtype=np.int64) -> np.ndarray:
        """A reusable work array of ``shape`` (contents undefined)."""
        size = math.prod(shape)
        buf = self._scratch_bufs.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = np.empty(max(size, 1024), dtype=dtype)
            self._scratch_bufs[name] = buf
        return buf[:size].reshape(shape)

    def _choose(self, st, tables, make_index, order=None):
        """Pick the best feasible cell of the channel ``tables``; verify it exactly.

        ``tables`` are the hits, the integer latency and the count-row totals of
        every cell.  Best = the objective's order (most hits then lowest latency,
        or lowest latency then most hits), then the first cell in ``order`` (a
        function of the flat indices of the tied cells returning their rank;
        default: the flat index itself).  ``make_index`` maps a flat index to
        candidate indices.
        """
        hits, lat = tables[0], tables[1]
        ok = self._scratch("ok", hits.shape, bool)
        np.less_equal(lat, self._ibudget * (1.0 + 1e-13), out=ok)
        if len(tables) > 2 or self.min_hits > 0:
            tmp = self._scratch("ok_tmp", hits.shape, bool)
            for table, limit in zip(tables[2:], self._row_limits):
                np.less_equal(table, limit, out=tmp)
                ok &= tmp
            if self.min_hits > 0:
                np.greater_equal(hits, self.min_hits, out=tmp)
                ok &= tmp
        ok = ok.ravel()
        hits = hits.ravel()
        lat = lat.ravel()
        if self.objective == "latency":
            return self._choose_fastest(st, ok, hits, lat, make_index, order)
        # hits >= 0, so (hits + 1) * ok is 0 exactly on the infeasible cells
        h = self._scratch("masked", hits.shape)
        np.add(hits, 1, out=h)
        h *= ok
        for _ in range(4):
            best_h = int(h.max()) - 1
            if best_h < 0 or best_h < st.hits:
                return st
            cand = np.flatnonzero(h == best_h + 1)
            lc = lat[cand]
            cand = cand[lc == lc.min()]
            f = int(cand[0] if order is None or cand.size == 1 else cand[np.argmin(order(cand))])
            new_index = make_index(f)
            new = self._accept(st, new_index)
            if new is not st or np.array_equal(new_index, st.index):
                return new
            h[f] = 0  # fixed-point rounding put it over the budget
        return st

    def _choose_fastest(self, st, ok, hits, lat, make_index, order):
        """:meth:`_choose` for the latency objective: lowest latency, then most hits."""
        big = np.float64(np.inf)
        lm = np.where(ok, lat.astype(np.float64), big)
        now = float(st._cache["ilat"])
        for _ in range(4):
            best = float(lm.min())
            if not best <= now:
                return st
            cand = np.flatnonzero(lm == best)
            hc = hits[cand]
            cand = cand[hc == hc.max()]
            if best == now and int(hits[cand[0]]) <= st.hits:
                return st
            f = int(cand[0] if order is None or cand.size == 1 else cand[np.argmin(order(cand))])
            new_index = make_index(f)
            new = self._accept(st, new_index)
            if new is not st or np.array_equal(new_index, st.index):
                return new
            lm[f] = big
        return st

    @staticmethod
    def _lut(grid, size):
        """``lut[r]`` = number of grid entries below rank ``r``, for r = 0..size."""
        ind = np.zeros(size + 1, dtype=np.intp)
        ind[grid[grid < size] + 1] = 1
        return np.cumsum(ind)

    def _grid(self, n: int, cur: int, reach, local: int, coarse: int, exhaustive: int, key=None):
        """Candidate indices for exit ``n`` in a pair sweep (sorted, unique) and their :meth:`_lut`.

        ``key``, when given, identifies ``reach`` (the thresholds it depends on):
        grids are then remembered, since a polish asks for the same ones often.
        """
        size = self.n_candidates(n)
        if size <= exhaustive:
            grid = np.arange(size, dtype=np.intp)
            return grid, self._lut(grid, size)
        if key is not None:
            key = (n, cur, local, coarse, key)
            hit = self._grid_cache.get(key)
            if hit is not None:
                return hit
        lo = max(0, cur - local)
        hi = min(size, cur + local + 1)
        parts = [np.arange(lo, hi, dtype=np.intp), np.array([0, size - 1], dtype=np.intp)]
        # ranks of the samples reaching the exit, sorted; with cdf(r) the number
        # of them ranked <= r, the smallest r with cdf(r) >= level is the rank of
        # the ceil(level)-th of them (0 for level 0)
        ranked = self._sorted_ranks[n][reach[self._order[n]]]
        if ranked.size > 0:
            levels = np.ceil(np.linspace(0.0, ranked.size, coarse)).astype(np.intp)
            q = np.zeros(coarse, dtype=np.intp)
            q[levels > 0] = ranked[levels[levels > 0] - 1]
            np.minimum(q, size - 1, out=q)
            parts += [q, np.maximum(q - 1, 0)]
        grid = np.unique(np.concatenate(parts))
        out = grid, self._lut(grid, size)
        if key is not None:
            if len(self._grid_cache) >= 4096:
                self._grid_cache.clear()
            self._grid_cache[key] = out
        return out

    def _pair_table(self, name: str, flat, weights, ki: int, kj: int, add) -> np.ndarray:
        """Sums of ``weights`` for every cell of a pair sweep, plus ``add[a]``.

        ``flat = rho_i * (kj + 1) + (kj - rho_j)``.  Returns ``u`` of shape
        ``(kj, ki)`` with ``u[kj - 1 - b, a]`` = sum over the samples with
        ``rho_i <= a`` and ``rho_j > b``, plus ``add[a]``.  Both cumulative sums
        run along rows of integer arrays and every buffer is reused: the
        cumulative sum down the columns of a float array, or a fresh array per
        step, costs several times more.
        """
        # integer-valued float64 sums below 2**53 are exact
        hist = np.bincount(flat, weights=weights, minlength=(ki + 1) * (kj + 1))
        sfx = self._scratch("pair_sfx", (ki, kj + 1))
        np.copyto(sfx, hist[: ki * (kj + 1)].reshape(ki, kj + 1), casting="unsafe")
        del hist
        np.cumsum(sfx, axis=1, out=sfx)  # over j, from the top: rho_j > b
        u = self._scratch(name, (kj, ki))
        np.copyto(u, sfx[:, :kj].T)
        np.cumsum(u, axis=1, out=u)  # over i: rho_i <= a
        u += add
        return u

    def sweep_pair(self, st: HardState, i: int, j: int, *, local: int = 32, coarse: int = 96,
                   exhaustive: int = 256) -> HardState:
        """Best state changing thresholds ``i < j`` together, over a 2-D candidate grid.

        Every combination of the two grids is evaluated exactly with a 2-D
        histogram and cumulative sums, O(M + |grid_i| |grid_j|).  An exit with at
        most ``exhaustive`` candidates uses all of them, so on small problems the
        sweep is exhaustive over the pair.
        """
        if not i < j:
            raise ValueError("sweep_pair needs i < j")
        idx = st.index
        reach_i = st._cache["reach"][i]
        # samples that reach i and, passing it, also pass the exits strictly between i and j
        through, tmp = self._bool[0], self._bool[1]
        np.copyto(through, reach_i)
        for n in range(i + 1, j):
            np.less_equal(self._ranks[n], idx[n], out=tmp)
            through &= tmp
        key_i = tuple(idx[:i].tolist())
        gi, lut_i = self._grid(i, int(idx[i]), reach_i, local, coarse, exhaustive, key=key_i)
        gj, lut_j = self._grid(j, int(idx[j]), through, local, coarse, exhaustive,
                        key=(key_i, i, tuple(idx[i + 1:j].tolist())))
        ki, kj = gi.size, gj.size
        down_z = self._down(st, j + 1)  # outcome when passing j too
        down_mid = self._down(st, i + 1)  # outcome when passing i, t_j as now
        # rho = how many grid candidates lie below a sample's rank: the sample
        # leaves at grid candidate g iff rho > g
        rho_i, rho_j, flat = self._rho
        np.take(lut_i, self._ranks[i], out=rho_i)
        np.take(lut_j, self._ranks[j], out=rho_j)
        np.multiply(rho_i, kj + 1, out=flat)
        flat += kj
        flat -= rho_j
        # base: samples not reaching i as now, samples reaching i all leaving at i
        bases = st._cache.setdefault("pair_base", {})  # shared by the pairs (i, *)
        if i not in bases:
            down_0 = self._down(st, 0)  # outcome now
            n_reach = int(np.count_nonzero(reach_i))
            bases[i] = [
                int(np.sum(d0)) - int(np.dot(d0, reach_i))
                + (int(np.dot(here[i], reach_i)) if np.ndim(here[i]) else int(here[i]) * n_reach)
                for d0, here in zip(down_0, self._here)
            ]
        w1, w2 = self._w[0], self._w[1]
        tables = []
        for c, here in enumerate(self._here):
            mid, z = down_mid[c], down_z[c]
            # 1-D part: samples reaching i that pass it, relative to leaving at i;
            # the value of passing is taken with "nobody leaves at j" (z for `through`)
            np.subtract(z, mid, out=w1)
            w1 *= through
            w1 += mid
            w1 -= here[i]
            w1 *= reach_i
            h1 = np.bincount(rho_i, weights=w1, minlength=ki + 1).astype(np.int64)
            c1 = np.cumsum(h1)[:ki]
            c1 += bases[i][c]
            # 2-D part: samples in `through` that leave at j
            np.subtract(here[j], z, out=w2)
            w2 *= through
            tables.append(self._pair_table(f"pair_{c}", flat, w2, ki, kj, c1))

        def cell(f):  # flat index of (kj - 1 - b, a) -> (a, b)
            r, a = divmod(f, ki)
            return a, kj - 1 - r

        def make_index(f):
            a, b = cell(f)
            return self._with(idx, {i: gi[a], j: gj[b]})

        def order(fs):  # ties: the first cell in (a, b) order
            r, a = np.divmod(fs, ki)
            return a * kj + (kj - 1 - r)

        return self._choose(st, tables, make_index, order=order)

    # ------------------------------------------------------------------ polish
    def polish(self, st: HardState, *, levels=((8, 24), (32, 96)), exhaustive: int = 256,
               max_rounds: int = 100, pairs=None) -> tuple[HardState, int]:
        """Improve hard accuracy (ties: lower latency) within the budget.

        Exact one-threshold sweeps over every exit alternate with two-threshold
        sweeps over ``pairs`` (all pairs by default) until nothing improves.  The
        pair grids come in ``levels`` of ``(local, coarse)`` sizes: the search
        runs on the first (cheap) level until it is stuck, then tries the next;
        any improvement there sends it back to the first.  A pair is not swept
        again while the state is unchanged since its last sweep, and neither is
        a single threshold.  A state that
        ends a polish stuck remembers it: polishing it again with more levels
        (same pairs) starts at the first new level.  Every accepted state meets
        the budget.

        Returns the final state and the number of rounds run.
        """
        if not self.feasible(st):
            raise ValueError("polish needs a feasible state (budget, count rows, min_hits); "
                             "repair it first")
        ne = self.n_exits - 1
        if pairs is None:
            pairs = [(i, j) for i in range(ne) for j in range(i + 1, ne)]
        levels = tuple(tuple(lv) for lv in levels)
        setting = (exhaustive, tuple(tuple(p) for p in pairs))
        rounds = 0
        level = 0
        # a state a previous polish left stuck on the first levels (same pairs and
        # grids) would only repeat those sweeps: go straight to the next level
        stuck = st._cache.get("stuck")
        skip_ones = False
        if stuck is not None and stuck[1] == setting and levels[: len(stuck[0])] == stuck[0]:
            if len(stuck[0]) >= len(levels):
                return st, 0
            level, skip_ones = len(stuck[0]), True
        checked: dict = {}
        checked_one: dict = {}
        while rounds < max_rounds:
            rounds += 1
            start = self.key(st)
            for _ in range(max_rounds):
                if skip_ones:
                    skip_ones = False
                    break
                before = self.key(st)
                for n in range(ne):
                    serial = st._cache["serial"]
                    if checked_one.get(n) == serial:
                        continue
                    new = self.sweep_one(st, n)
                    if new is st:
                        checked_one[n] = serial
                    st = new
                if self.key(st) <= before:
                    break
            local, coarse = levels[level]
            for pair in pairs:
                tag = (st._cache["serial"], level)
                if checked.get(pair) == tag:
                    continue
                new = self.sweep_pair(st, *pair, local=local, coarse=coarse, exhaustive=exhaustive)
                if new is st:
                    checked[pair] = tag
                st = new
            if self.key(st) > start:
                level = 0
            elif level + 1 < len(levels):
                level += 1
            else:
                st._cache["stuck"] = (levels, setting)
                break
        return st, rounds
