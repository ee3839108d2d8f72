"""The upscaler's options, from the step contract ``process.steps.UPSCALE`` (the one table the
GUI, recipes, the CLI and the docs read), and their checks."""

from __future__ import annotations

from typing import Any

from ..steps import UPSCALE

FACTORS: tuple[int, ...] = UPSCALE.common[0].choices

#: name -> {option: default} ("auto" runs the CNN with its defaults).
UPSCALE_METHODS: dict[str, dict[str, Any]] = {m: UPSCALE.defaults(m) for m in UPSCALE.method_names}
#: Methods that train a network (long work: run them through :func:`upscale_steps`).
CNN_METHODS: tuple[str, ...] = tuple(m.name for m in UPSCALE.methods if m.long)


def check_factor(factor: Any) -> int:
    return UPSCALE.check_option("factor", factor)


def check_method(method: Any) -> str:
    return UPSCALE.method(method).name


def check_options(method: str, options: dict) -> dict:
    """``options`` checked for ``method``, the method's defaults filled in."""
    return UPSCALE.check(method, options)


def check_seed(seed: Any) -> int:
    return UPSCALE.check_option("seed", seed)
