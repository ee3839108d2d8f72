"""Classification metrics from true labels and predicted probabilities (numpy only)."""

from __future__ import annotations

import numpy as np


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the positive class (ties count half); NaN if undefined."""
    truth = np.asarray(truth).astype(bool)
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(score)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def classification_report(truth: np.ndarray, probabilities: np.ndarray, categories: list[str]) -> dict:
    """Accuracy, balanced accuracy, per-class precision/recall/F1, confusion matrix, ROC AUC, ECE.

    ``confusion[i][j]`` counts images of true class ``i`` predicted as ``j``. ROC AUC is the
    positive class's for two categories, else the mean one-vs-rest AUC over the classes present.
    """
    truth = np.asarray(truth, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    predicted = probabilities.argmax(axis=1)
    k = len(categories)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = {}
    recalls = []
    for i, name in enumerate(categories):
        support = int(confusion[i].sum())
        called = int(confusion[:, i].sum())
        tp = int(confusion[i, i])
        precision = tp / called if called else float("nan")
        recall = tp / support if support else float("nan")
        f1 = (
            2 * precision * recall / (precision + recall)
            if called and support and (precision + recall)
            else float("nan")
        )
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        if support:
            recalls.append(recall)
    return {
        "n": int(truth.size),
        "accuracy": float((predicted == truth).mean()) if truth.size else float("nan"),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else float("nan"),
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "roc_auc": _auc(truth, probabilities),
        "ece": expected_calibration_error(truth, probabilities),
    }


def _auc(truth: np.ndarray, probabilities: np.ndarray) -> float:
    """The positive class's ROC AUC for two categories, else the mean one-vs-rest AUC over the
    classes present."""
    k = probabilities.shape[1]
    if k == 2:
        return roc_auc(truth == 1, probabilities[:, 1])
    aucs = [roc_auc(truth == i, probabilities[:, i]) for i in range(k)]
    aucs = [a for a in aucs if np.isfinite(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def cross_entropy(truth: np.ndarray, probabilities: np.ndarray) -> float:
    p = np.clip(
        np.asarray(probabilities, dtype=float)[np.arange(len(truth)), np.asarray(truth, dtype=int)],
        1e-12,
        1.0,
    )
    return float(-np.log(p).mean())


def expected_calibration_error(truth: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """ECE: the mean |confidence - accuracy| over ``bins`` equal-width confidence bins, weighted
    by the share of images in each (confidence = the winning category's probability); NaN if empty."""
    truth = np.asarray(truth, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    if truth.size == 0:
        return float("nan")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == truth
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            ece += inside.mean() * abs(confidence[inside].mean() - correct[inside].mean())
    return float(ece)


def paired_difference(
    truth: np.ndarray,
    probs_a: np.ndarray,
    probs_b: np.ndarray,
    metric: str = "accuracy",
    draws: int = 2000,
    seed: int = 0,
) -> dict:
    """``metric`` (``"accuracy"`` or ``"roc_auc"``) of ``probs_a`` minus that of ``probs_b`` on the
    same images, with its 95 % interval from a paired bootstrap: ``draws`` resamplings of the
    images with replacement, both methods scored on each. An interval that excludes 0 means the
    difference is larger than the luck of which images were tested."""
    if metric not in ("accuracy", "roc_auc"):
        raise ValueError(f"metric: expected 'accuracy' or 'roc_auc', got {metric!r}")
    truth = np.asarray(truth, dtype=int)
    probs_a, probs_b = np.asarray(probs_a, dtype=float), np.asarray(probs_b, dtype=float)
    if probs_a.shape != probs_b.shape or len(probs_a) != len(truth):
        raise ValueError("paired_difference: both methods need probabilities for the same images")
    n = len(truth)
    out = {
        "metric": metric,
        "n": int(n),
        "difference": float("nan"),
        "low": float("nan"),
        "high": float("nan"),
    }
    if n < 2:
        return out
    samples = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    if metric == "accuracy":  # each draw's accuracy is the mean of its images' right/wrong
        correct_a = (probs_a.argmax(1) == truth).astype(float)
        correct_b = (probs_b.argmax(1) == truth).astype(float)
        out["difference"] = float(correct_a.mean() - correct_b.mean())
        diffs = correct_a[samples].mean(1) - correct_b[samples].mean(1)
    else:
        out["difference"] = _auc(truth, probs_a) - _auc(truth, probs_b)
        diffs = np.array([_auc(truth[i], probs_a[i]) - _auc(truth[i], probs_b[i]) for i in samples])
    if np.isfinite(diffs).sum() >= draws // 2:
        out["low"], out["high"] = (float(v) for v in np.nanpercentile(diffs, [2.5, 97.5]))
    return out
