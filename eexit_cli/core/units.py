"""Units of latency and cost: time units convert into each other, other units only match.

A latency profile, a budget and a thresholds file each carry a unit. Time units
(s, ms, us, ns and their spellings) convert exactly, by a power of ten and one
rounding; any other unit (``cost``, ``GFLOPs``, ``relative``, ...) is taken as a
name and only agrees with the same name. Two units that neither match nor convert
are refused rather than mixed, since a budget of 1.8 (ms) read as 1.8 s would let
any threshold set through a latency gate.
"""

from __future__ import annotations

from fractions import Fraction

# power of ten of one unit, in seconds
_TIME_UNITS = {
    "s": 0, "sec": 0, "secs": 0, "second": 0, "seconds": 0,
    "ms": -3, "msec": -3, "millisecond": -3, "milliseconds": -3,
    "us": -6, "µs": -6, "μs": -6, "usec": -6, "microsecond": -6, "microseconds": -6,
    "ns": -9, "nsec": -9, "nanosecond": -9, "nanoseconds": -9,
}

#: The spellings of time units understood in files and on the command line.
TIME_UNIT_NAMES = ("s", "ms", "us", "ns")


def time_exponent(unit: str) -> int | None:
    """The power of ten of a time unit in seconds (``"ms"`` -> -3), or None for other units."""
    return _TIME_UNITS.get(str(unit).strip().lower())


def is_time_unit(unit: str) -> bool:
    return time_exponent(unit) is not None


def conversion_factor(from_unit: str, to_unit: str) -> Fraction:
    """The exact factor that turns a value in ``from_unit`` into ``to_unit``.

    Raises ``ValueError`` when the units neither match nor are both time units.
    """
    a, b = time_exponent(from_unit), time_exponent(to_unit)
    if a is not None and b is not None:
        return Fraction(10) ** (a - b)
    if str(from_unit).strip() == str(to_unit).strip():
        return Fraction(1)
    if a is None and b is None:
        why = "different units"
    else:
        why = "a time and a non-time unit"
    raise ValueError(
        f"unit {from_unit!r} cannot be converted to {to_unit!r} ({why}); time units "
        f"({', '.join(TIME_UNIT_NAMES)}) convert, other units must be spelled the same"
    )


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``, rounded once to the nearest double."""
    factor = conversion_factor(from_unit, to_unit)
    if factor == 1:
        return float(value)
    return float(Fraction(float(value)) * factor)


def convert_all(values, from_unit: str, to_unit: str) -> list[float]:
    factor = conversion_factor(from_unit, to_unit)
    if factor == 1:
        return [float(v) for v in values]
    return [float(Fraction(float(v)) * factor) for v in values]
