"""The feature baseline: what a CNN must beat to earn its keep.

Each image, prepared exactly as the network sees it (``data.model_input``: preprocessing,
resampling, normalisation), becomes a vector of hand-made features per channel:

* height statistics: skewness, kurtosis, percentiles 1-99, histogram entropy, the fraction of
  pixels beyond 2 and 3 standard deviations;
* sharpness and texture: mean absolute slope along and across the scan lines, their ratio, the
  Laplacian energy, the mean and spread of the local standard deviation at two scales, the
  correlation of neighbouring scan lines and columns;
* the radially averaged FFT power in 12 log-spaced frequency bands (shares of the total, log),
  and the share of power along the fast and the slow scan axes.

A random forest (500 trees, class-balanced) or a standardised logistic regression on them
(scikit-learn). ``train(..., baseline=True)`` (``scanprobe train --baseline``) reports it on the
same validation images as the CNN, and :func:`compare` says whether the network is ahead of it by
more than the luck of which images were validated (a paired bootstrap over those images).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .metrics import paired_difference

N_BANDS = 12
METHODS = ("random_forest", "logistic_regression")


def _channel_features(image: np.ndarray) -> list[float]:
    from scipy import ndimage, stats

    image = np.asarray(image, dtype=np.float64)
    flat = image.ravel()
    std = flat.std() or 1.0
    z = (flat - flat.mean()) / std
    hist, _ = np.histogram(z, bins=32, range=(-4, 4))
    p = hist[hist > 0] / hist.sum()
    out = [
        float(stats.skew(z)),
        float(stats.kurtosis(z)),
        *np.percentile(z, [1, 5, 25, 50, 75, 95, 99]).tolist(),
        float(-(p * np.log(p)).sum()),
        float((np.abs(z) > 2).mean()),
        float((np.abs(z) > 3).mean()),
    ]
    img = (image - image.mean()) / std
    gx, gy = np.abs(np.diff(img, axis=1)).mean(), np.abs(np.diff(img, axis=0)).mean()
    out += [float(gx), float(gy), float(gx / (gy + 1e-9)), float((ndimage.laplace(img) ** 2).mean())]
    for size in (3, 9):
        mean = ndimage.uniform_filter(img, size)
        local = np.sqrt(np.maximum(ndimage.uniform_filter(img**2, size) - mean**2, 0))
        out += [float(local.mean()), float(local.std())]
    out += [_corr(img[1:], img[:-1]), _corr(img[:, 1:], img[:, :-1])]
    power = np.abs(np.fft.fftshift(np.fft.fft2(img))) ** 2
    h, w = img.shape
    fy, fx = np.meshgrid(np.arange(h) - h // 2, np.arange(w) - w // 2, indexing="ij")
    radius = np.hypot(fy / h, fx / w)
    edges = np.concatenate([[0], np.geomspace(1 / max(h, w), 0.5 * np.sqrt(2), N_BANDS)])
    total = power.sum() - power[h // 2, w // 2] + 1e-12
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        band = power[(radius > lo) & (radius <= hi)].sum()
        out.append(float(np.log(band / total + 1e-9)))
    out += [
        float(np.log(power[h // 2, :].sum() / total + 1e-9)),
        float(np.log(power[:, w // 2].sum() / total + 1e-9)),
    ]
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def image_features(view: np.ndarray) -> np.ndarray:
    """The feature vector of one prepared image ``(C, H, W)`` (see the module docstring)."""
    return np.asarray([f for channel in view for f in _channel_features(channel)], dtype=np.float64)


def fit_baseline(features: np.ndarray, labels: np.ndarray, method: str = "random_forest", seed: int = 0):
    """A fitted scikit-learn classifier on ``features`` (N, F); ``predict_proba`` gives probabilities."""
    if method not in METHODS:
        raise ValueError(f"baseline: method must be one of {METHODS}, got {method!r}")
    if method == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        clf = RandomForestClassifier(n_estimators=500, class_weight="balanced", random_state=seed, n_jobs=1)
    else:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        clf = make_pipeline(
            StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
        )
    return clf.fit(np.nan_to_num(features), labels)


def baseline_probabilities(
    train_views: Sequence[np.ndarray],
    train_labels: np.ndarray,
    test_views: Sequence[np.ndarray],
    n_classes: int,
    method: str = "random_forest",
    seed: int = 0,
) -> np.ndarray:
    """Probabilities ``(len(test_views), n_classes)`` of the baseline fitted on the training views."""
    train_x = np.stack([image_features(v) for v in train_views])
    test_x = np.stack([image_features(v) for v in test_views])
    clf = fit_baseline(train_x, np.asarray(train_labels), method, seed)
    out = np.zeros((len(test_views), n_classes))
    out[:, clf.classes_] = clf.predict_proba(np.nan_to_num(test_x))
    return out


def compare(truth: np.ndarray, network_probs: np.ndarray, feature_probs: np.ndarray, seed: int = 0) -> dict:
    """The network's accuracy and ROC AUC minus the features' on the same images, each with its
    95 % interval (:func:`~.metrics.paired_difference`), and a verdict from the accuracy: the
    ``"network"`` or the ``"features"`` are ahead when the interval excludes 0, else ``"level"``
    (``"undetermined"`` with fewer than two images)."""
    accuracy = paired_difference(truth, network_probs, feature_probs, "accuracy", seed=seed)
    auc = paired_difference(truth, network_probs, feature_probs, "roc_auc", seed=seed)
    low, high = accuracy["low"], accuracy["high"]
    if not (np.isfinite(low) and np.isfinite(high)):
        verdict = "undetermined"
    else:
        verdict = "network" if low > 0 else "features" if high < 0 else "level"
    return {"accuracy": accuracy, "roc_auc": auc, "verdict": verdict}


def comparison_text(comparison: dict) -> str:
    """One sentence for a person: the differences, their intervals and what they mean (also for
    a comparison read back from a model file, where an undefined figure is None)."""
    acc, auc = comparison["accuracy"], comparison["roc_auc"]

    def known(v) -> bool:
        return v is not None and bool(np.isfinite(v))

    def signed(v: float, scale: float, digits: int) -> str:
        return f"{scale * v:+.{digits}f}".replace("-", "\u2212")

    if comparison["verdict"] == "undetermined":  # else the accuracy and its interval are known
        return "network minus features: too few images to tell"
    text = (
        f"network minus features: accuracy {signed(acc['difference'], 100, 1)} points "
        f"(95 % interval {signed(acc['low'], 100, 1)} to {signed(acc['high'], 100, 1)})"
    )
    if known(auc["difference"]):
        text += f", ROC AUC {signed(auc['difference'], 1, 3)}"
    meaning = {
        "network": "the network is ahead",
        "features": "the features are ahead",
        "level": f"level: {acc['n']} images cannot tell them apart",
    }[comparison["verdict"]]
    return f"{text}: {meaning}"
