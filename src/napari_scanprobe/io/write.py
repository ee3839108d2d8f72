"""Writing channels to files other SPM tools open: ``write(path, channels) -> Path``.

The extension picks the format:

* ``.gsf`` -- Gwyddion Simple Field (:func:`napari_scanprobe.io.gsf.write`): one 2-D channel,
  float32 values;
* ``.gwy`` -- Gwyddion native (:func:`napari_scanprobe.io.gwy.write`): several 2-D channels in
  one file, float64 values;
* ``.tif``/``.tiff`` -- float32 TIFF (:func:`napari_scanprobe.io.tif_write.write`): one
  channel, 2-D or a ``(t, y, x)`` movie, read back by :mod:`napari_scanprobe.io.scanprobe_tif`.

Every write is atomic (:mod:`napari_scanprobe.atomic`): the file is built under a temporary
name in the target's folder and renamed onto the target only when complete, so a failed or
interrupted write leaves neither a half-written file nor a changed target. Any problem while
writing becomes ONE ``OSError`` (``PermissionError`` for a folder we may not write to) whose
message names the file and the reason; bad input is a ``ValueError`` naming what is wrong.

The writers convert our units (lengths in nm) to what each format expects themselves; this
module holds what they share: the dispatch, input checks and error wording.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .scan import Channel, Scan, jsonable

#: Extension -> (module in this package, format name, channels per file: 1 or None = any, movies allowed)
WRITERS: dict[str, tuple[str, str, int | None, bool]] = {
    ".gsf": ("gsf", "Gwyddion Simple Field (.gsf)", 1, False),
    ".gwy": ("gwy", "Gwyddion (.gwy)", None, False),
    ".tif": ("tif_write", "TIFF (.tif)", 1, True),
    ".tiff": ("tif_write", "TIFF (.tif)", 1, True),
}


def write(
    path: str | os.PathLike, channels: Channel | Sequence[Channel] | Scan, *, overwrite: bool = True
) -> Path:
    """Write ``channels`` to ``path`` in the format its extension names; returns the path.

    ``channels`` is one :class:`Channel`, a sequence of them or a :class:`Scan` (all its
    channels). Raises ``ValueError`` for an unknown extension or channels the format cannot
    hold (several channels to .gsf/.tif, a movie to .gsf/.gwy), ``FileExistsError`` when
    ``overwrite`` is false and the file exists, ``OSError`` when the file cannot be written.
    """
    target = Path(path)
    ext = target.suffix.lower()
    if ext not in WRITERS:
        known = ", ".join(sorted(WRITERS))
        raise ValueError(f"{target}: cannot write {ext or 'a file without extension'}; use one of {known}")
    module_name, format_name, max_channels, movies = WRITERS[ext]
    chans = as_channels(channels, target)
    if not chans:
        raise ValueError(f"{target}: nothing to write (no channel given)")
    if max_channels is not None and len(chans) > max_channels:
        raise ValueError(
            f"{target}: {format_name} holds one channel, not {len(chans)}; write them to a .gwy file "
            "or one file per channel"
        )
    if not movies:
        for ch in chans:
            if getattr(ch.data, "ndim", 0) == 3:
                raise ValueError(
                    f"{target}: channel {ch.title!r} is a movie; {format_name} holds images only, use .tif"
                )
    if not overwrite and target.exists():
        raise FileExistsError(errno.EEXIST, f"{target} already exists (overwrite=False)")
    module = importlib.import_module(f"{__package__}.{module_name}")
    return module.write(target, chans if max_channels is None else chans[0])


def as_channels(channels: Channel | Sequence[Channel] | Scan, path: str | os.PathLike = "") -> list[Channel]:
    """A Channel, a sequence of Channels or a Scan as a list of Channels (``path`` for messages)."""
    if isinstance(channels, Scan):
        return list(channels.channels)
    if isinstance(channels, Channel):
        return [channels]
    chans = list(channels)
    for ch in chans:
        if not isinstance(ch, Channel):
            raise ValueError(f"{path}: expected Channel objects to write, got {type(ch).__name__}")
    return chans


# --------------------------------------------------------------------------------------
# Shared by the format writers
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn any ``OSError`` raised inside into one that names ``path`` and the reason.

    The errno is kept, so a folder we may not write to stays a ``PermissionError`` and a
    full disk keeps ``errno.ENOSPC``. Errors that already name the file pass unchanged.
    """
    try:
        yield
    except OSError as exc:
        if str(path) in str(exc):
            raise
        reason = exc.strerror or str(exc) or type(exc).__name__
        if exc.errno is None:
            raise OSError(f"cannot write {path}: {reason}") from None
        raise OSError(exc.errno, f"cannot write {path}: {reason}") from None


def check_channel(path: str | os.PathLike, channel: Channel, *, movie: bool = False) -> None:
    """Raise ``ValueError`` (naming the file and channel) unless ``channel`` can be written.

    The data must be real numbers, 2-D (or 3-D ``(t, y, x)`` when ``movie``), not empty;
    pixel sizes positive and finite, offsets finite.
    """
    if not isinstance(channel, Channel):
        raise ValueError(f"{path}: expected a Channel to write, got {type(channel).__name__}")
    what = f"{path}: channel {channel.title!r}"
    data = channel.data
    ndim = getattr(data, "ndim", None)
    allowed = (2, 3) if movie else (2,)
    if ndim not in allowed:
        shape = getattr(data, "shape", None)
        kinds = "a 2-D image or a 3-D (t, y, x) movie" if movie else "a 2-D image"
        raise ValueError(f"{what} must be {kinds}, not data of shape {shape}")
    if 0 in data.shape:
        raise ValueError(f"{what} is empty (shape {tuple(data.shape)})")
    dtype = np.dtype(data.dtype)
    if dtype.kind not in "biuf":
        raise ValueError(f"{what} holds {dtype} values; only real numbers can be written")
    if not all(math.isfinite(s) and s > 0 for s in channel.pixel_size):
        raise ValueError(
            f"{what} has an invalid pixel size {channel.pixel_size}: it must be positive and finite"
        )
    if not all(math.isfinite(o) for o in channel.offset):
        raise ValueError(f"{what} has an invalid offset {channel.offset}: it must be finite")
    if channel.frame_time_s is not None and not (
        math.isfinite(channel.frame_time_s) and channel.frame_time_s > 0
    ):
        raise ValueError(f"{what} has an invalid frame time {channel.frame_time_s} s")


def header_text(value: Any) -> str:
    """A metadata value as one string: text as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(jsonable(value), ensure_ascii=False, separators=(",", ":"))
