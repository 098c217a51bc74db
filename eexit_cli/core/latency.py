"""Budgets, tolerances and cost vectors (pure functions, no I/O)."""

from __future__ import annotations

import math
import re

import numpy as np

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def check_costs(costs) -> np.ndarray:
    """Return ``costs`` as a float64 vector after checking it is usable.

    Raises ``ValueError`` for fewer than two exits or non-positive / non-finite entries.
    """
    arr = np.asarray(costs, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"costs must be a list of at least 2 per-exit values, got {arr.tolist()}")
    bad = [i + 1 for i, v in enumerate(arr) if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(
            f"costs must be positive and finite; exit(s) {', '.join(map(str, bad))} are not "
            f"({arr.tolist()})"
        )
    return arr


def increasing_warning(costs) -> str | None:
    """A warning when d_n does not increase strictly with n (allowed, but unusual)."""
    arr = np.asarray(costs, dtype=np.float64)
    bad = [i + 2 for i in range(arr.size - 1) if not arr[i + 1] > arr[i]]
    if not bad:
        return None
    return (
        "per-exit costs do not increase with the exit index at exit(s) "
        f"{', '.join(map(str, bad))}: stopping later is expected to cost more"
    )


def parse_budget(text: str | float, costs) -> float:
    """Parse a budget: a number in the costs' unit, or a percentage of d_N ("60%").

    Raises ``ValueError`` with what would be right.
    """
    costs = check_costs(costs)
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip()
        m = re.fullmatch(rf"({_NUMBER})\s*%", s)
        if m:
            value = float(m.group(1)) / 100.0 * costs[-1]
        elif re.fullmatch(_NUMBER, s):
            value = float(s)
        else:
            raise ValueError(
                f"budget {text!r} is not a number; give a mean latency in the profile's unit "
                "(e.g. 0.0021) or a percentage of the last exit's cost (e.g. 60%)"
            )
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"budget must be positive and finite, got {text!r}")
    return float(value)


def parse_fraction(text: str | float, name: str = "tolerance") -> float:
    """Parse a non-negative fraction given as "2%" or "0.02"."""
    s = str(text).strip()
    m = re.fullmatch(rf"({_NUMBER})\s*%", s)
    try:
        value = float(m.group(1)) / 100.0 if m else float(s)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number or percentage (e.g. 2% or 0.02)") from None
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative number, got {text!r}")
    return float(value)


def parse_level(text: str | float, name: str = "level") -> float:
    """Parse a probability in (0, 1) given as "95%" or "0.95"."""
    value = parse_fraction(text, name)
    if not 0 < value < 1:
        raise ValueError(f"{name} must be strictly between 0% and 100%, got {text!r}")
    return value
