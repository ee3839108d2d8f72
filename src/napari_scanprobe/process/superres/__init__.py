"""Super-resolution: upscale a scan ×2 or ×4 (bicubic, Lanczos-3, or a small zero-shot CNN).

Grid alignment (every method)
-----------------------------
The output is the same field of view sampled ``factor`` times more finely, with pixel *areas*
aligned: output pixel ``i`` (along either axis) sits at input position
``(i + 0.5) / factor - 0.5`` (input pixel ``j`` sits at ``j``), so input pixel ``j`` is covered
exactly by output pixels ``factor*j ... factor*j + factor - 1`` and the outer edges of the
first and last pixels coincide. In napari (which puts pixel ``i``'s centre at
``translate + i * scale``) the output overlays the input exactly with
``scale_out = scale_in / factor`` and ``translate_out = translate_in - scale_in * (factor - 1) /
(2 * factor)`` -- see :func:`upscaled_geometry`. Beyond the image edges every method uses the
half-sample mirror (``c b a | a b c``).

Methods (:data:`UPSCALE_METHODS`)
---------------------------------
* ``"bicubic"``: interpolating cubic B-spline (``scipy.ndimage.zoom(order=3, grid_mode=True,
  mode="reflect")``, what scipy and scikit-image call bi-cubic).
* ``"lanczos"``: separable Lanczos-3 (numpy, polyphase, weights normalised to sum 1).
* ``"cnn"``: zero-shot super-resolution learnt from the image itself.

  - The physical model: a scan ``factor`` times coarser is the area average of the fine one
    (:func:`downscale_area`).
  - The *base* is bicubic refined by iterative back-projection and then projected exactly onto
    the images whose ``factor x factor`` blocks average to the input pixels ("consistent":
    averaging the output's blocks gives back the input, to rounding).
  - The network, ESPCN-class: 5x5 convolution (32 features) -> PReLU -> 3x3 (32) -> PReLU ->
    3x3 to ``factor**2`` channels -> PixelShuffle; 11.3 k parameters for ×2, 14.8 k for ×4. It
    predicts the *detail* over the base, with zero mean in every block, so the result stays
    consistent.
  - Training on the image (``image / 2 -> image`` pairs, random 24 x 24 patches, flips and
    90° rotations, Adam, L1): stage A learns one octave lower (``image / 4 -> image / 2``) and
    is scored on ``image / 2 -> image``; check C, a fresh network learnt at the image's octave,
    is scored one octave down. The least-squares weight of the detail in each score, clipped to
    [0, 1], says how well what is learnt carries across scale; their minimum weighs the detail
    in the output (``adaptive=True``), so content that looks different at every scale (a
    lattice near the pixel pitch, noise) gets the base instead of invented texture. When the
    weight is positive, stage B continues A's training on both octaves and is applied to the
    image. Images too small to check (under 32 pixels a side) get the base.
  - ×4 zero-shot: that ×2 network, then a ×2 consistent base (a direct ×4 network trained on
    ``image / 4`` has too little to learn from). Weights trained with :func:`train_upscaler`
    on the user's own high-resolution images map ×factor directly (×2 or ×4).
  - Inference averages the 8 flips/rotations (``ensemble=True``). On the CPU training runs on
    one thread unless ``threads`` is given (tiny batches gain little from more, a single
    thread cannot stall on busy cores, and results do not depend on the core count);
    inference uses torch's thread setting.
  - ``training_images=``: extra high-resolution arrays learnt from along with the image.
    :func:`train_upscaler` trains a reusable :class:`UpscalerModel`; :meth:`UpscalerModel.save`
    writes ``safetensors`` weights plus a JSON sidecar, :func:`load_upscaler` reads them back
    (nothing is unpickled); ``upscale(..., method="cnn", weights=path_or_model)`` applies them
    (weighted by the same check on ``image / factor -> image``; ``finetune=True`` continues
    training on the image first).

* ``"auto"``: ``"cnn"`` for ×2 and ×4 (``"bicubic"`` when torch is not installed).

Heights are normalised for the network robustly: a least-squares plane is removed (and added
back exactly at the output positions), the median subtracted, the 1-99 percentile range
divided out. NaN (and infinite) pixels are filled with the nearest valid value for the
computation and come back as NaN blocks (``factor x factor``) in the output.

The package's parts: :mod:`.options` (the option table and checks), :mod:`.grid` (classical
resampling on the aligned grid), :mod:`.normalise` (NaNs and height normalisation),
:mod:`.model` (the saved model), :mod:`.training`, :mod:`.inference`; the network itself is
:class:`napari_scanprobe.nn.networks.ResidualESPCN` (architecture: :mod:`napari_scanprobe.nn.upscaler`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from ..common import Progress, as_image, run_to_end, torch_available
from .grid import downscale_area, upscaled_geometry
from .inference import classical, zero_shot_steps
from .model import UpscalerModel, load_upscaler
from .options import (
    CNN_METHODS,
    FACTORS,
    UPSCALE_METHODS,
    check_factor,
    check_method,
    check_options,
    check_seed,
)
from .training import train_upscaler, train_upscaler_steps

__all__ = [
    "CNN_METHODS",
    "FACTORS",
    "UPSCALE_METHODS",
    "UpscalerModel",
    "check_factor",
    "check_method",
    "check_options",
    "check_seed",
    "downscale_area",
    "upscaled_geometry",
    "load_upscaler",
    "train_upscaler",
    "train_upscaler_steps",
    "upscale",
    "upscale_steps",
]


def upscale_steps(
    image: Any,
    factor: int = 2,
    method: str = "auto",
    seed: int = 0,
    weights: Any = None,
    **options,
) -> Generator[Progress, None, Any]:
    """Generator form of :func:`upscale`: yields Progress (training, then upscaling), returns the result."""
    factor = check_factor(factor)
    method = check_method(method)
    seed = check_seed(seed)
    arr = as_image(image)
    if method == "auto":
        check_options("auto", options)
        method = "cnn" if torch_available() else "bicubic"
        if method != "cnn":
            options = {}
    if method in ("bicubic", "lanczos"):
        check_options(method, options)
        if weights is not None:
            raise ValueError(f"weights: only method 'cnn' (or 'auto') uses weights, not {method!r}")
        return classical(arr, factor, method)
    opts = check_options("cnn", options)
    return (yield from zero_shot_steps(arr, factor, seed, weights, opts))


def upscale(
    image: Any,
    factor: int = 2,
    method: str = "auto",
    seed: int = 0,
    progress: Callable[[Progress], Any] | None = None,
    weights: Any = None,
    **options,
) -> Any:
    """Upscale a 2-D image (or each frame of a ``(t, y, x)`` stack) ×``factor`` (2 or 4).

    Returns a new float array of shape ``(ny * factor, nx * factor)`` (per frame) on the
    pixel-area-aligned grid described in the module docstring. ``method``: ``"auto"`` (the CNN),
    ``"cnn"``, ``"bicubic"`` or ``"lanczos"``. CNN options (see :data:`UPSCALE_METHODS`):
    ``steps``, ``batch``, ``patch``, ``learning_rate``, ``features``, ``layers``, ``ensemble``,
    ``adaptive``, ``finetune``, ``finetune_steps``, ``training_images``, ``device``, ``threads``.
    ``weights``: a saved model path or an :class:`UpscalerModel` (skips zero-shot training
    unless ``finetune=True``). The same ``seed`` on CPU gives the same result.
    """
    return run_to_end(upscale_steps(image, factor, method, seed, weights, **options), progress)
