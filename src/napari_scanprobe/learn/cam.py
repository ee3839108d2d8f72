"""Class activation maps: which regions of an image drove the classifier's decision.

Four methods, written from the papers' definitions. ``A^k`` is channel ``k`` of the target
layer's activations (a block's ReLU output), ``S^c`` the score (logit, before softmax) of
category ``c`` and ``g^k = dS^c / dA^k`` its gradient:

* ``"cam"`` (Zhou et al. 2016): ``sum_k w_ck A^k`` with ``w`` the output layer's weights. Only
  for the global-average-pooling head at the last block, where it is exact.
* ``"gradcam"`` (Selvaraju et al. 2017): ``ReLU(sum_k alpha_k A^k)``, ``alpha_k`` the spatial
  mean of ``g^k``. For the GAP head at the last block ``g^k = w_ck / Z`` everywhere, so
  Grad-CAM is CAM divided by the number of positions ``Z``: the same map once normalised.
* ``"gradcam++"`` (Chattopadhay et al. 2018): ``sum_k w_k A^k`` with
  ``w_k = sum_ij a_ij^k ReLU(g_ij^k)`` and the closed form for ``Y = exp(S)``, whose higher
  derivatives are ``exp(S) g^2`` and ``exp(S) g^3`` (the layers after the target are
  piecewise linear): ``a_ij^k = g_ij^2 / (2 g_ij^2 + sum_ab A_ab^k g_ij^3)`` (0 where the
  denominator is 0). The paper's ReLU of ``dY/dA = exp(S) g`` is taken as ``ReLU(g)``: the
  positive factor ``exp(S)`` only scales a tile's map, and dropping it keeps the tiles of a
  large image comparable instead of weighting them exponentially by their score.
* ``"layercam"`` (Jiang et al. 2021): ``ReLU(sum_k ReLU(g^k) * A^k)``, weights per position.

Every map is computed for the input as the model saw it -- the same preprocessing, resampling
to the model's pixel size and tiling as prediction (``data.model_input``, ``data.tiles``): each
tile's map is brought to the tile's pixels, overlapping tiles are averaged, and the whole is
resampled back (``data.resize``, pixel edges aligned) onto the input's own grid, so the map has
exactly the input's ``(y, x)`` shape and overlays it pixel for pixel. Values: ReLU, then divided
by the image's maximum, so they lie in [0, 1] (an all-zero map stays zero). A movie gets one
map per frame, each normalised on its own.

The category is the target given (a name or an index), else the prediction for the whole
image: the mean of its tiles' probabilities, exactly as :func:`~.predict.predict` gives it; for
a movie, each frame's own prediction.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..nn.classifier import as_input
from .calibration import calibrated
from .data import Example, as_example, model_input, model_shape, resize, tiles
from .modelfile import ClassifierModel, as_model

METHODS = ("cam", "gradcam", "gradcam++", "layercam")

#: Tiles per network pass (a large image is cut into many).
BATCH = 32

#: Methods that need gradients (all but "cam").
_GRADIENT_METHODS = ("gradcam", "gradcam++", "layercam")


@dataclass
class CamResult:
    """A class activation map and what it explains.

    ``map``: ``(y, x)`` float32 in [0, 1], or ``(t, y, x)`` for a movie (a dask array from
    :func:`cam_lazy`). ``category``/``probability``: the explained category and its predicted
    probability (for a movie: the target, else the category of the mean probabilities over
    frames, and that mean). ``probabilities``: every category's probability, likewise.
    ``frame_categories``/``frame_probabilities`` (movies only): each frame's explained category
    and its probability in that frame.
    """

    map: Any
    category: str
    probability: float
    probabilities: dict[str, float]
    method: str
    layer: str
    source: str = ""
    frame_categories: list[str] | None = None
    frame_probabilities: list[float] | None = None


# --------------------------------------------------------------------------------------
# Checking the options
# --------------------------------------------------------------------------------------


def check_method(method: Any) -> str:
    name = str(method).strip().lower() if isinstance(method, str) else method
    if name not in METHODS:
        raise ValueError(f"method: unknown {method!r}; choose one of {', '.join(METHODS)}")
    return name


def target_index(model: ClassifierModel, target: Any) -> int | None:
    """The category index of ``target`` (a category name or index; None: the predicted one)."""
    if target is None:
        return None
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if 0 <= int(target) < len(model.categories):
            return int(target)
    elif isinstance(target, str) and target in model.categories:
        return model.categories.index(target)
    raise ValueError(
        f"target: no category {target!r} in model {model.name!r}; its categories are {', '.join(map(repr, model.categories))} (or indices 0-{len(model.categories) - 1})"
    )


def layer_names(model: ClassifierModel) -> list[str]:
    """The model's CAM target layers, first to last (``"block1"`` … ``"blockN"``)."""
    return [f"block{i + 1}" for i in range(int(model.architecture["blocks"]))]


def check_layer(model: ClassifierModel, method: str, layer: Any) -> str:
    """The target layer's name (default: the last block); ValueError for a bad layer or method."""
    names = layer_names(model)
    if layer is None:
        layer = names[-1]
    if layer not in names:
        raise ValueError(
            f"layer: model {model.name!r} has no layer {layer!r}; its layers are {', '.join(names)}"
        )
    if method == "cam":
        if model.architecture.get("head") != "gap":
            raise ValueError(
                f"method 'cam': model {model.name!r} has a {model.architecture.get('head')!r} head; CAM needs the "
                f"global-average-pooling ('gap') head. Use {', '.join(_GRADIENT_METHODS)}, which work with any head"
            )
        if layer != names[-1]:
            raise ValueError(
                f"method 'cam' explains the last layer ({names[-1]}), the one before global average pooling; "
                f"for layer {layer} use {', '.join(_GRADIENT_METHODS)}"
            )
    return layer


def _check_channels(model: ClassifierModel, example: Example) -> None:
    need = max(1, len(model.channels))
    if len(example.channels) != need:
        raise ValueError(
            f"{example.source}: the model {model.name!r} needs {need} channel(s) ({', '.join(model.channels) or 'any one'}), got {len(example.channels)}"
        )


# --------------------------------------------------------------------------------------
# The maps
# --------------------------------------------------------------------------------------


def layer_maps(method: str, activations, gradients, weights):
    """``(N, h, w)`` maps (ReLU applied) from ``(N, K, h, w)`` activations and gradients.

    ``weights``: the output layer's row ``(K,)`` of the explained category (method "cam" only).
    """
    import torch

    a = activations
    if method == "cam":
        maps = torch.einsum("k,nkhw->nhw", weights, a)
    elif method == "gradcam":
        alpha = gradients.mean(dim=(2, 3), keepdim=True)
        maps = (alpha * a).sum(dim=1)
    elif method == "gradcam++":
        g = gradients
        g2, g3 = g * g, g * g * g
        denominator = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3
        safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        alpha = torch.where(denominator != 0, g2 / safe, torch.zeros_like(g2))
        w = (alpha * torch.relu(g)).sum(dim=(2, 3), keepdim=True)
        maps = (w * a).sum(dim=1)
    elif method == "layercam":
        maps = (torch.relu(gradients) * a).sum(dim=1)
    else:
        raise ValueError(f"method: unknown {method!r}; choose one of {', '.join(METHODS)}")
    return torch.relu(maps)


class _Explainer:
    """One network and its target layer; :meth:`frame` explains one frame. Thread-safe."""

    def __init__(self, model: ClassifierModel, method: str, layer: str, device: Any):
        import torch

        from ..nn.device import resolve_device

        self.model, self.method, self.layer = model, method, layer
        self.device = resolve_device(device)
        self.net = model.network(self.device)
        self.net.requires_grad_(False)  # gradients flow from the target layer only
        self.module = self.net.target_layers()[layer]
        self.weights = self.net.output.weight.detach() if method == "cam" else None
        self.lock = threading.Lock()
        self.torch = torch

    def _forward(self, batch: np.ndarray):
        """Logits and the target layer's activations (a graph leaf when gradients are needed)."""
        torch = self.torch
        saved = {}

        def hook(_module, _inputs, output):
            if self.method in _GRADIENT_METHODS:
                output = output.detach().requires_grad_(True)
            saved["a"] = output
            return output

        handle = self.module.register_forward_hook(hook)
        try:
            x = as_input(batch, self.device)
            if self.method in _GRADIENT_METHODS:
                with torch.enable_grad():
                    logits = self.net(x)
            else:
                with torch.inference_mode():
                    logits = self.net(x)
        finally:
            handle.remove()
        return logits, saved["a"]

    def frame(
        self, channels: list[np.ndarray], pixel_size, source: str, target: int | None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """``(map (y, x) float32 in [0, 1], probabilities (classes,), explained index)``.

        The tiles go through the network in batches of :data:`BATCH`; what is kept of each
        batch until the category is known is the target layer's activations and the graph
        after it (the layers before it record none).
        """
        torch = self.torch
        view = model_input(channels, pixel_size, self.model.spec, source)
        cut, starts = tiles(view, self.model.input_size)
        with self.lock:
            passes = [self._forward(cut[s : s + BATCH]) for s in range(0, len(cut), BATCH)]
            logits = torch.cat([lg.detach() for lg, _ in passes])
            mean = torch.softmax(logits.float(), dim=1).mean(dim=0, keepdim=True).cpu().numpy()
            probs = calibrated(mean, self.model.confidence)[0]  # as predict
            index = int(np.argmax(probs)) if target is None else target
            maps = []
            for lg, a in passes:
                if self.method in _GRADIENT_METHODS:
                    (g,) = torch.autograd.grad(lg[:, index].sum(), a)
                    maps.append(layer_maps(self.method, a.detach(), g, None))
                else:
                    assert self.weights is not None  # set for method "cam"
                    maps.append(layer_maps(self.method, a, None, self.weights[index]))
            maps = torch.cat(maps).float().cpu().numpy().astype(np.float64)
        real = model_shape(
            channels[0].shape, pixel_size, self.model.pixel_size
        )  # the view less its mirrored padding
        stitched = _stitch(maps, starts, self.model.input_size, view.shape[1:], channels[0].shape, real)
        return stitched, probs, index


def _stitch(
    maps: np.ndarray,
    starts: list[tuple[int, int]],
    size: int,
    view_shape: tuple[int, int],
    out_shape: tuple[int, int],
    real_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Tile maps ``(T, h, w)`` onto the model's view (overlaps averaged), then its ``real_shape``
    part (without the mirrored padding of a small image) onto the input grid."""
    total = np.zeros(view_shape)
    count = np.zeros(view_shape)
    for tile_map, (y, x) in zip(maps, starts, strict=True):
        total[y : y + size, x : x + size] += resize(tile_map, (size, size))
        count[y : y + size, x : x + size] += 1
    mean = total / count
    if real_shape is not None:
        mean = mean[: real_shape[0], : real_shape[1]]
    full = np.maximum(resize(mean, (int(out_shape[0]), int(out_shape[1]))), 0.0)
    peak = full.max()
    if peak > 0 and np.isfinite(peak):
        full = full / peak
    else:
        full = np.zeros_like(full)
    return full.astype(np.float32)


# --------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------


def _setup(model: Any, image: Any, method: Any, target: Any, layer: Any, pixel_size: Any):
    model = as_model(model)
    method = check_method(method)
    layer = check_layer(model, method, layer)
    index = target_index(model, target)
    example = as_example(image, model.channels, pixel_size, name="image")
    _check_channels(model, example)
    return model, method, layer, index, example


def _summary(
    model: ClassifierModel, frame_probs: np.ndarray, index: int | None
) -> tuple[str, float, dict[str, float]]:
    mean = frame_probs.mean(axis=0)
    chosen = int(np.argmax(mean)) if index is None else index
    return (
        model.categories[chosen],
        float(mean[chosen]),
        {c: float(p) for c, p in zip(model.categories, mean, strict=True)},
    )


def cam(
    model: Any,
    image: Any,
    method: str = "gradcam",
    target: Any = None,
    layer: str | None = None,
    pixel_size: Any = None,
    device: Any = None,
) -> CamResult:
    """The class activation map of ``image`` (see the module docstring).

    ``model``: a ClassifierModel or the path of a saved one. ``image``: a file path, Scan,
    Example, array, or dict channel name -> array (several channels); ``pixel_size`` (nm/px)
    is for arrays, which carry none. ``method``: one of :data:`METHODS`. ``target``: the
    category to explain (name or index; None: the predicted one). ``layer``: ``"block1"`` …
    ``"blockN"`` (None: the last). ``device``: torch device (None: CUDA if present, else CPU).

    A movie is computed frame by frame into a numpy ``(t, y, x)`` map; :func:`cam_lazy`
    computes frames only when they are read. ValueError for an unknown method, layer or target,
    "cam" with a dense head, missing channels or an image smaller than the network input.
    """
    model, method, layer, index, example = _setup(model, image, method, target, layer, pixel_size)
    explainer = _Explainer(model, method, layer, device)
    maps, frame_probs, explained = [], [], []
    for f in range(example.n_frames):
        m, p, i = explainer.frame(example.frame(f), example.pixel_size, example.source, index)
        maps.append(m)
        frame_probs.append(p)
        explained.append(i)
    category, probability, probabilities = _summary(model, np.stack(frame_probs), index)
    result = CamResult(maps[0], category, probability, probabilities, method, layer, example.source)
    if example.is_movie:
        result.map = np.stack(maps)
        result.frame_categories = [model.categories[i] for i in explained]
        result.frame_probabilities = [float(p[i]) for p, i in zip(frame_probs, explained, strict=True)]
    return result


def cam_lazy(
    model: Any,
    image: Any,
    method: str = "gradcam",
    target: Any = None,
    layer: str | None = None,
    pixel_size: Any = None,
    device: Any = None,
) -> CamResult:
    """:func:`cam` with the map of a movie as a dask array computed frame by frame on access.

    Each frame's category is fixed up front by that frame's prediction (a plain, batched
    prediction of every frame, much cheaper than the maps) unless ``target`` is given, so the
    result's categories and probabilities are known at once. For a 2-D image this is
    :func:`cam` (the map is computed at once).
    """
    model, method, layer, index, example = _setup(model, image, method, target, layer, pixel_size)
    if not example.is_movie:
        return cam(model, example, method, index, layer, device=device)
    import dask.array as da

    from .predict import predict_many

    (prediction,) = predict_many(model, [example], device=device)
    assert prediction is not None and prediction.frames is not None  # a movie, no on_error
    frame_probs = np.array([[f["probabilities"][c] for c in model.categories] for f in prediction.frames])
    explained = [int(np.argmax(p)) if index is None else index for p in frame_probs]
    category, probability, probabilities = _summary(model, frame_probs, index)
    explainer = _Explainer(model, method, layer, device)
    height, width = example.shape

    def one_frame(block_info=None):
        f = block_info[None]["chunk-location"][0]
        m, _, _ = explainer.frame(example.frame(f), example.pixel_size, example.source, explained[f])
        return m[np.newaxis]

    lazy = da.map_blocks(
        one_frame,
        dtype=np.float32,
        chunks=((1,) * example.n_frames, (height,), (width,)),
        meta=np.empty((0, 0, 0), np.float32),
    )
    return CamResult(
        lazy,
        category,
        probability,
        probabilities,
        method,
        layer,
        example.source,
        [model.categories[i] for i in explained],
        [float(p[i]) for p, i in zip(frame_probs, explained, strict=True)],
    )


# --------------------------------------------------------------------------------------
# The map as a channel (CLI, recipes and the GUI build it here)
# --------------------------------------------------------------------------------------

#: How a class activation map is drawn over its image; kept in the saved file's metadata
#: (``header["look"]``) so that the map reopens translucent and coloured, not grey and opaque.
CAM_LOOK = {"colormap": "turbo", "opacity": 0.5, "blending": "translucent"}


def cam_channel(
    result: CamResult, model: ClassifierModel, like: Any = None, source: str = "", processing: Any = ()
):
    """The map of ``result`` as a :class:`~napari_scanprobe.io.scan.Channel` ``"CAM <category>"``.

    ``like``: the channel whose frame the map has (pixel size, offset, units, direction, frame
    time; None: a plain array, pixels). The header says what the map explains: ``source`` (the
    input file), ``model`` (``{"name", "path"}``), ``method``, ``layer``, ``category``,
    ``probability``, ``probabilities`` (and ``frame_categories``/``frame_probabilities`` for a
    movie), ``processing`` (the steps that made it) and ``look`` (:data:`CAM_LOOK`).
    """
    from ..io.scan import Channel

    header = {
        "source": str(source),
        "model": {"name": model.name, "path": model.path},
        "method": result.method,
        "layer": result.layer,
        "category": result.category,
        "probability": result.probability,
        "probabilities": dict(result.probabilities),
        "processing": list(processing),
        "look": dict(CAM_LOOK),
    }
    if result.frame_categories is not None:
        header.update(
            frame_categories=result.frame_categories, frame_probabilities=result.frame_probabilities
        )
    geometry: dict = {"xy_unit": ""}
    if like is not None:
        geometry = {
            "direction": like.direction,
            "pixel_size": like.pixel_size,
            "xy_unit": like.xy_unit,
            "offset": like.offset,
            "frame_time_s": like.frame_time_s if getattr(result.map, "ndim", 2) == 3 else None,
        }
    return Channel(result.map, f"CAM {result.category}", z_unit="", header=header, **geometry)
