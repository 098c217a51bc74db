"""Token-scale tuning: time and peak memory against the number of exits N and of samples M.

    python benchmarks/bench_scale.py [--n 5,12,24,32] [--m 1e4,1e5,1e6] [--repeat 1]
                                     [--baseline main --baseline-cases 12x1e4,24x1e4,12x1e5]
                                     [--limit-gb 5]

Every case is one budget at 50% of d_N on a synthetic problem made from
MSDNet's outputs (benchmarks/synth.py: samples resampled, exits interpolated),
tuned with the defaults in a fresh process under ``prlimit --as`` (so that a
run that would grow past the limit fails instead of starving the machine).
Printed per case: wall and CPU time (user + system) of the ``tune`` call, the
peak resident memory of the process and the part of it that the problem's own
arrays take (scores float64 and correct bool, 9 N M bytes, made before the
call), the tuning-split accuracy and hard mean latency / budget by independent
replay.  Then the exponents a, b of a least-squares fit
``CPU time ~ M^a N^b`` (and of the peak memory above the arrays) over the
cases run.  ``--baseline`` runs the given revision's tuner (benchmarks/
baseline.py) on ``--baseline-cases`` too, interleaved with this tree's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time


def hwm_mb():
    # VmHWM starts afresh at exec, unlike ru_maxrss, which keeps the parent's peak
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
sys.path.insert(0, {here!r})
from synth import make
n, m, base = {n}, {m}, {base!r}
s, c, d = make(n, m, seed=0)
rss_data = hwm_mb() * 1024
if base:
    from baseline import load_tune
    tune = load_tune(base)
else:
    from eexit_cli.core.tuner import tune
from eexit_cli.core.replay import replay
budget = 0.5 * d[-1]
r0 = resource.getrusage(resource.RUSAGE_SELF)
w0 = time.perf_counter()
res = tune(s, c, d, budget)
wall = time.perf_counter() - w0
r1 = resource.getrusage(resource.RUSAGE_SELF)
rep = replay(s, c, res.thresholds, d)
print(json.dumps(dict(wall=wall, cpu=(r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime),
                      peak_mb=hwm_mb(), data_mb=9 * n * m / 2**20,
                      before_mb=rss_data / 1024, acc=rep.accuracy, lat=rep.mean_latency / budget,
                      iterations=res.iterations)))
"""


def run_case(n, m, base, limit_gb):
    code = CHILD.format(here=str(HERE), n=n, m=m, base=base)
    cmd = ["prlimit", f"--as={int(limit_gb * 1e9)}", sys.executable, "-c", code]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
        return {"error": tail[0][:60]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fit(rows, key):
    ok = [r for r in rows if "error" not in r and r[key] > 0]
    if len(ok) < 3:
        return float("nan"), float("nan")
    a = np.column_stack([np.ones(len(ok)), np.log([r["m"] for r in ok]), np.log([r["n"] for r in ok])])
    coef, *_ = np.linalg.lstsq(a, np.log([r[key] for r in ok]), rcond=None)
    return float(coef[1]), float(coef[2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", default="5,12,24,32")
    ap.add_argument("--m", default="1e4,1e5,1e6")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--baseline", default=None)
    ap.add_argument("--baseline-cases", default="12x1e4,24x1e4,12x1e5")
    ap.add_argument("--limit-gb", type=float, default=5.0)
    args = ap.parse_args()
    ns = [int(x) for x in args.n.split(",")]
    ms = [int(float(x)) for x in args.m.split(",")]
    base_cases = set()
    if args.baseline:
        for c in args.baseline_cases.split(","):
            n, m = c.split("x")
            base_cases.add((int(n), int(float(m))))
    print(f"{'rev':6} {'N':>3} {'M':>8} {'wall s':>14} {'cpu s':>14} {'peak MB':>8} {'arrays MB':>9} "
          f"{'acc':>8} {'lat/G':>9} {'it':>4}", flush=True)
    rows = []
    for m in ms:
        for n in ns:
            for rev in ["new"] + ([args.baseline] if (n, m) in base_cases else []):
                reps = [run_case(n, m, None if rev == "new" else rev, args.limit_gb)
                        for _ in range(args.repeat)]
                good = [r for r in reps if "error" not in r]
                if not good:
                    print(f"{rev:6} {n:3d} {m:8d}  failed: {reps[0]['error']}", flush=True)
                    continue
                walls = [r["wall"] for r in good]
                cpus = [r["cpu"] for r in good]
                r = dict(good[0], n=n, m=m, wall=float(np.median(walls)), cpu=float(np.median(cpus)),
                         peak_mb=max(g["peak_mb"] for g in good))
                r["extra_mb"] = max(r["peak_mb"] - r["data_mb"], 1.0)
                if rev == "new":
                    rows.append(r)
                spread = f"{min(walls):.1f}..{max(walls):.1f}" if len(walls) > 1 else ""
                print(f"{rev:6} {n:3d} {m:8d} {r['wall']:7.2f} {spread:>6} {r['cpu']:7.2f} "
                      f"{(f'{min(cpus):.1f}..{max(cpus):.1f}' if len(cpus) > 1 else ''):>6} "
                      f"{r['peak_mb']:8.0f} {r['data_mb']:9.0f} {r['acc']:8.5f} {r['lat']:9.6f} "
                      f"{r['iterations']:4d}", flush=True)
    a, b = fit(rows, "cpu")
    c, d = fit(rows, "extra_mb")
    print(f"\nfit over this tree's cases: CPU time ~ M^{a:.2f} N^{b:.2f}; "
          f"peak memory above the arrays ~ M^{c:.2f} N^{d:.2f}")


if __name__ == "__main__":
    main()
