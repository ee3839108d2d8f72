"""Helpers shared by the reader tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_scanprobe.io import ReaderError, read


def write_file(tmp_path: Path, name: str, data: bytes) -> Path:
    """``data`` written to ``tmp_path / name``."""
    path = tmp_path / name
    path.write_bytes(data)
    return path


def declined(path: Path, *words: str) -> str:
    """Reading ``path`` fails with a ReaderError naming the file and holding every one of
    ``words`` in its reason; returns the reason."""
    with pytest.raises(ReaderError) as info:
        read(path)
    assert path.name in str(info.value)
    for word in words:
        assert word in info.value.reason, info.value.reason
    return info.value.reason
