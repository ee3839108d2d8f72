"""Super-resolution: upscale a scan ×2 or ×4 (bicubic, Lanczos-3, or a small zero-shot CNN).

Grid alignment (every method)
-----------------------------
The output is the same field of view sampled ``factor`` times more finely, with pixel *areas*
aligned: output pixel ``i`` (along either axis) sits at input position
``(i + 0.5) / factor - 0.5`` (input pixel ``j`` sits at ``j``), so input pixel ``j`` is covered
exactly by output pixels ``factor*j ... factor*j + factor - 1`` and the outer edges of the
first and last pixels coincide. In napari (which puts pixel ``i``'s centre at
``translate + i * scale``) the output overlays the input exactly with
``scale_out = scale_in / factor`` and ``translate_out = translate_in - scale_in * (factor - 1) /
(2 * factor)`` -- see :func:`upscaled_geometry`. Beyond the image edges every method uses the
half-sample mirror (``c b a | a b c``).

Methods (:data:`UPSCALE_METHODS`)
---------------------------------
* ``"bicubic"``: interpolating cubic B-spline (``scipy.ndimage.zoom(order=3, grid_mode=True,
  mode="reflect")``, what scipy and scikit-image call bi-cubic).
* ``"lanczos"``: separable Lanczos-3 (numpy, polyphase, weights normalised to sum 1).
* ``"cnn"``: zero-shot super-resolution learnt from the image itself.

  - The physical model: a scan ``factor`` times coarser is the area average of the fine one
    (:func:`downscale_area`).
  - The *base* is bicubic refined by iterative back-projection and then projected exactly onto
    the images whose ``factor x factor`` blocks average to the input pixels ("consistent":
    averaging the output's blocks gives back the input, to rounding).
  - The network, ESPCN-class: 5x5 convolution (32 features) -> PReLU -> 3x3 (32) -> PReLU ->
    3x3 to ``factor**2`` channels -> PixelShuffle; 11.3 k parameters for ×2, 14.8 k for ×4. It
    predicts the *detail* over the base, with zero mean in every block, so the result stays
    consistent.
  - Training on the image (``image / 2 -> image`` pairs, random 24 x 24 patches, flips and
    90° rotations, Adam, L1): stage A learns one octave lower (``image / 4 -> image / 2``) and
    is scored on ``image / 2 -> image``; check C, a fresh network learnt at the image's octave,
    is scored one octave down. The least-squares weight of the detail in each score, clipped to
    [0, 1], says how well what is learnt carries across scale; their minimum weighs the detail
    in the output (``adaptive=True``), so content that looks different at every scale (a
    lattice near the pixel pitch, noise) gets the base instead of invented texture. When the
    weight is positive, stage B continues A's training on both octaves and is applied to the
    image. Images too small to check (under 32 pixels a side) get the base.
  - ×4 zero-shot: that ×2 network, then a ×2 consistent base (a direct ×4 network trained on
    ``image / 4`` has too little to learn from). Weights trained with :func:`train_upscaler`
    on the user's own high-resolution images map ×factor directly (×2 or ×4).
  - Inference averages the 8 flips/rotations (``ensemble=True``). On the CPU training runs on
    one thread unless ``threads`` is given (tiny batches gain little from more, a single
    thread cannot stall on busy cores, and results do not depend on the core count);
    inference uses torch's thread setting.
  - ``training_images=``: extra high-resolution arrays learnt from along with the image.
    :func:`train_upscaler` trains a reusable :class:`UpscalerModel`; :meth:`UpscalerModel.save`
    writes ``safetensors`` weights plus a JSON sidecar, :func:`load_upscaler` reads them back
    (nothing is unpickled); ``upscale(..., method="cnn", weights=path_or_model)`` applies them
    (weighted by the same check on ``image / factor -> image``; ``finetune=True`` continues
    training on the image first).

* ``"auto"``: ``"cnn"`` for ×2 and ×4 (``"bicubic"`` when torch is not installed).

Heights are normalised for the network robustly: a least-squares plane is removed (and added
back exactly at the output positions), the median subtracted, the 1-99 percentile range
divided out. NaN (and infinite) pixels are filled with the nearest valid value for the
computation and come back as NaN blocks (``factor x factor``) in the output.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..torch_setup import resolve_device, torch_threads
from ..weights_file import check_shapes, load_weights, save_weights, weight_paths
from .common import Progress, as_image, is_dask, map_frames, run_to_end, torch_available
from .steps import UPSCALE

__all__ = [
    "CNN_METHODS",
    "UPSCALE_METHODS",
    "UpscalerModel",
    "downscale_area",
    "upscaled_geometry",
    "load_upscaler",
    "train_upscaler",
    "train_upscaler_steps",
    "upscale",
    "upscale_steps",
]

FACTORS = (2, 4)

#: name -> {option: default}, from the contract ``process.steps.UPSCALE`` (ranges, units, help);
#: "auto" runs the CNN with its defaults.
UPSCALE_METHODS: dict[str, dict[str, Any]] = {m: UPSCALE.defaults(m) for m in UPSCALE.method_names}
#: Methods that train a network (long work: run them through :func:`upscale_steps`).
CNN_METHODS: tuple[str, ...] = tuple(m.name for m in UPSCALE.methods if m.long)

ARCHITECTURE = "espcn-zero-mean-detail"
FORMAT = "napari-scanprobe-upscaler"
FORMAT_VERSION = 1
NORMALISATION = {
    "plane": "least-squares",
    "centre": "median",
    "scale": "percentile-range",
    "percentiles": [1.0, 99.0],
}
_PERCENTILES = (1.0, 99.0)
_MIN_LEARN_SIDE = 4  # coarse pixels: zero-shot training needs at least this many per side


# --------------------------------------------------------------------------------------
# Parameter checks
# --------------------------------------------------------------------------------------


def _check_factor(factor: Any) -> int:
    return UPSCALE.check_option("factor", factor)


def _check_options(method: str, options: dict) -> dict:
    return UPSCALE.check(method, options)


# --------------------------------------------------------------------------------------
# Classical resampling (numpy / scipy), all on the pixel-area-aligned grid
# --------------------------------------------------------------------------------------


def downscale_area(image: Any, factor: int) -> np.ndarray:
    """Area-average ``image`` down by ``factor`` (the physical model of a coarser scan).

    Coarse pixel ``j`` is the mean of fine pixels ``factor*j ... factor*j + factor - 1`` on both
    axes; rows/columns beyond a multiple of ``factor`` are dropped. A stack is downscaled frame
    by frame. A NaN anywhere in a block makes that coarse pixel NaN.
    """
    factor = _check_factor(factor)
    arr = as_image(image)

    def one(frame: np.ndarray) -> np.ndarray:
        ny, nx = (frame.shape[0] // factor) * factor, (frame.shape[1] // factor) * factor
        if ny == 0 or nx == 0:
            raise ValueError(f"image: {frame.shape} is smaller than one {factor} x {factor} block")
        block = frame[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor)
        return block.mean(axis=(1, 3))

    return map_frames(one, arr)


def upscaled_geometry(scale: Any, translate: Any, factor: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(scale, translate)`` of an upscaled layer that overlays the input layer exactly.

    ``scale``/``translate``: the input layer's, per axis (napari convention: pixel ``i``'s centre
    at ``translate + i * scale``). For a stack pass the per-axis values of the last two axes
    only, or of all axes (leading axes are kept as they are).
    """
    factor = _check_factor(factor)
    scale = tuple(float(v) for v in np.atleast_1d(scale))
    translate = tuple(float(v) for v in np.atleast_1d(translate))
    if len(scale) != len(translate) or len(scale) < 2:
        raise ValueError(
            f"scale: needs one value per axis (at least 2) matching translate, got {scale} and {translate}"
        )
    lead = len(scale) - 2
    new_scale = scale[:lead] + tuple(v / factor for v in scale[lead:])
    new_translate = translate[:lead] + tuple(
        t - v * (factor - 1) / (2 * factor) for t, v in zip(translate[lead:], scale[lead:])
    )
    return new_scale, new_translate


def _bicubic2d(image: np.ndarray, factor: int) -> np.ndarray:
    from scipy import ndimage

    out = ndimage.zoom(
        np.asarray(image, dtype=np.float64), factor, order=3, mode="reflect", grid_mode=True, prefilter=True
    )
    assert out.shape == (image.shape[0] * factor, image.shape[1] * factor)
    return out


def _lanczos_weights(factor: int, a: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Polyphase Lanczos-a taps: ``offsets[p]`` (input index offsets) and ``weights[p]``."""
    offsets, weights = [], []
    for p in range(factor):
        d = (p + 0.5) / factor - 0.5  # output pixel f*j + p sits at input position j + d
        base = math.floor(d)
        k = np.arange(base - a + 1, base + a + 1)
        t = d - k
        w = np.sinc(t) * np.sinc(t / a)
        w[np.abs(t) >= a] = 0.0
        offsets.append(k)
        weights.append(w / w.sum())
    return np.array(offsets), np.array(weights)


def _lanczos_axis(image: np.ndarray, factor: int, axis: int, a: int = 3) -> np.ndarray:
    offsets, weights = _lanczos_weights(factor, a)
    arr = np.moveaxis(image, axis, 0)
    n = arr.shape[0]
    pad = a + 1
    # half-sample mirror; repeated for inputs shorter than the kernel
    padded = np.pad(arr, [(pad, pad)] + [(0, 0)] * (arr.ndim - 1), mode="symmetric")
    out = np.empty((n * factor,) + arr.shape[1:], dtype=np.float64)
    for p in range(factor):
        acc = np.zeros(arr.shape, dtype=np.float64)
        for k, w in zip(offsets[p], weights[p]):
            if w != 0.0:
                acc += w * padded[pad + k : pad + k + n]
        out[p::factor] = acc
    return np.moveaxis(out, 0, axis)


def _lanczos2d(image: np.ndarray, factor: int) -> np.ndarray:
    return _lanczos_axis(_lanczos_axis(np.asarray(image, dtype=np.float64), factor, 0), factor, 1)


def _block_mean(fine: np.ndarray, factor: int) -> np.ndarray:
    ny, nx = fine.shape
    return fine.reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))


def _consistent_base(coarse: np.ndarray, factor: int, iterations: int = 3) -> np.ndarray:
    """Bicubic refined by back-projection so that every factor x factor block averages to its coarse pixel.

    ``iterations`` rounds of iterative back-projection (the bicubic-upsampled error of the
    area-averaged estimate is added back), then the exact projection onto the images whose
    blocks average to ``coarse`` (each block shifted by its remaining error). For data that
    really are area averages of the truth, that projection can only bring the estimate closer
    to it (orthogonal projection onto a convex set holding the truth).
    """
    up = _bicubic2d(coarse, factor)
    for _ in range(iterations):
        up += _bicubic2d(coarse - _block_mean(up, factor), factor)
    return up + np.kron(coarse - _block_mean(up, factor), np.ones((factor, factor)))


# --------------------------------------------------------------------------------------
# NaN handling and normalisation
# --------------------------------------------------------------------------------------


def _fill_nans(image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """A copy with NaN/inf replaced by the nearest finite value, and the bad-pixel mask (or None)."""
    bad = ~np.isfinite(image)
    if not bad.any():
        return np.array(image, dtype=np.float64), None
    if bad.all():
        return np.zeros(image.shape), bad
    from scipy import ndimage

    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return np.asarray(image, dtype=np.float64)[tuple(idx)], bad


def _restore_nans(out: np.ndarray, bad: np.ndarray | None, factor: int) -> np.ndarray:
    if bad is not None:
        out[np.kron(bad, np.ones((factor, factor), dtype=bool))] = np.nan
    return out


@dataclass
class _Norm:
    """Plane + median + robust range, fitted on a filled input image (pixel coordinates)."""

    a: float = 0.0  # plane: a + by * y + bx * x
    by: float = 0.0
    bx: float = 0.0
    centre: float = 0.0
    scale: float = 1.0
    constant: bool = False

    @classmethod
    def fit(cls, image: np.ndarray) -> _Norm:
        ny, nx = image.shape
        y = np.arange(ny) - (ny - 1) / 2
        x = np.arange(nx) - (nx - 1) / 2
        mean = float(image.mean())
        # separable least squares on a centred grid: slopes decouple
        by = float(((image.mean(axis=1) - mean) * y).sum() / max((y * y).sum(), 1e-300)) if ny > 1 else 0.0
        bx = float(((image.mean(axis=0) - mean) * x).sum() / max((x * x).sum(), 1e-300)) if nx > 1 else 0.0
        norm = cls(a=mean, by=by, bx=bx)
        flat = image - norm.plane(image.shape)
        lo, med, hi = np.percentile(flat, [_PERCENTILES[0], 50.0, _PERCENTILES[1]])
        scale = float(hi - lo)
        if not scale > 0 or not math.isfinite(scale):
            scale = float(np.ptp(flat))
        norm.centre = float(med)
        if not scale > 0 or not math.isfinite(scale) or scale <= 1e-12 * max(1.0, abs(mean)):
            norm.scale, norm.constant = 1.0, True
        else:
            norm.scale = scale
        return norm

    def plane(self, shape: tuple[int, int], factor: int = 1) -> np.ndarray:
        """The plane at the pixel positions of the input (factor 1) or of the ×factor output."""
        ny, nx = shape
        y = (np.arange(ny * factor) + 0.5) / factor - 0.5 - (ny - 1) / 2
        x = (np.arange(nx * factor) + 0.5) / factor - 0.5 - (nx - 1) / 2
        return self.a + self.by * y[:, None] + self.bx * x[None, :]

    def forward(self, image: np.ndarray) -> np.ndarray:
        return (image - self.plane(image.shape) - self.centre) / self.scale

    def inverse(self, normed_up: np.ndarray, in_shape: tuple[int, int], factor: int) -> np.ndarray:
        return normed_up * self.scale + self.centre + self.plane(in_shape, factor)


# --------------------------------------------------------------------------------------
# The network (torch is imported lazily)
# --------------------------------------------------------------------------------------


def _architecture(factor: int, features: int, layers: int) -> dict:
    return {
        "name": ARCHITECTURE,
        "factor": factor,
        "features": features,
        "layers": layers,
        "head_kernel": 5,
        "activation": "prelu",
    }


def _expected_shapes(arch: dict) -> dict[str, tuple[int, ...]]:
    f, c, n, k = arch["factor"], arch["features"], arch["layers"], arch["head_kernel"]
    shapes = {"head.weight": (c, 1, k, k), "head.bias": (c,), "head_act.weight": (c,)}
    for i in range(n):
        shapes[f"body.{i}.weight"] = (c, c, 3, 3)
        shapes[f"body.{i}.bias"] = (c,)
        shapes[f"body_act.{i}.weight"] = (c,)
    shapes["tail.weight"] = (f * f, c, 3, 3)
    shapes["tail.bias"] = (f * f,)
    return shapes


def _receptive_radius(arch: dict) -> int:
    return arch["head_kernel"] // 2 + arch["layers"] + 1


def _build_net(arch: dict):
    import torch
    from torch import nn

    class ResidualESPCN(nn.Module):
        """Coarse image -> ``factor**2`` zero-mean sub-pixel details -> PixelShuffle.

        Valid convolutions: the input carries ``radius`` pixels of context on every side
        (the image's own neighbours, or its mirror image at the edges); the output covers the
        inner part ×factor. The detail of every ``factor x factor`` block has zero mean, so
        adding it keeps the block averages (the consistency with the coarse pixels).
        """

        def __init__(self, factor: int, features: int, layers: int, head_kernel: int):
            super().__init__()
            self.radius = head_kernel // 2 + layers + 1
            self.factor = factor
            self.head = nn.Conv2d(1, features, head_kernel)
            self.head_act = nn.PReLU(features, init=0.1)
            self.body = nn.ModuleList(nn.Conv2d(features, features, 3) for _ in range(layers))
            self.body_act = nn.ModuleList(nn.PReLU(features, init=0.1) for _ in range(layers))
            self.tail = nn.Conv2d(features, factor * factor, 3)
            self.shuffle = nn.PixelShuffle(factor)
            nn.init.zeros_(self.tail.weight)  # start as the consistent bicubic base
            nn.init.zeros_(self.tail.bias)

        def forward(self, coarse: torch.Tensor) -> torch.Tensor:
            h = self.head_act(self.head(coarse))
            for conv, act in zip(self.body, self.body_act):
                h = act(conv(h))
            sub = self.tail(h)  # (n, f*f, h, w): the f x f sub-pixels of every coarse pixel
            sub = sub - sub.mean(dim=1, keepdim=True)  # zero mean per block
            return self.shuffle(sub)

    if arch.get("name") != ARCHITECTURE:
        raise ValueError(f"architecture {arch.get('name')!r} is not {ARCHITECTURE!r}")
    return ResidualESPCN(arch["factor"], arch["features"], arch["layers"], arch["head_kernel"])


# --------------------------------------------------------------------------------------
# The reusable model
# --------------------------------------------------------------------------------------


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
    arch = sidecar.get("architecture")
    try:
        if arch.get("name") != ARCHITECTURE:
            raise ValueError(f"architecture {arch.get('name')!r} is unknown (expected {ARCHITECTURE!r})")
        arch = {
            "name": ARCHITECTURE,
            "factor": _check_factor(arch["factor"]),
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

    check_shapes(weights_path, state, _expected_shapes(arch))
    return UpscalerModel(
        architecture=arch,
        state={k: np.asarray(v, dtype=np.float32) for k, v in state.items()},
        normalisation=dict(NORMALISATION),
        package_version=str(sidecar.get("package_version", "unknown")),
        training=dict(sidecar.get("training") or {}),
    )


def _as_model(weights: Any, factor: int) -> UpscalerModel:
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


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


@dataclass
class _Pair:
    coarse: np.ndarray  # (h + 2r, w + 2r): normalised coarse image, mirror-padded by the radius r
    detail: np.ndarray  # (h*f, w*f): the fine image minus the consistent base of the coarse one


def _crop(fine: np.ndarray, factor: int) -> np.ndarray:
    return fine[: fine.shape[0] // factor * factor, : fine.shape[1] // factor * factor]


def _make_pair(fine: np.ndarray, factor: int, radius: int) -> _Pair | None:
    """(area-averaged /factor, fine) as a training pair; None when too small to learn from."""
    fine = _crop(fine, factor)
    if min(fine.shape) // factor < _MIN_LEARN_SIDE:
        return None
    coarse = _block_mean(fine, factor)
    detail = fine - _consistent_base(coarse, factor)
    return _Pair(np.pad(coarse, radius, mode="symmetric").astype(np.float32), detail.astype(np.float32))


def _pairs(frames: list[np.ndarray], factor: int, radius: int) -> list[_Pair]:
    return [p for p in (_make_pair(f, factor, radius) for f in frames) if p is not None]


def _training_frames(images: Iterable[Any], name: str, max_frames: int = 16) -> list[np.ndarray]:
    """Normalised 2-D float frames (NaNs filled) from arrays or stacks; at most max_frames per stack."""
    frames = []
    for i, img in enumerate(images):
        arr = img if name == "image" else as_image(img, f"{name}[{i}]")
        if arr.ndim == 3:
            picks = np.unique(
                np.linspace(0, arr.shape[0] - 1, min(arr.shape[0], max_frames)).round().astype(int)
            )
            chosen = [np.asarray(arr[int(t)], dtype=np.float64) for t in picks]
        else:
            chosen = [np.asarray(arr, dtype=np.float64)]
        for frame in chosen:
            filled, bad = _fill_nans(frame)
            if bad is not None and bad.all():
                continue
            norm = _Norm.fit(filled)
            if norm.constant:
                continue
            frames.append(norm.forward(filled))
    return frames


def _train_steps(
    net,
    pairs: list[_Pair],
    factor: int,
    steps: int,
    batch: int,
    patch: int,
    learning_rate: float,
    seed: int,
    device,
    offset: int = 0,
    total: int | None = None,
) -> Generator[Progress, None, float | None]:
    """Adam (one-cycle schedule) on random flipped/rotated patches, L1 loss; yields every step."""
    import torch

    if steps <= 0 or not pairs:
        return None
    total = total or steps
    rng = np.random.default_rng(seed)
    areas = np.array([p.detail.size for p in pairs], dtype=np.float64)
    weights = areas / areas.sum()
    radius = net.radius
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=learning_rate,
        total_steps=steps,
        pct_start=0.15,
        anneal_strategy="cos",
        div_factor=10.0,
        final_div_factor=100.0,
    )
    tensors = [(torch.from_numpy(p.coarse).to(device), torch.from_numpy(p.detail).to(device)) for p in pairs]
    net.train()
    loss_value = None
    for step in range(steps):
        # every patch of a batch comes from one image (chosen by area), so they share a size
        coarse, detail = tensors[int(rng.choice(len(pairs), p=weights))]
        h, w = detail.shape[0] // factor, detail.shape[1] // factor
        ph, pw = min(patch, h), min(patch, w)
        ys = rng.integers(0, h - ph + 1, size=batch)
        xs = rng.integers(0, w - pw + 1, size=batch)
        x = torch.stack(
            [coarse[y0 : y0 + ph + 2 * radius, x0 : x0 + pw + 2 * radius] for y0, x0 in zip(ys, xs)]
        )[:, None]
        y = torch.stack(
            [
                detail[y0 * factor : (y0 + ph) * factor, x0 * factor : (x0 + pw) * factor]
                for y0, x0 in zip(ys, xs)
            ]
        )[:, None]
        t = int(rng.integers(8))  # one of the 8 flips/rotations for the whole batch
        if t & 4:
            x, y = x.transpose(2, 3), y.transpose(2, 3)
        if t & 1:
            x, y = x.flip(2), y.flip(2)
        if t & 2:
            x, y = x.flip(3), y.flip(3)
        loss = (net(x) - y).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_value = float(loss.detach())
        yield Progress(offset + step + 1, total, loss_value, "training")
    net.eval()
    return loss_value


def _new_net(arch: dict, seed: int, device):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _build_net(arch)
    return net.to(device)


def _net_from_model(model: UpscalerModel, device):
    import torch

    net = _build_net(model.architecture)
    net.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in model.state.items()})
    return net.to(device)


def _model_from_net(net, arch: dict, training: dict) -> UpscalerModel:
    state = {k: v.detach().cpu().numpy().astype(np.float32).copy() for k, v in net.state_dict().items()}
    return UpscalerModel(architecture=dict(arch), state=state, training=training)


def _as_list(images: Any, name: str) -> list:
    if images is None:
        return []
    if isinstance(images, np.ndarray) or is_dask(images):
        return [images]
    if isinstance(images, (str, bytes, os.PathLike)):
        raise ValueError(f"{name}: expected arrays (read files with napari_scanprobe.read first), got a path")
    try:
        return list(images)
    except TypeError:
        raise ValueError(
            f"{name}: expected an array or a list of arrays, got {type(images).__name__}"
        ) from None


def train_upscaler_steps(
    images: Any,
    factor: int = 2,
    *,
    seed: int = 0,
    steps: int = 1500,
    batch: int = 16,
    patch: int = 24,
    learning_rate: float = 2e-3,
    features: int = 32,
    layers: int = 1,
    device: Any = None,
    threads: int | None = None,
) -> Generator[Progress, None, UpscalerModel]:
    """Generator form of :func:`train_upscaler`: yields Progress, returns the UpscalerModel."""
    import torch

    factor = _check_factor(factor)
    seed = UPSCALE.check_option("seed", seed)
    opts = _check_options(
        "cnn",
        dict(
            steps=steps,
            batch=batch,
            patch=patch,
            learning_rate=learning_rate,
            features=features,
            layers=layers,
            threads=threads,
        ),
    )
    images = _as_list(images, "images")
    if not images:
        raise ValueError("images: no training images given")
    arch = _architecture(factor, opts["features"], opts["layers"])
    frames = _training_frames(images, "images")
    pairs = _pairs(frames, factor, _receptive_radius(arch))
    if not pairs:
        side = _MIN_LEARN_SIDE * factor
        raise ValueError(
            f"images: nothing to learn from (each needs at least {side} x {side} pixels and some height variation)"
        )
    dev = resolve_device(device)
    with torch_threads(opts["threads"]), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _new_net(arch, seed, dev)
        loss = yield from _train_steps(
            net, pairs, factor, opts["steps"], opts["batch"], opts["patch"], opts["learning_rate"], seed, dev
        )
    training = {
        "images": len(frames),
        "steps": opts["steps"],
        "batch": opts["batch"],
        "patch": opts["patch"],
        "learning_rate": opts["learning_rate"],
        "seed": seed,
        "final_loss": loss,
    }
    return _model_from_net(net, arch, training)


def train_upscaler(
    images: Any,
    factor: int = 2,
    *,
    seed: int = 0,
    progress: Callable[[Progress], Any] | None = None,
    **options,
) -> UpscalerModel:
    """Train the ×``factor`` upscaling network on high-resolution ``images`` (an array or a list).

    Each image (or frame of a stack; up to 16 per stack) is normalised, area-averaged down by
    ``factor`` and the network learns to restore it. Options: ``steps`` (1500), ``batch``,
    ``patch``, ``learning_rate``, ``features``, ``layers``, ``device``, ``threads``. The result
    can be saved (:meth:`UpscalerModel.save`) and used with ``upscale(..., weights=model)``.
    """
    return run_to_end(train_upscaler_steps(images, factor, seed=seed, **options), progress)


# --------------------------------------------------------------------------------------
# Inference
# --------------------------------------------------------------------------------------

_TRANSFORMS = 8


def _apply_detail(
    net, normed: np.ndarray, factor: int, device, ensemble: bool
) -> Generator[Progress, None, np.ndarray]:
    """The network's detail for one normalised 2-D image (row bands, exact: each has its context)."""
    import torch

    r = net.radius
    padded = np.pad(normed, r, mode="symmetric").astype(np.float32)
    ny, nx = normed.shape
    transforms = range(_TRANSFORMS) if ensemble else range(1)
    bands = []
    for t in transforms:
        h, w = (nx, ny) if t & 4 else (ny, nx)
        step = max(8, 65536 // w)
        bands.append((h, w, step))
    total, done = sum(-(-h // step) for h, _, step in bands), 0
    out = np.zeros((ny * factor, nx * factor), dtype=np.float64)
    for t, (h, w, step) in zip(transforms, bands):
        img = padded.T if t & 4 else padded
        if t & 1:
            img = img[::-1]
        if t & 2:
            img = img[:, ::-1]
        res = np.empty((h * factor, w * factor), dtype=np.float32)
        with torch.inference_mode():
            for r0 in range(0, h, step):
                r1 = min(h, r0 + step)
                x = torch.from_numpy(np.ascontiguousarray(img[r0 : r1 + 2 * r]))[None, None].to(device)
                res[r0 * factor : r1 * factor] = net(x)[0, 0].cpu().numpy()
                done += 1
                yield Progress(done, total, None, "upscaling")
        if t & 2:
            res = res[:, ::-1]
        if t & 1:
            res = res[::-1]
        if t & 4:
            res = res.T
        out += res
    return out / len(transforms)


def _cross_scale_weight(
    net, frames: list[np.ndarray], factor: int, device, ensemble: bool
) -> Generator[Progress, None, float | None]:
    """Least-squares weight in [0, 1] of the network's detail on (frame / factor -> frame) pairs.

    The weight ``w`` minimising ``|base + w * detail - frame|²`` summed over the frames
    (at most 4, each at least ``8 * factor`` pixels on a side), clipped to [0, 1]; None when
    no frame is large enough.
    """
    num = den = 0.0
    checked = 0
    for fine in frames:
        fine = _crop(fine, factor)
        if min(fine.shape) // factor < 8 or checked == 4:
            continue
        checked += 1
        coarse = _block_mean(fine, factor)
        detail = yield from _apply_detail(net, coarse, factor, device, ensemble)
        target = fine - _consistent_base(coarse, factor)
        num += float((detail * target).sum())
        den += float((detail * detail).sum())
    if not checked:
        return None
    if den <= 0:
        return 0.0
    return float(min(1.0, max(0.0, num / den)))


def _cnn_frame_steps(
    net, frame: np.ndarray, factor: int, device, ensemble: bool, weight: float
) -> Generator[Progress, None, np.ndarray]:
    """One 2-D frame: consistent base + weight x network detail (×4 with a ×2 network: then a ×2 base)."""
    filled, bad = _fill_nans(frame)
    if bad is not None and bad.all():
        return np.full((frame.shape[0] * factor, frame.shape[1] * factor), np.nan)
    norm = _Norm.fit(filled)
    normed = norm.forward(filled)
    net_factor = factor if net is None else net.factor
    out = _consistent_base(normed, net_factor)
    if not norm.constant and weight > 0 and net is not None:
        out += weight * (yield from _apply_detail(net, normed, net_factor, device, ensemble))
    if net_factor != factor:
        out = _consistent_base(out, factor // net_factor)
    return _restore_nans(norm.inverse(out, frame.shape, factor), bad, factor)


def _classical(image: Any, factor: int, method: str) -> Any:
    def one(frame: np.ndarray) -> np.ndarray:
        filled, bad = _fill_nans(frame)
        if bad is not None and bad.all():
            return np.full((frame.shape[0] * factor, frame.shape[1] * factor), np.nan)
        norm = _Norm.fit(filled)  # plane out and back: exact for a plane, better conditioned
        flat = filled - norm.plane(filled.shape)
        up = _bicubic2d(flat, factor) if method == "bicubic" else _lanczos2d(flat, factor)
        return _restore_nans(up + norm.plane(frame.shape, factor), bad, factor)

    return map_frames(one, image)


def _cnn_steps(arr: Any, factor: int, seed: int, weights: Any, opts: dict) -> Generator[Progress, None, Any]:
    import torch

    dev = resolve_device(opts["device"])
    frames = _training_frames([arr], "image")
    extra = _training_frames(_as_list(opts["training_images"], "training_images"), "training_images")
    adaptive, ensemble = bool(opts["adaptive"]), bool(opts["ensemble"])
    batch, patch, lr = opts["batch"], opts["patch"], opts["learning_rate"]
    # training: one thread on the CPU unless told otherwise (tiny batches gain little from more,
    # it cannot stall on busy cores, and the result does not depend on the machine's core count)
    train_threads = opts["threads"] if opts["threads"] is not None else (1 if dev.type == "cpu" else None)

    def train(net, pairs, steps, rate, step_seed, offset=0, total=None):
        with torch_threads(train_threads):
            loss = yield from _train_steps(
                net, pairs, net.factor, steps, batch, patch, rate, step_seed, dev, offset, total
            )
        net.eval()
        return loss

    info: dict[str, Any] = {}
    with torch_threads(opts["threads"]), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if weights is not None:
            model = _as_model(weights, factor)
            net = _net_from_model(model, dev).eval()
            weight = (
                (yield from _cross_scale_weight(net, frames, net.factor, dev, ensemble)) if adaptive else None
            )
            weight = 1.0 if weight is None else weight
            if opts["finetune"] and opts["finetune_steps"] > 0:
                # the weight checked before fine-tuning is kept: no unseen scale is left to check on
                yield from train(
                    net, _pairs(frames + extra, net.factor, net.radius), opts["finetune_steps"], lr / 4, seed
                )
        else:
            # zero-shot: ×2 learned from the image; ×4 = that ×2 network, then a ×2 consistent base
            nf = 2
            net = _new_net(_architecture(nf, opts["features"], opts["layers"]), seed, dev)
            radius, steps = net.radius, opts["steps"]
            half = steps // 2
            main = _pairs(frames + extra, nf, radius)
            low_frames = [_block_mean(_crop(f, nf), nf) for f in frames if min(f.shape) >= nf]
            low = _pairs(low_frames, nf, radius) + _pairs(extra, nf, radius)
            weight = 0.0
            if not adaptive:
                if main and steps > 0:
                    yield from train(net, main, steps, lr, seed)
                    weight = 1.0
            elif low and half > 0:
                # A: learn one octave lower; how well it carries over one octave up ...
                total = steps + half
                yield from train(net, low, half, lr, seed, 0, total)
                w_up = yield from _cross_scale_weight(net, frames, nf, dev, ensemble)
                info["weight_up"] = w_up
                if w_up:
                    # C: ... and how well a network learnt at the image's octave carries over down
                    check = _new_net(_architecture(nf, opts["features"], opts["layers"]), seed + 1, dev)
                    yield from train(check, main, half, lr, seed + 1, half, total)
                    w_down = yield from _cross_scale_weight(check, low_frames, nf, dev, ensemble)
                    info["weight_down"] = w_down
                    weight = min(w_up, w_down or 0.0)
                    del check
                if weight > 0:
                    # B: A continues on both octaves and is the network used
                    yield from train(net, main + low, steps - half, lr, seed + 2, 2 * half, total)
        info["weight"] = weight
        yield Progress(0, 0, None, f"learned detail weight {weight:.2f}", extra=dict(info))

        if arr.ndim == 2:
            return (yield from _cnn_frame_steps(net, np.asarray(arr), factor, dev, ensemble, weight))
        if is_dask(arr):
            return map_frames(
                lambda frame: run_to_end(_cnn_frame_steps(net, frame, factor, dev, ensemble, weight)), arr
            )
        out = []
        for t in range(arr.shape[0]):
            out.append((yield from _cnn_frame_steps(net, np.asarray(arr[t]), factor, dev, ensemble, weight)))
            yield Progress(t + 1, arr.shape[0], None, "upscaling frames")
        return np.stack(out)


def upscale_steps(
    image: Any,
    factor: int = 2,
    method: str = "auto",
    seed: int = 0,
    weights: Any = None,
    **options,
) -> Generator[Progress, None, Any]:
    """Generator form of :func:`upscale`: yields Progress (training, then upscaling), returns the result."""
    factor = _check_factor(factor)
    _check_options(method, options)
    seed = UPSCALE.check_option("seed", seed)
    arr = as_image(image)
    if method == "auto":
        method = "cnn" if torch_available() else "bicubic"
        if method != "cnn":
            options = {}
    if method in ("bicubic", "lanczos"):
        _check_options(method, options)
        if weights is not None:
            raise ValueError(f"weights: only method 'cnn' (or 'auto') uses weights, not {method!r}")
        return _classical(arr, factor, method)
    opts = _check_options("cnn", options)
    return (yield from _cnn_steps(arr, factor, seed, weights, opts))


def upscale(
    image: Any,
    factor: int = 2,
    method: str = "auto",
    seed: int = 0,
    progress: Callable[[Progress], Any] | None = None,
    weights: Any = None,
    **options,
) -> Any:
    """Upscale a 2-D image (or each frame of a ``(t, y, x)`` stack) ×``factor`` (2 or 4).

    Returns a new float array of shape ``(ny * factor, nx * factor)`` (per frame) on the
    pixel-area-aligned grid described in the module docstring. ``method``: ``"auto"`` (the CNN),
    ``"cnn"``, ``"bicubic"`` or ``"lanczos"``. CNN options (see :data:`UPSCALE_METHODS`):
    ``steps``, ``batch``, ``patch``, ``learning_rate``, ``features``, ``layers``, ``ensemble``,
    ``adaptive``, ``finetune``, ``finetune_steps``, ``training_images``, ``device``, ``threads``.
    ``weights``: a saved model path or an :class:`UpscalerModel` (skips zero-shot training
    unless ``finetune=True``). The same ``seed`` on CPU gives the same result.
    """
    return run_to_end(upscale_steps(image, factor, method, seed, weights, **options), progress)
