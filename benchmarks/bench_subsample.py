"""Subset sizes of the smoothed problem side by side: per-budget time and tuning-split hits.

    python benchmarks/bench_subsample.py [--cases 13x10000,24x50000,msd] [--seeds 1,2]
        [--budgets 10] [--sizes rule,2048,8192,65536] [--tail 0.99] [--repeat 1]

``tune`` solves the smoothed problem (warm start and Algorithm 1) on a random subset
of the samples (``smooth_samples``; default: the rule of
``eexit_cli.core.tuner.smooth_sample_count``) and repairs and polishes on every
sample.  For each case (``NxM``: a synthetic problem of benchmarks/synth.py, one per
seed; or a reference model ``alex``, ``scan``, ``msd``) and each of ``--budgets``
budgets over MSDNet's (the model's) sweep range, every size of ``--sizes`` is tuned
in turn at the same budget (interleaved; ``rule`` is the default), ``--repeat``
times.  ``--tail p`` adds the tail budget "the p-quantile of latency is at most
the cost of the middle exit" to every budget.

Printed per case and size: the samples used, mean per-budget wall and CPU time
(the min..max over repeats of the mean), and the hits against the LAST size of
``--sizes`` (the reference): mean, smallest and largest per-budget difference, and
on how many budgets it was lower / higher.  Then the same over all cases.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from refdata import SWEEPS, load_costs, load_split
from synth import make

from eexit_cli.core.tail import TailBudget
from eexit_cli.core.tuner import tune


def cases(spec, seeds):
    for case in spec.split(","):
        if case in SWEEPS:
            s, c = load_split(case, "val")
            yield case, s, c, load_costs(case), SWEEPS[case]
            continue
        n, m = (int(float(x)) for x in case.split("x"))
        for seed in seeds:
            s, c, d = make(n, m, seed=seed)
            yield f"{n}x{m} s{seed}", s, c, d, SWEEPS["msd"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="13x10000,17x10000,24x50000,msd")
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--budgets", type=int, default=10)
    ap.add_argument("--sizes", default="rule,2048,8192,65536")
    ap.add_argument("--tail", type=float, default=None)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    sizes = [None if x == "rule" else int(x) for x in args.sizes.split(",")]
    labels = ["rule" if x is None else str(x) for x in sizes]
    seeds = [int(x) for x in args.seeds.split(",")]
    print(f"{'case':14} {'size':>6} {'used':>6} {'wall s/budget (min..max)':>26} {'cpu':>6} "
          f"{'hits diff: mean':>15} {'min':>5} {'max':>5} {'lower':>5} {'higher':>6}")
    total = {lab: [] for lab in labels}
    for name, s, c, d, (lo, hi) in cases(args.cases, seeds):
        m = s.shape[1]
        budgets = np.linspace(lo, hi, args.budgets)
        tail = None if args.tail is None else TailBudget(args.tail, float(d[len(d) // 2]))
        tune(s, c, d, budgets[0], tail=tail)  # warm up, outside the timings
        walls = {lab: [] for lab in labels}
        cpus = {lab: [] for lab in labels}
        hits = {lab: {} for lab in labels}
        used = {}
        for _ in range(args.repeat):
            w = dict.fromkeys(labels, 0.0)
            cp = dict.fromkeys(labels, 0.0)
            for b in budgets:
                for lab, k in zip(labels, sizes):
                    w0, c0 = time.perf_counter(), time.process_time()
                    r = tune(s, c, d, b, tail=tail, smooth_samples=k)
                    w[lab] += time.perf_counter() - w0
                    cp[lab] += time.process_time() - c0
                    hits[lab][b] = int(round(r.accuracy * m))
                    used[lab] = r.params["smooth_samples"]
            for lab in labels:
                walls[lab].append(w[lab] / budgets.size)
                cpus[lab].append(cp[lab] / budgets.size)
        ref = hits[labels[-1]]
        for lab in labels:
            diff = np.array([hits[lab][b] - ref[b] for b in budgets])
            total[lab].extend(100.0 * diff / m)
            wall = statistics.median(walls[lab])
            spread = f"{wall:.3f} ({min(walls[lab]):.3f}..{max(walls[lab]):.3f})"
            print(f"{name:14} {lab:>6} {used[lab]:6d} {spread:>26} {statistics.median(cpus[lab]):6.3f} "
                  f"{diff.mean():+15.2f} {diff.min():+5d} {diff.max():+5d} {np.sum(diff < 0):5d} "
                  f"{np.sum(diff > 0):6d}", flush=True)
    print(f"over all budgets, hits against {labels[-1]} in points of accuracy:")
    for lab in labels:
        x = np.array(total[lab])
        print(f"  {lab:>6}: mean {x.mean():+.4f} (standard error {x.std() / np.sqrt(x.size):.4f}), "
              f"smallest {x.min():+.3f}, largest {x.max():+.3f}, lower at {np.sum(x < 0)} and higher "
              f"at {np.sum(x > 0)} of {x.size} budgets")


if __name__ == "__main__":
    main()
