"""Self-supervised pretraining: the encoder file, train(pretrained=...), mismatches, bounds, CLI.

A tiny folder of generated height images (.npy, 48x48) and a small network keep each
pretraining to a few optimiser steps.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_scanprobe.learn import pretrain as pretrain_module
from napari_scanprobe.learn.pretrain import load_encoder, nt_xent, pretrain
from napari_scanprobe.learn.train import train

from .conftest import SIZE, SMALL_NET, blob_data

FAST = {"epochs": 1, "batch_size": 4, "input_size": SIZE, "architecture": SMALL_NET, "threads": 1}


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    """A folder of 8 unlabelled images, one in a sub-folder, one hidden and one not an image."""
    folder = tmp_path_factory.mktemp("unlabelled")
    data = blob_data(4, seed=3)
    images = data["plain"] + data["blob"]
    (folder / "day2").mkdir()
    for i, image in enumerate(images):
        np.save(folder / ("day2" if i == 0 else ".") / f"scan{i}.npy", image)
    np.save(folder / ".hidden.npy", images[0])
    (folder / "notes.txt").write_text("not a scan")
    return folder


@pytest.fixture(scope="module")
def encoder_file(unlabelled, tmp_path_factory):
    return pretrain(unlabelled, tmp_path_factory.mktemp("enc") / "encoder", pixel_size=None, **FAST)


@pytest.mark.slow
def test_pretrain_writes_the_encoder_and_its_description(encoder_file):
    doc = json.loads(encoder_file.with_suffix(".json").read_text())
    assert doc["format"] == "napari-scanprobe encoder"
    assert doc["input_size"] == SIZE and doc["pixel_size_nm"] is None and doc["channels"] == []
    assert doc["architecture"]["blocks"] == SMALL_NET["blocks"] and "n_classes" not in doc["architecture"]
    assert [s["step"] for s in doc["preprocessing"]] == ["flatten", "flatten"]
    assert doc["training"]["images"] == 8  # the hidden file and the text file are not scans
    encoder = load_encoder(encoder_file)
    assert encoder.state and all(k.startswith("blocks.") for k in encoder.state)
    assert encoder.training["epochs_run"] == 1


def _conv(state) -> np.ndarray:
    return np.asarray(state["blocks.0.0.weight"])


@pytest.mark.slow
def test_train_starts_from_the_encoder_weights(encoder_file):
    """With a vanishing learning rate the fine-tuned blocks are the file's; without the
    encoder they are the seed's random ones."""
    data = blob_data(3, seed=4)
    options = dict(
        input_size=SIZE, pixel_size=None, architecture=SMALL_NET, epochs=1, learning_rate=1e-12, threads=1
    )
    pretrained = train(data, pretrained=encoder_file, **options)
    scratch = train(data, **options)
    file_weights = _conv(load_encoder(encoder_file).state)
    np.testing.assert_allclose(_conv(pretrained.state), file_weights, atol=1e-6)
    assert not np.allclose(_conv(scratch.state), file_weights, atol=1e-3)
    record = pretrained.training["pretrained"]
    assert record["file"] == str(encoder_file) and record["images"] == 8
    assert scratch.training["pretrained"] is None


@pytest.mark.slow
def test_a_mismatched_encoder_is_refused_with_one_clear_error(encoder_file):
    data = blob_data(3, seed=4)
    with pytest.raises(ValueError, match=r"encoder's network differs.*filters 8 \(classifier: 4\)"):
        train(
            data,
            pretrained=encoder_file,
            input_size=SIZE,
            pixel_size=None,
            architecture={"blocks": 3, "filters": 4},
        )
    two = {c: [{"Height": im, "Phase": -im} for im in images] for c, images in data.items()}
    with pytest.raises(ValueError, match=r"pretrained on 1 channel.*classifier takes 2"):
        train(two, ["Height", "Phase"], pretrained=encoder_file, input_size=SIZE, architecture=SMALL_NET)


@pytest.mark.slow
def test_a_model_file_or_a_damaged_file_is_not_an_encoder(encoder_file, tmp_path):
    model = train(blob_data(3, seed=4), input_size=SIZE, pixel_size=None, architecture=SMALL_NET, epochs=1)
    path = model.save(tmp_path / "model")
    with pytest.raises(ValueError, match="not a pretrained encoder"):
        load_encoder(path)
    broken = tmp_path / "broken"
    for suffix in (".json", ".safetensors"):
        broken.with_suffix(suffix).write_bytes(encoder_file.with_suffix(suffix).read_bytes())
    broken.with_suffix(".safetensors").write_bytes(encoder_file.read_bytes()[:-10])
    with pytest.raises(ValueError, match="broken.safetensors.*truncated or was modified"):
        load_encoder(broken)
    with pytest.raises(FileNotFoundError):
        train(blob_data(3, seed=4), pretrained=tmp_path / "missing", input_size=SIZE)


def test_inputs_are_bounded_before_work(unlabelled, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="not a folder"):
        pretrain(tmp_path / "nowhere", tmp_path / "e", **FAST)
    (tmp_path / "one").mkdir()
    np.save(tmp_path / "one" / "a.npy", np.zeros((48, 48)))
    with pytest.raises(ValueError, match="at least 2 scans, found 1"):
        pretrain(tmp_path / "one", tmp_path / "e", **FAST)
    monkeypatch.setattr(pretrain_module, "MAX_FILES", 5)
    with pytest.raises(ValueError, match="8 inputs; pretraining takes at most 5"):
        pretrain(unlabelled, tmp_path / "e", **FAST)
    monkeypatch.setattr(pretrain_module, "MAX_FILES", 100)
    monkeypatch.setattr(pretrain_module, "MAX_PIXELS", 10_000)
    with pytest.raises(ValueError, match="1.84e\\+04 pixels.*more than the 1e\\+04"):
        pretrain(unlabelled, tmp_path / "e", pixel_size=None, **FAST)
    with pytest.raises(ValueError, match="temperature"):
        pretrain(unlabelled, tmp_path / "e", temperature=0, **FAST)
    with pytest.raises(OSError, match="does not exist"):
        pretrain(unlabelled, tmp_path / "no" / "e", **FAST)


@pytest.mark.slow
def test_cancel_keeps_the_weights_so_far(unlabelled):
    from napari_scanprobe.learn.pretrain import pretrain_steps
    from napari_scanprobe.process.common import run_to_end

    updates = []
    encoder = run_to_end(
        pretrain_steps(unlabelled, pixel_size=None, should_stop=lambda: True, **FAST), updates.append
    )
    assert encoder.training["stopped_by_user"] and encoder.training["steps"] == 1
    assert any("pretraining" in u.message and "left" in u.message for u in updates)


def test_nt_xent_prefers_matching_pairs():
    import torch

    z = torch.eye(4).repeat(2, 1)  # view i and i+4 identical, the others orthogonal
    assert float(nt_xent(z, 0.1, torch)) < 0.01
    assert float(nt_xent(torch.cat([z[:4], z[[1, 2, 3, 0]]]), 0.1, torch)) > 5


@pytest.mark.slow
def test_cli_pretrain_then_train(unlabelled, tmp_path, capsys):
    from napari_scanprobe.cli import main

    enc = tmp_path / "enc"
    code = main(
        [
            "pretrain",
            str(unlabelled),
            "-o",
            str(enc),
            "--epochs",
            "1",
            "--input-size",
            "32",
            "--pixel-size",
            "none",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "pretrained on 8 unlabelled scans" in out.out and "--pretrained" in out.out
    labelled = tmp_path / "labelled"
    for category, images in blob_data(3, seed=5).items():
        (labelled / category).mkdir(parents=True)
        for i, image in enumerate(images):
            np.save(labelled / category / f"{i}.npy", image)
    model = tmp_path / "model"
    code = main(
        [
            "train",
            str(labelled),
            "-o",
            str(model),
            "--epochs",
            "1",
            "--input-size",
            "32",
            "--pretrained",
            str(enc),
        ]
    )
    assert code == 0, capsys.readouterr().err
    doc = json.loads(model.with_suffix(".json").read_text())
    assert doc["training"]["pretrained"]["file"] == str(enc.with_suffix(".safetensors"))
    assert doc["pixel_size_nm"] is None  # the encoder's: images as they are
    code = main(
        ["train", str(labelled), "-o", str(model), "--input-size", "64", "--pretrained", str(tmp_path / "x")]
    )
    assert code == 1 and "pretrained encoder file not found" in capsys.readouterr().err
