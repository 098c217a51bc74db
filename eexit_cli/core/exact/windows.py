"""The window tables: pair sweeps over windows of candidates around the current state.

On the window level of the pair-grid search (``coarse = 0``) every pair ``(i, j)``
is searched over ``local`` candidates on each side of the current ones.  The
tables of one state and threshold ``i`` are made for every ``j`` at once, each
as a function of the candidate at ``i`` plus one of the candidate at ``j`` plus
rectangles for the few samples ranked inside both windows; they are kept until
another state or ``i`` is swept.
"""

from __future__ import annotations

import numpy as np

from .problem import HardState
from .tables import _histograms, _pair_index, _prefix, _prefixes


class _Windows:
    """Window sweeps, mixed into :class:`~eexit_cli.core.exact.HardProblem`."""

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
        wt = {"key": (st._cache["serial"], i, local), "lab": {int(j): t for t, j in enumerate(js)}}
        if u.size == 0:  # nobody can change: no table beats st
            wt["better"] = np.zeros(nj, dtype=bool)
            return wt
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
        c1 += _prefixes(corr_lab, corr_rho, corr_w, nj, ki)
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
        big_g = _prefixes(lab[g], rho_i[g], d2[:, g], nj, ki)  # rho_i <= a
        big_g += c1
        f = np.flatnonzero(f_sel)
        h = _histograms(lab[f] * (nq * (kk + 1)) + rho_j[f], d2[:, f], kk + 1, nj * nq * (kk + 1))
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
        wt.update(gi=gi, lo_j=lo_j, kj=kj, g=big_g, f=big_f, rects=rects)
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
