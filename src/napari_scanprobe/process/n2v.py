"""The torch part of self-supervised CNN denoising: Noise2Void (plain and structured) and Noise2Noise.

Everything here works on *normalised* float32 frames (about zero median and unit spread, NaN-free;
:mod:`napari_scanprobe.process.denoise` does the scaling, the NaN filling and the public API).
torch is imported inside the functions, so importing this module does not import torch.

The network (:class:`napari_scanprobe.nn.networks.SmallUNet`) is a small two-level U-Net
(``features`` channels at full resolution, twice that below; about 40 k parameters for
``features=12``) with a residual output (it predicts the correction to
its input, which trains several times faster than predicting the height itself); its last layer
starts at zero, so the untrained network is the identity (Noise2Noise then improves from the first
steps instead of first unlearning a random output).

**Noise2Void** (blind spot, after Krull et al. 2019, with the probabilistic read-out of Laine et al.
2019). Training takes random patches of the image itself and *masks* half of their pixels: each
masked pixel is replaced by the mean of its unmasked neighbours, so the network never sees a masked
pixel's own noise, and the loss is taken only on the masked pixels. The mask is a regular two-phase
pattern rather than N2V's sparse random pixels: the loss then covers half of every patch instead of
~1 %, which is what makes training converge in about a CPU minute, and prediction can use exactly the
training input (two passes, one per phase) instead of a blind network looking at unmasked data.

* plain (``structured=False``): a checkerboard; masked pixels take the mean of their 4 neighbours.
  Right for pixel-independent noise.
* structured (``structured=True``): SPM noise is correlated *along the fast scan line* (x): white
  noise smoothed by the feedback loop, slow per-line wobble. Every neighbour in the same line carries
  part of a pixel's noise, and any short masked run (structN2V) still leaks the slow part. So the
  masked run is the whole line: every other line is masked and replaced by the mean of the lines
  above and below. Noise in different lines is independent, so nothing of a line's noise reaches the
  network's input -- it predicts each line from its neighbours only.

A blind-spot prediction alone throws away the pixel's own measurement. The network therefore
outputs a prior mean ``mu`` and variance ``v`` of the height given the context, and learns one
global noise variance ``n`` with them, by the likelihood of the masked pixel ``y ~ N(mu, v + n)``.
The result is the posterior mean ``(mu * n + y * v) / (v + n)``: the context where it is certain
(flat terraces), the measurement where it is not (particle edges, steps).

**Noise2Noise** (Lehtinen et al. 2018): two noisy observations of the same surface (trace/retrace on
an identical grid, or consecutive movie frames); the network maps each to the other with a dense
squared loss on every pixel, which converges to the clean mean.

Training uses random patches with random x/y flips (never transposes: the noise is anisotropic);
prediction averages the four flips (test-time augmentation) and runs in overlapping tiles.
Training runs through the one training loop (:func:`napari_scanprobe.nn.loop.fit`: one-cycle
schedule, progress with the time left, cancel) with the network in channels-last memory order
(about 30 % less CPU time per step than the default order). All randomness comes from one
``torch.Generator`` seeded with ``seed`` (the weights are initialised
under a forked, seeded global RNG), so a CPU run with the same seed gives the same result and the
caller's global torch RNG state is left alone.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from ..nn.device import resolve_device
from .common import Progress

#: the U-Net (nn.networks.SmallUNet) pools twice, so network inputs are padded to a multiple of this
_MULTIPLE = 4
#: pixels of context on each side of a prediction tile (the receptive field is about +-20 px)
HALO = 32


# --------------------------------------------------------------------------------------------------
# masking


def _shift(x, dy: int, dx: int):
    """``x`` (B, 1, H, W) moved so that out[y, x] = x[y + dy, x + dx], mirrored at the borders."""
    from torch.nn import functional as F

    h, w = x.shape[-2:]
    padded = F.pad(x, (abs(dx), abs(dx), abs(dy), abs(dy)), mode="reflect")
    top, left = abs(dy) + dy, abs(dx) + dx
    return padded[..., top : top + h, left : left + w]


def blind_input(x, phase, structured: bool):
    """Mask half of ``x`` (B, 1, H, W): returns (network input, mask of the masked pixels).

    ``phase`` (B,) ints 0/1 choose which half. Structured: lines ``y % 2 == phase``, replaced by the
    mean of the lines above and below. Plain: the checkerboard ``(y + x) % 2 == phase``, replaced by
    the mean of the 4 neighbours. Either way no masked pixel's own value is left in the input.
    """
    import torch

    b, _, h, w = x.shape
    rows = torch.arange(h, device=x.device)[:, None]
    cols = torch.arange(w, device=x.device)[None, :]
    ph = phase.to(x.device)[:, None, None, None]
    if structured:
        masked = (rows % 2)[None, None] == ph
        fill = 0.5 * (_shift(x, -1, 0) + _shift(x, 1, 0))
    else:
        masked = ((rows + cols) % 2)[None, None] == ph
        fill = 0.25 * (_shift(x, -1, 0) + _shift(x, 1, 0) + _shift(x, 0, -1) + _shift(x, 0, 1))
    masked = masked.expand(b, 1, h, w)
    return torch.where(masked, fill, x), masked


def blind_fill(frame: np.ndarray, structured: bool) -> np.ndarray:
    """What :func:`blind_input` puts in a masked pixel's place, for every pixel of a 2-D numpy frame:
    the mean of the lines above and below (structured) or of the 4 neighbours (plain)."""
    p = np.pad(np.asarray(frame, dtype=np.float64), 1, mode="reflect")
    if structured:
        return 0.5 * (p[:-2, 1:-1] + p[2:, 1:-1])
    return 0.25 * (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:])


def blind_phases(shape: tuple[int, int], structured: bool) -> list[np.ndarray]:
    """The two masks of :func:`blind_input` for a 2-D ``shape``: every other line (structured) or
    the two colours of a checkerboard (plain). Together they cover every pixel once."""
    rows, cols = np.indices(shape)
    pattern = rows % 2 if structured else (rows + cols) % 2
    return [pattern == phase for phase in (0, 1)]


def _variances(net, out):
    """Network output -> (prior mean, prior variance, noise variance), the variances bounded."""
    import torch

    from ..nn.networks import LOG_VAR_BOUNDS

    prior = torch.exp(out[:, 1:2].clamp(*LOG_VAR_BOUNDS))
    noise = torch.exp(net.log_noise.clamp(*LOG_VAR_BOUNDS))
    return out[:, :1], prior, noise


def noise_sigma(net) -> float:
    """The noise standard deviation a probabilistic net has learnt (normalised units)."""
    import torch

    from ..nn.networks import LOG_VAR_BOUNDS

    return float(torch.exp(0.5 * net.log_noise.detach().clamp(*LOG_VAR_BOUNDS)))


def initial_noise_variance(
    frames: Sequence[np.ndarray], valid: Sequence[np.ndarray] | None, structured: bool
) -> float:
    """A robust first guess of the noise variance: the spread of ``y - fill`` over the image.

    ``fill`` is what the blind-spot mask puts in a pixel's place (the mean of the 2 lines or the 4
    neighbours); its residual has variance ``noise * (1 + 1/k)`` for k independent neighbours, and
    the median absolute deviation ignores the edges where the surface itself changes.
    """
    residuals = []
    k = 2 if structured else 4
    for i, f in enumerate(frames):
        f = np.asarray(f, dtype=np.float64)
        r = f - blind_fill(f, structured)
        if valid is not None:
            r = r[np.asarray(valid[i], dtype=bool)]
        residuals.append(r.ravel())
    r = np.concatenate(residuals) if residuals else np.zeros(1)
    if r.size == 0:
        return 1e-2
    mad = np.median(np.abs(r - np.median(r))) / 0.6745
    return float(max(mad**2 / (1 + 1 / k), 1e-6))


# --------------------------------------------------------------------------------------------------
# training


def _sample_patches(data, valid, pick, g, batch: int, size: int):
    """``batch`` random ``size`` x ``size`` patches with random x/y flips.

    ``data`` is a list of (C, H, W) tensors (C = 1 for N2V, 2 for a N2N pair), ``valid`` the matching
    list of (H, W) bool tensors, ``pick`` the probabilities of the list entries.
    Returns (B, C, s, s) values and (B, 1, s, s) validity.
    """
    import torch

    which = torch.multinomial(pick, batch, replacement=True, generator=g).tolist()
    ups = torch.rand(batch, generator=g).tolist()
    lefts = torch.rand(batch, generator=g).tolist()
    flips = (torch.rand(batch, 2, generator=g) < 0.5).tolist()
    out, out_valid = [], []
    for i, k in enumerate(which):
        h, w = data[k].shape[-2:]
        y0 = int(ups[i] * (h - size + 1))
        x0 = int(lefts[i] * (w - size + 1))
        p = data[k][:, y0 : y0 + size, x0 : x0 + size]
        v = valid[k][None, y0 : y0 + size, x0 : x0 + size]
        dims = [d for d, f in ((-2, flips[i][0]), (-1, flips[i][1])) if f]
        if dims:
            p, v = torch.flip(p, dims), torch.flip(v, dims)
        out.append(p)
        out_valid.append(v)
    return torch.stack(out), torch.stack(out_valid)


def train_steps(
    frames: Sequence[np.ndarray],
    *,
    pairs: Sequence[tuple[int, int]] | None = None,
    valid: Sequence[np.ndarray] | None = None,
    iterations: int = 1500,
    patch_size: int = 64,
    batch_size: int = 4,
    learning_rate: float = 2e-3,
    structured: bool = True,
    features: int = 12,
    seed: int = 0,
    device: Any = None,
    label: str = "n2v",
) -> Generator[Progress, None, Any]:
    """Train a denoising U-Net on normalised 2-D ``frames``; yields Progress, returns the model.

    ``pairs=None``: Noise2Void on every frame (``structured`` chooses the mask). ``pairs=[(i, j),
    ...]``: Noise2Noise, frame i -> frame j and j -> i. ``valid``: per frame, True where a pixel may
    serve as a training target (not NaN, not masked out by the user).
    """
    import torch

    from ..nn.loop import fit
    from ..nn.networks import build_unet

    dev = resolve_device(device)
    g = torch.Generator().manual_seed(int(seed))
    tens = [torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)) for f in frames]
    if valid is None:
        valid_t = [torch.ones(t.shape, dtype=torch.bool) for t in tens]
    else:
        valid_t = [torch.from_numpy(np.ascontiguousarray(v, dtype=bool)) for v in valid]
    if pairs is None:
        data = [t[None] for t in tens]
        data_valid = valid_t
    else:
        data = [torch.stack([tens[i], tens[j]]) for i, j in pairs]
        data_valid = [valid_t[i] & valid_t[j] for i, j in pairs]
    size = min(int(patch_size), *(d.shape[-2] for d in data), *(d.shape[-1] for d in data))
    size -= size % _MULTIPLE
    weight = torch.tensor([float(v.sum()) for v in data_valid])
    if size < 2 * _MULTIPLE:
        raise ValueError(f"image: {label} needs at least {2 * _MULTIPLE} x {2 * _MULTIPLE} pixels")
    if float(weight.sum()) == 0:
        raise ValueError(f"image: no valid pixels to train {label} on")
    pick = weight / weight.sum()

    probabilistic = pairs is None
    start = initial_noise_variance(frames, valid, structured) if probabilistic else 0.02
    # channels-last memory order: torch's CPU convolutions run this U-Net about 30 % faster
    net = build_unet(features, seed, probabilistic=probabilistic, noise_variance=start)
    net = net.to(dev, memory_format=torch.channels_last)

    def step():
        patches, ok = _sample_patches(data, data_valid, pick, g, int(batch_size), size)
        if probabilistic:
            phase = torch.randint(0, 2, (patches.shape[0],), generator=g)
            targets = patches[:, :1].to(dev)
            inputs, masked = blind_input(targets, phase, structured)
            where = masked & ok.to(dev)
            mean, prior, noise = _variances(net, net(inputs))
            var = prior + noise
            per_pixel = (targets - mean) ** 2 / var + torch.log(var)
        else:
            swap = (torch.rand(patches.shape[0], generator=g) < 0.5)[:, None, None, None]
            inputs = torch.where(swap, patches[:, 1:2], patches[:, :1]).to(dev)
            targets = torch.where(swap, patches[:, :1], patches[:, 1:2]).to(dev)
            where = ok.to(dev)
            per_pixel = (net(inputs) - targets) ** 2
        count = where.sum()
        if int(count) == 0:  # a patch entirely of invalid pixels: skip this step
            return None
        return (per_pixel * where).sum() / count

    yield from fit(
        net, step, learning_rate=float(learning_rate), steps_per_epoch=int(iterations), label=label
    )
    net.structured = bool(structured)
    net.probabilistic = probabilistic
    return net


# --------------------------------------------------------------------------------------------------
# prediction


def _tiles(n: int, tile: int) -> list[int]:
    """Start positions covering ``[0, n)`` with tiles of ``tile`` (the last one flush with the end)."""
    if n <= tile:
        return [0]
    return list(range(0, n - tile, tile)) + [n - tile]


def _apply(net, x, prior: bool = False):
    """One forward pass of a trained net on (1, 1, H, W): the denoised (1, 1, H, W).

    ``prior=True`` (a Noise2Void net): the prior mean alone, which never saw a pixel's own value.
    """
    import torch

    if not getattr(net, "probabilistic", False):
        return net(x)[:, :1]
    result = torch.empty_like(x)
    for phase in (0, 1):
        inputs, masked = blind_input(x, torch.tensor([phase]), net.structured)
        mean, variance, noise = _variances(net, net(inputs))
        estimate = mean if prior else (mean * noise + x * variance) / (variance + noise)
        result = torch.where(masked, estimate, result)
    return result


def predict_steps(
    net,
    frame: np.ndarray,
    *,
    tta: bool = True,
    device: Any = None,
    tile: int = 512,
    label: str = "denoising",
    prior: bool = False,
) -> Generator[Progress, None, np.ndarray]:
    """Apply a trained ``net`` to one normalised 2-D frame in overlapping tiles, averaging x/y flips.

    Yields after every network pass (up to a 512 x 512 tile: about half a second of CPU time). Tiles of
    512 rather than 256 spend a third less on the overlapping halos of a 512 x 512 scan.
    ``prior=True``: a Noise2Void net's blind-spot estimate (its prior mean), which never saw a pixel's
    own value, instead of the posterior mean.
    """
    import torch

    dev = resolve_device(device)
    net = net.to(dev)
    h, w = frame.shape
    tile = max(int(tile), 4 * _MULTIPLE)
    tile -= tile % _MULTIPLE
    halo_y = HALO if h > tile else 0
    halo_x = HALO if w > tile else 0
    # tiles of exactly tile + 2 halo when the frame is tiled, else the whole frame padded up to a
    # multiple of 4
    extra_y = 2 * halo_y if halo_y else (-h) % _MULTIPLE
    extra_x = 2 * halo_x if halo_x else (-w) % _MULTIPLE
    padded = np.pad(
        frame.astype(np.float32), ((halo_y, extra_y - halo_y), (halo_x, extra_x - halo_x)), mode="reflect"
    )
    out = np.empty((h, w), dtype=np.float32)
    flips = [(), (-1,), (-2,), (-2, -1)] if tta else [()]
    ys, xs = _tiles(h, tile), _tiles(w, tile)
    total = len(ys) * len(xs) * len(flips)
    step = 0
    th, tw = min(tile, h), min(tile, w)
    with torch.no_grad():
        for y0 in ys:
            for x0 in xs:
                window = padded[y0 : y0 + th + extra_y, x0 : x0 + tw + extra_x]
                block = torch.from_numpy(np.ascontiguousarray(window))[None, None].to(dev)
                acc: torch.Tensor | None = None
                for dims in flips:
                    x = torch.flip(block, dims) if dims else block
                    y = _apply(net, x, prior)
                    y = torch.flip(y, dims) if dims else y
                    acc = y if acc is None else acc + y
                    step += 1
                    yield Progress(step, total, None, label)
                assert acc is not None  # flips is never empty
                mean = (acc / len(flips))[0, 0].cpu().numpy()
                out[y0 : y0 + th, x0 : x0 + tw] = mean[halo_y : halo_y + th, halo_x : halo_x + tw]
    return out
