"""`scanprobe train` and `scanprobe predict`, in-process (the same code as the console script)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_scanprobe.cli import main

from .learn.conftest import blob_data

pytestmark = pytest.mark.slow  # every test here trains a network (or uses one trained here)


def _folder(root, n=8, seed=0):
    for category, images in blob_data(n, seed).items():
        (root / category).mkdir(parents=True)
        for i, image in enumerate(images):
            np.save(root / category / f"{category}_{i}.npy", image)
    return root


def test_train_then_predict(tmp_path, capsys, sample):
    data = _folder(tmp_path / "data", n=20, seed=1)
    (data / "blob" / "broken.npy").write_text("not an array")
    model = tmp_path / "m"
    assert (
        main(["train", str(data), "-o", str(model), "--epochs", "8", "--seed", "3", "--input-size", "48"])
        == 0
    )
    out, err = capsys.readouterr()
    assert "blob: 20, plain: 20" in out and "accuracy" in out and "confusion matrix" in out
    assert "skipped" in out and "broken.npy" in out and "1 input(s) skipped" in out
    assert "training " in err and "100%" in err  # the progress bar
    assert (tmp_path / "m.safetensors").is_file() and (tmp_path / "m.json").is_file()

    test = _folder(tmp_path / "test", n=5, seed=9)
    code = main(["predict", str(model), str(test / "blob"), str(test / "plain" / "plain_0.npy"), "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and len(lines) == 6
    assert all(set(d) == {"path", "label", "probabilities", "unlike_training"} for d in lines)
    assert sum(d["label"] == "blob" for d in lines[:5]) >= 4
    assert lines[5]["path"].endswith("plain_0.npy")

    # a real file is classified as it is (the model has no physical scale); a missing file is one error line
    code = main(
        [
            "predict",
            str(model),
            str(test / "plain" / "plain_1.npy"),
            str(sample("gwyddion_gwy/test.gwy")),
            str(tmp_path / "missing.spm"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 1
    assert out.count("\n") >= 1 and "plain_1.npy: " in out
    assert "missing.spm" in err

    # an image too small for the network: its path once, in the text and in the JSON
    tiny = tmp_path / "tiny.npy"
    np.save(tiny, np.zeros((4, 60), np.float32))
    assert main(["predict", str(model), str(tiny)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"scanprobe predict: error: {tiny}: ") and err.count(str(tiny)) == 1
    assert main(["predict", str(model), str(tiny), "--json"]) == 1
    (line,) = capsys.readouterr().out.splitlines()
    report = json.loads(line)
    assert report["path"] == str(tiny) and str(tiny) not in report["error"] and "px" in report["error"]


def test_train_refuses_a_single_category_folder(tmp_path, capsys):
    (tmp_path / "only").mkdir()
    np.save(tmp_path / "only" / "a.npy", np.zeros((48, 48)))
    assert main(["train", str(tmp_path), "-o", str(tmp_path / "m")]) == 1
    assert "at least two category" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_predict_with_a_damaged_model_says_so(tmp_path, capsys):
    (tmp_path / "m.json").write_text("{")
    (tmp_path / "m.safetensors").write_bytes(b"")
    assert main(["predict", str(tmp_path / "m"), "x.npy"]) == 1
    assert "damaged JSON" in capsys.readouterr().err


def _png_folder(root, n, seed):
    from PIL import Image

    for category, images in blob_data(n, seed).items():
        (root / category).mkdir(parents=True)
        for i, image in enumerate(images):
            grey = np.clip((image - image.min()) / np.ptp(image) * 255, 0, 255).astype(np.uint8)
            Image.fromarray(grey).save(root / category / f"{category}_{i}.png")
    return root


def test_train_with_baseline_then_evaluate_on_png_pictures(tmp_path, capsys):
    data = _png_folder(tmp_path / "data", n=16, seed=1)
    model = tmp_path / "m"
    args = ["train", str(data), "-o", str(model), "--epochs", "6", "--input-size", "48"]
    assert main([*args, "--pixel-size", "none", "--baseline"]) == 0
    out = capsys.readouterr().out
    assert "feature baseline (random forest) on the same images: accuracy" in out
    assert "network minus features: accuracy" in out and "95 % interval" in out
    assert "evaluated on 6 validation images\n" in out  # one validation split: no cross-validation
    assert "calibration: temperature" in out
    assert "warning: only 6 validation images (3 in the smallest category)" in out
    assert "images as they are" in out

    test = _png_folder(tmp_path / "test", n=10, seed=7)
    assert main(["evaluate", str(model), str(test), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["n"] == 20 and 0 <= metrics["accuracy"] <= 1 and metrics["ece"] >= 0
    assert metrics["unlike_training_median"] > 0

    (test / "unknown").mkdir()
    (test / "unknown" / "x.npy").write_bytes(b"")
    assert main(["evaluate", str(model), str(test)]) == 1
    assert "unknown are not categories of the model" in capsys.readouterr().err


def test_pixel_size_option_words(tmp_path, capsys):
    data = _folder(tmp_path / "data", n=4)
    assert main(["train", str(data), "-o", str(tmp_path / "m"), "--pixel-size", "fine"]) == 1
    assert "expected nm per pixel, 'auto' or 'none', got 'fine'" in capsys.readouterr().err
