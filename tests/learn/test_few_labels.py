"""Few labelled images: small training sets train for more optimiser steps."""

from __future__ import annotations

import pytest

from napari_scanprobe.learn import train as train_module
from napari_scanprobe.learn.train import DEFAULTS, train

from .conftest import SIZE, SMALL_NET, blob_data


def test_small_sets_train_for_more_steps_and_large_ones_as_before():
    per_epoch = train_module._batches_per_epoch
    small = train_module.SMALL_SET_BATCHES_PER_EPOCH
    assert per_epoch(32, 16) == small  # 20 + 20 labels, 4 + 4 validated
    assert per_epoch(127, 16) == small
    assert per_epoch(128, 16) == 8  # eight full batches: every image once, as before
    assert per_epoch(185, 16) == 12  # the 231 membranes' training part
    assert per_epoch(500, 16) == 32
    assert small * DEFAULTS["epochs"] == 800


@pytest.mark.slow
def test_training_a_small_set_takes_the_small_set_steps_per_epoch():
    steps: list[str] = []
    train(
        blob_data(5, seed=5),
        epochs=2,
        input_size=SIZE,
        pixel_size=None,
        architecture=SMALL_NET,
        threads=1,
        progress=lambda p: steps.append(p.message) if "step" in p.message else None,
    )
    assert len(steps) == 2 * train_module.SMALL_SET_BATCHES_PER_EPOCH
    assert steps[-1].startswith(f"training: epoch 2/2, step {train_module.SMALL_SET_BATCHES_PER_EPOCH}/")
