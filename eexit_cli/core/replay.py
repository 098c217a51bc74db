"""Hard-threshold early-exit inference, replayed on recorded per-exit outputs.

The rule (paper, "Problem Formulation"): a sample leaves at the first exit
``n < N`` whose confidence is strictly above ``t_n``; a sample that passes every
early exit is answered by the last exit ``N``.
"""

from __future__ import annotations

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


def check_problem(scores, correct, costs=None):
    """Validate and normalise the (scores, correct, costs) triple used everywhere.

    Returns float64 scores (N, M), bool correct (N, M) and float64 costs (N,).
    Raises ``ValueError`` naming the offending parameter.
    """
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
    # a sum propagates NaN and infinities: one fast pass and no boolean array;
    # only when it is not finite (NaN, inf, or the overflow of huge but finite
    # scores) is every score looked at
    if not np.isfinite(scores.sum()) and not np.all(np.isfinite(scores)):
        raise ValueError("scores contains NaN or Inf")
    correct = correct.astype(bool, copy=False)
    if costs is None:
        return scores, correct, None
    return scores, correct, check_costs(costs, n_exits)


def check_costs(costs, n_exits: int) -> np.ndarray:
    """The per-exit costs as float64 (N,), positive and finite (``ValueError`` otherwise)."""
    costs = np.asarray(costs, dtype=np.float64)
    if costs.shape != (n_exits,):
        raise ValueError(f"costs must have one entry per exit ({n_exits}), got shape {costs.shape}")
    if not (costs.min() > 0 and np.isfinite(costs.sum())):  # NaN fails both
        raise ValueError("costs must be positive and finite")
    return costs


def _check_thresholds(thresholds: np.ndarray, n_exits: int) -> None:
    if thresholds.shape != (n_exits - 1,):
        raise ValueError(
            f"thresholds must have N-1 = {n_exits - 1} entries, got shape {thresholds.shape}"
        )
    if np.isnan(thresholds).any():
        # a NaN compares False, which would silently mean "never exit here"
        raise ValueError("thresholds contains NaN (use +inf for an exit that is never taken)")


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
        For the inputs :func:`check_problem` refuses (scores with NaN or Inf among
        them) and for thresholds of the wrong shape or with NaN.
    """
    scores, correct, costs = check_problem(scores, correct, costs)
    return replay_checked(scores, correct, thresholds, costs)


def replay_checked(scores: np.ndarray, correct: np.ndarray, thresholds, costs: np.ndarray) -> ReplayResult:
    """:func:`replay` on arrays :func:`check_problem` has accepted already.

    For the callers that validated their problem where it entered (the reader,
    the tuner, the evaluation report): the scores are not read a second time to
    look for NaN or Inf.  ``scores`` must be float64 (N, M) and finite,
    ``correct`` bool (N, M), ``costs`` float64 (N,); the thresholds (N-1 values)
    are still checked.
    """
    n_exits, n_samples = scores.shape
    thresholds = np.array(thresholds, dtype=np.float64)  # a copy: the result keeps it
    _check_thresholds(thresholds, n_exits)
    # one pass per exit over boolean masks of the samples still undecided: the
    # statistics need counts only, the exit of every sample is made on demand
    counts = np.empty(n_exits, dtype=np.int64)
    hits = np.empty(n_exits, dtype=np.int64)
    alive = np.ones(n_samples, dtype=bool)
    leave = np.empty(n_samples, dtype=bool)
    count_nonzero, logical_and, greater = np.count_nonzero, np.logical_and, np.greater
    for n in range(n_exits - 1):
        greater(scores[n], thresholds[n], out=leave)
        leave &= alive
        counts[n] = count_nonzero(leave)
        alive ^= leave
        hits[n] = count_nonzero(logical_and(leave, correct[n], out=leave))
    counts[-1] = count_nonzero(alive)
    hits[-1] = count_nonzero(logical_and(alive, correct[-1], out=alive))
    fraction = counts / n_samples
    with np.errstate(invalid="ignore", divide="ignore"):
        exit_acc = hits / counts  # NaN where no sample leaves (0 / 0)
    return ReplayResult(
        accuracy=float(hits.sum() / n_samples),
        mean_latency=float(fraction @ costs),
        fraction=fraction,
        exit_accuracy=exit_acc,
        n_samples=n_samples,
        _scores=scores,
        _thresholds=thresholds,
    )
