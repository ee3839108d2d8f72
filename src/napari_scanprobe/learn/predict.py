"""Apply a trained classifier: category and probabilities per image, per frame for a movie.

An image larger than the network input is cut into tiles (see ``data.tiles``); its
probabilities are the mean of its tiles' softmax probabilities. A movie gets one prediction per
frame, and overall the category of the mean probabilities over its frames.

The probabilities are calibrated (the model's temperature and offsets applied to each image's or
frame's mean over its tiles, see ``calibration``), and every
prediction carries ``unlike_training``: how far the image lies from the training images in
the network's own features (about 1 or less: like them; well above 1: unlike anything the
model learnt from, so its answer means little). None for models saved without it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..io import ReaderError
from ..nn.classifier import as_input
from ..process.common import Progress, run_to_end
from .calibration import calibrated, unlike_training
from .data import Example, as_example, model_input, tiles
from .modelfile import ClassifierModel, as_model


@dataclass
class Prediction:
    """The result for one input. ``frames`` (movies only): one dict per frame."""

    source: str
    label: str
    probabilities: dict[str, float]
    frames: list[dict] | None = None
    unlike_training: float | None = None

    def as_dict(self) -> dict:
        out: dict[str, Any] = {
            "path": self.source,
            "label": self.label,
            "probabilities": self.probabilities,
            "unlike_training": self.unlike_training,
        }
        if self.frames is not None:
            out["frames"] = self.frames
        return out


def _result(model: ClassifierModel, probs: np.ndarray) -> tuple[str, dict[str, float]]:
    return model.categories[int(np.argmax(probs))], {
        c: float(p) for c, p in zip(model.categories, probs, strict=True)
    }


def network_outputs(net, batch: np.ndarray, device) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(N, classes)`` and pooled last-block features ``(N, K)`` of a ``(N, C, S, S)`` batch."""
    import torch

    with torch.inference_mode():
        features = net.features(as_input(batch, device))
        logits = net.head(features).float().cpu().numpy()
        return logits, features.mean(dim=(2, 3)).float().cpu().numpy()


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def predict_steps(
    model: Any,
    inputs: Iterable[Any],
    pixel_size: Any = None,
    device: Any = None,
    batch_size: int = 64,
    on_error: Callable[[Any, Exception], Any] | None = None,
) -> Generator[Progress, None, list[Prediction | None]]:
    """:func:`predict_many` as a generator yielding Progress per input; returns the predictions.

    With ``on_error(input, exception)`` an input that cannot be read or used is reported there
    and gets ``None`` in the results; without it the first such input raises.
    """
    from ..nn.device import resolve_device

    model = as_model(model)
    dev = resolve_device(device)
    net = model.network(dev)
    inputs = list(inputs)
    examples: list[Example | None] = []
    results: list[Prediction | None] = []
    pending: list[tuple[int, int, int]] = []  # (input, frame, tile count) of the batched tiles
    batch: list[np.ndarray] = []
    frame_probs: dict[int, list[np.ndarray]] = {}
    frame_features: dict[int, list[np.ndarray]] = {}
    reference = model.confidence.get("reference")

    def flush():
        if not batch:
            return
        logits, features = network_outputs(net, np.concatenate(batch), dev)
        probs = softmax(logits)
        start = 0
        for i, _frame, count in pending:
            frame_probs.setdefault(i, []).append(probs[start : start + count].mean(axis=0))
            frame_features.setdefault(i, []).append(features[start : start + count].mean(axis=0))
            start += count
        batch.clear()
        pending.clear()

    for i, obj in enumerate(inputs):
        try:
            example = as_example(obj, model.channels, pixel_size, name=f"input {i}")
            if len(example.channels) != max(1, len(model.channels)):
                raise ValueError(
                    f"{example.source}: the model needs {max(1, len(model.channels))} channel(s), got {len(example.channels)}"
                )
            first = model_input(example.frame(0), example.pixel_size, model.spec, example.source)
        except (ReaderError, ValueError, OSError) as exc:
            if on_error is None:
                raise
            on_error(obj, exc)
            examples.append(None)
            yield Progress(i + 1, len(inputs), message=f"failed: {obj}")
            continue
        examples.append(example)
        for f in range(example.n_frames):
            # movie frames are prepared one at a time: a long movie is never held whole
            view = (
                first
                if f == 0
                else model_input(example.frame(f), example.pixel_size, model.spec, example.source)
            )
            cut, _ = tiles(view, model.input_size)
            batch.append(cut)
            pending.append((i, f, len(cut)))
            if sum(len(b) for b in batch) >= batch_size:
                flush()
        yield Progress(i + 1, len(inputs), message=example.source)
    flush()
    for i, done in enumerate(examples):
        if done is None:
            results.append(None)
            continue
        per_frame = calibrated(np.stack(frame_probs[i]), model.confidence)  # each frame's tile mean
        label, probs = _result(model, per_frame.mean(axis=0))
        features = np.stack(frame_features[i])
        unlike = None if reference is None else unlike_training(features, reference)
        frames = None
        if done.is_movie:
            frames = []
            for f, p in enumerate(per_frame):
                fl, fp = _result(model, p)
                frames.append({"frame": f, "label": fl, "probabilities": fp})
                if unlike is not None:
                    frames[-1]["unlike_training"] = float(unlike[f])
        overall = None if unlike is None else float(unlike_training(features.mean(axis=0), reference)[0])
        results.append(Prediction(done.source, label, probs, frames, overall))
    return results


def predict_many(
    model: Any,
    inputs: Iterable[Any],
    pixel_size: Any = None,
    device: Any = None,
    batch_size: int = 64,
    progress: Callable[[Progress], Any] | None = None,
    on_error: Callable[[Any, Exception], Any] | None = None,
) -> list[Prediction | None]:
    """Predict every input (paths, Scans, arrays, dicts name -> array, Examples), batched.

    See :func:`predict_steps` for ``on_error``."""
    return run_to_end(predict_steps(model, inputs, pixel_size, device, batch_size, on_error), progress)


def predict(model: Any, image: Any, pixel_size: Any = None, device: Any = None) -> Prediction:
    """Category and probabilities of one input (a file path, Scan, array or dict name -> array).

    ``model``: a :class:`ClassifierModel` or the path of a saved one. ``pixel_size`` (nm/px)
    is for plain arrays; files and Scans carry their own.
    """
    (result,) = predict_many(model, [image], pixel_size, device)
    assert result is not None  # without on_error, a failure raises
    return result


def evaluate(
    model: Any,
    folder: Any,
    pixel_size: Any = None,
    device: Any = None,
    on_error: Callable[[Any, Exception], Any] | None = None,
) -> dict:
    """The model's metrics on a labelled folder (one sub-folder per category, named as the
    model's categories): ``metrics.classification_report`` plus ``unlike_training_median``,
    ``unlike_training_above_2`` and ``skipped`` (inputs that could not be used, each passed to
    ``on_error(input, exception)``)."""
    from .data import list_folder
    from .metrics import classification_report

    model = as_model(model)
    _, files = list_folder(folder)
    unknown = sorted({c for _, c in files} - set(model.categories))
    if unknown:
        raise ValueError(
            f"{folder}: sub-folder(s) {', '.join(unknown)} are not categories of the model "
            f"({', '.join(model.categories)})"
        )
    skipped = []

    def failed(obj, exc):
        skipped.append(obj)
        if on_error is not None:
            on_error(obj, exc)

    results = predict_many(model, [p for p, _ in files], pixel_size, device, on_error=failed)
    kept = [(r, c) for r, (_, c) in zip(results, files, strict=True) if r is not None]
    if not kept:
        raise ValueError(f"{folder}: no image of the folder could be classified")
    truth = np.array([model.categories.index(c) for _, c in kept])
    probs = np.array([[r.probabilities[c] for c in model.categories] for r, _ in kept])
    metrics = classification_report(truth, probs, model.categories)
    unlike = [r.unlike_training for r, _ in kept if r.unlike_training is not None]
    metrics["evaluated_on"] = f"images of {folder}"
    metrics["unlike_training_median"] = float(np.median(unlike)) if unlike else None
    metrics["unlike_training_above_2"] = sum(u > 2 for u in unlike)
    metrics["skipped"] = len(skipped)
    return metrics
