"""Latency predictions against measured adaptive runs, on the sample models.

    python benchmarks/bench_profile.py [--repeats 5] [--models onnx_cnn,torch_cnn,torch_gru]

For each model, thresholds are tuned on its validation split at budgets of 20%, 50%
and 80% of d_N (from a first staged profile); replaying them on the test split gives
every sample's exit. Then, ``--repeats`` times, in a random order within each repeat
(interleaved), the script
  - profiles the model in staged mode (``eexit profile``'s default) and keeps the raw
    per-call times, from which it computes several per-exit statistics;
  - profiles the "prefix" way (one ONNX graph per exit, no checks; for a PyTorch
    model its ONNX export, which is all one could profile before);
  - runs the model adaptively at each budget: sample by sample, with the thresholds'
    exit schedule, stage after stage with the confidences checked (``eexit check``),
    and measures the mean latency per sample.
For each prediction sum_n p_n d_n it prints the relative error against the measured
mean of the adaptive run of the same repeat: the median over repeats and [min, max].

Statistics of the staged profile compared (STATISTICS below): the median, the plain mean,
trimmed means (0.1%, which is d_n, 1% and 5% cut at each end), the mean of per-round
medians and the median of 5 block means. All on 1 thread. The load average
during the run is printed: read the figures with it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"

from eexit_cli.core.latency_stats import TRIM, trimmed_mean  # noqa: E402
from eexit_cli.core.replay import exit_indices  # noqa: E402
from eexit_cli.core.tuner import tune  # noqa: E402
from eexit_cli.errors import InfeasibleBudgetError  # noqa: E402
from eexit_cli.io.exits import read_exits  # noqa: E402
from eexit_cli.profiling.adaptive import check_adaptive  # noqa: E402
from eexit_cli.profiling.models import open_model  # noqa: E402
from eexit_cli.profiling.record import profile_staged  # noqa: E402

MODELS = {
    "onnx_cnn": (str(SAMPLE / "model.onnx"), "digits", str(SAMPLE / "model.onnx")),
    "onnx_gru": (str(SAMPLE / "digits_gru.onnx"), "digits_gru", str(SAMPLE / "digits_gru.onnx")),
    "torch_cnn": (f"{SAMPLE / 'torch_models.py'}:digits_cnn", "digits", str(SAMPLE / "model.onnx")),
    "torch_gru": (f"{SAMPLE / 'torch_models.py'}:digits_gru", "digits_gru", str(SAMPLE / "digits_gru.onnx")),
    "torch_cnn_fx": (f"{ROOT / 'benchmarks' / 'fx_models.py'}:digits_cnn_forward", "digits",
                     str(SAMPLE / "model.onnx")),
}
BUDGETS = (0.2, 0.5, 0.8)


STATISTICS = {
    "median": lambda x, rounds: np.median(x),
    "mean": lambda x, rounds: x.mean(),
    "trim 0.1%": lambda x, rounds: trimmed_mean(x, 0.001),
    "trim 1%": lambda x, rounds: trimmed_mean(x, 0.01),
    "trim 5%": lambda x, rounds: trimmed_mean(x, 0.05),
    "mean of round medians": lambda x, rounds: np.mean([np.median(r) for r in rounds]) / 1e9,
    "median of 5 block means": lambda x, rounds: np.median(
        [np.mean(np.concatenate([rounds[i] for i in b])) for b in np.array_split(np.arange(len(rounds)),
                                                                                 min(5, len(rounds)))]) / 1e9,
}


def statistics_of(raw_ns) -> dict[str, np.ndarray]:
    """Per-exit candidate statistics (seconds) from raw times [exit][round][call]."""
    out = {name: [] for name in STATISTICS}
    for rounds in raw_ns:
        x = np.sort(np.concatenate([np.asarray(r, dtype=np.float64) for r in rounds])) / 1e9
        for name, f in STATISTICS.items():
            out[name].append(f(x, rounds))
    return {k: np.array(v) for k, v in out.items()}


def run_model(key: str, repeats: int, rng, profile_kw: dict, passes: int) -> list[dict]:
    spec, data_name, prefix_spec = MODELS[key]
    val = read_exits(SAMPLE / f"{data_name}_val.h5", confidence="max_softmax")
    test = read_exits(SAMPLE / f"{data_name}_test.h5", confidence="max_softmax")
    first = profile_staged(open_model(spec), **profile_kw)
    d0 = np.array(first.per_exit)
    schedules, runners = {}, {}
    for b in BUDGETS:
        try:
            res = tune(val.scores, val.correct, d0, b * d0[-1])
        except InfeasibleBudgetError:
            print(f"  {key}: budget {b:.0%} of d_N is infeasible (d_1/d_N = {d0[0] / d0[-1]:.2f})", file=sys.stderr)
            continue
        schedules[b] = exit_indices(test.scores, res.thresholds)
        runners[b] = open_model(spec, thresholds=res.thresholds)
    staged_model = open_model(spec)
    prefix_model = open_model(prefix_spec, mode="prefix")
    rows = []
    for rep in range(repeats):
        tasks = ["staged", "prefix"] + [("check", b) for b in schedules]
        order = rng.permutation(len(tasks))
        found: dict = {"load": os.getloadavg()[0]}
        for i in order:
            task = tasks[i]
            if task == "staged":
                found["staged"] = statistics_of(profile_staged(staged_model, seed=rep, **profile_kw).raw_ns)
            elif task == "prefix":
                found["prefix"] = statistics_of(profile_staged(prefix_model, seed=rep, **profile_kw).raw_ns)
            else:
                b = task[1]
                r = check_adaptive(runners[b], schedules[b], d0, passes=passes)
                found[b] = (r.fraction, r.measured_mean, r.measured_trimmed_mean)
        for b in schedules:
            p, measured, measured_trim = found[b]
            row = {"model": key, "budget": b, "repeat": rep, "measured": measured,
                   "measured_trimmed": measured_trim, "load": found["load"]}
            row["prefix median"] = float(p @ found["prefix"]["median"])
            for stat, d in found["staged"].items():
                row[f"staged {stat}"] = float(p @ d)
            rows.append(row)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--passes", type=int, default=5, help="passes over the test split per adaptive run")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--models", default="onnx_cnn,torch_cnn,torch_gru,onnx_gru,torch_cnn_fx")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    profile_kw = dict(warmup=20, repeat=50, rounds=args.rounds)
    rows = []
    load_start = os.getloadavg()
    for key in args.models.split(","):
        rows += run_model(key.strip(), args.repeats, rng, profile_kw, args.passes)
    load_end = os.getloadavg()
    preds = ["prefix median"] + [f"staged {name}" for name in STATISTICS]
    print(f"relative error of predicted vs measured mean latency of the adaptive run, {args.repeats} "
          f"interleaved repeats: median [min, max] in %; load average {load_start[0]:.2f} at start, "
          f"{load_end[0]:.2f} at end (2 CPUs)")
    print("columns: " + "; ".join(f"{i + 1} = {p}" for i, p in enumerate(preds)))
    head = f"{'model':13s} {'budget':>6s} {'measured':>10s} " + " ".join(f"{i + 1:>22d}" for i in range(len(preds)))
    print(head)
    for key in args.models.split(","):
        for b in BUDGETS:
            sel = [r for r in rows if r["model"] == key.strip() and r["budget"] == b]
            if not sel:
                continue
            meas = np.array([r["measured"] for r in sel])
            cells = []
            for p in preds:
                err = 100 * (np.array([r[p] for r in sel]) - meas) / meas
                cells.append(f"{np.median(err):+6.1f} [{err.min():+5.1f},{err.max():+5.1f}]")
            print(f"{key:13s} {b:6.0%} {np.median(meas) * 1e6:8.1f}us " + " ".join(f"{c:>22s}" for c in cells))
    trim_err = np.array([100 * (r["measured_trimmed"] - r["measured"]) / r["measured"] for r in rows])
    print(f"measured {100 * TRIM:g}% trimmed mean vs measured mean of the adaptive runs: median {np.median(trim_err):+.1f}%, "
          f"range [{trim_err.min():+.1f}, {trim_err.max():+.1f}]%")


if __name__ == "__main__":
    main()
