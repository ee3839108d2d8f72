"""Honest confidence: calibrated probabilities and the "unlike the training data" score.

**Calibration** (temperature scaling, Guo et al. 2017): a network trained on few images is often
over-confident. One number ``T`` divides the logits, ``softmax(logits / T)``, fitted to minimise
the cross-entropy of held-out predictions (the validation images, out-of-fold with ``folds``).
It never changes which category wins, only how sure the model says it is. The expected
calibration error (``metrics.expected_calibration_error``) is reported before and after.

**Unlike the training data**: the network's pooled last-block features of every training image
give a mean and a (shrunk) covariance; an image's Mahalanobis distance to them, divided by the
95th percentile of the held-out images' distances, is its ``unlike_training`` score: about 1 or
less for images like those the model learnt from, well above 1 (say > 2) for an image of
another kind (other sample, other instrument, broken scan) -- where the category and its
probability mean little, however confident.
"""

from __future__ import annotations

import numpy as np

#: Temperatures are searched in [1/20, 20].
_LOG_T_RANGE = (np.log(0.05), np.log(20.0))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities as if the logits had been divided by ``temperature`` (rows sum to 1)."""
    logp = np.log(np.clip(np.asarray(probabilities, dtype=float), 1e-12, 1.0)) / float(temperature)
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


def fit_temperature(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """The temperature minimising the cross-entropy of ``probabilities`` against ``truth``.

    Works from probabilities: ``log p`` differs from the logits by a per-row constant, which the
    softmax ignores. Returns 1.0 (no change) with fewer than 2 images."""
    from scipy.optimize import minimize_scalar

    truth = np.asarray(truth, dtype=int)
    if len(truth) < 2:
        return 1.0

    def loss(log_t: float) -> float:
        p = apply_temperature(probabilities, np.exp(log_t))
        return float(-np.log(np.clip(p[np.arange(len(truth)), truth], 1e-12, 1)).mean())

    result = minimize_scalar(loss, bounds=_LOG_T_RANGE, method="bounded", options={"xatol": 1e-3})
    return float(np.exp(result.x))


def feature_reference(train_features: np.ndarray, held_out_features: np.ndarray | None = None) -> dict:
    """What :func:`unlike_training` needs, JSON-ready: mean, precision matrix and the scale.

    ``train_features`` (N, K): pooled features of the training images; ``held_out_features``:
    those of the validation images (the scale's reference; the training images when None)."""
    x = np.asarray(train_features, dtype=float)
    mean = x.mean(axis=0)
    cov = np.cov(x, rowvar=False) if len(x) > 1 else np.zeros((x.shape[1], x.shape[1]))
    cov = np.atleast_2d(cov)
    shrink = 0.1 * np.trace(cov) / max(1, len(cov)) + 1e-6
    precision = np.linalg.inv(0.9 * cov + shrink * np.eye(len(cov)))
    reference = {"mean": mean.tolist(), "precision": precision.tolist(), "scale": 1.0}
    ref = x if held_out_features is None or not len(held_out_features) else held_out_features
    distances = _mahalanobis(ref, reference)
    reference["scale"] = float(max(np.percentile(distances, 95), 1e-6))
    return reference


def _mahalanobis(features: np.ndarray, reference: dict) -> np.ndarray:
    d = np.atleast_2d(np.asarray(features, dtype=float)) - np.asarray(reference["mean"])
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, np.asarray(reference["precision"]), d), 0))


def unlike_training(features: np.ndarray, reference: dict) -> np.ndarray:
    """The unlike-training score of each row of ``features`` (see the module docstring)."""
    return _mahalanobis(features, reference) / float(reference["scale"])
