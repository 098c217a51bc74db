"""Thresholds into a serving loop: :func:`load_thresholds` gives an :class:`ExitPolicy`."""

from __future__ import annotations

import os

import numpy as np

from eexit_cli.core.latency import parse_budget
from eexit_cli.core.policy import ExitPolicy
from eexit_cli.io.jsonfiles import FRONTIER_FORMAT, THRESHOLDS_FORMAT, ThresholdSet, read_thresholds_or_frontier, \
    thresholds_from_dict

__all__ = ["load_thresholds", "select_entry"]


def _sets_from_object(data: dict, where: str) -> tuple[list[ThresholdSet], list[str]]:
    """Threshold sets (and their names in messages) of a thresholds or frontier object."""
    fmt = data.get("format")
    if fmt == FRONTIER_FORMAT:
        entries = data.get("entries")
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"{where}: entries must be a non-empty list of threshold sets")
        names = [f"{where} entries[{i}]" for i in range(len(entries))]
        return [thresholds_from_dict(e, n) for e, n in zip(entries, names)], names
    if fmt == THRESHOLDS_FORMAT:
        return [thresholds_from_dict(data, where)], [where]
    raise ValueError(f"{where}: format is {fmt!r}, expected {THRESHOLDS_FORMAT!r} or {FRONTIER_FORMAT!r}")


def select_entry(sets: list[ThresholdSet], entry, where: str = "thresholds") -> int:
    """Index of the threshold set ``entry`` chooses.

    ``None``: the only set (an error for a frontier of several). An ``int``: that
    index (negative counts from the end). A ``float``, or a ``str`` such as
    ``"0.0021"`` or ``"60%"`` (of the last exit's latency): the budget; the entry
    with the largest budget not above it (on a frontier, usually the most accurate that fits).
    """
    k = len(sets)
    if entry is None:
        if k > 1:
            budgets = ", ".join(f"{s.budget:.6g}" if s.budget is not None else "none" for s in sets)
            raise ValueError(
                f"entry: {where} is a frontier of {k} threshold sets (budgets {budgets}); choose one "
                "with entry=INDEX (int) or entry=BUDGET (float, or a str like '60%')"
            )
        return 0
    if isinstance(entry, (bool, np.bool_)):
        raise TypeError(f"entry must be an index (int), a budget (float or str) or None, got {entry!r}")
    if isinstance(entry, (int, np.integer)):
        if not -k <= int(entry) < k:
            raise ValueError(f"entry index {int(entry)} is out of range for {k} threshold set(s) in {where}")
        return int(entry) % k
    if isinstance(entry, (float, np.floating, str)):
        budget = parse_budget(entry if isinstance(entry, str) else float(entry), sets[0].latency.per_exit,
                              sets[0].latency.unit, "entry")
        candidates = [(s.budget, i) for i, s in enumerate(sets) if s.budget is not None]
        if not candidates:
            raise ValueError(f"entry: the threshold sets in {where} record no budget; choose one by index")
        # a budget written as a percentage may differ from the stored one in the last bits
        fits = [(b, i) for b, i in candidates if b <= budget * (1 + 1e-12)]
        if not fits:
            smallest = min(b for b, _ in candidates)
            raise ValueError(
                f"entry: no threshold set in {where} has a budget <= {budget:.6g} "
                f"(the smallest is {smallest:.6g} {sets[0].latency.unit})"
            )
        return max(fits)[1]
    raise TypeError(f"entry must be an index (int), a budget (float or str) or None, got {type(entry).__name__}")


def policy_from_set(ts: ThresholdSet, outputs: str | None = None, source: str = "") -> ExitPolicy:
    """The :class:`ExitPolicy` of one threshold set."""
    names = ts.raw.get("exit_names")
    if not (isinstance(names, list) and len(names) == ts.n_exits and all(isinstance(n, str) for n in names)):
        names = ()
    if outputs is None:
        from eexit_cli.core.confidence import COMPUTED_MEASURES

        outputs = "logits" if ts.confidence in COMPUTED_MEASURES else "scores"
    return ExitPolicy(
        thresholds=ts.thresholds,
        confidence=ts.confidence,
        outputs=outputs,
        exit_names=tuple(names),
        costs=ts.latency.per_exit,
        unit=ts.latency.unit,
        budget=ts.budget,
        source=source,
    )


def load_thresholds(path, entry=None, *, outputs: str | None = None) -> ExitPolicy:
    """Load thresholds written by ``eexit tune`` (or :func:`eexit_cli.tune`) as an :class:`ExitPolicy`.

    Parameters
    ----------
    path : str, path-like, or dict
        A thresholds file (``eexit.thresholds/v1``) or a frontier file
        (``eexit.frontier/v1``), or such an object already loaded (e.g.
        ``tune(...).to_dict()``).
    entry : int, float or str, optional
        For a frontier: which threshold set. An ``int`` is an index into its entries
        (``-1``: the largest budget); a ``float`` or a ``str`` (``"0.0021"``,
        ``"60%"`` of the last exit's latency) is a budget, choosing the entry with
        the largest budget not above it. Needed when a frontier has several entries.
    outputs : {"logits", "probs", "scores"}, optional
        What the policy's methods will receive. Default: ``"logits"`` when the
        confidence measure can be computed from class outputs, else ``"scores"``.

    Returns
    -------
    ExitPolicy

    Raises
    ------
    ValueError
        For a file that cannot be used (naming it and the key) or an ``entry`` that
        chooses nothing.
    TypeError
        For arguments of the wrong type.
    """
    if isinstance(path, dict):
        where = "thresholds"
        sets, names = _sets_from_object(path, where)
    elif isinstance(path, (str, os.PathLike)):
        where = os.fspath(path)
        _fmt, sets, _raw = read_thresholds_or_frontier(where)
        names = [where] if len(sets) == 1 and _fmt != FRONTIER_FORMAT else \
            [f"{where} entries[{i}]" for i in range(len(sets))]
    else:
        raise TypeError(f"path must be a file path or a thresholds/frontier dict, got {type(path).__name__}")
    i = select_entry(sets, entry, where)
    return policy_from_set(sets[i], outputs, names[i])
