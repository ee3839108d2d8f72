"""Image exports (PNG, JPEG) as classifier inputs: one grey channel, no physical pixel size.

Many labs keep their scans as exported pictures. A greyscale image is read as it is (8 or 16 bit);
a colour image becomes the mean of its red, green and blue values. That is right only for a colour
map whose R+G+B grows with height (grey, black->orange->white "gold", "afmhot"); turning any other
colour map back into heights is the user's business -- export greyscale when you can. An alpha
channel is ignored. The pixel size is unknown (``None``): pass ``pixel_size`` to :func:`train`
or train with ``pixel_size=None`` (images used as they are). TIFF and .npy arrays are read by
``data.read_example`` through tifffile/numpy.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io import ReaderError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

#: Larger pictures are refused before they are decoded (a 16k x 16k PNG is 1 GiB as floats).
MAX_PIXELS = 8192 * 8192


def read_image_export(path: str | os.PathLike) -> np.ndarray:
    """A PNG/JPEG file as a 2-D float32 array (colour: mean of R, G, B; see the module docstring)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
            if width * height > MAX_PIXELS or min(width, height) < 2:
                raise ReaderError(
                    path, f"the picture is {width}×{height} px; expected 2 to {MAX_PIXELS} pixels in all"
                )
            im.load()
            if im.mode == "P":
                arr = np.asarray(im.convert("RGBA" if "transparency" in im.info else "RGB"))
            else:
                arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        if isinstance(exc, ReaderError):
            raise
        raise ReaderError(path, f"not a readable PNG/JPEG picture ({exc})") from None
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.float32).mean(axis=2) if arr.shape[2] >= 3 else arr[..., 0]
    return np.asarray(arr, dtype=np.float32)
