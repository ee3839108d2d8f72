"""The classifier dock widget in a real viewer: train from layers, stop, predict, CAM, bad input.

The data: small synthetic height images (64×64 px, 4 nm/px) with row offsets, tilt and noise;
the "blob" category also carries one bright dome somewhere. The network is tiny (2 blocks of
8 filters), so every training takes a few seconds on a busy CPU.
"""

from __future__ import annotations

import numpy as np
import pytest

PLUGIN = "napari-scanprobe"
SIZE = 64
PIXEL_NM = 4.0
CATEGORIES = ("blob", "flat")


def blob_image(rng: np.random.Generator, blob: bool) -> np.ndarray:
    y, x = np.mgrid[:SIZE, :SIZE].astype(float)
    image = (
        rng.normal(0, 0.3, (SIZE, SIZE)) + rng.normal(0, 0.5, (SIZE, 1)) + rng.uniform(-0.05, 0.05) * x + 10.0
    )
    if blob:
        cy, cx = rng.uniform(14, SIZE - 14, 2)
        image += 3.0 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 4.0**2))
    return image.astype(np.float32)


def layer_metadata(source: str, channel: str = "Height") -> dict:
    return {
        "channel": channel,
        "direction": None,
        "source": source,
        "xy_unit": "nm",
        "pixel_size": [PIXEL_NM, PIXEL_NM],
        "z_unit": "nm",
        "processing": [],
    }


def add_blob_layers(viewer, per_category: int = 12, seed: int = 1, phase: bool = False) -> dict[str, list]:
    """``per_category`` layers of each category, each from its own (pretend) file."""
    rng = np.random.default_rng(seed)
    out = {}
    for category in CATEGORIES:
        out[category] = []
        for i in range(per_category):
            image = blob_image(rng, category == "blob")
            source = f"/data/{category}_{i}.sxm"
            out[category].append(
                viewer.add_image(
                    image,
                    name=f"{category} {i} | Height",
                    scale=(PIXEL_NM, PIXEL_NM),
                    units="nm",
                    metadata=layer_metadata(source),
                )
            )
            if phase:
                viewer.add_image(
                    -image,
                    name=f"{category} {i} | Phase",
                    scale=(PIXEL_NM, PIXEL_NM),
                    units="nm",
                    metadata=layer_metadata(source, "Phase"),
                )
    return out


def small_options(panel, epochs: int = 12) -> None:
    panel.epochs.setValue(epochs)
    panel.input_size.setValue(SIZE)
    panel.blocks.setValue(2)
    panel.filters.setValue(8)
    panel.validation.setValue(0.25)
    panel.patience.setValue(epochs)
    panel.batch_size.setValue(8)
    panel.threads.setValue(1)  # one torch thread: much faster than two on a busy 2-core machine


def assign(panel, layers_by_category: dict[str, list]) -> None:
    """Name the categories and assign every layer through the widget's own controls."""
    for row, name in enumerate(layers_by_category):
        if row >= panel.categories.count():
            panel.add_category_button.click()
        panel.categories.item(row).setText(name)  # as if the user renamed it
    for name, layers in layers_by_category.items():
        for layer in layers:
            panel.category_combo(layer).setCurrentText(name)


@pytest.fixture
def dock(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Classifier")
    return viewer, widget


def train_and_wait(qtbot, panel, timeout: int = 60_000):
    panel.train_button.click()
    assert panel.worker is not None, panel.status.text()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=timeout)


def last_error() -> str:
    from napari.utils.notifications import notification_manager

    return str(notification_manager.records[-1].message) if notification_manager.records else ""


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small model trained by the core on the same kind of data, saved to a file."""
    from napari_scanprobe.learn.data import Example
    from napari_scanprobe.learn.train import train

    rng = np.random.default_rng(7)
    data = {
        c: [
            Example([blob_image(rng, c == "blob")], ["Height"], (PIXEL_NM, PIXEL_NM), f"{c} {i}")
            for i in range(12)
        ]
        for c in CATEGORIES
    }
    model = train(
        data,
        ["Height"],
        input_size=SIZE,
        architecture={"blocks": 2, "filters": 8},
        epochs=12,
        patience=12,
        batch_size=8,
        validation=0.25,
        threads=1,
    )
    assert model.metrics["accuracy"] >= 0.8
    return model.save(tmp_path_factory.mktemp("model") / "blobs")


@pytest.mark.slow
def test_train_from_layers_live_curves_metrics_and_save(qtbot, dock, tmp_path):
    from napari_scanprobe.learn.modelfile import load_model

    viewer, widget = dock
    panel = widget.train
    layers = add_blob_layers(viewer)
    assign(panel, layers)
    assert panel.category_names() == list(CATEGORIES)
    assert {k: len(v) for k, v in panel.assigned().items()} == {"blob": 12, "flat": 12}
    assert panel.layer_channels() == ["Height"]
    small_options(panel)
    panel.baseline.setChecked(True)
    train_and_wait(qtbot, panel)

    model = panel.model
    assert model is not None, panel.status.text()
    assert model.categories == list(CATEGORIES) and model.channels == ["Height"]
    assert model.pixel_size == pytest.approx(PIXEL_NM)
    # the curves got one point per epoch, the values of the history
    history = model.history
    assert 1 <= len(history) <= 12
    for plot, key in ((panel.loss_plot, "loss"), (panel.accuracy_plot, "accuracy")):
        assert plot.points("train") == [(h["epoch"], pytest.approx(h[f"train_{key}"])) for h in history]
        assert plot.points("validation") == [(h["epoch"], pytest.approx(h[f"val_{key}"])) for h in history]
    # and drawn: both series' colours appear in the rendered plot
    image = panel.loss_plot.grab().toImage()
    drawn = {image.pixelColor(x, y).name() for x in range(image.width()) for y in range(image.height())}
    assert {panel.loss_plot.colors["train"], panel.loss_plot.colors["validation"]} <= drawn
    # the metrics shown beat chance clearly
    assert model.metrics["accuracy"] >= 0.8, model.metrics
    text = panel.metrics_label.text()
    assert (
        f"{100 * model.metrics['accuracy']:.1f} %" in text
        and "balanced accuracy" in text
        and "ROC AUC" in text
    )
    assert "Calibration: temperature" in text and "Feature baseline (random forest)" in text
    assert "<b>Warning:</b> only 6 validation images" in text  # and what to do about it
    assert "Skipped inputs: 0" in panel.skipped_label.text()
    # the confusion plot counts every validation image once
    validation = model.training["validation_samples"]
    assert validation == 6  # 3 of 12 per category
    assert panel.confusion.matrix == model.metrics["confusion_matrix"]
    assert panel.confusion.total == validation
    assert panel.confusion.labels == list(CATEGORIES)
    assert np.trace(np.array(panel.confusion.matrix)) >= 5
    # the predict tab uses the model just trained
    assert widget.model is model
    assert "not saved" in widget.predict.model_path.text()
    # save, and load back
    out = panel.save_model(str(tmp_path / "blobs"))
    assert (
        out is not None and (tmp_path / "blobs.safetensors").is_file() and (tmp_path / "blobs.json").is_file()
    )
    loaded = load_model(out)
    assert loaded.categories == model.categories and loaded.channels == model.channels
    for key, value in model.state.items():
        np.testing.assert_array_equal(loaded.state[key], value)
    assert widget.predict.model_path.text() == out


def test_stop_ends_training_within_a_second_and_keeps_a_model(qtbot, dock):
    viewer, widget = dock
    panel = widget.train
    assign(panel, add_blob_layers(viewer, per_category=6))
    small_options(panel, epochs=10_000)  # far more than the test waits for
    panel.train_button.click()
    qtbot.waitUntil(lambda: len(panel.loss_plot.points("train")) >= 1, timeout=60_000)
    assert panel.worker is not None
    panel.stop_button.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=2_000)  # stops after the current batch
    model = panel.model
    assert model is not None and model.training["stopped_by_user"]
    assert len(model.history) < 10_000
    assert "stopped" in panel.status.text() and panel.train_button.isEnabled()
    assert widget.model is model


def test_predict_fills_the_table_and_the_layer_metadata(qtbot, dock, model_file):
    viewer, widget = dock
    layers = add_blob_layers(viewer, per_category=3, seed=5)
    movie = viewer.add_image(
        np.stack([blob_image(np.random.default_rng(f), True) for f in range(4)]),
        name="movie | Height",
        scale=(0.5, PIXEL_NM, PIXEL_NM),
        metadata=layer_metadata("/data/movie.asd"),
    )
    panel = widget.predict
    model = panel.load_model(str(model_file))
    assert model is not None and widget.model is model
    assert panel.model_path.text() == str(model_file)
    chosen = layers["blob"] + layers["flat"] + [movie]
    panel.set_checked(chosen)
    assert panel.selected_layers() == chosen
    panel.predict_button.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=30_000)

    headers = [panel.table.horizontalHeaderItem(c).text() for c in range(panel.table.columnCount())]
    assert headers == ["layer", "category", "P(blob)", "P(flat)", "unlike", "frames"]
    assert panel.table.rowCount() == len(chosen)
    correct = 0
    for row, layer in enumerate(chosen):
        record = layer.metadata["classification"]
        assert record["model"] == str(model_file)
        assert set(record["probabilities"]) == set(CATEGORIES)
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert record["label"] == max(record["probabilities"], key=record["probabilities"].get)
        assert panel.table.item(row, 0).text() == layer.name
        assert panel.table.item(row, 1).text() == record["label"]
        assert float(panel.table.item(row, 2).text()) == pytest.approx(
            record["probabilities"]["blob"], abs=1e-3
        )
        assert record["unlike_training"] > 0
        assert float(panel.table.item(row, 4).text()) == pytest.approx(record["unlike_training"], abs=0.01)
        truth = "flat" if layer in layers["flat"] else "blob"
        correct += record["label"] == truth
    assert correct >= len(chosen) - 1
    frames = movie.metadata["classification"]["frames"]
    assert [f["frame"] for f in frames] == [0, 1, 2, 3]
    assert panel.table.item(len(chosen) - 1, 5).text().startswith("4 frames:")
    assert "frames" not in layers["blob"][0].metadata["classification"]
    # "all image layers" takes every image layer
    panel.all_layers.setChecked(True)
    assert len(panel.selected_layers()) == len(viewer.layers)


def test_cam_button_adds_a_layer_over_the_input(qtbot, dock, model_file):
    viewer, widget = dock
    layers = add_blob_layers(viewer, per_category=1, seed=3)
    source = layers["blob"][0]
    panel = widget.predict
    panel.load_model(str(model_file))
    panel.set_checked([source])
    panel.cam_method.setCurrentText("gradcam")
    assert [panel.cam_target.itemText(i) for i in range(panel.cam_target.count())] == [
        "predicted",
        *CATEGORIES,
    ]
    panel.cam_target.setCurrentText("blob")
    before = len(viewer.layers)
    panel.cam_button.click()
    qtbot.waitUntil(lambda: panel.cam_worker is None, timeout=30_000)
    assert len(viewer.layers) == before + 1, panel.status.text()
    cam = viewer.layers[-1]
    assert cam.name == f"{source.name} | CAM blob"
    assert cam.data.shape == source.data.shape
    np.testing.assert_allclose(cam.scale, source.scale)
    np.testing.assert_allclose(cam.translate, source.translate)
    values = np.asarray(cam.data)
    assert values.min() >= 0 and values.max() <= 1 and values.max() > 0
    assert cam.metadata["method"] == "gradcam" and cam.metadata["category"] == "blob"


def test_bad_input_gives_one_clear_message(qtbot, dock, model_file):
    viewer, widget = dock
    panel = widget.train
    layers = add_blob_layers(viewer, per_category=3, phase=True)
    # one category only: the core refuses, the widget says so
    assign(panel, {"blob": layers["blob"]})
    small_options(panel)
    train_and_wait(qtbot, panel)
    assert panel.model is None
    assert "at least two categories" in panel.status.text()
    assert "at least two categories" in last_error()
    # an extra channel one of the scans lacks: the layer and the channel are named
    assign(panel, layers)
    assert [panel.extra_channels.item(i).text() for i in range(panel.extra_channels.count())] == ["Phase"]
    panel.set_extra_channel("Phase")
    assert panel.layer_channels() == ["Height", "Phase"]
    lacking = layers["flat"][0]
    phase_twin = next(
        layer
        for layer in viewer.layers
        if layer.metadata["source"] == lacking.metadata["source"] and layer.metadata["channel"] == "Phase"
    )
    viewer.layers.remove(phase_twin)
    panel.set_extra_channel("Phase")
    panel.train_button.click()
    assert panel.worker is None  # refused before any work
    assert lacking.name in panel.status.text() and "'Phase'" in panel.status.text()
    assert panel.status.text() in last_error()
    # prediction on a layer of another channel than the model's
    predict = widget.predict
    predict.load_model(str(model_file))
    phase = next(layer for layer in viewer.layers if layer.metadata["channel"] == "Phase")
    predict.set_checked([phase])
    predict.predict_button.click()
    assert predict.worker is None
    assert "'Phase'" in predict.status.text() and "'Height'" in predict.status.text()
    assert "classification" not in phase.metadata
    # a damaged model file
    broken = model_file.with_name("broken.safetensors")
    broken.write_bytes(model_file.read_bytes()[:100])
    broken.with_suffix(".json").write_bytes(model_file.with_suffix(".json").read_bytes())
    assert predict.load_model(str(broken)) is None
    assert "Cannot load the model" in predict.status.text()


@pytest.mark.slow
def test_multimodal_training_stacks_the_ticked_channel(qtbot, dock):
    viewer, widget = dock
    panel = widget.train
    layers = add_blob_layers(viewer, per_category=4, phase=True)
    assign(panel, layers)
    panel.set_extra_channel("Phase")
    small_options(panel, epochs=2)
    train_and_wait(qtbot, panel)
    model = panel.model
    assert model is not None, panel.status.text()
    assert model.channels == ["Height", "Phase"] and model.architecture["in_channels"] == 2
    # the Phase layers themselves were never assigned: they came from the same scans
    assert model.training["images_per_category"] == {"blob": 4, "flat": 4}


def test_training_from_a_folder(qtbot, dock, tmp_path):
    viewer, widget = dock
    rng = np.random.default_rng(2)
    for category in CATEGORIES:
        (tmp_path / category).mkdir()
        for i in range(4):
            np.save(tmp_path / category / f"{i}.npy", blob_image(rng, category == "blob"))
    (tmp_path / "flat" / "broken.npy").write_bytes(b"not an array")
    panel = widget.train
    panel.source.setCurrentText("folder (one sub-folder per category)")
    assert panel.pages.currentIndex() == 1
    panel.folder.setText(str(tmp_path))
    small_options(panel, epochs=2)
    panel.folds.setValue(2)  # cross-validation, then a final model on all images
    panel.permutations.setValue(1)
    panel.baseline.setChecked(True)
    train_and_wait(qtbot, panel)
    model = panel.model
    assert model is not None, panel.status.text()
    assert model.categories == list(CATEGORIES) and model.pixel_size is None
    assert "Skipped inputs: 1" in panel.skipped_label.text()
    assert "broken.npy" in panel.skipped_label.toolTip()
    text = panel.metrics_label.text()
    assert "2-fold cross-validation" in text and "Permutation test: p = " in text
    assert "Feature baseline (random forest), same images" in text
    assert "Network minus features: accuracy" in text and "95 % interval" in text
    assert panel.confusion.total == 8  # out-of-fold: every image once
    # the curves show the final run (all images, no validation), not the shuffled-label runs
    assert panel.loss_plot.title.endswith("final")
    assert len(panel.loss_plot.points("train")) == len(model.history) and not panel.loss_plot.points(
        "validation"
    )


def test_categories_are_edited_in_the_widget(dock):
    viewer, widget = dock
    panel = widget.train
    layers = add_blob_layers(viewer, per_category=1)
    a, b = layers["blob"][0], layers["flat"][0]
    panel.category_combo(a).setCurrentIndex(1)
    panel.category_combo(b).setCurrentIndex(2)
    assert panel.assigned() == {"category 1": [a], "category 2": [b]}
    panel.categories.item(0).setText("knobs")  # a rename follows into the combos
    assert panel.assigned() == {"knobs": [a], "category 2": [b]}
    panel.categories.item(1).setText("knobs")  # a taken name is refused
    assert panel.category_names() == ["knobs", "category 2"] and "already used" in panel.status.text()
    panel.add_category_button.click()
    assert panel.category_names() == ["knobs", "category 2", "category 3"]
    assert panel.category_combo(a).count() == 4
    panel.remove_category(0)  # its layers become "(not used)"
    assert panel.category_names() == ["category 2", "category 3"]
    assert panel.assigned() == {"category 2": [b]}
    assert panel.category_combo(a).currentText() == "(not used)"
    # a layer added later gets a row; a removed one loses it
    extra = viewer.add_image(np.zeros((SIZE, SIZE)), name="late")
    panel.category_combo(extra).setCurrentText("category 3")
    assert panel.assigned()["category 3"] == [extra]
    viewer.layers.remove(extra)
    assert panel.assigned() == {"category 2": [b]}
    assert widget.predict.layer_list.count() == 2


def test_options_start_at_the_training_defaults_and_early_stopping_picks_the_schedule(dock):
    from napari_scanprobe.learn.train import DEFAULTS
    from napari_scanprobe.nn.classifier import DEFAULT_ARCHITECTURE

    panel = dock[1].train
    options = panel.options()
    assert options["architecture"]["blocks"] == DEFAULT_ARCHITECTURE["blocks"]
    assert options["architecture"]["filters"] == DEFAULT_ARCHITECTURE["filters"]
    assert options["epochs"] == DEFAULTS["epochs"] and options["schedule"] == DEFAULTS["schedule"]
    assert panel.patience.text() == "off (one cycle)"
    panel.patience.setValue(5)
    assert panel.options()["schedule"] == "plateau" and panel.options()["patience"] == 5


def test_export_recipe_predict_and_cam_replays_the_widget(qtbot, dock, model_file, tmp_path):
    import napari_scanprobe as sp
    from napari_scanprobe.learn.predict import predict
    from napari_scanprobe.recipe import load_recipe

    viewer, widget = dock
    source = add_blob_layers(viewer, per_category=1, seed=4)["blob"][0]
    panel = widget.predict
    panel.set_checked([source])
    assert panel.export_recipe(tmp_path / "no_model.yaml") is None  # no model yet
    assert "Save the model first" in last_error()
    panel.load_model(str(model_file))
    panel.cam_method.setCurrentText("layercam")
    out = panel.export_recipe(tmp_path / "classify.yaml")
    assert out is not None and out.is_file()
    recipe = load_recipe(out)
    assert [s["step"] for s in recipe.to_dict(tmp_path)["steps"]] == ["predict", "cam", "write"]
    result = sp.run_recipe(out, {"Height": np.asarray(source.data)}, pixel_size=PIXEL_NM)
    direct = predict(sp.load_model(model_file), np.asarray(source.data), pixel_size=PIXEL_NM)
    assert result.prediction.label == direct.label
    assert result.prediction.probabilities == pytest.approx(direct.probabilities, abs=1e-6)
    assert result.cam.map.shape == source.data.shape and result.cam.method == "layercam"


def test_export_recipe_with_no_layer_checked_says_so(dock, tmp_path, monkeypatch):
    """The button with nothing ticked: one message, no dialog, no file (it once raised NameError)."""
    from qtpy.QtWidgets import QFileDialog

    viewer, widget = dock
    add_blob_layers(viewer, per_category=1, seed=2)
    panel = widget.predict
    asked = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: asked.append(a) or ("", ""))
    panel.export_button.click()
    assert not asked, "no file dialog without a checked layer"
    assert "Check a layer" in last_error()
    assert panel.export_recipe(tmp_path / "r.yaml") is None
    assert not (tmp_path / "r.yaml").exists()


def test_predict_rows_go_with_their_layers_and_cams_are_not_offered(qtbot, dock, model_file):
    viewer, widget = dock
    layers = add_blob_layers(viewer, per_category=2, seed=6)
    panel = widget.predict
    panel.load_model(str(model_file))
    chosen = layers["blob"] + layers["flat"]
    panel.set_checked(chosen)
    panel.predict_button.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=30_000)
    assert panel.table.rowCount() == 4
    gone = chosen[1]
    viewer.layers.remove(gone)
    rows = [panel.table.item(r, 0).text() for r in range(panel.table.rowCount())]
    assert rows == [layer.name for layer in chosen if layer is not gone]

    panel.set_checked([chosen[0]])
    panel.cam_button.click()
    qtbot.waitUntil(lambda: panel.cam_worker is None, timeout=30_000)
    cam = viewer.layers[-1]
    assert "CAM" in cam.name
    offered = [panel.layer_list.item(i).text() for i in range(panel.layer_list.count())]
    assert cam.name not in offered and chosen[0].name in offered
    assert all(layer is not cam for layer in widget.train._rows_layers()), "a CAM is no training image"
    panel.all_layers.setChecked(True)
    assert cam not in panel.selected_layers()


def test_classifier_dock_fits_a_laptop(dock):
    """1280x800: the dock's content needs at most 400 px, and no horizontal scrollbar shows."""
    from qtpy.QtWidgets import QApplication, QScrollArea

    viewer, widget = dock
    viewer.window._qt_window.resize(1280, 800)
    viewer.window._qt_window.show()
    for _ in range(10):
        QApplication.processEvents()
    assert widget.minimumSizeHint().width() <= 400
    for tab in range(widget.tabs.count()):
        widget.tabs.setCurrentIndex(tab)
        QApplication.processEvents()
        for area in widget.tabs.widget(tab).findChildren(QScrollArea):
            assert not area.horizontalScrollBar().isVisible(), widget.tabs.tabText(tab)
            assert area.widget().minimumSizeHint().width() <= area.viewport().width()


@pytest.mark.slow
def test_pretraining_folder_runs_before_training_and_stops(qtbot, dock, tmp_path, monkeypatch):
    from napari_scanprobe.learn import pretrain

    monkeypatch.setitem(pretrain.DEFAULTS, "epochs", 1)  # a few optimiser steps are enough here
    viewer, widget = dock
    rng = np.random.default_rng(3)
    for i in range(8):
        np.save(tmp_path / f"unlabelled_{i}.npy", blob_image(rng, i % 2 == 0))
    panel = widget.train
    assign(panel, add_blob_layers(viewer, per_category=4))
    small_options(panel, epochs=2)
    panel.pretrain_folder.setText(str(tmp_path))
    messages = []
    panel.progress.valueChanged.connect(lambda *_: messages.append(panel.status.text()))
    train_and_wait(qtbot, panel)
    model = panel.model
    assert model is not None, panel.status.text()
    assert model.training["pretrained"]["images"] == 8
    assert any(m.startswith("pretraining") for m in messages), messages[:5]
    # Stop while pretraining: nothing is trained, and the dock says so
    panel.model = None
    monkeypatch.setitem(pretrain.DEFAULTS, "epochs", 10_000)
    panel.train_button.click()
    qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=30_000)
    panel.stop_button.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=5_000)
    assert panel.model is None and "stopped while pretraining" in panel.status.text()
