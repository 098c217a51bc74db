"""Confidence measures over per-exit class distributions (paper, eq. 1 and after).

Every measure maps one exit's output for one sample to a real number, higher
meaning more confident, and knows its range ``S`` (the box the tuner projects
onto). Inputs are processed in chunks of samples by the I/O layer, so these
functions take ``(..., C)`` arrays and reduce the last axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _max_softmax(logp: np.ndarray) -> np.ndarray:
    return np.exp(logp.max(axis=-1))


def _neg_entropy(logp: np.ndarray) -> np.ndarray:
    p = np.exp(logp)
    # p * log p -> 0 as p -> 0; exp underflow to 0 makes the product 0 already,
    # but -inf log-probabilities (from probs inputs with zeros) need masking.
    terms = np.where(p > 0, p * np.where(np.isfinite(logp), logp, 0.0), 0.0)
    return terms.sum(axis=-1)


def _margin(logp: np.ndarray) -> np.ndarray:
    if logp.shape[-1] < 2:
        return np.ones(logp.shape[:-1])
    top2 = np.partition(logp, -2, axis=-1)[..., -2:]
    return np.exp(top2[..., 1]) - np.exp(top2[..., 0])


@dataclass(frozen=True)
class Measure:
    """A confidence measure: its name, how to compute it, and its range S."""

    name: str
    description: str
    compute: Callable[[np.ndarray], np.ndarray] | None
    range_for: Callable[[int], tuple[float, float]] | None

    def box(self, n_classes: int) -> tuple[float, float]:
        if self.range_for is None:
            raise ValueError(f"measure {self.name!r} has no closed-form range")
        return self.range_for(n_classes)


MEASURES: dict[str, Measure] = {
    "max_softmax": Measure(
        "max_softmax",
        "largest class probability (softmax response); S = [1/C, 1]",
        _max_softmax,
        lambda c: (1.0 / c, 1.0),
    ),
    "entropy": Measure(
        "entropy",
        "negative entropy sum_y p_y log p_y in nats (eq. 1); S = [-log C, 0]",
        _neg_entropy,
        lambda c: (-float(np.log(c)), 0.0),
    ),
    "margin": Measure(
        "margin",
        "top-1 minus top-2 class probability; S = [0, 1]",
        _margin,
        lambda c: (0.0, 1.0),
    ),
    "scores": Measure(
        "scores",
        "precomputed confidences stored in /scores; S = their observed range",
        None,
        None,
    ),
}

COMPUTED_MEASURES = tuple(name for name, m in MEASURES.items() if m.compute is not None)


def get_measure(name: str) -> Measure:
    try:
        return MEASURES[name]
    except KeyError:
        raise ValueError(
            f"unknown confidence measure {name!r}; choose one of {', '.join(MEASURES)}"
        ) from None


def confidence_and_correct(logp: np.ndarray, labels: np.ndarray, measure: str):
    """Confidence and top-1 correctness from log-probabilities.

    Parameters
    ----------
    logp : ndarray, shape (N, B, C)
        Per-exit log class probabilities for a chunk of B samples.
    labels : ndarray of int, shape (B,)
    measure : str
        One of :data:`COMPUTED_MEASURES`.

    Returns
    -------
    scores : ndarray, shape (N, B), float64
    correct : ndarray, shape (N, B), bool
    """
    m = get_measure(measure)
    if m.compute is None:
        raise ValueError(f"measure {measure!r} cannot be computed from class outputs")
    scores = m.compute(logp)
    correct = logp.argmax(axis=-1) == np.asarray(labels)[None, :]
    return scores, correct
