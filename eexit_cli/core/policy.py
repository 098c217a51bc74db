"""The exit rule as a serving loop uses it: :class:`ExitPolicy`.

A policy holds tuned thresholds and everything needed to apply them to live
outputs the way ``eexit evaluate`` applies them to recorded ones: the confidence
measure, what the outputs are (logits, probabilities or precomputed scores),
the exit names and the latency profile. Confidences are computed by the same
functions as the reader's (float64 log-probabilities, then the measure), and
exits are chosen by :func:`eexit_cli.core.replay.exit_indices`, so a policy's
decisions equal ``evaluate``'s on every sample.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from .confidence import COMPUTED_MEASURES
from .outputs import CLASS_KINDS, as_array, check_class_block, check_finite, class_confidence, is_tensor
from .replay import exit_indices

OUTPUT_KINDS = CLASS_KINDS + ("scores",)


@dataclass(frozen=True, eq=False)  # arrays inside: compared by identity
class ExitPolicy:
    """Hard-threshold early exit: leave at the first exit whose confidence is above its threshold.

    Usually made by :func:`eexit_cli.load_thresholds`.

    Attributes
    ----------
    thresholds : ndarray, shape (N-1,)
        ``t_1 .. t_{N-1}``; a sample leaves at exit n < N when its confidence is
        strictly above ``t_n``; the last exit answers the rest.
    confidence : str
        The measure the thresholds were tuned for.
    outputs : str
        What :meth:`should_exit`, :meth:`apply` and :meth:`predict` receive:
        ``"logits"``, ``"probs"`` or ``"scores"`` (confidences already computed).
    exit_names : tuple of str
    costs : ndarray, shape (N,), or None
        Per-exit latency ``d_1 .. d_N`` of the latency profile, in ``unit``.
    unit : str or None
    budget : float or None
        The mean-latency budget the thresholds were tuned for.
    source : str
        Where the policy came from (file, and entry of a frontier).
    """

    thresholds: np.ndarray
    confidence: str
    outputs: str = "logits"
    exit_names: tuple = ()
    costs: np.ndarray | None = None
    unit: str | None = None
    budget: float | None = None
    source: str = ""

    def __post_init__(self):
        thr = np.asarray(as_array(self.thresholds, "thresholds"), dtype=np.float64)
        if thr.ndim != 1 or thr.size < 1:
            raise ValueError(f"thresholds must be a 1-D array of N-1 >= 1 values, got shape {thr.shape}")
        if np.any(np.isnan(thr)):
            raise ValueError("thresholds contains NaN (use +inf for an exit that is never taken)")
        object.__setattr__(self, "thresholds", thr)
        if not isinstance(self.confidence, str):
            raise TypeError(f"confidence must be a measure name (str), got {self.confidence!r}")
        if self.outputs not in OUTPUT_KINDS:
            raise ValueError(f"outputs must be one of {', '.join(OUTPUT_KINDS)}, got {self.outputs!r}")
        if self.outputs != "scores":
            if self.confidence not in COMPUTED_MEASURES:
                raise ValueError(
                    f"outputs={self.outputs!r}: confidence {self.confidence!r} cannot be computed from "
                    f"class outputs (one of {', '.join(COMPUTED_MEASURES)} can); give outputs='scores' "
                    "and pass the confidences themselves"
                )
        n = thr.size + 1
        names = tuple(self.exit_names) if self.exit_names else tuple(f"exit_{i + 1}" for i in range(n))
        if len(names) != n:
            raise ValueError(f"exit_names has {len(names)} names for {n} exits")
        object.__setattr__(self, "exit_names", names)
        if self.costs is not None:
            costs = np.asarray(self.costs, dtype=np.float64)
            if costs.shape != (n,):
                raise ValueError(f"costs must have one entry per exit ({n}), got shape {costs.shape}")
            object.__setattr__(self, "costs", costs)

    @property
    def n_exits(self) -> int:
        """N, the number of exits."""
        return int(self.thresholds.size + 1)

    def __repr__(self) -> str:
        budget = "" if self.budget is None else f", budget={self.budget:.6g} {self.unit or ''}".rstrip()
        return (f"ExitPolicy({self.n_exits} exits, confidence={self.confidence!r}, "
                f"outputs={self.outputs!r}{budget})")

    # -- per exit ----------------------------------------------------------

    def _exit(self, n) -> int:
        if isinstance(n, (bool, np.bool_)):
            raise TypeError(f"n must be a 0-based exit index (int), got {n!r}")
        try:
            n = operator.index(n)
        except TypeError:
            raise TypeError(f"n must be a 0-based exit index (int), got {type(n).__name__}") from None
        if not 0 <= n < self.n_exits:
            raise ValueError(f"n must be a 0-based exit index in [0, {self.n_exits}), got {n}")
        return n

    def _confidence(self, x: np.ndarray, name: str):
        """Confidence and top-1 class, as the reader computes them (``class_confidence``)."""
        if x.ndim < 1 or x.shape[-1] < 2:
            raise ValueError(f"{name} must have the classes on its last axis (..., C) with C >= 2, got shape {x.shape}")
        if x.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold numbers, got dtype {x.dtype}")
        check_class_block(x, self.outputs, name, logits_name="logits (outputs='logits')")
        return class_confidence(x, self.outputs, self.confidence)

    def scores(self, exit_output, name: str = "exit_output") -> np.ndarray:
        """The confidence of every sample in a batch of one exit's outputs, float64, shape (...).

        For ``outputs="logits"`` or ``"probs"`` the batch is (..., C); for
        ``outputs="scores"`` it already holds the confidences and is returned as float64.
        """
        x = as_array(exit_output, name)
        if self.outputs == "scores":
            x = np.asarray(x, dtype=np.float64)
            check_finite(x, name)
            return x
        return self._confidence(x, name)[0]

    def should_exit(self, n, exit_output):
        """Whether each sample of a batch leaves at exit ``n`` (0-based), given that exit's outputs.

        Parameters
        ----------
        n : int
            The exit reached, ``0 .. N-1``. At the last exit every sample leaves.
        exit_output : array_like or tensor, shape (B, C) (or (..., C))
            Exit n's outputs for the samples still running (logits or probs, as
            ``outputs`` says; for ``outputs="scores"``, shape (B,) of confidences).

        Returns
        -------
        ndarray of bool, shape (B,), or a bool tensor on exit_output's device when a
        tensor was given: True where the confidence is strictly above ``t_n``.
        """
        n = self._exit(n)
        sc = self.scores(exit_output)
        if n == self.n_exits - 1:
            leave = np.ones(sc.shape, dtype=bool)
        else:
            leave = sc > self.thresholds[n]
        if is_tensor(exit_output):
            import torch

            return torch.from_numpy(leave).to(exit_output.device)
        return leave

    def predict(self, exit_output):
        """The predicted class (argmax of the class distribution) of each sample, shape (...).

        The class ``evaluate`` scores: the argmax of the class outputs the confidence
        is computed from. A tensor in gives an int64 tensor on its device.
        """
        if self.outputs == "scores":
            raise ValueError("predict needs class outputs; this policy receives scores (outputs='scores')")
        x = as_array(exit_output, "exit_output")
        pred = self._confidence(x, "exit_output")[1]
        if is_tensor(exit_output):
            import torch

            return torch.from_numpy(pred).to(exit_output.device)
        return pred

    # -- all exits known ---------------------------------------------------

    def apply(self, exit_outputs):
        """Exit and prediction of every sample of a batch whose outputs at all exits are known.

        Parameters
        ----------
        exit_outputs : array_like or tensor, shape (N, B, C), or a list of N arrays (B, C)
            For ``outputs="scores"``: (N, B) confidences, or a list of N arrays (B,).

        Returns
        -------
        exit_index : ndarray of int, shape (B,)
            The 0-based exit each sample leaves at.
        prediction : ndarray of int, shape (B,), or None
            The class the exit it leaves at predicts (None for ``outputs="scores"``).
        """
        if isinstance(exit_outputs, (list, tuple)):
            if len(exit_outputs) != self.n_exits:
                raise ValueError(f"exit_outputs has {len(exit_outputs)} exits, the policy {self.n_exits}")
            parts = [as_array(x, f"exit_outputs[{i}]") for i, x in enumerate(exit_outputs)]
            if len({p.shape for p in parts}) > 1:
                raise ValueError(
                    "exit_outputs: the per-exit arrays must have one shape, got "
                    + ", ".join(str(p.shape) for p in parts)
                )
        else:
            arr = as_array(exit_outputs, "exit_outputs")
            want = 2 if self.outputs == "scores" else 3
            if arr.ndim != want or arr.shape[0] != self.n_exits:
                shape = "(N, B)" if want == 2 else "(N, B, C)"
                raise ValueError(f"exit_outputs must have shape {shape} with N = {self.n_exits}, got {arr.shape}")
            parts = list(arr)
        if self.outputs == "scores":
            scores = np.stack([self.scores(p, f"exit_outputs[{i}]") for i, p in enumerate(parts)])
            if scores.ndim != 2:
                raise ValueError(f"exit_outputs: each exit's scores must have shape (B,), got {scores.shape[1:]}")
            return exit_indices(scores, self.thresholds), None
        if parts[0].ndim != 2:
            raise ValueError(f"exit_outputs: each exit's outputs must have shape (B, C), got {parts[0].shape}")
        conf = [self._confidence(p, f"exit_outputs[{i}]") for i, p in enumerate(parts)]
        scores = np.stack([sc for sc, _ in conf])
        idx = exit_indices(scores, self.thresholds)
        preds = np.stack([top for _, top in conf])
        return idx, preds[idx, np.arange(idx.size)]
