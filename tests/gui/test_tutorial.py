"""The tutorial's session (docs/make_tutorial_screenshots.py) run into a temporary folder, and
its pixels checked: three real scans of different sizes, the chosen scan's channels filling
the canvas with labels, a drifting movie visible at every frame, docks that fit 1280x800."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_scanprobe.gui.browser_widget import scans_in
from napari_scanprobe.gui.compat import set_tile_label
from napari_scanprobe.gui.layers import LayerMeta

ROOT = Path(__file__).resolve().parents[2]


def _tutorial():
    spec = importlib.util.spec_from_file_location(
        "make_tutorial_screenshots", ROOT / "docs" / "make_tutorial_screenshots.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _canvas(viewer) -> np.ndarray:
    return np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].astype(float)


@pytest.mark.slow
def test_tutorial_session_pixels(make_napari_viewer, samples_dir, tmp_path):
    tutorial = _tutorial()
    viewer = make_napari_viewer(show=True)
    result = tutorial.session(tmp_path, samples_dir, viewer=viewer)
    for name, path in result["shots"].items():
        image = iio.imread(path)
        assert image.shape[1] == 1280 and image.shape[0] <= 800, (name, image.shape)
    assert result["window_size"] == (1280, 800)

    # three real scans of different sizes (5 µm, 3 µm, 0.33 µm wide)
    browser = result["browser"]
    groups = scans_in(viewer)
    widths = sorted(
        float(layers[0].data.shape[-1] * layers[0].scale[-1])
        for src, layers in groups.items()
        if not src.endswith(".asd")
    )
    assert len(widths) == 3 and widths[-1] > 10 * widths[0]

    # the chosen scan's channels side by side fill the canvas; every tile labelled
    result["movie"].visible = False
    sxm = str(samples_dir / tutorial.SCANS[0])
    browser.show_channels(sxm)
    tiles = browser.tiles()
    assert [LayerMeta(t).source for t in tiles] == [sxm] * len(tiles) and len(tiles) >= 4
    assert {layer.name for layer in viewer.layers if layer.visible} == {t.name for t in tiles}
    shot = _canvas(viewer)
    lit = shot.max(axis=2) > 12  # the canvas is black where nothing is drawn
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    # dark heights are drawn black too, so judge the area the drawn tiles span, not the lit pixels
    span_y, span_x = (rows[-1] - rows[0]) / lit.shape[0], (cols[-1] - cols[0]) / lit.shape[1]
    assert span_y * span_x > 0.6, f"the tiles span only {span_y * span_x:.0%} of the canvas"
    assert max(span_y, span_x) > 0.9
    labels = [t._overlays["scanprobe_tile_label"] for t in tiles]
    assert all(label.visible for label in labels)
    for tile, label in zip(tiles, labels, strict=True):  # channel, direction and unit
        assert label.text.startswith(f"{LayerMeta(tile).title} · {LayerMeta(tile).z_unit}"), label.text
    for t in tiles:
        set_tile_label(t, None)
    unlabelled = _canvas(viewer)
    assert (np.abs(shot - unlabelled).max(axis=2) > 40).sum() > 200 * len(tiles), "no label drawn"

    # the same channel of every scan: one tile per scan with a height, each drawn from (0, 0)
    browser.compare()
    compared = browser.tiles()
    scans = {
        sxm,
        str(samples_dir / tutorial.SCANS[2]),
        str(samples_dir / tutorial.MOVIE),
    }  # the .mdt has no height
    assert {LayerMeta(t).source for t in compared} == scans and len(compared) == 3
    assert compared[0].name.endswith("flatten plane"), "a scan's last (processed) height is compared"
    shot = _canvas(viewer)
    assert (shot.max(axis=2) > 12).mean() > 0.3, "the compared scans fill their tiles"
    translate = [tuple(t.translate) for t in compared]
    browser.view_box.setCurrentIndex(0)  # stacked again: the drawing shift is undone, the offsets kept
    assert [tuple(t.translate) for t in compared] == translate
    assert all(np.allclose(t.affine.affine_matrix, np.eye(t.ndim + 1)) for t in compared)

    # a drifting movie is visible at frame 15 and at frame 31 (its contrast follows the frame)
    for layer in viewer.layers:
        layer.visible = False
    movie = result["movie"]
    movie.visible = True
    viewer.reset_view(layers=[movie])
    for frame in (15, 31):
        viewer.dims.set_current_step(0, frame)
        shot = _canvas(viewer)
        h, w = shot.shape[:2]
        grey = shot[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].mean(axis=2)
        assert (grey < 10).mean() < 0.5, f"frame {frame} is black"
        assert (grey > 245).mean() < 0.5, f"frame {frame} is white"
        assert grey.std() > 10, f"frame {frame} shows no contrast"
    assert result["movie_limits"][15] != result["movie_limits"][31]

    # every dock fits a laptop's dock area
    assert all(width <= 400 for width in result["min_widths"].values()), result["min_widths"]
    assert set(result["min_widths"]) == {"Scan browser", "Preprocess", "Measure", "Classifier"}
    # the measured profile crosses the flattened height in nm; its roughness is a real number in nm
    profile, roughness = result["profile"], result["roughness"]
    assert profile.distance_unit == "nm" and profile.distance[-1] > 0
    assert roughness.units["Sq"] == "nm" and 0 < roughness.Sa <= roughness.Sq
