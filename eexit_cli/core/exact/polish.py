"""The pair-grid search: exact single and pair sweeps until nothing improves.

:meth:`_PairGrid.polish` alternates sweeps of one threshold over every candidate
(:meth:`~._Sweeps.sweep_one`) with sweeps of two over grids
(:meth:`~._Sweeps.sweep_pair`) in levels from cheap to fine, and prunes the
sweeps that cannot find anything new: a pair or a threshold is not swept again
at an unchanged state, and on a level that has had one full round, neither is a
pair that found nothing there since the last change of a threshold between its
two.  It handles every objective and every constraint row.
"""

from __future__ import annotations

import numpy as np

from .problem import HardState


class _PairGrid:
    """The pair-grid search, mixed into :class:`~eexit_cli.core.exact.HardProblem`."""

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
            return self._singles(st, {}, max_rounds)[0], 1
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
                st, tick = self._singles(st, checked_one, max_rounds, failed_one, touched, tick,
                                         prune=prune_now)
            skip_ones = False
            skipped = 0
            for i, js in by_i.items():
                prep = None

                def pruned(j):  # skipped: found nothing since a threshold from i to j moved
                    return prune_now and failed.get((level, i, j), -1) >= touched[i:j + 1].max()

                for at_j, j in enumerate(js):
                    tag = (st._cache["serial"], level)
                    if checked.get((i, j)) == tag:
                        continue  # swept at this state already
                    if pruned(j):
                        skipped += 1
                        continue
                    if coarse > 0 and (prep is None or prep["serial"] != st._cache["serial"]):
                        prep = self._pair_prep(st, i, local, coarse, exhaustive)
                    window_js = None
                    if coarse <= 0 and not self._window_ready(st, i, j, local):
                        # the window tables of every pair (i, j) still to sweep at this
                        # state come at once
                        window_js = [j2 for j2 in js[at_j:] if self.n_candidates(j2) > exhaustive
                                     and checked.get((i, j2)) != tag and not pruned(j2)]
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

    def _singles(self, st, checked_one, max_rounds, failed=None, touched=None, tick=0,
                 prune=False) -> tuple[HardState, int]:
        """Single sweeps until none improves; returns the state and the tick.
        ``failed``/``touched`` record the tick when each exit's sweep last found
        nothing and when each threshold last changed (every change advances the
        tick); with ``prune``, an exit whose sweep found nothing since its own
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
                        failed[n] = tick
                elif touched is not None:
                    tick += 1
                    touched[new.index != st.index] = tick
                st = new
            if not st.key() > before:
                break
        return st, tick
