"""Honest confidence: calibrated probabilities and the "unlike the training data" score.

**Calibration** (bias-corrected temperature scaling, Guo et al. 2017; Alexandari et al. 2020):
a network trained on few images is often over-confident, and its picture-level output can lean
to one category: it is trained on tiles, and a picture's probabilities are the mean over its
tiles, so a "good" picture with a few confidently "bad" tiles (a contaminant, a pit) drifts
towards "bad". One number ``T`` divides the log-probabilities and one offset per category
(the first fixed at 0) is added, ``softmax(log p / T + b)``, fitted to minimise the
cross-entropy of held-out predictions (the validation images, out-of-fold with ``folds``). ``T``
never changes which category wins; the offsets move the decision boundary, so they are fitted
only when every category has at least :data:`MIN_FOR_OFFSETS` held-out images, and kept only
when they explain those images significantly better than the temperature alone (a
likelihood-ratio test, p < :data:`OFFSETS_P_VALUE`); otherwise an offset would follow the noise
of a few pictures. The expected calibration error (``metrics.expected_calibration_error``) is
reported before and after.

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
_T_RANGE = (0.05, 20.0)


#: Offsets are fitted only when every category has at least this many held-out images.
MIN_FOR_OFFSETS = 40

#: Offsets are searched in [-5, 5] (a factor of e^5 ≈ 150 on the odds).
_OFFSET_RANGE = (-5.0, 5.0)


#: Offsets are kept only when they explain the held-out images better than the temperature
#: alone at this significance (a likelihood-ratio test).
OFFSETS_P_VALUE = 0.05


def fit_calibration(truth: np.ndarray, probabilities: np.ndarray, offsets: bool | None = None) -> dict:
    """``{"temperature": T, "offsets": [b_0 = 0, b_1, ...]}`` minimising the cross-entropy of
    ``softmax(log p / T + b)`` against ``truth`` (see the module docstring).

    Works from probabilities: ``log p`` differs from the logits by a per-row constant, which the
    softmax ignores. ``offsets``: None fits them when every category has :data:`MIN_FOR_OFFSETS`
    images or more, and keeps them when a likelihood-ratio test against the temperature alone
    gives p < :data:`OFFSETS_P_VALUE` (``"offsets_p_value"`` in the result); False never (all
    zero: temperature scaling alone); True always. Fewer than 2 images: no change."""
    from scipy.stats import chi2

    truth = np.asarray(truth, dtype=int)
    probs = np.asarray(probabilities, dtype=float)
    n_classes = probs.shape[1] if probs.ndim == 2 else 0
    if len(truth) < 2 or n_classes < 2:
        return {"temperature": 1.0, "offsets": [0.0] * max(n_classes, 0)}
    alone, loss_alone = _fit(truth, probs, False)
    if offsets is False or (
        offsets is None and np.bincount(truth, minlength=n_classes).min() < MIN_FOR_OFFSETS
    ):
        return alone
    both, loss_both = _fit(truth, probs, True)
    if offsets:
        return both
    p_value = float(chi2.sf(max(0.0, 2 * len(truth) * (loss_alone - loss_both)), n_classes - 1))
    return {**(both if p_value < OFFSETS_P_VALUE else alone), "offsets_p_value": p_value}


def _fit(truth: np.ndarray, probs: np.ndarray, offsets: bool) -> tuple[dict, float]:
    """The calibration with or without offsets, and its mean cross-entropy."""
    from scipy.optimize import minimize

    n_classes = probs.shape[1]
    logp = np.log(np.clip(probs, 1e-12, 1.0))
    rows = np.arange(len(truth))

    def loss(w: np.ndarray) -> float:  # w: 1 / T, then the offsets; convex in w
        z = logp * w[0]
        if offsets:
            z = z + np.concatenate([[0.0], w[1:]])
        z = z - z.max(axis=1, keepdims=True)
        return float(-(z[rows, truth] - np.log(np.exp(z).sum(axis=1))).mean())

    size = n_classes if offsets else 1
    start = np.concatenate([[1.0], np.zeros(size - 1)])
    bounds = [(1 / _T_RANGE[1], 1 / _T_RANGE[0])] + [_OFFSET_RANGE] * (size - 1)
    result = minimize(loss, start, method="L-BFGS-B", bounds=bounds)
    w = result.x if np.isfinite(result.fun) and result.fun <= loss(start) else start
    b = [0.0, *map(float, w[1:])] if offsets else [0.0] * n_classes
    return {"temperature": float(1 / w[0]), "offsets": b}, loss(w)


def calibrated(probabilities: np.ndarray, confidence: dict) -> np.ndarray:
    """Probabilities ``(N, classes)`` (a picture's mean over its tiles) calibrated with a model's
    ``confidence``: ``softmax(log p / T + b)`` (``temperature`` T and ``offsets`` b; missing: no
    change)."""
    logp = np.log(np.clip(np.asarray(probabilities, dtype=float), 1e-12, 1.0))
    logp = logp / float(confidence.get("temperature", 1.0))
    if confidence.get("offsets") is not None:
        logp = logp + np.asarray(confidence["offsets"], dtype=float)
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


def offsets_text(calibration: dict, categories: list[str]) -> str:
    """``", offsets good +1.18 (accuracy 0.85 before them)"``: the fitted offsets in words, for
    the training report; "" when there are none."""
    offsets = calibration.get("offsets") or []
    if not any(offsets):
        return ""
    named = ", ".join(f"{c} {b:+.2f}" for c, b in zip(categories, offsets, strict=False) if b)
    before = calibration.get("accuracy_uncalibrated")
    return f", offsets {named}" + (f" (accuracy {before:.3f} before them)" if before is not None else "")


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
