"""A trained classifier and its files: ``<name>.safetensors`` + ``<name>.json``.

The JSON holds everything needed to use the weights on raw files -- categories, channels,
pixel size (nm/px), input size, preprocessing steps, architecture -- and what the training
produced: metrics, per-epoch history, options, package version. See ``nn/weights.py`` for
why loading is safe (no pickle; SHA-256 checked).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..nn.classifier import (
    block_kernel_size,
    build_network,
    check_architecture,
    expected_shapes,
    pooling_count,
)
from ..nn.weights import check_shapes, load_weights, save_weights, weight_paths
from ..plainjson import jsonsafe
from ..process.steps import check_steps
from ..untrusted import check_depth, one_line, short_repr

FORMAT = "napari-scanprobe classifier"
FORMAT_VERSION = 1
#: The largest network a model file may describe: weights (parameters) and multiply-adds of one
#: forward pass. The default network has ~25 k parameters and ~10 M multiply-adds; the limits
#: leave room for networks a thousand times larger, not for ones that cannot be built.
MAX_PARAMETERS = 50_000_000
MAX_MULTIPLY_ADDS = 20_000_000_000


@dataclass
class ClassifierModel:
    """Weights plus the facts that make them usable (see the module docstring)."""

    architecture: dict
    state: dict[str, np.ndarray]
    categories: list[str]
    channels: list[str]  # [] = the first channel of each file
    pixel_size: float | None  # nm per pixel the network sees; None = images used as they are
    input_size: int
    preprocessing: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    training: dict = field(default_factory=dict)
    #: ``{"temperature": T, "offsets": [...], "reference": {...}}``: calibration and the
    #: unlike-training score (``calibration``)
    confidence: dict = field(default_factory=dict)
    package_version: str = __version__
    path: str | None = None  # where it was loaded from / saved to

    @property
    def spec(self) -> dict:
        """What :func:`~napari_scanprobe.learn.data.model_input` needs."""
        return {
            "pixel_size": self.pixel_size,
            "input_size": self.input_size,
            "preprocessing": self.preprocessing,
        }

    @property
    def name(self) -> str:
        return Path(self.path).stem if self.path else "unsaved model"

    def network(self, device: Any = None):
        """The torch network with these weights on ``device``, ready for inference (eval mode,
        batch norms folded: ``ScanprobeCNN.for_inference``; feed it ``network.as_input``)."""
        import torch

        from ..nn.device import resolve_device

        net = build_network(self.architecture)
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in self.state.items()}, strict=False)
        return net.to(resolve_device(device)).for_inference()

    def description(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "categories": list(self.categories),
            "channels": list(self.channels),
            "pixel_size_nm": self.pixel_size,
            "input_size": self.input_size,
            "preprocessing": self.preprocessing,
            "normalisation": "per image and channel: zero mean, unit standard deviation",
            "metrics": self.metrics,
            "history": self.history,
            "training": self.training,
            "confidence": self.confidence,
            "package_version": self.package_version,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<path>.safetensors`` and ``<path>.json`` atomically; returns the weights path."""
        out = save_weights(path, self.state, jsonsafe(self.description()), FORMAT, "model")
        self.path = str(out)
        return out


def network_cost(arch: dict) -> tuple[int, int]:
    """``(parameters, multiply-adds of one forward pass)`` of a checked architecture, counted
    from the numbers alone -- no tensor is made."""
    params = macs = 0
    c_in, side = arch["in_channels"], arch["input_size"]
    for i in range(arch["blocks"]):
        c_out, k = arch["filters"] * 2**i, block_kernel_size(arch, i)
        conv = c_in * c_out * k * k
        params += conv + 2 * c_out
        macs += conv * side * side
        if i < pooling_count(arch):
            side //= 2
        c_in = c_out
    if arch["head"] == "gap":
        head = c_in * arch["n_classes"]
    else:
        head = c_in * side * side * arch["dense_units"] + arch["dense_units"] * arch["n_classes"]
    return params + head, macs + head


def check_network_budget(arch: dict, where: str) -> None:
    """ValueError naming ``where`` when the network is larger than the budget (see MAX_PARAMETERS)."""
    params, macs = network_cost(arch)
    if params > MAX_PARAMETERS or macs > MAX_MULTIPLY_ADDS:
        raise ValueError(
            f"{where}: the architecture describes a network of {params:.3g} weights and {macs:.3g} multiply-adds per "
            f"image, above the limits ({MAX_PARAMETERS:.3g}, {MAX_MULTIPLY_ADDS:.3g}); refused before building it"
        )


def load_model(path: str | os.PathLike) -> ClassifierModel:
    """Read a model saved by :meth:`ClassifierModel.save` (nothing unpickled or executed).

    ``path``: the ``.safetensors`` file, the ``.json`` description, or their common stem.
    FileNotFoundError for a missing file; ValueError naming the file for a damaged, modified or
    incompatible one.
    """
    weights_path, description_path = weight_paths(path)
    try:
        return _load_model(weights_path, description_path)
    except (TypeError, OverflowError, RecursionError, KeyError, AttributeError) as exc:
        raise ValueError(
            f"{description_path}: incompatible or damaged model description ({one_line(exc)})"
        ) from None
    except ValueError as exc:  # one line, however long the list of mismatched tensors
        raise ValueError(one_line(exc)) from None


def _load_model(weights_path: Path, description_path: Path) -> ClassifierModel:
    state, doc = load_weights(weights_path, FORMAT, "classifier model")
    check_depth(doc, str(description_path))
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{description_path}: model format version {short_repr(doc.get('format_version'))} is not supported (this version reads {FORMAT_VERSION})"
        )
    try:
        categories = [str(c) for c in doc["categories"]]
        channels = [str(c) for c in doc["channels"]]
        input_size = int(doc["input_size"])
        pixel_size = doc.get("pixel_size_nm")
        pixel_size = None if pixel_size is None else float(pixel_size)
        if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
            raise ValueError(f"pixel size {pixel_size} nm")
        arch = doc["architecture"]
        if not isinstance(arch, dict):
            raise ValueError("architecture is not a dict")
        if "last_kernel_size" not in arch:  # saved before the option existed: every block had kernel_size
            arch = {**arch, "last_kernel_size": arch.get("kernel_size")}
        arch = check_architecture(
            {k: v for k, v in arch.items() if k not in ("in_channels", "n_classes", "input_size")},
            in_channels=max(1, len(channels)),
            n_classes=len(categories),
            input_size=input_size,
        )
        check_network_budget(arch, "architecture")
        stored = doc["architecture"]
        if any(k in stored and stored[k] != arch[k] for k in ("in_channels", "n_classes", "input_size")):
            raise ValueError("architecture disagrees with the categories, channels or input size")
        preprocessing = check_steps(doc.get("preprocessing"), "preprocessing")
        metrics = _mapping(doc.get("metrics"), "metrics")
        history = _sequence(doc.get("history"), "history")
        training = _mapping(doc.get("training"), "training")
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(
            f"{description_path}: incompatible or damaged model description ({one_line(exc)})"
        ) from None
    check_shapes(weights_path, state, expected_shapes(arch))
    return ClassifierModel(
        architecture=arch,
        state=state,
        categories=categories,
        channels=channels,
        pixel_size=pixel_size,
        input_size=input_size,
        preprocessing=preprocessing,
        metrics=metrics,
        history=history,
        training=training,
        confidence=_confidence(doc.get("confidence"), description_path, len(categories)),
        package_version=str(doc.get("package_version", "unknown")),
        path=str(weights_path),
    )


def _confidence(value: Any, description_path: Path, n_classes: int) -> dict:
    """The stored calibration and feature reference, checked (a model without them: {})."""
    if not value:
        return {}
    try:
        temperature = float(value.get("temperature", 1.0))
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature {temperature}")
        out: dict = {"temperature": temperature}
        if value.get("offsets") is not None:
            offsets = np.asarray(value["offsets"], dtype=float)
            if offsets.shape != (n_classes,) or not np.isfinite(offsets).all():
                raise ValueError(f"offsets {value['offsets']!r}")
            out["offsets"] = offsets.tolist()
        ref = value.get("reference")
        if ref:
            mean = np.asarray(ref["mean"], dtype=float)
            precision = np.asarray(ref["precision"], dtype=float)
            scale = float(ref["scale"])
            if mean.ndim != 1 or precision.shape != (len(mean), len(mean)) or not scale > 0:
                raise ValueError("feature reference of the wrong shape")
            out["reference"] = {"mean": mean, "precision": precision, "scale": scale}
        return out
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{description_path}: damaged confidence section ({exc})") from None


def _mapping(value: Any, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{key!r} must be a mapping, got {short_repr(value)}")
    return dict(value)


def _sequence(value: Any, key: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{key!r} must be a list, got {short_repr(value)}")
    return list(value)


def as_model(model: Any) -> ClassifierModel:
    """A ClassifierModel from itself or a path."""
    if isinstance(model, ClassifierModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    raise ValueError(f"model: expected a model file path or a ClassifierModel, got {type(model).__name__}")
