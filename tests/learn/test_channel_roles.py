"""One model, several instruments: a model trained on one vendor's height channel finds the
height of another vendor's file through the channel's role, not its name."""

from __future__ import annotations

import numpy as np
import pytest

from napari_scanprobe.io import Scan, read
from napari_scanprobe.io.scan import Channel, role_for
from napari_scanprobe.learn.data import pick_channels
from napari_scanprobe.learn.predict import predict
from napari_scanprobe.learn.train import train
from tests.learn.conftest import SIZE, SMALL_NET, blob_image


def _scan(fmt: str, named: list[tuple[str, str, str, np.ndarray]]) -> Scan:
    channels = [
        Channel(data, name, direction, unit, role=role_for(name, unit))
        for name, direction, unit, data in named
    ]
    return Scan(f"{fmt}-made-in-code", fmt, channels)


def bruker_like(rng, blob: bool) -> Scan:
    """Height (the blob or not) then Amplitude (noise), as a Nanoscope file lists them."""
    return _scan("nanoscope", [("Height", "retrace", "nm", blob_image(rng, blob)),
                               ("Amplitude", "retrace", "V", rng.normal(0, 1, (SIZE, SIZE)))])  # fmt: skip


def nanonis_like(rng, blob: bool) -> Scan:
    """Current first, carrying the *opposite* pattern, then Z forward / backward with the right one:
    a model that took the first channel, or a channel by position, would get these wrong."""
    return _scan("sxm", [("Current", "forward", "A", blob_image(rng, not blob)),
                         ("Z", "forward", "nm", blob_image(rng, blob)),
                         ("Z", "backward", "nm", blob_image(rng, blob))])  # fmt: skip


@pytest.mark.slow
def test_a_model_trained_on_bruker_height_classifies_nanonis_z(sample):
    rng = np.random.default_rng(3)
    data = {
        "plain": [bruker_like(rng, False) for _ in range(30)],
        "blob": [bruker_like(rng, True) for _ in range(30)],
    }
    model = train(
        data,
        channels=["Height (retrace)"],
        input_size=SIZE,
        pixel_size=None,
        epochs=12,
        seed=0,
        architecture=SMALL_NET,
    )
    assert model.channels == ["Height (retrace)"]

    tests = [(nanonis_like(rng, blob), "blob" if blob else "plain") for blob in [False, True] * 10]
    assert [c.title for c in pick_channels(tests[0][0], model.channels)] == ["Z (backward)"]
    right = sum(predict(model, scan).label == truth for scan, truth in tests)
    assert right >= 18, f"{right}/20 right: the Nanonis Z channel was not the one classified"

    # and on real files of other instruments: the height channel the role names
    assert [c.title for c in pick_channels(read(sample("nanonis_sxm/test.sxm")), model.channels)] == [
        "Z (backward)"
    ]
    jpk = read(sample("jpk/sample_0.jpk"))
    assert [c.title for c in pick_channels(jpk, model.channels)] == ["Height (retrace)"]
    nid = read(sample("nanosurf_nid/NanoSurf_20160301.nid"))
    assert [c.title for c in pick_channels(nid, model.channels)] == ["Z-Axis (backward)"]
    assert predict(model, sample("nanonis_sxm/test.sxm")).label in ("plain", "blob")
