"""Class activation maps: shapes on the input's grid, values, localisation, identities, sanity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_scanprobe.learn.cam import METHODS, cam, cam_lazy, layer_maps
from napari_scanprobe.learn.modelfile import ClassifierModel
from napari_scanprobe.learn.predict import predict
from napari_scanprobe.learn.train import train
from napari_scanprobe.nn.classifier import build_network, check_architecture

pytestmark = pytest.mark.slow  # every test here trains a network (or uses one trained here)

SMALL = {"blocks": 3, "filters": 8}  # for untrained hand-made models


def feature_image(rng: np.random.Generator, shape: tuple[int, int], blob: bool, radius: float = 2.5):
    """Noise plus one bright feature at a random place: a round blob, or a bar of similar area.

    The two classes share their global statistics, so only the feature's shape tells them
    apart -- a classifier must look at the feature. Returns (image, (cy, cx)).
    """
    img = rng.normal(0, 1, shape)
    margin = 2.4 * radius
    cy, cx = rng.uniform(margin, shape[0] - margin), rng.uniform(margin, shape[1] - margin)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    yy, xx = yy - cy, xx - cx
    if blob:
        img += 5 * np.exp(-(yy**2 + xx**2) / (2 * radius**2))
    else:
        a = rng.uniform(0, np.pi)
        u, v = yy * np.cos(a) + xx * np.sin(a), -yy * np.sin(a) + xx * np.cos(a)
        img += 5 * np.exp(-(u**2 / (2 * (2 * radius) ** 2) + v**2 / (2 * (radius / 2) ** 2)))
    return img, (cy, cx)


def blob_and_bar(rng: np.random.Generator, shape: tuple[int, int], radius: float = 2.5):
    """A blob in one half of the image and a bar in the other: (image, blob centre (cy, cx))."""
    half = shape[1] // 2
    blob, (cy, cx) = feature_image(rng, (shape[0], half), True, radius)
    bar = feature_image(rng, (shape[0], shape[1] - half), False, radius)[0]
    if rng.random() < 0.5:
        return np.hstack([blob, bar]), (cy, cx)
    return np.hstack([bar, blob]), (cy, cx + shape[1] - half)


@pytest.fixture(scope="module")
def shape_model() -> ClassifierModel:
    """A GAP-head classifier with the default architecture, trained in seconds to tell a round blob from a bar."""
    rng = np.random.default_rng(0)
    data = {
        "bar": [feature_image(rng, (32, 32), False)[0] for _ in range(32)],
        "blob": [feature_image(rng, (32, 32), True)[0] for _ in range(32)],
    }
    return train(data, input_size=32, pixel_size=None, preprocessing=[], epochs=20, seed=0, threads=1)


def hand_model(
    channels=(), categories=("a", "b"), head="gap", input_size=32, pixel_size=None, seed=0
) -> ClassifierModel:
    arch = check_architecture({**SMALL, "head": head}, max(1, len(channels)), len(categories), input_size)
    torch.manual_seed(seed)
    net = build_network(arch)
    state = {k: v.numpy() for k, v in net.state_dict().items() if v.is_floating_point()}
    return ClassifierModel(arch, state, list(categories), list(channels), pixel_size, input_size)


def peak(m: np.ndarray) -> tuple[int, int]:
    return tuple(int(v) for v in np.unravel_index(np.argmax(m), m.shape))


# -- shape and values -------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    "shape, image_px, model_px",
    [
        ((32, 32), None, None),  # exactly the network input
        ((37, 61), None, None),  # non-square, larger than the network: 2 x 2 tiles
        ((90, 45), None, None),  # 3 x 2 tiles, overlapping
        ((75, 83), 0.5, 1.0),  # shrunk to the model's pixel size (38 x 42 px seen), then back
        ((30, 40), 1.5, 1.0),  # enlarged (45 x 60 px seen)
        ((40, 33), (1.5, 1.0), 1.0),  # non-square pixels (60 x 33 px seen)
    ],
)
def test_map_has_the_input_shape_and_values_in_0_1(shape_model, method, shape, image_px, model_px):
    model = dataclasses.replace(shape_model, pixel_size=model_px)
    image = feature_image(np.random.default_rng(1), shape, True, radius=4)[0]
    result = cam(model, image, method, pixel_size=image_px)
    assert result.map.shape == shape and result.map.dtype == np.float32
    assert np.isfinite(result.map).all()
    assert result.map.min() >= 0 and result.map.max() == pytest.approx(1.0)
    assert result.method == method and result.layer == "block4"
    assert result.category in model.categories and 0 <= result.probability <= 1


def test_tiles_in_several_batches_give_the_same_map(shape_model, monkeypatch):
    import napari_scanprobe.learn.cam as cam_module

    image = feature_image(np.random.default_rng(14), (70, 90), True)[0]  # 3 x 3 tiles
    whole = {method: cam(shape_model, image, method) for method in METHODS}
    monkeypatch.setattr(cam_module, "BATCH", 2)
    for method in METHODS:
        batched = cam(shape_model, image, method)
        np.testing.assert_allclose(batched.map, whole[method].map, atol=1e-6)
        assert batched.category == whole[method].category and batched.probability == pytest.approx(
            whole[method].probability
        )


def test_category_and_probability_are_the_prediction(shape_model):
    image = feature_image(np.random.default_rng(2), (50, 70), False)[0]
    result = cam(shape_model, image)
    expected = predict(shape_model, image)
    assert result.category == expected.label
    assert result.probability == pytest.approx(expected.probabilities[expected.label], abs=1e-5)
    for c in shape_model.categories:
        assert result.probabilities[c] == pytest.approx(expected.probabilities[c], abs=1e-5)
    other = next(c for c in shape_model.categories if c != expected.label)
    targeted = cam(shape_model, image, target=other)
    assert targeted.category == other and targeted.probability == pytest.approx(
        expected.probabilities[other], abs=1e-5
    )
    assert cam(shape_model, image, target=shape_model.categories.index(other)).category == other
    # calibration offsets move both alike
    offsets = [0.0] * len(shape_model.categories)
    offsets[shape_model.categories.index(other)] = 30.0
    leaning = dataclasses.replace(shape_model, confidence={**shape_model.confidence, "offsets": offsets})
    assert cam(leaning, image).category == predict(leaning, image).label == other


# -- localisation -----------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_map_peaks_on_the_blob_not_on_the_bar(shape_model, method):
    """Each image holds a blob AND a bar: the map for "blob" must pick the blob."""
    rng = np.random.default_rng(3)
    hits, cases = 0, 12
    for i in range(cases):
        shape = (32, 64) if i % 2 else (45, 70)  # 1 x 2 tiles side by side, and 2 x 3 overlapping tiles
        image, (cy, cx) = blob_and_bar(rng, shape)
        y, x = peak(cam(shape_model, image, method, target="blob").map)
        hits += np.hypot(y - cy, x - cx) <= 6  # the blob's visible extent; ~5 % of a 32 x 64 image
    assert hits >= 0.75 * cases


@pytest.mark.parametrize("method", METHODS)
def test_map_peaks_on_the_blob_after_resampling(shape_model, method):
    """Images at half the model's pixel size: the map comes back onto the input's own grid."""
    model = dataclasses.replace(shape_model, pixel_size=2.0)
    rng = np.random.default_rng(4)
    hits, cases = 0, 8
    for _ in range(cases):
        image, (cy, cx) = blob_and_bar(rng, (64, 128), radius=5.0)  # 1 nm/px: the model sees 32 x 64
        y, x = peak(cam(model, image, method, target="blob", pixel_size=1.0).map)
        hits += np.hypot(y - cy, x - cx) <= 10  # the blob's extent at this scale
    assert hits >= 0.75 * cases


def test_earlier_layers_give_other_maps(shape_model):
    image = feature_image(np.random.default_rng(5), (37, 61), True)[0]
    last = cam(shape_model, image, "gradcam")
    first = cam(shape_model, image, "gradcam", layer="block1")
    assert first.layer == "block1" and first.map.shape == last.map.shape
    assert not np.allclose(first.map, last.map)


# -- identities and sanity --------------------------------------------------------------


def test_cam_equals_gradcam_for_the_gap_head(shape_model):
    """With GAP at the last layer, dS/dA_ij^k = w_ck / Z: Grad-CAM is CAM / Z, equal once normalised."""
    image = feature_image(np.random.default_rng(6), (47, 83), True)[0]
    resampled = dataclasses.replace(
        shape_model, pixel_size=1.0
    )  # 47 x 83 px at 0.7 nm/px: 33 x 58 px seen, 2 x 2 tiles
    for target in shape_model.categories:
        for model, pixel_size in ((shape_model, None), (resampled, 0.7)):
            a = cam(model, image, "cam", target=target, pixel_size=pixel_size).map
            b = cam(model, image, "gradcam", target=target, pixel_size=pixel_size).map
            assert a.shape == b.shape == image.shape and a.max() == pytest.approx(1.0)
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_gradcam_plus_plus_and_layercam_follow_the_papers():
    """``layer_maps`` against the formulas written out position by position in numpy."""
    rng = np.random.default_rng(7)
    a = np.abs(rng.normal(size=(2, 3, 4, 5)))  # activations after ReLU
    g = rng.normal(size=a.shape)
    expected_pp = np.zeros((2, 4, 5))
    expected_lc = np.zeros((2, 4, 5))
    for n in range(2):
        for k in range(3):
            total = a[n, k].sum()
            w = 0.0
            for i in range(4):
                for j in range(5):
                    den = 2 * g[n, k, i, j] ** 2 + total * g[n, k, i, j] ** 3
                    alpha = g[n, k, i, j] ** 2 / den if den != 0 else 0.0
                    w += alpha * max(g[n, k, i, j], 0.0)
                    expected_lc[n, i, j] += max(g[n, k, i, j], 0.0) * a[n, k, i, j]
            expected_pp[n] += w * a[n, k]
    at, gt = torch.from_numpy(a), torch.from_numpy(g)
    np.testing.assert_allclose(
        layer_maps("gradcam++", at, gt, None).numpy(), np.maximum(expected_pp, 0), rtol=1e-10
    )
    np.testing.assert_allclose(
        layer_maps("layercam", at, gt, None).numpy(), np.maximum(expected_lc, 0), rtol=1e-10
    )
    expected_gc = np.maximum((g.mean(axis=(2, 3))[:, :, None, None] * a).sum(axis=1), 0)
    np.testing.assert_allclose(layer_maps("gradcam", at, gt, None).numpy(), expected_gc, rtol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_randomised_weights_change_the_maps(shape_model, method):
    """Adebayo et al. 2018: a map that survives randomising the weights explains nothing.

    Every weight re-initialised (three random networks); images with a blob and a bar, so a map
    that merely follows the image's contrast would correlate with the trained one.
    """
    rng = np.random.default_rng(8)
    images = [blob_and_bar(rng, (32, 64))[0] for _ in range(6)]
    trained = [cam(shape_model, image, method, target="blob").map for image in images]
    correlations = []
    for seed in range(3):
        torch.manual_seed(seed)
        fresh = build_network(shape_model.architecture)
        randomised = dataclasses.replace(
            shape_model, state={k: v.numpy() for k, v in fresh.state_dict().items() if v.is_floating_point()}
        )
        for image, trained_map in zip(images, trained):
            random = cam(randomised, image, method, target="blob").map
            assert random.shape == trained_map.shape and np.isfinite(random).all()
            correlations.append(
                np.corrcoef(trained_map.ravel(), random.ravel())[0, 1] if random.std() > 0 else 0.0
            )
    assert np.mean(correlations) < 0.5


def test_an_all_zero_map_stays_zero():
    model = hand_model()
    # an output layer whose every weight votes against category 0: its CAM is negative everywhere -> 0
    model.state["output.weight"][:] = -np.abs(model.state["output.weight"])
    result = cam(model, np.random.default_rng(9).normal(size=(40, 40)), "cam", target=0)
    assert np.isfinite(result.map).all() and result.map.max() == 0


# -- movies and channels ----------------------------------------------------------------


def test_movie_maps_frame_by_frame_and_lazily(shape_model):
    rng = np.random.default_rng(10)
    # one frame of the other category: the movie's category is not a near tie of the frames
    movie = np.stack([feature_image(rng, (36, 40), f == 1)[0] for f in range(4)])
    eager = cam(shape_model, movie, "gradcam++")
    assert eager.map.shape == movie.shape and eager.map.dtype == np.float32
    expected = predict(shape_model, movie)
    assert eager.frame_categories == [f["label"] for f in expected.frames]
    assert eager.category == expected.label
    for f in range(4):
        alone = cam(shape_model, movie[f], "gradcam++")
        np.testing.assert_allclose(eager.map[f], alone.map, atol=1e-6)
        assert alone.category == eager.frame_categories[f]
        assert eager.frame_probabilities[f] == pytest.approx(alone.probability, abs=1e-5)

    lazy = cam_lazy(shape_model, movie, "gradcam++")
    assert type(lazy.map).__module__.startswith("dask") and lazy.map.chunks[0] == (1, 1, 1, 1)
    assert lazy.frame_categories == eager.frame_categories and lazy.category == eager.category
    np.testing.assert_allclose(np.asarray(lazy.map[2]), eager.map[2], atol=1e-6)
    np.testing.assert_allclose(lazy.map.compute(), eager.map, atol=1e-6)

    fixed = cam_lazy(shape_model, movie, "gradcam", target="bar")
    assert fixed.frame_categories == ["bar"] * 4 and fixed.category == "bar"


def test_several_channels():
    model = hand_model(channels=["Height", "Phase"])
    rng = np.random.default_rng(11)
    image = {"Height": rng.normal(size=(40, 50)), "Phase": rng.normal(size=(40, 50))}
    for method in METHODS:
        assert cam(model, image, method).map.shape == (40, 50)


# -- bad input --------------------------------------------------------------------------


def test_cam_method_needs_the_gap_head():
    dense = hand_model(head="dense")
    image = np.random.default_rng(12).normal(size=(32, 32))
    with pytest.raises(ValueError, match="'dense' head.*gradcam, gradcam\\+\\+, layercam"):
        cam(dense, image, "cam")
    for method in ("gradcam", "gradcam++", "layercam"):  # the others work with a dense head
        result = cam(dense, image, method)
        assert result.map.shape == (32, 32) and np.isfinite(result.map).all()


def test_bad_options_are_named(shape_model):
    image = np.zeros((32, 32))
    with pytest.raises(ValueError, match="no layer 'conv9'.*block1, block2, block3, block4"):
        cam(shape_model, image, layer="conv9")
    with pytest.raises(ValueError, match="method 'cam' explains the last layer \\(block4\\)"):
        cam(shape_model, image, "cam", layer="block1")
    with pytest.raises(ValueError, match="no category 'infected'.*'bar', 'blob'"):
        cam(shape_model, image, target="infected")
    with pytest.raises(ValueError, match="no category 5"):
        cam(shape_model, image, target=5)
    with pytest.raises(ValueError, match="unknown 'smoothgrad'"):
        cam(shape_model, image, "smoothgrad")
    with pytest.raises(ValueError, match="needs at least 16 px on each side"):
        cam(shape_model, np.zeros((12, 40)))


def test_missing_channel_is_named():
    model = hand_model(channels=["Height", "Phase"])
    rng = np.random.default_rng(13)
    with pytest.raises(ValueError, match="no channel 'Phase'"):
        cam(model, {"Height": rng.normal(size=(40, 40))})
    with pytest.raises(ValueError, match="pass a dict"):
        cam(model, rng.normal(size=(40, 40)))
