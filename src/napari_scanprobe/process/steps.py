"""Processing steps as data: ``{"step": "flatten", "method": "plane", "options": {...}}``.

The same dicts are what layers record in ``metadata["processing"]`` (see ``gui/layers.py``),
what a classifier model stores as its preprocessing, and what a recipe lists. :func:`apply_steps`
runs them in order on an image; :func:`check_steps` validates them before any work starts.
"""

from __future__ import annotations

from typing import Any

#: step name -> "module:function"; functions take ``(image, method=..., **options)``.
STEP_FUNCTIONS = {
    "flatten": "napari_scanprobe.process.flatten:flatten",
    "denoise": "napari_scanprobe.process.denoise:denoise",
    "upscale": "napari_scanprobe.process.superres:upscale",
    "register": "napari_scanprobe.process.register:register_movie",
}


def step_function(name: str):
    import importlib

    if name not in STEP_FUNCTIONS:
        raise ValueError(f"step: unknown {name!r}; choose one of {', '.join(STEP_FUNCTIONS)}")
    module, func = STEP_FUNCTIONS[name].split(":")
    return getattr(importlib.import_module(module), func)


def check_steps(steps: Any, name: str = "preprocessing") -> list[dict]:
    """A clean list of step dicts (``step``, ``method``, ``options``); ValueError naming ``name``."""
    if steps is None:
        return []
    if isinstance(steps, dict):
        steps = [steps]
    if not isinstance(steps, (list, tuple)):
        raise ValueError(
            f"{name}: expected a list of steps like {{'step': 'flatten', 'method': 'plane'}}, got {type(steps).__name__}"
        )
    clean = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or "step" not in step:
            raise ValueError(f"{name}[{i}]: expected a dict with a 'step' key, got {step!r}")
        if step["step"] not in STEP_FUNCTIONS:
            raise ValueError(
                f"{name}[{i}]: unknown step {step['step']!r}; choose one of {', '.join(STEP_FUNCTIONS)}"
            )
        options = step.get("options") or {}
        if not isinstance(options, dict):
            raise ValueError(f"{name}[{i}]: 'options' must be a dict, got {options!r}")
        clean.append(
            {"step": str(step["step"]), "method": str(step.get("method", "auto")), "options": dict(options)}
        )
    return clean


def apply_steps(image: Any, steps: list[dict]) -> Any:
    """Run ``steps`` (see :func:`check_steps`) on a 2-D image or ``(t, y, x)`` stack, in order."""
    for step in check_steps(steps):
        image = step_function(step["step"])(image, method=step["method"], **step["options"])
    return image
