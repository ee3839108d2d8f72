"""Where torch runs: the device to use and the CPU thread count. torch is imported lazily."""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Any

log = logging.getLogger(__name__)


def keep_triton_out_beside_another_llvm() -> bool:
    """Keep torch from loading triton into a process that already holds another LLVM; True when
    it did so (triton then counts as not installed in this process).

    triton (installed with torch's CUDA builds on Linux) carries its own LLVM. Loaded into a
    process where Mesa's OpenGL has already loaded ``libLLVM`` -- napari's canvas on Intel or AMD
    graphics, software rendering, a remote desktop -- its start-up code runs against the other
    LLVM's globals and the process dies with a segmentation fault. torch imports triton when
    the first optimiser is made (``torch._dynamo``), so training inside napari crashed. Marking
    triton as absent (``sys.modules["triton"] = None``: importing it raises ImportError) costs
    only torch.compile's GPU kernels, which napari-scanprobe does not use.
    """
    if sys.platform != "linux" or "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return False  # the cheap checks first: CPU builds of torch come without triton
    try:
        with open("/proc/self/maps", encoding="latin-1") as fh:
            if "libLLVM" not in fh.read():
                return False
    except OSError:
        return False
    # None in sys.modules makes an import fail (documented); typeshed allows only modules there
    sys.modules["triton"] = None  # type: ignore[assignment]
    log.warning(
        "triton left unloaded: this process already holds another LLVM (OpenGL), and loading "
        "triton's would crash it; torch runs without torch.compile's GPU kernels"
    )
    return True


def resolve_device(device: Any = None):
    """A ``torch.device``: ``None`` (or ``""``) means CUDA when torch sees a GPU, else the CPU.

    Every torch job starts here, so this is also where triton is kept out of a process that
    holds another LLVM (:func:`keep_triton_out_beside_another_llvm`), before torch loads it.
    Raises ValueError naming ``device`` when it is not a device torch can use here.
    """
    keep_triton_out_beside_another_llvm()
    import torch

    if device is None or device == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"device: {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but torch sees no CUDA device")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device: {device!r} is not supported; use 'cpu' or 'cuda'")
    return dev


class torch_threads:
    """Set torch's CPU thread count for the duration of a ``with`` block (None: leave it)."""

    def __init__(self, threads: int | None):
        self.threads, self.saved = threads, None

    def __enter__(self):
        if self.threads is not None:
            import torch

            self.saved = torch.get_num_threads()
            torch.set_num_threads(int(self.threads))
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import torch

            torch.set_num_threads(self.saved)
