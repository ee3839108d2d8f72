"""Warnings at the end of training: when the figures a model reports do not mean much.

* **At chance**: the validation balanced accuracy is within two standard errors of guessing
  (1 / number of categories), or the validation loss was lowest after the first epoch.
* **Too few validation images**: fewer than :data:`MIN_VALIDATION` images (or fewer than 5 of a
  category) make an accuracy uncertain by more than about ±10 %.
* **A tiny category**: fewer than :data:`MIN_PER_CATEGORY` images, or under a fifth of the
  largest category.
* **Behind the features** (with ``baseline``): the feature baseline is more accurate than the
  network on the validation images by more than their luck of the draw
  (:func:`~.baseline.compare`).

Each warning says what to do: ``folds`` (cross-validation: every image validates once) and
``permutations`` (does the model beat shuffled labels?), more images, checking the labels.
"""

from __future__ import annotations

import math

MIN_VALIDATION = 20
MIN_PER_CATEGORY = 10


def training_warnings(model) -> list[str]:
    """Plain-language warnings about a freshly trained model (an empty list when all is well)."""
    warnings = []
    metrics, training = model.metrics, model.training
    opts = training.get("options", {})
    counts = training.get("images_per_category", {})
    n_val = int(metrics.get("n", 0) or 0)
    k = max(2, len(model.categories))
    balanced = metrics.get("balanced_accuracy")
    if n_val and balanced is not None and math.isfinite(balanced):
        chance = 1 / k
        margin = 2 * math.sqrt(chance * (1 - chance) / n_val)
        if balanced <= chance + margin:
            warnings.append(
                f"the model is not shown to be better than guessing on its {n_val} validation images (balanced accuracy "
                f"{balanced:.2f}, chance {chance:.2f}, within two standard errors of it): check the labels, add images, or train with "
                "--permutations 20 to test it against shuffled labels"
            )
    val_losses = [e["val_loss"] for e in model.history if math.isfinite(e.get("val_loss", math.nan))]
    if len(val_losses) > 1 and min(val_losses) == val_losses[0]:
        warnings.append(
            "the validation loss was lowest after the first epoch: the network learnt nothing that held "
            "on the validation images"
        )
    if not opts.get("folds") and n_val:
        per_class = metrics.get("per_class", {})
        smallest = min((c.get("support", 0) for c in per_class.values()), default=0)
        if n_val < MIN_VALIDATION or smallest < 5:
            spread = 2 * math.sqrt(0.25 / n_val)
            warnings.append(
                f"only {n_val} validation images ({smallest} in the smallest category): the accuracy is "
                f"uncertain by about ±{spread:.0%}; train with --folds 5 so every image is validated once"
            )
    elif not n_val and not opts.get("folds"):
        warnings.append("no validation images: nothing tells how well the model works; use --folds 5")
    versus = metrics.get("baseline", {}).get("network_minus_features")
    if versus and versus["verdict"] == "features":
        acc = versus["accuracy"]
        warnings.append(
            f"the feature baseline is more accurate than the network on the validation images "
            f"({-100 * acc['difference']:.1f} points, 95 % interval {-100 * acc['high']:.1f} to "
            f"{-100 * acc['low']:.1f}): on these images the network does not earn its keep; check that the "
            "channel and pixel size show what tells the categories apart, and add labelled images "
            "(networks gain more from them than the features do)"
        )
    if counts:
        largest = max(counts.values())
        for name, n in counts.items():
            if n < MIN_PER_CATEGORY or n < largest / 5:
                warnings.append(
                    f"category {name!r} has only {n} images (largest: {largest}): its figures are unreliable; "
                    "add images of it, and use --folds 5 and --permutations 20"
                )
    return warnings
