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
    image layer each, named ``"healthy 1"`` ... ``"infected 4"``, laid out side by side (healthy
    in the top row, infected below, 100 nm apart): data for a classification demo (infected
    membranes carry knobs, see :mod:`napari_scanprobe.learn.synthetic`). Each infected image
    also gets a hidden labels layer ``"infected i | knobs"``: the true knob pixels, to compare
    a class activation map with. The masks come first, below the images, so that the sample
    opens with an image selected, not a labels layer one click would paint on (to see a mask,
    tick it and drag it above its image)."""
    rng = np.random.default_rng(KNOB_SAMPLES_SEED)
    px = DEFAULT_PIXEL_SIZE_NM
    side, gap = 128 * px, 100.0
    images, masks = [], []
    for row, category in enumerate(CATEGORIES):
        for i in range(1, KNOB_SAMPLES_PER_CATEGORY + 1):
            height, knobs = membrane_image(rng, category == "infected", 128, px)
            offset = [row * (side + gap), (i - 1) * (side + gap)]
            metadata = {
                "channel": "Height",
                "z_unit": "nm",
                "xy_unit": "nm",
                "pixel_size": [px, px],
                "offset": offset,
                "category": category,
                "processing": [],
                "source": "synthetic",
            }
            geometry = {
                "scale": [px, px],
                "translate": offset,
                "units": ["nm", "nm"],
                "axis_labels": ["y", "x"],
            }
            name = f"{category} {i}"
            kwargs = {
                "name": name,
                **geometry,
                "metadata": metadata,
                "colormap": "afmhot",
                "contrast_limits": contrast_limits(height),
            }
            images.append((height, kwargs, "image"))
            if knobs.any():
                masks.append(
                    (
                        knobs.astype(np.uint8),
                        {"name": f"{name} | knobs", **geometry, "visible": False, "opacity": 0.5},
                        "labels",
                    )
                )
    return masks + images
