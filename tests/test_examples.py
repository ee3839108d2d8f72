"""The examples: the scripted napari sessions run headless (under Xvfb) and the shipped recipes work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from napari_scanprobe import read
from napari_scanprobe.batch import run_batch
from napari_scanprobe.process.denoise import denoise
from napari_scanprobe.process.flatten import flatten
from napari_scanprobe.recipe import load_recipe, model_sha256

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def start(script: str, *args: str) -> subprocess.Popen:
    """Run an example script in its own Python (DISPLAY: pytest-xvfb's virtual display)."""
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 240) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


def not_black(png: Path) -> bool:
    import imageio.v3 as iio

    pixels = iio.imread(png)
    return pixels.ndim == 3 and pixels[..., :3].max() > 50 and pixels[..., :3].std() > 5


@pytest.mark.slow
def test_the_scripted_sessions_run_headless(sample, tmp_path):
    pytest.importorskip("torch")
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        pytest.skip("the example scripts open a napari window: run under pytest-xvfb (a virtual display)")
    scan = sample("nanonis_sxm/test.sxm")
    # both at once: most of their time is starting Python, napari and torch
    session = start("scripted_session.py", str(scan), "-o", str(tmp_path / "session"))
    classify = start(
        "classify_session.py", str(scan), "-o", str(tmp_path / "classify"), "--images", "6", "--epochs", "1"
    )
    text = finish(session)
    assert "identical to the widget's layers" in text and "run_recipe reproduces the layer" in text

    out = tmp_path / "session"
    recipe = load_recipe(out / "session_recipe.yaml")
    assert recipe.channels == ["Z (forward)"] and [s["step"] for s in recipe.steps] == [
        "flatten",
        "denoise",
        "write",
    ]
    raw = read(scan).channels[0]
    saved = read(out / "test flattened.gsf").channels[0]
    expected = denoise(flatten(raw.data, "auto"), "median", size=3)
    np.testing.assert_allclose(saved.data, expected, rtol=1e-6, atol=1e-6 * float(np.ptp(expected)))
    np.testing.assert_allclose(saved.pixel_size, raw.pixel_size)
    assert not_black(out / "session.png")

    text = finish(classify)
    assert "CAM layer" in text and "run_recipe predicts" in text
    out = tmp_path / "classify"
    gwy = read(out / "membrane_cam.gwy")
    height, cam = gwy.channels
    assert height.data.shape == cam.data.shape == (128, 128) and "CAM" in cam.name
    assert 0.0 <= float(np.min(cam.data)) and float(np.max(cam.data)) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(cam.pixel_size, height.pixel_size)
    recipe = load_recipe(out / "classify_recipe.yaml")  # the model's hash is checked on loading
    assert [s["step"] for s in recipe.steps] == ["predict", "cam", "write"]
    assert recipe.step("predict")["sha256"] == model_sha256(out / "knobs")
    assert not_black(out / "classify.png")


def test_the_flatten_denoise_recipe_on_a_real_file(sample, tmp_path):
    recipe = load_recipe(EXAMPLES / "recipes" / "flatten_denoise_gsf.yaml")
    assert recipe.channels == [] and recipe.step("write")["format"] == ".gsf"
    scan = sample("nanonis_sxm/A151216.123306-02602.sxm")  # 18 channels of 128 x 128: every one processed
    result = run_batch(recipe, [scan], tmp_path, workers=0)
    assert result.failed == 0 and len(result.results[0].outputs) == 18
    raw = read(scan).channels[0]
    back = read(tmp_path / f"{scan.name} Z (forward).gsf").channels[0]
    expected = denoise(flatten(raw.data, "auto"), "nl_means", patch_size=5, patch_distance=6)
    np.testing.assert_allclose(back.data, expected, rtol=1e-5, atol=1e-6 * float(np.ptp(expected)))


def test_the_classify_recipe_asks_for_the_hash_of_the_users_model(tmp_path):
    torch = pytest.importorskip("torch")
    from napari_scanprobe.learn.modelfile import ClassifierModel
    from napari_scanprobe.nn.classifier import build_network, check_architecture

    text = (EXAMPLES / "recipes" / "classify_cam_gwy.yaml").read_text()
    (tmp_path / "classify.yaml").write_text(text)
    with pytest.raises(FileNotFoundError, match="knobs"):  # no model trained yet
        load_recipe(tmp_path / "classify.yaml")
    arch = check_architecture({"blocks": 3, "filters": 8}, 1, 2, 32)
    torch.manual_seed(0)
    state = {k: v.numpy() for k, v in build_network(arch).state_dict().items() if v.is_floating_point()}
    ClassifierModel(arch, state, ["healthy", "infected"], ["Height"], 15.6, 32).save(tmp_path / "knobs")
    sha = model_sha256(tmp_path / "knobs")
    with pytest.raises(ValueError, match=f"no 'sha256'.*{sha}"):
        load_recipe(tmp_path / "classify.yaml")
    doc = yaml.safe_load(text)
    for step in doc["steps"]:
        if "model" in step:
            step["sha256"] = sha
    (tmp_path / "classify.yaml").write_text(yaml.safe_dump(doc))
    recipe = load_recipe(tmp_path / "classify.yaml")
    assert recipe.channels == ["Height"] and recipe.step("write") == {
        "step": "write",
        "format": ".gwy",
        "name": "{file}",
    }
    assert recipe.categories == ["healthy", "infected"]
