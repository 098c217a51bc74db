"""Exact machinery on hard thresholds: repair to the constraints and polish the objective.

The smoothed problem (eqs. 9-10) only approximates hard early exit, so thresholds
from the warm start or from Algorithm 1 may break the budget on the tuning split
by a little and may leave accuracy on the table.  This package works on the hard
rule itself (the one of :mod:`eexit_cli.core.replay`).

The problem
-----------
Every sample ``m`` leaves at one exit ``e(m)``.  The constraints are ``R >= 1``
linear rows of per-exit costs: row ``r`` is a vector ``c_r`` of shape ``(N,)``
and holds when ``mean_m c_r[e(m)] <= b_r``.  Mean latency is the row
``c = d`` with ``b = Gamma``; "the p-quantile of latency is at most X" is the
row ``c_n = 1[d_n > X]`` with ``b = 1 - p``.  Bounds may be ``+inf`` (a row
that is only measured).  Two objectives:

* ``objective="accuracy"`` (default): maximise the number of correctly answered
  samples ("hits"); ties go to the lower mean of row 0, then to the first
  candidate found;
* ``objective="cost"``: minimise the mean of row 0 subject to ``hits >=
  min_hits`` (e.g. the fastest thresholds for a target accuracy); ties go to more
  hits.

``min_hits`` is accepted with either objective.  Every accepted state meets every
constraint exactly: feasibility is decided on ``(counts / M) @ c_r``, the very
expression :func:`~eexit_cli.core.replay.replay` computes for mean latency.

Methods
-------
* :meth:`HardProblem.repair` moves every threshold down by the same amount, the
  smallest that makes the state feasible (bisection; exact when the rows do not
  decrease with the exit index, as latency does not; the bisection's state and
  shift are then found from a prediction and a few exact evaluations).
* :meth:`HardProblem.polish` improves the objective with exact moves that keep
  every constraint: one threshold at a time over every distinct candidate, and
  two thresholds at once over a grid that is exhaustive when the exits have few
  distinct scores, and otherwise combines full resolution near the current
  values with quantiles of the samples reaching each exit.
* :meth:`HardProblem.trade` (objective "accuracy") prices every single-threshold
  move exactly, predicts the best pair moves by adding two exits' prices under
  the slack of row 0, and keeps the predicted moves that an exact check confirms.
* :meth:`HardProblem.exhaustive` tries every combination of candidate indices
  when that costs little (tiny problems), where a move of three thresholds or
  more may be needed that the local searches do not try.

Modules
-------
:class:`HardProblem` is assembled from one class per concern:

* :mod:`.problem`: :class:`HardState` and the problem itself: candidate
  thresholds and their indices, full and incremental evaluation, feasibility,
  the repair;
* :mod:`.tables`: the histograms and running sums the sweeps' tables are made of;
* :mod:`.sweeps`: exact sweeps of one threshold and of two over candidate grids,
  and the choice of a table's best cell;
* :mod:`.windows`: the pair tables over windows around the current state, for
  every ``j`` of one ``i`` at once;
* :mod:`.polish`: the pair-grid search (:meth:`HardProblem.polish`);
* :mod:`.priced`: the priced search (:meth:`HardProblem.trade`);
* :mod:`.exhaustive`: every combination of candidates, on tiny problems
  (:meth:`HardProblem.exhaustive`).

Cost and memory
---------------
The problem keeps, for the whole search, the rank of every sample at every
early exit and a row of ones for the last exit (int32, ``4 N M`` bytes), the
samples in rank order and where each rank starts in it (int32, at most
``8 (N-1) M`` bytes), the sorted distinct scores of every exit (at most
``8 (N-1) M`` bytes) and the exit every sample takes in the current state
(``M`` or ``2M`` bytes); it reads ``correct`` (``N M`` bytes) and never copies
``scores`` (it keeps a reference, which the repair's predictions read).  Everything else lives only during one sweep (or, for the window
tables of one state and threshold, until the next) and is O(M), except during
:meth:`HardProblem.trade`: two histograms over every candidate of every exit
(``16 (N-1) M`` bytes at most) for the whole search, and as much again for the
tables of one round (:meth:`HardProblem.exhaustive` works in batches of about
``2**16`` samples or states times rows, a few MB at most, or O(M) with one prefix).
Peak memory is therefore about ``20 (N-1) M`` bytes on top
of the caller's arrays; there are no caches that grow with the number of moves.
"""

from __future__ import annotations

from .exhaustive import _Exhaustive
from .polish import _PairGrid
from .priced import _PricedSearch
from .problem import OBJECTIVES, HardState, _Problem
from .sweeps import _Sweeps
from .windows import _Windows

__all__ = ["HardProblem", "HardState", "OBJECTIVES"]


class HardProblem(_Exhaustive, _PricedSearch, _PairGrid, _Windows, _Sweeps, _Problem):
    """Hard-threshold early exit on one split, prepared for exact searches.

    Parameters
    ----------
    scores : ndarray, shape (N, M)
    correct : ndarray of bool, shape (N, M)
    costs : ndarray, shape (N,) or (R, N)
        Per-exit costs of the constraint rows; a vector is one row (mean latency).
    budget : float or ndarray, shape (R,)
        Upper bound on the mean over samples of each row; ``inf`` for none.
    lower, upper : float, optional
        The box of the confidence measure; the "everyone leaves" and "nobody
        leaves" thresholds are placed at or beyond it.
    objective : {"accuracy", "cost"}
        Maximise hits (ties: lower mean of row 0), or minimise the mean of row 0
        (ties: more hits).
    min_hits : int, optional
        A further constraint ``hits >= min_hits`` (required for ``"cost"``, where
        otherwise every sample would go to the cheapest exit).

    Attributes
    ----------
    evaluations : int
        Full evaluations of a state (O(N M) each).
    moves : int
        Incremental evaluations of a neighbouring state.
    pair_sweeps : int
        Pair sweeps run by :meth:`polish`.
    trades_tried : int
        Predicted moves checked exactly by :meth:`trade`.
    """
