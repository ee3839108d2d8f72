"""What every preprocessing function shares: input checks, frame-by-frame application, progress.

* :func:`as_image` validates the input and gives a float copy-free view: 2-D ``(y, x)`` or a 3-D
  ``(t, y, x)`` stack (numpy or dask). Functions never modify their input.
* :func:`map_frames` applies a 2-D function to an image or to every frame of a stack -- lazily,
  frame by frame, when the stack is a dask array.
* :func:`median` is ``np.median`` bit for bit in a few passes for large arrays;
  :func:`center_and_sigma` the median and robust (MAD) sigma of a sample (both compiled, and
  both take an optional mask instead of a copy of the values).
* Long work (CNN training) is written as a generator that yields :class:`Progress` (defined in
  :mod:`napari_scanprobe.progress`, named here too) and returns
  its result; :func:`run_to_end` drives one to completion for the plain scripting API, and the
  napari widget wraps the same generator in a ``thread_worker`` (quit = cancel at the next yield).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ..progress import Progress, run_to_end

__all__ = [
    "Progress",
    "as_image",
    "as_mask",
    "center_and_sigma",
    "compiled_kernels",
    "is_dask",
    "map_frames",
    "median",
    "run_to_end",
]


def median(values: np.ndarray, where: np.ndarray | None = None) -> float:
    """``np.median`` of the finite ``values`` (those ``where`` is True), bit for bit (float32
    values: the exact median, the mean of the middle two taken in float64); NaN if none.

    Compiled (:func:`.kernels.masked_median`): a strided sample brackets the middle ranks, one
    pass counts the values below and copies the few inside, and only those are selected from;
    no full-size copy or sort.
    """
    values, where = _flat_values(values, where)
    return float(compiled_kernels().masked_median(values, where, values.dtype.type(0), False))


def center_and_sigma(values: np.ndarray, where: np.ndarray | None = None) -> tuple[float, float]:
    """Median and 1.4826 x the median absolute deviation (the standard deviation if that is 0)
    of the finite ``values`` (those ``where`` is True); (0, 0) if there are none. The
    deviations are taken in the values' float type, as numpy does."""
    values, where = _flat_values(values, where)
    kernels = compiled_kernels()
    center = kernels.masked_median(values, where, values.dtype.type(0), False)
    if np.isnan(center):
        return 0.0, 0.0
    sigma = 1.4826 * kernels.masked_median(values, where, values.dtype.type(center), True)
    if sigma <= 0:
        sigma = float(np.std(values[where & np.isfinite(values)]))
    return float(center), sigma


def _flat_values(values: np.ndarray, where: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (as float) and ``where`` (all True if None) as contiguous 1-D arrays (views
    where possible)."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    values = np.ascontiguousarray(values).ravel()
    where = np.ones(values.size, bool) if where is None else np.ascontiguousarray(where, dtype=bool).ravel()
    return values, where


@functools.cache
def compiled_kernels():
    """The compiled kernels (numba, imported on first use: ``import napari_scanprobe`` stays light)."""
    from . import kernels

    return kernels


def torch_available() -> bool:
    """Whether torch can be imported (the network methods need it)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def is_dask(array: Any) -> bool:
    """Whether ``array`` is a dask array (subclasses included); never imports dask itself."""
    dask_array = sys.modules.get("dask.array")
    return dask_array is not None and isinstance(array, dask_array.Array)


def as_image(image: Any, name: str = "image") -> Any:
    """Check that ``image`` is a 2-D image or a 3-D ``(t, y, x)`` stack of numbers.

    Returns a float array (numpy, or dask for dask input) without changing the input.
    Raises ValueError naming ``name`` and the reason.
    """
    if is_dask(image):
        arr = image
    else:
        try:
            arr = np.asarray(image)
        except Exception as exc:  # ragged lists etc.
            raise ValueError(f"{name}: not an array of numbers ({exc})") from None
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"{name}: expected a 2-D image (y, x) or a 3-D stack (t, y, x), got {arr.ndim}-D {arr.shape}"
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.issubdtype(
        arr.dtype, np.complexfloating
    ):
        raise ValueError(f"{name}: expected real numbers, got dtype {arr.dtype}")
    if min(arr.shape[-2:]) < 2:
        raise ValueError(f"{name}: an image needs at least 2 x 2 pixels, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    return arr


def as_mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """A boolean feature mask (True = excluded from fits) matching the image's (y, x) shape."""
    if mask is None:
        return None
    m = np.asarray(mask).astype(bool)
    if m.shape != tuple(shape[-2:]) and m.shape != tuple(shape):
        raise ValueError(f"mask: shape {m.shape} does not match the image {tuple(shape)}")
    return m


def map_frames(func: Callable[[np.ndarray], np.ndarray], image: Any, dtype=np.float64) -> Any:
    """``func`` on a 2-D image, or on every frame of a ``(t, y, x)`` stack (lazily for dask).

    ``func`` receives a float 2-D numpy array it may not modify and returns a new 2-D array
    (its shape may differ from the input's, e.g. for upscaling).
    """
    if image.ndim == 2:
        return func(np.asarray(image))
    if is_dask(image):
        import dask.array as da

        sample = func(np.asarray(image[0]))
        frames = image.rechunk({0: 1, 1: -1, 2: -1})
        return da.map_blocks(
            lambda block: func(np.asarray(block[0]))[np.newaxis],
            frames,
            dtype=sample.dtype,
            chunks=((1,) * image.shape[0], (sample.shape[0],), (sample.shape[1],)),
        )
    return np.stack([func(np.asarray(frame)) for frame in image])
