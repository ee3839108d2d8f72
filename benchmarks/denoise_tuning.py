"""The tuning cases behind ``denoise``'s auto -- kept apart from ``denoise_suite.py``.

    python benchmarks/denoise_tuning.py --nlm-only           # non-local means strength: 20 cases, seconds
    python benchmarks/denoise_tuning.py --size 256 steps:pink:2.5 grains:white:6   # + Noise2Void (CPU minutes each)

Nothing here is shared with the suite: other surfaces (``grains``: Gaussian bumps of 2-10 px;
``steps``: four tilted terraces with an atomic-row corrugation and small caps), other noise models
(``line``: first-order autoregressive along the scan line, rho 0.75 -- the suite smooths white
noise with a Gaussian; ``drift``: a random walk along each line with its median removed plus some
white noise; ``pink``: 1/f noise in scan order as a sum of autoregressive series with each line's
mean removed -- the suite shapes one 1/f series with the FFT and removes the median; ``mixed``:
white + autoregressive rho 0.6 -- the suite adds Gaussian-smoothed noise), other levels (4 % and
10 %; 2.5 % and 6 % for the network cases; the suite uses 3 % and 8 %) and other seeds (300, 301).

``--nlm-only`` prints, for every case, non-local means at each strength ``k x noise rms``
(:data:`NL_MEANS_K`), the best one (an oracle) and the one :func:`calibrate_nl_means` picks without
the truth. With cases (``surface:noise[:level %[:line|pixel]]``, the blind spot by default the one
auto picks), it also trains Noise2Void with the defaults and prints its posterior and prior-mean
results, calibrated non-local means, and ``w x network + (1 - w) x non-local means`` for the old
fixed ``w`` (0.7 white / 0.3 line-correlated), the best ``w`` against the truth and the ``w`` auto
fits on the image (:func:`network_weight_steps`).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_scanprobe.process import denoise as D  # noqa: E402

MODELS = ("white", "line", "drift", "mixed", "pink")
SEEDS = {"grains": 300, "steps": 301}


def grains(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    z = np.zeros((size, size))
    for _ in range(size * size // 300):
        cy, cx, w, a = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(2, 10), rng.uniform(0.3, 2)
        z += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * w * w))
    return z


def steps(size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    z = 0.8 * np.floor((xx * 0.8 + yy * 0.4 + 8 * np.sin(yy / 17)) / (size / 4))
    z += 0.15 * np.sin(2 * np.pi * (xx + 0.3 * yy) / 7.0)
    for _ in range(size * size // 1500):
        cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(2, 6)
        z += rng.uniform(1, 3) * np.clip(1 - ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2, 0, None) ** 0.5
    return z


def autoregressive(shape: tuple[int, int], rng: np.random.Generator, rho: float) -> np.ndarray:
    w = rng.normal(size=shape)
    n = np.empty(shape)
    n[:, 0] = w[:, 0] / np.sqrt(1 - rho**2)
    for j in range(1, shape[1]):
        n[:, j] = rho * n[:, j - 1] + w[:, j]
    return n


def noise(model: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    if model == "white":
        n = rng.normal(size=shape)
    elif model == "line":
        n = autoregressive(shape, rng, 0.75)
    elif model == "drift":
        n = np.cumsum(rng.normal(size=shape), axis=1) * 0.25
        n -= np.median(n, axis=1, keepdims=True)
        n = n / n.std() + 0.4 * rng.normal(size=shape)
    elif model == "mixed":
        a, b = rng.normal(size=shape), autoregressive(shape, rng, 0.6)
        n = 0.6 * a / a.std() + 0.8 * b / b.std()
    else:
        n = pink(shape, rng)
    return n / n.std()


def pink(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """1/f noise in scan order as a sum of first-order autoregressive series of equal variance
    with time constants 1, 2, 4, ... 8192 samples (the suite shapes a spectrum with the FFT), each
    line's mean then removed (the suite removes the median)."""
    count = shape[0] * shape[1]
    n = np.zeros(count)
    for k in range(14):
        rho = np.exp(-1.0 / 2.0**k)
        w = rng.normal(size=count) * np.sqrt(1 - rho**2)
        n += lfilter([1.0], [1.0, -rho], w)
    n = n.reshape(shape)
    return n - n.mean(axis=1, keepdims=True)


def case(surface: str, model: str, level: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    seed = SEEDS[surface]
    truth = {"grains": grains, "steps": steps}[surface](size, np.random.default_rng(seed))
    span = np.subtract(*np.percentile(truth, [99, 1]))
    rng = np.random.default_rng(seed + 7 * MODELS.index(model))
    return truth, truth + level * span * noise(model, truth.shape, rng)


def psnr(result: np.ndarray, truth: np.ndarray) -> float:
    return float(20 * np.log10(np.ptp(truth) / np.sqrt(np.mean((result - truth) ** 2))))


def nlm_cases(size: int) -> None:
    print("non-local means, PSNR dB by strength k x noise rms; best = oracle, cal = calibrated on the image")
    for surface, model, level in itertools.product(SEEDS, MODELS, (0.04, 0.10)):
        truth, noisy = case(surface, model, level, size)
        lo, hi = np.percentile(noisy, (1, 99))
        sigma = D.estimate_noise(noisy)["sigma"] / (hi - lo)
        scores = {k: psnr(D.denoise(noisy, "nl_means", h=k * sigma), truth) for k in D.NL_MEANS_K}
        best = max(scores, key=scores.get)
        cal = psnr(D.denoise(noisy, "nl_means"), truth)
        row = " ".join(f"{k}:{v:.2f}" for k, v in scores.items())
        print(
            f"{surface:6s} {model:6s} {level:4.0%}  best k {best} {scores[best]:.2f}  cal {cal:.2f}  | {row}"
        )


def network_cases(cases: list[list[str]], size: int) -> None:
    print(
        "Noise2Void (defaults) and its mix w x network + (1 - w) x calibrated non-local means, PSNR dB;\n"
        "w fitted = what auto fits on the image, w best = the best of 0, 0.1, ... 1 against the truth"
    )
    for surface, model, *rest in cases:
        level = float(rest[0]) / 100 if rest else 0.06
        network_case(surface, model, level, rest[1] if len(rest) > 1 else None, size)


def network_case(surface: str, model: str, level: float, spot: str | None, size: int) -> None:
    from napari_scanprobe.process import n2v as cnn
    from napari_scanprobe.progress import run_to_end

    truth, noisy = case(surface, model, level, size)
    kind = D.estimate_noise(noisy)["kind"]
    structured = spot == "line" if spot else kind == "line"
    offset, scale = D._cnn_scaling(noisy.ravel())
    z = ((noisy - offset) / scale).astype(np.float32)
    net = run_to_end(cnn.train_steps([z], structured=structured, seed=0))

    def apply(frame: np.ndarray, prior: bool) -> np.ndarray:
        out = run_to_end(cnn.predict_steps(net, ((frame - offset) / scale).astype(np.float32), prior=prior))
        return out.astype(np.float64) * scale + offset

    def blind(frame: np.ndarray):
        yield from ()
        return apply(frame, True)

    posterior, prior = apply(noisy, False), apply(noisy, True)
    smooth = D.denoise(noisy, "nl_means")
    weight, _ = run_to_end(D.network_weight_steps(noisy, None, blind, structured))
    mixes = {w / 10: psnr(w / 10 * posterior + (1 - w / 10) * smooth, truth) for w in range(11)}
    best = max(mixes, key=mixes.get)
    fitted = psnr(weight * posterior + (1 - weight) * smooth, truth)
    fixed = {"white": 0.7, "line": 0.3}[kind]  # the fixed weights auto used before
    print(
        f"{surface:6s} {model:6s} {level:4.1%} {kind:5s} {'line' if structured else 'pixel'}-spot  "
        f"n2v {psnr(posterior, truth):.2f}  prior mean {psnr(prior, truth):.2f}  "
        f"nlm cal {psnr(smooth, truth):.2f}  w fixed {fixed} {mixes[fixed]:.2f}  "
        f"w best {best:.1f} {mixes[best]:.2f}  w fitted {weight:.2f} {fitted:.2f}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "cases", nargs="*", help="surface:noise[:level %%[:line|pixel]], e.g. steps:white grains:pink:2.5"
    )
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--nlm-only", action="store_true")
    args = parser.parse_args()
    if args.nlm_only or not args.cases:
        nlm_cases(args.size)
    if args.cases:
        network_cases([c.split(":") for c in args.cases], args.size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
