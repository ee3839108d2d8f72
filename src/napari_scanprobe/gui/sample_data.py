"""npe2 sample data: the synthetic AFM scan, and synthetic HS-AFM membranes for the classifier."""

from __future__ import annotations

import numpy as np

from ..learn.synthetic import CATEGORIES, DEFAULT_PIXEL_SIZE_NM, membrane_image
from ..synthetic import synthetic_scan
from .layers import contrast_limits, scan_to_layers

#: Images per category in the ``knob_membranes`` sample, and the seed that makes them.
KNOB_SAMPLES_PER_CATEGORY = 4
KNOB_SAMPLES_SEED = 2024


def synthetic_afm_scan() -> list[tuple]:
    return scan_to_layers(synthetic_scan())


def knob_membranes() -> list[tuple]:
    """4 healthy + 4 malaria-infected synthetic HS-AFM membrane images (128 px = 1 µm), one
    image layer each, named ``"healthy 1"`` ... ``"infected 4"``: data for a classification demo
    (infected membranes carry knobs, see :mod:`napari_scanprobe.learn.synthetic`)."""
    rng = np.random.default_rng(KNOB_SAMPLES_SEED)
    px = DEFAULT_PIXEL_SIZE_NM
    layers = []
    for category in CATEGORIES:
        for i in range(1, KNOB_SAMPLES_PER_CATEGORY + 1):
            height, _ = membrane_image(rng, category == "infected", 128, px)
            metadata = {
                "channel": "Height",
                "z_unit": "nm",
                "xy_unit": "nm",
                "pixel_size": [px, px],
                "offset": [0.0, 0.0],
                "category": category,
                "processing": [],
                "source": "synthetic",
            }
            kwargs = {
                "name": f"{category} {i}",
                "scale": [px, px],
                "translate": [0.0, 0.0],
                "units": ["nm", "nm"],
                "axis_labels": ["y", "x"],
                "metadata": metadata,
                "colormap": "afmhot",
                "contrast_limits": contrast_limits(height),
            }
            layers.append((height, kwargs, "image"))
    return layers
