"""Every combination of candidate indices, for problems small enough to try them all.

The local searches (:meth:`~eexit_cli.core.exact.HardProblem.trade`,
:meth:`~eexit_cli.core.exact.HardProblem.polish`) move one or two thresholds at
a time, so with four exits or more they can stop short of the best state when
only a move of three thresholds at once improves it.  On tiny problems
:meth:`_Exhaustive.exhaustive` tries every state instead.

How
---
States are enumerated in lexicographic order of their indices, the last
threshold fastest.  For a batch of the prefixes (the indices of every threshold
but the last, ``P`` in all) the samples still on their way after the prefix's
exits, the per-exit counts and the hits so far come from one comparison of the
ranks per exit.  At the last threshold (exit ``L = N - 2``) every candidate at
once: with the samples in rank order, the samples still on their way with rank
``<= k`` (who pass ``L`` and take the last exit) are a running count read at
the start of each rank, and so are their hits at ``L`` and at the last exit.
The time grows as ``P (N + 2) (M + 16) + (6 + 2 R) S`` for ``S`` states, ``N`` exits,
``M`` samples and ``R`` rows (:meth:`_Exhaustive.exhaustive_work`).

Exactness
---------
Counts and hits are exact integers; the means over a batch
(:meth:`_Exhaustive._batch_means`: the terms ``counts / M`` times the costs, summed
in another order) may differ in the last bits from the mean of
:meth:`~._Problem._make` (one dot product per state).  Both lie within
``(N + 2) 2**-52`` times the row's largest cost of the exact mean, so a state is
*surely feasible* when its batch means lie that far twice within the bounds and
*possibly feasible* when they lie within twice that beyond them.  The states kept
are the possibly feasible ones that could beat or tie, exactly, the best surely
feasible state found (in the objective, then its tie-break), one per distinct
outcome (hits and counts, which decide the exact means); they are evaluated
exactly (:meth:`~._Problem.state`) best first, and a state that is not exactly
feasible gives way to the next.  The state returned is exactly feasible and its
key is the largest of every feasible state's; among equal keys the first in the
enumeration wins.
"""

from __future__ import annotations

import numpy as np

from .problem import HardState

#: Largest :meth:`_Exhaustive.exhaustive_work` tried by default.  Over 2 to 13 exits,
#: 2 to 300,000 samples, with and without ties, one or two rows and either objective
#: a unit of work took 1.6 to 4.7 ns (median 2.3), so a search at this size takes
#: about 8 to 23 ms (benchmarks/RESULTS.md, "Exhaustive search on tiny problems"): it
#: admits splits of at most 617 samples with 3 exits (with distinct scores), 67 with
#: 4, 21 with 5, 10 with 6, 6 with 7.
EXHAUSTIVE_WORK = 5_000_000
#: Elements of one batch's largest arrays (samples, or states times rows).
_BATCH = 1 << 16


class _Exhaustive:
    """The exhaustive search, mixed into :class:`~eexit_cli.core.exact.HardProblem`."""

    def exhaustive_work(self, limit: int | None = None) -> int:
        """The work of :meth:`exhaustive` in units of about one operation on one
        sample: ``P (N + 2) (M + 16) + (6 + 2 R) S`` for ``P`` prefixes (the states of
        every threshold but the last), ``S`` states, ``N`` exits, ``M`` samples and
        ``R`` rows (a fit
        of its time, see ``EXHAUSTIVE_WORK``).  A few integer products, stopped
        once past ``limit`` (a value above it is returned then)."""
        n, m = self.n_exits, self.n_samples
        per_prefix = (n + 2) * (m + 16)
        prefixes = 1
        for e in range(n - 2):
            prefixes *= self._values[e].size + 1
            if limit is not None and prefixes * per_prefix > limit:
                return prefixes * per_prefix
        states = prefixes * (self._values[n - 2].size + 1)
        return prefixes * per_prefix + (6 + 2 * self.n_rows) * states

    def exhaustive(self, limit: int = EXHAUSTIVE_WORK) -> HardState | None:
        """The best feasible state over every combination of candidate indices.

        Best by :meth:`HardState.key` (the objective, then its tie-break; the first
        in lexicographic order of the indices among equal keys), feasible exactly as
        :meth:`feasible` decides.  None when :meth:`exhaustive_work` exceeds
        ``limit`` or when no state is feasible.  The state returned becomes current.
        """
        if self.exhaustive_work(limit) > limit:
            return None
        n, m, ne = self.n_exits, self.n_samples, self.n_exits - 1
        last = ne - 1  # the last threshold, whose candidates are taken all at once
        sizes = [self._values[e].size + 1 for e in range(ne)]
        k_last = sizes[last]
        n_prefix = 1
        for s in sizes[:last]:
            n_prefix *= s
        accuracy = self.objective == "accuracy"
        slack = 2.0 * self._mean_rounding
        hi_bound = self.bounds + slack  # possibly feasible below this
        lo_bound = self.bounds - slack  # surely feasible below this
        tol0 = float(slack[0])  # the batch and exact means of row 0 differ by at most this
        rdt = self._ranks.dtype
        order, pos = self._order[last], self._pos[last]
        corr_l = self.correct[last][order]
        corr_n = self.correct[ne][order]
        step = max(1, _BATCH // max(m + 1, k_last * (self.n_rows + 3)))
        ref = None  # (primary, secondary) of the best surely feasible state: higher is better
        kept = []  # arrays (order, hits, counts, lat, outcome code) of the states kept so far
        for p0 in range(0, n_prefix, step):
            p1 = min(p0 + step, n_prefix)
            b = p1 - p0
            pre = np.unravel_index(np.arange(p0, p1), sizes[:last]) if last else ()
            pending = np.ones((b, m), dtype=bool)
            pre_counts = np.empty((b, last), dtype=np.int64)
            hits = np.zeros(b, dtype=np.int64)
            for e in range(last):
                leave = self._ranks[e] > pre[e].astype(rdt)[:, None]
                leave &= pending
                pre_counts[:, e] = np.count_nonzero(leave, axis=1)
                hits += np.count_nonzero(leave & self.correct[e], axis=1)
                pending ^= leave
            # at the last threshold: samples on their way in rank order, running counts
            on = pending[:, order]
            cum = np.zeros((b, m + 1), dtype=np.int64)
            np.cumsum(on, axis=1, out=cum[:, 1:])
            passed = cum[:, pos]  # on their way with rank <= k: they take the last exit
            at_last = passed[:, -1:] - passed  # the others leave at the last threshold
            np.cumsum(on & corr_l, axis=1, out=cum[:, 1:])
            hits_st = hits[:, None] + (cum[:, m:] - cum[:, pos])
            np.cumsum(on & corr_n, axis=1, out=cum[:, 1:])
            hits_st += cum[:, pos]
            hits_st = hits_st.reshape(-1)
            means = self._batch_means(pre_counts, at_last, passed).reshape(self.n_rows, -1)
            maybe = means[0] <= hi_bound[0]
            for r in range(1, self.n_rows):
                maybe &= means[r] <= hi_bound[r]
            if self.min_hits is not None:
                maybe &= hits_st >= self.min_hits
            cand = np.flatnonzero(maybe)
            if cand.size == 0:
                continue
            lat = means[0, cand]
            h = hits_st[cand]
            # the best surely feasible state of the batch (batch means)
            sure = np.all(means[:, cand] <= lo_bound[:, None], axis=0)
            sure = np.flatnonzero(sure)
            if sure.size:
                if accuracy:
                    top = sure[h[sure] == h[sure].max()]
                    best = (int(h[top[0]]), -float(lat[top].min()))
                else:
                    top = sure[lat[sure] == lat[sure].min()]
                    best = (-float(lat[top[0]]), int(h[top].max()))
                if ref is None or best > ref:
                    ref = best
            keep = self._could_tie(h, lat, ref, tol0, accuracy)
            if keep.size:
                at = cand[keep]
                cnt = np.empty((at.size, n), dtype=np.int64)
                cnt[:, :last] = pre_counts[at // k_last]
                cnt[:, last] = at_last.reshape(-1)[at]
                cnt[:, ne] = passed.reshape(-1)[at]
                kept.append((at + p0 * k_last, h[keep], cnt, lat[keep], self._outcome(h[keep], cnt)))
                kept = [self._distinct(kept, ref, tol0, accuracy)]
        if not kept:
            return None
        where, h, cnt, lat = self._distinct(kept, ref, tol0, accuracy)[:4]
        # best first by the batch means; equal ones in enumeration order
        rank = np.lexsort((where, -h, lat) if not accuracy else (where, lat, -h))
        found, found_at = None, None
        for r in rank.tolist():
            if found is not None:
                if accuracy and (h[r] < found.hits or (h[r] == found.hits
                                                       and lat[r] - tol0 > found.mean_latency)):
                    break
                if not accuracy and lat[r] - tol0 > found.mean_latency:
                    break
            idx = np.array(np.unravel_index(int(where[r]), sizes), dtype=np.intp)
            st = self.state(idx)
            if not self.feasible(st):
                continue  # the batch means said possibly: the exact ones say no
            if found is None or st.key() > found.key() or (
                    st.key() == found.key() and where[r] < found_at):
                found, found_at = st, where[r]
        if found is not None and self._current is not found:
            found = self.state(found.index)
        return found

    def _batch_means(self, pre_counts, at_last, passed) -> np.ndarray:
        """The mean of every row over a batch of prefixes and every candidate of the
        last threshold, shape ``(R, P, K)``, from the counts at the exits before it
        (``pre_counts``, ``(P, N - 2)``), at its exit (``at_last``, ``(P, K)``) and at
        the last exit (``passed``, ``(P, K)``): sums of the ``N`` terms ``counts / M``
        times the cost, each within ``(N + 2) 2**-52`` times the row's largest cost of
        the exact mean, as the mean of :meth:`_make` is."""
        m, last = self.n_samples, self.n_exits - 2
        base = (pre_counts / m) @ self.rows[:, :last].T
        f_last, f_passed = at_last / m, passed / m
        out = np.empty((self.n_rows,) + passed.shape)
        for r, row in enumerate(self.rows):
            np.multiply(f_last, row[last], out=out[r])
            out[r] += f_passed * row[last + 1]
            out[r] += base[:, r, None]
        return out

    @staticmethod
    def _could_tie(h, lat, ref, tol0, accuracy) -> np.ndarray:
        """The positions of the states (hits ``h``, batch means of row 0 ``lat``) whose
        exact key could reach that of the state behind ``ref`` (all without one)."""
        if ref is None:
            return np.arange(h.size)
        if accuracy:
            return np.flatnonzero((h > ref[0]) | ((h == ref[0]) & (lat <= -ref[1] + 2.0 * tol0)))
        return np.flatnonzero(lat <= -ref[0] + 2.0 * tol0)

    def _outcome(self, h, cnt) -> np.ndarray:
        """One integer per state for its hits and counts (which decide its exact
        means): the digits of base ``M + 1`` (rows of ``[h, cnt]`` when that
        number does not fit in int64)."""
        m, n = self.n_samples, self.n_exits
        if (m + 1) ** n >= 2 ** 62:
            return np.column_stack((h, cnt))
        code = h.copy()
        for e in range(n - 1):  # the last count follows from the others
            code *= m + 1
            code += cnt[:, e]
        return code

    def _distinct(self, kept, ref, tol0, accuracy):
        """The kept states (``kept``: batches in the order of the enumeration) that could
        still tie ``ref``, one per outcome: the first in the enumeration."""
        where, h, cnt, lat, code = (np.concatenate([k[i] for k in kept]) for i in range(5))
        sel = self._could_tie(h, lat, ref, tol0, accuracy)
        where, h, cnt, lat, code = where[sel], h[sel], cnt[sel], lat[sel], code[sel]
        _, one = np.unique(code, axis=0 if code.ndim == 2 else None, return_index=True)
        one.sort()
        return where[one], h[one], cnt[one], lat[one], code[one]
