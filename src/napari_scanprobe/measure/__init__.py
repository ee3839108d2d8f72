"""Measurements in physical units: line profiles and kymographs, step height, ISO 25178 areal
roughness and height histograms. Pure numpy/scipy (no napari, no Qt).

Every function takes a 2-D array (or a ``(t, y, x)`` movie for :func:`kymograph`) with its
pixel size, or a :class:`~napari_scanprobe.io.scan.Channel` (its pixel size, offset and units
are used), and returns numbers with their units.
"""

from .geometry import Image, as_measured
from .histogram import Histogram, height_histogram
from .profile import Kymograph, Profile, kymograph, kymograph_steps, profile
from .roughness import ROUGHNESS_PARAMETERS, Roughness, roughness
from .step import StepHeight, step_height

__all__ = [
    "Image",
    "as_measured",
    "Profile",
    "profile",
    "Kymograph",
    "kymograph",
    "kymograph_steps",
    "StepHeight",
    "step_height",
    "Roughness",
    "ROUGHNESS_PARAMETERS",
    "roughness",
    "Histogram",
    "height_histogram",
]
