"""A 100-budget frontier from the command line: this tree with 1 and 2 processes, another revision.

    python benchmarks/bench_frontier100.py [--model msd] [--budgets 100] [--repeat 2]
                                           [--baseline main]

Runs ``eexit -q tune VAL --latency L --budget LO..HI:K -o F`` over the model's
sweep range, interleaved and repeated: this tree with ``--jobs 1`` and with the
default ``--jobs`` (the cores available), and the ``--baseline`` revision's
command line (benchmarks/baseline.py).  Printed: wall time of the command, CPU
time of it and its workers (user + system), the min..max over repeats, the
mean tuning-split accuracy of the entries and the largest hard mean latency /
budget (by an independent replay of every entry's thresholds).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from baseline import extract
from refdata import REFDATA, SWEEPS, load_costs, load_split, require

from eexit_cli.core.replay import replay

HERE = Path(__file__).resolve().parent


def run(tree, args, out):
    env = {**os.environ, "PYTHONPATH": str(tree)}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "eexit_cli", "-q", *map(str, args), "-o", str(out)],
                   check=True, env=env)
    wall = time.perf_counter() - w0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="msd", choices=sorted(SWEEPS))
    ap.add_argument("--budgets", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--baseline", default="main")
    args = ap.parse_args()
    require()
    val, lat = REFDATA / f"{args.model}_val.h5", REFDATA / f"{args.model}_latency.json"
    lo, hi = (f"{x:g}" for x in SWEEPS[args.model])
    base = ["tune", val, "--latency", lat, "--budget", f"{lo}..{hi}:{args.budgets}"]
    variants = {"jobs=1": (HERE.parent, base + ["--jobs", "1"]),
                "default jobs": (HERE.parent, base),
                args.baseline: (extract(args.baseline), base)}
    s, c = load_split(args.model, "val")
    d = load_costs(args.model)
    stats = {k: {"wall": [], "cpu": []} for k in variants}
    quality = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for name, (tree, cmd) in variants.items():
                out = Path(tmp) / "f.json"
                wall, cpu = run(tree, cmd, out)
                stats[name]["wall"].append(wall)
                stats[name]["cpu"].append(cpu)
                entries = json.loads(out.read_text())["entries"]
                accs, lats = [], []
                for e in entries:
                    rep = replay(s, c, np.array(e["thresholds"], dtype=float), d)
                    accs.append(rep.accuracy)
                    lats.append(rep.mean_latency / e["budget"])
                quality[name] = (float(np.mean(accs)), max(lats))
    print(f"{args.model}: {args.budgets} budgets {lo}..{hi}, {args.repeat} interleaved runs, "
          f"{os.cpu_count()} cores")
    print(f"{'variant':14} {'wall s (min..max)':>20} {'cpu s':>8} {'mean acc':>9} {'max lat/G':>10}")
    for name, st in stats.items():
        w = st["wall"]
        print(f"{name:14} {f'{statistics.median(w):.2f} ({min(w):.2f}..{max(w):.2f})':>20} "
              f"{statistics.median(st['cpu']):8.2f} {quality[name][0]:9.5f} {quality[name][1]:10.6f}")


if __name__ == "__main__":
    main()
