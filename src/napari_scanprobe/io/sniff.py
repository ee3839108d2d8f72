"""Content sniffing: which format module reads a file.

Every format module in :data:`FORMAT_MODULES` exposes

* ``FORMAT`` -- a short name (``"nanoscope"``),
* ``EXTENSIONS`` -- lower-case extensions it is known under (``(".spm", ".000")``); these feed
  the npe2 manifest's ``filename_patterns`` but never decide on their own,
* ``sniff(path, head) -> bool`` -- cheap and never raising: does the content look like this
  format? ``head`` is the first :data:`HEAD_BYTES` bytes of the file,
* ``read(path) -> Scan`` -- raises :class:`ReaderError` on anything it cannot read.

Modules are imported on first use so that reading one file costs only its own module.
"""

from __future__ import annotations

import importlib
import logging
import os
import stat
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

HEAD_BYTES = 4096

#: Order matters only where two formats share a container: the more specific sniffers first.
FORMAT_MODULES: tuple[str, ...] = (
    "nanoscope",
    "ibw",
    "scanprobe_tif",
    "jpk",
    "h5jpk",
    "park",
    "gwy",
    "gsf",
    "sxm",
    "nanonis_spectra",
    "mdt",
    "asd",
    "nid",
    "matrix",
    "sm4",
    "wsxm",
)


_LOADED: dict[str, ModuleType] = {}


def format_module(name: str) -> ModuleType:
    module = _LOADED.get(name)
    if module is None:
        module = _LOADED[name] = importlib.import_module(f"{__package__}.{name}")
    return module


def all_format_modules() -> list[ModuleType]:
    return [format_module(name) for name in FORMAT_MODULES]


def refuse_special(mode: int) -> str | None:
    """Why a path of this ``st_mode`` is not read (a folder, named pipe, device, socket), or None
    for a regular file. Decided from ``os.stat`` alone: opening a pipe or device can block forever."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a file; it is not opened"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file; it is not opened"
    return "is not a regular file (a socket or other special file); it is not opened"


def find_format(path: str | Path) -> ModuleType | None:
    """The format module that recognises ``path`` by its content, or None. Never raises."""
    try:
        path = Path(path)
        if refuse_special(os.stat(path).st_mode):  # never open a pipe or device: it can block forever
            return None
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return None
    if not head:
        return None
    for name in FORMAT_MODULES:
        try:
            module = format_module(name)
            if module.sniff(path, head):
                return module
        except Exception:  # a sniffer must never take the reader down
            log.debug("sniffer %s failed on %s", name, path, exc_info=True)
    return None
