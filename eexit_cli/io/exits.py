"""Reading per-exit outputs of one data split from HDF5 (format ``eexit.exits/v1``).

Three variants (see docs/formats.md): ``/logits`` (N, M, C) or ``/probs`` (N, M, C)
with ``/labels`` (M,), or precomputed ``/scores`` (N, M) with ``/correct`` (N, M).
Class outputs are streamed over samples in chunks, so memory stays bounded
whatever the file's size; what is kept is one confidence and one correctness
bit per exit and sample.

The checks are written once, against a *source*: an open HDF5 file, or arrays
given in memory to the writers (:mod:`eexit_cli.io.writer`), which therefore
accept exactly what this reader accepts. Messages name the file and dataset
(``val.h5: /labels ...``) or the function and argument (``write_exits: labels ...``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from eexit_cli.core.confidence import COMPUTED_MEASURES, get_measure
from eexit_cli.core.outputs import PROB_SUM_TOL, check_class_block, check_finite, class_confidence
from eexit_cli.errors import InputError

FORMAT = "eexit.exits/v1"
VARIANTS = ("logits", "probs", "scores")
CHUNK_BYTES = 32 * 2**20  # class outputs read per chunk (working copy)
MAX_EXPANSION = 1000  # declared dataset size / file size above which the file is damaged

__all__ = ["ExitOutputs", "read_exits", "FORMAT", "VARIANTS", "PROB_SUM_TOL"]


@dataclass(frozen=True)
class ExitOutputs:
    """Per-exit confidences and correctness of one split, ready for replay and tuning.

    Attributes
    ----------
    scores : ndarray, shape (N, M), float64
        Confidence of exit n on sample m (higher = more confident).
    correct : ndarray, shape (N, M), bool
        Whether exit n's top-1 class for sample m is the label.
    confidence : str
        The measure behind ``scores`` (``"max_softmax"``, ``"entropy"``, ``"margin"``,
        or the name a ``/scores`` file gives).
    score_range : (float, float)
        The range S of the measure (the observed range for a ``/scores`` file).
    variant : str
        ``"logits"``, ``"probs"`` or ``"scores"``: what the file holds.
    path : str
    exit_names : list of str
    names_given : bool
        Whether the exit names come from the file (not the default ``exit_1 .. exit_N``).
    n_classes : int or None
    labels : ndarray of int, shape (M,), or None
    ignored : int
        Samples left out because their label was ``ignore_index``.
    """

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
    ignored: int = 0

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


def attr_str(value) -> str:
    """An HDF5 attribute as text (bytes decoded, 0-d arrays unwrapped)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return attr_str(value.item())
    return str(value)


def _key(name) -> str:
    """A dataset name for a message (names that are not UTF-8 shown escaped)."""
    if isinstance(name, bytes):
        return name.decode("utf-8", "backslashreplace")
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


# ---------------------------------------------------------------------------
# Sources: where the checks look
# ---------------------------------------------------------------------------


class FileSource:
    """An open HDF5 file; names datasets as ``/name``."""

    noun = "dataset"

    def __init__(self, f, path: str):
        self.f = f
        self.where = path
        self.attrs = f.attrs

    def ref(self, name: str) -> str:
        return "/" + name

    def get(self, name: str):
        import h5py

        if name not in self.f:  # the link; opening the object below reports a damaged header
            return None
        obj = self.f[name]
        if not isinstance(obj, h5py.Dataset):
            raise InputError(f"{self.where}: /{name} is a group, expected a dataset")
        return obj

    def names(self) -> list[str]:
        return [_key(k) for k in self.f.keys()]

    def check_size(self, ds, name: str) -> None:
        """Refuse a dataset whose declared size the file cannot hold, before reading it.

        A damaged header can declare a shape of billions of samples; reading it would
        allocate and iterate without bound. Real data compresses far less than 1000x.
        """
        path = self.where
        declared = int(np.prod(ds.shape, dtype=object)) * ds.dtype.itemsize
        limit = MAX_EXPANSION * max(os.path.getsize(path), 1) + 2**20
        if declared > limit:
            raise InputError(
                f"{path}: /{name} declares shape {ds.shape} ({declared:,} bytes) but the file has only "
                f"{os.path.getsize(path):,} bytes; the file is damaged or its data was never written"
            )


class ArraySource:
    """Arrays given in memory (name -> numpy array, attributes as a dict).

    ``where`` is the function the arrays were given to; ``offset`` the index of the
    first sample in the whole split (for batches appended one after the other).
    """

    noun = "argument"

    def __init__(self, arrays: dict, attrs: dict, where: str, offset: int = 0):
        self.arrays = {k: v for k, v in arrays.items() if v is not None}
        self.attrs = {k: v for k, v in attrs.items() if v is not None}
        self.where = where
        self.offset = offset

    def ref(self, name: str) -> str:
        return name

    def get(self, name: str):
        return self.arrays.get(name)

    def names(self) -> list[str]:
        return list(self.arrays)

    def check_size(self, ds, name: str) -> None:
        """Arrays in memory hold what they declare."""


def _read_all(ds, src, name: str) -> np.ndarray:
    try:
        return np.asarray(ds[()])
    except (OSError, RuntimeError) as exc:
        raise InputError(f"{src.where}: dataset /{name} cannot be read ({exc}); is the file truncated?") from None


def _check(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except ValueError as exc:
        raise InputError(str(exc)) from None


# ---------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------


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


def check_path(path, name: str = "path") -> str:
    """``path`` as a str; ``TypeError`` naming the argument for anything else."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path (str or os.PathLike), got {type(path).__name__}")
    return os.fspath(path)


def _check_ignore_index(ignore_index) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(f"ignore_index must be an integer label (e.g. -100) or None, got {ignore_index!r}")
    return int(ignore_index)


def read_exits(path: str | os.PathLike, confidence: str | None = None, chunk_bytes: int = CHUNK_BYTES,
               ignore_index: int | None = None) -> ExitOutputs:
    """Read one split's per-exit outputs and reduce them to confidences and correctness.

    Parameters
    ----------
    path : str or path-like
        The HDF5 file (``eexit.exits/v1``, see docs/formats.md).
    confidence : str, optional
        Measure to compute from logits/probs (default ``max_softmax``). For a
        ``/scores`` file, None or ``"scores"`` or the file's own ``confidence`` attribute.
    chunk_bytes : int
        Size of the slices of class outputs processed at a time.
    ignore_index : int, optional
        Leave out the samples whose label is this value (``-100`` is the PyTorch and
        Hugging Face convention for padding tokens). Needs ``/labels``.

    Returns
    -------
    ExitOutputs

    Raises
    ------
    InputError
        (a ``ValueError``) naming the file and dataset, for any unusable content.
    """
    path = check_path(path)
    ignore_index = _check_ignore_index(ignore_index)
    with _open(path) as f:
        try:
            return read_source(FileSource(f, path), confidence, chunk_bytes, ignore_index)
        except (OSError, RuntimeError) as exc:
            raise InputError(f"{path}: cannot read the file ({exc}); is it truncated?") from None
        except (KeyError, UnicodeError) as exc:
            # h5py reports damaged object headers and undecodable names this way
            detail = exc.args[0] if exc.args else type(exc).__name__
            raise InputError(f"{path}: damaged HDF5 file ({detail}); was it written completely?") from None


def read_source(src, confidence=None, chunk_bytes: int = CHUNK_BYTES, ignore_index: int | None = None,
                reduce: bool = True) -> ExitOutputs | None:
    """Check a source and (``reduce=True``) reduce it to :class:`ExitOutputs`.

    With ``reduce=False`` only the checks run (what the writers need) and None is
    returned.
    """
    where = src.where
    fmt = src.attrs.get("format")
    if fmt is not None and attr_str(fmt) != FORMAT:
        raise InputError(f"{where}: root attribute format is {attr_str(fmt)!r}, expected {FORMAT!r}")
    present = [n for n in VARIANTS if src.get(n) is not None]
    if not present:
        have = ", ".join(src.ref(k) for k in src.names()) or "nothing"
        raise InputError(
            f"{where}: no {src.ref('logits')}, {src.ref('probs')} or {src.ref('scores')} {src.noun} "
            f"(found {have}); exactly one is required"
        )
    if len(present) > 1:
        raise InputError(
            f"{where}: ambiguous outputs, found {' and '.join(src.ref(p) for p in present)}; keep exactly one"
        )
    variant = present[0]
    names_attr = src.attrs.get("exit_names")
    exit_names = [attr_str(x) for x in np.atleast_1d(names_attr)] if names_attr is not None else []

    if variant == "scores":
        out = _read_scores(src, confidence, ignore_index, reduce)
    else:
        out = _read_class_outputs(src, variant, confidence, chunk_bytes, ignore_index, reduce)
    n = src.get(variant).shape[0]
    if exit_names and len(exit_names) != n:
        raise InputError(
            f"{where}: {'attribute ' if src.noun == 'dataset' else ''}exit_names has {len(exit_names)} "
            f"names but the outputs have {n} exits"
        )
    if not reduce:
        return None
    return ExitOutputs(
        variant=variant,
        path=where,
        exit_names=exit_names or [f"exit_{i + 1}" for i in range(n)],
        names_given=bool(exit_names),
        **out,
    )


def _read_labels(src, n_samples, required, ignore_index=None):
    where, ref = src.where, src.ref("labels")
    ds = src.get("labels")
    if ds is None:
        if required:
            raise InputError(f"{where}: missing {src.noun} {ref} (integer class of each sample, shape (M,))")
        if ignore_index is not None:
            raise InputError(f"{where}: ignore_index needs {ref} to know which samples to leave out")
        return None
    if ds.ndim != 1:
        raise InputError(f"{where}: {ref} must have shape (M,), got {ds.shape}")
    src.check_size(ds, "labels")
    if ds.dtype.kind not in "iu":
        raise InputError(f"{where}: {ref} must hold integers, got dtype {ds.dtype}")
    if ds.shape[0] != n_samples:
        raise InputError(
            f"{where}: {ref} has {ds.shape[0]} samples but the outputs have {n_samples} (M disagrees)"
        )
    return _read_all(ds, src, "labels").astype(np.int64)


def _keep_mask(labels, ignore_index):
    """Samples kept (None: all), and how many ``ignore_index`` leaves out."""
    if ignore_index is None or labels is None:
        return None, 0
    keep = labels != ignore_index
    n_ignored = int(labels.size - np.count_nonzero(keep))
    return (None, 0) if n_ignored == 0 else (keep, n_ignored)


def _empty_after_ignore(src, ref, ignore_index):
    return InputError(
        f"{src.where}: every sample has label {ignore_index} (ignore_index); nothing is left in {ref}"
    )


def _read_scores(src, confidence, ignore_index, reduce):
    where, ref = src.where, src.ref("scores")
    ds = src.get("scores")
    if ds.ndim != 2:
        raise InputError(f"{where}: {ref} must have shape (N exits, M samples), got {ds.shape}")
    if ds.dtype.kind != "f":
        raise InputError(f"{where}: {ref} must be floating point, got dtype {ds.dtype}")
    n, m = ds.shape
    src.check_size(ds, "scores")
    if n < 2:
        raise InputError(f"{where}: {ref} has {n} exit(s); an early-exit model needs at least 2")
    if m == 0:
        raise InputError(f"{where}: the split is empty (0 samples in {ref})")
    cds = src.get("correct")
    cref = src.ref("correct")
    if cds is None:
        raise InputError(f"{where}: {ref} needs {cref} (N, M) 0/1, which is missing")
    if cds.shape != ds.shape:
        raise InputError(f"{where}: {cref} has shape {cds.shape}, expected {ds.shape} like {ref}")
    src.check_size(cds, "correct")
    offset = getattr(src, "offset", 0)
    scores = _read_all(ds, src, "scores").astype(np.float64)
    _check(check_finite, scores, f"{where}: {ref}", offset, sample_axis=1)
    correct_raw = _read_all(cds, src, "correct")
    if correct_raw.dtype.kind not in "biuf" or not np.all((correct_raw == 0) | (correct_raw == 1)):
        raise InputError(f"{where}: {cref} must hold only 0 and 1")
    labels = _read_labels(src, m, required=False, ignore_index=ignore_index)
    file_measure = attr_str(src.attrs["confidence"]) if "confidence" in src.attrs else "scores"
    if confidence not in (None, "scores", file_measure):
        raise InputError(
            f"{where}: holds precomputed {ref} of measure {file_measure!r}; confidence "
            f"{confidence!r} cannot be computed from it (use a /logits or /probs export)"
        )
    keep, n_ignored = _keep_mask(labels, ignore_index)
    if keep is not None:
        if not keep.any():
            raise _empty_after_ignore(src, ref, ignore_index)
        scores, correct_raw, labels = scores[:, keep], correct_raw[:, keep], labels[keep]
    if not reduce:
        return None
    lo, hi = float(scores.min()), float(scores.max())
    return dict(
        scores=scores,
        correct=correct_raw.astype(bool),
        confidence=file_measure,
        score_range=(lo, hi),
        labels=labels,
        ignored=n_ignored,
    )


def _read_class_outputs(src, variant, confidence, chunk_bytes, ignore_index, reduce):
    where, ref = src.where, src.ref(variant)
    measure = confidence or "max_softmax"
    if measure not in COMPUTED_MEASURES:
        raise InputError(
            f"{where}: confidence {measure!r} needs a /scores file; for {ref} choose one of "
            f"{', '.join(COMPUTED_MEASURES)}"
        )
    ds = src.get(variant)
    if ds.ndim != 3:
        raise InputError(f"{where}: {ref} must have shape (N exits, M samples, C classes), got {ds.shape}")
    if ds.dtype.kind != "f":
        raise InputError(f"{where}: {ref} must be floating point (float16/32/64), got dtype {ds.dtype}")
    n, m, c = ds.shape
    src.check_size(ds, variant)
    if n < 2:
        raise InputError(f"{where}: {ref} has {n} exit(s); an early-exit model needs at least 2")
    if m == 0:
        raise InputError(f"{where}: the split is empty (0 samples in {ref})")
    if c < 2:
        raise InputError(f"{where}: {ref} has {c} class(es); classification needs at least 2")
    offset = getattr(src, "offset", 0)
    labels = _read_labels(src, m, required=True)
    keep, n_ignored = _keep_mask(labels, ignore_index)
    kept_index = np.arange(m) if keep is None else np.flatnonzero(keep)
    if kept_index.size == 0:
        raise _empty_after_ignore(src, ref, ignore_index)
    kept_labels = labels[kept_index]
    out_of_range = (kept_labels < 0) | (kept_labels >= c)
    if np.any(out_of_range):
        bad = int(kept_index[np.flatnonzero(out_of_range)[0]])
        hint = "" if ignore_index is not None or labels[bad] >= 0 else \
            " (padding? give ignore_index to leave such samples out)"
        raise InputError(
            f"{where}: {src.ref('labels')}[{bad + offset}] = {int(labels[bad])} is outside [0, {c}) "
            f"for {c} classes{hint}"
        )
    mk = kept_index.size
    if reduce:
        scores = np.empty((n, mk), dtype=np.float64)
        correct = np.empty((n, mk), dtype=bool)
    # logits stay in their own precision (float16 is widened to float32); probs,
    # which need a renormalisation and a logarithm, are worked on in float64
    work = np.float64 if variant == "probs" or ds.dtype == np.float64 else np.float32
    step = max(1, int(chunk_bytes // max(1, n * c * np.dtype(work).itemsize)))
    done = 0  # kept samples processed
    for start in range(0, m, step):
        stop = min(m, start + step)
        try:
            block = np.asarray(ds[:, start:stop, :], dtype=work)
        except (OSError, RuntimeError) as exc:
            raise InputError(
                f"{where}: {ref} cannot be read at samples {start}..{stop - 1} ({exc}); is the file truncated?"
            ) from None
        if keep is not None:
            sel = keep[start:stop]
            block_labels = labels[start:stop][sel]
            if not sel.all():
                # check the kept samples only; report indices in the file's numbering
                idx = np.flatnonzero(sel)
                sub = block[:, idx, :]
                try:
                    check_class_block(sub, variant, f"{where}: {ref}", logits_name=src.ref("logits"))
                except ValueError as exc:
                    for j in idx:  # find the first bad sample to name it by its own index
                        _check(check_class_block, block[:, j:j + 1, :], variant, f"{where}: {ref}",
                               logits_name=src.ref("logits"), offset=offset + start + int(j))
                    raise InputError(str(exc)) from None
                block = sub
            else:
                _check(check_class_block, block, variant, f"{where}: {ref}",
                       logits_name=src.ref("logits"), offset=offset + start)
        else:
            block_labels = labels[start:stop]
            _check(check_class_block, block, variant, f"{where}: {ref}",
                   logits_name=src.ref("logits"), offset=offset + start)
        if not reduce or block.shape[1] == 0:
            continue
        sc, top1 = class_confidence(block, variant, measure, overwrite=True)
        co = top1 == block_labels[None, :]
        b = block.shape[1]
        scores[:, done:done + b] = sc
        correct[:, done:done + b] = co
        done += b
    if not reduce:
        return None
    return dict(
        scores=scores,
        correct=correct,
        confidence=measure,
        score_range=get_measure(measure).box(c),
        n_classes=c,
        labels=kept_labels,
        ignored=n_ignored,
    )
