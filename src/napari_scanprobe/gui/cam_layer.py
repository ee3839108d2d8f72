"""Class activation maps as napari image layers that overlay their input pixel for pixel.

:func:`layer_example` turns an image layer (and, for a multi-channel model, the layers holding
the model's other channels) into the core's :class:`~napari_scanprobe.learn.data.Example`;
the classifier widget uses it for prediction too. :func:`cam_layer` computes the map with
:mod:`napari_scanprobe.learn.cam` and returns it as a layer tuple: named
``"<input> | CAM <category>"``, with the input's scale, translate, units and axis labels
(``gui.layers.derived_layer``), the look of :data:`~napari_scanprobe.learn.cam.CAM_LOOK`
(``turbo``, translucent, opacity 0.5; kept in ``metadata["look"]`` so a saved map reopens so),
contrast limits [0, 1], and the metadata of :func:`~napari_scanprobe.learn.cam.cam_channel`
saying which model, method, network layer and category it explains. A movie's map is a dask array computed frame by frame as the user moves through it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..learn.data import Example
from .layers import LayerMeta, derived_layer, processing_step


def _matches(layer, wanted: str) -> bool:
    """Channel matching as for files (``data.pick_channels``): the title, then the name."""
    meta = LayerMeta(layer)
    key = wanted.strip().lower()
    return meta.title is not None and key in (meta.title.lower(), meta.channel.lower())


def _find_channel(layer, wanted: str, viewer_layers: Iterable[Any]):
    """The open layer holding channel ``wanted`` of the same file as ``layer``, or None.

    Among several (e.g. a raw and a flattened height), the one with the same processing as
    ``layer`` is preferred, then an unprocessed one, then the first.
    """
    source = LayerMeta(layer).source
    if not source:
        return None
    shape = tuple(layer.data.shape)
    candidates = [
        other
        for other in viewer_layers
        if other is not layer
        and hasattr(other, "data")
        and LayerMeta(other).source == source
        and _matches(other, wanted)
        and tuple(getattr(other.data, "shape", ())) == shape
        and not LayerMeta(other).is_cam
    ]
    processing = LayerMeta(layer).processing
    for preferred in (
        [c for c in candidates if LayerMeta(c).processing == processing],
        [c for c in candidates if not LayerMeta(c).processing],
        candidates,
    ):
        if preferred:
            return preferred[0]
    return None


def layer_example(layer, model: Any, viewer_layers: Iterable[Any] = ()) -> Example:
    """The :class:`Example` a model needs from an image ``layer``.

    The layer's data, its pixel size (``metadata["pixel_size"]`` when ``metadata["xy_unit"]``
    is nm, else None: used as it is) and its channel (``metadata["channel"]``). A model with
    several channels gets the others from ``viewer_layers``: the layers of the same file
    (``metadata["source"]``) with the same shape. ValueError naming the layer and the channel
    when the layer is not one of the model's channels or another one is not open.
    """
    from ..learn.modelfile import as_model

    model = as_model(model)
    if not hasattr(layer, "data") or getattr(layer.data, "ndim", 0) not in (2, 3):
        raise ValueError(f"layer {getattr(layer, 'name', layer)!r}: not a 2-D image or (t, y, x) movie layer")
    meta = LayerMeta(layer)
    pixel_size = meta.pixel_size_nm
    own = meta.title or layer.name
    if not model.channels:
        return Example([layer.data], [own], pixel_size, source=layer.name)
    if meta.title is None:
        if len(model.channels) == 1:  # a layer not read by this plugin: trust the user's choice
            return Example([layer.data], [model.channels[0]], pixel_size, source=layer.name)
        raise ValueError(
            f"layer {layer.name!r}: the model {model.name!r} needs the channels {', '.join(map(repr, model.channels))} "
            "of one scan, but this layer has no channel information (it was not read by napari-scanprobe)"
        )
    if not any(_matches(layer, wanted) for wanted in model.channels):
        raise ValueError(
            f"layer {layer.name!r} holds channel {own!r}; the model {model.name!r} needs {', '.join(map(repr, model.channels))}"
        )
    viewer_layers = list(viewer_layers)
    data, names = [], []
    for wanted in model.channels:
        found = layer if _matches(layer, wanted) else _find_channel(layer, wanted, viewer_layers)
        if found is None:
            raise ValueError(
                f"layer {layer.name!r}: the model {model.name!r} also needs channel {wanted!r}, and no open layer of the "
                f"same scan ({meta.source or 'unknown file'}, {layer.data.shape}) holds it; open that channel too"
            )
        data.append(found.data)
        names.append(LayerMeta(found).title)
    return Example(data, names, pixel_size, source=layer.name)


def cam_layer(
    layer,
    model: Any,
    method: str = "gradcam",
    target: Any = None,
    colormap: str = "turbo",
    network_layer: str | None = None,
    viewer_layers: Iterable[Any] = (),
    device: Any = None,
) -> tuple:
    """The class activation map of image ``layer`` as a ``(data, kwargs, "image")`` layer tuple.

    ``model``: a ClassifierModel or a model file path. ``method``, ``target`` (category to
    explain; None: the predicted one), ``network_layer`` (``"block1"`` …; None: the last) and
    ``device`` are those of :func:`napari_scanprobe.learn.cam.cam`. ``viewer_layers``: the open
    layers, where a multi-channel model finds its other channels (see :func:`layer_example`).
    Raises ValueError with a message for the user on bad input.
    """
    from ..learn.cam import cam, cam_channel, cam_lazy
    from ..learn.modelfile import as_model

    model = as_model(model)
    example = layer_example(layer, model, viewer_layers)
    compute = cam_lazy if example.is_movie else cam
    result = compute(model, example, method, target, network_layer, device=device)
    options = {
        "model": model.path or model.name,
        "target": None if target is None else result.category,
        "layer": result.layer,
    }
    data, kwargs, kind = derived_layer(
        layer, result.map, processing_step("cam", result.method, options), f"CAM {result.category}"
    )
    metadata = kwargs["metadata"]
    cam_map = cam_channel(
        result, model, source=LayerMeta(layer).source or "", processing=metadata["processing"]
    )
    look = {**cam_map.header["look"], "colormap": colormap}
    metadata.update(cam_map.header, channel=cam_map.name, z_unit="", source_layer=layer.name, look=look)
    kwargs.update(look, contrast_limits=[0.0, 1.0])
    return data, kwargs, kind
