"""The measurements in the scripting API, on a real scan, without napari or Qt."""

from __future__ import annotations

import napari_scanprobe as sp
from napari_scanprobe import measure
from tests.helpers import imported_by


def test_top_level_names_are_the_measure_functions():
    assert sp.profile is measure.profile and sp.kymograph is measure.kymograph
    assert sp.roughness is measure.roughness and sp.step_height is measure.step_height
    assert sp.height_histogram is measure.height_histogram


def test_measure_never_imports_napari_or_qt():
    assert imported_by("napari_scanprobe.measure", ("napari", "qtpy", "PyQt6", "torch")) == []


def test_a_scripted_measurement_of_a_real_scan(sample):
    scan = sp.read(sample("nanonis_sxm/test.sxm"))
    height = scan.channels[0]
    dy, dx = height.pixel_size
    (y0, x0), (h, w) = height.offset, height.data.shape
    p = sp.profile(scan, [(y0 + h * dy / 2, x0), (y0 + h * dy / 2, x0 + (w - 1) * dx)], width=5 * dy)
    assert set(p.values) == {ch.title for ch in scan.channels if ch.data.ndim == 2}
    assert p.distance_unit == "nm" and abs(p.distance[-1] - (w - 1) * dx) <= min(dy, dx)
    r = sp.roughness(sp.flatten(height.data), pixel_size=height.pixel_size, z_unit=height.z_unit)
    assert r.units["Sa"] == "nm" and 0 < r.Sa < r.Sq < r.Sz
