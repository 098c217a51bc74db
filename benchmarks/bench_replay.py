"""Hard-threshold replay speed on the reference exit outputs.

    python benchmarks/bench_replay.py [--repeat 200]

Prints, per model, the median time of one `eexit_cli.core.replay.replay_checked`
call ("checked": exit search and per-exit statistics on arrays checked where
they entered, the path of the reader's outputs through tune and evaluate) and
of one public `replay` call (which also reads the early exits' scores for NaN), next
to other formulations measured in the same run, interleaved (read the ratios:
the machine is shared):
- "mask loop": the plainest fast form, one pass per exit over boolean masks of
  the samples still undecided, computing accuracy and mean latency only (no
  input checks, no per-exit statistics): the yardstick, checked / mask loop
  should stay below 1.5;
- "argmax": the first-exit search as an argmax over a boolean (N-1, M) array;
- "per-sample loop": a Python loop over samples and exits (timed on 2,000 samples
  and scaled to M), the reference the tests compare results against.
The spread is the interquartile range of the ratio over the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from eexit_cli.core.replay import check_problem, replay, replay_checked

from refdata import load_costs, load_split, require


def mask_loop(scores, correct, thresholds, costs):
    n, m = scores.shape
    alive = np.ones(m, dtype=bool)
    hits, total = 0, 0.0
    for i in range(n - 1):
        leave = alive & (scores[i] > thresholds[i])
        k = np.count_nonzero(leave)
        hits += np.count_nonzero(leave & correct[i])
        total += k * costs[i]
        alive &= ~leave
    hits += np.count_nonzero(alive & correct[-1])
    total += np.count_nonzero(alive) * costs[-1]
    return hits / m, total / m


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
    print(f"{'model':8} {'N x M':>10} {'checked ms':>10} {'mask loop ms':>12} {'ratio (IQR)':>18} "
          f"{'replay ms':>9} {'ratio (IQR)':>18} {'argmax ms':>9} {'per-sample ms':>14}")
    for name in ("alex", "scan", "msd"):
        scores, correct = load_split(name, "val")
        costs = load_costs(name)
        n, m = scores.shape
        thresholds = np.quantile(scores[:-1], 0.4, axis=1)
        scores, correct, costs = check_problem(scores, correct, costs)
        ours = replay(scores, correct, thresholds, costs)
        checked = replay_checked(scores, correct, thresholds, costs)
        assert checked.accuracy == ours.accuracy and checked.mean_latency == ours.mean_latency
        for fn in (mask_loop, full_matrix):
            ref = fn(scores, correct, thresholds, costs)
            assert np.isclose(ours.accuracy, ref[0]) and np.isclose(ours.mean_latency, ref[1])
        t_ours, t_pub, t_mask, ratios, pub_ratios = [], [], [], [], []
        for _ in range(args.repeat):  # interleaved, one call each
            a = timeit(lambda: replay_checked(scores, correct, thresholds, costs), 1)
            b = timeit(lambda: mask_loop(scores, correct, thresholds, costs), 1)
            p = timeit(lambda: replay(scores, correct, thresholds, costs), 1)
            t_ours.append(a)
            t_mask.append(b)
            t_pub.append(p)
            ratios.append(a / b)
            pub_ratios.append(p / b)
        t_fm = timeit(lambda: full_matrix(scores, correct, thresholds, costs), args.repeat)
        sub = min(m, 2000)
        t_ps = timeit(lambda: per_sample(scores[:, :sub], correct[:, :sub], thresholds, costs), 3) * m / sub
        q1, q2, q3 = np.percentile(ratios, [25, 50, 75])
        p1, p2, p3 = np.percentile(pub_ratios, [25, 50, 75])
        print(f"{name:8} {f'{n}x{m}':>10} {statistics.median(t_ours):10.3f} "
              f"{statistics.median(t_mask):12.3f} {f'{q2:.2f} ({q1:.2f}..{q3:.2f})':>18} "
              f"{statistics.median(t_pub):9.3f} {f'{p2:.2f} ({p1:.2f}..{p3:.2f})':>18} "
              f"{t_fm:9.3f} {t_ps:14.1f}")


if __name__ == "__main__":
    main()
