"""Classical resampling (numpy / scipy), all on the pixel-area-aligned grid (see the package doc)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..common import as_image, map_frames
from .options import check_factor


def downscale_area(image: Any, factor: int) -> np.ndarray:
    """Area-average ``image`` down by ``factor`` (the physical model of a coarser scan).

    Coarse pixel ``j`` is the mean of fine pixels ``factor*j ... factor*j + factor - 1`` on both
    axes; rows/columns beyond a multiple of ``factor`` are dropped. A stack is downscaled frame
    by frame. A NaN anywhere in a block makes that coarse pixel NaN.
    """
    factor = check_factor(factor)
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
    factor = check_factor(factor)
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


def bicubic2d(image: np.ndarray, factor: int) -> np.ndarray:
    from scipy import ndimage

    out = ndimage.zoom(
        np.asarray(image, dtype=np.float64), factor, order=3, mode="reflect", grid_mode=True, prefilter=True
    )
    assert out.shape == (image.shape[0] * factor, image.shape[1] * factor)
    return out


def lanczos_weights(factor: int, a: int = 3) -> tuple[np.ndarray, np.ndarray]:
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


def lanczos_axis(image: np.ndarray, factor: int, axis: int, a: int = 3) -> np.ndarray:
    offsets, weights = lanczos_weights(factor, a)
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


def lanczos2d(image: np.ndarray, factor: int) -> np.ndarray:
    return lanczos_axis(lanczos_axis(np.asarray(image, dtype=np.float64), factor, 0), factor, 1)


def block_mean(fine: np.ndarray, factor: int) -> np.ndarray:
    ny, nx = fine.shape
    return fine.reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))


def consistent_base(coarse: np.ndarray, factor: int, iterations: int = 3) -> np.ndarray:
    """Bicubic refined by back-projection so that every factor x factor block averages to its coarse pixel.

    ``iterations`` rounds of iterative back-projection (the bicubic-upsampled error of the
    area-averaged estimate is added back), then the exact projection onto the images whose
    blocks average to ``coarse`` (each block shifted by its remaining error). For data that
    really are area averages of the truth, that projection can only bring the estimate closer
    to it (orthogonal projection onto a convex set holding the truth).
    """
    up = bicubic2d(coarse, factor)
    for _ in range(iterations):
        up += bicubic2d(coarse - block_mean(up, factor), factor)
    return up + np.kron(coarse - block_mean(up, factor), np.ones((factor, factor)))


def crop(fine: np.ndarray, factor: int) -> np.ndarray:
    """``fine`` cut to whole ``factor x factor`` blocks."""
    return fine[: fine.shape[0] // factor * factor, : fine.shape[1] // factor * factor]
