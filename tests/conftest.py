"""Shared fixtures: tiny exit-output HDF5 files and JSON inputs written in ``tmp_path``.

Factories are fixtures so that any test module can ask for them by name:

- ``exit_data(seed=..., n_exits=..., n_samples=..., n_classes=...)`` -> :class:`ExitData`,
  random per-exit logits and labels with the probabilities and confidences derived from
  them by plain numpy (independently of ``eexit_cli.core.confidence``).
- ``exits_file(variant, data=None, measure="max_softmax", ...)`` -> path of an
  ``eexit.exits/v1`` file holding ``data`` as ``/logits``, ``/probs`` or ``/scores``.
- ``h5_file(name, attrs=None, **datasets)`` -> path of an HDF5 file with exactly the
  given datasets (for malformed inputs).
- ``latency_json``, ``thresholds_json``, ``frontier_json``, ``json_file`` -> paths of
  JSON inputs.
- ``refdata`` -> the folder of reference exit outputs, or a skip when it is absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

REFDATA = Path(__file__).resolve().parents[1].parent / "shared" / "refdata"

EXITS_FORMAT = "eexit.exits/v1"


# ---------------------------------------------------------------------------
# Exit outputs
# ---------------------------------------------------------------------------


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def plain_measure(probs: np.ndarray, measure: str) -> np.ndarray:
    """A confidence measure from class probabilities (..., C), written out directly."""
    if measure == "max_softmax":
        return probs.max(axis=-1)
    if measure == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(probs > 0, probs * np.log(probs), 0.0)
        return terms.sum(axis=-1)
    if measure == "margin":
        top = np.sort(probs, axis=-1)
        return top[..., -1] - top[..., -2]
    raise ValueError(f"no plain implementation of measure {measure!r}")


@dataclass(frozen=True)
class ExitData:
    """Per-exit class outputs of one split: logits (N, M, C) and labels (M,)."""

    logits: np.ndarray
    labels: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.logits.shape)

    @property
    def n_exits(self) -> int:
        return self.logits.shape[0]

    @property
    def n_samples(self) -> int:
        return self.logits.shape[1]

    @property
    def n_classes(self) -> int:
        return self.logits.shape[2]

    @property
    def probs(self) -> np.ndarray:
        return _softmax(self.logits.astype(np.float64))

    @property
    def correct(self) -> np.ndarray:
        """(N, M) bool: whether each exit's top-1 class is the label."""
        return self.logits.argmax(axis=-1) == self.labels[None, :]

    def scores(self, measure: str = "max_softmax") -> np.ndarray:
        """(N, M) float64 confidences of ``measure``."""
        return plain_measure(self.probs, measure)


def make_exit_data(seed=0, n_exits=3, n_samples=40, n_classes=5, scale=3.0, depth_gain=0.8):
    """Random logits whose later exits are more often right (like a real early-exit model)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n_samples)
    logits = scale * rng.standard_normal((n_exits, n_samples, n_classes))
    # later exits put more mass on the true class
    boost = depth_gain * scale * np.arange(1, n_exits + 1)[:, None]
    logits[:, np.arange(n_samples), labels] += boost
    return ExitData(logits=logits, labels=labels)


def write_h5(path, attrs=None, **datasets) -> Path:
    """Write an HDF5 file with exactly ``datasets`` (name -> array) and root ``attrs``."""
    path = Path(path)
    with h5py.File(path, "w") as f:
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        for name, value in datasets.items():
            f.create_dataset(name, data=value)
    return path


def write_exits(path, data: ExitData, variant: str = "logits", measure: str = "max_softmax",
                dtype=None, attrs=None) -> Path:
    """Write ``data`` as an ``eexit.exits/v1`` file of the given variant.

    ``logits`` and ``probs`` files hold the class outputs (in ``dtype``, default float64)
    and ``/labels``; a ``scores`` file holds ``measure`` of the same outputs and
    ``/correct`` as uint8, with the root attribute ``confidence = measure``.
    """
    root = {"format": EXITS_FORMAT, **(attrs or {})}
    dtype = np.float64 if dtype is None else dtype
    if variant == "logits":
        return write_h5(path, root, logits=data.logits.astype(dtype), labels=data.labels)
    if variant == "probs":
        return write_h5(path, root, probs=data.probs.astype(dtype), labels=data.labels)
    if variant == "scores":
        root.setdefault("confidence", measure)
        return write_h5(path, root, scores=data.scores(measure).astype(dtype),
                        correct=data.correct.astype(np.uint8))
    raise ValueError(f"unknown variant {variant!r}")


@pytest.fixture
def exit_data():
    """Factory of :class:`ExitData`: ``exit_data(seed=0, n_exits=3, n_samples=40, n_classes=5)``."""
    return make_exit_data


@pytest.fixture
def exits_file(tmp_path):
    """Factory: ``exits_file(variant="logits", data=None, measure=..., dtype=..., name=..., attrs=...)``.

    Without ``data`` it writes ``make_exit_data()``, so files of different variants made
    in one test hold the same outputs.
    """

    def make(variant="logits", data=None, measure="max_softmax", dtype=None, name=None, attrs=None):
        data = make_exit_data() if data is None else data
        name = name or f"{variant}_{measure}.h5"
        return write_exits(tmp_path / name, data, variant, measure, dtype, attrs)

    return make


@pytest.fixture
def h5_file(tmp_path):
    """Factory: ``h5_file(name, attrs=None, **datasets)`` writes exactly those datasets."""

    def make(name="outputs.h5", attrs=None, **datasets):
        return write_h5(tmp_path / name, attrs, **datasets)

    return make


# ---------------------------------------------------------------------------
# JSON inputs
# ---------------------------------------------------------------------------


def latency_dict(per_exit, unit="ms", **extra) -> dict:
    return {"format": "eexit.latency/v1", "unit": unit, "per_exit": [float(x) for x in per_exit], **extra}


def thresholds_dict(thresholds, per_exit, confidence="max_softmax", budget=None, unit="ms",
                    tuning=None, **extra) -> dict:
    out = {
        "format": "eexit.thresholds/v1",
        "confidence": confidence,
        "thresholds": [float(t) for t in thresholds],
        "budget": None if budget is None else float(budget),
        "latency": latency_dict(per_exit, unit),
        **extra,
    }
    if tuning is not None:
        out["tuning"] = tuning
    return out


@pytest.fixture
def json_file(tmp_path):
    """Factory: ``json_file(name, obj)`` writes ``obj`` as JSON; a str is written verbatim."""

    def make(name, obj):
        path = tmp_path / name
        path.write_text(obj if isinstance(obj, str) else json.dumps(obj, indent=2))
        return path

    return make


@pytest.fixture
def latency_json(json_file):
    """Factory: ``latency_json(per_exit, unit="ms", name="latency.json", **extra)``."""

    def make(per_exit, unit="ms", name="latency.json", **extra):
        return json_file(name, latency_dict(per_exit, unit, **extra))

    return make


@pytest.fixture
def thresholds_json(json_file):
    """Factory: ``thresholds_json(thresholds, per_exit, confidence=..., budget=..., unit=...,
    tuning=None, name="thresholds.json")``."""

    def make(thresholds, per_exit, confidence="max_softmax", budget=None, unit="ms", tuning=None,
             name="thresholds.json", **extra):
        return json_file(name, thresholds_dict(thresholds, per_exit, confidence, budget, unit, tuning, **extra))

    return make


@pytest.fixture
def frontier_json(json_file):
    """Factory: ``frontier_json(entries, name="frontier.json")`` for thresholds dicts."""

    def make(entries, name="frontier.json", **extra):
        return json_file(name, {"format": "eexit.frontier/v1", "entries": list(entries), **extra})

    return make


# ---------------------------------------------------------------------------
# Reference data
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def refdata() -> Path:
    """The folder of real exit outputs (``../shared/refdata``); skips when it is absent."""
    if not (REFDATA / "README.md").is_file():
        pytest.skip(f"reference data not available at {REFDATA} (needs the shared data folder)")
    return REFDATA


def random_problem(n_exits, n_samples, seed, ties=False):
    """A random early-exit problem: scores in [0, 1] that grow with depth and ease, correctness
    likelier where the score is high, increasing costs; ``ties`` rounds scores to 2 digits."""
    rng = np.random.default_rng(seed)
    difficulty = rng.random(n_samples)
    scores = np.clip(0.5 * rng.random((n_exits, n_samples)) + 0.5 * (1 - difficulty)
                     + 0.1 * np.arange(n_exits)[:, None] * rng.random((n_exits, n_samples)), 0, 1)
    if ties:
        scores = np.round(scores, 2)
    correct = rng.random((n_exits, n_samples)) < 0.4 + 0.5 * scores
    costs = np.cumsum(rng.uniform(0.3, 1.0, n_exits))
    return scores, correct, costs


def best_of_grid(hp, st, i, j, gi, gj):
    """Brute force over a pair grid: the best feasible state with candidates
    ``gi`` at threshold ``i`` and ``gj`` at ``j`` (``st`` when none beats it)."""
    best = st
    for a in gi:
        for b in gj:
            idx = st.index.copy()
            idx[i], idx[j] = a, b
            cand = hp.state(idx)
            if hp.feasible(cand) and cand.key() > best.key():
                best = cand
    return best


def one_error_line(result):
    """The only non-empty stderr line of a CliRunner result (asserting there is one, no traceback)."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]
