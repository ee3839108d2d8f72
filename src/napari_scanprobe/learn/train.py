"""Training the classifier on few SPM images without fooling oneself.

``train(data, ...)`` takes a folder with one sub-folder per category, or a dict
``{category: [inputs]}`` (paths, Scans, arrays, dicts name -> array, Examples), and returns a
:class:`~napari_scanprobe.learn.modelfile.ClassifierModel` carrying its metrics and history.

What it does, in order:

* reads every input (unreadable files, wrong channels and too-small images are skipped and
  listed in ``model.training["skipped"]``), picks the model pixel size (``"auto"``: the median
  pixel size of the inputs, finer where small scans need it: ``target_pixel_size``; a number:
  nm/px, which pictures and arrays without a pixel size are taken to have; None: every image as
  it is), and prepares each image once as the network sees it
  (``data.model_input``). Each frame of a movie is one sample; frames of one file always stay
  on the same side of a split.
* splits by file, stratified by category: a validation fraction (default 0.2) or ``folds``-fold
  cross-validation.
* trains (an epoch: every training image once, or 20 batches for a set smaller than 8 batches
  -- a few dozen labelled images need more optimiser steps, not fewer) with SPM augmentation
  (random crops, 90° rotations, flips, small noise, random row offsets), class-balanced
  sampling, AdamW and label smoothing (``label_smoothing``, 0.1: targets of 0.95/0.05, which
  temperature scaling undoes for the probabilities reported). ``schedule="one-cycle"`` (the
  default): the learning rate rises over the first 15 % of the steps and anneals (cosine) to
  nearly zero at the last epoch, whose weights are kept -- no early stopping, so a run never ends
  on a noisy dip of the validation loss of a few dozen images. ``schedule="plateau"``: the rate
  is halved when the validation loss stalls, and training stops after ``patience`` epochs
  without improvement (never before ``min_epochs``), keeping the best epoch's weights.
  The loss is cross-entropy plus ``sparsity`` × the mean of the last block's activations (an
  L1 activity penalty): each position of the last block pays for firing, so the network keeps
  its evidence on the few places that carry it and its class activation maps lie on those
  places (see ``nn.classifier``). ``sparsity=0`` trains on cross-entropy alone.
* reports per-epoch loss/accuracy (train and validation) and, at the end, accuracy, balanced
  accuracy, per-class precision/recall, confusion matrix and ROC AUC on the validation images
  (pooled out-of-fold predictions for cross-validation, after which the final model is trained on
  all images for the median best epoch count). The validation images also chose the stopping
  epoch, so the figures are slightly optimistic: keep a test set apart for a claim.
* optionally a label-permutation test: the same training on shuffled labels ``permutations``
  times; ``p_value = (1 + #{permuted accuracy >= observed}) / (1 + permutations)``.

``pretrained=ENCODER`` (``learn/pretrain.py``: self-supervised pretraining on unlabelled
scans) starts the network's blocks from the encoder's weights instead of random ones; the
encoder must have been made for the same channels and block options (one error says what
differs), and the model records it in ``training["pretrained"]``.

A fixed ``seed`` makes a run repeatable on the CPU. ``should_stop()`` (polled every batch) ends
training early and keeps the best model so far.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io import ReaderError
from ..nn.classifier import build_network, check_architecture, receptive_field
from ..process.common import Progress, run_to_end
from ..process.steps import check_steps
from ..untrusted import reason_for
from .baseline import baseline_probabilities, compare
from .calibration import calibrated, feature_reference, fit_calibration
from .checks import training_warnings
from .data import (
    MIN_COVERED,
    Example,
    as_example,
    check_pixel_size,
    list_folder,
    model_input,
    read_example,
    tiles,
)
from .metrics import classification_report, cross_entropy, expected_calibration_error
from .modelfile import ClassifierModel

#: Row-offset and tilt removal: cheap (well under a millisecond per 128² image) and robust.
DEFAULT_PREPROCESSING = [
    {"step": "flatten", "method": "rows_median", "options": {}},
    {"step": "flatten", "method": "plane", "options": {}},
]

DEFAULTS = {
    "epochs": 40,
    "batch_size": 16,
    "learning_rate": 4e-3,
    "weight_decay": 1e-4,
    "validation": 0.2,
    "folds": 0,
    "patience": 8,
    "min_epochs": 15,
    "augment": True,
    "balance": True,
    "noise": 0.05,
    "row_offsets": 0.05,
    "permutations": 0,
    "seed": 0,
    "sparsity": 0.3,
    "baseline": False,
    "schedule": "one-cycle",
    "label_smoothing": 0.1,
}

SCHEDULES = ("one-cycle", "plateau")


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


@dataclass
class _Samples:
    """Prepared training views: ``views[i]`` (C, H, W) float32, label, and the file it came from."""

    views: list[np.ndarray]
    labels: np.ndarray
    groups: np.ndarray  # index of the source file


def _collect(data: Any, channels: Sequence[str]) -> tuple[list[str], list[tuple[Any, str]]]:
    """``(categories, [(input, category), ...])`` from a folder or a dict."""
    if isinstance(data, (str, os.PathLike)):
        categories, files = list_folder(data)
        return categories, [(p, c) for p, c in files]
    if isinstance(data, dict):
        categories = [str(c) for c, items in data.items() if items is not None and len(items)]
        if len(categories) < 2:
            raise ValueError(
                f"data: training needs at least two categories with images, got {categories or 'none'}"
            )
        return categories, [
            (item, str(c)) for c, items in data.items() if items is not None for item in items
        ]
    raise ValueError(
        f"data: expected a folder (one sub-folder per category) or a dict category -> images, got {type(data).__name__}"
    )


def load_examples(
    items: list[tuple[Any, str]], channels: Sequence[str], skipped: list
) -> Generator[Progress, None, list[Example]]:
    """Read ``(input, category)`` items (files or arrays) as examples; one that cannot be read
    is appended to ``skipped`` with its reason, never dropped silently (yields progress)."""
    examples = []
    for i, (item, category) in enumerate(items):
        name = str(item) if isinstance(item, (str, os.PathLike)) else f"{category} image {i}"
        try:
            if isinstance(item, (str, os.PathLike)):
                example = read_example(item, channels)
            else:
                example = as_example(item, channels, name=name)
        except (ReaderError, ValueError, OSError) as exc:
            skipped.append({"input": name, "reason": reason_for(exc, name)})
        else:
            example.label = category
            examples.append(example)
        yield Progress(i + 1, len(items), message=f"reading {i + 1}/{len(items)}")
    return examples


#: ``pixel_size="auto"`` may go this many times finer than the median to keep small scans usable.
AUTO_FINER_AT_MOST = 4.0


def target_pixel_size(examples: list[Example], pixel_size: Any, input_size: int) -> float | None:
    """The model's nm/px. ``"auto"``: the median of the inputs' pixel sizes, made finer (at most
    :data:`AUTO_FINER_AT_MOST` times) where a small scan would otherwise cover less than half the
    network input; a scan still too small is skipped and listed, never dropped silently."""
    if pixel_size is None:
        return None
    if isinstance(pixel_size, str):
        if pixel_size != "auto":
            raise ValueError(f"pixel_size: expected 'auto', None or nm per pixel, got {pixel_size!r}")
        sizes = [e.pixel_size for e in examples]
        known = [s for s in sizes if s is not None]
        if not known:
            return None
        if len(known) < len(sizes):
            unknown = [e.source for e in examples if e.pixel_size is None][:3]
            raise ValueError(
                f"pixel_size: {len(sizes) - len(known)} input(s) have no physical pixel size (e.g. {', '.join(unknown)}) "
                "while others have one; pass pixel_size=None to use every image as it is, or give .npy/.tif "
                "images the same scale as the rest"
            )
        median = float(np.median([math.sqrt(dy * dx) for dy, dx in known]))
        need = math.ceil(input_size * MIN_COVERED)
        smallest = min(
            min(s * p for s, p in zip(e.shape, e.pixel_size or (0, 0), strict=True)) for e in examples
        )
        return max(median / AUTO_FINER_AT_MOST, min(median, smallest / need))
    dy, dx = check_pixel_size(pixel_size, "pixel_size")
    if dy != dx:
        raise ValueError(f"pixel_size: the model pixel size must be square, got {pixel_size!r}")
    return dy


def prepare_samples(
    examples: list[Example], categories: list[str], spec: dict, skipped: list
) -> Generator[Progress, None, _Samples]:
    """Every frame of every example as the network sees it (``spec``: pixel size, input size,
    preprocessing); an example too small or otherwise unusable goes to ``skipped`` with its reason."""
    views, labels, groups = [], [], []
    for g, example in enumerate(examples):
        try:
            frames = [
                model_input(example.frame(f), example.pixel_size, spec, example.source)
                for f in range(example.n_frames)
            ]
        except ValueError as exc:
            skipped.append({"input": example.source, "reason": reason_for(exc, example.source)})
            continue
        views += frames
        labels += [categories.index(str(example.label))] * len(frames)  # every training example is labelled
        groups += [g] * len(frames)
        yield Progress(g + 1, len(examples), message=f"preparing {g + 1}/{len(examples)}")
    return _Samples(views, np.array(labels, dtype=int), np.array(groups, dtype=int))


# --------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------


def _group_labels(samples: _Samples) -> tuple[np.ndarray, np.ndarray]:
    groups = np.unique(samples.groups)
    return groups, np.array([samples.labels[samples.groups == g][0] for g in groups])


def _stratified_folds(samples: _Samples, folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``folds`` disjoint lists of sample indices, files kept together, categories spread evenly."""
    groups, labels = _group_labels(samples)
    assignment = {}
    for c in np.unique(labels):
        members = rng.permutation(groups[labels == c])
        offset = int(rng.integers(folds))
        for i, g in enumerate(members):
            assignment[g] = (i + offset) % folds
    fold_of_sample = np.array([assignment[g] for g in samples.groups])
    return [np.flatnonzero(fold_of_sample == f) for f in range(folds)]


def _splits(samples: _Samples, opts: dict, categories: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(opts["seed"])
    groups, labels = _group_labels(samples)
    counts = {categories[c]: int((labels == c).sum()) for c in range(len(categories))}
    everything = np.arange(len(samples.labels))
    if opts["folds"]:
        k = opts["folds"]
        if min(counts.values()) < k:
            raise ValueError(
                f"folds: {k}-fold cross-validation needs at least {k} files per category; have {counts}"
            )
        parts = _stratified_folds(samples, k, rng)
        return [(np.setdiff1d(everything, part), part) for part in parts]
    fraction = opts["validation"]
    if not fraction:
        return [(everything, np.array([], dtype=int))]
    if min(counts.values()) < 2:
        raise ValueError(f"validation: a validation split needs at least 2 files per category; have {counts}")
    val_groups = []
    for c in np.unique(labels):
        members = rng.permutation(groups[labels == c])
        n_val = min(len(members) - 1, max(1, round(fraction * len(members))))
        val_groups += list(members[:n_val])
    val = np.flatnonzero(np.isin(samples.groups, val_groups))
    return [(np.setdiff1d(everything, val), val)]


# --------------------------------------------------------------------------------------
# One training run
# --------------------------------------------------------------------------------------


def _batch(
    samples: _Samples, labels: np.ndarray, idx: np.ndarray, size: int, opts: dict, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty((len(idx), samples.views[0].shape[0], size, size), dtype=np.float32)
    for j, i in enumerate(idx):
        view = samples.views[i]
        y = int(rng.integers(view.shape[1] - size + 1))
        x = int(rng.integers(view.shape[2] - size + 1))
        crop = view[:, y : y + size, x : x + size]
        if opts["augment"]:
            crop = np.rot90(crop, int(rng.integers(4)), axes=(1, 2))
            if rng.random() < 0.5:
                crop = crop[:, :, ::-1]
            crop = (
                crop
                + rng.normal(0, opts["noise"], crop.shape)
                + rng.normal(0, opts["row_offsets"], (crop.shape[0], size, 1))
            )
        out[j] = crop
    return out, labels[idx]


#: A training set of fewer batches than this is a small set (see :data:`SMALL_SET_BATCHES_PER_EPOCH`).
MIN_BATCHES_PER_EPOCH = 8


#: A training set smaller than :data:`MIN_BATCHES_PER_EPOCH` batches (a few dozen labelled images
#: per category) takes this many batches per epoch: 800 optimiser steps over the default 40 epochs.
#: Measured on 20 + 20 generated membranes: with 320 steps the training accuracy was still
#: climbing at the end and a run could end near chance (see docs/classifier.md, "Few labels").
SMALL_SET_BATCHES_PER_EPOCH = 20


def _batches_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimiser steps per epoch: every training image once, or
    :data:`SMALL_SET_BATCHES_PER_EPOCH` for a set smaller than 8 batches."""
    if n_train < MIN_BATCHES_PER_EPOCH * batch_size:
        return SMALL_SET_BATCHES_PER_EPOCH
    return math.ceil(n_train / batch_size)


def _evaluate(
    net, samples: _Samples, idx: np.ndarray, size: int, device, n_classes: int, batch_size: int = 64
) -> np.ndarray:
    """Probabilities ``(len(idx), classes)``: the mean over each view's tiles, like prediction."""
    return _view_outputs(net, samples, idx, size, device, n_classes, batch_size)[0]


def _view_outputs(
    net, samples: _Samples, idx: np.ndarray, size: int, device, n_classes: int, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Per view: probabilities ``(len(idx), classes)`` and pooled features, each the mean over
    the view's tiles, like prediction."""
    from .predict import network_outputs, softmax

    net.eval()
    pending, owners = [], []
    for j, i in enumerate(idx):
        cut, _ = tiles(samples.views[i], size)
        pending.append(cut)
        owners.append((j, len(cut)))
    if not pending:
        return np.zeros((0, n_classes)), np.zeros((0, 0))
    all_tiles = np.concatenate(pending)
    outputs = [
        network_outputs(net, all_tiles[s : s + batch_size], device)
        for s in range(0, len(all_tiles), batch_size)
    ]
    probs = softmax(np.concatenate([o[0] for o in outputs]))
    feats = np.concatenate([o[1] for o in outputs])
    out, out_feats = np.zeros((len(idx), n_classes)), np.zeros((len(idx), feats.shape[1]))
    start = 0
    for j, count in owners:
        out[j] = probs[start : start + count].mean(axis=0)
        out_feats[j] = feats[start : start + count].mean(axis=0)
        start += count
    return out, out_feats


@dataclass
class _Run:
    state: dict  # best weights (numpy)
    history: list[dict]
    best_epoch: int
    val_probabilities: np.ndarray | None
    stopped_by_user: bool


def _train_run(
    samples: _Samples,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    arch: dict,
    opts: dict,
    device,
    run_name: str,
    epochs: int,
    should_stop: Callable[[], bool] | None,
    counter: list[int],
    total: int,
    init: dict | None = None,
) -> Generator[Progress, None, _Run]:
    import torch

    from ..nn.loop import EpochEnd, OneCycle, Plateau, Stopping, fit, state_of

    torch.manual_seed(opts["seed"])
    rng = np.random.default_rng(opts["seed"])
    net = build_network(arch)
    if init:  # pretrained blocks (``pretrain``): the head starts from the seed as usual
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in init.items()}, strict=False)
    net = net.to(device)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=opts["label_smoothing"])
    size, n_classes = arch["input_size"], arch["n_classes"]
    train_labels = labels[train_idx]
    if opts["balance"]:
        freq = np.bincount(train_labels, minlength=n_classes).astype(float)
        weights = 1.0 / freq[train_labels]
        weights /= weights.sum()
    batch_size = opts["batch_size"]
    n_batches = _batches_per_epoch(len(train_idx), batch_size)
    history: list[dict] = []
    epoch_state: dict = {}  # this epoch's draw order and running sums

    def step():
        if epoch_state["batch"] == 0:
            n_draw = n_batches * batch_size
            if opts["balance"]:
                order = rng.choice(train_idx, size=n_draw, p=weights)
            else:
                order = np.concatenate(
                    [rng.permutation(train_idx) for _ in range(math.ceil(n_draw / len(train_idx)))]
                )[:n_draw]
            epoch_state.update(order=order, losses=[], correct=0, seen=0)
        b = epoch_state["batch"]
        epoch_state["batch"] = b + 1
        chosen = epoch_state["order"][b * batch_size : (b + 1) * batch_size]
        x, y = _batch(samples, labels, chosen, size, opts, rng)
        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        if len(chosen) == 1 and arch["batch_norm"]:
            net.eval()  # batch norm cannot train on a single image
        features = net.features(xt)
        logits = net.head(features)
        loss = loss_fn(logits, yt)
        if opts["sparsity"]:
            loss = loss + opts["sparsity"] * features.mean()  # features are ReLU outputs: mean = L1
        epoch_state["losses"].append(loss.item() * len(chosen))
        epoch_state["correct"] += int((logits.argmax(1) == yt).sum())
        epoch_state["seen"] += len(chosen)
        return loss

    def end_epoch(epoch: int, learning_rate: float) -> EpochEnd:
        seen = epoch_state["seen"]
        entry = {
            "epoch": epoch,
            "train_loss": sum(epoch_state["losses"]) / seen,
            "train_accuracy": epoch_state["correct"] / seen,
            "learning_rate": learning_rate,
        }
        epoch_state["batch"] = 0
        if len(val_idx):
            probs = _evaluate(net, samples, val_idx, size, device, n_classes)
            entry["val_loss"] = cross_entropy(labels[val_idx], probs)
            entry["val_accuracy"] = float((probs.argmax(1) == labels[val_idx]).mean())
            monitored = entry["val_loss"]
        else:
            probs, monitored = None, entry["train_loss"]
        history.append(entry)
        return EpochEnd(monitored, {"run": run_name, "epoch": entry}, probs)

    epoch_state["batch"] = 0
    one_cycle = opts["schedule"] == "one-cycle"
    fitted = yield from fit(
        net,
        step,
        learning_rate=opts["learning_rate"],
        weight_decay=opts["weight_decay"],
        optimiser="adamw",
        schedule=OneCycle() if one_cycle else Plateau(factor=0.5, patience=max(1, opts["patience"] // 3)),
        steps_per_epoch=n_batches,
        epochs=epochs,
        end_epoch=end_epoch,
        stopping=Stopping()
        if one_cycle
        else Stopping(patience=opts["patience"], min_epochs=opts["min_epochs"]),
        should_stop=should_stop,
        label=f"{run_name}training",
        extra={"run": run_name},
        offset=counter[0],
        total=total,
    )
    counter[0] += fitted.steps
    best_state, val_probs_best, best_epoch = fitted.best_state, fitted.best_keep, fitted.best_epoch
    if one_cycle and fitted.epochs and not fitted.stopped_by_user:  # the annealed end, not a dip on the way
        best_state, val_probs_best, best_epoch = None, None, fitted.epochs
    if best_state is None:  # no epoch improved (a loss that is not a number)
        best_state = state_of(net)
        val_probs_best = _evaluate(net, samples, val_idx, size, device, n_classes) if len(val_idx) else None
    return _Run(best_state, history, best_epoch, val_probs_best, fitted.stopped_by_user)


# --------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------


def _options(options: dict) -> dict:
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown training option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **options}
    for key in ("epochs", "batch_size", "patience", "min_epochs", "folds", "permutations", "seed"):
        value = opts[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{key}: expected a whole number >= 0, got {value!r}")
        opts[key] = int(value)
    if opts["epochs"] < 1 or opts["batch_size"] < 1 or opts["patience"] < 1:
        raise ValueError("epochs, batch_size and patience must be at least 1")
    if opts["folds"] == 1:
        raise ValueError("folds: cross-validation needs at least 2 folds (0 = a single validation split)")
    for key in (
        "learning_rate",
        "weight_decay",
        "noise",
        "row_offsets",
        "validation",
        "sparsity",
        "label_smoothing",
    ):
        value = opts[key]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"{key}: expected a number >= 0, got {value!r}")
        opts[key] = float(value)
    if opts["learning_rate"] <= 0 or opts["validation"] >= 1:
        raise ValueError("learning_rate must be > 0 and validation a fraction below 1")
    if opts["schedule"] not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {SCHEDULES}, got {opts['schedule']!r}")
    if not 0 <= opts["label_smoothing"] < 1:
        raise ValueError(f"label_smoothing: expected a fraction below 1, got {opts['label_smoothing']!r}")
    for key in ("augment", "balance", "baseline"):
        opts[key] = bool(opts[key])
    return opts


def train_steps(
    data: Any,
    channels: Sequence[str] = (),
    pixel_size: Any = "auto",
    input_size: int = 128,
    preprocessing: Any = DEFAULT_PREPROCESSING,
    architecture: dict | None = None,
    device: Any = None,
    threads: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    pretrained: Any = None,
    **options: Any,
) -> Generator[Progress, None, ClassifierModel]:
    """:func:`train` as a generator yielding Progress; returns the model. Epoch ends carry
    ``extra["epoch"]`` (that epoch's history entry) and every update ``extra["run"]``."""
    import torch

    from ..nn.device import resolve_device, torch_threads

    started = time.perf_counter()
    opts = _options(options)
    channels = [str(c) for c in channels]
    steps = check_steps(preprocessing, "preprocessing")
    dev = resolve_device(device)
    encoder = None
    if pretrained is not None:
        from .pretrain import as_encoder

        encoder = as_encoder(pretrained)
        if isinstance(pixel_size, str) and pixel_size == "auto":
            pixel_size = encoder.pixel_size  # the scale the encoder learnt its features at
    init = encoder.state if encoder else None
    categories, items = _collect(data, channels)
    skipped: list[dict] = []
    examples = yield from load_examples(items, channels, skipped)
    target = target_pixel_size(examples, pixel_size, int(input_size))
    arch = check_architecture(architecture, max(1, len(channels)), len(categories), int(input_size))
    if encoder:
        encoder.check_fits(arch)
    spec = {"pixel_size": target, "input_size": arch["input_size"], "preprocessing": steps}
    samples = yield from prepare_samples(examples, categories, spec, skipped)
    present = {categories[c] for c in np.unique(samples.labels)} if len(samples.labels) else set()
    if len(present) < 2:
        reasons = "; ".join(s["reason"] for s in skipped[:3])
        raise ValueError(
            f"data: after skipping {len(skipped)} unusable input(s), images remain for {sorted(present) or 'no'} "
            f"category; training needs at least two{': ' + reasons if reasons else ''}"
        )
    splits = _splits(samples, opts, categories)
    labels = samples.labels
    n_batches = _batches_per_epoch(len(splits[0][0]), opts["batch_size"])
    runs = len(splits) + (1 if opts["folds"] else 0)
    total = n_batches * opts["epochs"] * runs * (1 + opts["permutations"])
    counter = [0]
    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        results = []
        for f, (tr, va) in enumerate(splits):
            name = f"fold {f + 1}/{len(splits)}: " if opts["folds"] else ""
            run = yield from _train_run(
                samples,
                labels,
                tr,
                va,
                arch,
                opts,
                dev,
                name,
                opts["epochs"],
                should_stop,
                counter,
                total,
                init,
            )
            results.append(run)
            if run.stopped_by_user:
                break
        stopped = any(r.stopped_by_user for r in results)
        truth, val_probs = _pooled(results, splits, labels)
        calibration = fit_calibration(truth, val_probs)
        metrics = _report(truth, calibrated(val_probs, calibration), categories, opts["folds"])
        if len(truth):
            metrics["calibration"] = {
                **calibration,
                "ece_uncalibrated": expected_calibration_error(truth, val_probs),
                "accuracy_uncalibrated": float((val_probs.argmax(1) == truth).mean()),
                "note": "temperature and offsets fitted on the validation images; the figures after them are "
                "measured on them too",
            }
        if opts["baseline"] and len(truth):
            scored = [(tr, va) for _, tr, va in _validated(results, splits)]
            metrics["baseline"] = _baseline(
                samples, scored, labels, categories, opts["seed"], calibrated(val_probs, calibration)
            )
        if opts["folds"] and not stopped:
            epochs = max(1, int(np.median([r.best_epoch for r in results])))
            everything = np.arange(len(labels))
            final = yield from _train_run(
                samples,
                labels,
                everything,
                np.array([], dtype=int),
                arch,
                opts,
                dev,
                "final: ",
                epochs,
                should_stop,
                counter,
                total,
                init,
            )
            # all images, for the epoch count cross-validation chose (best training loss kept)
            state, history = final.state, final.history
            metrics["cross_validation"] = {
                "folds": opts["folds"],
                "fold_accuracy": [
                    _fold_accuracy(r, labels, va) for r, (_, va) in zip(results, splits, strict=True)
                ],
                "final_epochs": epochs,
            }
        else:
            state, history = results[0].state, results[0].history
        if opts["permutations"] and not stopped:
            metrics["permutation_test"] = yield from _permutation_test(
                samples, splits, arch, opts, dev, metrics, should_stop, counter, total, init
            )
    confidence: dict[str, Any] = (
        {"temperature": calibration["temperature"], "offsets": calibration["offsets"]}
        if len(truth)
        else {"temperature": 1.0}
    )
    if not stopped:
        confidence["reference"] = _reference(state, arch, samples, splits, opts, dev)
    model = ClassifierModel(
        confidence=confidence,
        architecture=arch,
        state=state,
        categories=categories,
        channels=channels,
        pixel_size=target,
        input_size=arch["input_size"],
        preprocessing=steps,
        metrics=metrics,
        history=history,
        training={
            "options": opts,
            "images_per_category": {
                c: int(len(np.unique(samples.groups[samples.labels == i]))) for i, c in enumerate(categories)
            },
            "samples": int(len(labels)),
            "validation_samples": int(sum(len(va) for _, va in splits)),
            "skipped": skipped,
            "stopped_by_user": stopped,
            "best_epoch": results[0].best_epoch,
            "device": str(dev),
            "seconds": round(time.perf_counter() - started, 2),
            "receptive_field_px": receptive_field(arch),
            "pretrained": encoder.summary() if encoder else None,
        },
    )
    model.training["warnings"] = training_warnings(model)
    return model


def _reference(state: dict, arch: dict, samples: _Samples, splits, opts: dict, dev) -> dict:
    """The training images' feature statistics for the unlike-training score (``calibration``);
    its scale from the validation images (a single split) or the training images (folds)."""
    import torch

    net = build_network(arch)
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=False)
    net = net.to(dev)
    train_idx, val_idx = (np.arange(len(samples.labels)), []) if opts["folds"] else splits[0]
    n_classes = arch["n_classes"]
    _, train_feats = _view_outputs(net, samples, train_idx, arch["input_size"], dev, n_classes)
    val_feats = None
    if len(val_idx):
        _, val_feats = _view_outputs(net, samples, np.asarray(val_idx), arch["input_size"], dev, n_classes)
    return feature_reference(train_feats, val_feats)


def _fold_accuracy(run: _Run, labels: np.ndarray, val_idx: np.ndarray) -> float:
    assert run.val_probabilities is not None  # a fold always has validation images
    return float((run.val_probabilities.argmax(1) == labels[val_idx]).mean())


def _validated(results: list[_Run], splits) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(validation probabilities, training indices, validation indices)`` of each run that has
    validation images, in order."""
    return [
        (run.val_probabilities, tr, va)
        for run, (tr, va) in zip(results, splits, strict=False)
        if run.val_probabilities is not None and len(va)
    ]


def _pooled(results: list[_Run], splits, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True labels and probabilities of every validation image (out-of-fold for cross-validation)."""
    validated = _validated(results, splits)
    if not validated:
        return np.zeros(0, dtype=int), np.zeros((0, 2))
    return np.concatenate([labels[va] for _, _, va in validated]), np.concatenate(
        [p for p, _, _ in validated]
    )


def _report(truth: np.ndarray, probs: np.ndarray, categories: list[str], folds: int = 0) -> dict:
    if not len(truth):
        return {"evaluated_on": "nothing (no validation images)"}
    report = classification_report(truth, probs, categories)
    report["evaluated_on"] = (
        f"validation images (out of fold: {folds}-fold cross-validation)" if folds else "validation images"
    )
    return report


def _baseline(
    samples: _Samples, splits, labels: np.ndarray, categories: list[str], seed: int, network_probs: np.ndarray
) -> dict:
    """The feature baseline (``baseline``) on the CNN's validated ``splits``, and how the network's
    (calibrated) ``network_probs`` on those images, in the same order, compare with it."""
    truth, probs = [], []
    for tr, va in splits:
        views = [samples.views[i] for i in tr]
        probs.append(
            baseline_probabilities(
                views, labels[tr], [samples.views[i] for i in va], len(categories), seed=seed
            )
        )
        truth.append(labels[va])
    truth_all, probs_all = np.concatenate(truth), np.concatenate(probs)
    report = classification_report(truth_all, probs_all, categories)
    report["method"] = "random forest on image statistics, texture and FFT features (learn/baseline.py)"
    report["network_minus_features"] = compare(truth_all, network_probs, probs_all, seed=seed)
    return report


def _permutation_test(
    samples, splits, arch, opts, dev, metrics, should_stop, counter, total, init
) -> Generator[Progress, None, dict]:
    observed = metrics.get("accuracy", float("nan"))
    rng = np.random.default_rng(opts["seed"] + 1)
    groups, group_labels = _group_labels(samples)
    accuracies = []
    for p in range(opts["permutations"]):
        shuffled = dict(zip(groups, rng.permutation(group_labels), strict=True))
        labels = np.array([shuffled[g] for g in samples.groups])
        results = []
        for _f, (tr, va) in enumerate(splits):
            run = yield from _train_run(
                samples,
                labels,
                tr,
                va,
                arch,
                opts,
                dev,
                f"permutation {p + 1}/{opts['permutations']}: ",
                opts["epochs"],
                should_stop,
                counter,
                total,
                init,
            )
            results.append(run)
        accuracies.append(
            _report(*_pooled(results, splits, labels), [str(i) for i in range(arch["n_classes"])]).get(
                "accuracy", float("nan")
            )
        )
        if any(r.stopped_by_user for r in results):
            break
    higher = sum(1 for a in accuracies if a >= observed)
    return {
        "permutations": len(accuracies),
        "accuracies": accuracies,
        "observed_accuracy": observed,
        "p_value": (1 + higher) / (1 + len(accuracies)),
    }


def train(
    data: Any, channels: Sequence[str] = (), progress: Callable[[Progress], Any] | None = None, **options: Any
) -> ClassifierModel:
    """Train a classifier (see the module docstring); ``progress`` sees every step.

    ``data``: a folder with one sub-folder per category, or ``{category: [inputs]}``.
    ``channels``: channel names to stack (``[]``: the first channel of each file).
    Keyword options: ``pixel_size`` ("auto", None or nm/px), ``input_size`` (px),
    ``preprocessing`` (steps), ``architecture`` (see ``network.DEFAULT_ARCHITECTURE``),
    ``device``, ``threads``, ``should_stop``, ``pretrained`` (an encoder file made by
    ``learn.pretrain.pretrain``: the blocks start from it; with ``pixel_size="auto"`` its pixel
    size is used) and the training options of :data:`DEFAULTS`.
    """
    return run_to_end(train_steps(data, channels, **options), progress)
