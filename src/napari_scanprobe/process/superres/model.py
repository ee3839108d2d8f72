"""The reusable upscaler model: weights with their description, saved and loaded safely."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from ...nn.upscaler import ARCHITECTURE, build_upscaler, expected_shapes
from ...nn.weights import check_shapes, load_weights, save_weights, weight_paths
from ..common import Progress
from .options import check_factor

FORMAT = "napari-scanprobe-upscaler"
FORMAT_VERSION = 1
NORMALISATION = {
    "plane": "least-squares",
    "centre": "median",
    "scale": "percentile-range",
    "percentiles": [1.0, 99.0],
}


@dataclass
class UpscalerModel:
    """Trained weights of the ×``factor`` upscaling network, with what is needed to use them.

    ``state`` maps parameter names to float32 numpy arrays. Save with :meth:`save`, read with
    :func:`load_upscaler`, apply with ``upscale(image, method="cnn", weights=model)``.
    """

    architecture: dict
    state: dict[str, np.ndarray]
    normalisation: dict = field(default_factory=lambda: dict(NORMALISATION))
    package_version: str = field(default_factory=lambda: __version__)
    training: dict = field(default_factory=dict)

    @property
    def factor(self) -> int:
        return int(self.architecture["factor"])

    @property
    def n_parameters(self) -> int:
        return int(sum(v.size for v in self.state.values()))

    def upscale(self, image: Any, progress: Callable[[Progress], Any] | None = None, **options) -> Any:
        """``upscale(image, factor=self.factor, method="cnn", weights=self, ...)``."""
        from . import upscale

        return upscale(image, self.factor, method="cnn", progress=progress, weights=self, **options)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<path>.safetensors`` (weights) and ``<path>.json`` (sidecar), each atomically.

        ``path`` may end in ``.safetensors`` or ``.json`` or have no such suffix. The sidecar
        records the architecture, factor, normalisation, package version and the SHA-256 of
        the weights file. Returns the weights file's path.
        """
        weights_path, _ = weight_paths(path)
        weights_path.parent.mkdir(parents=True, exist_ok=True)
        description = {
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "factor": self.factor,
            "normalisation": self.normalisation,
            "package_version": self.package_version,
            "training": self.training,
        }
        return save_weights(weights_path, self.state, description, FORMAT)


def load_upscaler(path: str | os.PathLike) -> UpscalerModel:
    """Read weights saved by :meth:`UpscalerModel.save` (safetensors + JSON only, nothing unpickled).

    ``path``: the ``.safetensors`` file, its ``.json`` sidecar, or their common stem.
    Raises FileNotFoundError when either file is missing, and ValueError naming the file when
    it is truncated, modified after saving, or not compatible with this version.
    """
    weights_path, sidecar_path = weight_paths(path)
    state, sidecar = load_weights(path, FORMAT, "upscaler")
    version = sidecar.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{sidecar_path}: format version {version!r} is not supported (this version reads {FORMAT_VERSION})"
        )
    arch: Any = sidecar.get("architecture")  # untrusted JSON: a wrong type fails in the try
    try:
        if arch.get("name") != ARCHITECTURE:
            raise ValueError(f"architecture {arch.get('name')!r} is unknown (expected {ARCHITECTURE!r})")
        arch = {
            "name": ARCHITECTURE,
            "factor": check_factor(arch["factor"]),
            "features": int(arch["features"]),
            "layers": int(arch["layers"]),
            "head_kernel": int(arch["head_kernel"]),
            "activation": str(arch.get("activation", "prelu")),
        }
        if (
            arch["activation"] != "prelu"
            or arch["head_kernel"] not in (3, 5, 7)
            or not (1 <= arch["features"] <= 1024)
            or not (1 <= arch["layers"] <= 64)
        ):
            raise ValueError("unsupported architecture parameters")
        if int(sidecar.get("factor", arch["factor"])) != arch["factor"]:
            raise ValueError("factor disagrees with the architecture")
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{sidecar_path}: incompatible architecture ({exc})") from None

    if sidecar.get("normalisation", NORMALISATION) != NORMALISATION:
        raise ValueError(
            f"{sidecar_path}: normalisation {sidecar.get('normalisation')!r} is not the one this version uses ({NORMALISATION!r})"
        )

    check_shapes(weights_path, state, expected_shapes(arch))
    return UpscalerModel(
        architecture=arch,
        state={k: np.asarray(v, dtype=np.float32) for k, v in state.items()},
        normalisation=dict(NORMALISATION),
        package_version=str(sidecar.get("package_version", "unknown")),
        training=dict(sidecar.get("training") or {}),
    )


def as_model(weights: Any, factor: int) -> UpscalerModel:
    if isinstance(weights, UpscalerModel):
        model = weights
    elif isinstance(weights, (str, os.PathLike)):
        model = load_upscaler(weights)
    else:
        raise ValueError(f"weights: expected a path or an UpscalerModel, got {type(weights).__name__}")
    if model.factor != factor:
        raise ValueError(
            f"factor: the weights were trained for ×{model.factor}, not ×{factor} (pass factor={model.factor})"
        )
    return model


def new_net(arch: dict, seed: int, device):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_upscaler(arch)
    return net.to(device)


def net_from_model(model: UpscalerModel, device):
    import torch

    net = build_upscaler(model.architecture)
    net.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in model.state.items()})
    return net.to(device)


def model_from_net(net, arch: dict, training: dict) -> UpscalerModel:
    state = {k: v.detach().cpu().numpy().astype(np.float32).copy() for k, v in net.state_dict().items()}
    return UpscalerModel(architecture=dict(arch), state=state, training=training)
