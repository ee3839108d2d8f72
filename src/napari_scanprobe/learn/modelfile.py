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
from ..nn.classifier import build_network, check_architecture, expected_shapes
from ..nn.weights import check_shapes, load_weights, save_weights, weight_paths
from ..process.steps import check_steps

FORMAT = "napari-scanprobe classifier"
FORMAT_VERSION = 1


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
    #: ``{"temperature": T, "reference": {...}}``: calibration and the unlike-training score (``calibration``)
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
        weights_path, _ = weight_paths(path)
        if not weights_path.parent.is_dir():
            raise OSError(
                f"{weights_path}: cannot save the model, the folder {weights_path.parent} does not exist"
            )
        out = save_weights(weights_path, self.state, _jsonsafe(self.description()), FORMAT)
        self.path = str(out)
        return out


def _jsonsafe(obj: Any) -> Any:
    """NaN/inf (e.g. an undefined AUC) become None: the JSON stays standard."""
    if isinstance(obj, dict):
        return {str(k): _jsonsafe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonsafe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonsafe(obj.tolist())
    if isinstance(obj, (np.generic,)):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def load_model(path: str | os.PathLike) -> ClassifierModel:
    """Read a model saved by :meth:`ClassifierModel.save` (nothing unpickled or executed).

    ``path``: the ``.safetensors`` file, the ``.json`` description, or their common stem.
    FileNotFoundError for a missing file; ValueError naming the file for a damaged, modified or
    incompatible one.
    """
    weights_path, description_path = weight_paths(path)
    state, doc = load_weights(path, FORMAT, "classifier model")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{description_path}: model format version {doc.get('format_version')!r} is not supported (this version reads {FORMAT_VERSION})"
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
        stored = doc["architecture"]
        if any(k in stored and stored[k] != arch[k] for k in ("in_channels", "n_classes", "input_size")):
            raise ValueError("architecture disagrees with the categories, channels or input size")
        preprocessing = check_steps(doc.get("preprocessing"), "preprocessing")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{description_path}: incompatible or damaged model description ({exc})") from None
    check_shapes(weights_path, state, expected_shapes(arch))
    return ClassifierModel(
        architecture=arch,
        state=state,
        categories=categories,
        channels=channels,
        pixel_size=pixel_size,
        input_size=input_size,
        preprocessing=preprocessing,
        metrics=dict(doc.get("metrics") or {}),
        history=list(doc.get("history") or []),
        training=dict(doc.get("training") or {}),
        confidence=_confidence(doc.get("confidence"), description_path),
        package_version=str(doc.get("package_version", "unknown")),
        path=str(weights_path),
    )


def _confidence(value: Any, description_path: Path) -> dict:
    """The stored calibration and feature reference, checked (a model without them: {})."""
    if not value:
        return {}
    try:
        temperature = float(value.get("temperature", 1.0))
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature {temperature}")
        out: dict = {"temperature": temperature}
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


def as_model(model: Any) -> ClassifierModel:
    """A ClassifierModel from itself or a path."""
    if isinstance(model, ClassifierModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_model(model)
    raise ValueError(f"model: expected a model file path or a ClassifierModel, got {type(model).__name__}")
