"""Reading a large logits file into confidences, against reading the file alone.

    python benchmarks/bench_evaluate_logits.py [--exits 4] [--samples 100000] [--classes 1000]
                                               [--repeat 3] [--baseline main]

Writes a float32 ``/logits`` exit-outputs file of N x M x C values (default
1.6 GB) under /tmp, chunked along samples, and deletes it at the end.  Then,
each in a fresh process, interleaved and repeated (the file is in the page
cache after the first pass, so every variant reads from memory):

- "read": h5py reads the dataset in the slices ``read_exits`` uses, nothing else;
- "new": ``read_exits`` of this tree (max softmax from float32 logits);
- "old": ``read_exits`` of ``--baseline`` (float64 log-softmax of every block).

Printed: median wall and CPU time, the spread (min..max), peak resident
memory, and the ratios to "read".  The scores of "new" and "old" are compared
too (largest absolute difference).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from baseline import extract

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, time


def hwm_mb():
    # VmHWM starts afresh at exec, unlike ru_maxrss, which keeps the parent's peak
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
import numpy as np
path, mode, out = sys.argv[1], sys.argv[2], sys.argv[3]
r0 = resource.getrusage(resource.RUSAGE_SELF)
w0 = time.perf_counter()
if mode == "read":
    import h5py
    from eexit_cli.io.exits import CHUNK_BYTES
    with h5py.File(path, "r") as f:
        ds = f["logits"]
        n, m, c = ds.shape
        step = max(1, CHUNK_BYTES // (n * c * 4))
        for s in range(0, m, step):
            block = ds[:, s:s + step, :]
else:
    from eexit_cli.io.exits import read_exits
    res = read_exits(path)
    np.save(out, res.scores)
wall = time.perf_counter() - w0
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps(dict(wall=wall, cpu=r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime,
                      peak_mb=hwm_mb())))
"""


def write_file(path, n, m, c, seed=0):
    import h5py

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, m)
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "eexit.exits/v1"
        ds = f.create_dataset("logits", shape=(n, m, c), dtype=np.float32, chunks=(n, 256, c))
        step = 4096
        for s in range(0, m, step):
            e = min(m, s + step)
            z = rng.normal(0.0, 2.0, (n, e - s, c)).astype(np.float32)
            # deeper exits more confident about the label
            z[:, np.arange(e - s), labels[s:e]] += np.linspace(1.0, 6.0, n)[:, None].astype(np.float32)
            ds[:, s:e, :] = z
        f["labels"] = labels


def run(mode, path, out, pythonpath):
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    p = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, str(out)],
                       capture_output=True, text=True, env=env, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exits", type=int, default=4)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", default="main")
    args = ap.parse_args()
    old_tree = extract(args.baseline)
    new_tree = HERE.parent
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="eexit_logits_") as tmp:
        tmp = Path(tmp)
        path = tmp / "logits.h5"
        write_file(path, args.exits, args.samples, args.classes)
        size = path.stat().st_size / 1e9
        runs = {"read": [], "new": [], "old": []}
        for _ in range(args.repeat):
            runs["read"].append(run("read", path, tmp / "x.npy", new_tree))
            runs["new"].append(run("new", path, tmp / "new.npy", new_tree))
            runs["old"].append(run("old", path, tmp / "old.npy", old_tree))
        diff = float(np.max(np.abs(np.load(tmp / "new.npy") - np.load(tmp / "old.npy"))))
    print(f"file: {args.exits} x {args.samples} x {args.classes} float32 logits, {size:.2f} GB "
          f"(page cache), {args.repeat} interleaved runs, fresh process each")
    print(f"{'':6} {'wall s (min..max)':>20} {'cpu s':>7} {'peak MB':>8} {'wall / read':>11}")
    read = float(np.median([r["wall"] for r in runs["read"]]))
    for mode, rs in runs.items():
        w = [r["wall"] for r in rs]
        med = float(np.median(w))
        print(f"{mode:6} {f'{med:.2f} ({min(w):.2f}..{max(w):.2f})':>20} "
              f"{np.median([r['cpu'] for r in rs]):7.2f} {max(r['peak_mb'] for r in rs):8.0f} "
              f"{med / read:11.2f}")
    print(f"largest |score new - score old|: {diff:.2e}")


if __name__ == "__main__":
    main()
