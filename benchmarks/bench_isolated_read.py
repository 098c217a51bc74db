"""What reading a split in a child process costs (`eexit_cli.io.isolated`).

    python benchmarks/bench_isolated_read.py [--repeat 7]

`tune` and `evaluate` read the split in a forked child, so that Ctrl-C is answered while
the HDF5 library blocks or loops on a damaged file. This times `read_exits` in this
process against `read_exits_isolated` (fork, read, results back through a pipe) on files
made in a temporary folder: a /scores split of token-level size (32 exits x 1,000,000
samples, 256 MB of float64 scores) and a /logits split (4 exits x 50,000 samples x 100
classes). The two readers alternate within each repetition; the table gives the median,
the spread (min-max) and the ratio of medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from eexit_cli.io.exits import read_exits
from eexit_cli.io.isolated import read_exits_isolated


def make_files(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    scores = folder / "scores_32x1e6.h5"
    with h5py.File(scores, "w") as f:
        f.attrs["format"] = "eexit.exits/v1"
        f["scores"] = rng.random((32, 1_000_000))
        f["correct"] = (rng.random((32, 1_000_000)) < 0.7).astype(np.uint8)
    logits = folder / "logits_4x50000x100.h5"
    with h5py.File(logits, "w") as f:
        f.attrs["format"] = "eexit.exits/v1"
        f["logits"] = rng.standard_normal((4, 50_000, 100)).astype(np.float32)
        f["labels"] = rng.integers(0, 100, 50_000)
    return {"scores 32x1e6": scores, "logits 4x5e4x100": logits}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp))
        print(f"{'file':18} {'in-process s':>22} {'child process s':>22} {'ratio':>6}")
        for name, path in files.items():
            times = {"in": [], "child": []}
            for _ in range(args.repeat):
                for kind, fn in (("in", read_exits), ("child", read_exits_isolated)):
                    t0 = time.perf_counter()
                    out = fn(path)
                    times[kind].append(time.perf_counter() - t0)
                    del out
            med = {k: statistics.median(v) for k, v in times.items()}
            cell = {k: f"{med[k]:.3f} ({min(v):.3f}-{max(v):.3f})" for k, v in times.items()}
            print(f"{name:18} {cell['in']:>22} {cell['child']:>22} {med['child'] / med['in']:6.2f}")


if __name__ == "__main__":
    main()
