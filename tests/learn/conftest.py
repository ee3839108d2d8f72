"""Small, fast training data: 48×48 images; one category carries a bright round blob."""

from __future__ import annotations

import numpy as np
import pytest

SIZE = 48
SMALL_NET = {"blocks": 3, "filters": 8}


def blob_image(rng: np.random.Generator, blob: bool, size: int = SIZE) -> np.ndarray:
    """Noise on a tilted plane with row offsets; with ``blob`` a Gaussian bump somewhere inside."""
    yy, xx = np.mgrid[:size, :size]
    image = rng.normal(0, 1, (size, size)) + 0.05 * xx + rng.normal(0, 0.5, (size, 1))
    if blob:
        cy, cx = rng.uniform(8, size - 8, 2)
        image += 6 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8)
    return image.astype(np.float32)


def blob_data(n: int, seed: int, size: int = SIZE) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        "plain": [blob_image(rng, False, size) for _ in range(n)],
        "blob": [blob_image(rng, True, size) for _ in range(n)],
    }


@pytest.fixture(scope="session")
def blob_model():
    """A classifier trained once for the session (a few seconds on the CPU)."""
    from napari_scanprobe.learn.train import train

    return train(
        blob_data(40, seed=1), input_size=SIZE, pixel_size=None, epochs=12, seed=0, architecture=SMALL_NET
    )
