"""Calibration, the unlike-training score, the feature baseline and the end-of-training warnings."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_scanprobe.learn.baseline import baseline_probabilities, compare, comparison_text, image_features
from napari_scanprobe.learn.calibration import (
    MIN_FOR_OFFSETS,
    calibrated,
    feature_reference,
    fit_calibration,
    unlike_training,
)
from napari_scanprobe.learn.metrics import expected_calibration_error, paired_difference
from napari_scanprobe.learn.train import train
from napari_scanprobe.plainjson import jsonsafe

from .conftest import SIZE, SMALL_NET, blob_data

FAST = {"input_size": SIZE, "pixel_size": None, "architecture": SMALL_NET}


def _overconfident(n: int, temperature: float, seed: int = 0, lean: tuple = (0.0, 0.0)):
    """Labels drawn from softmax(logits); the probabilities given are
    softmax(logits * temperature + lean)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, len(lean)))
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = np.array([rng.choice(len(lean), p=p) for p in true_p])
    shown = np.exp(logits * temperature + np.asarray(lean))
    return truth, shown / shown.sum(1, keepdims=True)


def test_temperature_scaling_recovers_a_known_overconfidence():
    truth, probs = _overconfident(20000, temperature=3.0)
    t = fit_calibration(truth, probs, offsets=False)["temperature"]
    assert t == pytest.approx(3.0, rel=0.08)
    before, after = (
        expected_calibration_error(truth, probs),
        expected_calibration_error(truth, calibrated(probs, {"temperature": t})),
    )
    assert before > 0.1 and after < 0.02
    assert (
        calibrated(probs, {"temperature": t}).argmax(1) == probs.argmax(1)
    ).all()  # never changes the winner


def test_offsets_undo_a_known_lean_towards_one_category():
    # three categories; the shown probabilities are over-confident and lean towards category 0
    truth, probs = _overconfident(20000, temperature=2.0, lean=(1.5, 0.0, -0.5))
    fit = fit_calibration(truth, probs)
    assert fit["temperature"] == pytest.approx(2.0, rel=0.08)
    # softmax(log p / T + b): b = -lean / T, up to the shift that makes b_0 = 0
    assert fit["offsets"] == pytest.approx([0.0, 0.75, 1.0], abs=0.1)
    fixed = calibrated(probs, fit)
    assert expected_calibration_error(truth, fixed) < 0.02 < expected_calibration_error(truth, probs)
    assert (fixed.argmax(1) == truth).mean() > (probs.argmax(1) == truth).mean() + 0.015
    # the temperature alone cannot remove the lean
    alone = fit_calibration(truth, probs, offsets=False)
    assert alone["offsets"] == [0.0, 0.0, 0.0]
    assert (calibrated(probs, alone).argmax(1) == probs.argmax(1)).all()


def test_offsets_are_kept_only_where_the_lean_is_real():
    truth, probs = _overconfident(2000, temperature=2.0)  # over-confident, no lean
    fit = fit_calibration(truth, probs)
    assert fit["offsets_p_value"] > 0.05 and fit["offsets"] == [0.0, 0.0]
    assert fit["temperature"] == pytest.approx(2.0, rel=0.15)
    truth, probs = _overconfident(2000, temperature=2.0, lean=(1.0, 0.0))
    fit = fit_calibration(truth, probs)
    assert fit["offsets_p_value"] < 1e-3 and fit["offsets"][1] == pytest.approx(0.5, abs=0.15)


def test_offsets_need_enough_held_out_images_per_category():
    truth, probs = _overconfident(400, temperature=1.0, lean=(2.0, 0.0))
    assert np.any(fit_calibration(truth, probs)["offsets"])
    few = np.concatenate([np.flatnonzero(truth == 1)[: MIN_FOR_OFFSETS - 1], np.flatnonzero(truth == 0)])
    assert fit_calibration(truth[few], probs[few])["offsets"] == [0.0, 0.0]
    assert fit_calibration(truth[:1], probs[:1]) == {"temperature": 1.0, "offsets": [0.0, 0.0]}
    assert np.allclose(calibrated(probs, {}), probs)  # a model saved without calibration


def test_expected_calibration_error_of_known_cases():
    truth = np.array([0, 1, 1, 0])
    perfect = np.eye(2)[truth]
    assert expected_calibration_error(truth, perfect) == 0
    # always 0.9 sure of class 0, right half of the time: |0.9 - 0.5| = 0.4
    assert expected_calibration_error(truth, np.tile([0.9, 0.1], (4, 1))) == pytest.approx(0.4)


def test_unlike_training_is_about_one_inside_and_large_outside():
    rng = np.random.default_rng(0)
    train_f, held_out = rng.normal(0, 1, (300, 8)), rng.normal(0, 1, (100, 8))
    ref = feature_reference(train_f, held_out)
    inside = unlike_training(rng.normal(0, 1, (200, 8)), ref)
    outside = unlike_training(rng.normal(6, 1, (20, 8)), ref)
    assert np.median(inside) < 1 < outside.min() and outside.min() > 3


def test_baseline_features_separate_blobs_and_have_a_fixed_length():
    data = blob_data(20, seed=3)
    test = blob_data(10, seed=4)
    views = [v[None] for v in data["plain"] + data["blob"]]
    labels = np.array([0] * 20 + [1] * 20)
    assert len({len(image_features(v)) for v in views}) == 1
    probs = baseline_probabilities(views, labels, [v[None] for v in test["plain"] + test["blob"]], 2)
    assert ((probs.argmax(1) == np.array([0] * 10 + [1] * 10)).mean()) >= 0.9


def _two_methods(n: int, right_a: int, right_b: int):
    """Probabilities of two methods on ``n`` images: A right on the first ``right_a``, B on the
    last ``right_b`` (each 0.8 sure)."""
    truth = np.arange(n) % 2
    sure = lambda right: np.where(right[:, None] == (np.arange(2)[None] == truth[:, None]), 0.8, 0.2)  # noqa: E731
    return truth, sure(np.arange(n) < right_a), sure(np.arange(n) >= n - right_b)


def test_paired_difference_of_known_cases():
    truth, a, b = _two_methods(100, 100, 50)
    d = paired_difference(truth, a, b)
    assert d["difference"] == pytest.approx(0.5) and 0.35 < d["low"] < 0.5 < d["high"] < 0.65
    same = paired_difference(truth, a, a, "roc_auc")
    assert same["difference"] == same["low"] == same["high"] == 0
    assert paired_difference(truth, b, a, "roc_auc")["high"] < 0
    with pytest.raises(ValueError, match="'accuracy' or 'roc_auc'"):
        paired_difference(truth, a, b, "f1")
    with pytest.raises(ValueError, match="same images"):
        paired_difference(truth, a, b[:-1])


def test_compare_says_who_is_ahead_only_beyond_the_luck_of_the_draw():
    truth, a, b = _two_methods(200, 190, 150)
    assert compare(truth, a, b)["verdict"] == "network"
    behind = compare(truth, b, a)
    assert behind["verdict"] == "features"
    assert comparison_text(behind).startswith("network minus features: accuracy \u221220.0 points")
    truth, a, b = _two_methods(30, 27, 25)  # 90 % against 83 %: 30 images cannot tell
    level = compare(truth, a, b)
    assert level["verdict"] == "level" and level["accuracy"]["low"] < 0 < level["accuracy"]["high"]
    assert comparison_text(level).endswith("level: 30 images cannot tell them apart")
    undetermined = compare(truth[:1], a[:1], b[:1])
    assert undetermined["verdict"] == "undetermined"
    # as read back from a model file, where NaN is stored as None
    assert comparison_text(jsonsafe(undetermined)) == "network minus features: too few images to tell"
    one_class = compare(np.ones(30, dtype=int), a, b)  # no ROC AUC with one category
    assert one_class["roc_auc"]["difference"] != one_class["roc_auc"]["difference"]  # NaN
    assert "ROC AUC" not in comparison_text(jsonsafe(one_class))


@pytest.mark.slow
def test_chance_level_and_tiny_validation_are_warned():
    rng = np.random.default_rng(0)
    noise = {c: [rng.normal(size=(SIZE, SIZE)).astype(np.float32) for _ in range(10)] for c in ("a", "b")}
    model = train(noise, epochs=3, min_epochs=1, seed=0, **FAST)
    text = " ".join(model.training["warnings"])
    assert "not shown to be better than guessing" in text and "--permutations" in text
    assert "only 4 validation images" in text and "--folds 5" in text


@pytest.mark.slow
def test_a_tiny_category_is_warned_and_a_good_model_is_not_called_chance(blob_model):
    data = blob_data(40, seed=1)
    data["blob"] = data["blob"][:6]
    model = train(data, epochs=4, seed=0, **FAST)
    text = " ".join(model.training["warnings"])
    assert "category 'blob' has only 6 images" in text
    assert not any("guessing" in w for w in blob_model.training["warnings"])
    assert blob_model.confidence["reference"]["scale"] > 0 and blob_model.confidence["temperature"] > 0


@pytest.mark.slow
def test_a_validation_loss_lowest_after_the_first_epoch_is_warned(blob_model):
    from napari_scanprobe.learn.checks import training_warnings

    rising = [{**e, "val_loss": 0.5 + 0.1 * i} for i, e in enumerate(blob_model.history)]
    assert len(rising) > 1
    text = " ".join(training_warnings(dataclasses.replace(blob_model, history=rising)))
    assert "lowest after the first epoch" in text
    assert not any("first epoch" in w for w in training_warnings(blob_model))


@pytest.mark.slow
def test_a_network_behind_the_features_is_warned(blob_model):
    from napari_scanprobe.learn.checks import training_warnings

    truth, network, features = _two_methods(100, 70, 95)
    metrics = {
        **blob_model.metrics,
        "baseline": {"network_minus_features": compare(truth, network, features)},
    }
    text = " ".join(training_warnings(dataclasses.replace(blob_model, metrics=metrics)))
    assert (
        "the feature baseline is more accurate than the network on the validation images (25.0 points" in text
    )
    assert "does not earn its keep" in text
    assert not any("earn its keep" in w for w in training_warnings(blob_model))
