"""The timing loop shared by every profiler: warm-up, then rounds of calls in random order.

An adaptive run mixes exits from sample to sample, and caches notice: timing one exit
many times in a row measures a warmer machine than an adaptive run sees (on a 4-stage
PyTorch MLP that under-predicted a mixed run by 16-20%). So within each round every
target (each exit, and the call-overhead reference) gets ``repeat`` calls, and the
order of all those calls is shuffled: the exit is drawn at random for every call.
Each call is timed on its own with ``time.perf_counter_ns`` with the garbage
collector paused; ``sync`` (for CUDA) runs inside the timed span.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class RawTimes:
    """Per-call times in nanoseconds: ``times[target][round]`` is a list of calls."""

    times: list[list[list[int]]]
    rounds_done: int
    wall_time: float


def time_calls(
    calls: Sequence[Callable[[], object]],
    *,
    warmup: int,
    repeat: int,
    rounds: int,
    seed: int,
    time_budget: float | None = None,
    budget_targets: int | None = None,
    sync: Callable[[], None] | None = None,
    progress: ProgressCallback | None = None,
) -> RawTimes:
    """Time ``calls`` (zero-argument callables) in interleaved, shuffled rounds.

    Parameters
    ----------
    calls
        The targets; ``calls[i]()`` is one call of target i.
    warmup
        Untimed calls per target before timing (in target order).
    repeat
        Timed calls per target in each round.
    rounds
        Rounds; within a round the ``repeat * len(calls)`` calls run in random order.
    seed
        Seed of the call order.
    time_budget
        Seconds of timed calls of any one of the first ``budget_targets`` targets after
        which no new round starts (at least one round always runs).
    sync
        Run after each call inside the timed span (e.g. waiting for the GPU).
    progress
        ``progress(done, total)`` after each target's warm-up and each round.
    """
    n_targets = len(calls)
    budget_targets = n_targets if budget_targets is None else budget_targets
    total = n_targets + rounds
    done = 0
    started = time.perf_counter()
    for call in calls:
        for _ in range(warmup):
            call()
        if sync is not None:
            sync()
        done += 1
        if progress is not None:
            progress(done, total)

    rng = np.random.default_rng(seed)
    plan = np.repeat(np.arange(n_targets), repeat)
    times: list[list[list[int]]] = [[] for _ in calls]
    spent_ns = [0] * n_targets
    budget_ns = None if time_budget is None else int(time_budget * 1e9)
    clock = time.perf_counter_ns
    rounds_done = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection in the middle of a timed call is not the model's latency
    try:
        for _ in range(rounds):
            blocks: list[list[int]] = [[] for _ in calls]
            for i in rng.permutation(plan).tolist():
                call = calls[i]
                if sync is None:
                    t0 = clock()
                    call()
                    t1 = clock()
                else:
                    t0 = clock()
                    call()
                    sync()
                    t1 = clock()
                blocks[i].append(t1 - t0)
            for i, block in enumerate(blocks):
                times[i].append(block)
                spent_ns[i] += sum(block)
            rounds_done += 1
            done += 1
            if progress is not None:
                progress(done, total)
            if budget_ns is not None and max(spent_ns[:budget_targets]) >= budget_ns:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return RawTimes(times=times, rounds_done=rounds_done, wall_time=time.perf_counter() - started)


def time_schedule(
    run_to: Callable[[int], object],
    schedule: Sequence[int],
    *,
    passes: int,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Time ``run_to(schedule[m])`` for every sample m, in the data's order, ``passes`` times.

    One untimed pass (``warmup`` of them) comes first. Returns an array (passes, M) of
    nanoseconds.
    """
    schedule = [int(n) for n in schedule]
    for _ in range(warmup):
        for n in schedule:
            run_to(n)
    if sync is not None:
        sync()
    out = np.empty((passes, len(schedule)), dtype=np.int64)
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for p in range(passes):
            row = out[p]
            for m, n in enumerate(schedule):
                t0 = clock()
                run_to(n)
                if sync is not None:
                    sync()
                row[m] = clock() - t0
            if progress is not None:
                progress(p + 1, passes)
    finally:
        if gc_was_enabled:
            gc.enable()
    return out


__all__ = ["RawTimes", "time_calls", "time_schedule"]
