"""Widths of the upper confidence bounds on realistic per-sample latencies.

Per-sample latencies of tuned thresholds take a few discrete values d_n, with
most mass on one or two exits.  For several such exit distributions and
calibration sizes this prints the mean width ``U - mu`` (in units of d_N - d_1)
of each bound over repeated draws with its standard deviation, the share of
draws where ``U < mu`` (should be <= delta), and the time per call.  The default bound in
``eexit_cli.core.bounds`` was chosen from this table.

Run: python benchmarks/bench_bounds.py [--reps 200] [--delta 0.05]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from eexit_cli.core.bounds import BOUNDS

COSTS = np.array([0.32, 0.53, 0.76, 1.0, 1.07])  # relative per-exit latencies of a 5-exit network
EXIT_MIXES = {
    "early-heavy": [0.60, 0.15, 0.10, 0.05, 0.10],
    "spread": [0.30, 0.20, 0.20, 0.10, 0.20],
    "one exit": [0.03, 0.90, 0.04, 0.02, 0.01],
    "first/last": [0.50, 0.00, 0.00, 0.00, 0.50],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--delta", type=float, default=0.05)
    ap.add_argument("--sizes", default="100,300,1000,3000")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    lo, hi = COSTS.min(), COSTS.max()
    rng = np.random.default_rng(0)
    names = list(BOUNDS)
    print(f"delta={args.delta}, reps={args.reps}; width = (U - mu) / (d_N - d_1) as "
          f"mean±sd [miss rate] time per call")
    print(f"{'exit mix':<12} {'n':>5} {'sd/(dN-d1)':>10}  " + "  ".join(f"{n:>32}" for n in names))
    for mix_name, mix in EXIT_MIXES.items():
        p = np.asarray(mix)
        mu = float(p @ COSTS)
        sd = float(np.sqrt(p @ (COSTS - mu) ** 2))
        for n in sizes:
            draws = [COSTS[rng.choice(COSTS.size, size=n, p=p)] for _ in range(args.reps)]
            cells = []
            for name in names:
                fn = BOUNDS[name]
                t0 = time.perf_counter()
                ub = np.array([fn(x, lo, hi, args.delta) for x in draws])
                dt = (time.perf_counter() - t0) / args.reps
                width = (ub - mu) / (hi - lo)
                miss = float(np.mean(ub < mu))
                cells.append(f"{width.mean():.4f}±{width.std():.4f} [{miss:5.3f}] {1e3 * dt:5.2f}ms")
            print(f"{mix_name:<12} {n:>5} {sd / (hi - lo):>10.3f}  " + "  ".join(f"{c:>32}" for c in cells))


if __name__ == "__main__":
    main()
