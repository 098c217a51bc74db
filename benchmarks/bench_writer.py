"""ExitWriter: peak memory and speed of writing a large logits split batch by batch.

    python benchmarks/bench_writer.py [--total-gb 2] [--small-gb 0.25] [--repeat 3] [--folder /tmp]

Each run is a fresh process that builds one batch of random logits (N=4 exits, C=1000
classes, float32), then appends it to an ExitWriter until the split holds the
requested size of logits. Two tables:

1. Memory, default settings (gzip): for 16 MB and 64 MB batches, a 0.25 GB and a 2 GB
   split. ``growth`` is the rise of the process's peak resident memory (ru_maxrss)
   over what it held before writing (interpreter, libraries, the batch): what the
   writer itself needs, also as a multiple of the batch. The claim checked: it is
   bounded by a few batches, whatever the split's size.
2. Speed by compression (none, lzf, gzip) on the small split, the three run in turn
   ``--repeat`` times (interleaved, so load on the shared machine hits all alike):
   median MB of logits per second with the range, the ratio to no compression, and
   the file's size relative to the logits.

Files are written under ``--folder`` and deleted; each file's shape and last batch are
checked before deletion.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
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


def _run(gb, mb, comp, folder) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(gb), str(mb), comp, folder],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--total-gb", type=float, default=2.0, help="size of the large split's logits")
    ap.add_argument("--small-gb", type=float, default=0.25, help="size of the small split's logits")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the speed comparison")
    ap.add_argument("--folder", default="/tmp", help="where the temporary files are written")
    ap.add_argument("--child", nargs=4, metavar=("GB", "BATCH_MB", "COMPRESSION", "FOLDER"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        gb, mb, comp, folder = args.child
        print(json.dumps(child(float(gb), float(mb), comp, folder)))
        return

    print(f"ExitWriter, N={N_EXITS} exits, C={N_CLASSES} classes, float32 logits; one process per row")
    print("\n1. memory (gzip, the default)")
    print(f"{'logits GB':>9} {'batch MB':>8} {'batches':>7} {'base MB':>8} {'growth MB':>9} {'x batch':>7}")
    for mb in (16, 64):
        for gb in (args.small_gb, args.total_gb):
            r = _run(gb, mb, "gzip", args.folder)
            print(f"{r['total_gb']:9.2f} {r['batch_mb']:8.1f} {r['batches']:7d} {r['base_mb']:8.0f} "
                  f"{r['growth_mb']:9.1f} {r['growth_batches']:7.2f}", flush=True)

    print(f"\n2. speed by compression ({args.small_gb} GB, 64 MB batches, {args.repeat} interleaved rounds)")
    comps = ("none", "lzf", "gzip")
    runs = {c: [] for c in comps}
    for _ in range(args.repeat):
        for c in comps:
            runs[c].append(_run(args.small_gb, 64, c, args.folder))
    base = statistics.median(r["mb_per_s"] for r in runs["none"])
    print(f"{'compr.':>6} {'MB/s median':>11} {'range':>13} {'vs none':>7} {'size':>5}")
    for c in comps:
        speeds = [r["mb_per_s"] for r in runs[c]]
        med = statistics.median(speeds)
        print(f"{c:>6} {med:11.0f} {min(speeds):6.0f}-{max(speeds):<6.0f} {med / base:7.2f} "
              f"{runs[c][0]['size_ratio']:5.2f}", flush=True)


if __name__ == "__main__":
    main()
