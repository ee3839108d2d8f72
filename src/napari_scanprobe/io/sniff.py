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


def find_format(path: str | Path) -> ModuleType | None:
    """The format module that recognises ``path`` by its content, or None. Never raises."""
    try:
        path = Path(path)
        with open(path, "rb") as fh:  # a folder raises IsADirectoryError: an OSError
            head = fh.read(HEAD_BYTES)
    except OSError:
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
