"""Where torch runs: the device to use and the CPU thread count. torch is imported lazily."""

from __future__ import annotations

from typing import Any


def resolve_device(device: Any = None):
    """A ``torch.device``: ``None`` means CUDA when torch sees a GPU, else the CPU.

    Raises ValueError naming ``device`` when it is not a device or asks for CUDA without one.
    """
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for, but torch sees no CUDA device")
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
