"""Training the upscaler: (coarse, detail) pairs from high-resolution images, and the training run."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...nn.device import resolve_device, torch_threads
from ...nn.upscaler import architecture, receptive_radius
from ..common import Progress, as_image, is_dask, run_to_end
from .grid import block_mean, consistent_base, crop
from .model import UpscalerModel, model_from_net, new_net
from .normalise import Norm, fill_nans
from .options import check_factor, check_options, check_seed

MIN_LEARN_SIDE = 4  # coarse pixels: zero-shot training needs at least this many per side


@dataclass
class Pair:
    coarse: np.ndarray  # (h + 2r, w + 2r): normalised coarse image, mirror-padded by the radius r
    detail: np.ndarray  # (h*f, w*f): the fine image minus the consistent base of the coarse one


def make_pair(fine: np.ndarray, factor: int, radius: int) -> Pair | None:
    """(area-averaged /factor, fine) as a training pair; None when too small to learn from."""
    fine = crop(fine, factor)
    if min(fine.shape) // factor < MIN_LEARN_SIDE:
        return None
    coarse = block_mean(fine, factor)
    detail = fine - consistent_base(coarse, factor)
    return Pair(np.pad(coarse, radius, mode="symmetric").astype(np.float32), detail.astype(np.float32))


def training_pairs(frames: list[np.ndarray], factor: int, radius: int) -> list[Pair]:
    return [p for p in (make_pair(f, factor, radius) for f in frames) if p is not None]


def training_frames(images: Iterable[Any], name: str, max_frames: int = 16) -> list[np.ndarray]:
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
            filled, bad = fill_nans(frame)
            if bad is not None and bad.all():
                continue
            norm = Norm.fit(filled)
            if norm.constant:
                continue
            frames.append(norm.forward(filled))
    return frames


def train_detail(
    net,
    pairs: list[Pair],
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
    """Adam (one-cycle schedule) on random flipped/rotated patches, L1 loss; yields every step.
    Returns the last step's loss (None when nothing was trained)."""
    import torch

    from ...nn.loop import OneCycle, fit

    if steps <= 0 or not pairs:
        return None
    rng = np.random.default_rng(seed)
    areas = np.array([p.detail.size for p in pairs], dtype=np.float64)
    weights = areas / areas.sum()
    radius = net.radius
    tensors = [(torch.from_numpy(p.coarse).to(device), torch.from_numpy(p.detail).to(device)) for p in pairs]

    def step():
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
        return (net(x) - y).abs().mean()

    fitted = yield from fit(
        net,
        step,
        learning_rate=learning_rate,
        steps_per_epoch=steps,
        schedule=OneCycle(pct_start=0.15, div_factor=10.0, final_div_factor=100.0),
        offset=offset,
        total=total,
    )
    return fitted.last_loss


def as_list(images: Any, name: str) -> list:
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

    factor = check_factor(factor)
    seed = check_seed(seed)
    opts = check_options(
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
    images = as_list(images, "images")
    if not images:
        raise ValueError("images: no training images given")
    arch = architecture(factor, opts["features"], opts["layers"])
    frames = training_frames(images, "images")
    pairs = training_pairs(frames, factor, receptive_radius(arch))
    if not pairs:
        side = MIN_LEARN_SIDE * factor
        raise ValueError(
            f"images: nothing to learn from (each needs at least {side} x {side} pixels and some height variation)"
        )
    dev = resolve_device(device)
    with torch_threads(opts["threads"]), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = new_net(arch, seed, dev)
        loss = yield from train_detail(
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
    return model_from_net(net, arch, training)


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
