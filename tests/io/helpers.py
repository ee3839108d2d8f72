"""Helpers shared by the reader tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, Scan, find_format, read


def write_file(tmp_path: Path, name: str, data: bytes) -> Path:
    """``data`` written to ``tmp_path / name``."""
    path = tmp_path / name
    path.write_bytes(data)
    return path


def noise(size: int, seed: int) -> bytes:
    """``size`` random bytes (reproducible from ``seed``)."""
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def claims(module: ModuleType, path: Path) -> bool:
    """Whether the format ``module`` claims the file ``path`` from its first 4 KiB."""
    with open(path, "rb") as fh:
        return module.sniff(path, fh.read(4096))


def found_by_content(source: Path, tmp_path: Path, module: ModuleType, name: str = "renamed.bin") -> Path:
    """``source`` copied to ``tmp_path / name``: the format ``module`` is still found (from the
    content, not the extension); returns the copy."""
    copy = tmp_path / name
    shutil.copyfile(source, copy)
    assert find_format(copy) is module
    return copy


def declined(path: Path, *words: str, module: ModuleType | None = None, match: str | None = None) -> str:
    """Reading ``path`` fails with a ReaderError naming the file and holding every one of
    ``words`` in its reason (and the regular expression ``match`` in its message), through
    ``module.read`` too when given; returns the reason."""
    for reader in (read,) if module is None else (module.read, read):
        with pytest.raises(ReaderError, match=match) as info:
            reader(path)
        assert path.name in str(info.value)
        for word in words:
            assert word in info.value.reason, info.value.reason
    return info.value.reason


def read_as(path: Path, format_name: str) -> Scan:
    """``read(path)``, checked to come from the ``format_name`` reader and to name the file."""
    scan = read(path)
    assert scan.format == format_name and scan.path == str(path)
    return scan
