"""Exact sweeps of one threshold and of two over candidate grids, and the choice of a
table's best cell.

A sweep over one threshold ``n`` looks only at the samples that reach ``n``; the
pair sweeps ``(i, j)`` share the work that depends on ``i`` alone
(:meth:`_Sweeps._pair_prep`) and look, for each ``j``, only at the samples that
pass from ``i`` to ``j``.  Their tables (:mod:`.tables`) hold exact int64 totals
of every cell, and the bounds are compared with the raw sums before any cell is
read (:meth:`_Sweeps._choose`).  A pair sweep searches a grid of candidates per
exit (:meth:`_Sweeps._grid`): every candidate when there are few, otherwise a
window around the current one, both ends and quantiles of the samples reaching
the exit; on the window level alone the tables come from :mod:`.windows`.
"""

from __future__ import annotations

import functools

import numpy as np

from .problem import HardState
from .tables import _pair_index, _pair_tables, _prefix


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


class _Sweeps:
    """Single and pair sweeps, mixed into :class:`~eexit_cli.core.exact.HardProblem`."""

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
        mask = None  # the conditions always hold the objective's own bound: never None below
        for q, upper, bound in self._conditions(st):
            thr = off[q] - bound
            m = np.greater_equal(neg[q], thr) if upper else np.less_equal(neg[q], thr)
            mask = m if mask is None else np.logical_and(mask, m, out=mask)
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
        if ranks.size > 0:
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
        return {"serial": st._cache["serial"], "sub": sub, "rho": rho, "gi": gi, "v_e1": v_e1,
                "c1": c1, "depth": depth}

    def _windowed(self, i: int, j: int, coarse: int, exhaustive: int) -> bool:
        """Whether the pair sweep ``(i, j)`` is a window sweep (:mod:`.windows`): the
        window level, and neither exit exhaustive."""
        return coarse <= 0 and self.n_candidates(i) > exhaustive and self.n_candidates(j) > exhaustive

    def pair_grids(self, st: HardState, i: int, j: int, *, local: int = 32, coarse: int = 96,
                   exhaustive: int = 256):
        """The candidate grids ``(grid_i, grid_j)`` that :meth:`sweep_pair` searches."""
        if self._windowed(i, j, coarse, exhaustive):
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
        if self._windowed(i, j, coarse, exhaustive):
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
        at_j = int(prep["depth"][j + 1])  # sub[at_j:] go from i to j itself
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
