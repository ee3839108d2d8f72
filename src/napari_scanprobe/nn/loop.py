"""The one training loop: every network of napari-scanprobe trains through :func:`fit`.

The caller says what one optimiser step computes (``step() -> loss tensor``, drawing its own
batch from its own seeded generator) and, for runs of several epochs, what the end of an epoch
measures (``end_epoch(epoch, learning_rate) -> EpochEnd``). The loop owns the rest, the same for the classifier,
Noise2Void/Noise2Noise and the upscaler:

* the optimiser (Adam or AdamW) and the learning-rate schedule: :class:`OneCycle` (stepped every
  step over the whole run) or :class:`Plateau` (halved when the monitored value stalls);
* the stopping rule (:class:`Stopping`): ``patience`` epochs without improvement of the monitored
  value, never before ``min_epochs``; the best epoch's weights are kept;
* progress: one :class:`~napari_scanprobe.process.common.Progress` per step with the smoothed loss
  and the time left in its message (``extra["seconds_left"]``), one per epoch end;
* cancel: ``should_stop()`` is polled after every step; the epoch then ends and the best weights
  so far are kept.

torch is imported inside :func:`fit`, so importing this module does not import torch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from ..progress import Progress

#: weight of the newest step in the smoothed loss that progress shows
SMOOTHING = 0.05


@dataclass(frozen=True)
class OneCycle:
    """The learning rate rises from ``lr / div_factor`` to ``lr`` over the first ``pct_start`` of
    the steps, then anneals (cosine) to ``lr / div_factor / final_div_factor`` (torch's OneCycleLR)."""

    pct_start: float = 0.15
    div_factor: float = 25.0
    final_div_factor: float = 1e4


@dataclass(frozen=True)
class Plateau:
    """The learning rate times ``factor`` when the monitored value has not improved for
    ``patience`` epochs (torch's ReduceLROnPlateau, stepped at every epoch end)."""

    factor: float = 0.5
    patience: int = 1


@dataclass(frozen=True)
class Stopping:
    """Stop after ``patience`` epochs (None: never) without the monitored value improving by
    ``min_delta``, but not before ``min_epochs`` epochs."""

    patience: int | None = None
    min_epochs: int = 1
    min_delta: float = 1e-4


@dataclass
class EpochEnd:
    """What ``end_epoch`` measured: the value to minimise, what progress carries in ``extra``, and
    anything the caller wants back from the best epoch (``keep``, e.g. its validation output)."""

    monitor: float
    extra: dict = field(default_factory=dict)
    keep: Any = None


@dataclass
class Fitted:
    """How a run ended. ``best_state`` (numpy copies of the float tensors) and ``best_keep`` are
    the best epoch's, or None when no epoch improved (or no ``end_epoch`` was given)."""

    steps: int
    epochs: int
    loss: float | None  # the smoothed training loss at the end
    last_loss: float | None = None  # the last step's loss
    best_epoch: int = 0
    best_state: dict | None = None
    best_keep: Any = None
    stopped_by_user: bool = False


def state_of(net) -> dict:
    """Numpy copies of a network's floating-point parameters and buffers."""
    return {k: v.detach().cpu().numpy().copy() for k, v in net.state_dict().items() if v.is_floating_point()}


def time_left(seconds: float) -> str:
    """``"about 1 min 20 s left"``: the words progress uses."""
    s = max(0, round(seconds))
    if s >= 60:
        return f"about {s // 60} min {s % 60:02d} s left"
    return f"about {s} s left"


def fit(
    net,
    step: Callable[[], Any],
    *,
    learning_rate: float,
    steps_per_epoch: int,
    epochs: int = 1,
    schedule: OneCycle | Plateau = OneCycle(),
    optimiser: str = "adam",
    weight_decay: float = 0.0,
    end_epoch: Callable[[int, float], EpochEnd] | None = None,
    stopping: Stopping = Stopping(),
    should_stop: Callable[[], bool] | None = None,
    label: str = "training",
    extra: dict | None = None,
    offset: int = 0,
    total: int | None = None,
) -> Generator[Progress, None, Fitted]:
    """Train ``net`` in place for ``epochs`` × ``steps_per_epoch`` optimiser steps; yields Progress.

    ``step()`` returns the loss of one batch (a scalar tensor), or None to skip the step (no
    optimiser or schedule step). The network is in train mode when ``step`` is called; ``step``
    may switch it (batch norm on a single image) -- the loop switches it back. ``end_epoch(epoch, learning_rate)``
    runs after each epoch (the network is left to it: it may evaluate) and feeds the schedule
    (:class:`Plateau`) and the stopping rule. ``offset``/``total``: this run's steps inside a
    longer job (progress counts from ``offset`` to ``total``); ``extra`` goes into every update.
    """
    import torch

    opt: Any
    sched: Any
    if optimiser == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    elif optimiser == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimiser: {optimiser!r} is not 'adam' or 'adamw'")
    n_steps = steps_per_epoch * epochs
    if isinstance(schedule, OneCycle):
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=learning_rate,
            total_steps=max(1, n_steps),
            pct_start=schedule.pct_start,
            div_factor=schedule.div_factor,
            final_div_factor=schedule.final_div_factor,
        )
    else:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=schedule.factor, patience=schedule.patience
        )
    total = total or offset + n_steps
    extra = dict(extra or {})
    result = Fitted(steps=0, epochs=0, loss=None)
    best, bad_epochs = math.inf, 0
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        where = f"epoch {epoch}/{epochs}, " if epochs > 1 else ""
        done_in_epoch = 0
        for b in range(1, steps_per_epoch + 1):
            net.train()
            loss = step()
            if loss is not None:
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if isinstance(schedule, OneCycle):
                    sched.step()
                value = result.last_loss = float(loss.detach())
                result.loss = (
                    value if result.loss is None else (1 - SMOOTHING) * result.loss + SMOOTHING * value
                )
            result.steps += 1
            done_in_epoch += 1
            done = offset + result.steps
            left = (time.perf_counter() - started) / result.steps * (total - done)
            yield Progress(
                done,
                total,
                result.loss,
                f"{label}: {where}step {b}/{steps_per_epoch}, {time_left(left)}",
                {**extra, "seconds_left": left},
            )
            if should_stop is not None and should_stop():
                result.stopped_by_user = True
                break
        if result.stopped_by_user and done_in_epoch == 0:
            break
        result.epochs = epoch
        if end_epoch is not None:
            end = end_epoch(epoch, opt.param_groups[0]["lr"])
            if end.monitor < best - stopping.min_delta:
                best, bad_epochs = end.monitor, 0
                result.best_epoch, result.best_state, result.best_keep = epoch, state_of(net), end.keep
            else:
                bad_epochs += 1
            if isinstance(schedule, Plateau):
                sched.step(end.monitor)
            yield Progress(
                offset + result.steps, total, result.loss, f"{label}: {where}done", {**extra, **end.extra}
            )
            if (
                stopping.patience is not None
                and epoch >= stopping.min_epochs
                and bad_epochs >= stopping.patience
            ):
                break
        if result.stopped_by_user:
            break
    net.eval()
    return result
