"""Shared fixtures. torch is imported before Qt (importing it after Qt can crash)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

try:  # torch first, before anything pulls in Qt
    import torch  # noqa: F401
except ImportError:  # the reader tests do not need it
    pass

SAMPLES_DIR = Path(
    os.environ.get("SCANPROBE_SAMPLES", Path(__file__).resolve().parents[2] / "shared" / "spm-samples")
)


def _samples_dir() -> Path:
    if SAMPLES_DIR.is_dir() and (SAMPLES_DIR / "ground_truth.json").is_file():
        return SAMPLES_DIR
    reason = (
        f"real SPM sample files not found at {SAMPLES_DIR} "
        "(expected ../shared/spm-samples beside the checkout, or set SCANPROBE_SAMPLES)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The folder of real instrument files; skips (fails under CI) when it is absent."""
    return _samples_dir()


@pytest.fixture(scope="session")
def ground_truth(samples_dir) -> dict:
    """``ground_truth.json``: what Gwyddion (else AFMReader) reads from every sample file."""
    return json.loads((samples_dir / "ground_truth.json").read_text())


@pytest.fixture
def sample(samples_dir):
    """``sample("nanonis_sxm/test.sxm")`` -> the Path of a real sample file."""

    def get(relpath: str) -> Path:
        path = samples_dir / relpath
        if not path.is_file():
            pytest.fail(f"sample file {relpath} is missing from {samples_dir}")
        return path

    return get


def pytest_collection_modifyitems(config, items):
    """Every test under tests/gui needs a real viewer: mark it ``gui`` (``pytest -m "not gui"`` skips them)."""
    gui_dir = Path(__file__).resolve().parent / "gui"
    for item in items:
        if gui_dir in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.gui)
