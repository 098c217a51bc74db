"""Tuning for many budgets at once: neighbouring budgets warm-start each other, on several cores.

The budgets are sorted and cut into ``jobs`` contiguous runs of neighbours;
every run is solved in order, each budget after the first with ``init`` = the
thresholds of the next smaller budget (Algorithm 1 starts there, and they join
the polish's starts), and the runs go to separate processes.  With ``jobs=1``
everything happens in this process.  Results do not depend on the order in
which the processes finish, only on ``jobs`` (which budgets start a run).
"""

from __future__ import annotations

import multiprocessing
import os

import numpy as np

from ..errors import InfeasibleBudgetError
from .tuner import TuneResult, tune

__all__ = ["available_cores", "tune_frontier"]

# the arrays a forked worker reads (inherited, not pickled)
_SHARED: dict = {}


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _run(budgets, kwargs, progress=None):
    out = []
    prev = None
    for b in budgets:
        try:
            r = tune(_SHARED["scores"], _SHARED["correct"], _SHARED["costs"], b, init=prev, **kwargs)
        except InfeasibleBudgetError as exc:
            out.append(exc)  # the next budget starts afresh
            prev = None
        else:
            prev = r.thresholds
            out.append(r)
        if progress is not None:
            progress()
    return out


def tune_frontier(scores, correct, costs, budgets, *, jobs: int = 1, progress=None,
                  **kwargs) -> list[TuneResult]:
    """:func:`~eexit_cli.core.tuner.tune` for every budget, neighbours warm-starting each other.

    Parameters
    ----------
    scores, correct, costs
        As for :func:`~eexit_cli.core.tuner.tune`.
    budgets : sequence of float
        Sorted increasing (as the frontier reports them).
    jobs : int
        Processes to use (at most one per budget); 1 solves in this process.
    progress : callable(done, total), optional
    **kwargs
        Passed to :func:`~eexit_cli.core.tuner.tune` (not ``init``).

    Returns
    -------
    list of TuneResult, in the order of ``budgets``; a budget that cannot be met has
    its :class:`~eexit_cli.errors.InfeasibleBudgetError` in its place.
    """
    budgets = [float(b) for b in budgets]
    if any(b2 < b1 for b1, b2 in zip(budgets, budgets[1:])):
        raise ValueError("budgets must be sorted increasing")
    if "init" in kwargs:
        raise ValueError("tune_frontier chooses init itself (the neighbouring budget's thresholds)")
    try:
        jobs = int(jobs)
    except (TypeError, ValueError):
        jobs = 0
    if jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    total = len(budgets)
    jobs = min(jobs, total) if total else 1
    done = [0]

    def tick():
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    _SHARED.update(scores=scores, correct=correct, costs=costs)
    try:
        if jobs == 1 or "fork" not in multiprocessing.get_all_start_methods():
            return _run(budgets, kwargs, tick)
        runs = [list(r) for r in np.array_split(np.asarray(budgets), jobs)]
        ctx = multiprocessing.get_context("fork")
        from concurrent.futures import ProcessPoolExecutor, as_completed

        results: dict = {}
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_run, run, kwargs): k for k, run in enumerate(runs)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                for _ in runs[futures[fut]]:
                    tick()
        return [r for k in range(len(runs)) for r in results[k]]
    finally:
        _SHARED.clear()
