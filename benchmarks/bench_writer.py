"""ExitWriter: peak memory and speed of writing a large logits split batch by batch.

    python benchmarks/bench_writer.py [--total-gb 2] [--folder /tmp]

Each configuration runs in a fresh process that builds one batch of random logits
(N=4 exits, C=1000 classes, float32), then appends it to an ExitWriter until the
split holds ``--total-gb`` GB of logits, and reports:

- ``peak - base``: the growth of the process's peak resident memory (ru_maxrss)
  over what it held before writing (interpreter, libraries, the batch itself),
  also as a multiple of the batch's size: what the writer itself needs;
- throughput in MB of logits per second, and the file's size relative to the logits.

The claim checked: the writer's memory is bounded by a few batches, whatever the
split's size (the 2 GB rows against the 0.25 GB rows of the same batch size). The
file is written under ``--folder`` and deleted afterwards; its shape and last batch
are checked before deletion.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

N_EXITS, N_CLASSES = 4, 1000


def _current_rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(total_gb: float, batch_mb: float, compression: str, folder: str) -> dict:
    import h5py
    import numpy as np

    from eexit_cli import ExitWriter

    rng = np.random.default_rng(0)
    per_sample = N_EXITS * N_CLASSES * 4
    b = max(1, int(batch_mb * 2**20 // per_sample))
    n_batches = max(1, int(round(total_gb * 1e9 / (b * per_sample))))
    batch = rng.standard_normal((N_EXITS, b, N_CLASSES), dtype=np.float32)  # no float64 temporary
    batch *= 3
    labels = rng.integers(0, N_CLASSES, b)
    path = os.path.join(folder, f"bench_writer_{os.getpid()}.h5")
    # the peak so far (imports, the batch) is what the process holds now; growth beyond it
    # is the writer's
    base = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, _current_rss())
    t0 = time.perf_counter()
    try:
        with ExitWriter(path, compression=None if compression == "none" else compression) as w:
            for _ in range(n_batches):
                w.append(batch, labels)
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        size = os.path.getsize(path)
        with h5py.File(path, "r") as f:
            ds = f["logits"]
            m = n_batches * b
            assert ds.shape == (N_EXITS, m, N_CLASSES), ds.shape
            assert np.array_equal(ds[:, m - b:, :], batch)
            chunks = ds.chunks
    finally:
        if os.path.exists(path):
            os.unlink(path)
    logits_bytes = n_batches * batch.nbytes
    return {
        "total_gb": logits_bytes / 1e9,
        "batch_mb": batch.nbytes / 2**20,
        "batches": n_batches,
        "compression": compression,
        "base_mb": base / 2**20,
        "growth_mb": (peak - base) / 2**20,
        "growth_batches": (peak - base) / batch.nbytes,
        "mb_per_s": logits_bytes / 1e6 / seconds,
        "size_ratio": size / logits_bytes,
        "seconds": seconds,
        "chunks": list(chunks),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total-gb", type=float, default=2.0, help="size of the large split's logits")
    ap.add_argument("--small-gb", type=float, default=0.25, help="size of the small split's logits")
    ap.add_argument("--folder", default="/tmp", help="where the temporary file is written")
    ap.add_argument("--child", nargs=4, metavar=("GB", "BATCH_MB", "COMPRESSION", "FOLDER"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        gb, mb, comp, folder = args.child
        print(json.dumps(child(float(gb), float(mb), comp, folder)))
        return

    configs = [
        (args.small_gb, 16, "gzip"),
        (args.small_gb, 64, "gzip"),
        (args.total_gb, 64, "gzip"),
        (args.small_gb, 64, "lzf"),
        (args.small_gb, 64, "none"),
        (args.total_gb, 16, "gzip"),
    ]
    print(f"ExitWriter, N={N_EXITS} exits, C={N_CLASSES} classes, float32 logits; one process per row")
    head = f"{'logits GB':>9} {'batch MB':>8} {'batches':>7} {'compr.':>6} {'base MB':>8} " \
           f"{'growth MB':>9} {'x batch':>7} {'MB/s':>6} {'size':>5} {'s':>6}"
    print(head)
    for gb, mb, comp in configs:
        out = subprocess.run([sys.executable, __file__, "--child", str(gb), str(mb), comp, args.folder],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        print(f"{r['total_gb']:9.2f} {r['batch_mb']:8.1f} {r['batches']:7d} {r['compression']:>6} "
              f"{r['base_mb']:8.0f} {r['growth_mb']:9.1f} {r['growth_batches']:7.2f} "
              f"{r['mb_per_s']:6.0f} {r['size_ratio']:5.2f} {r['seconds']:6.1f}", flush=True)


if __name__ == "__main__":
    main()
