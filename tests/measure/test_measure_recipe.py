"""The recipe's ``measure`` step and its columns in the batch summary."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_scanprobe import read
from napari_scanprobe.batch import SUMMARY_NAME, run_batch
from napari_scanprobe.measure import roughness
from napari_scanprobe.process.flatten import flatten
from napari_scanprobe.recipe import load_recipe, run_recipe

RECIPE = {
    "channels": ["Z (forward)"],
    "steps": [{"step": "flatten", "method": "plane"}, {"step": "measure", "method": "roughness"}],
}


def test_measure_step_reports_roughness_of_the_processed_image():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(64, 64)) + np.arange(64)[None, :] * 0.5
    out = run_recipe(RECIPE, image, pixel_size=2.0)
    want = roughness(flatten(image, "plane"), pixel_size=2.0)
    assert out.measurements["image: Sq"] == pytest.approx(want.Sq)
    assert out.measurements["image: Sdq [1/nm]"] == pytest.approx(want.Sdq)
    assert len(out.measurements) == 8


@pytest.mark.parametrize(
    "step, match",
    [
        ({"step": "measure", "method": "volume"}, "not a measurement"),
        ({"step": "measure", "method": "roughness", "options": {"bins": 3}}, "no options"),
        ({"step": "measure", "where": 1}, "unknown key"),
    ],
)
def test_a_bad_measure_step_is_refused_before_work(step, match):
    with pytest.raises(ValueError, match=match):
        load_recipe({"steps": [step]})


def test_batch_summary_has_a_column_per_measurement_and_keeps_them_on_resume(sample, tmp_path):
    folder = sample("nanonis_sxm/test.sxm").parent
    out = tmp_path / "out"
    for status in ("ok", "skipped (done)"):
        batch = run_batch(RECIPE, [folder], out, workers=0)
        with open(out / SUMMARY_NAME, newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert [r["status"] for r in rows] == [status, status]
        for r, result in zip(rows, batch.results):
            z = next(ch for ch in read(result.input).channels if ch.title == "Z (forward)")
            want = roughness(flatten(z.data, "plane"), pixel_size=z.pixel_size)
            assert float(r["Z (forward): Sq [nm]"]) == pytest.approx(want.Sq, rel=1e-5)
            assert float(r["Z (forward): Sku"]) == pytest.approx(want.Sku, rel=1e-5)
