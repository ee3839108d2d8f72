"""Applying the upscaler: the network's detail over the consistent base, the cross-scale weight,
the classical methods, and the zero-shot pipeline (learn from the image, weigh, apply)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from ...nn.device import resolve_device, torch_threads
from ...nn.upscaler import architecture
from ..common import Progress, is_dask, map_frames, run_to_end
from .grid import bicubic2d, block_mean, consistent_base, crop, lanczos2d
from .model import as_model, net_from_model, new_net
from .normalise import Norm, fill_nans, restore_nans
from .training import as_list, train_detail, training_frames, training_pairs

TRANSFORMS = 8


def apply_detail(
    net, normed: np.ndarray, factor: int, device, ensemble: bool
) -> Generator[Progress, None, np.ndarray]:
    """The network's detail for one normalised 2-D image (row bands, exact: each has its context)."""
    import torch

    r = net.radius
    padded = np.pad(normed, r, mode="symmetric").astype(np.float32)
    ny, nx = normed.shape
    transforms = range(TRANSFORMS) if ensemble else range(1)
    bands = []
    for t in transforms:
        h, w = (nx, ny) if t & 4 else (ny, nx)
        step = max(8, 65536 // w)
        bands.append((h, w, step))
    total, done = sum(-(-h // step) for h, _, step in bands), 0
    out = np.zeros((ny * factor, nx * factor), dtype=np.float64)
    for t, (h, w, step) in zip(transforms, bands):
        img = padded.T if t & 4 else padded
        if t & 1:
            img = img[::-1]
        if t & 2:
            img = img[:, ::-1]
        res = np.empty((h * factor, w * factor), dtype=np.float32)
        with torch.inference_mode():
            for r0 in range(0, h, step):
                r1 = min(h, r0 + step)
                x = torch.from_numpy(np.ascontiguousarray(img[r0 : r1 + 2 * r]))[None, None].to(device)
                res[r0 * factor : r1 * factor] = net(x)[0, 0].cpu().numpy()
                done += 1
                yield Progress(done, total, None, "upscaling")
        if t & 2:
            res = res[:, ::-1]
        if t & 1:
            res = res[::-1]
        if t & 4:
            res = res.T
        out += res
    return out / len(transforms)


def cross_scale_weight(
    net, frames: list[np.ndarray], factor: int, device, ensemble: bool
) -> Generator[Progress, None, float | None]:
    """Least-squares weight in [0, 1] of the network's detail on (frame / factor -> frame) pairs.

    The weight ``w`` minimising ``|base + w * detail - frame|²`` summed over the frames
    (at most 4, each at least ``8 * factor`` pixels on a side), clipped to [0, 1]; None when
    no frame is large enough.
    """
    num = den = 0.0
    checked = 0
    for fine in frames:
        fine = crop(fine, factor)
        if min(fine.shape) // factor < 8 or checked == 4:
            continue
        checked += 1
        coarse = block_mean(fine, factor)
        detail = yield from apply_detail(net, coarse, factor, device, ensemble)
        target = fine - consistent_base(coarse, factor)
        num += float((detail * target).sum())
        den += float((detail * detail).sum())
    if not checked:
        return None
    if den <= 0:
        return 0.0
    return float(min(1.0, max(0.0, num / den)))


def cnn_frame_steps(
    net, frame: np.ndarray, factor: int, device, ensemble: bool, weight: float
) -> Generator[Progress, None, np.ndarray]:
    """One 2-D frame: consistent base + weight x network detail (×4 with a ×2 network: then a ×2 base)."""
    filled, bad = fill_nans(frame)
    if bad is not None and bad.all():
        return np.full((frame.shape[0] * factor, frame.shape[1] * factor), np.nan)
    norm = Norm.fit(filled)
    normed = norm.forward(filled)
    net_factor = factor if net is None else net.factor
    out = consistent_base(normed, net_factor)
    if not norm.constant and weight > 0 and net is not None:
        out += weight * (yield from apply_detail(net, normed, net_factor, device, ensemble))
    if net_factor != factor:
        out = consistent_base(out, factor // net_factor)
    return restore_nans(norm.inverse(out, frame.shape, factor), bad, factor)


def classical(image: Any, factor: int, method: str) -> Any:
    def one(frame: np.ndarray) -> np.ndarray:
        filled, bad = fill_nans(frame)
        if bad is not None and bad.all():
            return np.full((frame.shape[0] * factor, frame.shape[1] * factor), np.nan)
        norm = Norm.fit(filled)  # plane out and back: exact for a plane, better conditioned
        flat = filled - norm.plane(filled.shape)
        up = bicubic2d(flat, factor) if method == "bicubic" else lanczos2d(flat, factor)
        return restore_nans(up + norm.plane(frame.shape, factor), bad, factor)

    return map_frames(one, image)


def zero_shot_steps(
    arr: Any, factor: int, seed: int, weights: Any, opts: dict
) -> Generator[Progress, None, Any]:
    import torch

    dev = resolve_device(opts["device"])
    frames = training_frames([arr], "image")
    extra = training_frames(as_list(opts["training_images"], "training_images"), "training_images")
    adaptive, ensemble = bool(opts["adaptive"]), bool(opts["ensemble"])
    batch, patch, lr = opts["batch"], opts["patch"], opts["learning_rate"]
    # training: one thread on the CPU unless told otherwise (tiny batches gain little from more,
    # it cannot stall on busy cores, and the result does not depend on the machine's core count)
    train_threads = opts["threads"] if opts["threads"] is not None else (1 if dev.type == "cpu" else None)

    def train(net, pairs, steps, rate, step_seed, offset=0, total=None):
        with torch_threads(train_threads):
            loss = yield from train_detail(
                net, pairs, net.factor, steps, batch, patch, rate, step_seed, dev, offset, total
            )
        net.eval()
        return loss

    info: dict[str, Any] = {}
    with torch_threads(opts["threads"]), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if weights is not None:
            model = as_model(weights, factor)
            net = net_from_model(model, dev).eval()
            weight = (
                (yield from cross_scale_weight(net, frames, net.factor, dev, ensemble)) if adaptive else None
            )
            weight = 1.0 if weight is None else weight
            if opts["finetune"] and opts["finetune_steps"] > 0:
                # the weight checked before fine-tuning is kept: no unseen scale is left to check on
                yield from train(
                    net,
                    training_pairs(frames + extra, net.factor, net.radius),
                    opts["finetune_steps"],
                    lr / 4,
                    seed,
                )
        else:
            # zero-shot: ×2 learned from the image; ×4 = that ×2 network, then a ×2 consistent base
            nf = 2
            net = new_net(architecture(nf, opts["features"], opts["layers"]), seed, dev)
            radius, steps = net.radius, opts["steps"]
            half = steps // 2
            main = training_pairs(frames + extra, nf, radius)
            low_frames = [block_mean(crop(f, nf), nf) for f in frames if min(f.shape) >= nf]
            low = training_pairs(low_frames, nf, radius) + training_pairs(extra, nf, radius)
            weight = 0.0
            if not adaptive:
                if main and steps > 0:
                    yield from train(net, main, steps, lr, seed)
                    weight = 1.0
            elif low and half > 0:
                # A: learn one octave lower; how well it carries over one octave up ...
                total = steps + half
                yield from train(net, low, half, lr, seed, 0, total)
                w_up = yield from cross_scale_weight(net, frames, nf, dev, ensemble)
                info["weight_up"] = w_up
                if w_up:
                    # C: ... and how well a network learnt at the image's octave carries over down
                    check = new_net(architecture(nf, opts["features"], opts["layers"]), seed + 1, dev)
                    yield from train(check, main, half, lr, seed + 1, half, total)
                    w_down = yield from cross_scale_weight(check, low_frames, nf, dev, ensemble)
                    info["weight_down"] = w_down
                    weight = min(w_up, w_down or 0.0)
                    del check
                if weight > 0:
                    # B: A continues on both octaves and is the network used
                    yield from train(net, main + low, steps - half, lr, seed + 2, 2 * half, total)
        info["weight"] = weight
        yield Progress(0, 0, None, f"learned detail weight {weight:.2f}", extra=dict(info))

        if arr.ndim == 2:
            return (yield from cnn_frame_steps(net, np.asarray(arr), factor, dev, ensemble, weight))
        if is_dask(arr):
            return map_frames(
                lambda frame: run_to_end(cnn_frame_steps(net, frame, factor, dev, ensemble, weight)), arr
            )
        out = []
        for t in range(arr.shape[0]):
            out.append((yield from cnn_frame_steps(net, np.asarray(arr[t]), factor, dev, ensemble, weight)))
            yield Progress(t + 1, arr.shape[0], None, "upscaling frames")
        return np.stack(out)
