"""Checks that the files given to one command describe the same exits in the same units.

A split, a latency profile and a thresholds file each may name their exits and
carry a unit. Files of another model, or exits exported in another order, would
otherwise be combined silently (costs assigned to the wrong exits, thresholds
replayed on the wrong exits), and a budget in milliseconds read against a profile
in seconds would pass any gate.
"""

from __future__ import annotations

from eexit_cli.core.units import conversion_factor
from eexit_cli.errors import InputError

RENAME_OPTION = "--allow-renamed-exits"


def _show(names: list[str], limit: int = 12) -> str:
    if len(names) <= limit:
        return "[" + ", ".join(names) + "]"
    return "[" + ", ".join(names[: limit - 2]) + f", ... ({len(names)} names)]"


def check_exit_names(sources, allow_renamed: bool = False) -> None:
    """Refuse files whose exit names differ (same names in the same order are required).

    Parameters
    ----------
    sources : iterable of (label, names or None)
        ``label`` names the file (and part) in the message; None means the file does not
        name its exits and is not compared.
    allow_renamed : bool
        Accept different names (the exit counts are checked elsewhere).

    Raises
    ------
    InputError
        Naming both files and both lists.
    """
    named = [(label, list(names)) for label, names in sources if names]
    if allow_renamed or len(named) < 2:
        return
    ref_label, ref = named[0]
    for label, names in named[1:]:
        if names == ref:
            continue
        if len(names) == len(ref) and sorted(names) == sorted(ref):
            how = "the same exits in another order"
        else:
            how = "different exit names"
        raise InputError(
            f"{ref_label} and {label} name {how}: {_show(ref)} vs {_show(names)}; "
            f"the files must describe the same exits in the same order (pass {RENAME_OPTION} "
            "if the names differ on purpose)"
        )


def unit_factor(from_label: str, from_unit: str, to_label: str, to_unit: str):
    """The factor from ``from_unit`` to ``to_unit``, or an ``InputError`` naming both files."""
    try:
        return conversion_factor(from_unit, to_unit)
    except ValueError:
        raise InputError(
            f"{from_label} is in {from_unit!r} but {to_label} is in {to_unit!r}, and these cannot "
            "be converted (time units s, ms, us, ns convert; other units must be spelled the same)"
        ) from None
