"""The issue's acceptance test: what the Preprocess widget did in a real viewer, exported as a
recipe and replayed by ``scanprobe batch`` on the real files, gives the same arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_scanprobe import read
from napari_scanprobe.cli import main
from napari_scanprobe.recipe import load_recipe

from .widget_helpers import open_in_file_order, run_and_wait

PLUGIN = "napari-scanprobe"
FILES = ("nanonis_sxm/test.sxm", "nanonis_sxm/A151216.123306-02602.sxm")


def process_in_the_widget(qtbot, viewer, widget, layer):
    """Flatten (auto, threshold changed) then denoise (median 5) ``layer`` through the widget."""
    widget.input.value = layer
    flatten = widget.panels["flatten"]
    flatten.method.value = "auto"
    flatten.option_box["threshold"].value = 2.5
    flat = run_and_wait(qtbot, viewer, flatten)
    widget.input.value = flat
    denoise = widget.panels["denoise"]
    denoise.method.value = "median"
    denoise.option_box["size"].value = 5
    return run_and_wait(qtbot, viewer, denoise)


@pytest.mark.slow
def test_a_recipe_exported_from_the_widget_replays_the_gui_on_real_files(
    make_napari_viewer, qtbot, sample, tmp_path
):
    viewer = make_napari_viewer()
    paths = [sample(name) for name in FILES]
    opened = {path: viewer.open(str(path), plugin=PLUGIN) for path in paths}
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Preprocess")
    gui = {}
    for path, layers in opened.items():
        z_forward = next(layer for layer in layers if layer.name.endswith("| Z (forward)"))
        gui[path] = process_in_the_widget(qtbot, viewer, widget, z_forward)
    first = gui[paths[0]]
    assert [s["step"] for s in first.metadata["processing"]] == ["flatten", "denoise"]

    viewer.layers.selection.active = first  # the selected layer's history is exported
    widget.recipe_format.value = ".tif"
    recipe_path = widget.export_recipe(tmp_path / "from_gui.yaml")
    assert recipe_path == tmp_path / "from_gui.yaml" and recipe_path.is_file()
    recipe = load_recipe(recipe_path)
    assert recipe.channels == ["Z (forward)"]
    assert [(s["step"], s.get("method")) for s in recipe.steps] == [
        ("flatten", "auto"),
        ("denoise", "median"),
        ("write", None),
    ]
    assert recipe.steps[0]["options"]["threshold"] == 2.5 and recipe.steps[1]["options"] == {"size": 5}

    out = tmp_path / "batch"
    assert main(["batch", str(recipe_path), *map(str, paths), "-o", str(out), "--workers", "1"]) == 0
    for path in paths:
        written = out / f"{path.name} Z (forward).tif"
        back = read(written).channels[0]
        layer = gui[path]
        np.testing.assert_array_equal(np.asarray(back.data), np.asarray(layer.data, dtype=np.float32))
        np.testing.assert_allclose(back.pixel_size, layer.scale[-2:])
        np.testing.assert_allclose(back.offset, layer.translate[-2:])


def test_export_without_a_replayable_history_says_why(
    make_napari_viewer, qtbot, sample, tmp_path, monkeypatch
):
    viewer = make_napari_viewer()
    layers = open_in_file_order(viewer, sample("nanonis_sxm/test.sxm"))
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Preprocess")
    errors = []
    monkeypatch.setattr("napari_scanprobe.gui.preprocess_widget.show_error", errors.append)

    # a raw layer: the recipe only converts (its channel, written as .gsf)
    viewer.layers.selection.active = layers[1]
    path = widget.export_recipe(tmp_path / "raw.json")
    recipe = load_recipe(path)
    assert recipe.channels == [layers[1].metadata["channel"] + f" ({layers[1].metadata['direction']})"]
    assert [s["step"] for s in recipe.steps] == ["write"] and recipe.step("write")["format"] == ".gsf"

    # a Noise2Noise result names a layer of this session: it cannot be replayed on other files
    n2n = viewer.add_image(
        np.zeros((8, 8)),
        name="n2n",
        metadata={
            "channel": "Z",
            "direction": "forward",
            "processing": [
                {
                    "step": "denoise",
                    "method": "n2n",
                    "options": {"pair": "test | Z (backward)"},
                    "version": "0.1.0",
                }
            ],
        },
    )
    viewer.layers.selection.active = n2n
    assert widget.export_recipe(tmp_path / "n2n.yaml") is None
    assert not (tmp_path / "n2n.yaml").exists()
    assert len(errors) == 1 and "pair" in errors[0] and "n2n" in errors[0]


def test_the_export_button_asks_for_a_file(make_napari_viewer, sample, tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    viewer.open(str(sample("nanonis_sxm/test.sxm")), plugin=PLUGIN)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Preprocess")
    target = tmp_path / "picked"  # no extension given: .yaml is added
    monkeypatch.setattr("qtpy.QtWidgets.QFileDialog.getSaveFileName", lambda *a, **k: (str(target), ""))
    widget.export_button.changed.emit(True)
    assert Path(str(target) + ".yaml").is_file()
    monkeypatch.setattr("qtpy.QtWidgets.QFileDialog.getSaveFileName", lambda *a, **k: ("", ""))  # cancelled
    widget.export_button.changed.emit(True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["picked.yaml"]


@pytest.mark.parametrize("write", [".gwy", {"format": ".gsf", "name": "{stem} {channel}"}])
def test_layer_recipe_for_other_widgets(make_napari_viewer, sample, tmp_path, write):
    from napari_scanprobe.gui.recipe_export import export_layer_recipe

    viewer = make_napari_viewer()
    layers = open_in_file_order(viewer, sample("nanonis_sxm/test.sxm"))
    path = export_layer_recipe(layers[0], tmp_path / "r.yml", write=write)
    recipe = load_recipe(path)
    assert recipe.channels == ["Z (forward)"]
    assert recipe.step("write")["format"] == (write if isinstance(write, str) else write["format"])
