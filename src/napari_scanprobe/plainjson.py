"""JSON every reader takes (``jq``, JavaScript, spreadsheets): NaN and infinities -- an
undefined ROC AUC, the skewness of a perfectly flat scan -- become ``null``, numpy values plain
numbers. Model files and every ``--json`` line of the command line are written through it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def jsonsafe(obj: Any) -> Any:
    """``obj`` with NaN/inf as None, numpy arrays and scalars as lists and numbers."""
    if isinstance(obj, dict):
        return {str(k): jsonsafe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonsafe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonsafe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`jsonsafe` ``(obj)``: standard JSON, never ``NaN``."""
    return json.dumps(jsonsafe(obj), allow_nan=False, **kwargs)
