"""What solving the smoothed problem on a subset costs in accuracy, and saves in time.

    python benchmarks/bench_subsample.py [--cases 12x200000,24x200000] [--budgets 3]

For synthetic problems (benchmarks/synth.py) larger than the default subset,
tunes each budget (25%, 50%, 75% of the way from d_1 to d_N) twice, alternating:
with the default ``smooth_samples`` (warm start and Algorithm 1 on a random
subset; repair and polish on every sample) and with ``smooth_samples = M``
(everything on every sample).  Prints CPU time and tuning-split accuracy of
both, and the difference in points.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from synth import make

from eexit_cli.core.tuner import DEFAULT_SMOOTH_SAMPLES, tune


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="12x200000,24x200000")
    ap.add_argument("--budgets", type=int, default=3)
    args = ap.parse_args()
    print(f"{'N':>3} {'M':>8} {'budget/d_N':>10} {'cpu subset':>10} {'cpu all':>8} "
          f"{'acc subset':>10} {'acc all':>8} {'diff pt':>8}")
    diffs = []
    for case in args.cases.split(","):
        n, m = (int(float(x)) for x in case.split("x"))
        s, c, d = make(n, m, seed=1)
        for f in np.linspace(0.25, 0.75, args.budgets):
            b = d[0] + f * (d[-1] - d[0])
            out = {}
            for label, k in (("subset", DEFAULT_SMOOTH_SAMPLES), ("all", m)):
                c0 = time.process_time()
                r = tune(s, c, d, b, smooth_samples=k)
                out[label] = (time.process_time() - c0, r.accuracy)
            diff = 100 * (out["subset"][1] - out["all"][1])
            diffs.append(diff)
            print(f"{n:3d} {m:8d} {b / d[-1]:10.3f} {out['subset'][0]:10.2f} {out['all'][0]:8.2f} "
                  f"{out['subset'][1]:10.5f} {out['all'][1]:8.5f} {diff:+8.3f}", flush=True)
    print(f"mean difference subset - all: {np.mean(diffs):+.3f} pt (min {min(diffs):+.3f}, max {max(diffs):+.3f})")


if __name__ == "__main__":
    main()
