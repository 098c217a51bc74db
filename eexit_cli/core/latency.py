"""Budgets, tolerances and cost vectors (pure functions, no I/O)."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np

from eexit_cli.core.units import TIME_UNIT_NAMES, conversion_factor, is_time_unit

COST_RANGE = (1e-100, 1e100)
"""Costs outside this range are refused: far beyond any real latency or FLOP count, and
far from the under- and overflow of the arithmetic they go through."""
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
    tiny = [i + 1 for i, v in enumerate(arr) if v < COST_RANGE[0]]
    if tiny:
        raise ValueError(
            f"costs of exit(s) {', '.join(map(str, tiny))} are below {COST_RANGE[0]:g}, too small "
            "to compute with; give them in a smaller unit (e.g. ns instead of s)"
        )
    huge = [i + 1 for i, v in enumerate(arr) if v > COST_RANGE[1]]
    if huge:
        raise ValueError(
            f"costs of exit(s) {', '.join(map(str, huge))} are above {COST_RANGE[1]:g}, too large "
            "to compute with; give them in a larger unit"
        )
    return arr


def slack_budget_warning(budgets, costs, unit: str | None = None, texts=()) -> str | None:
    """A warning when budgets are at or above every exit's cost.

    No mean latency can exceed the largest d_n, so such a budget constrains nothing:
    tuning ignores it and a gate on it cannot fail. Most often a percent sign was
    left out (``--budget 40`` for ``40%``); ``texts`` (the budgets as written) lets
    the warning say so.
    """
    top = float(np.max(np.asarray(costs, dtype=np.float64)))
    slack = sorted({float(b) for b in budgets if b is not None and float(b) >= top})
    if not slack:
        return None
    u = f" {unit}" if unit else ""
    shown = ", ".join(f"{b:.6g}" for b in slack[:4]) + (", ..." if len(slack) > 4 else "")
    many = len(slack) > 1
    line = (f"budget{'s' if many else ''} {shown}{u} {'are' if many else 'is'} at or above the largest "
            f"exit cost ({top:.6g}{u}) and constrain{'' if many else 's'} nothing: every threshold set "
            f"meets {'them' if many else 'it'}")
    plain = [t for t in texts if "%" not in str(t) and split_unit(str(t).split("..")[0].split(":")[0])[1] is None]
    if plain:
        first = str(plain[0])
        pct = (first.replace("..", "%..", 1).replace(":", "%:", 1) if ".." in first else first + "%")
        line += f"; for a percentage of the last exit's cost write {pct}"
    return line


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


def _show(text, limit: int = 40) -> str:
    """``repr(text)``, cut short for messages."""
    r = repr(str(text))
    return r if len(r) <= limit else r[: limit - 4] + "...'"


def _number(s: str, name: str, example: str) -> Fraction:
    """A decimal number written in ``s`` as an exact rational (refusing inf, nan and overflow)."""
    if not re.fullmatch(_NUMBER, s):
        raise ValueError(f"{name} {_show(s)} is not a number (e.g. {example})")
    value = float(s)
    if not math.isfinite(value):
        raise ValueError(f"{name} {_show(s)} is too large")
    if value == 0:
        return Fraction(0)
    try:
        return Fraction(s)
    except ValueError:  # thousands of digits: beyond exact parsing, and beyond a double anyway
        return Fraction(value)


def _to_float(value: Fraction, name: str, text) -> float:
    try:
        out = float(value)
    except OverflowError:
        out = math.inf
    if not math.isfinite(out):
        raise ValueError(f"{name} {_show(text)} is too large")
    return out


def split_unit(text: str) -> tuple[str, str | None]:
    """``"1.8ms"`` -> ``("1.8", "ms")``; ``"60%"`` -> ``("60", "%")``; ``"2"`` -> ``("2", None)``."""
    s = str(text).strip()
    m = re.fullmatch(rf"({_NUMBER})\s*([^\d\s.+-][^\s]*)?", s)
    if not m:
        return s, None
    return m.group(1), m.group(2)


def parse_budget(text: str | float, costs, unit: str | None = None, name: str = "budget") -> float:
    """Parse a budget Γ into the costs' unit.

    ``text`` is a number in the costs' unit (``0.0021``), a percentage of the last
    exit's cost d_N (``60%``), or a number with a time unit (``1.8ms``) converted
    into ``unit`` (refused when ``unit`` is not a time unit). Percentages are
    computed exactly and rounded once, so ``35%`` of 3 is the double nearest 1.05.

    Raises ``ValueError`` with what would be right.
    """
    costs = check_costs(costs)
    hint = "e.g. 0.0021, 60% of the last exit's cost, or 2.1ms"
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        number, suffix = split_unit(str(text))
        try:
            amount = _number(number, name, hint)
        except ValueError as exc:
            if "too large" in str(exc):
                raise
            raise ValueError(
                f"{name} {_show(text)} is not a number; give a mean latency in the profile's unit, "
                f"a percentage of the last exit's cost or a time ({hint})"
            ) from None
        if suffix is None:
            value = _to_float(amount, name, text)
        elif suffix == "%":
            value = _to_float(amount * Fraction(float(costs[-1])) / 100, name, text)
        elif unit is not None and suffix.strip() == str(unit).strip():
            value = _to_float(amount, name, text)
        else:
            if not is_time_unit(suffix):
                raise ValueError(
                    f"{name} {_show(text)} has an unknown unit {suffix!r}; use % or one of "
                    f"{', '.join(TIME_UNIT_NAMES)}, or a plain number in the profile's unit"
                )
            if unit is None or not is_time_unit(unit):
                raise ValueError(
                    f"{name} {_show(text)} is a time but the costs are in {unit!r}, which is not a time "
                    "unit; give the budget as a plain number or a percentage"
                )
            value = _to_float(amount * conversion_factor(suffix, unit), name, text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive, got {_show(text)}")
    return float(value)


MAX_BUDGETS = 200
"""The most budgets one ``tune`` may sweep (all ``--budget`` values together)."""

_RANGE = re.compile(r"^\s*(?P<lo>[^.:][^:]*?)\s*\.\.\s*(?P<hi>[^:]+?)\s*:\s*(?P<n>[^:]*?)\s*$")


def parse_budgets(texts, costs, unit: str | None = None, name: str = "--budget") -> list[float]:
    """Budgets from repeated budget values and ``LOW..HIGH:COUNT`` sweeps, sorted and unique.

    Sweep points are spaced exactly between the two ends (each rounded once); at most
    :data:`MAX_BUDGETS` budgets in all. Raises ``ValueError`` naming the value.
    """
    budgets: list[float] = []
    total = 0
    for text in texts:
        m = _RANGE.match(str(text))
        if not m:
            budgets.append(parse_budget(text, costs, unit, name))
            total += 1
        else:
            if not re.fullmatch(r"\d{1,9}", m.group("n")):
                raise ValueError(f"{name} sweep {_show(text)}: COUNT must be a whole number, e.g. 40%..80%:20")
            n = int(m.group("n"))
            if n < 1:
                raise ValueError(f"{name} sweep {_show(text)} needs a count of at least 1")
            total += n
            if total > MAX_BUDGETS:
                raise ValueError(
                    f"{name} {_show(text)} asks for {total} budgets in all; at most {MAX_BUDGETS} are "
                    "tuned in one run (split a larger sweep into several runs)"
                )
            lo = parse_budget(m.group("lo"), costs, unit, name)
            hi = parse_budget(m.group("hi"), costs, unit, name)
            if hi < lo:
                raise ValueError(f"{name} sweep {_show(text)} goes down; write LOW..HIGH:COUNT")
            if n == 1:
                budgets.append(lo)
            else:
                a, b = Fraction(lo), Fraction(hi)
                budgets.extend(float(a + (b - a) * i / (n - 1)) for i in range(n))
        if total > MAX_BUDGETS:
            raise ValueError(f"{name}: {total} budgets in all; at most {MAX_BUDGETS} are tuned in one run")
    return sorted(set(budgets))


def parse_share(text: str | float, name: str, whole: str = "100%") -> float:
    """:func:`parse_fraction` of a share that cannot exceed the whole (an accuracy, a
    drop of accuracy): above 1 (``whole``, e.g. ``"100%"``) is refused too."""
    share = parse_fraction(text, name)
    if share > 1:
        raise ValueError(f"{name} must be at most 1 ({whole}), got {text!r}")
    return share


def parse_fraction(text: str | float, name: str = "tolerance", *, allow_above_one: bool = False) -> float:
    """Parse a non-negative fraction by the one rule of every option: ``5%`` == ``0.05``.

    A bare number above 1 is refused with a suggestion (``--tolerance 5`` would mean
    500%); write it as a percentage (``500%``) when it is meant, or pass
    ``allow_above_one``.
    """
    s = str(text).strip()
    percent = s.endswith("%")
    body = s[:-1].strip() if percent else s
    try:
        amount = _number(body, name, "0.02 or 2%")
    except ValueError as exc:
        if "too large" in str(exc):
            raise
        raise ValueError(f"{name} {_show(text)} is not a fraction or percentage (e.g. 0.02 or 2%)") from None
    if amount < 0:
        raise ValueError(f"{name} must not be negative, got {_show(text)}")
    if percent:
        amount /= 100
    elif amount > 1 and not allow_above_one:
        raise ValueError(
            f"{name} {_show(text)} is above 1 as a fraction ({float(amount) * 100:g}%); "
            f"write {_show(body)[1:-1]}% for {body} percent, or a fraction like 0.{body.replace('.', '').zfill(2)}"
            if re.fullmatch(r"\d{1,2}", body) else
            f"{name} {_show(text)} is above 1 as a fraction; write a percentage like {_show(body)[1:-1]}% or a fraction <= 1"
        )
    return _to_float(amount, name, text)


def parse_level(text: str | float, name: str = "level") -> float:
    """Parse a probability in (0, 1) given as "95%" or "0.95"."""
    value = parse_fraction(text, name)
    if not 0 < value < 1:
        raise ValueError(f"{name} must be strictly between 0% and 100%, got {_show(text)}")
    return value
