"""Replaying thresholds on a split: :func:`evaluate` (the report ``eexit evaluate`` prints)
and :func:`replay` (where every sample leaves).

``eexit evaluate`` parses its options and calls :func:`evaluate_sets`; the entries
and the report around them are built by :mod:`eexit_cli.core.report`, so the
command and the library give the same ``eexit.evaluation/v2`` object.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from eexit_cli.core.latency import parse_budget, parse_fraction
from eexit_cli.core.replay import ReplayResult, check_costs, check_problem, replay_checked
from eexit_cli.core.report import evaluation_entry, evaluation_report
from eexit_cli.core.tail import TailBudget, parse_tail
from eexit_cli.errors import InputError
from eexit_cli.io.agreement import check_exit_names, unit_factor
from eexit_cli.io.exits import ExitOutputs, read_exits
from eexit_cli.io.jsonfiles import LatencyProfile, ThresholdSet, read_latency, \
    read_thresholds_or_frontier

__all__ = ["Evaluation", "BudgetError", "TailError", "evaluate", "evaluate_sets", "replay"]


@dataclass(frozen=True)
class Evaluation:
    """The outcome of :func:`evaluate`.

    Attributes
    ----------
    report : dict
        The ``eexit.evaluation/v2`` object ``eexit evaluate`` writes (docs/formats.md):
        the worst case of the gated figures at the top level, one object per
        threshold set in ``entries``.
    replays : list of ReplayResult
        Per entry, the replay behind it, with the 0-based exit of every sample
        (``exit_index``) and each exit's share (``fraction``).
    """

    report: dict
    replays: list

    @property
    def passed(self) -> bool:
        """Every threshold set is within its budget (plus tolerance) and the accuracy gate."""
        return bool(self.report["passed"])

    @property
    def entries(self) -> list:
        return self.report["entries"]

    @property
    def accuracy(self) -> float:
        """The lowest accuracy over the entries (the set's own with one entry)."""
        return self.report["accuracy"]

    @property
    def mean_latency(self) -> float:
        """The highest mean latency over the entries (the set's own with one entry)."""
        return self.report["mean_latency"]

    def to_dict(self) -> dict:
        return self.report


def _tuning_fields(ts: ThresholdSet) -> dict:
    """What the thresholds file recorded about its tuning, for the report entry."""
    out = {}
    tuning = ts.raw.get("tuning") if isinstance(ts.raw.get("tuning"), dict) else {}
    if tuning:
        out["method"] = tuning.get("method")
        out["tuning_accuracy"] = tuning.get("accuracy")
        out["tuning_mean_latency"] = tuning.get("mean_latency")
    guarantee = tuning.get("guarantee") if tuning else None
    if isinstance(guarantee, dict):
        out["certified"] = {
            "level": guarantee.get("level"),
            "upper_bound": guarantee.get("upper_bound"),
            "bound": guarantee.get("bound"),
        }
    return out


class BudgetError(ValueError):
    """A budget override that cannot be used (the command reports it as its --budget option)."""


class TailError(ValueError):
    """A tail budget that cannot be used (the command reports it as its --tail option)."""


def evaluate_sets(split, sets, *, latency: LatencyProfile | None = None, latency_source: str | None = None,
                  budget=None, tolerance: float = 0.0, min_accuracy: float | None = None,
                  ignore_index: int | None = None, thresholds_files=None, allow_renamed_exits: bool = False,
                  reader=read_exits, tail=None) -> Evaluation:
    """Replay each threshold set on ``split`` and build the report (the work of ``eexit evaluate``).

    ``sets`` lists ``(file name, ThresholdSet)``; ``split`` is a path or
    :class:`ExitOutputs` (then every set must use its confidence measure).
    ``latency`` overrides the sets' profiles; ``budget`` (a number in the report's
    unit, ``"60%"`` or ``"1.8ms"``) their budgets. Every latency in the report is in
    one unit, the override's or else the first set's: budgets and profiles in other
    time units are converted, other units must agree. Files naming their exits must
    name the same exits in the same order unless ``allow_renamed_exits``.
    ``reader(path, confidence=..., ignore_index=...)`` reads the split (the command
    reads it in a child process). ``tail`` (``"95%:60%"`` strings or
    :class:`~eexit_cli.core.tail.TailBudget`, X in the report's unit) replaces the tail
    budgets stored with the sets; every entry reports its latency quantiles and gates
    on its tail budgets. Raises ``InputError`` (a ``ValueError``) naming the files when
    they disagree, :class:`BudgetError` for an unusable ``budget`` and
    :class:`TailError` for an unusable ``tail``.
    """
    cache: dict[str, ExitOutputs] = {}
    if isinstance(split, ExitOutputs):
        cache[split.confidence] = split
        split_name = split.path or "outputs"
    else:
        split_name = os.fspath(split)
    # every latency in the report is in one unit: the override's, else the first file's
    unit = (latency or sets[0][1].latency).unit
    unit_source = latency_source or str(sets[0][0])
    entries, replays = [], []
    for path, ts in sets:
        lat = latency or ts.latency
        lat_source = latency_source or str(path)
        if lat.n_exits != ts.n_exits:
            raise InputError(
                f"{latency_source}: the latency profile has {lat.n_exits} exits but the thresholds "
                f"in {path} are for {ts.n_exits} exits (N disagrees)"
            )
        # the budget is in the unit of the profile stored with the thresholds
        factor = unit_factor(f"the budget in {path}", ts.latency.unit, unit_source, unit)
        costs = [float(Fraction(float(d)) * unit_factor(lat_source, lat.unit, unit_source, unit))
                 for d in lat.per_exit]
        if budget is not None:
            try:
                gamma = parse_budget(budget, costs, unit, "budget")
            except ValueError as exc:
                raise BudgetError(str(exc)) from None
        else:
            gamma = None if ts.budget is None else float(Fraction(ts.budget) * factor)
        if tail is not None:
            try:
                tails = [t if isinstance(t, TailBudget) else parse_tail(t, costs, unit)
                         for t in ([tail] if isinstance(tail, (str, TailBudget)) else tail)]
            except ValueError as exc:
                raise TailError(str(exc)) from None
        else:
            # stored with the thresholds, in their profile's unit
            tails = [TailBudget(tb.level, float(Fraction(tb.latency) * factor)) for tb in ts.tail]
        if ts.confidence not in cache:
            if isinstance(split, ExitOutputs):
                raise ValueError(
                    f"thresholds in {path} use confidence {ts.confidence!r} but the outputs hold "
                    f"{split.confidence!r}; pass the split's file instead"
                )
            cache[ts.confidence] = reader(split_name, confidence=ts.confidence, ignore_index=ignore_index)
        outputs = cache[ts.confidence]
        if outputs.n_exits != ts.n_exits:
            raise InputError(
                f"{split_name}: has {outputs.n_exits} exits but {path} holds thresholds for "
                f"{ts.n_exits} exits (N disagrees)"
            )
        check_exit_names(
            [(split_name, outputs.exit_names if outputs.names_given else None),
             (str(path), ts.exit_names),
             (f"the latency profile in {path}", ts.latency.exit_names),
             (str(latency_source), latency.exit_names if latency else None)],
            allow_renamed_exits,
        )
        names = (outputs.exit_names if outputs.names_given else None) or ts.exit_names or outputs.exit_names
        try:
            entry = evaluation_entry(outputs.scores, outputs.correct, ts.thresholds, costs,
                                     budget=gamma, tolerance=tolerance, min_accuracy=min_accuracy,
                                     exit_names=names, unit=unit, tail=tails)
        except ValueError as exc:
            raise InputError(f"{path}: {exc}") from None
        entry["confidence"] = ts.confidence
        entry["thresholds_file"] = str(path)
        entry.update(_tuning_fields(ts))
        entries.append(entry)
        # evaluation_entry checked the arrays (and the costs) just above
        replays.append(replay_checked(outputs.scores, outputs.correct, ts.thresholds,
                                      np.asarray(costs, dtype=np.float64)))
    first = next(iter(cache.values()))
    files = thresholds_files if thresholds_files is not None else list(dict.fromkeys(str(p) for p, _ in sets))
    report = evaluation_report(
        entries,
        split=split_name,
        thresholds_files=[str(p) for p in files],
        samples=first.n_samples,
        confidence=first.confidence,
        unit=unit,
    )
    return Evaluation(report=report, replays=replays)


def _load_sets(thresholds, entry) -> tuple[list, list]:
    """(file name, ThresholdSet) pairs and file names from the ``thresholds`` argument."""
    from eexit_cli.api.serving import _sets_from_object, select_entry
    from eexit_cli.core.policy import ExitPolicy

    items = thresholds if isinstance(thresholds, (list, tuple)) else [thresholds]
    if not items:
        raise ValueError("thresholds: give at least one thresholds or frontier file")
    sets, files = [], []
    for item in items:
        if isinstance(item, ExitPolicy):
            raise TypeError("thresholds: give the file (or dict) the policy was loaded from; "
                            "a policy is replayed with replay(split, policy)")
        if isinstance(item, dict):
            name = "thresholds"
            file_sets, _names = _sets_from_object(item, name)
        elif isinstance(item, (str, os.PathLike)):
            name = os.fspath(item)
            _fmt, file_sets, _raw = read_thresholds_or_frontier(name)
        elif hasattr(item, "to_dict"):  # a Tuned result
            name = "thresholds"
            file_sets, _names = _sets_from_object(item.to_dict(), name)
        else:
            raise TypeError(f"thresholds must be file paths or thresholds/frontier dicts, got {type(item).__name__}")
        if entry is not None:
            file_sets = [file_sets[select_entry(file_sets, entry, name)]]
        sets.extend((name, ts) for ts in file_sets)
        files.append(name)
    return sets, files


def evaluate(split, thresholds, *, entry=None, budget=None, latency=None, tolerance=0.0,
             min_accuracy=None, ignore_index: int | None = None,
             allow_renamed_exits: bool = False, tail=None) -> Evaluation:
    """Replay thresholds on a split and check the budget (``eexit evaluate`` as a function).

    Parameters
    ----------
    split : str, path-like or ExitOutputs
        The test split (an exit-outputs file or :func:`read_exits`'s result).
    thresholds : str, path-like, dict, Tuned, or a list of them
        Thresholds or frontier files (or their JSON objects); every threshold set
        becomes one entry of the report.
    entry : int, float or str, optional
        Evaluate only this entry of each frontier (index or budget, as in
        :func:`load_thresholds`).
    budget : float or str, optional
        Override the budget: a mean latency in the report's unit, ``"60%"`` of the last
        exit's latency, or a time such as ``"1.8ms"`` (converted).
    latency : str, path-like or LatencyProfile, optional
        Override the latency profile stored with the thresholds.
    tolerance : float or str
        Allowed relative excess over the budget (``0.02`` or ``"2%"``).
    min_accuracy : float or str, optional
        Accuracy gate (``0.9`` or ``"90%"``).
    ignore_index : int, optional
        Leave out samples with this label.
    allow_renamed_exits : bool
        Accept files whose ``exit_names`` differ (exits matched by position).
    tail : str, TailBudget, or a list of them, optional
        Gate on these tail budgets (``"95%:60%"``: p95 latency <= 60% of d_N) instead of
        those stored with the thresholds (``tune --tail``).

    Returns
    -------
    Evaluation
        ``.report`` is the JSON ``eexit evaluate`` writes; ``.passed`` its verdict.
    """
    sets, files = _load_sets(thresholds, entry)
    if budget is not None and len(sets) > 1:
        raise ValueError("budget: cannot override the budgets of several threshold sets (each has its own)")
    tolerance = parse_fraction(tolerance, "tolerance")
    if min_accuracy is not None:
        min_accuracy = parse_fraction(min_accuracy, "min_accuracy")
        if min_accuracy > 1:
            raise ValueError(f"min_accuracy must be at most 1 (100%), got {min_accuracy!r}")
    source = None
    if isinstance(latency, (str, os.PathLike)):
        source = os.fspath(latency)
        latency = read_latency(latency)
    elif latency is not None:
        if not isinstance(latency, LatencyProfile):
            raise TypeError(f"latency must be a latency profile file or LatencyProfile, got {type(latency).__name__}")
        source = "latency"
    if isinstance(split, ExitOutputs) and ignore_index is not None:
        raise ValueError("ignore_index applies when reading a file; give it to read_exits instead")
    if not isinstance(split, (ExitOutputs, str, os.PathLike)):
        raise TypeError(f"split must be an exit-outputs file or ExitOutputs, got {type(split).__name__}")
    return evaluate_sets(split, sets, latency=latency, latency_source=source, budget=budget,
                         tolerance=tolerance, min_accuracy=min_accuracy, ignore_index=ignore_index,
                         thresholds_files=files, allow_renamed_exits=allow_renamed_exits, tail=tail)


def replay(split, policy, *, entry=None, ignore_index: int | None = None) -> ReplayResult:
    """Where every sample of a split leaves under a threshold set, and what that costs.

    Parameters
    ----------
    split : str, path-like or ExitOutputs
    policy : ExitPolicy, or what :func:`load_thresholds` accepts (path or dict)
    entry : optional
        For a frontier file: which entry (see :func:`load_thresholds`).
    ignore_index : int, optional

    Returns
    -------
    ReplayResult
        ``exit_index`` (0-based exit of every sample), ``accuracy``,
        ``mean_latency`` (in the policy's unit), ``fraction`` and ``exit_accuracy``
        per exit.
    """
    from eexit_cli.api.serving import load_thresholds
    from eexit_cli.core.policy import ExitPolicy

    if not isinstance(policy, ExitPolicy):
        policy = load_thresholds(policy, entry)
    elif entry is not None:
        raise ValueError("entry chooses among a file's threshold sets; a policy is one set already")
    if isinstance(split, ExitOutputs):
        if split.confidence != policy.confidence:
            raise ValueError(f"split holds confidence {split.confidence!r}, the policy uses {policy.confidence!r}")
        outputs = split
    elif isinstance(split, (str, os.PathLike)):
        outputs = read_exits(split, confidence=policy.confidence, ignore_index=ignore_index)
    else:
        raise TypeError(f"split must be an exit-outputs file or ExitOutputs, got {type(split).__name__}")
    if outputs.n_exits != policy.n_exits:
        raise ValueError(f"split has {outputs.n_exits} exits, the policy {policy.n_exits} (N disagrees)")
    if policy.costs is None:
        raise ValueError("the policy has no latency profile (costs) to compute the mean latency with")
    if outputs is split:  # arrays made by the caller: checked here, as evaluate() checks them
        scores, correct, costs = check_problem(outputs.scores, outputs.correct, policy.costs)
        return replay_checked(scores, correct, policy.thresholds, costs)
    # read_exits checked the scores it read
    return replay_checked(outputs.scores, outputs.correct, policy.thresholds,
                          check_costs(policy.costs, outputs.n_exits))
