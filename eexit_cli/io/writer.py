"""Writing per-exit outputs (``eexit.exits/v1``) from Python: in one call or in batches.

:func:`write_exits` writes a whole split held in memory; :class:`ExitWriter` appends
batch after batch, for evaluation loops that cannot hold a split. Both check their
input with the reader's own checks (:func:`eexit_cli.io.exits.read_source`), so a
file they write is a file ``tune`` and ``evaluate`` accept, and both write
atomically: the file appears, complete, only when writing succeeded.

Inputs are numpy arrays, anything numpy can turn into one, or torch tensors (torch
itself is never imported here). Class outputs come as one array of shape (N, M, C)
or as a list of N per-exit arrays of shape (M, C); for token-level data a per-exit
array may have any leading shape, e.g. (batch, tokens, C), with labels of shape
(batch, tokens): they are flattened in C order, one sample per token.
"""

from __future__ import annotations

import math
import os
import weakref
from typing import Sequence

import numpy as np

from eexit_cli.core.outputs import as_array
from eexit_cli.io.atomic import atomic_target
from eexit_cli.io.exits import FORMAT, VARIANTS, ArraySource, _check_ignore_index, check_path, read_source

__all__ = ["write_exits", "ExitWriter"]

#: Target size of one HDF5 chunk (chunks hold whole exits and classes when they fit).
CHUNK_BYTES = 2**20
#: Attributes the writers set themselves.
_RESERVED_ATTRS = ("format", "exit_names", "confidence")


# ---------------------------------------------------------------------------
# Arguments to arrays
# ---------------------------------------------------------------------------


def _per_exit_stack(x, name: str) -> np.ndarray:
    """An (N, ...) array from an array/tensor or a list of N per-exit arrays/tensors."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError(f"{name} is an empty list; give one array per exit")
        parts = [as_array(p, f"{name}[{i}]") for i, p in enumerate(x)]
        shapes = {p.shape for p in parts}
        if len(shapes) > 1:
            listed = ", ".join(str(p.shape) for p in parts)
            raise ValueError(f"{name}: the per-exit arrays must have one shape, got {listed}")
        return np.stack(parts)
    return as_array(x, name)


def _flatten_samples(arr: np.ndarray, labels: np.ndarray | None, class_axis: bool, name: str, where: str):
    """Flatten leading sample dimensions (batch, tokens, ...) when the labels have them.

    Only when the outputs have one more sample dimension than (N, M[, C]) allows and
    the labels are not 1-D; other shapes are left for the reader's checks to judge.
    """
    if labels is None or labels.ndim <= 1 or arr.ndim != labels.ndim + 1 + int(class_axis):
        return arr, labels
    sample_shape = labels.shape
    body = arr.shape[1:-1] if class_axis else arr.shape[1:]
    if body != sample_shape:
        raise ValueError(
            f"{where}: {name} has shape {arr.shape}; with labels of shape {sample_shape} it must be "
            f"(N, {', '.join(map(str, sample_shape))}{', C' if class_axis else ''})"
        )
    m = int(np.prod(sample_shape))
    new_shape = (arr.shape[0], m) + ((arr.shape[-1],) if class_axis else ())
    return arr.reshape(new_shape), labels.reshape(m)


def _check_names(exit_names, name="exit_names"):
    if exit_names is None:
        return None
    if isinstance(exit_names, (str, bytes)) or not isinstance(exit_names, Sequence):
        raise TypeError(f"{name} must be a list of strings, one per exit, got {type(exit_names).__name__}")
    bad = [n for n in exit_names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"{name} must hold strings, got {bad[0]!r}")
    return list(exit_names)


def _check_attrs(attrs):
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise TypeError(f"attrs must be a dict of root attributes, got {type(attrs).__name__}")
    clash = [k for k in attrs if k in _RESERVED_ATTRS]
    if clash:
        raise ValueError(
            f"attrs may not set {', '.join(map(repr, clash))}: give exit_names= and confidence= instead "
            "(format is always eexit.exits/v1)"
        )
    return dict(attrs)


def _check_confidence(confidence, variant: str, where: str):
    if confidence is None:
        return None
    if not isinstance(confidence, str) or not confidence:
        raise TypeError(f"{where}: confidence must be a measure name (str), got {confidence!r}")
    if variant != "scores":
        raise ValueError(
            f"{where}: confidence names the measure behind precomputed scores; for {variant} the "
            "measure is chosen when tuning (tune(confidence=...), eexit tune --confidence)"
        )
    return confidence


def _batch_arrays(variant, outputs, labels, correct, name, where):
    """Outputs, labels and correct of one batch as numpy arrays of the file's shapes."""
    arr = _per_exit_stack(outputs, name)
    lab = None if labels is None else as_array(labels, "labels")
    cor = None
    if variant == "scores":
        if correct is not None:
            cor = _per_exit_stack(correct, "correct")
            if lab is not None and lab.ndim > 1 and cor.shape == arr.shape:
                cor, _ = _flatten_samples(cor, lab, False, "correct", where)
        arr, lab = _flatten_samples(arr, lab, False, name, where)
    else:
        if correct is not None:
            raise ValueError(f"{where}: correct is only for precomputed scores; {variant} come with labels")
        arr, lab = _flatten_samples(arr, lab, True, name, where)
    return arr, lab, cor


def _mask(arrays: dict, keep):
    out = {}
    for k, v in arrays.items():
        if v is None:
            out[k] = None
        elif k == "labels":
            out[k] = v[keep]
        else:
            out[k] = v[:, keep]
    return out


# ---------------------------------------------------------------------------
# HDF5 layout
# ---------------------------------------------------------------------------


def _chunks(shape, itemsize: int):
    """Chunk shape for (N, M[, C]) data appended along M: about CHUNK_BYTES per chunk.

    Whole exits and classes share a chunk when a sample's outputs fit, which is what
    the reader's slices (``ds[:, a:b, :]``) want; otherwise one exit per chunk, and
    for huge C (vocabularies) a slice of the classes.
    """
    n = shape[0]
    c = shape[2] if len(shape) == 3 else 1
    per_sample = n * c * itemsize
    n_chunk = n if per_sample <= CHUNK_BYTES else 1
    c_chunk = c if c * itemsize <= CHUNK_BYTES else max(1, CHUNK_BYTES // itemsize)
    k = max(1, CHUNK_BYTES // (n_chunk * c_chunk * itemsize))
    k = min(k, max(1, shape[1]))
    return (n_chunk, k, c_chunk) if len(shape) == 3 else (n_chunk, k)


def _compression_kwargs(compression, compression_opts):
    if compression is None:
        return {}
    if compression not in ("gzip", "lzf"):
        raise ValueError(f"compression must be 'gzip', 'lzf' or None, got {compression!r}")
    kw = {"compression": compression, "shuffle": True}
    if compression == "gzip":
        kw["compression_opts"] = 1 if compression_opts is None else compression_opts
    return kw


def _create(f, name, shape, dtype, compress: dict):
    maxshape = (shape[0], None) + tuple(shape[2:]) if len(shape) >= 2 else (None,)
    if len(shape) >= 2:
        chunks = _chunks(shape, np.dtype(dtype).itemsize)
    else:
        chunks = (max(1, min(shape[0] or 1, CHUNK_BYTES // 8)),)
    return f.create_dataset(name, shape=shape, maxshape=maxshape, dtype=dtype, chunks=chunks,
                            track_times=False, **compress)


def _write_attrs(f, exit_names, confidence, attrs):
    import h5py

    f.attrs["format"] = FORMAT
    if exit_names is not None:
        f.attrs.create("exit_names", exit_names, dtype=h5py.string_dtype())
    if confidence is not None:
        f.attrs["confidence"] = confidence
    for k, v in attrs.items():
        f.attrs[k] = v


def _variant_of(where, **given):
    present = [k for k, v in given.items() if v is not None]
    if len(present) != 1:
        what = "none" if not present else " and ".join(present)
        raise ValueError(f"{where}: give exactly one of logits=, probs= or scores= (got {what})")
    return present[0]


# ---------------------------------------------------------------------------
# One call
# ---------------------------------------------------------------------------


def write_exits(path, *, logits=None, probs=None, scores=None, correct=None, labels=None,
                exit_names=None, confidence=None, attrs=None, ignore_index=None,
                compression="gzip"):
    """Write one split's per-exit outputs to an ``eexit.exits/v1`` HDF5 file.

    Give exactly one of ``logits``, ``probs`` (each with ``labels``) or ``scores``
    (with ``correct``, ``labels`` optional). The file is checked as ``eexit tune``
    and ``eexit evaluate`` would read it, before anything is written, and written
    atomically: it appears complete or not at all, and an earlier file of the same
    name survives a failure.

    Parameters
    ----------
    path : str or path-like
        The file to write (replaced if it exists).
    logits, probs : array_like or tensor, shape (N, M, C), or a list of N arrays (M, C)
        Raw outputs or class probabilities of every exit; float16/32/64 (bfloat16
        tensors are stored as float32). A per-exit array may be (..., C) with labels
        of shape (...), e.g. (batch, tokens, vocabulary): one sample per token.
    scores : array_like or tensor, shape (N, M), or a list of N arrays (M,)
        Precomputed confidences (higher = more confident).
    correct : array_like of 0/1 or bool, shape (N, M)
        With ``scores``: whether each exit's top-1 class is right.
    labels : array_like of int, shape (M,)
        True class of every sample, in [0, C).
    exit_names : list of N str, optional
    confidence : str, optional
        With ``scores``: the name of the measure behind them (e.g. "max_softmax").
    attrs : dict, optional
        Further root attributes for people (e.g. ``{"split": "val"}``).
    ignore_index : int, optional
        Leave out samples whose label is this value (``-100``: padding tokens in
        PyTorch and Hugging Face).
    compression : "gzip", "lzf" or None
        HDF5 compression of the datasets (gzip level 1 with byte shuffling by default).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        Naming the argument, for content the reader would refuse (shapes, N or M
        disagreeing, labels outside [0, C), NaN/Inf, probabilities not summing to 1).
    TypeError
        For arguments that are not arrays (or lists of them).
    """
    from pathlib import Path

    where = "write_exits"
    check_path(path)
    variant = _variant_of(where, logits=logits, probs=probs, scores=scores)
    outputs = {"logits": logits, "probs": probs, "scores": scores}[variant]
    exit_names = _check_names(exit_names)
    attrs = _check_attrs(attrs)
    confidence = _check_confidence(confidence, variant, where)
    ignore_index = _check_ignore_index(ignore_index)
    compress = _compression_kwargs(compression, None)
    arr, lab, cor = _batch_arrays(variant, outputs, labels, correct, variant, where)
    arrays = {variant: arr, "labels": lab, "correct": cor}
    src_attrs = {"exit_names": exit_names, "confidence": confidence}
    read_source(ArraySource(arrays, src_attrs, where), confidence=confidence, ignore_index=ignore_index,
                reduce=False)
    if ignore_index is not None and lab is not None:
        keep = lab != ignore_index
        if not keep.all():
            arrays = _mask(arrays, keep)

    path = Path(os.fspath(path))
    import h5py

    with atomic_target(path) as tmp:
        with h5py.File(tmp, "w", track_order=False) as f:
            _write_attrs(f, exit_names, confidence, attrs)
            for name, value in arrays.items():
                if value is None:
                    continue
                dtype = np.uint8 if name == "correct" else (np.int64 if name == "labels" else value.dtype)
                ds = _create(f, name, value.shape, dtype, compress)
                ds[...] = value
    return path


# ---------------------------------------------------------------------------
# Batch after batch
# ---------------------------------------------------------------------------


class _Pending:
    """What must be cleaned up if a writer is dropped without being closed."""

    def __init__(self, target, h5file):
        self.target = target
        self.h5file = h5file

    def abort(self) -> None:
        if self.h5file is not None:
            try:
                self.h5file.close()
            except Exception:  # the file is being thrown away; closing is best effort
                pass
            self.h5file = None
        if self.target is not None:
            target, self.target = self.target, None
            try:
                target.__exit__(RuntimeError, RuntimeError("writer not closed"), None)
            except RuntimeError:
                pass


class ExitWriter:
    """Write a split's per-exit outputs batch by batch (``eexit.exits/v1``).

    Use it as a context manager around an evaluation loop; every batch is checked
    with the reader's checks when it is appended and written at once to chunked,
    resizable, compressed datasets, so memory stays at about one batch whatever the
    split's size. The file appears at ``path`` only when the writer closes without
    error (a temporary file in the same folder is renamed onto it); an exception in
    the ``with`` block, a failed check or a writer that is never closed leaves no
    file and an earlier file of that name untouched.

    Parameters
    ----------
    path : str or path-like
    kind : "logits", "probs" or "scores"
        What :meth:`append` receives.
    exit_names : list of N str, optional
    confidence : str, optional
        With ``kind="scores"``: the measure behind the scores.
    attrs : dict, optional
        Further root attributes for people.
    ignore_index : int, optional
        Leave out samples whose label is this value (``-100`` for padding tokens).
    compression : "gzip", "lzf" or None
        HDF5 compression (default gzip level 1 with byte shuffling).

    Examples
    --------
    >>> with ExitWriter("val.h5", exit_names=["early", "late"]) as w:   # doctest: +SKIP
    ...     for x, y in loader:
    ...         w.append([head(x) for head in model.exits], y)
    """

    def __init__(self, path, *, kind: str = "logits", exit_names=None, confidence=None, attrs=None,
                 ignore_index=None, compression="gzip"):
        import h5py

        if kind not in VARIANTS:
            raise ValueError(f"kind must be one of {', '.join(VARIANTS)}, got {kind!r}")
        self.kind = kind
        self.path = check_path(path)
        self.exit_names = _check_names(exit_names)
        self.confidence = _check_confidence(confidence, kind, "ExitWriter")
        self.ignore_index = _check_ignore_index(ignore_index)
        self._attrs = _check_attrs(attrs)
        self._compress = _compression_kwargs(compression, None)
        self.n_samples = 0
        self.n_ignored = 0
        self._shape = None  # (N, C) or (N,) once the first batch arrived
        self._datasets: dict = {}
        self.closed = False
        target = atomic_target(self.path)
        tmp = target.__enter__()
        try:
            f = h5py.File(tmp, "w", track_order=False)
        except BaseException as exc:
            target.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._file = f
        self._pending = _Pending(target, f)
        self._finalizer = weakref.finalize(self, _Pending.abort, self._pending)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<ExitWriter {self.path!r} kind={self.kind} samples={self.n_samples} {state}>"

    def __enter__(self) -> "ExitWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def append(self, outputs, labels=None, *, correct=None) -> int:
        """Check one batch and add it to the file; returns the number of samples written.

        Parameters
        ----------
        outputs : array_like or tensor
            (N, B, C) logits/probs, or a list of N per-exit arrays (B, C) (also
            (..., C) with labels of shape (...)); for ``kind="scores"``, (N, B) or a
            list of N arrays (B,).
        labels : array_like of int, shape (B,)
            Required for logits and probs.
        correct : array_like, shape (N, B)
            For ``kind="scores"``: 0/1 correctness of each exit.
        """
        if self.closed:
            raise ValueError(f"ExitWriter({self.path!r}) is closed; append before leaving the with block")
        where = f"ExitWriter.append (batch from sample {self.n_samples + self.n_ignored})"
        arr, lab, cor = _batch_arrays(self.kind, outputs, labels, correct, "outputs", where)
        arrays = {self.kind: arr, "labels": lab, "correct": cor}
        if arr.ndim >= 2 and arr.shape[1] == 0:
            return 0
        keep = None
        if self.ignore_index is not None and lab is not None and lab.ndim == 1 and lab.shape[0] == arr.shape[1]:
            keep = lab != self.ignore_index
            if not keep.any():
                self.n_ignored += int(lab.size)
                return 0
        src = ArraySource(arrays, {"exit_names": self.exit_names, "confidence": self.confidence}, where,
                          offset=self.n_samples + self.n_ignored)
        read_source(src, confidence=self.confidence, ignore_index=self.ignore_index, reduce=False)
        shape = (arr.shape[0],) + tuple(arr.shape[2:])
        if self._shape is not None and shape != self._shape:
            n_now, n_then = shape[0], self._shape[0]
            what = (f"N = {n_now} exits" if n_now != n_then else f"C = {shape[-1]} classes")
            then = (f"N = {n_then}" if n_now != n_then else f"C = {self._shape[-1]}")
            raise ValueError(f"{where}: outputs have {what}, earlier batches had {then}")
        if keep is not None and not keep.all():
            self.n_ignored += int(keep.size - np.count_nonzero(keep))
            arrays = _mask(arrays, keep)
        if self._shape is not None:
            given = {n for n, v in arrays.items() if v is not None}
            for name in given ^ set(self._datasets):
                when = "not with the first batch" if name in given else "with the first batch but not with this one"
                raise ValueError(f"{where}: {name} was given {when}; give it with every batch or none")
            for name in given - {"labels", "correct"}:
                arrays[name] = self._cast(arrays[name], self._datasets[name].dtype, where)
        if self._shape is None:
            self._start(arrays)
            self._shape = shape
        b = arrays[self.kind].shape[1]
        m = self.n_samples
        for name, value in arrays.items():
            if value is None:
                continue
            ds = self._datasets[name]
            if name == "labels":
                ds.resize(m + b, axis=0)
                ds[m:m + b] = value
            else:
                ds.resize(m + b, axis=1)
                ds[:, m:m + b] = value
        self.n_samples = m + b
        return b

    @staticmethod
    def _cast(value: np.ndarray, dtype, where: str) -> np.ndarray:
        """A later batch in the dtype the first one set; values it cannot hold are refused."""
        if value.dtype == dtype:
            return value
        with np.errstate(over="ignore"):
            cast = value.astype(dtype)
        if not np.all(np.isfinite(cast)):
            raise ValueError(
                f"{where}: outputs of dtype {value.dtype} do not fit the file's {dtype} (set by the "
                f"first batch); give every batch in one dtype"
            )
        return cast

    def _start(self, arrays) -> None:
        f = self._file
        _write_attrs(f, self.exit_names, self.confidence, self._attrs)
        for name, value in arrays.items():
            if value is None:
                continue
            dtype = np.dtype(np.int64 if name == "labels" else np.uint8 if name == "correct" else value.dtype)
            if name == "labels":
                chunks = (max(1, CHUNK_BYTES // 8),)
            else:
                # chunks sized for a split of many batches, not for this first one
                chunks = _chunks((value.shape[0], 2**31) + tuple(value.shape[2:]), dtype.itemsize)
            shape = list(value.shape)
            axis = 0 if name == "labels" else 1
            shape[axis] = 0
            maxshape = list(value.shape)
            maxshape[axis] = None
            # the chunk cache must hold every chunk still being filled (one row of chunks
            # across exits and classes), or each batch would rewrite compressed chunks
            row = math.prod(math.ceil(s / c) for i, (s, c) in enumerate(zip(value.shape, chunks)) if i != axis)
            cache = max(2**20, 2 * row * math.prod(chunks) * dtype.itemsize)
            self._datasets[name] = f.create_dataset(
                name, shape=tuple(shape), maxshape=tuple(maxshape), dtype=dtype, chunks=chunks,
                track_times=False, rdcc_nbytes=cache, rdcc_nslots=10007, rdcc_w0=1.0, **self._compress)

    def close(self) -> None:
        """Finish the file and move it to ``path``; nothing appended is an error (no file)."""
        if self.closed:
            return
        if self.n_samples == 0:
            self.abort()
            more = f" ({self.n_ignored} left out by ignore_index)" if self.n_ignored else ""
            raise ValueError(f"ExitWriter({self.path!r}): no samples were appended{more}; no file was written")
        self.closed = True
        self._finalizer.detach()
        pending = self._pending
        try:
            self._file.close()
            pending.h5file = None
        except BaseException:
            pending.abort()
            raise
        target, pending.target = pending.target, None
        target.__exit__(None, None, None)

    def abort(self) -> None:
        """Throw the file away (no file at ``path``; an earlier one stays)."""
        if self.closed:
            return
        self.closed = True
        self._finalizer.detach()
        self._pending.abort()
