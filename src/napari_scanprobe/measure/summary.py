"""Measurements as named numbers for a recipe's ``measure`` step and the batch summary."""

from __future__ import annotations

from typing import Any

from .roughness import roughness

#: ``{step: measure, method: ...}``: what each method reports per channel.
MEASURE_METHODS = {"roughness": "ISO 25178 Sa, Sq, Ssk, Sku, Sp, Sv, Sz, Sdq of each 2-D channel"}


def check_measure_method(method: Any) -> str:
    if method not in MEASURE_METHODS:
        raise ValueError(
            f"method: {method!r} is not a measurement; choose one of {', '.join(MEASURE_METHODS)}"
        )
    return str(method)


def column(channel_title: str, parameter: str, unit: str) -> str:
    """``"Z (forward): Sq [nm]"``: one measurement's name in a summary table."""
    return f"{channel_title}: {parameter}" + (f" [{unit}]" if unit else "")


def measure_channels(channels: list, method: str = "roughness") -> dict[str, float]:
    """``method`` on each 2-D channel (movies are left out): ``{column name: value}``."""
    check_measure_method(method)
    out: dict[str, float] = {}
    for ch in channels:
        if ch.data.ndim != 2:
            continue
        r = roughness(ch)
        for parameter, value, unit in r.rows():
            out[column(ch.title, parameter, unit)] = value
    return out
