"""Model files: a round trip keeps predictions; damaged, tampered or foreign files are refused."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest

from napari_scanprobe.learn.modelfile import load_model
from napari_scanprobe.learn.predict import predict

from .conftest import blob_data

pytestmark = pytest.mark.slow  # every test here trains a network (or uses one trained here)


def test_round_trip_keeps_everything_and_predictions(blob_model, tmp_path):
    path = blob_model.save(tmp_path / "blobs")
    assert path.name == "blobs.safetensors" and (tmp_path / "blobs.json").is_file()
    loaded = load_model(tmp_path / "blobs.json")
    for attr in ("architecture", "categories", "channels", "pixel_size", "input_size", "preprocessing"):
        assert getattr(loaded, attr) == getattr(blob_model, attr)
    assert loaded.metrics["accuracy"] == pytest.approx(blob_model.metrics["accuracy"])
    assert loaded.history == blob_model.history
    image = blob_data(1, seed=42)["blob"][0]
    a, b = predict(blob_model, image), predict(loaded, tmp_path / "blobs.safetensors" and image)
    assert a.label == b.label
    assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)
    doc = json.loads((tmp_path / "blobs.json").read_text())
    assert doc["format"] == "napari-scanprobe classifier" and doc["package_version"]
    assert doc["weights_sha256"] and doc["n_parameters"] > 0


def test_calibration_offsets_are_saved_and_applied(blob_model, tmp_path):
    image = blob_data(1, seed=42)["plain"][0]
    plain = predict(blob_model, image)
    leaning = dataclasses.replace(blob_model, confidence={**blob_model.confidence, "offsets": [0.0, 0.0]})
    leaning.confidence["offsets"][blob_model.categories.index(plain.label) ^ 1] = 30.0
    leaning.save(tmp_path / "lean")
    loaded = load_model(tmp_path / "lean")
    assert loaded.confidence["offsets"] == leaning.confidence["offsets"]
    assert predict(loaded, image).label != plain.label  # an offset this large decides
    doc = json.loads((tmp_path / "lean.json").read_text())
    doc["confidence"]["offsets"] = [0.0]  # one offset for two categories
    (tmp_path / "lean.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="lean.json: damaged confidence section"):
        load_model(tmp_path / "lean")


def test_path_may_be_the_stem(blob_model, tmp_path):
    blob_model.save(tmp_path / "m.safetensors")
    assert load_model(tmp_path / "m").categories == blob_model.categories


def test_tampered_weights_are_refused(blob_model, tmp_path):
    blob_model.save(tmp_path / "m")
    raw = bytearray((tmp_path / "m.safetensors").read_bytes())
    raw[-5] ^= 0xFF
    (tmp_path / "m.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="truncated or was modified"):
        load_model(tmp_path / "m")


def test_truncated_description_is_refused(blob_model, tmp_path):
    blob_model.save(tmp_path / "m")
    text = (tmp_path / "m.json").read_text()
    (tmp_path / "m.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="m.json.*damaged JSON"):
        load_model(tmp_path / "m")


def test_a_pickle_is_never_loaded(tmp_path, blob_model):
    blob_model.save(tmp_path / "m")
    (tmp_path / "m.safetensors").write_bytes(pickle.dumps({"x": np.zeros(3)}))
    with pytest.raises(ValueError):
        load_model(tmp_path / "m")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(format="napari-scanprobe upscaler"), "not a classifier model"),
        (lambda d: d.update(format_version=99), "version 99 is not supported"),
        (lambda d: d.update(categories=["a", "b", "c"]), "do not fit the architecture|disagrees"),
        (lambda d: d["architecture"].update(filters=4), "do not fit the architecture"),
        (lambda d: d.update(input_size="big"), "incompatible or damaged"),
        (lambda d: d.update(preprocessing=[{"step": "exec"}]), "unknown step"),
        (lambda d: d.pop("channels"), "incompatible or damaged"),
    ],
)
def test_incompatible_descriptions_are_refused(blob_model, tmp_path, edit, message):
    blob_model.save(tmp_path / "m")
    doc = json.loads((tmp_path / "m.json").read_text())
    edit(doc)
    (tmp_path / "m.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=message):
        load_model(tmp_path / "m")


def test_missing_files_are_named(tmp_path, blob_model):
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        load_model(tmp_path / "nothing")
    blob_model.save(tmp_path / "m")
    (tmp_path / "m.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="m.safetensors"):
        load_model(tmp_path / "m")


def test_save_into_a_missing_folder_is_a_clear_error(blob_model, tmp_path):
    with pytest.raises(OSError, match="does not exist"):
        blob_model.save(tmp_path / "no" / "such" / "m")
    assert not (tmp_path / "no").exists()


def _saved_one_epoch_model(tmp_path, architecture: dict):
    """A model of ``architecture`` trained for one epoch, saved as ``tmp_path/old``."""
    from napari_scanprobe.learn.train import train

    from .conftest import SIZE

    model = train(
        blob_data(6, seed=2), input_size=SIZE, pixel_size=None, epochs=1, seed=0, architecture=architecture
    )
    model.save(tmp_path / "old")
    return model


def _same_predictions(a, b) -> bool:
    image = blob_data(1, seed=4)["blob"][0]
    return predict(a, image).probabilities == predict(b, image).probabilities


def test_a_model_saved_before_last_kernel_size_existed_still_loads(tmp_path):
    """Older descriptions have no last_kernel_size: every block then had kernel_size."""
    old = _saved_one_epoch_model(tmp_path, {"blocks": 3, "last_kernel_size": 3})
    doc = json.loads((tmp_path / "old.json").read_text())
    del doc["architecture"]["last_kernel_size"]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    loaded = load_model(tmp_path / "old")
    assert loaded.architecture["last_kernel_size"] == 3
    assert _same_predictions(loaded, old)


#: A network other than the default (a model file names its architecture in full).
OTHER_ARCHITECTURE = {"blocks": 3, "filters": 16, "pooled_blocks": 3, "last_kernel_size": 3}


def test_a_model_of_another_network_than_the_default_loads_and_predicts_the_same(tmp_path):
    from napari_scanprobe.nn.classifier import DEFAULT_ARCHITECTURE

    assert {k: DEFAULT_ARCHITECTURE[k] for k in OTHER_ARCHITECTURE} != OTHER_ARCHITECTURE
    old = _saved_one_epoch_model(tmp_path, OTHER_ARCHITECTURE)
    saved = json.loads((tmp_path / "old.json").read_text())["architecture"]
    assert {k: saved[k] for k in OTHER_ARCHITECTURE} == OTHER_ARCHITECTURE
    loaded = load_model(tmp_path / "old")
    assert loaded.architecture == old.architecture
    assert _same_predictions(loaded, old)
