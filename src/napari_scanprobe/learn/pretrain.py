"""Few labels: self-supervised pretraining of the classifier's encoder on unlabelled scans.

A lab has many more scans than it has labelled. :func:`pretrain` teaches the classifier's
blocks (``ScanprobeCNN.blocks``, built by ``nn.classifier.build_network`` for whatever
architecture the classifier uses) what its scans look like without any label, and writes them
as an *encoder file*; ``train(..., pretrained=ENCODER)`` starts from it and fine-tunes on the
labelled few.

Method: contrastive learning (SimCLR, Chen et al. 2020). Two random views of the same scan must
land close together in a small projection of the blocks' pooled output and far from the views
of every other scan in the batch (the NT-Xent loss, temperature ``temperature``). The views
differ by what changes between two scans of the same sample, never by what tells samples apart:

* a crop (``crop_size`` px, default half the network input) around the same random point,
  shifted by up to a quarter of the crop, at a scale varied by up to ``max_zoom`` either way:
  the two views share most of their structures (crops from anywhere in a scan would share only
  its overall texture statistics, which the network then learns instead of the structures);
* a 90° rotation and a mirror flip;
* a small tilt (plane), scan-line offsets (per row), 1/f ("drift") noise and white noise;
* a contrast change (a power law on the normalised heights), then normalisation again.

The scans are read and prepared exactly as training prepares them (``data.read_example``,
``data.model_input``: preprocessing, resampling to the pixel size, normalisation), so the
encoder sees what the classifier will see. The encoder file is the blocks' weights
(``nn/weights.py``: ``ENCODER.safetensors`` + ``ENCODER.json``) and the architecture, channels,
pixel size, input size and preprocessing, recorded the way a model records them.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..nn.classifier import build_network, check_architecture, expected_shapes
from ..nn.weights import check_shapes, load_weights, save_weights, weight_paths
from ..plainjson import jsonsafe
from ..process.common import Progress, run_to_end
from ..process.steps import check_steps
from ..untrusted import check_depth, one_line
from .data import MIN_COVERED, model_shape
from .modelfile import check_network_budget
from .train import DEFAULT_PREPROCESSING, load_examples, prepare_samples, target_pixel_size

FORMAT = "napari-scanprobe encoder"
FORMAT_VERSION = 1

DEFAULTS = {
    "epochs": 20,
    "batch_size": 32,
    "learning_rate": 2e-3,
    "weight_decay": 1e-4,
    "temperature": 0.2,
    "crop_size": None,  # None: half the network input
    "max_zoom": 1.4,
    "seed": 0,
}

#: Bounds checked before any work: files listed, and pixels of the prepared images in memory
#: (float32: 100 M pixels are 400 MB).
MAX_FILES = 20_000
MAX_PIXELS = 100_000_000
#: The architecture options that shape the blocks; an encoder fits a classifier when they agree.
BLOCK_OPTIONS = ("blocks", "filters", "kernel_size", "last_kernel_size", "pooled_blocks", "batch_norm")
PROJECTION = 64  # size of the projection the contrastive loss compares


@dataclass
class Encoder:
    """Pretrained classifier blocks plus the facts that make them usable (see the module doc)."""

    architecture: dict  # the classifier architecture the blocks belong to (without n_classes)
    state: dict[str, np.ndarray]  # the blocks' tensors: "blocks.0.0.weight", ...
    channels: list[str]
    pixel_size: float | None
    input_size: int
    preprocessing: list[dict] = field(default_factory=list)
    training: dict = field(default_factory=dict)
    package_version: str = __version__
    path: str | None = None

    def description(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "architecture": self.architecture,
            "channels": list(self.channels),
            "pixel_size_nm": self.pixel_size,
            "input_size": self.input_size,
            "preprocessing": self.preprocessing,
            "normalisation": "per image and channel: zero mean, unit standard deviation",
            "training": self.training,
            "package_version": self.package_version,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``<path>.safetensors`` and ``<path>.json`` atomically; returns the weights path."""
        out = save_weights(path, self.state, jsonsafe(self.description()), FORMAT, "encoder")
        self.path = str(out)
        return out

    def check_fits(self, arch: dict) -> None:
        """ValueError naming the file when these blocks cannot start a classifier of ``arch``."""
        where = self.path or "pretrained encoder"
        if arch["in_channels"] != self.architecture["in_channels"]:
            raise ValueError(
                f"{where}: the encoder was pretrained on {self.architecture['in_channels']} channel(s) "
                f"({', '.join(self.channels) or 'the first of each file'}), the classifier takes "
                f"{arch['in_channels']}; pretrain again with the same channels"
            )
        differ = [k for k in BLOCK_OPTIONS if arch[k] != self.architecture[k]]
        if differ:
            said = ", ".join(f"{k} {self.architecture[k]!r} (classifier: {arch[k]!r})" for k in differ)
            raise ValueError(
                f"{where}: the encoder's network differs from the classifier's: {said}; "
                "pretrain again with the classifier's architecture"
            )

    def summary(self) -> dict:
        """What a model trained from this encoder records about it."""
        return {
            "file": self.path,
            "images": self.training.get("images"),
            "epochs": self.training.get("epochs_run"),
            "method": self.training.get("method"),
            "pixel_size_nm": self.pixel_size,
            "preprocessing": self.preprocessing,
        }


def load_encoder(path: str | os.PathLike) -> Encoder:
    """Read an encoder saved by :meth:`Encoder.save` (nothing unpickled; SHA-256 checked).

    FileNotFoundError for a missing file; ValueError naming the file for a damaged one or
    another kind of file (a classifier model is not an encoder).
    """
    weights_path, description_path = weight_paths(path)
    try:
        state, doc = load_weights(weights_path, FORMAT, "pretrained encoder")
        check_depth(doc, str(description_path))
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"encoder format version {doc.get('format_version')!r} is not supported")
        channels = [str(c) for c in doc["channels"]]
        input_size = int(doc["input_size"])
        pixel_size = doc.get("pixel_size_nm")
        pixel_size = None if pixel_size is None else float(pixel_size)
        if pixel_size is not None and not (math.isfinite(pixel_size) and pixel_size > 0):
            raise ValueError(f"pixel size {pixel_size} nm")
        stored = doc["architecture"]
        if not isinstance(stored, dict):
            raise ValueError("architecture is not a dict")
        arch = _encoder_architecture(
            {k: v for k, v in stored.items() if k not in ("in_channels", "input_size")},
            len(channels),
            input_size,
        )
        if stored.get("in_channels", arch["in_channels"]) != arch["in_channels"]:
            raise ValueError("architecture disagrees with the channels")
        preprocessing = check_steps(doc.get("preprocessing"), "preprocessing")
        training = doc.get("training") or {}
        if not isinstance(training, dict):
            raise ValueError("training is not a mapping")
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError, RecursionError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(str(weights_path.parent)):
            raise ValueError(one_line(exc)) from None  # load_weights named the file already
        raise ValueError(f"{description_path}: not a usable pretrained encoder ({one_line(exc)})") from None
    check_shapes(weights_path, state, _block_shapes(arch))
    return Encoder(
        architecture=arch,
        state=state,
        channels=channels,
        pixel_size=pixel_size,
        input_size=input_size,
        preprocessing=preprocessing,
        training=training,
        package_version=str(doc.get("package_version", "unknown")),
        path=str(weights_path),
    )


def as_encoder(encoder: Any) -> Encoder:
    """An Encoder from itself or a path (``train(..., pretrained=...)``)."""
    if isinstance(encoder, Encoder):
        return encoder
    if isinstance(encoder, (str, os.PathLike)):
        return load_encoder(encoder)
    raise ValueError(f"pretrained: expected an encoder file path, got {type(encoder).__name__}")


def _encoder_architecture(arch: dict | None, n_channels: int, input_size: int) -> dict:
    """The checked classifier architecture the blocks belong to, stored without n_classes."""
    full = check_architecture(
        {k: v for k, v in (arch or {}).items() if k != "n_classes"}, max(1, n_channels), 2, input_size
    )
    check_network_budget(full, "architecture")
    full.pop("n_classes")
    return full


def _block_shapes(arch: dict) -> dict[str, tuple[int, ...]]:
    return {k: s for k, s in expected_shapes({**arch, "n_classes": 2}).items() if k.startswith("blocks.")}


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def _inputs(data: Any, skipped: list) -> list[Any]:
    """The inputs of a folder (every SPM file or image array inside, recursively) or a list."""
    if isinstance(data, (str, os.PathLike)):
        from ..inputs import expand_inputs

        if not Path(data).is_dir():
            raise ValueError(f"{data}: not a folder (expected a folder of unlabelled scans)")
        items, _ = expand_inputs([data])
        for item in items:
            if item.error:
                skipped.append({"input": str(item.path), "reason": item.error})
        found: list[Any] = [i.path for i in items if not i.error]
        where = str(data)
    elif isinstance(data, (list, tuple)):
        found, where = list(data), "data"
    else:
        raise ValueError(
            f"data: expected a folder of unlabelled scans or a list of inputs, got {type(data).__name__}"
        )
    if len(found) > MAX_FILES:
        raise ValueError(f"{where}: {len(found)} inputs; pretraining takes at most {MAX_FILES}")
    if len(found) < 2:
        raise ValueError(f"{where}: pretraining needs at least 2 scans, found {len(found)}")
    return found


def _check_pixels(examples: list, spec: dict) -> None:
    """ValueError before preparing when the prepared images would not fit :data:`MAX_PIXELS`."""
    total = 0
    for e in examples:
        h, w = model_shape(e.shape, e.pixel_size, spec["pixel_size"])
        size = spec["input_size"]
        total += max(h, size) * max(w, size) * e.n_frames * len(e.channels)
    if total > MAX_PIXELS:
        raise ValueError(
            f"data: the scans make {total:.3g} pixels at the model's pixel size, more than the "
            f"{MAX_PIXELS:.3g} pretraining holds in memory; use fewer or smaller scans"
        )


def _options(options: dict) -> dict:
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown pretraining option(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **options}
    for key in ("epochs", "batch_size", "crop_size", "seed"):
        value = opts[key]
        if key == "crop_size" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{key}: expected a whole number >= 0, got {value!r}")
        opts[key] = int(value)
    if opts["epochs"] < 1 or opts["batch_size"] < 2:
        raise ValueError("epochs must be at least 1 and batch_size at least 2 (views are compared in pairs)")
    for key in ("learning_rate", "weight_decay", "temperature", "max_zoom"):
        value = opts[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        opts[key] = float(value)
    if opts["learning_rate"] <= 0 or opts["temperature"] <= 0 or opts["weight_decay"] < 0:
        raise ValueError("learning_rate and temperature must be > 0, weight_decay >= 0")
    if not 1 <= opts["max_zoom"] <= 4:
        raise ValueError(f"max_zoom: expected 1 to 4, got {opts['max_zoom']!r}")
    return opts


# --------------------------------------------------------------------------------------
# Views and loss
# --------------------------------------------------------------------------------------


def _crop(
    view: np.ndarray, centre: tuple[float, float], crop: int, max_zoom: float, rng: np.random.Generator, torch
):
    """A square crop of ``view`` (C, H, W) near ``centre`` (shifted by up to a quarter of it) at a
    random scale, resampled to ``crop`` px."""
    limit = min(view.shape[1:])
    side = int(round(crop * math.exp(rng.uniform(-math.log(max_zoom), math.log(max_zoom)))))
    side = max(4, min(side, limit))
    y, x = (
        int(np.clip(round(c + rng.uniform(-crop / 4, crop / 4) - side / 2), 0, n - side))
        for c, n in zip(centre, view.shape[1:], strict=True)
    )
    patch = torch.from_numpy(np.ascontiguousarray(view[:, y : y + side, x : x + side]))[None]
    if side != crop:
        patch = torch.nn.functional.interpolate(
            patch, size=(crop, crop), mode="bilinear", align_corners=False, antialias=side > crop
        )
    return patch[0]


def _pink_filter(size: int, torch):
    """The amplitude of 1/f noise on a ``size`` x ``size`` grid (rfft layout, unit variance)."""
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    f = torch.sqrt(fy**2 + fx**2)
    f[0, 0] = 1.0
    amp = 1.0 / f
    amp[0, 0] = 0.0
    return amp / torch.sqrt((amp**2).mean())


def _spm_views(samples: list[np.ndarray], centres: list, opts: dict, rng: np.random.Generator, pink, torch):
    """Augmented views (N, C, crop, crop) of ``samples`` around ``centres``, each normalised again."""
    crop = opts["crop_size"]
    x = torch.stack(
        [_crop(v, c, crop, opts["max_zoom"], rng, torch) for v, c in zip(samples, centres, strict=True)]
    )
    n, c = x.shape[:2]
    out = []
    for i in range(n):  # rotations and flips per view
        v = torch.rot90(x[i], int(rng.integers(4)), dims=(1, 2))
        out.append(torch.flip(v, dims=(2,)) if rng.random() < 0.5 else v)
    x = torch.stack(out)

    def draw(*shape, lo=0.0, hi=1.0):
        return torch.from_numpy(rng.uniform(lo, hi, shape).astype(np.float32))

    ramp = torch.linspace(-1, 1, crop)
    tilt = draw(n, c, 1, 1, lo=-0.3, hi=0.3) * ramp[:, None] + draw(n, c, 1, 1, lo=-0.3, hi=0.3) * ramp
    rows = torch.from_numpy(rng.normal(0, 1, (n, c, crop, 1)).astype(np.float32)) * draw(n, c, 1, 1, hi=0.15)
    spectrum = torch.fft.rfft2(torch.from_numpy(rng.normal(0, 1, (n, c, crop, crop)).astype(np.float32)))
    drift = torch.fft.irfft2(spectrum * pink, s=(crop, crop)) * draw(n, c, 1, 1, hi=0.3)
    white = torch.from_numpy(rng.normal(0, 1, (n, c, crop, crop)).astype(np.float32)) * draw(
        n, c, 1, 1, hi=0.3
    )
    x = x + tilt + rows + drift + white
    gamma = torch.exp(draw(n, c, 1, 1, lo=-0.35, hi=0.35))
    x = torch.sign(x) * x.abs() ** gamma
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x / x.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)


def nt_xent(z, temperature: float, torch):
    """SimCLR's loss for ``z`` (2N, D): rows i and i+N are two views of one scan."""
    z = torch.nn.functional.normalize(z, dim=1)
    n = z.shape[0] // 2
    similarity = z @ z.T / temperature
    similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return torch.nn.functional.cross_entropy(similarity, partner)


# --------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------


def pretrain_steps(
    data: Any,
    channels: Sequence[str] = (),
    pixel_size: Any = "auto",
    input_size: int = 128,
    preprocessing: Any = DEFAULT_PREPROCESSING,
    architecture: dict | None = None,
    device: Any = None,
    threads: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    **options: Any,
) -> Generator[Progress, None, Encoder]:
    """:func:`pretrain` as a generator yielding Progress; returns the :class:`Encoder` (unsaved)."""
    import torch

    from ..nn.device import resolve_device, torch_threads
    from ..nn.loop import OneCycle, fit, state_of

    started = time.perf_counter()
    opts = _options(options)
    channels = [str(c) for c in channels]
    steps = check_steps(preprocessing, "preprocessing")
    dev = resolve_device(device)
    skipped: list[dict] = []
    found = _inputs(data, skipped)
    examples = yield from load_examples([(item, "unlabelled") for item in found], channels, skipped)
    if len(examples) < 2:
        reasons = "; ".join(f"{s['input']}: {s['reason']}" for s in skipped[:3])
        raise ValueError(f"data: fewer than 2 readable scans{': ' + reasons if reasons else ''}")
    target = target_pixel_size(examples, pixel_size, int(input_size))
    arch = _encoder_architecture(architecture, len(channels), int(input_size))
    pools = 2 ** min(arch["blocks"], arch["pooled_blocks"])
    if opts["crop_size"] is None:
        opts["crop_size"] = max(pools, arch["input_size"] // 2 // pools * pools)
    if opts["crop_size"] > arch["input_size"] or opts["crop_size"] < 8:
        raise ValueError(
            f"crop_size: expected 8 px to the input size {arch['input_size']} px, got {opts['crop_size']}"
        )
    if opts["crop_size"] % pools:
        raise ValueError(f"crop_size: {opts['crop_size']} px must be divisible by the network's pooling")
    spec = {"pixel_size": target, "input_size": arch["input_size"], "preprocessing": steps}
    _check_pixels(examples, spec)
    samples = yield from prepare_samples(examples, ["unlabelled"], spec, skipped)
    views = samples.views
    if len(views) < 2:
        raise ValueError(
            f"data: fewer than 2 scans are usable (each needs {math.ceil(arch['input_size'] * MIN_COVERED)} px a side "
            f"at the model's pixel size); skipped: {'; '.join(s['reason'] for s in skipped[:3])}"
        )
    batch = min(opts["batch_size"], len(views))
    steps_per_epoch = max(8, math.ceil(len(views) / batch))
    rng = np.random.default_rng(opts["seed"])
    with torch_threads(threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(opts["seed"])
        net = build_network({**arch, "n_classes": 2}).to(dev)
        width = net.output.in_features if net.dense is None else arch["filters"] * 2 ** (arch["blocks"] - 1)
        projector = torch.nn.Sequential(
            torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, PROJECTION)
        ).to(dev)
        both = torch.nn.ModuleDict({"blocks": net.blocks, "projector": projector})
        pink = _pink_filter(opts["crop_size"], torch)
        losses: list[float] = []

        def step():
            chosen = rng.choice(len(views), size=batch, replace=False)
            picked = [views[i] for i in chosen]
            centres = [tuple(rng.uniform(0, n) for n in v.shape[1:]) for v in picked]
            x = torch.cat([_spm_views(picked, centres, opts, rng, pink, torch) for _ in range(2)]).to(dev)
            loss = nt_xent(projector(net.features(x).mean(dim=(2, 3))), opts["temperature"], torch)
            losses.append(float(loss.detach()))
            return loss

        fitted = yield from fit(
            both,
            step,
            learning_rate=opts["learning_rate"],
            weight_decay=opts["weight_decay"],
            optimiser="adamw",
            schedule=OneCycle(),
            steps_per_epoch=steps_per_epoch,
            epochs=opts["epochs"],
            should_stop=should_stop,
            label="pretraining",
        )
        state = {k: v for k, v in state_of(net).items() if k.startswith("blocks.")}
    first, last = losses[:steps_per_epoch], losses[-steps_per_epoch:]
    return Encoder(
        architecture=arch,
        state=state,
        channels=channels,
        pixel_size=target,
        input_size=arch["input_size"],
        preprocessing=steps,
        training={
            "method": "SimCLR contrastive (NT-Xent) with SPM augmentations",
            "options": opts,
            "images": int(len(np.unique(samples.groups))),
            "samples": len(views),
            "epochs_run": fitted.epochs,
            "steps": fitted.steps,
            "loss_first_epoch": float(np.mean(first)) if first else None,
            "loss_last_epoch": float(np.mean(last)) if last else None,
            "skipped": skipped,
            "stopped_by_user": fitted.stopped_by_user,
            "device": str(dev),
            "seconds": round(time.perf_counter() - started, 2),
        },
    )


def pretrain(
    data: Any,
    output: str | os.PathLike,
    channels: Sequence[str] = (),
    progress: Callable[[Progress], Any] | None = None,
    **options: Any,
) -> Path:
    """Pretrain the classifier's encoder on unlabelled scans and write it; returns the weights path.

    ``data``: a folder (every SPM file, .npy/TIFF array and PNG/JPEG picture inside,
    recursively) or a list of inputs (paths, Scans, arrays, Examples). ``output``: the encoder
    path (``output.safetensors`` + ``output.json``). ``channels``, ``pixel_size``,
    ``input_size``, ``preprocessing`` and ``architecture`` mean what they mean for ``train``
    (give the same ones); keyword options: ``device``, ``threads``, ``should_stop`` and those of
    :data:`DEFAULTS`. Use it with ``train(..., pretrained=output)``.
    """
    weights_path, _ = weight_paths(output)
    if not weights_path.parent.is_dir():  # checked before the work, not after
        raise OSError(
            f"{weights_path}: cannot save the encoder, the folder {weights_path.parent} does not exist"
        )
    encoder = run_to_end(pretrain_steps(data, channels, **options), progress)
    return encoder.save(output)


#: ``train_steps`` options pretraining shares, so the encoder fits the classifier it starts.
SHARED_OPTIONS = ("pixel_size", "input_size", "preprocessing", "architecture", "device", "threads", "seed")


def pretrain_then_train_steps(
    unlabelled: Any,
    data: Any,
    channels: Sequence[str] = (),
    should_stop: Callable[[], bool] | None = None,
    **options: Any,
) -> Generator[Progress, None, Any]:
    """:func:`pretrain_steps` on ``unlabelled`` (with the classifier's channels, pixel size, input
    size, preprocessing, network, device, threads and seed), then ``train_steps`` on ``data``
    from that encoder; returns the model, or None when stopped while pretraining."""
    from .train import train_steps

    shared = {k: options[k] for k in SHARED_OPTIONS if k in options}
    encoder = yield from pretrain_steps(unlabelled, channels, should_stop=should_stop, **shared)
    if encoder.training["stopped_by_user"]:
        return None
    return (yield from train_steps(data, channels, should_stop=should_stop, pretrained=encoder, **options))
