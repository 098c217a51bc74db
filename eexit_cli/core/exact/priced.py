"""The priced search: every single-threshold move priced exactly, pair moves predicted.

:meth:`_PricedSearch.trade` (objective "accuracy", one constraint row) prices
every move of one threshold from per-exit histograms by rank of what leaving
rather than passing is worth (:meth:`_PricedSearch._move_hist`, updated between
rounds over the samples whose exit or second exit changed), predicts the best
pair moves by adding two exits' prices under the slack of row 0
(:meth:`_PricedSearch._trades`, over each exit's frontier of moves no other
beats on both counts) and keeps the predicted moves that an exact check
confirms.
"""

from __future__ import annotations

import math
from operator import itemgetter

import numpy as np

from .problem import HardState, _first_true

_GAIN_COST = itemgetter(0, 1)  # a prediction's (gain, -cost)


class _PricedSearch:
    """The priced search, mixed into :class:`~eexit_cli.core.exact.HardProblem`."""

    # the histograms are made afresh rather than updated when the samples ranked
    # between the old and the new candidates of the moved thresholds are more than
    # one in this many
    _rebuild_share = 4

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
        if ne <= 2:
            # two thresholds: only the samples leaving at the first can have a second
            # exit before the last
            e2 = np.full(self.n_samples if sub is None else sub.size, ne, dtype=np.intp)
            if ne == 2:
                first = np.flatnonzero(ex == 0)
                r = self._ranks[1].take(first if sub is None else sub.take(first))
                e2[first[r > index[1]]] = 1
            return e2
        # one comparison of every exit's ranks (the last exit: every sample leaves
        # there), each sample's own exit masked out: before it no sample leaves
        thr = np.zeros(ne + 1, dtype=self._ranks_pad.dtype)
        thr[:ne] = index
        lv = (self._ranks_pad if sub is None else self._ranks_pad.take(sub, axis=1)) > thr[:, None]
        s = lv.shape[1]
        lv.reshape(-1)[ex * s + np.arange(s)] = False
        lv[ne] = True
        return _first_true(lv).astype(np.intp)

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
        # every entry is written below (the ranks at n lie below its candidate count)
        hh, hc = np.empty(off[-1]), np.empty(off[-1])
        # what passing n is worth to the samples reaching it: their exit's hit and cost,
        # or their second exit's for those leaving at n; those are read at n alone, so
        # one array serves every exit, overwritten exit by exit
        pass_h, pass_c = now_h, now_c
        for n, (s, t, a, b) in enumerate(zip(start[:-1].tolist(), start[1:].tolist(),
                                             off[:-1].tolist(), off[1:].tolist())):
            pass_h[s:t] = e2_h[s:t]
            pass_c[s:t] = e2_c[s:t]
            sub = order[s:]
            rk = self._ranks[n].take(sub)
            wh = np.subtract(self.correct[n].take(sub), pass_h[s:])
            wc = np.subtract(ic[n], pass_c[s:])
            hh[a:b] = np.bincount(rk, weights=wh, minlength=b - a)
            hc[a:b] = np.bincount(rk, weights=wc, minlength=b - a)
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
        sub = self._between(old, st.index, moved)
        if sub.size * self._rebuild_share > self.n_samples:
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
            # what a sample adds at exit n: below its exit, leaving at n rather than
            # at its exit; at its exit, leaving there rather than at its second exit.
            # Below both its old and its new exit only what passing is worth changed:
            # there the change is the same at every such n (the hit and the cost of
            # the old exit less those of the new); from there on, take out what the
            # sample added before and put in what it adds now
            lo = np.minimum(old_ex, new_ex)
            col = np.arange(ne)[:, None]
            a = np.flatnonzero(old_ex != new_ex)
            n_a, s_a = np.nonzero(col < lo[a][None, :])
            s_a = a[s_a]
            smp_a = sub[s_a]
            dh_a = cf[old_ex * m + sub].astype(np.float64)
            dh_a -= cf[new_ex * m + sub]
            dc_a = ic[old_ex] - ic[new_ex]
            both = np.concatenate([sub, sub])
            e_all = np.concatenate([old_ex, new_ex])
            p2_all = np.concatenate([old_e2, new_e2])
            lo2 = np.concatenate([lo, lo])
            n_i, s_i = np.nonzero((col <= e_all[None, :]) & (col >= lo2[None, :]))
            smp, e = both[s_i], e_all[s_i]
            p = np.where(e > n_i, e, p2_all[s_i])
            sign = np.where(s_i < sub.size, -1.0, 1.0)
            at = n_i * m
            at += smp  # (n, sample) in the flat rows of every exit
            wc = ic[n_i] - ic[p]
            wc *= sign
            wh = cf.take(at).astype(np.float64)
            p *= m
            p += smp
            wh -= cf.take(p)
            wh *= sign
            at_a = n_a * m
            at_a += smp_a
            flat = off[np.concatenate([n_i, n_a])] \
                + self._ranks_pad.reshape(-1).take(np.concatenate([at, at_a]))
            wh = np.concatenate([wh, dh_a[s_a]])
            wc = np.concatenate([wc, dc_a[s_a]])
            size = hist["hh"].size
            if flat.size <= 2 * size:  # np.add.at costs less than a pass over every candidate
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

    def _tables_of(self, hist: dict, steps=None) -> list:
        """The tables of :meth:`move_tables` from the histograms of :meth:`_move_hist`;
        with ``steps`` (:meth:`_steps_of`) both tables of exit ``n`` are read at
        ``steps[n]`` only (the hits summed over the nonzero entries alone, the costs
        between two steps in one sum each: every sum is an exact integer, so the
        values are the very ones of the full tables)."""
        out = []
        off = hist["off"]
        for n in range(self.n_exits - 1):
            hh, hc = hist["hh"][off[n]:off[n + 1]], hist["hc"][off[n]:off[n + 1]]
            if hist["reach"][n] == 0:
                out.append(None)
                continue
            k0 = int(hist["index"][n])
            if steps is None:
                gh, gc = np.cumsum(hh), np.cumsum(hc)
                h0, c0 = gh[k0], gc[k0]
            else:
                sn = steps[n]
                gh = np.cumsum(hh[sn])
                # the costs of the ranks in (sn[i - 1], sn[i]] in one sum
                cut = np.empty(sn.size, dtype=sn.dtype)
                cut[0] = 0
                np.add(sn[:-1], 1, out=cut[1:])
                gc = np.cumsum(np.add.reduceat(hc[:int(sn[-1]) + 1], cut))
                j0 = int(np.searchsorted(sn, k0, side="right")) - 1
                h0 = gh[j0]
                c0 = gc[j0] + hc[int(sn[j0]) + 1:k0 + 1].sum()
            # moving to k: the samples ranked in (k, k0] start leaving at n (k < k0)
            # or those in (k0, k] stop (k > k0)
            np.subtract(h0, gh, out=gh)
            np.subtract(c0, gc, out=gc)
            out.append((gh, gc))
        return out

    def _step_tables(self, hist: dict) -> tuple[list, list]:
        """``(steps, tables)``: :meth:`_steps_of` and ``_tables_of(hist, steps)``, the
        very same arrays, with the steps and the hits of every exit found at once
        (one running sum over the steps of all exits end to end, each exit's start
        taken off: small integers, exact) and only the costs between two steps
        summed exit by exit (up to the exit's last step)."""
        hh, hc, off = hist["hh"], hist["hc"], hist["off"]
        ne = off.size - 1
        mark = hh != 0
        mark[off[:-1]] = True  # candidate 0 of every exit
        nz = np.flatnonzero(mark)
        cuts = np.searchsorted(nz, off)
        lens = np.diff(cuts)
        first = cuts[:-1]
        loc = nz - np.repeat(off[:-1], lens)  # the steps, exit by exit
        v = hh[nz]
        gh = np.cumsum(v)
        gh -= np.repeat(gh[first] - v[first], lens)
        j0 = np.searchsorted(nz, off[:-1] + hist["index"], side="right") - 1
        dh = np.repeat(gh[j0], lens)
        dh -= gh
        # the costs of the ranks in (loc[i - 1], loc[i]] in one sum (0 at an exit's start)
        cut = np.empty_like(loc)
        cut[1:] = loc[:-1] + 1
        cut[first] = 0
        steps, tables = [], []
        for n, (a, b, o, j, k0, top, r) in enumerate(zip(
                first.tolist(), cuts[1:].tolist(), off.tolist(), j0.tolist(),
                hist["index"].tolist(), loc[cuts[1:] - 1].tolist(), hist["reach"].tolist())):
            steps.append(loc[a:b])
            if r == 0:
                tables.append(None)
                continue
            gc = np.cumsum(np.add.reduceat(hc[o:o + top + 1], cut[a:b]))
            c0 = gc[j - a] + hc[o + int(loc[j]) + 1:o + k0 + 1].sum()
            np.subtract(c0, gc, out=gc)
            tables.append((dh[a:b], gc))
        return steps, tables

    @staticmethod
    def _steps_of(hist: dict) -> list:
        """Per exit, 0 and the candidates ``k >= 1`` where the table of hits changes
        (``dh[k] != dh[k - 1]``: a nonzero histogram entry), ascending; between two
        of them the gain stays what it is at the first (the sums are exact)."""
        hh, off = hist["hh"], hist["off"]
        mark = hh != 0
        mark[off[:-1]] = True  # candidate 0 of every exit
        nz = np.flatnonzero(mark)
        cuts = np.searchsorted(nz, off)
        nz -= np.repeat(off[:-1], np.diff(cuts))
        return [nz[cuts[n]:cuts[n + 1]] for n in range(off.size - 1)]

    @staticmethod
    def _frontier(dh, dc, floor, ceiling, sorted_dc=False, steps=None):
        """The moves of one exit that no other beats on both counts, among those with
        ``dh >= floor`` and ``dc <= ceiling``: ascending ``dc`` with strictly ascending
        ``dh`` (the cheapest move of each gain).  Returns ``(dc, dh, k)``.  ``sorted_dc``:
        ``dc`` is known not to decrease with ``k``; ``steps`` (with ``sorted_dc``): the
        candidates of :meth:`_steps_of`, the only ones that can be on the frontier (at
        any other ``dh`` equals the gain of the one before and ``dc`` is no lower),
        ``dh`` and ``dc`` the tables at them alone (as :meth:`_tables_of` gives them)."""
        if sorted_dc and steps is not None:
            b = int(np.searchsorted(dc, ceiling, side="right"))
            if b:
                pts, v, dc = steps[:b], dh[:b], dc[:b]
                ok = v >= floor
                i = int(np.argmax(ok))
                if ok[i]:
                    v, pts = v[i:], pts[i:]
                    keep = np.empty(v.size, dtype=bool)
                    keep[0] = True
                    np.greater(v[1:], np.maximum.accumulate(v)[:-1], out=keep[1:])
                    return dc[i:][keep], v[keep], pts[keep]
            e = np.zeros(0)
            return e, e, np.zeros(0, dtype=np.intp)
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

    def _trades(self, st: HardState, tables=None, steps=None) -> list:
        """Single and pair moves predicted to improve ``st``, best predicted first, as
        ``(gain, -cost, ((exit, k), ...))``.

        A pair's prediction adds the two exits' single-move tables (it ignores that
        moving ``i`` changes who reaches ``j``) and keeps the best combination whose
        predicted row-0 total stays within its bound: for every frontier move of
        ``i``, the best frontier move of ``j`` that fits in what is left.

        ``steps`` (:meth:`_steps_of`, where row 0 grows with the exit index): the
        tables' gains are read at those candidates only (``_tables_of(hist, steps)``);
        the predictions are the same.
        """
        ne = self.n_exits - 1
        tabs = self.move_tables(st) if tables is None else tables
        b = self._ibound[0]
        slack = (b * (1.0 + 1e-12) if math.isfinite(b) else np.inf) - self._totals(st)[1]
        if steps is not None and self._row0_grows:
            return self._trades_joined(st, tabs, steps, slack)
        # a move of n can be part of an improving pair only if some other exit's best
        # gain makes up for its loss and some other exit's cheapest move pays for it
        # (the current candidate of every exit gains 0 at cost 0)
        # (with costs that grow with k the cheapest move is the first)
        top = [0.0 if tb is None else float(tb[0].max()) for tb in tabs]
        if self._row0_grows:
            low = [0.0 if tb is None else float(tb[1][0]) for tb in tabs]
        else:
            low = [0.0 if tb is None else float(tb[1].min()) for tb in tabs]
        # the best of the other exits: the best of all, or the second for the best itself
        by_top = sorted(range(ne), key=top.__getitem__, reverse=True)
        by_low = sorted(range(ne), key=low.__getitem__)
        fr = []
        for n, tb in enumerate(tabs):
            if tb is None:
                fr.append((np.zeros(1), np.zeros(1), np.array([int(st.index[n])])))
                continue
            if ne > 1:
                floor = -top[by_top[1] if by_top[0] == n else by_top[0]]
                ceiling = slack - low[by_low[1] if by_low[0] == n else by_low[0]]
            else:
                floor, ceiling = 0.0, slack - 0.0
            fr.append(self._frontier(tb[0], tb[1], floor, ceiling, self._row0_grows,
                                     None if steps is None else steps[n]))
        out = []
        for n, (dc, dh, k) in enumerate(fr):
            p = int(np.searchsorted(dc, slack, side="right")) - 1
            if p >= 0 and (dh[p] > 0 or (dh[p] == 0 and dc[p] < 0)):
                out.append((float(dh[p]), -float(dc[p]), ((n, int(k[p])),)))
        # every frontier end to end once; the exits before j are a prefix of it
        sizes = [f[0].size for f in fr]
        starts = [0]
        for z in sizes:
            starts.append(starts[-1] + z)
        all_dc = np.concatenate([f[0] for f in fr])
        all_dh = np.concatenate([f[1] for f in fr])
        all_k = np.concatenate([f[2] for f in fr])
        return self._pairs(out, slack, sizes, starts, all_dc, all_dh, all_k)

    def _trades_joined(self, st: HardState, tabs: list, steps: list, slack: float) -> list:
        """:meth:`_trades` with ``steps`` where row 0 grows with the exit index: every
        exit's frontier (:meth:`_frontier`) found at once over the tables of all exits
        end to end; the same predictions in the same order.

        Along the joined tables, exit ``n``'s gains are lifted by ``n`` times more
        than any two gains differ, so that one running maximum restarts at each
        exit; a move is on its exit's frontier when it lies within the exit's cost
        ceiling (a prefix: the costs grow with ``k``), gains at least the floor and
        more than every cheaper move of its exit."""
        ne = self.n_exits - 1
        hs, cs, ks = [], [], []
        for n, tb in enumerate(tabs):
            if tb is None:  # the current candidate alone, at no gain and no cost
                hs.append(np.zeros(1))
                cs.append(np.zeros(1))
                ks.append(np.array([int(st.index[n])], dtype=np.intp))
            else:
                hs.append(tb[0])
                cs.append(tb[1])
                ks.append(steps[n])
        lens = np.array([h.size for h in hs], dtype=np.intp)
        first = np.zeros(ne, dtype=np.intp)
        np.cumsum(lens[:-1], out=first[1:])
        dh, dc, kk = np.concatenate(hs), np.concatenate(cs), np.concatenate(ks)
        # the best gain of each exit and its cheapest move (the first: costs grow with k)
        top = np.maximum.reduceat(dh, first).tolist()
        low = dc[first].tolist()
        by_top = sorted(range(ne), key=top.__getitem__, reverse=True)
        by_low = sorted(range(ne), key=low.__getitem__)
        floor, ceiling = np.empty(ne), np.empty(ne)
        for n, tb in enumerate(tabs):
            if tb is None:
                floor[n], ceiling[n] = -np.inf, np.inf
            elif ne > 1:
                floor[n] = -top[by_top[1] if by_top[0] == n else by_top[0]]
                ceiling[n] = slack - low[by_low[1] if by_low[0] == n else by_low[0]]
            else:
                floor[n], ceiling[n] = 0.0, slack - 0.0
        ex = np.repeat(np.arange(ne), lens)
        ok = dc <= ceiling[ex]
        ok &= dh >= floor[ex]
        sel = np.flatnonzero(ok)
        # a move below the floor gains less than any that passes it, so the running
        # maximum may leave it out; the gains are integers of size at most n_samples:
        # lifted by exit, one running maximum over all exits is each exit's own
        ex_sel = ex[sel]
        v = dh[sel]
        lift = ex_sel * (4.0 * self.n_samples + 4.0)
        lift += v
        keep = np.empty(sel.size, dtype=bool)
        keep[:1] = True
        np.greater(lift[1:], np.maximum.accumulate(lift)[:-1], out=keep[1:])
        sel, ex_sel = sel[keep], ex_sel[keep]
        all_dc, all_dh, all_k = dc[sel], v[keep], kk[sel]
        sizes = np.bincount(ex_sel, minlength=ne)
        starts = np.zeros(ne + 1, dtype=np.intp)
        np.cumsum(sizes, out=starts[1:])
        # single moves: the last move of each frontier within the slack
        within = np.bincount(ex_sel[all_dc <= slack], minlength=ne)
        out = []
        for n, (a, w) in enumerate(zip(starts[:-1].tolist(), within.tolist())):
            if w:
                p = a + w - 1
                g, c = float(all_dh[p]), float(all_dc[p])
                if g > 0 or (g == 0 and c < 0):
                    out.append((g, -c, ((n, int(all_k[p])),)))
        return self._pairs(out, slack, sizes.tolist(), starts.tolist(), all_dc, all_dh, all_k)

    def _pairs(self, out, slack, sizes, starts, all_dc, all_dh, all_k) -> list:
        """The pair predictions of :meth:`_trades` from the frontiers of every exit
        end to end (exit ``n`` at ``starts[n]:starts[n + 1]``), added to the single
        moves ``out``, all sorted best first."""
        ne = self.n_exits - 1
        # every pair (i < j) at once: for each frontier move of an exit before j (a
        # prefix of the joined frontiers), the last move of j within what is left
        rest = slack - all_dc
        js = [j for j in range(1, ne) if sizes[j] and starts[j]]
        if js:
            # where that move lies among the joined frontiers (starts[j] - 1: none fits)
            pos = [all_dc[starts[j]:starts[j + 1]].searchsorted(rest[:starts[j]], side="right")
                   + (starts[j] - 1) for j in js]
            qlen_a = np.array([starts[j] for j in js], dtype=np.intp)  # the rows of j
            bases = np.cumsum(qlen_a) - qlen_a
            base = int(bases[-1] + qlen_a[-1])
            # the pairs (i < j, i with a frontier), j by j: where each one's rows start
            starts_a = np.asarray(starts[:-1], dtype=np.intp)
            seg_j, seg_i = np.nonzero((np.arange(ne) < np.array(js)[:, None])
                                      & (np.asarray(sizes) > 0))
            bounds = bases[seg_j] + starts_a[seg_i]
            seg_j = np.asarray(js)[seg_j]
            qi = np.arange(base, dtype=np.intp)
            qi -= np.repeat(bases, qlen_a)
            pg = np.concatenate(pos)
            first_j = np.repeat(qlen_a, qlen_a)  # where j's frontier starts: starts[j]
            ok = pg >= first_j
            np.maximum(pg, first_j, out=pg)
            gain = np.where(ok, all_dh[qi] + all_dh[pg], -np.inf)
            cost = all_dc[qi] + all_dc[pg]
            # per pair: the best gain, then the lowest cost, then the first
            lens = np.diff(np.append(bounds, base))
            g_best = np.maximum.reduceat(gain, bounds)
            at_best = gain == np.repeat(g_best, lens)
            c_best = np.minimum.reduceat(np.where(at_best, cost, np.inf), bounds)
            hit = np.flatnonzero(at_best & (cost == np.repeat(c_best, lens)))
            firsts = hit[np.searchsorted(hit, bounds)]
            g_f, c_f = gain[firsts], cost[firsts]
            good = np.flatnonzero((g_f > 0) | ((g_f == 0) & (c_f < 0)))
            fg = firsts[good]
            for i, j, g, c, ki, kj in zip(seg_i[good].tolist(), seg_j[good].tolist(),
                                          g_f[good].tolist(), c_f[good].tolist(),
                                          all_k[qi[fg]].tolist(), all_k[pg[fg]].tolist()):
                out.append((g, -c, ((i, ki), (j, kj))))
        out.sort(key=_GAIN_COST, reverse=True)
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
            if self._row0_grows:
                steps, tables = self._step_tables(hist)
            else:
                steps, tables = None, self._tables_of(hist)
            for _, _, mv in self._trades(st, tables, steps):
                if any(n in used for n, _ in mv):
                    continue
                if moved and misses >= patience:
                    break
                idx = st.index.copy()
                for n, k in mv:
                    idx[n] = k
                self.trades_tried += 1
                new, delta = self._try(st, idx)
                if delta is not None and new.key() > st.key() and self.feasible(new):
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
