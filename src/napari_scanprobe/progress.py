"""Long work (training, batch runs) is a generator that yields :class:`Progress` and returns its
result: :func:`run_to_end` drives one to completion for scripts, the napari widgets wrap the same
generator in a ``thread_worker`` (quit = cancel at the next yield), the CLI shows a progress bar."""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Progress:
    """One step of long work: ``step`` of ``total``, the current loss, a short message."""

    step: int
    total: int
    loss: float | None = None
    message: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


def run_to_end(
    steps: Generator[Progress, None, Any], progress: Callable[[Progress], Any] | None = None
) -> Any:
    """Drive a long-work generator to its end and return its result; ``progress`` sees every step."""
    while True:
        try:
            update = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(update)
