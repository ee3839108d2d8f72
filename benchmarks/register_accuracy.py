"""Drift correction of movies: accuracy on known drift, real HS-AFM movies, speed and memory.

    python benchmarks/register_accuracy.py [--frames 32] [--speed-frames 500] [--long 10000]

1. Synthetic movies with a known drift (``synthetic.drifting_movie``: 256 x 256, 2 nm/px; a
   random walk plus a linear drift of about 1, 5, 10, 20 nm per frame; 5 % of the molecules
   land or leave at each frame; white noise, scan-line offsets and a tilt per frame): the
   residual error of the drift (RMS over frames, pixels) for ``sp.register`` (reference: the
   first frame, the running mean) beside a plain scikit-image ``phase_cross_correlation`` loop
   against the first frame (upsample 20), the same loop on frames without their scan-line
   medians and under a Hann window (``prepared``), and no correction at all. Target: <= 0.1
   px RMS.
2. The real .asd movies in ../shared/spm-samples/hsafm_asd: the mean correlation of
   consecutive frames (Pearson, over the pixels both frames saw), before and after, over
   the frames that are not flagged.
3. Speed on 256 x 256 float32 frames: CPU time per frame (process time, all threads) and
   frames/s wall of measuring the drift (the corrected movie is lazy) and of taking it out,
   beside the scikit-image loop (as it comes, and with BLAS on one thread), in one run; the
   load average says how busy the machine was. Target: >= 500 frames/s on 2 cores.
4. Memory: a lazy ``--long``-frame movie of 256 x 256 frames (made frame by frame on demand)
   registered; the peak of memory allocated meanwhile (tracemalloc). Target: < 200 MB above
   a few frames.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import napari_scanprobe as sp  # noqa: E402
from napari_scanprobe.io.movie import FrameSource, lazy_movie  # noqa: E402
from napari_scanprobe.process.register import register  # noqa: E402
from napari_scanprobe.synthetic import drifting_movie  # noqa: E402

SAMPLES = ROOT.parent / "shared" / "spm-samples" / "hsafm_asd"


def skimage_shifts(movie: np.ndarray, prepared: bool = False) -> np.ndarray:
    """The plain loop: every frame against the first, scikit-image's subpixel phase correlation.
    ``prepared``: on frames without their scan-line medians and under a Hann window (a simple,
    strong baseline; without the window the image borders dominate the correlation)."""
    from skimage.registration import phase_cross_correlation

    if prepared:
        movie = movie - np.median(movie, axis=2, keepdims=True)
        movie = movie * np.outer(np.hanning(movie.shape[1]), np.hanning(movie.shape[2]))
    ref = movie[0]
    # it returns the shift that registers the frame onto the reference: minus the drift
    return np.array([-phase_cross_correlation(ref, f, upsample_factor=20)[0] for f in movie])


def rms(error: np.ndarray) -> float:
    return float(np.sqrt((error**2).sum(axis=1).mean()))


def accuracy(frames: int) -> None:
    print(f"1. Residual drift error, RMS over {frames} frames (px; 256 x 256, 2 nm/px)")
    print(
        f"{'nm/frame':>9} {'span px':>8} {'first':>7} {'mean':>7} {'skimage':>8} {'prepared':>9} {'none':>7}"
    )
    worst = 0.0
    for step, seed in ((1, 1), (5, 2), (10, 3), (20, 4)):
        movie, drift = drifting_movie(frames, step_nm=step, seed=seed)
        first = rms(register(movie, reference="first").shifts - drift)
        mean = rms(register(movie, reference="mean").shifts - drift)
        peer = rms(skimage_shifts(movie) - drift)
        prepared = rms(skimage_shifts(movie, prepared=True) - drift)
        worst = max(worst, first, mean)
        span = float(np.abs(drift).max())
        print(
            f"{step:>9} {span:>8.1f} {first:>7.3f} {mean:>7.3f} {peer:>8.3f} {prepared:>9.3f} {rms(drift):>7.1f}"
        )
    print(f"   worst of sp.register: {worst:.3f} px (target <= 0.1)")


def consecutive_correlation(movie: np.ndarray, keep: np.ndarray) -> float:
    values = []
    for i in range(1, len(movie)):
        if not (keep[i] and keep[i - 1]):
            continue
        a, b = movie[i - 1], movie[i]
        both = np.isfinite(a) & np.isfinite(b)
        a = a - np.median(np.where(both, a, 0), axis=1, keepdims=True)  # line offsets would dominate
        b = b - np.median(np.where(both, b, 0), axis=1, keepdims=True)
        values.append(np.corrcoef(a[both], b[both])[0, 1])
    return float(np.mean(values))


def real_movies() -> None:
    print("\n2. Real HS-AFM movies: mean correlation of consecutive frames (unflagged frames)")
    files = sorted(SAMPLES.glob("*.asd"))
    if not files:
        print(f"   no .asd samples in {SAMPLES}")
    for path in files:
        channel = sp.read(path).channels[0]
        movie = np.asarray(channel.data)
        for reference in ("first", "mean"):
            result = register(movie, reference=reference, pixel_size=channel.pixel_size)
            keep = ~result.flagged
            before = consecutive_correlation(movie, keep)
            after = consecutive_correlation(np.asarray(result.movie), keep)
            drift = np.abs(result.shifts[keep]).max() * channel.pixel_size[0]
            print(
                f"   {path.name} ({len(movie)} frames, {reference:>5}): {before:.3f} -> {after:.3f}; "
                f"flagged {int(result.flagged.sum())}, largest drift {drift:.1f} nm"
            )


def cpu(fn) -> tuple[float, float, object]:
    c, w = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c, time.perf_counter() - w, out


def speed(frames: int) -> None:
    import os

    import dask.array as da
    from threadpoolctl import threadpool_limits

    load = os.getloadavg()[0]
    print(f"\n3. Speed, {frames} frames of 256 x 256 (CPU time and wall, one run; load average {load:.1f})")
    movie, _ = drifting_movie(frames, step_nm=5.0, seed=5)
    lazy = da.from_array(movie, chunks=(64, 256, 256))
    register(lazy[:8])  # imports (dask loads its schedulers on the first compute) and first calls
    skimage_shifts(movie[:4])

    def row(name: str, c: float, w: float) -> None:
        print(
            f"   {name:<36} {1e3 * c / frames:6.2f} ms CPU per frame ({frames / c:5.0f} frames per CPU s), "
            f"{frames / w:5.0f} frames/s wall"
        )

    c, w, result = cpu(lambda: register(lazy))
    row("sp.register, measuring", c, w)
    c2, w2, _ = cpu(lambda: np.asarray(result.movie))
    row("sp.register, taking it out", c2, w2)
    c3, w3, _ = cpu(lambda: register(lazy, reference="mean"))
    row("sp.register, running mean", c3, w3)
    c4, w4, _ = cpu(lambda: skimage_shifts(movie))
    row("scikit-image loop", c4, w4)
    # its upsampled DFT is a matrix product: BLAS threads spinning on a busy machine cost CPU
    with threadpool_limits(1):
        c5, w5, _ = cpu(lambda: skimage_shifts(movie))
    row("scikit-image loop, BLAS on 1 thread", c5, w5)
    print(
        f"   measuring: {c4 / c:.1f}x less CPU than the scikit-image loop "
        f"({c5 / c:.1f}x less than it with BLAS on one thread); load average now {os.getloadavg()[0]:.1f}"
    )


class _Synthetic(FrameSource):
    """Frames of a drifting texture, made on demand (a long movie that is never whole)."""

    def __init__(self, frames: int):
        super().__init__("synthetic", (frames, 256, 256))
        from scipy import ndimage

        rng = np.random.default_rng(0)
        self.texture = ndimage.gaussian_filter(rng.normal(0, 1, (320, 320)), 2).astype(np.float32)

    def frames(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, 256, 256), np.float32)
        for k, i in enumerate(range(start, stop)):
            y, x = 32 + int(20 * np.sin(i / 50)), 32 + int(20 * np.cos(i / 70))
            out[k] = self.texture[y : y + 256, x : x + 256]
        return out


def memory(frames: int) -> None:
    print(
        f"\n4. Memory, a lazy {frames}-frame movie of 256 x 256 float32 ({frames * 256 * 256 * 4 / 2**20:.0f} MB whole)"
    )
    movie = lazy_movie(_Synthetic(frames), f"synthetic-{frames}")
    tracemalloc.start()
    c, w, result = cpu(lambda: register(movie))
    frame = np.asarray(result.movie[frames // 2])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"   registered in {c:.1f} CPU s ({frames / c:.0f} frames per CPU s); peak allocated {peak / 2**20:.1f} MB "
        f"(target < 200 MB above a few frames); a corrected frame: {frame.shape}, "
        f"flagged {int(result.flagged.sum())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32, help="frames per synthetic accuracy movie")
    parser.add_argument("--speed-frames", type=int, default=500)
    parser.add_argument("--long", type=int, default=10_000, help="frames of the lazy movie (memory)")
    parser.add_argument(
        "--parts", default="1234", help="which parts to run, e.g. 12 (accuracy and real movies)"
    )
    args = parser.parse_args()
    parts = {"1": lambda: accuracy(args.frames), "2": real_movies}
    parts.update({"3": lambda: speed(args.speed_frames), "4": lambda: memory(args.long)})
    for part in args.parts:
        parts[part]()


if __name__ == "__main__":
    main()
