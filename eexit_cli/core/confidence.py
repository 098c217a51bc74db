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


def confidence_from_logits(logits: np.ndarray, measure: str, *, overwrite: bool = False):
    """Confidence and top-1 class straight from logits, without a log-softmax.

    With ``z' = z - max z`` and ``S = sum exp(z')``: max softmax ``= 1 / S``;
    negative entropy ``= sum exp(z') z' / S - log S``; margin
    ``= (1 - exp(z'_2)) / S`` with ``z'_2`` the second largest.  The exponentials
    are taken in the input's precision (float32 for float16/float32 logits,
    float64 for float64 ones) and the sums over classes accumulate in float64,
    so every score is within about 1e-7 relative of the float64 value (the tail
    mass ``S - 1`` too, since the largest class contributes exactly 1 to ``S``).

    Parameters
    ----------
    logits : ndarray, shape (..., C), floating point
    measure : str
        One of :data:`COMPUTED_MEASURES`.
    overwrite : bool
        Work in ``logits`` itself (it becomes ``exp(z')``) instead of a copy.

    Returns
    -------
    scores : ndarray, shape (...), float64
    top1 : ndarray of int, shape (...)
        The predicted class (argmax of the logits).
    """
    if get_measure(measure).compute is None:
        raise ValueError(f"measure {measure!r} cannot be computed from class outputs")
    z = np.asarray(logits)
    if z.dtype not in (np.float32, np.float64):
        z = z.astype(np.float32)
    elif not overwrite:
        z = z.copy()
    top1 = z.argmax(axis=-1)
    # the largest logit read at the argmax: one pass less than a separate max
    z -= np.take_along_axis(z, top1[..., None], axis=-1)
    if measure == "margin":
        if z.shape[-1] < 2:
            return np.ones(z.shape[:-1]), top1
        second = np.partition(z, -2, axis=-1)[..., -2].astype(np.float64)
        np.exp(z, out=z)
        return (1.0 - np.exp(second)) / z.sum(axis=-1, dtype=np.float64), top1
    if measure == "entropy":
        ez = np.exp(z)
        total = ez.sum(axis=-1, dtype=np.float64)
        ez *= z
        return ez.sum(axis=-1, dtype=np.float64) / total - np.log(total), top1
    np.exp(z, out=z)
    return 1.0 / z.sum(axis=-1, dtype=np.float64), top1


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
