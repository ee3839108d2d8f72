"""The upscaler's options: the table the GUI, recipes and the CLI read, and their checks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

FACTORS = (2, 4)

#: CNN defaults (the GUI builds its controls from :data:`UPSCALE_METHODS`).
CNN_DEFAULTS: dict[str, Any] = {
    "steps": 300,  # optimiser steps of zero-shot training (stages A+B; the check C adds half)
    "batch": 16,  # patches per step
    "patch": 24,  # patch side in coarse (input-to-the-network) pixels
    "learning_rate": 2e-3,
    "features": 32,  # channels of the hidden convolutions
    "layers": 1,  # hidden 3x3 layers between the 5x5 head and the output layer
    "ensemble": True,  # average the 8 flips/rotations at inference (self-ensemble)
    "adaptive": True,  # weigh the learned detail by how well it carries over one scale up
    "finetune": False,  # with weights=: continue zero-shot training on the image first
    "finetune_steps": 150,
    "training_images": None,  # extra high-resolution arrays to learn from
    "device": None,  # None: "cuda" when available, else "cpu"
    "threads": None,  # torch CPU threads (None: training on 1 thread, inference as torch is set)
}

#: name -> {option: default}, for the GUI ("auto" runs the CNN with its defaults).
UPSCALE_METHODS: dict[str, dict[str, Any]] = {
    "auto": {},
    "bicubic": {},
    "lanczos": {},
    "cnn": dict(CNN_DEFAULTS),
}
#: The same table under the name the other preprocessing modules use.
UPSCALE_OPTIONS = UPSCALE_METHODS
#: Methods that train a network (long work: run them through :func:`upscale_steps`).
CNN_METHODS: tuple[str, ...] = ("auto", "cnn")

#: Method name -> one line for a tooltip.
UPSCALE_HELP: dict[str, str] = {
    "auto": "The CNN with its defaults (bicubic when torch is missing).",
    "bicubic": "Interpolating cubic B-spline (scipy), pixel areas aligned.",
    "lanczos": "Separable Lanczos-3, pixel areas aligned.",
    "cnn": "Small network learnt from the image itself (zero-shot) over a back-projected bicubic base; "
    "the output's blocks average back to the input.",
}

#: Option -> (help, min, max) for numbers, (help,) otherwise.
OPTION_INFO: dict[str, tuple] = {
    "steps": ("Optimiser steps of zero-shot training (the cross-scale check adds half as many)", 0, 100_000),
    "batch": ("Patches per training step", 1, 1024),
    "patch": ("Patch side in input pixels", 4, 512),
    "learning_rate": ("Peak Adam learning rate (one-cycle schedule)", 1e-5, 1.0),
    "features": ("Channels of the hidden convolutions (32: about 11 k parameters)", 1, 256),
    "layers": ("Hidden 3x3 convolution layers", 1, 16),
    "ensemble": ("Average the 8 flips/rotations at inference (8x the network passes)",),
    "adaptive": ("Weigh the learnt detail by how well it carries across scale (off: add it fully)",),
    "finetune": ("With saved weights: continue training on the image first",),
    "finetune_steps": ("Fine-tuning steps with saved weights", 0, 100_000),
    "training_images": ("Extra high-resolution arrays to learn from (scripting)",),
    "device": ("torch device; None: cuda when available, else cpu",),
    "threads": ("torch CPU threads; None: training on 1 thread, inference as torch is set",),
}


def check_factor(factor: Any) -> int:
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer, float)) or factor not in FACTORS:
        raise ValueError(f"factor: must be 2 or 4, got {factor!r}")
    return int(factor)


def check_method(method: Any) -> str:
    if not isinstance(method, str) or method not in UPSCALE_METHODS:
        raise ValueError(f"method: unknown {method!r}; choose one of {', '.join(UPSCALE_METHODS)}")
    return method


def check_options(method: str, options: dict) -> dict:
    allowed = UPSCALE_METHODS[method] if method != "auto" else CNN_DEFAULTS
    for key in options:
        if key not in allowed:
            known = ", ".join(allowed) if allowed else "none"
            raise ValueError(f"{key}: not an option of method {method!r} (options: {known})")
    merged = {**CNN_DEFAULTS, **options}
    for key in ("steps", "batch", "patch", "features", "layers", "finetune_steps"):
        value = merged[key]
        minimum = {"steps": 0, "finetune_steps": 0, "batch": 1, "patch": 4, "features": 1, "layers": 1}[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{key}: must be an integer >= {minimum}, got {value!r}")
    lr = merged["learning_rate"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"learning_rate: must be a positive number, got {lr!r}")
    threads = merged["threads"]
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1
    ):
        raise ValueError(f"threads: must be None or an integer >= 1, got {threads!r}")
    return merged


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: must be a non-negative integer, got {seed!r}")
    return int(seed)
