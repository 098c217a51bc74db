"""Hard-threshold early-exit inference, replayed on recorded per-exit outputs.

The rule (paper, "Problem Formulation"): a sample leaves at the first exit
``n < N`` whose confidence is strictly above ``t_n``; a sample that passes every
early exit is answered by the last exit ``N``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ReplayResult:
    """Outcome of hard-threshold inference on one split.

    Attributes
    ----------
    accuracy : float
        Fraction of samples answered correctly by the exit they leave at.
    mean_latency : float
        ``sum_n d_n * fraction_n``, in the unit of ``costs``.
    fraction : ndarray, shape (N,)
        Fraction of samples leaving at each exit.
    exit_accuracy : ndarray, shape (N,)
        Accuracy of the samples leaving at each exit (NaN where none leave).
    n_samples : int
    exit_index : ndarray of int, shape (M,)
        0-based exit at which each sample leaves (computed on first use).
    """

    accuracy: float
    mean_latency: float
    fraction: np.ndarray
    exit_accuracy: np.ndarray
    n_samples: int
    _scores: np.ndarray = field(repr=False, compare=False, default=None)
    _thresholds: np.ndarray = field(repr=False, compare=False, default=None)
    _cache: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def exit_index(self) -> np.ndarray:
        if "exit_index" not in self._cache:
            self._cache["exit_index"] = exit_indices(self._scores, self._thresholds)
        return self._cache["exit_index"]

    def per_exit(self) -> list[dict]:
        """Per-exit fractions and accuracies as JSON-ready dicts (NaN -> None)."""
        counts = np.rint(self.fraction * self.n_samples).astype(int)
        return [
            {
                "exit": n + 1,
                "fraction": float(f),
                "count": int(c),
                "accuracy": None if np.isnan(a) else float(a),
            }
            for n, (f, c, a) in enumerate(zip(self.fraction, counts, self.exit_accuracy))
        ]


def _check_shapes(scores, correct):
    """float64 scores and the array of correct with the shapes every caller needs."""
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a 2-D array (exits x samples), got shape {scores.shape}")
    n_exits, n_samples = scores.shape
    if n_exits < 2:
        raise ValueError(f"scores must have at least 2 exits, got {n_exits}")
    if n_samples < 1:
        raise ValueError("scores has no samples")
    if correct.shape != scores.shape:
        raise ValueError(f"correct has shape {correct.shape}, expected {scores.shape} like scores")
    return scores, correct


def check_problem(scores, correct, costs=None):
    """Validate and normalise the (scores, correct, costs) triple used everywhere.

    Returns float64 scores (N, M), bool correct (N, M) and float64 costs (N,).
    Raises ``ValueError`` naming the offending parameter.
    """
    scores, correct = _check_shapes(scores, correct)
    # a sum propagates NaN and infinities: one fast pass and no boolean array;
    # only when it is not finite (NaN, inf, or the overflow of huge but finite
    # scores) is every score looked at
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, overflow: found below
        total = scores.sum()
    if not np.isfinite(total) and not np.all(np.isfinite(scores)):
        raise ValueError("scores contains NaN or Inf")
    correct = correct.astype(bool, copy=False)
    if costs is None:
        return scores, correct, None
    return scores, correct, check_costs(costs, scores.shape[0])


def check_costs(costs, n_exits: int) -> np.ndarray:
    """The per-exit costs as float64 (N,), positive and finite (``ValueError`` otherwise)."""
    costs = np.asarray(costs, dtype=np.float64)
    if costs.shape != (n_exits,):
        raise ValueError(f"costs must have one entry per exit ({n_exits}), got shape {costs.shape}")
    # N is small: plain Python floats are quicker than numpy reductions here
    if not all(0.0 < c < math.inf for c in costs.tolist()):  # NaN fails too
        raise ValueError("costs must be positive and finite")
    return costs


def _check_thresholds(thresholds: np.ndarray, n_exits: int) -> list:
    """The thresholds as a list of Python floats, after checking their number and NaN."""
    if thresholds.shape != (n_exits - 1,):
        raise ValueError(
            f"thresholds must have N-1 = {n_exits - 1} entries, got shape {thresholds.shape}"
        )
    values = thresholds.tolist()
    if any(t != t for t in values):
        # a NaN compares False, which would silently mean "never exit here"
        raise ValueError("thresholds contains NaN (use +inf for an exit that is never taken)")
    return values


def exit_indices(scores: np.ndarray, thresholds) -> np.ndarray:
    """0-based exit taken by every sample under hard thresholds.

    One comparison per early exit, from the last to the first, each marking the
    samples that leave there (an earlier exit overwrites a later one): O(N*M)
    with no Python loop over samples and no (N, M) intermediate.
    """
    scores = np.asarray(scores)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    n_exits, n_samples = scores.shape
    _check_thresholds(thresholds, n_exits)
    out = np.full(n_samples, n_exits - 1, dtype=np.intp)
    leaves = np.empty(n_samples, dtype=bool)
    for n in range(n_exits - 2, -1, -1):
        np.greater(scores[n], thresholds[n], out=leaves)
        out[leaves] = n
    return out


def replay(scores, correct, thresholds, costs) -> ReplayResult:
    """Replay hard-threshold early-exit inference.

    Parameters
    ----------
    scores : array_like, shape (N, M)
        Confidence of exit n on sample m (higher = more confident).
    correct : array_like of bool, shape (N, M)
        Whether exit n's top-1 prediction for sample m is right.
    thresholds : array_like, shape (N-1,)
        ``t_1 .. t_{N-1}``; the last exit always answers.
    costs : array_like, shape (N,)
        ``d_1 .. d_N``, the latency of inference that stops at each exit.

    Returns
    -------
    ReplayResult

    Raises
    ------
    ValueError
        For malformed shapes, costs that are not positive and finite,
        thresholds of the wrong number or with NaN, and a NaN score at an
        early exit (it compares False with every threshold, which would
        silently mean "never exit here").

    Notes
    -----
    The rule reads the scores of the early exits only, so only those are
    looked at, for NaN only: an infinite score is well defined under the rule
    (``+inf`` leaves unless the threshold is ``+inf``, ``-inf`` never leaves),
    and the last exit's scores decide nothing.  :func:`check_problem`, which
    the tuner and the file reader apply, refuses every non-finite score.
    """
    scores, correct = _check_shapes(scores, correct)
    correct = correct.astype(bool, copy=False)
    costs = check_costs(costs, scores.shape[0])
    # a minimum propagates NaN: one reduction when the early exits' rows fit in a
    # typical L2 cache, otherwise row by row inside the replay, each row then being
    # still cached for its comparison
    early = scores[:-1]
    if early.size <= _CACHED_SCORES:
        if math.isnan(early.min()):
            _nan_at(int(np.flatnonzero(np.isnan(early).any(axis=1))[0]))
        return _replay(scores, correct, thresholds, costs, False)
    return _replay(scores, correct, thresholds, costs, True)


#: float64 scores that fit in 1 MiB (see :func:`replay`)
_CACHED_SCORES = 131_072


def _nan_at(n: int):
    raise ValueError(f"scores contains NaN at exit {n + 1} (an early exit's scores decide "
                     "where samples leave)")


def replay_checked(scores: np.ndarray, correct: np.ndarray, thresholds, costs: np.ndarray) -> ReplayResult:
    """:func:`replay` on arrays :func:`check_problem` has accepted already.

    For the callers that validated their problem where it entered (the reader,
    the tuner, the evaluation report): the scores are not read a second time to
    look for NaN.  ``scores`` must be float64 (N, M) without NaN at the early
    exits, ``correct`` bool (N, M), ``costs`` float64 (N,); the thresholds (N-1
    values) are still checked.
    """
    return _replay(scores, correct, thresholds, costs, False)


def _replay(scores, correct, thresholds, costs, check_nan: bool) -> ReplayResult:
    n_exits, n_samples = scores.shape
    thresholds = np.array(thresholds, dtype=np.float64)  # a copy: the result keeps it
    values = _check_thresholds(thresholds, n_exits)
    # one pass per exit over boolean masks of the samples still undecided: the
    # statistics need counts only, the exit of every sample is made on demand
    counts, hits = [], []
    leave = np.empty(n_samples, dtype=bool)
    alive = None  # everyone, until the first exit
    count_nonzero, logical_and, greater = np.count_nonzero, np.logical_and, np.greater
    for n in range(n_exits - 1):
        row = scores[n]
        if check_nan and math.isnan(row.min()):
            _nan_at(n)
        greater(row, values[n], out=leave)
        if alive is None:
            alive = np.logical_not(leave)
        else:
            leave &= alive
            alive ^= leave
        counts.append(count_nonzero(leave))
        hits.append(count_nonzero(logical_and(leave, correct[n], out=leave)))
    counts.append(count_nonzero(alive))
    hits.append(count_nonzero(logical_and(alive, correct[-1], out=alive)))
    fraction = np.array(counts, dtype=np.float64)
    fraction /= n_samples  # exact counts below 2**53: as counts / M in int64
    # NaN where no sample leaves (0 / 0)
    exit_acc = np.array([h / c if c else math.nan for h, c in zip(hits, counts)])
    return ReplayResult(
        accuracy=float(sum(hits) / n_samples),
        mean_latency=float(fraction @ costs),
        fraction=fraction,
        exit_accuracy=exit_acc,
        n_samples=n_samples,
        _scores=scores,
        _thresholds=thresholds,
    )
