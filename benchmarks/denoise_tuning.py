"""The tuning cases behind ``denoise``'s auto constants -- kept apart from ``denoise_suite.py``.

    python benchmarks/denoise_tuning.py --nlm-only           # non-local means strength: 16 cases, seconds
    python benchmarks/denoise_tuning.py steps:white grains:line   # + Noise2Void and the blends (CPU minutes each)

Nothing here is shared with the suite: other surfaces (``grains``: Gaussian bumps of 2-10 px;
``steps``: four tilted terraces with an atomic-row corrugation and small caps), other noise models
(``line``: first-order autoregressive along the scan line, rho 0.75 -- the suite smooths white
noise with a Gaussian; ``drift``: a random walk along each line with its median removed plus some
white noise -- the suite uses one 1/f series; ``mixed``: white + autoregressive rho 0.6), other
levels (4 % and 10 %; 6 % for the network cases) and other seeds (300, 301).

``--nlm-only`` prints, for every case, non-local means at each strength ``k x noise rms``
(:data:`NL_MEANS_K`), the best one (an oracle) and the one :func:`calibrate_nl_means` picks without
the truth. With cases, it also trains Noise2Void with the defaults and prints its posterior and
prior-mean results and ``w x network + (1 - w) x calibrated non-local means`` for several ``w``,
which chose :data:`AUTO_WEIGHT`.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_scanprobe.process import denoise as D  # noqa: E402

MODELS = ("white", "line", "drift", "mixed")
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
    else:
        a, b = rng.normal(size=shape), autoregressive(shape, rng, 0.6)
        n = 0.6 * a / a.std() + 0.8 * b / b.std()
    return n / n.std()


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


def network_cases(cases: list[tuple[str, str]], size: int) -> None:
    import torch

    from napari_scanprobe.process import n2v as cnn
    from napari_scanprobe.progress import run_to_end

    print("Noise2Void (defaults) and its blend with calibrated non-local means, PSNR dB")
    for surface, model in cases:
        truth, noisy = case(surface, model, 0.06, size)
        structured = D.estimate_noise(noisy)["kind"] == "line"
        offset, scale = D._cnn_scaling(noisy.ravel())
        z = ((noisy - offset) / scale).astype(np.float32)
        net = run_to_end(cnn.train_steps([z], structured=structured, seed=0))
        posterior, prior = np.zeros(z.shape), np.zeros(z.shape)
        x0 = torch.from_numpy(z)[None, None]
        with torch.no_grad():
            for dims in [(), (-1,), (-2,), (-2, -1)]:
                x = torch.flip(x0, dims) if dims else x0
                post, mu = torch.empty_like(x), torch.empty_like(x)
                for phase in (0, 1):
                    inputs, masked = cnn.blind_input(x, torch.tensor([phase]), structured)
                    m, v, n = cnn._variances(net, net(inputs))
                    post = torch.where(masked, (m * n + x * v) / (v + n), post)
                    mu = torch.where(masked, m, mu)
                for acc, t in ((posterior, post), (prior, mu)):
                    acc += (torch.flip(t, dims) if dims else t)[0, 0].numpy() / 4
        posterior, prior = posterior * scale + offset, prior * scale + offset
        smooth = D.denoise(noisy, "nl_means")
        blends = " ".join(f"{w}:{psnr(w * posterior + (1 - w) * smooth, truth):.2f}" for w in (0.3, 0.5, 0.7))
        print(
            f"{surface:6s} {model:6s} {'line' if structured else 'white'}  n2v {psnr(posterior, truth):.2f}  "
            f"prior mean {psnr(prior, truth):.2f}  nlm cal {psnr(smooth, truth):.2f}  w x n2v + nlm: {blends}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="surface:noise, e.g. steps:white grains:line")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--nlm-only", action="store_true")
    args = parser.parse_args()
    if args.nlm_only or not args.cases:
        nlm_cases(args.size)
    if args.cases:
        network_cases([tuple(c.split(":")) for c in args.cases], args.size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
