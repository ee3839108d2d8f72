"""Training end to end on generated data: beats chance, repeatable, stoppable, honest about bad data."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_scanprobe.learn.predict import predict_many
from napari_scanprobe.learn.train import SMALL_SET_BATCHES_PER_EPOCH, train, train_steps
from napari_scanprobe.process.common import run_to_end

from .conftest import SIZE, SMALL_NET, blob_data, blob_image

pytestmark = pytest.mark.slow  # every test here trains a network (or uses one trained here)

FAST = {"input_size": SIZE, "pixel_size": None, "architecture": SMALL_NET}


def test_trained_model_beats_chance_on_held_out_images(blob_model):
    test = blob_data(30, seed=99)
    inputs = test["plain"] + test["blob"]
    truth = ["plain"] * 30 + ["blob"] * 30
    labels = [p.label for p in predict_many(blob_model, inputs)]
    accuracy = np.mean([a == b for a, b in zip(labels, truth, strict=True)])
    assert accuracy >= 0.9, accuracy


def test_reports_metrics_history_and_description(blob_model):
    m = blob_model.metrics
    assert m["accuracy"] >= 0.85 and m["balanced_accuracy"] >= 0.85 and m["roc_auc"] >= 0.9
    assert set(m["per_class"]) == {"plain", "blob"}
    assert np.sum(m["confusion_matrix"]) == m["n"] == blob_model.training["validation_samples"] == 16
    assert len(blob_model.history) >= 1
    for entry in blob_model.history:
        assert {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(
            entry
        )
    assert blob_model.categories == ["plain", "blob"]
    assert blob_model.preprocessing[0]["step"] == "flatten"


def test_same_seed_same_model_other_seed_other_model():
    data = blob_data(10, seed=3)
    a = train(data, epochs=2, seed=5, **FAST)
    b = train(data, epochs=2, seed=5, **FAST)
    c = train(data, epochs=2, seed=6, **FAST)
    for k in a.state:
        np.testing.assert_array_equal(a.state[k], b.state[k])
    assert any(not np.array_equal(a.state[k], c.state[k]) for k in a.state)
    assert a.history == b.history


def test_progress_reports_epochs_with_train_and_validation_figures():
    epochs = []
    train(
        blob_data(8, seed=4),
        epochs=3,
        patience=10,
        progress=lambda p: epochs.append(p.extra["epoch"]) if "epoch" in p.extra else None,
        **FAST,
    )
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert all(0 <= e["val_accuracy"] <= 1 and e["train_loss"] > 0 for e in epochs)


def test_one_cycle_runs_every_epoch_and_keeps_the_annealed_end():
    model = train(blob_data(8, seed=4), epochs=4, schedule="one-cycle", learning_rate=2e-3, **FAST)
    rates = [e["learning_rate"] for e in model.history]
    assert len(rates) == 4 and model.training["best_epoch"] == 4  # no early stop, the last epoch kept
    assert max(rates) > 10 * rates[-1]  # the rate rose, then annealed towards zero


def test_plateau_schedule_stops_early_and_keeps_the_best_epoch():
    model = train(
        blob_data(8, seed=4), epochs=30, schedule="plateau", patience=1, min_epochs=1, seed=1, **FAST
    )
    assert len(model.history) < 30
    losses = [e["val_loss"] for e in model.history]
    assert model.training["best_epoch"] == 1 + int(np.argmin(losses))


def test_stop_keeps_the_best_model_so_far():
    calls = {"n": 0}

    def stop_after_some_batches():
        calls["n"] += 1
        return calls["n"] > SMALL_SET_BATCHES_PER_EPOCH + 4  # during the second epoch (20 images)

    t0 = time.perf_counter()
    model = train(blob_data(10, seed=2), epochs=500, should_stop=stop_after_some_batches, **FAST)
    assert time.perf_counter() - t0 < 60
    assert model.training["stopped_by_user"] is True
    assert len(model.history) == 2 and model.state


def test_stop_in_the_first_epoch_still_returns_a_model():
    model = train(blob_data(6, seed=2), epochs=50, should_stop=lambda: True, **FAST)
    assert model.training["stopped_by_user"] and model.state
    assert len(model.history) == 1  # the one batch trained is evaluated as a partial epoch


def test_cross_validation_pools_out_of_fold_predictions():
    data = blob_data(9, seed=8)
    model = train(data, folds=3, epochs=3, **FAST)
    cv = model.metrics["cross_validation"]
    assert cv["folds"] == 3 and len(cv["fold_accuracy"]) == 3 and cv["final_epochs"] >= 1
    assert model.metrics["n"] == 18  # every image predicted once, out of fold
    assert model.metrics["evaluated_on"] == "validation images (out of fold: 3-fold cross-validation)"


def test_permutation_test_gives_a_p_value():
    model = train(blob_data(10, seed=6), epochs=4, permutations=2, **FAST)
    perm = model.metrics["permutation_test"]
    assert perm["permutations"] == 2 and len(perm["accuracies"]) == 2
    assert 1 / 3 <= perm["p_value"] <= 1


def test_multichannel_examples_stack_channels():
    rng = np.random.default_rng(0)
    data = {
        c: [
            {"Height": blob_image(rng, c == "blob"), "Phase": rng.normal(size=(SIZE, SIZE))} for _ in range(6)
        ]
        for c in ("plain", "blob")
    }
    model = train(data, channels=["Height", "Phase"], epochs=1, **FAST)
    assert model.channels == ["Height", "Phase"] and model.architecture["in_channels"] == 2


def test_movie_frames_are_samples_and_stay_on_one_side_of_the_split():
    rng = np.random.default_rng(1)
    data = {
        c: [np.stack([blob_image(rng, c == "blob") for _ in range(3)]) for _ in range(5)]
        for c in ("plain", "blob")
    }
    model = train(data, epochs=1, **FAST)
    assert model.training["samples"] == 30
    assert model.training["validation_samples"] % 3 == 0


# -- the physical scale ------------------------------------------------------------------


def test_pixel_size_auto_is_the_median_and_images_are_resampled(tmp_path):
    from napari_scanprobe.learn.data import Example

    rng = np.random.default_rng(0)
    data = {
        "plain": [Example([blob_image(rng, False, 96)], ["h"], (4.0, 4.0)) for _ in range(4)]
        + [Example([blob_image(rng, False)], ["h"], (8.0, 8.0))],
        "blob": [Example([blob_image(rng, True)], ["h"], (8.0, 8.0)) for _ in range(5)],
    }
    model = train(data, epochs=1, input_size=SIZE, architecture=SMALL_NET)
    assert model.pixel_size == pytest.approx(8.0)  # median of 4,4,4,4,8,8,8,8,8,8


def test_mixed_scaled_and_unscaled_inputs_are_refused():
    from napari_scanprobe.learn.data import Example

    rng = np.random.default_rng(0)
    data = {"a": [Example([blob_image(rng, False)], ["h"], (8.0, 8.0))] * 3, "b": [blob_image(rng, True)] * 3}
    with pytest.raises(ValueError, match="no physical pixel size"):
        train(data, epochs=1, input_size=SIZE, architecture=SMALL_NET)


# -- bad input -----------------------------------------------------------------------------


def test_folder_with_unreadable_and_too_small_files_skips_and_counts_them(tmp_path):
    data = blob_data(5, seed=0)
    for category, images in data.items():
        (tmp_path / category).mkdir()
        for i, image in enumerate(images):
            np.save(tmp_path / category / f"{i}.npy", image)
    (tmp_path / "blob" / "notes.txt").write_text("not an image")
    np.save(tmp_path / "plain" / "tiny.npy", np.zeros((8, 8), np.float32))
    model = train(tmp_path, epochs=1, **FAST)
    skipped = {s["input"].split("/")[-1]: s["reason"] for s in model.training["skipped"]}
    assert set(skipped) == {"notes.txt", "tiny.npy"}
    assert "needs at least 24 px on each side" in skipped["tiny.npy"]
    assert model.training["images_per_category"] == {"blob": 5, "plain": 5}  # images used
    assert model.training["samples"] == 10


@pytest.mark.parametrize("layout", ["missing", "empty", "one-category"])
def test_folders_without_two_categories_are_refused(tmp_path, layout):
    root = tmp_path / "data"
    if layout != "missing":
        root.mkdir()
    if layout == "one-category":
        (root / "only").mkdir()
        np.save(root / "only" / "a.npy", np.zeros((SIZE, SIZE)))
    with pytest.raises(ValueError, match="not a folder|at least two category"):
        train(root, epochs=1, **FAST)


def test_all_images_too_small_says_so():
    data = {"a": [np.zeros((16, 16))] * 3, "b": [np.ones((16, 16))] * 3}
    with pytest.raises(ValueError, match="needs at least 24 px on each side"):
        train(data, epochs=1, **FAST)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, "at least 1"),
        ({"folds": 1}, "at least 2 folds"),
        ({"validation": 1.5}, "fraction"),
        ({"learning_rate": -1}, "learning_rate"),
        ({"colour": "red"}, "unknown training option"),
        ({"architecture": {"head": "max"}}, "head must be one of"),
        ({"architecture": {"kernel_size": 4}}, "odd"),
        ({"architecture": {"last_kernel_size": 2}}, "last_kernel_size must be odd"),
        ({"sparsity": -0.5}, "sparsity"),
        ({"schedule": "cosine"}, "schedule: expected one of"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"input_size": 49}, "divisible"),
        ({"preprocessing": [{"step": "sharpen"}]}, "unknown step"),
        ({"pixel_size": -2}, "positive"),
    ],
)
def test_bad_options_are_named(options, message):
    merged = {**FAST, "epochs": 1, **options}
    with pytest.raises(ValueError, match=message):
        run_to_end(train_steps(blob_data(3, seed=0), **merged))


def test_folds_need_enough_files_per_category():
    with pytest.raises(ValueError, match="3-fold cross-validation needs at least 3 files"):
        train(blob_data(2, seed=0), folds=3, epochs=1, **FAST)


def test_sparsity_quiets_the_last_block():
    """The activity penalty: the last block of a model trained with it fires far less."""
    import torch

    from napari_scanprobe.learn.data import model_input

    data = blob_data(24, seed=3)
    images = data["plain"][:8]
    mean_activity = {}
    for sparsity in (0.0, 2.0):
        model = train(data, sparsity=sparsity, epochs=8, **FAST)
        net = model.network("cpu").eval()
        views = np.stack([model_input([im], None, model.spec, "test") for im in images])
        with torch.inference_mode():
            mean_activity[sparsity] = float(net.features(torch.from_numpy(views)).mean())
        assert model.training["options"]["sparsity"] == sparsity
    assert mean_activity[2.0] < 0.5 * mean_activity[0.0]
