"""Nanonis spectroscopy files: recognised by content, declined with a clear reason.

* ``.dat`` -- point spectroscopy (bias / Z spectroscopy) and other 1-D records (history,
  long-term, oscilloscope data): a tab-separated text header whose first line is
  ``Experiment<TAB><kind>``, then ``[DATA]`` and a table of columns.
* ``.3ds`` -- grid spectroscopy: a text header starting ``Grid dim="<nx> x <ny>"``, ended by
  ``:HEADER_END:``, then big-endian float32 spectra, one per grid point.

Neither holds an image, so :func:`read` always raises :class:`ReaderError` saying what the
file is. The sniffers are strict enough not to claim an arbitrary ``.dat`` file.
"""

from __future__ import annotations

import re
from pathlib import Path

from .scan import ReaderError, Scan, decode

FORMAT = "nanonis-spectroscopy"
EXTENSIONS = (".dat", ".3ds")

_DAT_FIRST = re.compile(rb"Experiment\t([^\t\r\n]*)\t?\r?\n")
_GRID_DIM = re.compile(rb'Grid dim="\s*(\d+)\s*x\s*(\d+)\s*"')

#: How much of the file :func:`read` looks at to describe it.
_READ_HEAD = 65536


def _is_dat(head: bytes) -> bool:
    m = _DAT_FIRST.match(head)
    if not m:
        return False
    # A second "key<TAB>value" line, as every Nanonis .dat has ("Date<TAB>...").
    rest = head[m.end() :]
    return bool(re.match(rb"[^\t\r\n]{1,200}\t", rest)) or rest.startswith(b"[DATA]")


def _is_3ds(head: bytes) -> bool:
    return bool(_GRID_DIM.match(head))


def sniff(path: Path, head: bytes) -> bool:
    try:
        return _is_dat(head) or _is_3ds(head)
    except Exception:
        return False


def _describe_dat(head: bytes) -> str:
    m = _DAT_FIRST.match(head)
    kind = decode(m.group(1)).strip() if m else ""
    text = decode(head)
    columns = ""
    idx = text.find("[DATA]")
    if idx >= 0:
        lines = text[idx:].splitlines()
        if len(lines) > 1:
            names = [c for c in lines[1].split("\t") if c.strip()]
            if names:
                columns = f"; {len(names)} columns: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}"
    if "spectroscopy" in kind.lower() or not kind:
        return f"Nanonis point spectroscopy, not an image (experiment {kind or 'unknown'!r}{columns})"
    what = kind if kind.lower().endswith("data") else f"{kind} data"
    return f"Nanonis {what} (.dat), not an image{f' ({columns[2:]})' if columns else ''}"


def _describe_3ds(head: bytes) -> str:
    text = decode(head.split(b":HEADER_END:")[0])
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip('"')
    parts = []
    if "Grid dim" in fields:
        parts.append(f"{fields['Grid dim']} points")
    if "Points" in fields:
        sweep = fields.get("Sweep Signal", "sweep")
        parts.append(f"{fields['Points']} {sweep} values")
    if "Channels" in fields:
        parts.append(f"channels {fields['Channels'].replace(';', ', ')}")
    detail = f" ({'; '.join(parts)})" if parts else ""
    return f"Nanonis grid spectroscopy (.3ds), not an image{detail}"


def read(path: Path) -> Scan:
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(_READ_HEAD)
    if _is_3ds(head):
        raise ReaderError(path, _describe_3ds(head))
    if _is_dat(head):
        raise ReaderError(path, _describe_dat(head))
    raise ReaderError(path, "not a Nanonis spectroscopy file")
