"""Reading per-exit outputs of one data split from HDF5 (format ``eexit.exits/v1``).

Three variants (see docs/formats.md): ``/logits`` (N, M, C) or ``/probs`` (N, M, C)
with ``/labels`` (M,), or precomputed ``/scores`` (N, M) with ``/correct`` (N, M).
Class outputs are streamed over samples in chunks, so memory stays bounded
whatever the file's size; what is kept is one confidence and one correctness
bit per exit and sample.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from eexit_cli.core.confidence import (
    COMPUTED_MEASURES,
    confidence_and_correct,
    confidence_from_logits,
    get_measure,
)
from eexit_cli.errors import InputError

FORMAT = "eexit.exits/v1"
CHUNK_BYTES = 32 * 2**20  # class outputs read per chunk (working copy)
PROB_SUM_TOL = 1e-3
MAX_EXPANSION = 1000  # declared dataset size / file size above which the file is damaged


@dataclass(frozen=True)
class ExitOutputs:
    """Per-exit confidences and correctness of one split, ready for replay and tuning."""

    scores: np.ndarray  # (N, M) float64, higher = more confident
    correct: np.ndarray  # (N, M) bool
    confidence: str  # measure name behind ``scores``
    score_range: tuple[float, float]  # the box S of the measure
    variant: str  # "logits", "probs" or "scores"
    path: str = ""
    exit_names: list[str] = field(default_factory=list)
    names_given: bool = False  # exit_names come from the file (not the default exit_1..exit_N)
    n_classes: int | None = None
    labels: np.ndarray | None = None

    @property
    def n_exits(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.scores.shape[1])

    def subset(self, index) -> "ExitOutputs":
        """The same outputs restricted to the samples in ``index``."""
        return ExitOutputs(
            scores=self.scores[:, index],
            correct=self.correct[:, index],
            confidence=self.confidence,
            score_range=self.score_range,
            variant=self.variant,
            path=self.path,
            exit_names=self.exit_names,
            names_given=self.names_given,
            n_classes=self.n_classes,
            labels=None if self.labels is None else self.labels[index],
        )


def _attr_str(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _attr_str(value.item())
    return str(value)


def _key(name) -> str:
    """A dataset name for a message (names that are not UTF-8 shown escaped)."""
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _open(path: str):
    import h5py

    if not os.path.exists(path):
        raise InputError(f"{path}: file not found")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, expected an HDF5 exit-outputs file")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        # h5py says "Unable to ... open file (<detail>)"; the detail is what helps
        text = str(exc)
        detail = text[text.find("(") + 1:text.rfind(")")] if "(" in text else text
        if detail.startswith("truncated file"):
            raise InputError(
                f"{path}: HDF5 file is truncated ({detail}); was it written or copied completely?"
            ) from None
        reason = {"file signature not found": "no HDF5 signature"}.get(detail, detail) or "unreadable"
        raise InputError(
            f"{path}: not a readable HDF5 file ({reason}); expected an exit-outputs file "
            "with /logits, /probs or /scores (see docs/formats.md)"
        ) from None


def _dataset(f, name: str, path: str):
    import h5py

    if name not in f:  # the link; opening the object below reports a damaged header
        return None
    obj = f[name]
    if not isinstance(obj, h5py.Dataset):
        raise InputError(f"{path}: /{name} is a group, expected a dataset")
    return obj


def _check_plausible_size(ds, path: str, name: str) -> None:
    """Refuse a dataset whose declared size the file cannot hold, before reading it.

    A damaged header can declare a shape of billions of samples; reading it would
    allocate and iterate without bound. Real data compresses far less than 1000x.
    """
    declared = int(np.prod(ds.shape, dtype=object)) * ds.dtype.itemsize
    limit = MAX_EXPANSION * max(os.path.getsize(path), 1) + 2**20
    if declared > limit:
        raise InputError(
            f"{path}: /{name} declares shape {ds.shape} ({declared:,} bytes) but the file has only "
            f"{os.path.getsize(path):,} bytes; the file is damaged or its data was never written"
        )


def _read_all(ds, path: str, name: str) -> np.ndarray:
    try:
        return ds[()]
    except (OSError, RuntimeError) as exc:
        raise InputError(f"{path}: dataset /{name} cannot be read ({exc}); is the file truncated?") from None


def _check_finite(arr: np.ndarray, path: str, name: str, offset: int = 0) -> None:
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        where = list(bad)
        if len(where) >= 2:
            where[1] += offset
        raise InputError(
            f"{path}: /{name} contains NaN or Inf (first at index {tuple(int(i) for i in where)})"
        )


def read_exits(path: str | os.PathLike, confidence: str | None = None, chunk_bytes: int = CHUNK_BYTES) -> ExitOutputs:
    """Read one split's per-exit outputs and reduce them to confidences and correctness.

    Parameters
    ----------
    path : path to the HDF5 file.
    confidence : measure to compute from logits/probs (default ``max_softmax``). For a
        ``/scores`` file, None or ``"scores"`` or the file's own ``confidence`` attribute.
    chunk_bytes : size of the slices of class outputs processed at a time.

    Raises
    ------
    InputError
        Naming the file and dataset, for any unusable content.
    """
    path = os.fspath(path)
    with _open(path) as f:
        try:
            return _read(f, path, confidence, chunk_bytes)
        except (OSError, RuntimeError) as exc:
            raise InputError(f"{path}: cannot read the file ({exc}); is it truncated?") from None
        except (KeyError, UnicodeError) as exc:
            # h5py reports damaged object headers and undecodable names this way
            detail = exc.args[0] if exc.args else type(exc).__name__
            raise InputError(f"{path}: damaged HDF5 file ({detail}); was it written completely?") from None


def _read(f, path, confidence, chunk_bytes) -> ExitOutputs:
    fmt = f.attrs.get("format")
    if fmt is not None and _attr_str(fmt) != FORMAT:
        raise InputError(f"{path}: root attribute format is {_attr_str(fmt)!r}, expected {FORMAT!r}")
    present = [n for n in ("logits", "probs", "scores") if _dataset(f, n, path) is not None]
    if not present:
        have = ", ".join("/" + _key(k) for k in f.keys()) or "nothing"
        raise InputError(
            f"{path}: no /logits, /probs or /scores dataset (found {have}); exactly one is required"
        )
    if len(present) > 1:
        raise InputError(
            f"{path}: ambiguous outputs, found {' and '.join('/' + p for p in present)}; keep exactly one"
        )
    variant = present[0]
    names_attr = f.attrs.get("exit_names")
    exit_names = [_attr_str(x) for x in np.atleast_1d(names_attr)] if names_attr is not None else []

    if variant == "scores":
        out = _read_scores(f, path, confidence)
    else:
        out = _read_class_outputs(f, path, variant, confidence, chunk_bytes)
    if exit_names and len(exit_names) != out["scores"].shape[0]:
        raise InputError(
            f"{path}: attribute exit_names has {len(exit_names)} names but the outputs have "
            f"{out['scores'].shape[0]} exits"
        )
    n = out["scores"].shape[0]
    return ExitOutputs(
        variant=variant,
        path=path,
        exit_names=exit_names or [f"exit_{i + 1}" for i in range(n)],
        names_given=bool(exit_names),
        **out,
    )


def _read_labels(f, path, n_samples, required):
    ds = _dataset(f, "labels", path)
    if ds is None:
        if required:
            raise InputError(f"{path}: missing dataset /labels (integer class of each sample, shape (M,))")
        return None
    if ds.ndim != 1:
        raise InputError(f"{path}: /labels must have shape (M,), got {ds.shape}")
    _check_plausible_size(ds, path, "labels")
    if ds.dtype.kind not in "iu":
        raise InputError(f"{path}: /labels must hold integers, got dtype {ds.dtype}")
    if ds.shape[0] != n_samples:
        raise InputError(
            f"{path}: /labels has {ds.shape[0]} samples but the outputs have {n_samples} (M disagrees)"
        )
    return _read_all(ds, path, "labels").astype(np.int64)


def _read_scores(f, path, confidence):
    ds = _dataset(f, "scores", path)
    if ds.ndim != 2:
        raise InputError(f"{path}: /scores must have shape (N exits, M samples), got {ds.shape}")
    if ds.dtype.kind != "f":
        raise InputError(f"{path}: /scores must be floating point, got dtype {ds.dtype}")
    n, m = ds.shape
    _check_plausible_size(ds, path, "scores")
    if n < 2:
        raise InputError(f"{path}: /scores has {n} exit(s); an early-exit model needs at least 2")
    if m == 0:
        raise InputError(f"{path}: the split is empty (0 samples in /scores)")
    cds = _dataset(f, "correct", path)
    if cds is None:
        raise InputError(f"{path}: /scores needs /correct (N, M) 0/1, which is missing")
    if cds.shape != ds.shape:
        raise InputError(f"{path}: /correct has shape {cds.shape}, expected {ds.shape} like /scores")
    _check_plausible_size(cds, path, "correct")
    scores = _read_all(ds, path, "scores").astype(np.float64)
    _check_finite(scores, path, "scores")
    correct_raw = _read_all(cds, path, "correct")
    if correct_raw.dtype.kind not in "biuf" or not np.all((correct_raw == 0) | (correct_raw == 1)):
        raise InputError(f"{path}: /correct must hold only 0 and 1")
    labels = _read_labels(f, path, m, required=False)
    file_measure = _attr_str(f.attrs["confidence"]) if "confidence" in f.attrs else "scores"
    if confidence not in (None, "scores", file_measure):
        raise InputError(
            f"{path}: holds precomputed /scores of measure {file_measure!r}; confidence "
            f"{confidence!r} cannot be computed from it (use a /logits or /probs export)"
        )
    lo, hi = float(scores.min()), float(scores.max())
    return dict(
        scores=scores,
        correct=correct_raw.astype(bool),
        confidence=file_measure,
        score_range=(lo, hi),
        labels=labels,
    )


def _read_class_outputs(f, path, variant, confidence, chunk_bytes):
    measure = confidence or "max_softmax"
    if measure not in COMPUTED_MEASURES:
        raise InputError(
            f"{path}: confidence {measure!r} needs a /scores file; for /{variant} choose one of "
            f"{', '.join(COMPUTED_MEASURES)}"
        )
    ds = _dataset(f, variant, path)
    if ds.ndim != 3:
        raise InputError(f"{path}: /{variant} must have shape (N exits, M samples, C classes), got {ds.shape}")
    if ds.dtype.kind != "f":
        raise InputError(f"{path}: /{variant} must be floating point (float16/32/64), got dtype {ds.dtype}")
    n, m, c = ds.shape
    _check_plausible_size(ds, path, variant)
    if n < 2:
        raise InputError(f"{path}: /{variant} has {n} exit(s); an early-exit model needs at least 2")
    if m == 0:
        raise InputError(f"{path}: the split is empty (0 samples in /{variant})")
    if c < 2:
        raise InputError(f"{path}: /{variant} has {c} class(es); classification needs at least 2")
    labels = _read_labels(f, path, m, required=True)
    if labels.size and (labels.min() < 0 or labels.max() >= c):
        bad = int(np.flatnonzero((labels < 0) | (labels >= c))[0])
        raise InputError(
            f"{path}: /labels[{bad}] = {int(labels[bad])} is outside [0, {c}) for {c} classes"
        )
    scores = np.empty((n, m), dtype=np.float64)
    correct = np.empty((n, m), dtype=bool)
    # logits stay in their own precision (float16 is widened to float32); probs,
    # which need a renormalisation and a logarithm, are worked on in float64
    work = np.float64 if variant == "probs" or ds.dtype == np.float64 else np.float32
    step = max(1, int(chunk_bytes // max(1, n * c * np.dtype(work).itemsize)))
    for start in range(0, m, step):
        stop = min(m, start + step)
        try:
            block = np.asarray(ds[:, start:stop, :], dtype=work)
        except (OSError, RuntimeError) as exc:
            raise InputError(
                f"{path}: /{variant} cannot be read at samples {start}..{stop - 1} ({exc}); is the file truncated?"
            ) from None
        # min and max propagate NaN and reach any infinity: no boolean block needed
        if not (np.isfinite(block.min()) and np.isfinite(block.max())):
            _check_finite(block, path, variant, offset=start)
        if variant == "logits":
            sc, co = confidence_from_logits(block, labels[start:stop], measure)
        else:
            if block.min() < 0 or block.max() > 1 + PROB_SUM_TOL:
                raise InputError(f"{path}: /probs has values outside [0, 1]; did you mean /logits?")
            sums = block.sum(axis=-1)
            off = np.abs(sums - 1.0) > PROB_SUM_TOL
            if np.any(off):
                e, s = np.argwhere(off)[0]
                raise InputError(
                    f"{path}: /probs[{e}, {s + start}] sums to {sums[e, s]:.6g}, not 1 "
                    f"(tolerance {PROB_SUM_TOL}); store raw outputs as /logits instead"
                )
            with np.errstate(divide="ignore"):
                logp = np.log(block / sums[..., None])
            sc, co = confidence_and_correct(logp, labels[start:stop], measure)
        scores[:, start:stop] = sc
        correct[:, start:stop] = co
    return dict(
        scores=scores,
        correct=correct,
        confidence=measure,
        score_range=get_measure(measure).box(c),
        n_classes=c,
        labels=labels,
    )
