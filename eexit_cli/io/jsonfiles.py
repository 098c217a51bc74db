"""The JSON files the subcommands exchange, validated on read (see docs/formats.md).

- ``eexit.latency/v1``: per-exit latency (or cost) profile, written by ``profile``.
- ``eexit.thresholds/v1``: one threshold set with its budget and latency profile,
  written by ``tune``, read by ``evaluate``.
- ``eexit.frontier/v1``: several threshold sets for a sweep of budgets.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from eexit_cli.core.latency import check_costs
from eexit_cli.core.tail import TailBudget
from eexit_cli.core.units import convert_all
from eexit_cli.errors import InputError

LATENCY_FORMAT = "eexit.latency/v1"
THRESHOLDS_FORMAT = "eexit.thresholds/v1"
FRONTIER_FORMAT = "eexit.frontier/v1"


@dataclass(frozen=True)
class LatencyProfile:
    """Per-exit latency (or cost) ``d_1 .. d_N`` in ``unit``, with the file's other keys."""

    per_exit: np.ndarray  # d_1..d_N, positive, finite
    unit: str
    extra: dict = field(default_factory=dict)  # every other key, kept as read

    @property
    def n_exits(self) -> int:
        return int(self.per_exit.size)

    @property
    def exit_names(self) -> list[str] | None:
        """The exits' names when the profile records them (checked on read), else None."""
        names = self.extra.get("exit_names")
        return list(names) if names is not None else None

    def in_unit(self, unit: str) -> "LatencyProfile":
        """The same profile expressed in ``unit`` (``ValueError`` when it cannot be converted)."""
        if unit == self.unit:
            return self
        per_exit = np.array(convert_all(self.per_exit, self.unit, unit))
        return LatencyProfile(per_exit=check_costs(per_exit), unit=unit, extra=self.extra)

    def to_dict(self) -> dict:
        return {
            "format": LATENCY_FORMAT,
            "unit": self.unit,
            "per_exit": [float(x) for x in self.per_exit],
            **{k: v for k, v in self.extra.items() if k not in ("format", "unit", "per_exit")},
        }


@dataclass(frozen=True)
class ThresholdSet:
    thresholds: np.ndarray  # t_1..t_{N-1}
    confidence: str
    budget: float | None
    latency: LatencyProfile
    raw: dict  # the whole object, for reporting what tune recorded
    exit_names: list[str] | None = None  # as recorded in the file, else None
    tail: tuple = ()  # TailBudget records: "p-quantile of latency <= X", in the latency's unit

    @property
    def n_exits(self) -> int:
        return int(self.thresholds.size + 1)


def load_json(path: str | os.PathLike, what: str) -> dict:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found")
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read().decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a JSON {what} file (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply to be a {what} file") from None
    except ValueError as exc:  # e.g. an integer literal of thousands of digits
        raise InputError(f"{path}: not a usable JSON {what} file ({exc})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object for a {what} file, got {type(data).__name__}")
    return data


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _require(data: dict, key: str, path: str, what: str):
    if key not in data:
        raise InputError(f"{path}: {what} is missing the key {key!r}")
    return data[key]


def _check_format(data: dict, expected: str, path: str, what: str) -> None:
    fmt = _require(data, "format", path, what)
    if fmt != expected:
        raise InputError(f"{path}: format is {fmt!r}, expected {expected!r} for a {what} file")


def _float(value, path: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{path}: {key} must be a number, got {_short(value)}")
    try:
        value = float(value)
    except OverflowError:
        raise InputError(f"{path}: {key} is too large ({len(str(value))} digits)") from None
    if not math.isfinite(value):
        raise InputError(f"{path}: {key} must be finite, got {value!r}")
    return value


def _exit_names(data: dict, n_exits: int, path: str) -> list[str] | None:
    names = data.get("exit_names")
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
        raise InputError(f"{path}: exit_names must be a list of strings, got {names!r}")
    if len(names) != n_exits:
        raise InputError(
            f"{path}: exit_names has {len(names)} names but there are {n_exits} exits (N disagrees)"
        )
    return names


def latency_from_dict(data: dict, path: str = "<latency>") -> LatencyProfile:
    what = "latency profile"
    _check_format(data, LATENCY_FORMAT, path, what)
    unit = _require(data, "unit", path, what)
    if not isinstance(unit, str) or not unit.strip():
        raise InputError(f"{path}: unit must be a non-empty string, got {unit!r}")
    per_exit = _require(data, "per_exit", path, what)
    if not isinstance(per_exit, list) or len(per_exit) < 2:
        raise InputError(f"{path}: per_exit must be a list of at least 2 per-exit latencies, got {per_exit!r}")
    values = [_float(v, path, f"per_exit[{i}]") for i, v in enumerate(per_exit)]
    try:
        costs = check_costs(values)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None
    _exit_names(data, len(values), path)
    extra = {k: v for k, v in data.items() if k not in ("format", "unit", "per_exit")}
    return LatencyProfile(per_exit=costs, unit=unit, extra=extra)


def read_latency(path: str | os.PathLike) -> LatencyProfile:
    """Read a latency profile file (``eexit.latency/v1``, written by ``eexit profile``)."""
    path = os.fspath(path)
    return latency_from_dict(load_json(path, "latency profile"), path)


def latency_from_costs(costs: list[float], unit: str) -> LatencyProfile:
    return latency_from_dict(
        {"format": LATENCY_FORMAT, "unit": unit, "per_exit": list(costs), "source": "given on the command line"},
        "--costs",
    )


def thresholds_from_dict(data: dict, path: str = "<thresholds>") -> ThresholdSet:
    what = "thresholds"
    _check_format(data, THRESHOLDS_FORMAT, path, what)
    confidence = _require(data, "confidence", path, what)
    if not isinstance(confidence, str):
        raise InputError(f"{path}: confidence must be a string, got {confidence!r}")
    thr = _require(data, "thresholds", path, what)
    if not isinstance(thr, list) or len(thr) < 1:
        raise InputError(f"{path}: thresholds must be a list of N-1 numbers, got {thr!r}")
    thresholds = np.array([_float(v, path, f"thresholds[{i}]") for i, v in enumerate(thr)])
    budget = _require(data, "budget", path, what)
    if budget is not None:
        budget = _float(budget, path, "budget")
        if budget <= 0:
            raise InputError(f"{path}: budget must be positive, got {budget}")
    lat = _require(data, "latency", path, what)
    if not isinstance(lat, dict):
        raise InputError(f"{path}: latency must be a latency-profile object, got {lat!r}")
    latency = latency_from_dict(lat, f"{path} (latency)")
    if latency.n_exits != thresholds.size + 1:
        raise InputError(
            f"{path}: {thresholds.size} thresholds need a latency profile of {thresholds.size + 1} exits, "
            f"got {latency.n_exits} (N disagrees)"
        )
    names = _exit_names(data, thresholds.size + 1, path)
    tail = _tail_budgets(data.get("tail"), path)
    return ThresholdSet(thresholds=thresholds, confidence=confidence, budget=budget, latency=latency,
                        raw=data, exit_names=names, tail=tail)


def _tail_budgets(value, path: str) -> tuple:
    """The optional ``tail`` key: a list of ``{"level": p, "latency": X}`` objects."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InputError(f"{path}: tail must be a list of objects with level and latency, got {value!r}")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or "level" not in item or "latency" not in item:
            raise InputError(f"{path}: tail[{i}] must be an object with level and latency, got {item!r}")
        level = _float(item["level"], path, f"tail[{i}].level")
        limit = _float(item["latency"], path, f"tail[{i}].latency")
        if not 0 < level < 1 or limit <= 0:
            raise InputError(
                f"{path}: tail[{i}] needs 0 < level < 1 and a positive latency, got level {level:g}, "
                f"latency {limit:g}"
            )
        out.append(TailBudget(level, limit))
    return tuple(out)


def read_thresholds_or_frontier(path: str | os.PathLike) -> tuple[str, list[ThresholdSet], dict]:
    """Read a thresholds or a frontier file; returns (format, threshold sets, raw object)."""
    path = os.fspath(path)
    data = load_json(path, "thresholds")
    fmt = data.get("format")
    if fmt == FRONTIER_FORMAT:
        entries = _require(data, "entries", path, "frontier")
        if not isinstance(entries, list) or not entries:
            raise InputError(f"{path}: entries must be a non-empty list of threshold sets")
        sets = []
        for i, e in enumerate(entries):
            if not isinstance(e, dict):
                raise InputError(f"{path}: entries[{i}] must be an object")
            sets.append(thresholds_from_dict(e, f"{path} entries[{i}]"))
        return fmt, sets, data
    if fmt is None:
        raise InputError(f"{path}: thresholds is missing the key 'format'")
    if fmt != THRESHOLDS_FORMAT:
        raise InputError(
            f"{path}: format is {fmt!r}, expected {THRESHOLDS_FORMAT!r} or {FRONTIER_FORMAT!r}"
        )
    return fmt, [thresholds_from_dict(data, path)], data


def read_thresholds(path: str | os.PathLike) -> ThresholdSet:
    path = os.fspath(path)
    return thresholds_from_dict(load_json(path, "thresholds"), path)


def thresholds_to_dict(
    thresholds, confidence: str, budget: float | None, latency: LatencyProfile, **extra
) -> dict:
    """The ``eexit.thresholds/v1`` object; ``extra`` keys (e.g. ``tuning``) are appended."""
    return {
        "format": THRESHOLDS_FORMAT,
        "confidence": confidence,
        "thresholds": [float(t) for t in np.asarray(thresholds, dtype=float)],
        "budget": None if budget is None else float(budget),
        "latency": latency.to_dict(),
        **extra,
    }
