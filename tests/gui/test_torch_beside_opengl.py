"""torch jobs in a napari process: triton (torch's CUDA builds on Linux ship it) carries its own
LLVM and crashed the process with a segmentation fault when loaded after Mesa's OpenGL had loaded
libLLVM (reproduced with torch 2.13.0's CUDA build: a napari viewer, then the first optimiser).
``resolve_device`` -- where every torch job starts -- keeps it out. CI's torch is the CPU build
without triton, so a stand-in ``triton`` package plays it here."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_scanprobe.nn.device import keep_triton_out_beside_another_llvm, resolve_device


@pytest.fixture
def stand_in_triton(tmp_path, monkeypatch):
    """An importable ``triton`` whose import fails the test; removed from sys.modules afterwards."""
    package = tmp_path / "stand-in" / "triton"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise AssertionError('triton was imported beside another LLVM')\n")
    monkeypatch.syspath_prepend(str(package.parent))
    had = sys.modules.pop("triton", "absent")
    yield package.parent
    sys.modules.pop("triton", None)
    if had != "absent":
        sys.modules["triton"] = had


def _llvm_loaded() -> bool:
    with open("/proc/self/maps", encoding="latin-1") as fh:
        return "libLLVM" in fh.read()


@pytest.mark.skipif(sys.platform != "linux", reason="the LLVM clash is a Linux (Mesa) one")
def test_triton_kept_out_once_opengl_loaded_llvm(make_napari_viewer, stand_in_triton, caplog):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8), np.float32))
    viewer.screenshot()  # the canvas draws: Mesa's GL driver (and its libLLVM) are loaded
    if not _llvm_loaded():
        pytest.skip("this OpenGL driver loads no libLLVM: there is nothing to clash with")
    with caplog.at_level(logging.WARNING, logger="napari_scanprobe.nn.device"):
        device = resolve_device("cpu")
    assert device.type == "cpu"
    assert sys.modules["triton"] is None, "torch must find triton absent"
    assert "triton left unloaded" in caplog.text
    with pytest.raises(ImportError):
        import triton  # noqa: F401
    assert keep_triton_out_beside_another_llvm() is False, "already decided: nothing more to do"

    import torch  # the optimiser is what loads torch._dynamo, which imports triton

    net = torch.nn.Linear(3, 2)
    optimiser = torch.optim.AdamW(net.parameters())
    net(torch.ones(2, 3)).sum().backward()
    optimiser.step()


def test_triton_left_alone_without_another_llvm(stand_in_triton):
    """A process without OpenGL (a script, the CLI, a batch worker) keeps triton importable."""
    code = textwrap.dedent(
        """
        import sys
        from napari_scanprobe.nn.device import keep_triton_out_beside_another_llvm
        print(keep_triton_out_beside_another_llvm(), "triton" in sys.modules)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(stand_in_triton)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]
