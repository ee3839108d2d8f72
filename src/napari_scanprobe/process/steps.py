"""The processing steps: one public contract each, and steps as data.

:data:`STEPS` maps a step name (``flatten``, ``denoise``, ``upscale``, ``predict``, ``cam``,
``write``) to its :class:`~napari_scanprobe.process.contract.Step`: methods, typed options with
ranges, units, labels and help. The process functions check their options with it, recipes
validate with it, the Preprocess dock builds its controls from it and the CLI and the docs list
it (:func:`contract_markdown`). A new step is one more :class:`Step` in :data:`STEPS`.

Steps as data -- ``{"step": "flatten", "method": "plane", "options": {...}}`` -- are what layers
record in ``metadata["processing"]``, what a classifier model stores as its preprocessing and
what a recipe lists. :func:`apply_steps` runs them in order on an image; :func:`check_steps`
validates them before any work starts.
"""

from __future__ import annotations

from typing import Any

from ..untrusted import short_repr
from .contract import Method, Option, Step

#: The one seed rule: every random choice (patches, masks, initial weights) follows it.
SEED = Option(
    "seed",
    "int",
    0,
    "Random seed",
    "All randomness (training patches, masks, initial weights); the same seed on the CPU gives the same result",
    low=0,
    high=2**63 - 1,
)


def _sigmas(default: float, what: str) -> Option:
    return Option("threshold", "float", default, "Threshold", what, "σ", 0.5, 100.0)


# --------------------------------------------------------------------------------------
# flatten
# --------------------------------------------------------------------------------------

_DEGREE_HELP = "Polynomial degree"
FLATTEN = Step(
    "flatten",
    "Flatten",
    "Remove tilt, bow and line-to-line offsets: a background fitted on the valid pixels is subtracted.",
    (
        Method(
            "auto",
            "Align lines, remove tilt and bow, ignoring features that stick out; iterated.",
            (
                Option(
                    "iterations",
                    "int",
                    3,
                    "Refit rounds",
                    "Rounds of feature masking and refitting",
                    "",
                    0,
                    20,
                ),
                _sigmas(3.0, "Features: pixels this many robust standard deviations from the background"),
                Option(
                    "dilation", "int", 2, "Mask growth", "Pixels added around each feature mask", "px", 0, 50
                ),
                Option(
                    "degree", "int", 2, "Bow degree", "Total degree of the tilt + bow polynomial", "", 0, 10
                ),
                Option(
                    "features",
                    "choice",
                    "above",
                    "Features stick out",
                    "Which side of the background the features lie on",
                    choices=("above", "below", "both"),
                ),
                Option("scars", "bool", True, "Remove scars first", "Remove short streaks before levelling"),
            ),
            label="Automatic",
            preview=True,
        ),
        Method("plane", "Subtract the least-squares plane.", label="Plane", preview=True),
        Method(
            "polynomial",
            "Subtract a least-squares polynomial with every term x^i y^j, i ≤ x degree, j ≤ y degree.",
            (
                Option(
                    "degree_x", "int", 2, "X degree", "Polynomial degree along the fast scan (x)", "", 0, 10
                ),
                Option(
                    "degree_y", "int", 2, "Y degree", "Polynomial degree along the slow scan (y)", "", 0, 10
                ),
            ),
            label="Polynomial",
            preview=True,
        ),
        Method("rows_median", "Subtract each scan line's median.", label="Line median", preview=True),
        Method("rows_mean", "Subtract each scan line's mean.", label="Line mean", preview=True),
        Method(
            "rows_median_diff",
            "Shift each line by the median of its differences from the previous line.",
            label="Line median of differences",
            preview=True,
        ),
        Method(
            "rows_trimmed_mean",
            "Subtract each line's mean after cutting a fraction off each end.",
            (
                Option(
                    "trim",
                    "float",
                    0.25,
                    "Trimmed fraction",
                    "Fraction cut off each end of a line (0 = mean, towards 0.5 = median)",
                    "",
                    0.0,
                    0.5,
                    high_open=True,
                ),
            ),
            label="Line trimmed mean",
            preview=True,
        ),
        Method(
            "rows_polynomial",
            "Subtract a polynomial in x fitted to each line.",
            (
                Option(
                    "degree", "int", 1, "Line degree", "Polynomial degree fitted to each scan line", "", 0, 10
                ),
            ),
            label="Line polynomial",
            preview=True,
        ),
        Method(
            "scars",
            "Replace short streaks that jump relative to the lines above and below.",
            (
                _sigmas(
                    4.0,
                    "Scars: jumps of this many robust standard deviations of the line-to-line differences",
                ),
                Option(
                    "min_length", "int", 3, "Shortest scar", "Shortest scar along the line", "px", 1, 100_000
                ),
                Option(
                    "max_length",
                    "int",
                    0,
                    "Longest scar",
                    "Longest scar along the line (0 = any length)",
                    "px",
                    0,
                    100_000,
                ),
                Option("max_width", "int", 2, "Tallest scar", "Tallest scar, in scan lines", "lines", 1, 10),
            ),
            label="Scars",
            preview=True,
        ),
    ),
    function="napari_scanprobe.process.flatten:flatten",
)

# --------------------------------------------------------------------------------------
# denoise
# --------------------------------------------------------------------------------------


#: The torch device of the steps that run a network (scripts only).
_DEVICE = Option(
    "device",
    "device",
    None,
    "Device",
    "torch device",
    nullable=True,
    none_means="cuda when available",
    script_only=True,
)


# The training options of the steps that train a network (the names are the functions' parameters).
def _training_steps(name: str, default: int, help: str, low: int) -> Option:
    return Option(name, "int", default, "Training steps", help, "", low, 100_000)


def _patch_side(name: str, default: int, help: str, low: int) -> Option:
    return Option(name, "int", default, "Patch side", help, "px", low, 512)


def _patches_per_step(name: str, default: int, high: int) -> Option:
    return Option(
        name, "int", default, "Patches per step", "Training patches per optimiser step", "", 1, high
    )


def _learning_rate(help: str, low: float, low_open: bool = False) -> Option:
    return Option("learning_rate", "float", 2e-3, "Learning rate", help, "", low, 1.0, low_open=low_open)


def _cnn_options(iterations: int) -> tuple[Option, ...]:
    return (
        _training_steps("iterations", iterations, "Optimiser steps of the training", low=1),
        _patch_side("patch_size", 64, "Side of the training patches", low=8),
        _patches_per_step("batch_size", 4, high=256),
        _learning_rate("Peak Adam learning rate", low=0.0, low_open=True),
        Option("features", "int", 12, "Network width", "Channels of the first U-Net level", "", 2, 128),
        Option(
            "tta",
            "bool",
            True,
            "Average flips",
            "Average the network over flips and rotations at the end (test-time augmentation): less noise, 8× slower",
        ),
        _DEVICE,
    )


_FRACTION = "fraction of the height range"
DENOISE = Step(
    "denoise",
    "Denoise",
    "Reduce noise: classical filters, or a small network trained on the image itself. Heights are "
    "scaled so that their 1st-99th percentile spans 0-1: strengths are fractions of that range.",
    (
        Method(
            "auto",
            "Measures the noise (white or along the scan lines), then averages Noise2Void with the matching "
            "blind spot and non-local means calibrated on the image (torch installed, at least 96 × 96 "
            "pixels), else non-local means alone.",
            label="Automatic",
            long=True,
        ),
        Method(
            "median",
            "Median of a square window: removes spikes and salt-and-pepper noise, keeps edges.",
            (Option("size", "int", 3, "Window size", "Side of the square window", "px", 1, 101),),
            label="Median",
            preview=True,
        ),
        Method(
            "gaussian",
            "Gaussian blur: smooths everything, edges included.",
            (
                Option(
                    "sigma",
                    "float",
                    1.0,
                    "Blur width",
                    "Standard deviation of the Gaussian",
                    "px",
                    0.0,
                    100.0,
                ),
            ),
            label="Gaussian",
            preview=True,
        ),
        Method(
            "nl_means",
            "Non-local means: averages pixels whose neighbourhoods look alike; the best classical filter on SPM noise.",
            (
                Option(
                    "h",
                    "float",
                    None,
                    "Strength",
                    "How different two patches may be and still be averaged (larger = smoother)",
                    _FRACTION,
                    0.0,
                    10.0,
                    low_open=True,
                    nullable=True,
                    none_means="calibrated on the image",
                ),
                Option("patch_size", "int", 5, "Patch size", "Side of the compared patches", "px", 1, 31),
                Option(
                    "patch_distance",
                    "int",
                    6,
                    "Search distance",
                    "How far to look for similar patches",
                    "px",
                    1,
                    50,
                ),
            ),
            label="Non-local means",
            preview=True,
        ),
        Method(
            "tv",
            "Total variation (Chambolle): flat terraces with sharp steps.",
            (
                Option(
                    "weight",
                    "float",
                    0.05,
                    "Strength",
                    "Larger = flatter",
                    _FRACTION,
                    0.0,
                    100.0,
                    low_open=True,
                ),
            ),
            label="Total variation",
            preview=True,
        ),
        Method(
            "bilateral",
            "Bilateral: averages nearby pixels of similar height; keeps steps.",
            (
                Option(
                    "sigma_color",
                    "float",
                    0.05,
                    "Height tolerance",
                    "Heights this far apart are hardly averaged",
                    _FRACTION,
                    0.0,
                    100.0,
                    low_open=True,
                ),
                Option(
                    "sigma_spatial",
                    "float",
                    2.0,
                    "Distance",
                    "Standard deviation of the spatial weights",
                    "px",
                    0.0,
                    25.0,
                    low_open=True,
                ),
            ),
            label="Bilateral",
            preview=True,
        ),
        Method(
            "n2v",
            "Noise2Void: a small network trained on the image itself to predict each pixel from its neighbours; "
            "needs no clean image. About a CPU minute.",
            (
                *_cnn_options(1500),
                Option(
                    "structured",
                    "bool",
                    True,
                    "Mask whole lines",
                    "Hide whole scan-line segments while training: SPM noise is correlated along the fast scan",
                ),
            ),
            label="Noise2Void",
            long=True,
        ),
        Method(
            "n2n",
            "Noise2Noise: a network learns from a second noisy observation of the same area "
            "(the retrace, or the next frame of a movie).",
            (
                Option(
                    "pair",
                    "array",
                    None,
                    "Second observation",
                    "The retrace (or another observation) on the same grid",
                    nullable=True,
                    none_means="consecutive frames of a movie",
                    script_only=True,
                ),
                *_cnn_options(1000),
            ),
            label="Noise2Noise",
            long=True,
        ),
    ),
    common=(SEED,),
    function="napari_scanprobe.process.denoise:denoise",
)

# --------------------------------------------------------------------------------------
# upscale
# --------------------------------------------------------------------------------------

UPSCALE_CNN_OPTIONS = (
    _training_steps(
        "steps", 300, "Optimiser steps of zero-shot training (the cross-scale check adds half as many)", low=0
    ),
    _patches_per_step("batch", 16, high=1024),
    _patch_side("patch", 24, "Side of the training patches, in input pixels", low=4),
    _learning_rate("Peak Adam learning rate (one-cycle schedule)", low=1e-5),
    Option(
        "features",
        "int",
        32,
        "Network width",
        "Channels of the hidden convolutions (32: about 11 k parameters)",
        "",
        1,
        256,
    ),
    Option("layers", "int", 1, "Hidden layers", "Hidden 3×3 convolution layers", "", 1, 16),
    Option(
        "ensemble",
        "bool",
        True,
        "Average flips",
        "Average the 8 flips/rotations at inference (8× the network passes)",
    ),
    Option(
        "adaptive",
        "bool",
        True,
        "Adaptive detail",
        "Weigh the learnt detail by how well it carries across scale (off: add it fully)",
    ),
    Option(
        "finetune", "bool", False, "Fine-tune", "With saved weights: continue training on the image first"
    ),
    Option(
        "finetune_steps",
        "int",
        150,
        "Fine-tuning steps",
        "Fine-tuning steps with saved weights",
        "",
        0,
        100_000,
    ),
    Option(
        "training_images",
        "array",
        None,
        "Training images",
        "Extra high-resolution arrays to learn from",
        nullable=True,
        none_means="the image only",
        script_only=True,
    ),
    _DEVICE,
    Option(
        "threads",
        "int",
        None,
        "CPU threads",
        "torch CPU threads",
        "",
        1,
        1024,
        nullable=True,
        none_means="training on 1 thread, inference as torch is set",
        script_only=True,
    ),
)

UPSCALE = Step(
    "upscale",
    "Upscale",
    "Sample the same field of view 2 or 4 times more finely; output pixel areas align with the input's.",
    (
        Method(
            "auto",
            "The network with its defaults (bicubic when torch is missing).",
            UPSCALE_CNN_OPTIONS,
            label="Automatic",
            long=True,
        ),
        Method(
            "bicubic",
            "Interpolating cubic B-spline (scipy), pixel areas aligned.",
            label="Bicubic",
            preview=True,
        ),
        Method("lanczos", "Separable Lanczos-3, pixel areas aligned.", label="Lanczos", preview=True),
        Method(
            "cnn",
            "Small network learnt from the image itself (zero-shot) over a back-projected bicubic base; "
            "the output's blocks average back to the input.",
            UPSCALE_CNN_OPTIONS,
            label="Zero-shot network",
            long=True,
        ),
    ),
    common=(
        Option(
            "factor", "choice", 2, "Factor", "How many times finer the output samples", "×", choices=(2, 4)
        ),
        SEED,
        Option(
            "weights",
            "path",
            None,
            "Saved weights",
            "An upscaler saved by train_upscaler (methods cnn and auto)",
            nullable=True,
            none_means="trained on the image",
        ),
    ),
    function="napari_scanprobe.process.superres:upscale",
)

REGISTER = Step(
    "register",
    "Register (drift correction)",
    "Take out each movie frame's drift against a reference, by subpixel phase correlation; frames whose "
    "correlation collapses are flagged and kept.",
    (
        Method(
            "phase",
            "Phase correlation, refined to 1/10 pixel and a parabola.",
            (
                Option(
                    "reference",
                    "text",
                    "first",
                    "Reference",
                    "What each frame is aligned to: first (the first frame), mean (running mean) or a frame number",
                ),
                Option(
                    "per_line", "bool", False, "Per-line correction", "Also correct creep along the slow scan"
                ),
                Option(
                    "window", "int", 10, "Running mean of", "Frames in the running mean", "frames", 1, 1000
                ),
            ),
            label="Phase correlation",
        ),
        Method("auto", "Phase correlation with its defaults.", label="Automatic"),
    ),
    function="napari_scanprobe.process.register:register_movie",
)

# --------------------------------------------------------------------------------------
# steps only a recipe runs
# --------------------------------------------------------------------------------------

_MODEL = Option(
    "model", "path", None, "Model", "The classifier's .safetensors (with its .json), relative to the recipe"
)
_SHA = Option("sha256", "text", None, "SHA-256", "SHA-256 of the model's .json (sha256sum model.json)")

PREDICT = Step(
    "predict",
    "Predict",
    "Classify each image with a saved classifier (after the steps before it).",
    (),
    keys=(_MODEL, _SHA),
)

CAM = Step(
    "cam",
    "Class activation map",
    "Explain a classifier's decision: a map of where the image made it choose the category.",
    (
        Method("cam", "Class activation map (global-average-pooling head only)."),
        Method("gradcam", "Grad-CAM: gradients of the category weigh the layer's channels."),
        Method("gradcam++", "Grad-CAM++: sharper where several instances appear."),
        Method("layercam", "LayerCAM: gradients weigh each position; good on early layers."),
    ),
    keys=(
        _MODEL,
        _SHA,
        Option(
            "method",
            "choice",
            "gradcam",
            "Method",
            "How the map is computed",
            choices=("cam", "gradcam", "gradcam++", "layercam"),
        ),
        Option(
            "target",
            "text",
            None,
            "Category",
            "Category name or index to explain",
            nullable=True,
            none_means="the predicted one",
        ),
        Option(
            "layer", "text", None, "Layer", "block1, block2, …", nullable=True, none_means="the last block"
        ),
    ),
)

MEASURE = Step(
    "measure",
    "Measure",
    "Measure each chosen 2-D channel as processed so far; the numbers go into the batch summary's columns.",
    (
        Method(
            "roughness",
            "ISO 25178 areal roughness (Sa, Sq, …) of each channel; takes no options.",
            label="Roughness",
        ),
    ),
)

WRITE = Step(
    "write",
    "Write",
    "Write each processed channel (and the CAM) into the output folder, atomically; last step, at most once.",
    (),
    keys=(
        Option(
            "format",
            "choice",
            ".gsf",
            "Format",
            "Output file format (a movie is always .tif)",
            choices=(".gsf", ".gwy", ".tif"),
        ),
        Option(
            "name",
            "text",
            "{file} {channel}",
            "File name",
            "Template with {stem}, {file} and {channel}; the extension is added",
        ),
    ),
)

#: step name -> its contract. A new step adds its entry here.
STEPS: dict[str, Step] = {
    s.name: s for s in (FLATTEN, DENOISE, UPSCALE, REGISTER, PREDICT, CAM, MEASURE, WRITE)
}
#: The steps that run a function on an image (the others only run in a recipe).
IMAGE_STEPS: tuple[str, ...] = tuple(name for name, s in STEPS.items() if s.function)


def step(name: Any) -> Step:
    """The contract of step ``name``; ValueError listing the steps."""
    if not isinstance(name, str) or name not in STEPS:
        raise ValueError(f"step: unknown {short_repr(name)}; choose one of {', '.join(STEPS)}")
    return STEPS[name]


def step_function(name: str):
    import importlib

    contract = step(name)
    if contract.function is None:
        raise ValueError(f"step: {name!r} runs only in a recipe")
    module, func = contract.function.split(":")
    return getattr(importlib.import_module(module), func)


def check_steps(steps: Any, name: str = "preprocessing") -> list[dict]:
    """A clean list of image step dicts (``step``, ``method``, ``options``), options checked by
    each step's contract; ValueError naming ``name`` and the index."""
    if steps is None:
        return []
    if isinstance(steps, dict):
        steps = [steps]
    if not isinstance(steps, (list, tuple)):
        raise ValueError(
            f"{name}: expected a list of steps like {{'step': 'flatten', 'method': 'plane'}}, got {type(steps).__name__}"
        )
    clean = []
    for i, item in enumerate(steps):
        if not isinstance(item, dict) or "step" not in item:
            raise ValueError(f"{name}[{i}]: expected a dict with a 'step' key, got {short_repr(item)}")
        if item["step"] not in IMAGE_STEPS:
            raise ValueError(
                f"{name}[{i}]: unknown step {short_repr(item['step'])}; choose one of {', '.join(IMAGE_STEPS)}"
            )
        method = item.get("method", "auto")
        try:
            options = STEPS[item["step"]].check(method, item.get("options") or {}, fill=False)
        except ValueError as exc:
            raise ValueError(f"{name}[{i}] ({item['step']}): {exc}") from None
        clean.append({"step": item["step"], "method": method, "options": options})
    return clean


def apply_steps(image: Any, steps: list[dict]) -> Any:
    """Run ``steps`` (see :func:`check_steps`) on a 2-D image or ``(t, y, x)`` stack, in order."""
    for s in check_steps(steps):
        image = step_function(s["step"])(image, method=s["method"], **s["options"])
    return image


# --------------------------------------------------------------------------------------
# documentation
# --------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def contract_markdown(steps: dict[str, Step] | None = None) -> str:
    """The step contract as Markdown tables (docs/recipes.md embeds this text)."""
    out = []
    for s in (steps or STEPS).values():
        out.append(f"### `{s.name}` — {s.label}\n\n{s.help}\n")
        if s.keys:
            out.append("| Key | Values | Default | Meaning |\n|---|---|---|---|")
            for o in s.keys:
                out.append(f"| `{o.name}` | {_cell(o.range_text)} | {_cell(_default(o))} | {_cell(o.help)} |")
            out.append("")
        if not (s.function or any(m.options for m in s.methods)):
            continue
        out.append("| Method | Option | Values | Unit | Default | Meaning |\n|---|---|---|---|---|---|")
        for m in s.methods:
            out.append(f"| `{m.name}` | | | | | {_cell(m.help)} |")
            for o in m.options:
                if not o.script_only:
                    out.append(_row("", o))
        for o in s.common:
            out.append(_row("every method", o))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _default(o: Option) -> str:
    return "null" if o.default is None else str(o.default).lower() if o.kind == "bool" else str(o.default)


def _row(where: str, o: Option) -> str:
    cells = (where, f"`{o.name}`", o.range_text, o.unit, _default(o), o.help)
    return "| " + " | ".join(_cell(c) for c in cells) + " |"
