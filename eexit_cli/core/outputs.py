"""Per-exit class outputs as arrays: conversion, checks and log-probabilities.

One place for the rules every consumer of class outputs follows, so that the
HDF5 reader, the writers and the serving policy accept the same inputs and
compute the same confidences:

- :func:`as_array` turns numpy arrays, array-likes and torch tensors into numpy
  arrays (torch is only touched when it is already imported, i.e. when a tensor
  can have been passed);
- :func:`check_finite` and :func:`check_class_block` refuse NaN/Inf and
  probabilities outside [0, 1] or not summing to 1;
- :func:`log_probs` gives float64 log class probabilities from logits (stable
  log-softmax) or from probabilities (renormalised rows);
- :func:`class_confidence` gives the confidence and the top-1 class of every
  sample: from logits without a log-softmax (float32 exponentials for float16/32
  logits, :func:`~eexit_cli.core.confidence.confidence_from_logits`), from
  probabilities through :func:`log_probs`.
"""

from __future__ import annotations

import sys

import numpy as np

from .confidence import confidence_from_logits, get_measure, log_softmax

#: Output kinds a class-output array can hold.
CLASS_KINDS = ("logits", "probs")
#: How far a row of probabilities may sum from 1 (rows are renormalised before use).
PROB_SUM_TOL = 1e-3


def is_tensor(x) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def as_array(x, name: str) -> np.ndarray:
    """``x`` as a numpy array; torch tensors are detached and copied to the CPU.

    bfloat16 tensors (which numpy cannot hold) are widened to float32. Raises
    ``TypeError`` naming ``name`` for objects that are not numbers or arrays.
    """
    if is_tensor(x):
        t = x.detach()
        if t.dtype == sys.modules["torch"].bfloat16:
            t = t.float()
        return t.cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (str, bytes, dict, set)) or x is None:
        raise TypeError(f"{name} must be an array or a torch tensor, got {type(x).__name__}")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array or a torch tensor ({exc})") from None
    if arr.dtype == object:
        raise TypeError(
            f"{name} must be a numeric array or a torch tensor, got {type(x).__name__} "
            "that numpy cannot turn into numbers (ragged lists?)"
        )
    return arr


def _index_text(index, offset: int, sample_axis: int | None) -> str:
    where = [int(i) for i in index]
    if sample_axis is not None and where:
        where[sample_axis] += offset
    return str(tuple(where))


def check_finite(arr: np.ndarray, what: str, offset: int = 0, sample_axis: int | None = None) -> None:
    """Raise ``ValueError`` "``what`` contains NaN or Inf (first at index ...)".

    ``offset`` is added to the index along ``sample_axis``, for arrays that are one
    slice of a longer split.
    """
    # min and max propagate NaN and reach any infinity: no boolean array in the common case
    if arr.size and np.isfinite(arr.min()) and np.isfinite(arr.max()):
        return
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{what} contains NaN or Inf (first at index {_index_text(bad, offset, sample_axis)})")


def check_class_block(block: np.ndarray, kind: str, what: str, *, logits_name: str = "logits",
                      offset: int = 0) -> None:
    """Check a block of class outputs (..., samples, C) of ``kind`` "logits" or "probs".

    NaN and Inf are refused; probabilities must lie in [0, 1] and each row must sum
    to 1 within :data:`PROB_SUM_TOL`. ``what`` names the block in messages (e.g.
    ``"val.h5: /probs"``), ``logits_name`` what the user should give instead of
    probabilities that are not probabilities; ``offset`` is the index of the
    block's first sample in the split. Raises ``ValueError``.
    """
    # min and max propagate NaN and reach any infinity: no boolean block in the usual case
    if block.size == 0 or not (np.isfinite(block.min()) and np.isfinite(block.max())):
        check_finite(block, what, offset, sample_axis=block.ndim - 2 if block.ndim >= 2 else None)
    if kind == "logits":
        return
    if kind != "probs":
        raise ValueError(f"kind must be one of {', '.join(CLASS_KINDS)}, got {kind!r}")
    if block.size and (block.min() < 0 or block.max() > 1 + PROB_SUM_TOL):
        raise ValueError(f"{what} has values outside [0, 1]; did you mean {logits_name}?")
    sums = block.sum(axis=-1, dtype=np.float64)
    off = np.abs(sums - 1.0) > PROB_SUM_TOL
    if np.any(off):
        bad = np.argwhere(off)[0]
        sample_axis = sums.ndim - 1
        where = [int(i) for i in bad]
        where[sample_axis] += offset
        raise ValueError(
            f"{what}[{', '.join(map(str, where))}] sums to {sums[tuple(bad)]:.6g}, not 1 "
            f"(tolerance {PROB_SUM_TOL}); store raw outputs as {logits_name} instead"
        )


def log_probs(block: np.ndarray, kind: str) -> np.ndarray:
    """float64 log class probabilities over the last axis of logits or probabilities.

    Logits go through a stable log-softmax; probabilities are renormalised so each
    row sums to 1 (log 0 = -inf is kept: the confidence measures handle it).
    """
    block = np.asarray(block, dtype=np.float64)
    if kind == "logits":
        return log_softmax(block)
    if kind == "probs":
        with np.errstate(divide="ignore"):
            return np.log(block / block.sum(axis=-1, keepdims=True))
    raise ValueError(f"kind must be one of {', '.join(CLASS_KINDS)}, got {kind!r}")


def class_confidence(block: np.ndarray, kind: str, measure: str, *, overwrite: bool = False):
    """Confidence (float64) and top-1 class of every sample of a block (..., C) of class outputs.

    The one computation the reader, ``evaluate`` and the serving policy share, so
    that they agree to the last bit.  ``overwrite`` lets logits be worked on in place.
    """
    if kind == "logits":
        return confidence_from_logits(block, measure, overwrite=overwrite)
    logp = log_probs(block, kind)
    m = get_measure(measure)
    if m.compute is None:
        raise ValueError(f"measure {measure!r} cannot be computed from class outputs")
    return m.compute(logp), logp.argmax(axis=-1)
