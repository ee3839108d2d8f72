"""Reading SPM files: ``read(path) -> Scan``. Pure Python + numpy; never imports napari or Qt."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .scan import Channel, ReaderError, Scan, check_geometry, number_repeated_titles, read_budget
from .sniff import find_format, refuse_special

__all__ = ["Channel", "ReaderError", "Scan", "read", "find_format"]

log = logging.getLogger(__name__)


def read(path: str | Path) -> Scan:
    """Read every channel of an SPM file.

    Raises :class:`ReaderError` -- naming the file and the reason -- for anything that is not
    a readable SPM image or movie: unknown content, truncation, spectroscopy, a bad header.
    """
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ReaderError(path, "no such file") from None
    except OSError as exc:
        raise ReaderError(path, f"cannot access the file ({exc.strerror})") from None
    not_a_file = refuse_special(info.st_mode)
    if not_a_file:
        raise ReaderError(path, not_a_file)
    if info.st_size == 0:
        raise ReaderError(path, "file is empty (0 bytes)")
    module = find_format(path)
    if module is None:
        raise ReaderError(path, "not a scanning probe microscopy file napari-scanprobe can read")
    try:
        with read_budget(path, info.st_size):
            scan = module.read(path)
        for channel in scan.channels:
            check_geometry(path, channel)
    except ReaderError:
        raise
    except MemoryError:
        raise ReaderError(path, f"not enough memory to read this {module.FORMAT} file") from None
    except OSError as exc:
        raise ReaderError(path, f"cannot read the file ({exc.strerror or exc})") from None
    except Exception as exc:  # the safety net: a corrupt file must never surface a parser traceback
        log.debug("parser failure", exc_info=True)
        raise ReaderError(
            path, f"corrupt or unsupported {module.FORMAT} file ({type(exc).__name__}: {exc})"
        ) from None
    if not scan.channels:
        raise ReaderError(path, f"{module.FORMAT} file holds no image channel")
    number_repeated_titles(scan.channels)
    return scan
