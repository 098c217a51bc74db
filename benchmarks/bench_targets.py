"""Accuracy targets against a dense frontier, and the tail-budget tuner, on the reference models.

    python benchmarks/bench_targets.py [--models alex,scan,msd] [--budgets 200] [--repeat 3]

For each reference model (tuning split = val):

1. A frontier of ``--budgets`` budgets, evenly spaced from the smallest useful budget
   (``min d_n``) to the largest (the mean latency of the most accurate thresholds, as
   ``eexit info`` finds it), each budget warm-started from the previous one's thresholds,
   as ``tune --budget LO..HI:K`` runs it.
2. For accuracy targets ``A`` = last-exit accuracy minus 3, 2, 1, 0.5 and 0 points:
   ``tune_fastest`` (``tune --min-accuracy A``), repeated ``--repeat`` times (median
   time, min-max in brackets), against the cheapest frontier entry with accuracy
   ``>= A``. Accuracy and mean latency of both are recomputed by an independent
   per-sample replay (a plain loop over samples), not taken from the tuner.
   ``lat ratio`` = fastest / cheapest frontier entry (<= 1.005 is the goal).
3. ``tune --tail 95%:X --budget Γ`` at a few (X, Γ): tail and budget checked by replay.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from refdata import load_costs, load_split, require  # noqa: E402

from eexit_cli.core.target import hits_needed, tune_fastest  # noqa: E402
from eexit_cli.core.tail import TailBudget  # noqa: E402
from eexit_cli.core.tuner import tune  # noqa: E402


def plain_replay(scores, correct, thresholds, costs):
    """Hits and per-sample latencies by a loop over samples (independent of eexit's replay)."""
    n_exits, m = scores.shape
    hits, lat = 0, np.empty(m)
    for i in range(m):
        n = n_exits - 1
        for j in range(n_exits - 1):
            if scores[j, i] > thresholds[j]:
                n = j
                break
        hits += bool(correct[n, i])
        lat[i] = costs[n]
    return hits, lat


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="alex,scan,msd")
    ap.add_argument("--budgets", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    require()
    for name in args.models.split(","):
        scores, correct = load_split(name, "val")
        costs = load_costs(name)
        m = scores.shape[1]
        d_min = float(costs.min())
        t0 = time.perf_counter()
        top = tune(scores, correct, costs, float(costs.max()))
        budgets = np.linspace(d_min, top.mean_latency, args.budgets)
        frontier, prev = [], None
        for b in budgets:
            r = tune(scores, correct, costs, float(b), init=prev)
            prev = r.thresholds
            hits, lat = plain_replay(scores, correct, r.thresholds, costs)
            assert lat.mean() <= b * (1 + 1e-12)
            frontier.append((hits, float(lat.mean())))
        t_front = time.perf_counter() - t0
        last = float(correct[-1].mean())
        print(f"-- {name} ({scores.shape[0]} x {m}): frontier of {args.budgets} budgets "
              f"{d_min:.6g}..{top.mean_latency:.6g} in {t_front:.1f} s; last exit {last:.4f}, "
              f"best found {top.accuracy:.4f}")
        print(f"{'target':>8} {'fastest acc':>11} {'fastest lat':>12} {'frontier lat':>12} "
              f"{'lat ratio':>9} {'time s [min-max]':>20}")
        for drop in (0.03, 0.02, 0.01, 0.005, 0.0):
            target = last - drop
            need = hits_needed(target, m)
            times, res = [], None
            for _ in range(args.repeat):
                t1 = time.perf_counter()
                res = tune_fastest(scores, correct, costs, target)
                times.append(time.perf_counter() - t1)
            hits, lat = plain_replay(scores, correct, res.thresholds, costs)
            assert hits >= need, (name, target, hits, need)
            ok = [lt for h, lt in frontier if h >= need]
            cheapest = min(ok) if ok else float("nan")
            print(f"{target:8.4f} {hits / m:11.4f} {lat.mean():12.6g} {cheapest:12.6g} "
                  f"{lat.mean() / cheapest:9.4f} {statistics.median(times):8.2f} "
                  f"[{min(times):.2f}-{max(times):.2f}]")
        print(f"{'tail':>14} {'budget':>10} {'acc':>7} {'p-quantile':>11} {'over/allowed':>13} "
              f"{'mean lat':>10} {'time s':>7}")
        d_n = float(costs[-1])
        for level, x, g in ((0.95, 0.8, None), (0.95, 0.7, 0.6), (0.99, 0.9, 0.65)):
            tb = TailBudget(level, x * d_n)
            budget = None if g is None else g * d_n
            if budget is not None and budget < d_min:
                continue
            t1 = time.perf_counter()
            r = tune(scores, correct, costs, budget, tail=tb)
            dt = time.perf_counter() - t1
            hits, lat = plain_replay(scores, correct, r.thresholds, costs)
            assert tb.holds(lat) and (budget is None or lat.mean() <= budget)
            q = float(np.sort(lat)[int(np.ceil(level * m - 1e-9)) - 1])
            print(f"{tb.label() + ' <= ' + format(x, '.0%'):>14} {'-' if g is None else format(g, '.0%'):>10} "
                  f"{hits / m:7.4f} {q / d_n:10.1%} {tb.over(lat):6d}/{tb.allowed(m):<6d} "
                  f"{lat.mean() / d_n:9.1%} {dt:7.2f}")
        print()


if __name__ == "__main__":
    main()
