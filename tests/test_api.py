"""The top-level scripting API: the same functions as the modules, imported lazily."""

from __future__ import annotations

import numpy as np

import napari_scanprobe as sp
from napari_scanprobe.process import denoise, flatten, superres
from tests.helpers import imported_by


def test_top_level_functions_are_the_core_functions():
    assert sp.flatten is flatten.flatten
    assert sp.denoise is denoise.denoise
    assert sp.upscale is superres.upscale


def test_scripted_pipeline_on_a_real_scan(sample):
    height = sp.read(sample("nanonis_sxm/test.sxm")).channels[0].data
    original = height.copy()
    flat = sp.flatten(height)
    smooth = sp.denoise(flat, "median", size=3)
    big = sp.upscale(smooth, factor=2, method="bicubic")
    np.testing.assert_array_equal(height, original)
    assert big.shape == (512, 512) and np.isfinite(big).all()
    assert np.nanstd(flat) < np.nanstd(height)


def test_import_stays_light():
    assert imported_by("napari_scanprobe", ("torch", "napari", "scipy", "skimage", "dask")) == []
