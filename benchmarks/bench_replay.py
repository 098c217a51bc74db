"""Hard-threshold replay speed on the reference exit outputs.

    python benchmarks/bench_replay.py [--repeat 200]

Prints, per model, the median time of one `eexit_cli.core.replay.replay` call
(input checks, exit search, per-exit statistics) next to two other formulations
measured in the same run (read the ratios: the machine is shared):
- "bare": the same first-exit search without input checks or per-exit statistics,
  i.e. what the checks and statistics cost;
- "per-sample loop": a Python loop over samples and exits (timed on 2,000 samples
  and scaled to M), the reference the tests compare results against.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from eexit_cli.core.replay import replay

from refdata import load_costs, load_split, require


def full_matrix(scores, correct, thresholds, costs):
    n, m = scores.shape
    leave = np.vstack([scores[:-1] > thresholds[:, None], np.ones((1, m), bool)])
    idx = leave.argmax(axis=0)
    acc = correct[idx, np.arange(m)].mean()
    return acc, costs[idx].mean()


def per_sample(scores, correct, thresholds, costs):
    n, m = scores.shape
    hits = 0
    total = 0.0
    for j in range(m):
        e = n - 1
        for i in range(n - 1):
            if scores[i, j] > thresholds[i]:
                e = i
                break
        hits += bool(correct[e, j])
        total += costs[e]
    return hits / m, total / m


def timeit(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    require()
    print(f"{'model':8} {'N x M':>10} {'eexit ms':>9} {'bare ms':>15} {'ratio':>6} "
          f"{'per-sample ms':>14} {'ratio':>7}")
    for name in ("alex", "scan", "msd"):
        scores, correct = load_split(name, "val")
        costs = load_costs(name)
        n, m = scores.shape
        thresholds = np.quantile(scores[:-1], 0.4, axis=1)
        ours = replay(scores, correct, thresholds, costs)
        fm = full_matrix(scores, correct, thresholds, costs)
        assert np.isclose(ours.accuracy, fm[0]) and np.isclose(ours.mean_latency, fm[1])
        t_ours = timeit(lambda: replay(scores, correct, thresholds, costs), args.repeat)
        t_fm = timeit(lambda: full_matrix(scores, correct, thresholds, costs), args.repeat)
        sub = min(m, 2000)
        t_ps = timeit(lambda: per_sample(scores[:, :sub], correct[:, :sub], thresholds, costs), 3) * m / sub
        print(f"{name:8} {f'{n}x{m}':>10} {t_ours:9.3f} {t_fm:15.3f} {t_fm / t_ours:6.1f} "
              f"{t_ps:14.1f} {t_ps / t_ours:7.0f}")


if __name__ == "__main__":
    main()
