"""Denoising: classical filters (scipy / scikit-image) and self-supervised CNNs (torch).

``denoise(image, method="auto", mask=None, seed=0, progress=None, **options)`` returns a new float
array; :data:`DENOISE_METHODS` lists every method's options and defaults (the napari widget builds its
controls from it); :func:`denoise_steps` is the same work as a generator that yields
:class:`~napari_scanprobe.process.common.Progress` and returns the result (the widget runs it in a
worker thread and cancels at a yield).

Methods
-------
``median`` (``size`` px), ``gaussian`` (``sigma`` px), ``nl_means`` (``h``, ``patch_size``,
``patch_distance``), ``tv`` (total variation, ``weight``), ``bilateral`` (``sigma_color``,
``sigma_spatial`` px): the classical filters.

``n2v``: Noise2Void-style self-supervised blind-spot CNN trained on the image (or the whole stack)
itself; ``structured=True`` (default) masks whole scan lines, because SPM noise is correlated along
the fast scan direction. ``n2n``: Noise2Noise from a second noisy observation ``pair=`` (the
retrace, registered on the identical grid), or, for a movie stack without ``pair``, from
consecutive frames. See :mod:`napari_scanprobe.process.n2v` for how they work.

``auto``: first measures the noise it is given (:func:`estimate_noise`: its level, and whether it
is white or correlated along the scan lines, from second differences along and across the lines).
When torch is installed and a frame has at least :data:`AUTO_MIN_PIXELS` pixels (96 x 96) it trains
``n2v`` with the blind spot that matches the noise -- the whole line (``structured=True``) for
line-correlated noise, the pixel (``structured=False``) for white noise -- and returns
``w x network + (1 - w) x nl_means`` (strength calibrated on the image, :func:`calibrate_nl_means`),
with the share ``w`` (0 to :data:`MAX_NETWORK_WEIGHT` = 0.9) fitted on the image itself
(:func:`network_weight_steps`): the pixels held back to calibrate non-local means are predicted by
non-local means that never saw them and by the network's blind-spot estimate, and the mix of the
two that predicts them best is kept. A stack
uses the weight fitted on its first frame. Otherwise (small image, no torch) it runs that
``nl_means`` alone. The estimate and the choice are reported in the first Progress
(``extra["noise"]``, ``extra["method"]``, ``extra["options"]``), the fitted share in a later one
(``extra["auto"]``: the noise estimate, method, options and ``network_weight``). Reason: the
blind-spot network and non-local means err in different places, and which one errs less depends
on the surface and the noise (``benchmarks/denoise_tuning.py``: apart from
``benchmarks/denoise_suite.py``); on small images there are too few distinct patches to train the
network. The network costs about a CPU minute, non-local means with its calibration a few seconds.

``nl_means`` with ``h=None`` (the default) picks its strength by Noise2Self: half of the pixels are
held back (replaced by the mean of their neighbours) and the strength whose result predicts them
best is kept -- no clean image and no noise model needed.

Units
-----
Heights may be in any unit, negative, with NaNs. Each frame is scaled to a *working range*: its
1st..99th percentile (of the valid pixels outside ``mask``) maps to 0..1, and the result is scaled
back. So ``h``, ``weight`` and ``sigma_color`` are fractions of the image's height range and behave
the same for nm, m or V; ``size``, ``sigma``, ``sigma_spatial``, ``patch_size`` and
``patch_distance`` are in pixels. NaNs (and infinities) are filled from the nearest valid pixel for
the filtering and put back afterwards; a constant image comes back unchanged.

``mask`` (True = excluded, as for flattening) marks pixels that must not steer the result: they are
left out of the working-range statistics, the noise estimate and the CNN's training loss. They are
still denoised.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from .common import (
    Progress,
    as_image,
    as_mask,
    center_and_sigma,
    is_dask,
    map_frames,
    run_to_end,
    torch_available,
)
from .steps import DENOISE

#: method -> {option: default}, from the contract ``process.steps.DENOISE`` (ranges, units, help)
DENOISE_METHODS: dict[str, dict[str, Any]] = {m: DENOISE.defaults(m) for m in DENOISE.method_names}

#: ``auto`` trains the CNN from this many pixels per frame on (96 x 96)
AUTO_MIN_PIXELS = 96 * 96
#: ``auto``'s share of the network in its mix with non-local means is fitted on the image, at most
#: this: the held-back non-local means of the fit sees half of the lines (or pixels), so the fit
#: leans to the network (it came out at 0.99-1.0 on every tuning case, where 0.9 scored 0.07-0.25 dB
#: higher; ``benchmarks/denoise_tuning.py``)
MAX_NETWORK_WEIGHT = 0.9
#: the working range: these percentiles of the valid pixels map to 0 and 1
RANGE_PERCENTILES = (1.0, 99.0)
#: dask stacks train the CNN on at most this many frames (evenly spaced), then denoise lazily
MAX_TRAIN_FRAMES = 8
#: ``h=None`` in nl_means: h = k x the measured noise rms (:func:`estimate_noise`), with k the one of
#: these that best predicts pixels held back from the filter (:func:`calibrate_nl_means`)
NL_MEANS_K = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5)
#: :func:`calibrate_nl_means` works on a centred crop of at most this many pixels a side
CALIBRATION_SIDE = 256
#: :func:`estimate_noise`: noise whose fourth differences along the scan line spread less than this
#: fraction of those across lines is line-correlated (white noise: 1.0-1.05; half white, half
#: correlated: 0.7-0.77; noise correlated along x, 1/f noise: about 0.4 -- each whatever the
#: surface and level on the tuning cases of ``benchmarks/denoise_tuning.py``)
LINE_RATIO = 0.9

_CNN = ("n2v", "n2n")


def choose_auto(shape: tuple[int, ...]) -> str:
    """What ``method="auto"`` picks for an image of ``shape`` (see the module docstring)."""
    if shape[-2] * shape[-1] >= AUTO_MIN_PIXELS and torch_available():
        return "n2v"
    return "nl_means"


def auto_choice(image: Any, mask: Any = None) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(method, options, noise)``: what ``method="auto"`` runs on ``image`` and the noise
    estimate (:func:`estimate_noise` of its first frame) it chose from."""
    arr = as_image(image)
    m = as_mask(mask, arr.shape)
    frame = np.asarray(arr if arr.ndim == 2 else arr[0], dtype=np.float64)
    frame_mask = None if m is None else (m if m.ndim == 2 else m[0])
    noise = estimate_noise(frame, frame_mask)
    method = choose_auto(arr.shape)
    options = {"structured": noise["kind"] == "line"} if method == "n2v" else {}
    return method, options, noise


def estimate_noise(frame: Any, mask: Any = None) -> dict[str, Any]:
    """The noise of a 2-D height image: its level and whether it is white or line-correlated.

    Differences along the scan line (x) and across lines (y) cancel a smooth surface. White noise
    gives both the same spread; noise correlated along the fast scan line (the feedback loop, 1/f
    drift within a line) changes slowly along x, so the differences along x are smaller. The
    level comes from second differences across lines, which see all of the noise; the kind from
    fourth differences (1, -4, 6, -4, 1), which keep little more than the finest detail, where
    the noise lies and a surface's corrugations and slopes hardly reach. Returns ``{"sigma":
    noise rms in the image's units, "line_ratio": spread of the fourth differences along x /
    across, 1 for white noise, "kind": "line" when line_ratio < LINE_RATIO else "white"}``.
    ``mask`` (True = feature) and NaN pixels are left out.
    """
    z = np.asarray(frame, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) < 3:
        raise ValueError(f"image: the noise estimate needs a 2-D image of at least 3 x 3, got {z.shape}")
    ok = np.isfinite(z) if mask is None else np.isfinite(z) & ~np.asarray(mask, dtype=bool)
    second, fourth = (1.0, -2.0, 1.0), (1.0, -4.0, 6.0, -4.0, 1.0)
    spread_y = _difference_spread(z, ok, second, axis=0)
    if not spread_y > 0:
        return {"sigma": 0.0, "line_ratio": 1.0, "kind": "white"}
    kernel = fourth if min(z.shape) >= len(fourth) else second
    along, across = (_difference_spread(z, ok, kernel, axis) for axis in (1, 0))
    ratio = along / across if across > 0 else 1.0
    sigma = spread_y / np.sqrt(6.0)  # a second difference of white noise has 6x its variance
    return {
        "sigma": float(sigma),
        "line_ratio": float(ratio),
        "kind": "line" if ratio < LINE_RATIO else "white",
    }


def _difference_spread(z: np.ndarray, ok: np.ndarray, kernel: tuple[float, ...], axis: int) -> float:
    """Robust spread of ``z`` filtered with the difference ``kernel`` along ``axis``, over the
    windows whose pixels are all ``ok``."""
    n = len(kernel)
    size = z.shape[axis] - n + 1
    window = [slice(None), slice(None)]
    total, good = np.zeros(()), np.ones((), dtype=bool)
    for i, c in enumerate(kernel):
        window[axis] = slice(i, i + size)
        total = total + c * z[tuple(window)]
        good = good & ok[tuple(window)]
    return float(center_and_sigma(total, good)[1])


# --------------------------------------------------------------------------------------------------
# scaling and NaN filling


def working_range(values: np.ndarray) -> tuple[float, float] | None:
    """``(offset, scale)`` mapping ``values`` to the working range, or None when they are constant.

    The 1st..99th percentile becomes 0..1; when that span is zero (a mostly flat image with a few
    features) the full min..max span is used instead.
    """
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = np.percentile(values, RANGE_PERCENTILES)
    if not hi - lo > _tiny(lo, hi):
        lo, hi = float(values.min()), float(values.max())
        if not hi - lo > _tiny(lo, hi):
            return None
    return float(lo), float(hi - lo)


def _tiny(lo: float, hi: float) -> float:
    return 64 * np.finfo(np.float64).eps * max(abs(lo), abs(hi), np.finfo(np.float64).tiny)


def fill_invalid(frame: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """A copy of ``frame`` with the ``bad`` pixels set to their nearest good pixel's value."""
    out = np.array(frame, dtype=np.float64)
    if bad.any() and not bad.all():
        from scipy import ndimage

        _, (iy, ix) = ndimage.distance_transform_edt(bad, return_indices=True)
        out[bad] = out[iy[bad], ix[bad]]
    return out


def estimate_noise_sigma(work: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Robust white-noise sigma of a 2-D image (Immerkaer's Laplacian-difference estimate, MAD form).

    Correlated (line) noise is partly seen as signal, so this underestimates it; it is only
    non-local means' ``sigma`` (the patch-distance correction), not its strength.
    """
    from scipy import ndimage

    kernel = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    response = ndimage.convolve(work, kernel, mode="reflect")
    if valid is not None:
        response = response[valid]
    if response.size == 0:
        return 0.0
    return float(np.median(np.abs(response)) / 0.6745 / 6.0)


def _frame_parts(frame: np.ndarray, mask2d: np.ndarray | None):
    """Common preparation of one frame: (bad, stats-valid, offset/scale or None)."""
    bad = ~np.isfinite(frame)
    valid = ~bad if mask2d is None else ~bad & ~mask2d
    if not valid.any():
        valid = ~bad
    scaling = working_range(frame[valid]) if valid.any() else None
    return bad, valid, scaling


# --------------------------------------------------------------------------------------------------
# classical filters (each on one 2-D working-range frame without NaNs)


def _median(work: np.ndarray, o: dict, valid) -> np.ndarray:
    from scipy import ndimage

    return ndimage.median_filter(work, size=o["size"], mode="reflect")


def _gaussian(work: np.ndarray, o: dict, valid) -> np.ndarray:
    from scipy import ndimage

    return ndimage.gaussian_filter(work, sigma=o["sigma"], mode="reflect")


def _nl_means(work: np.ndarray, o: dict, valid) -> np.ndarray:
    h = o["h"] if o["h"] is not None else calibrate_nl_means(work, valid, o)
    return _nl_means_h(work, h, o, valid)


def _nl_means_h(work: np.ndarray, h: float, o: dict, valid) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    if h <= 0:  # a noise-free image: nothing to do
        return work.copy()
    return denoise_nl_means(
        work,
        patch_size=o["patch_size"],
        patch_distance=o["patch_distance"],
        h=h,
        sigma=estimate_noise_sigma(work, valid),
        fast_mode=True,
        preserve_range=True,
    )


def calibrate_nl_means(work: np.ndarray, valid: np.ndarray | None, o: dict) -> float:
    """The strength ``h`` of non-local means for a working-range frame, chosen without a clean image.

    Noise2Self (Batson & Royer 2019): half of the pixels -- every other line for line-correlated
    noise, a checkerboard colour for white noise (:func:`estimate_noise`) -- are replaced by the
    mean of their neighbours, as in Noise2Void's blind spot, so the filter never sees their own
    noise; how well the filtered image then predicts the held-back pixels ranks the strengths
    ``k x noise rms`` (:data:`NL_MEANS_K`), both halves in turn, on a centred crop of at most
    :data:`CALIBRATION_SIDE` pixels a side (the whole frame when the crop is mostly masked). An
    image under 3 x 3 pixels or without valid pixels gets 0 (left as it is). The noise of the held-back pixels adds the same amount
    to every strength's error, so the ranking is the one against the clean surface.
    """
    return held_out_nl_means(work, valid, o)[0]


def held_out_nl_means(
    work: np.ndarray, valid: np.ndarray | None, o: dict, structured: bool | None = None
) -> tuple[float, tuple[slice, slice], np.ndarray | None, np.ndarray | None]:
    """:func:`calibrate_nl_means` and what it saw: ``(h, crop, predicted, scored)``.

    ``predicted``: non-local means of strength ``h`` on the crop ``work[crop]``, each pixel from the
    half where it was held back (so it never saw its own value); ``scored``: the crop's valid
    pixels. ``structured`` (default: from :func:`estimate_noise`): hold back whole lines (True) or
    a checkerboard colour (False). ``predicted`` and ``scored`` are None when there is nothing to
    calibrate (``h`` is then 0).
    """
    from .n2v import blind_fill, blind_phases

    whole = (slice(0, work.shape[0]), slice(0, work.shape[1]))
    ok = np.ones(work.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if min(work.shape) < 3 or not ok.any():  # too small to measure the noise: left as it is
        return 0.0, whole, None, None
    noise = estimate_noise(work, ~ok)
    if not noise["sigma"] > 0:
        return 0.0, whole, None, None
    starts = [max(0, (n - CALIBRATION_SIDE) // 2) for n in work.shape]
    crop = (
        slice(starts[0], min(starts[0] + CALIBRATION_SIDE, work.shape[0])),
        slice(starts[1], min(starts[1] + CALIBRATION_SIDE, work.shape[1])),
    )
    if ok[crop].sum() < 0.25 * ok[crop].size:  # the centre is mostly masked: use the whole frame
        crop = whole
    part, part_ok = work[crop], ok[crop]
    if structured is None:
        structured = noise["kind"] == "line"
    fill = blind_fill(part, structured)
    best: tuple[float, float, np.ndarray] | None = None
    for k in NL_MEANS_K:
        predicted = np.empty_like(part)
        for held in blind_phases(part.shape, structured):
            predicted[held] = _nl_means_h(np.where(held, fill, part), k * noise["sigma"], o, part_ok)[held]
        error = float(np.sum((predicted[part_ok] - part[part_ok]) ** 2))
        if best is None or error < best[0]:
            best = (error, k * noise["sigma"], predicted)
    assert best is not None  # NL_MEANS_K is not empty
    return float(best[1]), crop, best[2], part_ok


def _tv(work: np.ndarray, o: dict, valid) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(work, weight=o["weight"])


def _bilateral(work: np.ndarray, o: dict, valid) -> np.ndarray:
    from skimage.restoration import denoise_bilateral

    low = float(work.min())  # skimage's colour table wants values from 0 up
    smoothed = denoise_bilateral(
        work - low, sigma_color=o["sigma_color"], sigma_spatial=o["sigma_spatial"], mode="reflect"
    )
    return smoothed + low


_CLASSICAL: dict[str, Callable[[np.ndarray, dict, Any], np.ndarray]] = {
    "median": _median,
    "gaussian": _gaussian,
    "nl_means": _nl_means,
    "tv": _tv,
    "bilateral": _bilateral,
}


def _classical_frame(frame: np.ndarray, mask2d: np.ndarray | None, method: str, o: dict) -> np.ndarray:
    frame = np.asarray(frame)
    bad, valid, scaling = _frame_parts(frame, mask2d)
    if scaling is None:  # constant, or nothing valid: nothing to smooth
        return np.array(frame, dtype=np.float64)
    offset, scale = scaling
    work = fill_invalid((frame - offset) / scale, bad)
    out = _CLASSICAL[method](work, o, valid) * scale + offset
    out[bad] = frame[bad]
    return out


# --------------------------------------------------------------------------------------------------
# CNN methods


def _cnn_scaling(values: np.ndarray) -> tuple[float, float] | None:
    """Working range for the CNN: the percentile span becomes about 4 (unit-ish spread), centred."""
    scaling = working_range(values)
    if scaling is None:
        return None
    offset, scale = scaling
    return offset + 0.5 * scale, scale / 4.0


def _frames_of(arr: Any) -> list[np.ndarray]:
    return [np.asarray(arr)] if arr.ndim == 2 else [np.asarray(f) for f in arr]


def _mask_frames(mask: np.ndarray | None, n: int, index: list[int] | None = None) -> list[np.ndarray | None]:
    if mask is None:
        return [None] * n
    if mask.ndim == 2:
        return [mask] * n
    index = list(range(n)) if index is None else index
    return [mask[i] for i in index]


def _cnn_steps(
    image: Any, mask: np.ndarray | None, method: str, o: dict, seed: int
) -> Generator[Progress, None, tuple[Any, Any]]:
    """Train ``method`` on ``image`` and denoise it; returns ``(result, blind)``. ``blind``: for
    ``n2v``, a generator function giving the trained network's blind-spot estimate of a 2-D frame
    (image units), else None."""
    from ..nn.device import resolve_device
    from . import n2v as cnn

    device = resolve_device(o["device"])
    lazy = is_dask(image)
    ntotal = 1 if image.ndim == 2 else image.shape[0]

    # ---- the training frames (all of a numpy stack; a few evenly spaced ones of a dask stack)
    pair = o["pair"] if method == "n2n" else None
    pair_lazy = False
    if pair is not None:
        pair = as_image(pair, "pair")
        if tuple(pair.shape) != tuple(image.shape):
            raise ValueError(
                f"pair: shape {tuple(pair.shape)} does not match the image {tuple(image.shape)}; "
                "the second observation must be registered on the identical grid"
            )
        pair_lazy = is_dask(pair)
    if method == "n2n" and pair is None and image.ndim == 2:
        raise ValueError(
            "pair: n2n needs a second noisy observation of the same surface (pair=..., e.g. the "
            "retrace on the identical grid), or a (t, y, x) movie stack to pair consecutive frames"
        )
    if method == "n2n" and pair is None and ntotal < 2:
        raise ValueError("pair: a stack of one frame has no consecutive frame to pair with")

    if image.ndim == 2:
        index = [0]
    elif lazy and ntotal > MAX_TRAIN_FRAMES:
        if method == "n2n" and pair is None:  # consecutive pairs: take them in runs of two
            starts = np.linspace(0, ntotal - 2, MAX_TRAIN_FRAMES // 2).round().astype(int)
            index = sorted({int(i) for s in starts for i in (s, s + 1)})
        else:
            index = sorted({int(i) for i in np.linspace(0, ntotal - 1, MAX_TRAIN_FRAMES).round()})
    else:
        index = list(range(ntotal))
    if image.ndim == 2:
        train = [np.asarray(image, dtype=np.float64)]
    else:
        train = [np.asarray(image[i], dtype=np.float64) for i in index]
    train_pair = None
    if pair is not None:
        if pair.ndim == 2:
            train_pair = [np.asarray(pair, dtype=np.float64)]
        else:
            train_pair = [np.asarray(pair[i], dtype=np.float64) for i in index]
    masks = _mask_frames(mask, len(index), index)

    # ---- one scaling for the whole stack (and its pair), from the training frames
    samples = []
    for k, f in enumerate(train + (train_pair or [])):
        m = masks[k % len(index)]
        ok = np.isfinite(f) if m is None else np.isfinite(f) & ~m
        if not ok.any():
            ok = np.isfinite(f)
        samples.append(f[ok])
    scaling = _cnn_scaling(np.concatenate(samples)) if samples else None
    if scaling is None:  # constant (or all-NaN) data: nothing to denoise
        result = image.astype(np.float64) if lazy else np.array(image, dtype=np.float64)
        return result, None
    offset, scale = scaling

    def normalise(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bad = ~np.isfinite(f)
        return fill_invalid((f - offset) / scale, bad).astype(np.float32), bad

    frames, valid = [], []
    for k, f in enumerate(train + (train_pair or [])):
        z, bad = normalise(f)
        m = masks[k % len(index)]
        frames.append(z)
        valid.append(~bad if m is None else ~bad & ~m)

    if method == "n2v":
        pairs = None
    elif pair is not None:
        n = len(train)
        pairs = [(k, n + k) for k in range(n)]
    else:
        position = {i: k for k, i in enumerate(index)}
        pairs = [(position[i], position[i + 1]) for i in index if i + 1 in position]

    net = yield from cnn.train_steps(
        frames,
        pairs=pairs,
        valid=valid,
        iterations=o["iterations"],
        patch_size=o["patch_size"],
        batch_size=o["batch_size"],
        learning_rate=o["learning_rate"],
        structured=o.get("structured", True),
        features=o["features"],
        seed=seed,
        device=device,
        label=method,
    )

    def denoise_one_steps(f: np.ndarray, what: str) -> Generator[Progress, None, np.ndarray]:
        z, bad = normalise(np.asarray(f, dtype=np.float64))
        out = yield from cnn.predict_steps(
            net, z, tta=o["tta"], device=device, label=f"{method}: denoising {what}"
        )
        out = out.astype(np.float64) * scale + offset
        out[bad] = np.asarray(f)[bad]
        return out

    def blind_steps(f: np.ndarray) -> Generator[Progress, None, np.ndarray]:
        # Noise2Void's blind-spot estimate of a frame (its prior mean): never saw a pixel's own value
        z, _ = normalise(np.asarray(f, dtype=np.float64))
        out = yield from cnn.predict_steps(
            net, z, tta=o["tta"], device=device, prior=True, label=f"{method}: blind-spot estimate"
        )
        return out.astype(np.float64) * scale + offset

    def denoise_pair_steps(a: np.ndarray, b: np.ndarray, what: str) -> Generator[Progress, None, np.ndarray]:
        # both observations show the same surface: the result is the mean of both denoised ones
        # (the image's alone where the pair has a hole; the image's NaNs stay NaN)
        first = yield from denoise_one_steps(a, what)
        second = yield from denoise_one_steps(b, f"{what} (pair)")
        return np.where(np.isfinite(second), 0.5 * (first + second), first)

    blind = blind_steps if method == "n2v" else None
    if (lazy or pair_lazy) and image.ndim == 3:
        if pair is None:
            return map_frames(lambda f: run_to_end(denoise_one_steps(f, "frame")), image), blind
        return _map_pairs(lambda a, b: run_to_end(denoise_pair_steps(a, b, "frame")), image, pair), None

    # eager: predict frame by frame, yielding between network passes
    if image.ndim == 2:
        sources = [(np.asarray(image), None if pair is None else np.asarray(pair))]
    else:
        sources = [
            (np.asarray(image[t]), None if pair is None else np.asarray(pair[t])) for t in range(ntotal)
        ]
    results = []
    for t, (a, b) in enumerate(sources):
        what = "image" if image.ndim == 2 else f"frame {t + 1} of {len(sources)}"
        steps = denoise_one_steps(a, what) if b is None else denoise_pair_steps(a, b, what)
        results.append((yield from steps))
    return (results[0] if image.ndim == 2 else np.stack(results)), blind


def _map_pairs(func: Callable[[np.ndarray, np.ndarray], np.ndarray], image: Any, pair: Any) -> Any:
    """``func(frame, pair_frame)`` for every frame of a stack, lazily -- map_frames for two inputs."""
    import dask.array as da

    a = da.asarray(image).rechunk({0: 1, 1: -1, 2: -1})
    b = da.asarray(pair).rechunk({0: 1, 1: -1, 2: -1})
    return da.map_blocks(
        lambda x, y: func(np.asarray(x[0]), np.asarray(y[0]))[np.newaxis], a, b, dtype=np.float64
    )


# --------------------------------------------------------------------------------------------------
# public API


def denoise_steps(
    image: Any, method: str = "auto", mask: Any = None, seed: int = 0, **options: Any
) -> Generator[Progress, None, Any]:
    """:func:`denoise` as a generator: yields Progress (training steps, frames), returns the result.

    The CNN methods yield at every training step (well under 0.2 s each on a CPU), so a worker
    thread can cancel between them.
    """
    arr = as_image(image)
    DENOISE.check(method, options)
    if method == "auto":
        method, options, noise = auto_choice(arr, mask)
        yield Progress(
            0,
            1,
            None,
            f"auto: {'line-correlated' if noise['kind'] == 'line' else 'white'} noise, rms "
            f"{noise['sigma']:.3g} -> {method}"
            + (f" ({'whole-line' if options['structured'] else 'pixel'} blind spot)" if options else ""),
            {"noise": noise, "method": method, "options": dict(options)},
        )
        mix = method == "n2v"
    else:
        mix, noise = False, {}
    o = DENOISE.check(method, options)
    seed = DENOISE.check_option("seed", seed)
    m = as_mask(mask, arr.shape)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64

    if method not in _CNN:
        return (yield from _classical_steps(arr, m, method, o, dtype))
    result, blind = yield from _cnn_steps(arr, m, method, o, seed)
    if mix and blind is not None:  # auto: the network's result mixed with self-calibrated non-local means
        frame = np.asarray(arr if arr.ndim == 2 else arr[0], dtype=np.float64)
        weight, h = yield from network_weight_steps(
            frame, None if m is None else (m if m.ndim == 2 else m[0]), blind, o["structured"]
        )
        chose = {**noise, "method": method, "options": dict(options), "network_weight": weight}
        yield Progress(
            1,
            1,
            None,
            f"auto: {weight:.2f} x network + {1 - weight:.2f} x non-local means",
            {"auto": chose},
        )
        if weight < 1:
            # an image's weight was fitted against non-local means of strength h: mix that one;
            # each frame of a movie gets its own strength
            nl_means = DENOISE.check("nl_means", {"h": h} if arr.ndim == 2 else {})
            smooth = yield from _classical_steps(arr, m, "nl_means", nl_means, np.float64)
            result = weight * result + (1 - weight) * smooth
    return result.astype(dtype, copy=False) if not is_dask(result) else result.astype(dtype)


def network_weight_steps(
    frame: np.ndarray,
    mask2d: np.ndarray | None,
    blind: Callable[[np.ndarray], Generator[Progress, None, np.ndarray]],
    structured: bool,
) -> Generator[Progress, None, tuple[float, float | None]]:
    """``auto``'s share ``w`` of the network in ``w x network + (1 - w) x non-local means``, fitted
    on the 2-D ``frame`` itself (a generator; returns ``w`` in 0..1 and the strength ``h`` of the
    non-local means it was fitted against, None when there was nothing to fit).

    The pixels that calibrate non-local means (:func:`held_out_nl_means`: every other line when
    ``structured``, else a checkerboard colour, on a centred crop) are predicted twice without
    their own value: by non-local means that never saw them and by the network's blind-spot
    estimate (``blind``, its prior mean). The noise of a held-back pixel is independent of both,
    so the ``w`` whose mix of the two predicts the held-back pixels best (least squares, in closed
    form) is the one that best predicts the clean surface there; it is capped at
    :data:`MAX_NETWORK_WEIGHT`. 1 when there is nothing to fit (no noise: the network alone).
    """
    bad, valid, scaling = _frame_parts(frame, mask2d)
    if scaling is None:
        return 1.0, None
    offset, scale = scaling
    work = fill_invalid((frame - offset) / scale, bad)
    h, crop, smooth, scored = held_out_nl_means(work, valid, DENOISE.check("nl_means", {}), structured)
    if smooth is None or scored is None or not scored.any():
        return 1.0, None
    from .n2v import HALO

    (y0, y1), (x0, x1) = ((c.start, c.stop) for c in crop)
    top, left = max(0, y0 - HALO), max(0, x0 - HALO)  # context for the network around the crop
    context = frame[top : min(frame.shape[0], y1 + HALO), left : min(frame.shape[1], x1 + HALO)]
    network = yield from blind(context)
    network = (network[y0 - top : y1 - top, x0 - left : x1 - left] - offset) / scale
    target, a, b = work[crop][scored], network[scored], smooth[scored]
    difference = a - b
    spread = float(np.sum(difference**2))
    if not spread > 0:
        return 1.0, h
    return float(np.clip(np.sum((target - b) * difference) / spread, 0.0, MAX_NETWORK_WEIGHT)), h


def _classical_steps(
    arr: Any, m: np.ndarray | None, method: str, o: dict, dtype: Any
) -> Generator[Progress, None, Any]:
    if arr.ndim == 3 and m is not None and m.ndim == 3:
        if is_dask(arr):
            import dask.array as da

            frames = arr.rechunk({0: 1, 1: -1, 2: -1})
            return da.map_blocks(
                lambda block, block_info=None: _classical_frame(
                    np.asarray(block[0]), m[block_info[0]["chunk-location"][0]], method, o
                )[np.newaxis].astype(dtype),
                frames,
                dtype=dtype,
            )
        out = []
        for t in range(arr.shape[0]):
            out.append(_classical_frame(np.asarray(arr[t]), m[t], method, o))
            yield Progress(t + 1, arr.shape[0], None, f"{method}: frame {t + 1} of {arr.shape[0]}")
        return np.stack(out).astype(dtype, copy=False)

    def one(frame: np.ndarray) -> np.ndarray:
        return _classical_frame(frame, m, method, o).astype(dtype, copy=False)

    if arr.ndim == 2 or is_dask(arr):
        result = map_frames(one, arr, dtype=dtype)
        yield Progress(1, 1, None, f"{method}: done")
        return result
    out = []
    for t in range(arr.shape[0]):
        out.append(one(np.asarray(arr[t])))
        yield Progress(t + 1, arr.shape[0], None, f"{method}: frame {t + 1} of {arr.shape[0]}")
    return np.stack(out)


def denoise(
    image: Any,
    method: str = "auto",
    mask: Any = None,
    seed: int = 0,
    progress: Callable[[Progress], Any] | None = None,
    **options: Any,
) -> Any:
    """Denoise a 2-D image or a (t, y, x) stack; returns a new float array (dask stays lazy).

    ``method``: one of :data:`DENOISE_METHODS` (``options`` are that method's, see its defaults
    there and the module docstring for their units). ``mask``: True where pixels must not steer the
    result (left out of statistics and CNN training; still denoised). ``seed``: all randomness
    (CNN patches, masks, weights) -- the same seed on the CPU gives the same result. ``progress``:
    called with every :class:`Progress`.
    """
    return run_to_end(denoise_steps(image, method, mask=mask, seed=seed, **options), progress)
