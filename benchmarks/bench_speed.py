"""Per-budget solve time against the paper's code, accuracy and budget against another revision.

    python benchmarks/bench_speed.py [--budgets 10] [--repeat 3] [--baseline main]
                                     [--models alex,scan,msd,syn13,syn17]
                                     [--samples 10000]

For every model, ``--budgets`` budgets spread over its sweep range are tuned
with the defaults by this tree's ``tune`` and by the ``--baseline`` revision's
(extracted by benchmarks/baseline.py), alternating new/old per budget and
repeating the whole sweep ``--repeat`` times.  Printed per model: the median
over repeats of the mean per-budget wall and CPU time (with the min..max over
repeats) of both revisions, the speed-up over the paper's code per budget (on
wall time, then on CPU time), the mean tuning-split
accuracy of both revisions and the largest hard mean latency / budget, from an
independent ``replay`` of the returned thresholds.

Models: the reference data (alex, scan, msd) and synthetic 13- and 17-exit
problems of ``--samples`` (default 10,000) samples made from MSDNet's outputs
(benchmarks/synth.py; budgets over MSDNet's sweep range).  The LSTMs' own
validation splits are not known here; 10,000 is the size of the two smaller
reference splits, and larger than the 13-exit LSTM's can be: its dataset
(DSA-19: 19 activities x 8 subjects x 60 segments) holds 9,120 samples in all,
training and test included.  The paper's code was timed on this kind of
machine (NOTES.md): 0.68 s (B-AlexNet), 1.22 s (S-ResNet-18), 13- and 17-exit
LSTMs 0.79 s and 4.51 s, and for MSDNet 2.8 s, the lower figure of a warmed-up
process (5.18 s in a fresh one).  Those are the references; only MSDNet has a
warmed-up figure, the others are the only figures there are.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from baseline import load_tune
from refdata import SWEEPS, load_costs, load_split, require
from synth import make

from eexit_cli.core.replay import replay
from eexit_cli.core.tuner import tune

PAPER = {"alex": 0.68, "scan": 1.22, "msd": 2.8, "syn13": 0.79, "syn17": 4.51}


def problem(name, samples=10_000):
    if name.startswith("syn"):
        s, c, d = make(int(name[3:]), samples, seed=int(name[3:]))
        return s, c, d, SWEEPS["msd"]
    s, c = load_split(name, "val")
    return s, c, load_costs(name), SWEEPS[name]


def timed(fn, *args, **kw):
    w0, c0 = time.perf_counter(), time.process_time()
    r = fn(*args, **kw)
    return r, time.perf_counter() - w0, time.process_time() - c0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", default="main")
    ap.add_argument("--models", default="alex,scan,msd,syn13,syn17")
    ap.add_argument("--samples", type=int, default=10_000,
                    help="samples of the synthetic problems (syn13, syn17)")
    args = ap.parse_args()
    require()
    old_tune = load_tune(args.baseline)
    print(f"{'model':6} {'N x M':>9} {'new s/budget (wall, min..max)':>30} {'cpu':>6} "
          f"{'old wall':>8} {'old cpu':>7} {'paper':>6} {'x paper':>7} {'x cpu':>6} {'acc new':>8} "
          f"{'acc old':>8} {'diff pt':>7} {'max lat/G':>9}")
    for name in args.models.split(","):
        s, c, d, (lo, hi) = problem(name, args.samples)
        budgets = np.linspace(lo, hi, args.budgets)
        tune(s, c, d, budgets[0])  # warm up both, outside the timings
        old_tune(s, c, d, budgets[0])
        walls, cpus, old_walls, old_cpus = [], [], [], []
        acc_new, acc_old, lat = {}, {}, []
        for _ in range(args.repeat):
            w = cpu = ow = oc = 0.0
            for b in budgets:
                r, dw, dc = timed(tune, s, c, d, b)
                o, odw, odc = timed(old_tune, s, c, d, b)
                w, cpu, ow, oc = w + dw, cpu + dc, ow + odw, oc + odc
                rep = replay(s, c, r.thresholds, d)
                acc_new[b] = rep.accuracy
                acc_old[b] = replay(s, c, o.thresholds, d).accuracy
                lat.append(rep.mean_latency / b)
            walls.append(w / budgets.size)
            cpus.append(cpu / budgets.size)
            old_walls.append(ow / budgets.size)
            old_cpus.append(oc / budgets.size)
        wall = statistics.median(walls)
        an, ao = np.mean(list(acc_new.values())), np.mean(list(acc_old.values()))
        spread = f"{wall:.3f} ({min(walls):.3f}..{max(walls):.3f})"
        cpu = statistics.median(cpus)
        print(f"{name:6} {f'{s.shape[0]}x{s.shape[1]}':>9} {spread:>30} "
              f"{cpu:6.3f} {statistics.median(old_walls):8.3f} {statistics.median(old_cpus):7.3f} "
              f"{PAPER[name]:6.2f} {PAPER[name] / wall:7.1f} {PAPER[name] / cpu:6.1f} {an:8.4f} "
              f"{ao:8.4f} {100 * (an - ao):+7.3f} {max(lat):9.6f}", flush=True)


if __name__ == "__main__":
    main()
