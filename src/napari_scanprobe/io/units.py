"""Unit strings from files -> the units napari-scanprobe shows.

Lengths become nm; every other quantity becomes its SI base unit (``nA`` -> ``A`` with a
factor 1e-9). :func:`value_scale` is the one function readers call to learn the factor from
a file's unit to the displayed one.
"""

from __future__ import annotations

_PREFIX = {
    "Y": 1e24, "Z": 1e21, "E": 1e18, "P": 1e15, "T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3,
    "h": 1e2, "d": 1e-1, "c": 1e-2, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "~": 1e-6,
    "n": 1e-9, "p": 1e-12, "f": 1e-15, "a": 1e-18, "z": 1e-21, "y": 1e-24,
}  # fmt: skip

#: Units that are complete as written (no prefix to strip).
_BASE = {
    "m", "V", "A", "N", "Hz", "Pa", "s", "F", "W", "K", "C", "T", "S", "J", "Ohm", "Ω",
    "deg", "rad", "%", "N/m", "m/s", "V/s", "A/V", "V/V", "1", "",
}  # fmt: skip

#: Spellings files use for the same unit.
_ALIAS: dict[str, str | tuple[float, str]] = {
    "°": "deg", "degree": "deg", "degrees": "deg", "Deg": "deg", "DEG": "deg", "Degree": "deg",
    "\u00c5": (1e-10, "m"), "\u212b": (1e-10, "m"), "Angstrom": (1e-10, "m"), "angstrom": (1e-10, "m"),
    "A°": (1e-10, "m"), "ohm": "Ohm", "volt": "V", "Volt": "V", "Volts": "V", "meter": "m",
    "hz": "Hz", "HZ": "Hz", "arb": "", "a.u.": "", "au": "", "arb.u.": "", "none": "", "None": "",
}  # fmt: skip


def parse_unit(text: str | None) -> tuple[float, str]:
    """``"nm"`` -> ``(1e-9, "m")``; ``"mV"`` -> ``(1e-3, "V")``; unknown units -> ``(1.0, text)``."""
    unit = (text or "").strip()
    alias = _ALIAS.get(unit)
    if isinstance(alias, tuple):
        return alias
    if alias is not None:
        unit = alias
    if unit in _BASE:
        return 1.0, unit
    if len(unit) > 1 and unit[0] in _PREFIX:
        rest = unit[1:]
        rest_alias = _ALIAS.get(rest)
        if isinstance(rest_alias, tuple):
            return _PREFIX[unit[0]] * rest_alias[0], rest_alias[1]
        rest = rest_alias if rest_alias is not None else rest
        if rest in _BASE and rest != "":
            return _PREFIX[unit[0]], rest
    return 1.0, unit


def display_unit(si_unit: str) -> tuple[float, str]:
    """Factor and unit to show an SI quantity in: metres become nm, the rest stay SI."""
    if si_unit == "m":
        return 1e9, "nm"
    return 1.0, si_unit


def value_scale(text: str | None) -> tuple[float, str]:
    """Factor from a value in the file's unit ``text`` to napari-scanprobe's unit, and that unit.

    ``value_scale("um") == (1000.0, "nm")``, ``value_scale("nA") == (1e-9, "A")``.
    """
    factor, si = parse_unit(text)
    shown, unit = display_unit(si)
    return factor * shown, unit


def length_to_nm(value: float, unit: str | None) -> float:
    """A lateral length in the file's unit -> nm. Raises ValueError if ``unit`` is no length."""
    factor, si = parse_unit(unit)
    if si != "m":
        raise ValueError(f"{unit!r} is not a unit of length")
    return value * factor * 1e9
