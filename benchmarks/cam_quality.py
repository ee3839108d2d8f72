"""Class activation maps on the synthetic knob images: do they point at the knobs? (issue #5)

    python benchmarks/cam_quality.py              # train, evaluate every method, time Grad-CAM
    python benchmarks/cam_quality.py --model /tmp/knobs   # train once, save there, reuse next time
    python benchmarks/cam_quality.py --layers     # also every method at every network layer

Data: ``learn/synthetic.knob_dataset`` -- healthy and malaria-infected red-blood-cell membranes
whose only difference is the knobs (decoys, mimics, texture, tilt, row offsets, scars, noise and
tip dilation on both), with the knob masks as ground truth. The classifier is trained as in the
classifier benchmark: 122 healthy + 109 infected 128 px images (seed 0, default options); the
maps are evaluated on a held-out set of 100 + 100 images (seed 1), on the infected images the
classifier gets right, explaining the predicted category ("infected"):

* pointing game: the map's maximum falls on a knob (the mask dilated by 2 px).
  Target >= 90 %.
* energy fraction: the sum of the map over knob pixels (the mask itself) / its total sum,
  averaged over images. Target >= 50 % while knobs cover far less of the image (the knob area
  fraction is printed: a map that knows nothing gets that much on average).

Every method side by side at the default (last) layer -- the targets apply there; the column
"(±2 px)" is the energy on the dilated mask, for information. Then, for reference: with
``--layers`` every gradient method at every earlier layer; "mask at NxN", the knob mask itself
brought to the default layer's map resolution and back (the best energy any map of that
resolution can reach); "heights" (the flattened image clipped at its median: bright things,
knobs and decoys alike, no classifier) and "uniform" (no information: the area fractions).

Speed: Grad-CAM for one 512 x 512 image vs a plain prediction of it (16 tiles of 128 px), CPU,
torch on 2 threads, median of 5 runs after a warm-up; both include building the network and the
preprocessing. Target: Grad-CAM < 3 x the prediction time. The load average is printed: other
processes on the same cores slow both down.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_scanprobe.learn.cam import METHODS, cam, layer_names
from napari_scanprobe.learn.data import resize
from napari_scanprobe.learn.modelfile import load_model
from napari_scanprobe.learn.predict import predict, predict_many
from napari_scanprobe.learn.synthetic import CATEGORIES, knob_dataset, membrane_image
from napari_scanprobe.learn.train import train
from napari_scanprobe.nn.classifier import pooling_count
from napari_scanprobe.process.flatten import flatten

POINTING_TARGET = 0.90
ENERGY_TARGET = 0.50
SPEED_TARGET = 3.0
DILATION_PX = 2


def as_dict(data) -> dict[str, list[np.ndarray]]:
    return {
        name: [img for img, label in zip(data.images, data.labels) if label == i]
        for i, name in enumerate(data.categories)
    }


def scores(maps: list[np.ndarray], masks: list[np.ndarray]) -> tuple[float, float, float]:
    """(pointing-game hit rate, mean energy fraction on the knobs, and on the dilated knobs)."""
    hits, energy, energy_near = [], [], []
    for m, mask in zip(maps, masks):
        near = ndimage.binary_dilation(mask, iterations=DILATION_PX)
        hits.append(bool(near[np.unravel_index(np.argmax(m), m.shape)]))
        total = float(m.sum())
        energy.append(float(m[mask].sum()) / total if total > 0 else 0.0)
        energy_near.append(float(m[near].sum()) / total if total > 0 else 0.0)
    return float(np.mean(hits)), float(np.mean(energy)), float(np.mean(energy_near))


def row(name: str, result: tuple[float, float, float], ms: str = "", note: str = "") -> str:
    pointing, energy, near = result
    return f"{name:<20} {pointing:>8.1%} {energy:>10.1%} {near:>10.1%} {ms:>8}   {note}"


def median_time(func, runs: int = 5) -> float:
    func()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model", default=None, help="model file: loaded if it exists, else trained and saved there"
    )
    parser.add_argument(
        "--layers", action="store_true", help="also evaluate every method at every network layer"
    )
    parser.add_argument(
        "--blocks", type=int, default=None, help="train with this many blocks instead of the default"
    )
    parser.add_argument(
        "--filters",
        type=int,
        default=None,
        help="train with this many first-block filters instead of the default",
    )
    parser.add_argument(
        "--pooled-blocks",
        type=int,
        default=None,
        help="train with pooling after this many blocks (default: the first)",
    )
    parser.add_argument(
        "--last-kernel-size",
        type=int,
        default=None,
        help="train with this kernel in the last block (default: 1)",
    )
    parser.add_argument(
        "--sparsity",
        type=float,
        default=None,
        help="train with this activation penalty (default: train.DEFAULTS)",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    print(
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; torch {torch.__version__}, 2 threads"
    )

    started = time.perf_counter()
    if args.model and Path(args.model).with_suffix(".safetensors").is_file():
        model = load_model(args.model)
        print(f"model {model.path} loaded (trained on {model.training.get('images_per_category')})")
    else:
        train_data = knob_dataset(122, 109, seed=args.seed)
        arch = {
            k: v
            for k, v in (
                ("blocks", args.blocks),
                ("filters", args.filters),
                ("pooled_blocks", args.pooled_blocks),
                ("last_kernel_size", args.last_kernel_size),
            )
            if v is not None
        }
        extra = {} if args.sparsity is None else {"sparsity": args.sparsity}
        model = train(
            as_dict(train_data),
            pixel_size=None,
            epochs=args.epochs,
            seed=args.seed,
            threads=2,
            architecture=arch or None,
            **extra,
        )
        print(
            f"trained on 122 healthy + 109 infected in {time.perf_counter() - started:.1f} s (data generation included)"
        )
        if args.model:
            print(f"model saved to {model.save(args.model)}")

    test = knob_dataset(100, 100, seed=args.seed + 1)
    predictions = predict_many(model, list(test.images))
    labels = np.array([model.categories.index(p.label) for p in predictions])
    truth = np.array([model.categories.index(test.categories[t]) for t in test.labels])
    infected = model.categories.index(CATEGORIES[1])
    chosen = np.flatnonzero((truth == infected) & (labels == infected))
    print(
        f"held-out accuracy {np.mean(labels == truth):.3f} on {len(truth)} images; {len(chosen)} of {np.sum(truth == infected)} infected images classified correctly"
    )
    images, masks = [test.images[i] for i in chosen], [test.masks[i] for i in chosen]
    knob_area = float(np.mean([m.mean() for m in masks]))
    near_area = float(np.mean([ndimage.binary_dilation(m, iterations=DILATION_PX).mean() for m in masks]))
    print(f"knob area fraction {knob_area:.1%} of the image (dilated by {DILATION_PX} px: {near_area:.1%})")

    print()
    last = layer_names(model)[-1]
    print(
        f"{'map (layer ' + last + ')':<20} {'pointing':>8} {'energy':>10} {'(±2 px)':>10} {'ms/img':>8}   targets: pointing >= {POINTING_TARGET:.0%}, energy >= {ENERGY_TARGET:.0%}"
    )
    failures = 0
    for method in METHODS:
        start = time.perf_counter()
        maps = [cam(model, image, method).map for image in images]
        ms = 1000 * (time.perf_counter() - start) / max(1, len(images))
        result = scores(maps, masks)
        ok_p, ok_e = result[0] >= POINTING_TARGET, result[1] >= ENERGY_TARGET
        failures += (not ok_p) + (not ok_e)
        print(row(method, result, f"{ms:.1f}", f"{verdict(ok_p)} / {verdict(ok_e)}"))
    if args.layers:  # informational: the targets are for the default (last) layer
        for layer in layer_names(model)[:-1]:
            for method in METHODS[1:]:
                print(
                    row(
                        f"{method} {layer}",
                        scores([cam(model, image, method, layer=layer).map for image in images], masks),
                    )
                )
    cells = model.input_size // 2 ** pooling_count(model.architecture)
    ceiling = [np.maximum(resize(resize(m.astype(float), (cells, cells)), m.shape), 0) for m in masks]
    print(
        row(
            f"mask at {cells}x{cells}",
            scores(ceiling, masks),
            note=f"(the knob mask itself at the {last} map's resolution: the best such a map can do)",
        )
    )
    heights = []
    for image in images:
        flat = flatten(image, "plane")
        heights.append(np.maximum(flat - np.median(flat), 0))
    print(row("heights", scores(heights, masks), note="(no classifier: bright features)"))
    print(row("uniform", (near_area, knob_area, near_area), note="(no information: the area fractions)"))

    print()
    big = membrane_image(np.random.default_rng(args.seed + 2), True, 512)[0]
    t_predict = median_time(lambda: predict(model, big, device="cpu"))
    t_cam = median_time(lambda: cam(model, big, "gradcam", device="cpu"))
    ratio = t_cam / t_predict
    failures += ratio >= SPEED_TARGET
    print(
        f"512 x 512 image on the CPU: prediction {1000 * t_predict:.0f} ms, Grad-CAM {1000 * t_cam:.0f} ms: {ratio:.2f} x (target < {SPEED_TARGET:g} x) {verdict(ratio < SPEED_TARGET)}"
    )
    print(f"total {time.perf_counter() - started:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
