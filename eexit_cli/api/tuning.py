"""Tuning a split for one or several budgets: :func:`tune` and its :class:`Tuned` result.

``eexit tune`` parses its options and calls :func:`tune_outputs`; :func:`tune` is
the same with files, profiles and budgets given as Python values.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from eexit_cli.core.latency import parse_budget, parse_fraction, parse_level, parse_share
from eexit_cli.core.replay import replay_checked
from eexit_cli.core.report import exact_mean
from eexit_cli.errors import InfeasibleBudgetError, InputError
from eexit_cli.io.agreement import check_exit_names
from eexit_cli.io.exits import ExitOutputs, read_exits
from eexit_cli.io.jsonfiles import FRONTIER_FORMAT, LatencyProfile, latency_from_costs, read_latency, \
    thresholds_to_dict

__all__ = ["Tuned", "tune", "tune_outputs", "check_calibration", "check_tuning_inputs", "feasible_hint", "MIN_SAMPLES_PER_EXIT"]

MIN_SAMPLES_PER_EXIT = 10


@dataclass(frozen=True)
class Tuned:
    """Thresholds tuned on one split, for one budget or a frontier of budgets.

    Attributes
    ----------
    entries : list of dict
        One ``eexit.thresholds/v1`` object per budget, in increasing budget order,
        each with its ``tuning`` record (method, accuracy and mean latency on the
        tuning split, convergence, timings, and the certificate with a guarantee).
    results : list of TuneResult
        The solver's result for each budget (:class:`eexit_cli.core.tuner.TuneResult`).
    budgets : list of float
    confidence : str
    split : str
    warnings : list of str
        Notes worth showing (e.g. costs that do not increase with the exit).
    skipped : list of dict
        Budgets of a sweep that cannot be met: ``{"budget", "reason"}`` each.
    """

    entries: list
    results: list
    budgets: list
    confidence: str
    split: str
    warnings: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    @property
    def thresholds(self) -> np.ndarray:
        """The thresholds ``t_1 .. t_{N-1}`` (one budget only)."""
        if len(self.entries) != 1:
            raise ValueError(f"a frontier of {len(self.entries)} budgets has no single thresholds; "
                             "see entries or policy(entry=...)")
        return np.asarray(self.entries[0]["thresholds"], dtype=float)

    def to_dict(self, timings: bool = True) -> dict:
        """The JSON ``eexit tune`` writes: a thresholds object for one budget, else a frontier.

        ``timings=False`` leaves the wall-clock ``seconds`` fields out, so equal inputs
        give identical output (``eexit tune --no-timings``).
        """
        if len(self.budgets) == 1 and len(self.entries) == 1:
            result = self.entries[0]
        else:
            result = {
                "format": FRONTIER_FORMAT,
                "confidence": self.confidence,
                "split": self.split,
                "budgets": [e["budget"] for e in self.entries],
                "entries": self.entries,
            }
            if self.skipped:
                result["skipped"] = self.skipped
        return result if timings else _without_timings(result)

    def save(self, path, timings: bool = True) -> None:
        """Write :meth:`to_dict` as JSON, atomically ('-' = stdout)."""
        from eexit_cli.io.atomic import write_json

        write_json(self.to_dict(timings), path)

    def policy(self, entry=None, *, outputs=None):
        """The :class:`~eexit_cli.core.policy.ExitPolicy` of these thresholds (see load_thresholds)."""
        from eexit_cli.api.serving import load_thresholds

        return load_thresholds(self.to_dict(), entry, outputs=outputs)


def _without_timings(obj):
    """A copy of ``obj`` without wall-clock ``seconds`` fields (for byte-identical output)."""
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def feasible_hint(costs, unit: str, percent: bool = False) -> str:
    """The smallest feasible budget, also as a percentage of d_N when ``percent``."""
    low = float(np.min(costs))
    text = f"the smallest feasible budget is {low:.6g} {unit}"
    if percent:
        text += f" ({100 * low / float(costs[-1]):.4g}% of the last exit's cost)"
    return text


def check_calibration(n_samples: int, n_exits: int, fraction: float, shown) -> None:
    """Refuse a calibration fraction that leaves either part of the split too small.

    Raises ``ValueError`` (``shown`` is the fraction as the user wrote it).
    """
    min_samples = MIN_SAMPLES_PER_EXIT * n_exits
    n_cal = int(round(fraction * n_samples))
    for part, n in (("calibration", n_cal), ("tuning", n_samples - n_cal)):
        if n < min_samples:
            raise ValueError(
                f"{shown} of {n_samples} samples leaves {n} for the {part} part; each part needs "
                f"at least {min_samples} ({MIN_SAMPLES_PER_EXIT} per exit)"
            )


def _as_latency(latency, unit: str) -> tuple[LatencyProfile, str]:
    if isinstance(latency, LatencyProfile):
        return latency, "latency"
    if isinstance(latency, (str, os.PathLike)):
        return read_latency(latency), os.fspath(latency)
    if isinstance(latency, dict):
        from eexit_cli.io.jsonfiles import latency_from_dict

        return latency_from_dict(latency, "latency"), "latency"
    try:
        costs = [float(x) for x in latency]
    except (TypeError, ValueError):
        raise TypeError(
            "latency must be a latency profile file, a LatencyProfile, or per-exit costs "
            f"(a list of numbers), got {type(latency).__name__}"
        ) from None
    try:
        return latency_from_costs(costs, unit), "latency"
    except InputError as exc:
        raise ValueError(str(exc).replace("--costs:", "latency:", 1)) from None


def _as_budgets(budget, costs, unit) -> list[float]:
    items = list(budget) if isinstance(budget, (list, tuple, np.ndarray)) else [budget]
    if not items:
        raise ValueError("budget: give at least one budget")
    out = []
    for b in items:
        if isinstance(b, (bool, np.bool_)) or not isinstance(b, (int, float, np.integer, np.floating, str)):
            raise TypeError(f"budget must be a number, a str like '60%', or a list of them, got {b!r}")
        try:
            out.append(parse_budget(b if isinstance(b, str) else float(b), costs, unit, "budget"))
        except ValueError as exc:
            raise ValueError(str(exc)) from None
    return sorted(set(out))


def check_tuning_inputs(outputs: ExitOutputs, latency: LatencyProfile, latency_source: str = "latency",
                        allow_renamed_exits: bool = False) -> None:
    """Refuse a split and a latency profile that cannot be tuned together.

    The exit counts must agree, so must the exit names where both files name them
    (unless ``allow_renamed_exits``), and the split needs at least
    :data:`MIN_SAMPLES_PER_EXIT` samples per exit. Raises ``InputError`` naming the files.
    """
    split = outputs.path or "outputs"
    if outputs.n_exits != latency.n_exits:
        raise InputError(
            f"{latency_source}: the latency profile has {latency.n_exits} exits but {split} has "
            f"{outputs.n_exits} (N disagrees)"
        )
    check_exit_names([(split, outputs.exit_names if outputs.names_given else None),
                      (str(latency_source), latency.exit_names)], allow_renamed_exits)
    min_samples = MIN_SAMPLES_PER_EXIT * outputs.n_exits
    if outputs.n_samples < min_samples:
        raise InputError(
            f"{split}: {outputs.n_samples} samples are too few to tune {outputs.n_exits} exits on; "
            f"use a validation split of at least {min_samples} samples"
        )


def tune_outputs(outputs: ExitOutputs, latency: LatencyProfile, budgets: Sequence[float], *,
                 method: str = "ippp", polish: bool = True, guarantee: float | None = None,
                 calibration_fraction: float = 0.3, bound: str | None = None, seed: int = 0,
                 params: dict | None = None, latency_source: str = "latency",
                 allow_renamed_exits: bool = False, percent_hint: bool = False,
                 progress: Callable[[int], None] | None = None, tail=None,
                 min_accuracy: float | None = None, max_drop: float | None = None,
                 jobs: int | None = None) -> Tuned:
    """Tune thresholds on ``outputs`` for each budget (the work of ``eexit tune``).

    Budgets are already parsed (in the latency profile's unit); ``[None]`` tunes for
    the tail budgets (``tail``: :class:`~eexit_cli.core.tail.TailBudget` items) or the
    accuracy target alone. With ``min_accuracy`` (or ``max_drop``, below the last
    exit's accuracy on the split) the thresholds minimise the mean latency instead
    (:func:`eexit_cli.core.target.tune_fastest`). A sweep without a guarantee runs on
    ``jobs`` processes (default: the cores available), each on a run of neighbouring
    budgets. In a sweep, budgets that cannot be met are skipped and listed in
    ``Tuned.skipped``. Raises
    :class:`~eexit_cli.errors.InputError` when the split and the profile disagree
    (exit count, or exit names unless ``allow_renamed_exits``) or the split is too
    small, and :class:`~eexit_cli.errors.InfeasibleBudgetError` when no budget can
    be met (or certified); its message gives the smallest feasible budget (also as a
    percentage of d_N with ``percent_hint``).
    """
    from eexit_cli.core.latency import increasing_warning
    from eexit_cli.core.tuner import _tails
    from eexit_cli.core.tuner import tune as tune_thresholds

    tails = _tails(tail)
    target_given = min_accuracy is not None or max_drop is not None
    target_accuracy = min_accuracy

    split = outputs.path or "outputs"
    check_tuning_inputs(outputs, latency, latency_source, allow_renamed_exits)
    if guarantee is not None:
        check_calibration(outputs.n_samples, outputs.n_exits, calibration_fraction, calibration_fraction)
    params = dict(params or {})
    notes = []
    warn = increasing_warning(latency.per_exit)
    if warn:
        notes.append(f"{latency_source}: {warn}")
    names = outputs.exit_names if outputs.names_given else latency.exit_names

    def box(scores):
        # a /scores file has no known range: take it from the samples being tuned on
        # (only the tuning part under a guarantee); equal scores leave the tuner's default
        if outputs.variant != "scores":
            return outputs.score_range
        lo, hi = float(scores.min()), float(scores.max())
        return (lo, hi) if lo < hi else None

    def target_of(correct):
        if max_drop is None:
            return target_accuracy
        return max(0.0, float(np.mean(correct[-1])) - max_drop)

    def solve(scores, correct, budget, init=None, tail=None, min_accuracy=None):
        tail = tails if tail is None else tail
        if target_given:
            from eexit_cli.core.target import tune_fastest

            target = target_of(correct) if min_accuracy is None else min_accuracy
            return tune_fastest(scores, correct, latency.per_exit, target, tail=tail or None,
                                method=method, score_range=box(scores), polish=polish, **params)
        return tune_thresholds(scores, correct, latency.per_exit, budget, tail=tail or None,
                               method=method, score_range=box(scores), polish=polish, init=init,
                               **params)

    entries, results, skipped = [], [], []

    def add_entry(budget, res, tuning, thresholds):
        # the tuner checked these arrays before it returned the thresholds
        hard = replay_checked(outputs.scores, outputs.correct, thresholds,
                              np.asarray(latency.per_exit, dtype=np.float64))
        counts = np.rint(hard.fraction * outputs.n_samples).astype(np.int64)
        tuning["split"] = split
        tuning["samples"] = outputs.n_samples
        tuning["accuracy"] = hard.accuracy
        # the mean as evaluate computes it (exact, rounded once), so that the two agree to the bit
        tuning["mean_latency"] = float(exact_mean(counts, latency.per_exit))
        tuning["per_exit_fraction"] = [float(f) for f in hard.fraction]
        extra = {} if names is None else {"exit_names": list(names)}
        if tails:
            extra["tail"] = [tb.to_dict() for tb in tails]
        if target_given:
            extra["min_accuracy"] = (tuning.get("params") or {}).get("min_accuracy")
        entries.append(thresholds_to_dict(thresholds, outputs.confidence, budget, latency,
                                          **extra, tuning=tuning))
        results.append(res)
        for w in tuning.get("warnings", []) or []:
            if w != warn and w not in notes:
                notes.append(w)

    if guarantee is None and not target_given and len(budgets) > 1:
        from eexit_cli.core.frontier import available_cores, tune_frontier

        # budgets below the cheapest exit cannot be met: listed, not tuned
        d_min = float(np.min(latency.per_exit))
        feasible = [b for b in budgets if b >= d_min]
        for b in budgets:
            if b < d_min:
                skipped.append({"budget": b, "reason": (
                    f"budget {b:.6g} is below the smallest achievable mean latency {d_min:.6g} "
                    f"(every sample leaving at exit {int(np.argmin(latency.per_exit)) + 1}), "
                    "in the unit of the costs")})
        if progress is not None and skipped:
            progress(len(skipped))
        if feasible:
            done0 = len(skipped)
            solved = tune_frontier(
                outputs.scores, outputs.correct, latency.per_exit, feasible,
                jobs=jobs or available_cores(), method=method, score_range=box(outputs.scores),
                polish=polish, tail=tails or None,
                progress=None if progress is None else (lambda done, _total: progress(done0 + done)),
                **params)
            for budget, res in zip(feasible, solved):
                if isinstance(res, InfeasibleBudgetError):  # e.g. a tail budget it cannot meet
                    skipped.append({"budget": budget, "reason": str(res)})
                    continue
                add_entry(budget, res, res.to_dict(), res.thresholds)
        budgets_loop = []
    else:
        budgets_loop = list(budgets)

    prev = None
    for i, budget in enumerate(budgets_loop):
        started = time.perf_counter()
        try:
            if guarantee is not None:
                from eexit_cli.core.guarantee import certify

                kwargs = {} if bound is None else {"bound": bound}
                if tails:
                    kwargs["tail"] = tails
                if target_given:
                    kwargs["min_accuracy"] = min_accuracy
                    kwargs["max_drop"] = max_drop
                g = certify(outputs.scores, outputs.correct, latency.per_exit, budget, level=guarantee,
                            tune_fn=lambda s, c, d, b, init=None, **lim: solve(s, c, b, init=init, **lim),
                            calibration_fraction=calibration_fraction, seed=seed, **kwargs)
                res = g.tune_result
                tuning = res.to_dict()
                tuning["guarantee"] = {k: v for k, v in g.to_dict().items() if k != "tune_result"}
                tuning["seconds"] = time.perf_counter() - started
                thresholds = g.thresholds
            else:
                res = solve(outputs.scores, outputs.correct, budget, init=prev if len(budgets) > 1 else None)
                tuning = res.to_dict()
                thresholds = res.thresholds
        except InfeasibleBudgetError as exc:
            if budget is None:
                raise
            if len(budgets) == 1:
                raise InfeasibleBudgetError(
                    f"{exc}; {feasible_hint(latency.per_exit, latency.unit, percent_hint)}"
                ) from None
            skipped.append({"budget": budget, "reason": str(exc)})
            if progress is not None:
                progress(i + 1)
            continue
        prev = thresholds
        add_entry(budget, res, tuning, thresholds)
        if progress is not None:
            progress(i + 1)
    if not entries:
        raise InfeasibleBudgetError(
            f"none of the {len(budgets)} budgets can be met ({skipped[0]['reason']}); "
            f"{feasible_hint(latency.per_exit, latency.unit, percent_hint)}"
        )
    return Tuned(entries=entries, results=results, budgets=list(budgets), confidence=outputs.confidence,
                 split=split, warnings=notes, skipped=skipped)


def tune(split, latency, budget=None, *, confidence: str | None = None, method: str = "ippp",
         polish: bool = True, guarantee=None, calibration_fraction=0.3, bound: str | None = None,
         seed: int = 0, ignore_index: int | None = None, unit: str = "cost",
         allow_renamed_exits: bool = False, tail=None, min_accuracy=None, max_drop=None,
         jobs: int | None = None, **params) -> Tuned:
    """Tune exit thresholds on a split for a mean-latency budget (``eexit tune`` as a function).

    Parameters
    ----------
    split : str, path-like or ExitOutputs
        The tuning (validation) split: an exit-outputs file or :func:`read_exits`'s result.
    latency : str, path-like, LatencyProfile, dict or list of float
        A latency profile file (``eexit profile``), a profile, or the per-exit costs
        ``d_1 .. d_N`` in any unit (with ``unit=``).
    budget : float, str, or a list of them, optional
        Gamma in the profile's unit, ``"60%"`` of the last exit's cost, or a time such
        as ``"2.1ms"`` (for a profile in s, ms, us or ns). Several budgets give a
        frontier; those that cannot be met are skipped (``Tuned.skipped``). None with
        ``tail`` alone or with an accuracy target.
    tail : str, TailBudget, or a list of them, optional
        Tail-latency budgets, ``"95%:60%"`` = the p95 of per-sample latency is at most
        60% of d_N (docs/method.md); they hold exactly on the split.
    min_accuracy, max_drop : float or str, optional
        Instead of a budget: the lowest mean latency whose accuracy on the split is at
        least ``min_accuracy`` (``0.97`` or ``"97%"``), or at most ``max_drop`` below the
        last exit's accuracy (``"1%"``).
    jobs : int, optional
        Processes for a frontier (default: the cores available).
    confidence : str, optional
        Measure computed from logits/probs (default ``"max_softmax"``).
    method : {"ippp", "heuristic", "single"}
    polish : bool
    guarantee : float or str, optional
        Certify the budget on new data with this probability (``0.95`` or ``"95%"``),
        holding out ``calibration_fraction`` of the split (docs/guarantee.md).
    calibration_fraction, bound, seed
        See ``eexit tune --help``.
    ignore_index : int, optional
        Leave out samples with this label (when ``split`` is a file).
    unit : str
        Unit of ``latency`` when it is a list of costs.
    allow_renamed_exits : bool
        Accept a latency profile whose ``exit_names`` differ from the split's.
    **params
        Solver settings ``k``, ``T``, ``J``, ``gamma``, ``mu``, ``eta``, ``beta``
        (see :func:`eexit_cli.core.tuner.tune`).

    Returns
    -------
    Tuned
        ``.to_dict()`` is what ``eexit tune`` writes; ``.policy()`` serves it.
    """
    from eexit_cli.core.tail import TailBudget, parse_tail

    profile, source = _as_latency(latency, unit)
    if min_accuracy is not None and max_drop is not None:
        raise ValueError("give one accuracy target: min_accuracy or max_drop, not both")
    target_given = min_accuracy is not None or max_drop is not None
    if target_given and budget is not None:
        raise ValueError("min_accuracy/max_drop minimise the mean latency, so they take no budget")
    if budget is None and tail is None and not target_given:
        raise ValueError("budget: give a budget, a tail budget or an accuracy target")
    budgets = [None] if budget is None else _as_budgets(budget, profile.per_exit, profile.unit)
    items = [] if tail is None else ([tail] if isinstance(tail, (str, TailBudget)) else list(tail))
    tails = [t if isinstance(t, TailBudget) else parse_tail(t, profile.per_exit, profile.unit)
             for t in items]
    if min_accuracy is not None:
        min_accuracy = parse_share(min_accuracy, "min_accuracy")
    if max_drop is not None:
        max_drop = parse_share(max_drop, "max_drop", "100 points")
    unknown = sorted(set(params) - {"k", "T", "J", "gamma", "mu", "eta", "beta"})
    if unknown:
        raise TypeError(f"tune() got unexpected keyword argument(s) {', '.join(unknown)}")
    level = None
    if guarantee is not None:
        level = parse_level(guarantee, "guarantee")
        calibration_fraction = parse_fraction(calibration_fraction, "calibration_fraction")
        if not 0 < calibration_fraction < 1:
            raise ValueError("calibration_fraction must be strictly between 0 and 1")
    if isinstance(split, ExitOutputs):
        if confidence not in (None, split.confidence):
            raise ValueError(f"confidence {confidence!r} differs from the outputs' {split.confidence!r}; "
                             "read the split again with read_exits(path, confidence=...)")
        if ignore_index is not None:
            raise ValueError("ignore_index applies when reading a file; give it to read_exits instead")
        outputs = split
    elif isinstance(split, (str, os.PathLike)):
        outputs = read_exits(split, confidence=confidence, ignore_index=ignore_index)
    else:
        raise TypeError(f"split must be an exit-outputs file or ExitOutputs, got {type(split).__name__}")
    budget_items = budget if isinstance(budget, (list, tuple)) else [budget]
    return tune_outputs(outputs, profile, budgets, method=method, polish=polish, guarantee=level,
                        calibration_fraction=calibration_fraction, bound=bound, seed=seed, params=params,
                        latency_source=source, allow_renamed_exits=allow_renamed_exits,
                        percent_hint=any(isinstance(b, str) and "%" in b for b in budget_items),
                        tail=tails, min_accuracy=min_accuracy, max_drop=max_drop, jobs=jobs)
