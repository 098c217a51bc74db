"""A whole frontier in one `tune` run against separate runs per budget.

    python benchmarks/bench_frontier.py [--model msd] [--budgets 20]

Runs, side by side on the same machine and in the same order of magnitude of time:
- `eexit tune VAL --budget LO..HI:K -o frontier.json` (one process, one read of the
  split, each budget warm-started from its neighbour's thresholds);
- K separate `eexit tune VAL --budget B -o t.json` processes.
Prints wall times, summed solve times (the `tuning.seconds` recorded in the JSON),
their ratios, and how the frontier's entries compare with the separate runs
(accuracy and mean latency on the tuning split).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from refdata import REFDATA, SWEEPS, require


def eexit(*args) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "eexit_cli", "-q", *map(str, args)], check=True)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="msd", choices=sorted(SWEEPS))
    ap.add_argument("--budgets", type=int, default=20)
    args = ap.parse_args()
    require()
    val, lat = REFDATA / f"{args.model}_val.h5", REFDATA / f"{args.model}_latency.json"
    lo, hi = (f"{x:g}" for x in SWEEPS[args.model])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        front = tmp / "frontier.json"
        wall_front = eexit("tune", val, "--latency", lat, "--budget", f"{lo}..{hi}:{args.budgets}", "-o", front)
        entries = json.loads(front.read_text())["entries"]
        wall_sep = 0.0
        separate = []
        for e in entries:
            out = tmp / "t.json"
            wall_sep += eexit("tune", val, "--latency", lat, "--budget", repr(e["budget"]), "-o", out)
            separate.append(json.loads(out.read_text()))
    solve_front = sum(e["tuning"]["seconds"] for e in entries)
    solve_sep = sum(s["tuning"]["seconds"] for s in separate)
    print(f"{args.model}: {args.budgets} budgets from {lo} to {hi}")
    print(f"{'':28} {'frontier':>10} {'separate':>10} {'ratio':>7}")
    print(f"{'wall time, s':28} {wall_front:10.2f} {wall_sep:10.2f} {wall_sep / wall_front:7.2f}")
    print(f"{'summed solve time, s':28} {solve_front:10.2f} {solve_sep:10.2f} {solve_sep / solve_front:7.2f}")
    print()
    print(f"{'budget':>12} {'acc frontier':>12} {'acc separate':>12} {'diff pt':>8} {'lat/Γ front':>11} {'lat/Γ sep':>9}")
    diffs = []
    for e, s in zip(entries, separate):
        d = 100 * (e["tuning"]["accuracy"] - s["tuning"]["accuracy"])
        diffs.append(d)
        print(f"{e['budget']:12.6g} {e['tuning']['accuracy']:12.4f} {s['tuning']['accuracy']:12.4f} {d:+8.3f} "
              f"{e['tuning']['mean_latency'] / e['budget']:11.4f} {s['tuning']['mean_latency'] / s['budget']:9.4f}")
    print(f"accuracy difference frontier - separate: mean {sum(diffs) / len(diffs):+.3f} pt, "
          f"min {min(diffs):+.3f} pt, max {max(diffs):+.3f} pt")


if __name__ == "__main__":
    main()
