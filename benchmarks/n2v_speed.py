"""Noise2Void speed and quality with its defaults at instrument sizes (256² and 512²).

The scan is the one of ``denoise_quality.py`` (terrace + particles; white, along-line correlated and
per-line wobble noise; evaluation seed). For each size it runs ``denoise(noisy, "n2v")`` with the
default options on ``--threads`` torch CPU threads and prints the CPU time of the process (all
threads), the wall time, the training and prediction split, the PSNR beside the better of two
strong simple filters (3×3 median, Gaussian σ = 1 px), and the time left that progress showed after
the first tenth of training against the time it really took.

    python benchmarks/n2v_speed.py                      # 256 and 512, 2 threads
    python benchmarks/n2v_speed.py --sizes 256 --iterations 150   # a smoke run
    python benchmarks/n2v_speed.py --parts --threads 1   # a training step, applying at 512 x 512
    python benchmarks/n2v_speed.py --sizes 512 --method auto   # denoise()'s defaults: network + the fitted mix
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from denoise_quality import psnr, scan

from napari_scanprobe.process.denoise import DENOISE_METHODS, denoise_steps
from napari_scanprobe.progress import run_to_end


def run(noisy: np.ndarray, options: dict, method: str = "n2v") -> tuple[np.ndarray, dict]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    first_estimate = None
    train_end = None

    def seen(update) -> None:
        nonlocal first_estimate, train_end
        seconds_left = update.extra.get("seconds_left")
        if seconds_left is not None:
            if first_estimate is None and update.step >= update.total // 10:
                first_estimate = (time.perf_counter() - wall0, seconds_left)
            if update.step == update.total:
                train_end = (time.process_time() - cpu0, time.perf_counter() - wall0)

    result = run_to_end(denoise_steps(noisy, method, **options), seen)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return result, {"cpu": cpu, "wall": wall, "train": train_end, "estimate": first_estimate}


def parts(steps: int = 10) -> None:
    """The two costs side by side: a training step in torch's default and in channels-last memory
    order, and applying a trained network to 512 x 512 in 256-px and 512-px tiles."""
    import torch

    from napari_scanprobe.nn.networks import build_unet
    from napari_scanprobe.process import n2v

    x = torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    for name, fmt in (("default order", torch.contiguous_format), ("channels-last", torch.channels_last)):
        net = build_unet(12, 0, probabilistic=True).to(memory_format=fmt)
        opt = torch.optim.Adam(net.parameters(), 1e-3)

        def one(net=net, opt=opt):
            loss = (net(x)[:, :1] - x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

        one()
        cpu0 = time.process_time()
        for _ in range(steps):
            one()
        print(
            f"  training step (batch 4, 64 x 64), {name}: {(time.process_time() - cpu0) / steps * 1e3:.1f} ms CPU"
        )
    image = np.random.default_rng(0).normal(0, 1, (512, 512)).astype(np.float32)
    net = run_to_end(n2v.train_steps([image], iterations=5, patch_size=32))
    for tile in (256, 512):
        cpu0 = time.process_time()
        run_to_end(n2v.predict_steps(net, image, tile=tile))
        print(
            f"  applying the network to 512 x 512 in {tile}-px tiles: {time.process_time() - cpu0:.1f} s CPU"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=None, help="override the default (smoke runs)")
    parser.add_argument("--parts", action="store_true", help="only the per-step and prediction costs")
    parser.add_argument(
        "--method", choices=["n2v", "auto"], default="n2v", help="auto: denoise()'s defaults (network + mix)"
    )
    args = parser.parse_args()

    import torch
    from scipy import ndimage

    torch.set_num_threads(args.threads)
    if args.parts:
        print(f"costs on {args.threads} CPU thread(s):")
        parts()
        return 0
    if args.method == "auto" and args.iterations is not None:
        parser.error("--iterations: auto takes no options")
    options = {} if args.iterations is None else {"iterations": args.iterations}
    defaults = {**DENOISE_METHODS["n2v"], **options}
    print(
        f"{'denoise() defaults (auto): ' if args.method == 'auto' else ''}Noise2Void defaults (iterations {defaults['iterations']}, patch {defaults['patch_size']}, "
        f"batch {defaults['batch_size']}, features {defaults['features']}), torch {torch.__version__}, "
        f"{args.threads} CPU threads"
    )
    print(
        f"{'size':>6} {'CPU s':>7} {'wall s':>7} {'train wall s':>12} {'PSNR dB':>8} {'simple dB':>9}  estimate"
    )
    for size in args.sizes:
        truth, noisy, _ = scan((size, size), 2)
        result, t = run(noisy, options, args.method)
        simple = max(
            psnr(ndimage.median_filter(noisy, 3, mode="reflect"), truth),
            psnr(ndimage.gaussian_filter(noisy, 1.0, mode="reflect"), truth),
        )
        train_wall = t["train"][1] if t["train"] else float("nan")
        estimate = ""
        if t["estimate"]:
            at, left = t["estimate"]
            estimate = (
                f"at {at:.0f} s progress said {left:.0f} s of training left; it took {train_wall - at:.0f} s"
            )
        print(
            f"{size:>6} {t['cpu']:7.1f} {t['wall']:7.1f} {train_wall:12.1f} {psnr(result, truth):8.2f} "
            f"{simple:9.2f}  {estimate}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
