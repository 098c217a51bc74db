"""Locating and loading the reference exit outputs shared by the benchmark scripts."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

REFDATA = Path(__file__).resolve().parents[1].parent / "shared" / "refdata"
# budget range of the paper's sweep per model (refdata README), in the model's cost unit
SWEEPS = {"alex": (0.0015857, 0.0024395), "scan": (0.375, 0.635), "msd": (4.39e8, 1.066e9)}


def require() -> None:
    """Exit with a clear message when the reference data is not there."""
    if not REFDATA.is_dir():
        raise SystemExit(f"reference data not found at {REFDATA}")


def load_split(name: str, split: str):
    """(scores (N, M) float64, correct (N, M) bool) of one model's split."""
    with h5py.File(REFDATA / f"{name}_{split}.h5", "r") as f:
        return f["scores"][()], f["correct"][()].astype(bool)


def load_costs(name: str) -> np.ndarray:
    """The model's per-exit cost vector d_1..d_N."""
    return np.array(json.loads((REFDATA / f"{name}_latency.json").read_text())["per_exit"])
