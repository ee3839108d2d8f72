"""Recipes: the format (JSON and YAML), validation up front, model hashes, replay on arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_scanprobe.recipe import (
    FORMAT,
    Recipe,
    load_recipe,
    model_sha256,
    recipe_from_history,
    run_recipe,
    save_recipe,
)

STEPS = [
    {"step": "flatten", "method": "auto", "options": {"threshold": 2.5}},
    {"step": "denoise", "method": "median", "options": {"size": 3}},
    {"step": "upscale", "method": "bicubic", "options": {"factor": 2}},
    {"step": "write", "format": ".gsf", "name": "{stem} {channel}"},
]


def surface(seed: int = 0, shape=(64, 80)) -> np.ndarray:
    """A tilted, bowed surface with line offsets, a bump and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    z = 0.05 * xx - 0.03 * yy + 1e-3 * (xx - 40) ** 2 + rng.normal(0, 0.4, (shape[0], 1))
    z += 5 * np.exp(-((yy - 30) ** 2 + (xx - 40) ** 2) / 50) + rng.normal(0, 0.1, shape)
    return z


def save_model(
    path, channels=(), pixel_size=None, categories=("clean", "dirty"), input_size=32, seed=0
) -> str:
    """A small untrained classifier (random weights, fixed seed) saved to ``path``."""
    torch = pytest.importorskip("torch")
    from napari_scanprobe.learn.modelfile import ClassifierModel
    from napari_scanprobe.nn.classifier import build_network, check_architecture

    arch = check_architecture(
        {"blocks": 3, "filters": 8, "head": "gap"}, max(1, len(channels)), len(categories), input_size
    )
    torch.manual_seed(seed)
    net = build_network(arch)
    state = {k: v.numpy() for k, v in net.state_dict().items() if v.is_floating_point()}
    return str(
        ClassifierModel(arch, state, list(categories), list(channels), pixel_size, input_size).save(path)
    )


# -- the format ---------------------------------------------------------------------------------


def test_yaml_and_json_files_give_the_same_recipe(tmp_path):
    doc = {"format": FORMAT, "version": 1, "channels": ["Height (trace)"], "steps": STEPS}
    (tmp_path / "r.json").write_text(json.dumps(doc))
    (tmp_path / "r.yaml").write_text(
        "format: napari-scanprobe recipe\nversion: 1\nchannels: ['Height (trace)']\nsteps:\n"
        "  - {step: flatten, method: auto, options: {threshold: 2.5}}\n"
        "  - step: denoise\n    method: median\n    options:\n      size: 3\n"
        "  - {step: upscale, method: bicubic, options: {factor: 2}}\n"
        "  - {step: write, format: .gsf, name: '{stem} {channel}.gsf'}\n"
    )
    a, b = load_recipe(tmp_path / "r.json"), load_recipe(tmp_path / "r.yaml")
    assert a.steps == b.steps and a.channels == b.channels == ["Height (trace)"]
    assert [s["step"] for s in a.steps] == ["flatten", "denoise", "upscale", "write"]
    assert a.step("write") == {
        "step": "write",
        "format": ".gsf",
        "name": "{stem} {channel}",
    }  # the extension is the format's


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_save_and_load_round_trip(tmp_path, suffix):
    recipe = load_recipe({"channels": ["Z (forward)"], "steps": STEPS})
    path = save_recipe(recipe, tmp_path / f"saved{suffix}")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporary file left
    again = load_recipe(path)
    assert again.steps == recipe.steps and again.channels == recipe.channels
    assert again.fingerprint() == recipe.fingerprint()
    text = path.read_text()
    assert FORMAT in text and "created_with" in text


def bad(**changes):
    doc = {"format": FORMAT, "version": 1, "channels": [], "steps": [dict(s) for s in STEPS]}
    doc.update(changes)
    return doc


def with_step(index, step):
    steps = [dict(s) for s in STEPS]
    steps[index] = step
    return bad(steps=steps)


@pytest.mark.parametrize(
    "doc, where, words",
    [
        (bad(format="something else"), "", "format"),
        (bad(version=2), "", "newer"),
        (bad(version="one"), "", "version"),
        (bad(stepz=[]), "", "unknown key 'stepz'"),
        (bad(steps=[]), "", "non-empty"),
        (bad(channels=[3]), "", "channels"),
        (with_step(0, {"step": "blur"}), "steps[0]", "unknown step 'blur'"),
        (with_step(0, {"step": "flatten", "method": "magic"}), "steps[0] (flatten)", "method"),
        (
            with_step(0, {"step": "flatten", "method": "plane", "options": {"degree": 2}}),
            "steps[0] (flatten)",
            "degree",
        ),
        (
            with_step(0, {"step": "flatten", "method": "auto", "options": {"threshold": -1.0}}),
            "steps[0] (flatten)",
            "threshold",
        ),
        (
            with_step(0, {"step": "flatten", "method": "auto", "option": {}}),
            "steps[0] (flatten)",
            "unknown key 'option'",
        ),
        (
            with_step(1, {"step": "denoise", "method": "median", "options": {"size": 0}}),
            "steps[1] (denoise)",
            "size",
        ),
        (
            with_step(1, {"step": "denoise", "method": "median", "options": {"size": [3, 3]}}),
            "steps[1] (denoise)",
            "plain values",
        ),
        (
            with_step(
                1, {"step": "denoise", "method": "n2n", "options": {"pair": "scan | Height (retrace)"}}
            ),
            "steps[1] (denoise)",
            "pair",
        ),
        (
            with_step(1, {"step": "denoise", "method": "auto", "options": {"size": 3}}),
            "steps[1] (denoise)",
            "auto",
        ),
        (
            with_step(2, {"step": "upscale", "method": "bicubic", "options": {"factor": 3}}),
            "steps[2] (upscale)",
            "factor",
        ),
        (
            with_step(2, {"step": "upscale", "method": "lanczos", "options": {"steps": 10}}),
            "steps[2] (upscale)",
            "steps",
        ),
        (with_step(3, {"step": "write", "format": ".png"}), "steps[3] (write)", "format"),
        (with_step(3, {"step": "write", "name": "{date} {channel}"}), "steps[3] (write)", "{date}"),
        (
            with_step(3, {"step": "write", "format": ".gsf", "name": "{stem}"}),
            "steps[3] (write)",
            "{channel}",
        ),
        (
            with_step(3, {"step": "write", "format": ".gsf", "name": "{stem}.tif"}),
            "steps[3] (write)",
            "format",
        ),
        (with_step(3, {"step": "write", "name": "sub/{stem} {channel}"}), "steps[3] (write)", "file name"),
        (bad(steps=[STEPS[3], STEPS[0]]), "steps[1] (flatten)", "last"),
        (with_step(0, {"step": "predict"}), "steps[0] (predict)", "model"),
    ],
)
def test_bad_recipes_give_one_clear_error(doc, where, words):
    with pytest.raises(ValueError) as info:
        load_recipe(doc)
    message = str(info.value)
    assert message.startswith(f"recipe: {where}" if where else "recipe: "), message
    assert words in message, message


def test_errors_name_the_recipe_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(
        "steps:\n  - {step: flatten, method: plane}\n  - {step: denoise, method: median, options: {size: -2}}\n"
    )
    with pytest.raises(ValueError, match=r"broken\.yaml: steps\[1\] \(denoise\): size"):
        load_recipe(path)
    (tmp_path / "bad.yaml").write_text("steps: [unclosed\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "r.txt").write_text("{}")
    with pytest.raises(ValueError, match=r"\.json, \.yaml or \.yml"):
        load_recipe(tmp_path / "r.txt")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_recipe(tmp_path / "missing.yaml")


def test_a_gsf_name_without_channel_is_fine_for_one_channel_and_gwy_groups(tmp_path):
    one = load_recipe(
        {"channels": ["Height"], "steps": [{"step": "write", "format": ".gsf", "name": "{stem}"}]}
    )
    assert one.step("write")["name"] == "{stem}"
    gwy = load_recipe({"steps": [{"step": "write", "format": "gwy", "name": "{file}"}]})
    assert gwy.step("write")["format"] == ".gwy"


# -- models and their hashes --------------------------------------------------------------------------


def test_model_paths_are_relative_to_the_recipe_and_hashes_checked(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "models").mkdir(parents=True)
    model = save_model(folder / "models" / "m")
    sha = model_sha256(model)
    assert sha == model_sha256(folder / "models" / "m.json") == model_sha256(folder / "models" / "m")
    doc = {"steps": [{"step": "predict", "model": "models/m", "sha256": sha}]}
    path = folder / "r.json"
    path.write_text(json.dumps(doc))
    monkeypatch.chdir(tmp_path)  # elsewhere: the path is still found beside the recipe
    recipe = load_recipe(path)
    assert recipe.step("predict")["model"] == str((folder / "models" / "m").resolve())
    assert recipe.categories == ["clean", "dirty"]

    # saved elsewhere: the model path is rewritten relative to the new place
    other = tmp_path / "elsewhere" / "copy.yaml"
    other.parent.mkdir()
    save_recipe(recipe, other)
    assert "../project/models/m" in other.read_text()
    assert load_recipe(other).step("predict")["model"] == recipe.step("predict")["model"]

    # no hash: refused, and the message gives the hash to put in
    path.write_text(json.dumps({"steps": [{"step": "predict", "model": "models/m"}]}))
    with pytest.raises(ValueError, match=rf"steps\[0\] \(predict\): no 'sha256'.*{sha}"):
        load_recipe(path)

    # the model file replaced by another one: refused before any work
    path.write_text(json.dumps(doc))
    save_model(folder / "models" / "m", seed=1)
    with pytest.raises(ValueError, match=r"steps\[0\] \(predict\): .*the model changed") as info:
        load_recipe(path)
    assert model_sha256(model) in str(info.value) and sha in str(info.value)

    # a missing model file
    doc["steps"][0]["model"] = "models/none"
    path.write_text(json.dumps(doc))
    with pytest.raises(FileNotFoundError, match=r"steps\[0\] \(predict\): .*none\.json"):
        load_recipe(path)


def test_cam_options_are_checked_against_the_model(tmp_path):
    model = save_model(tmp_path / "m", channels=["Height (trace)"])
    sha = model_sha256(model)
    cam = {"step": "cam", "model": model, "sha256": sha}
    assert load_recipe({"steps": [cam]}).step("cam")["layer"] == "block3"
    for extra, words in [
        ({"method": "nope"}, "method"),
        ({"target": "zebra"}, "zebra"),
        ({"layer": "block9"}, "block9"),
    ]:
        with pytest.raises(ValueError, match=rf"steps\[0\] \(cam\): .*{words}"):
            load_recipe({"steps": [{**cam, **extra}]})
    with pytest.raises(ValueError, match=r"needs channel 'Height \(trace\)'.*add it to 'channels'"):
        load_recipe({"channels": ["Phase"], "steps": [cam]})
    assert load_recipe({"channels": ["height (trace)"], "steps": [cam]}).channels == ["height (trace)"]


# -- run_recipe on arrays -------------------------------------------------------------------------------


def test_run_recipe_equals_calling_the_functions_directly():
    from napari_scanprobe import denoise, flatten, upscale
    from napari_scanprobe import run_recipe as api_run_recipe
    from napari_scanprobe.process.superres import upscaled_geometry

    assert api_run_recipe is run_recipe  # the scripting API exports it
    image = surface()
    original = image.copy()
    result = run_recipe({"steps": STEPS}, image, pixel_size=2.0)
    expected = upscale(
        denoise(flatten(image, "auto", threshold=2.5), "median", size=3), factor=2, method="bicubic"
    )
    np.testing.assert_array_equal(result.image, expected)
    np.testing.assert_array_equal(image, original)  # the input is not modified
    assert result.pixel_size == upscaled_geometry((2.0, 2.0), (0.0, 0.0), 2)[0] == (1.0, 1.0)
    assert result.prediction is None and result.cam is None


def test_run_recipe_keeps_a_dask_movie_lazy():
    import dask.array as da

    from napari_scanprobe import flatten

    frames = np.stack([surface(seed) for seed in range(4)]).astype(np.float32)
    movie = da.from_array(frames, chunks=(1, -1, -1))
    result = run_recipe({"steps": [{"step": "flatten", "method": "rows_median"}]}, movie)
    assert isinstance(result.image, da.Array) and result.image.shape == frames.shape
    for t in (0, 3):
        np.testing.assert_array_equal(result.image[t].compute(), flatten(frames[t], "rows_median"))


def test_run_recipe_predicts_and_explains_the_processed_image(tmp_path):
    from napari_scanprobe.learn.cam import cam
    from napari_scanprobe.learn.predict import predict
    from napari_scanprobe.process.flatten import flatten

    model = save_model(tmp_path / "m", pixel_size=1.0)
    sha = model_sha256(model)
    steps = [
        {"step": "flatten", "method": "plane"},
        {"step": "predict", "model": model, "sha256": sha},
        {"step": "cam", "model": model, "sha256": sha, "method": "gradcam", "target": "dirty"},
    ]
    image = surface(3)
    result = run_recipe({"steps": steps}, image, pixel_size=0.5)
    flat = flatten(image, "plane")
    np.testing.assert_array_equal(result.image, flat)
    direct = predict(model, flat, pixel_size=0.5)
    assert result.prediction.label == direct.label
    assert result.prediction.probabilities == pytest.approx(direct.probabilities)
    expected = cam(model, flat, "gradcam", target="dirty", pixel_size=0.5)
    assert result.cam.category == "dirty" and result.cam.map.shape == image.shape
    np.testing.assert_allclose(result.cam.map, expected.map, atol=1e-6)


def test_run_recipe_accepts_a_recipe_file(tmp_path):
    path = save_recipe(load_recipe({"steps": STEPS[:2]}), tmp_path / "r.yaml")
    image = surface(5)
    from napari_scanprobe import denoise, flatten

    np.testing.assert_array_equal(
        run_recipe(path, image).image, denoise(flatten(image, "auto", threshold=2.5), "median", size=3)
    )


# -- recipes from a layer's history ------------------------------------------------------------------------


def test_recipe_from_history_replays_the_recorded_steps(tmp_path):
    history = [
        {
            "step": "flatten",
            "method": "auto",
            "options": {"iterations": 3, "threshold": 3.0},
            "version": "0.1.0",
        },
        {"step": "denoise", "method": "gaussian", "options": {"sigma": 1.5}, "version": "0.1.0"},
    ]
    model = save_model(tmp_path / "m")
    recipe = recipe_from_history(
        history, "Height (trace)", model=model, cam={"method": "layercam"}, write=".tif"
    )
    assert isinstance(recipe, Recipe) and recipe.channels == ["Height (trace)"]
    assert [s["step"] for s in recipe.steps] == ["flatten", "denoise", "predict", "cam", "write"]
    assert recipe.steps[0] == {
        "step": "flatten",
        "method": "auto",
        "options": {"iterations": 3, "threshold": 3.0},
    }
    assert recipe.step("predict")["sha256"] == model_sha256(model)
    assert recipe.step("cam")["method"] == "layercam" and recipe.step("write")["format"] == ".tif"

    # a CAM layer's history names its model
    cam_history = [
        *history,
        {
            "step": "cam",
            "method": "gradcam++",
            "options": {"model": model, "target": None, "layer": "block2"},
        },
    ]
    cam_recipe = recipe_from_history(cam_history)
    assert cam_recipe.step("cam")["layer"] == "block2" and cam_recipe.step("cam")["method"] == "gradcam++"

    with pytest.raises(ValueError, match="pair"):
        recipe_from_history(
            [{"step": "denoise", "method": "n2n", "options": {"pair": "x | Height (retrace)"}}]
        )
    with pytest.raises(ValueError, match="never saved"):
        recipe_from_history(history, model="unsaved model")
    with pytest.raises(ValueError, match="cannot be put in a recipe"):
        recipe_from_history([{"step": "crop", "method": "x"}])
