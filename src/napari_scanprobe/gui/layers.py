"""The one place that maps the core's data model onto napari layers and back.

A :class:`~napari_scanprobe.io.scan.Channel` becomes an image ``LayerDataTuple`` with the
physical ``scale`` (nm per pixel; seconds per frame for movies), ``translate`` from the file's
offsets, ``units``, ``axis_labels``, a name ``"<file stem> | <channel> (<direction>)"`` and
``metadata`` holding everything a later step (or a recipe) needs.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .. import __version__
from ..io.scan import Channel, Scan
from ..process.superres import upscaled_geometry

#: napari's colormap per kind of channel: heights get the AFM convention.
_HEIGHT_COLORMAP = "afmhot"


def layer_name(scan: Scan, channel: Channel) -> str:
    return f"{scan.stem} | {channel.title}"


def contrast_limits(data: Any) -> list[float]:
    """Limits from the data (the first frame of a movie): finite min/max, never empty."""
    frame = data[0] if data.ndim == 3 else data
    frame = np.asarray(frame)
    finite = frame[np.isfinite(frame)]
    if finite.size == 0:
        return [0.0, 1.0]
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        pad = abs(low) * 1e-6 or 1.0
        low, high = low - pad, high + pad
    return [low, high]


def channel_metadata(scan: Scan, channel: Channel) -> dict:
    facts = channel.facts()
    return {
        "channel": facts.pop("name"),
        **facts,
        "source": scan.path,
        "format": scan.format,
        "header": scan.header,
        "channel_header": channel.header,
        "processing": [],
    }


def channel_to_layer(scan: Scan, channel: Channel) -> tuple:
    """A ``(data, kwargs, "image")`` tuple napari turns into an image layer."""
    data = channel.data
    scale = list(channel.pixel_size)
    translate = list(channel.offset)
    xy_unit = channel.xy_unit or "pixel"
    units = [xy_unit, xy_unit]
    labels = ["y", "x"]
    if data.ndim == 3:
        scale.insert(0, channel.frame_time_s or 1.0)
        translate.insert(0, 0.0)
        units.insert(0, "s" if channel.frame_time_s else "pixel")
        labels.insert(0, "t")
    kwargs = {
        "name": layer_name(scan, channel),
        "scale": scale,
        "translate": translate,
        "units": units,
        "axis_labels": labels,
        "metadata": channel_metadata(scan, channel),
        "contrast_limits": contrast_limits(data),
        "colormap": _HEIGHT_COLORMAP if channel.z_unit == "nm" else "gray",
        "multiscale": False,
    }
    return (data, kwargs, "image")


def scan_to_layers(scan: Scan) -> list[tuple]:
    return [channel_to_layer(scan, ch) for ch in scan.channels]


def layer_to_array(layer) -> tuple[Any, dict]:
    """An image layer back into ``(array, metadata)`` for the core; scale and units kept."""
    metadata = dict(layer.metadata)
    metadata.setdefault("pixel_size", [float(s) for s in layer.scale[-2:]])
    metadata.setdefault("offset", [float(t) for t in layer.translate[-2:]])
    return layer.data, metadata


def processing_step(step: str, method: str, options: dict) -> dict:
    """One entry of ``metadata["processing"]``: enough to redo the step from a script."""
    return {"step": step, "method": method, "options": dict(options), "version": __version__}


def derived_layer(layer, data: Any, step: dict, suffix: str, zoom: int = 1) -> tuple:
    """A new image layer computed from ``layer``: same frame, metadata + one processing step.

    ``zoom`` > 1 is for upscaled data: the pixel size is divided by ``zoom`` and the origin moved
    so that output pixel ``i`` lies at input position ``(i + 0.5) / zoom - 0.5`` -- the result
    overlays the input exactly.
    """
    metadata = copy.deepcopy(
        {k: v for k, v in layer.metadata.items() if k not in ("header", "channel_header")}
    )
    metadata["header"] = layer.metadata.get("header", {})  # shared, never modified: no need to copy
    metadata["channel_header"] = layer.metadata.get("channel_header", {})
    metadata["processing"] = list(layer.metadata.get("processing", [])) + [step]
    scale, translate = list(layer.scale), list(layer.translate)
    if zoom != 1:
        scale, translate = upscaled_geometry(scale, translate, zoom)
        if "pixel_size" in metadata:
            metadata["pixel_size"] = [float(s) for s in scale[-2:]]
            metadata["offset"] = [float(t) for t in translate[-2:]]
    kwargs = {
        "name": f"{layer.name} | {suffix}",
        "scale": [float(v) for v in scale],
        "translate": [float(v) for v in translate],
        "units": [str(u) for u in layer.units] if hasattr(layer, "units") else None,
        "axis_labels": list(layer.axis_labels) if hasattr(layer, "axis_labels") else None,
        "metadata": metadata,
        "colormap": layer.colormap.name,
        "contrast_limits": contrast_limits(data),
        "multiscale": False,
    }
    return (data, {k: v for k, v in kwargs.items() if v is not None}, "image")


def _axis_unit(unit: Any) -> str:
    """A napari axis unit (a pint ``Unit`` or a string) as a short string; pixel/None -> ``""``."""
    if unit is None:
        return ""
    text = unit if isinstance(unit, str) else format(unit, "~")
    text = text.strip()
    return "" if text in ("pixel", "px", "pixels", "dimensionless", "") else text


def layer_to_channel(data: Any, attributes: dict) -> Channel:
    """An image layer's ``(data, attributes)`` (as napari hands them to writers) -> a Channel.

    The inverse of :func:`channel_to_layer`: the last two axes' ``scale`` -> ``pixel_size``
    and ``translate`` -> ``offset``; their ``units`` -> ``xy_unit`` (a length -> nm, scale
    and translate converted; ``"pixel"``/None -> ``""``); a 3-D layer is a ``(t, y, x)``
    movie whose frame time is ``scale[0]`` when that axis is in seconds, else
    ``metadata["frame_time_s"]``; ``metadata["z_unit"]`` -> ``z_unit``; the layer name ->
    ``name``; the whole metadata (``processing`` included), made JSON-safe, -> ``header``.
    Raises ``ValueError`` for RGB, multiscale or non-2-D/3-D layers.
    """
    from ..io.scan import jsonable
    from ..io.units import parse_unit

    name = str(attributes.get("name") or "image")
    if attributes.get("multiscale"):
        raise ValueError(f"layer {name!r} is multiscale; save one of its levels as its own layer")
    if attributes.get("rgb"):
        raise ValueError(f"layer {name!r} is an RGB image; only single-channel images can be saved")
    ndim = getattr(data, "ndim", None)
    if ndim not in (2, 3):
        shape = getattr(data, "shape", None)
        raise ValueError(f"layer {name!r} must be a 2-D image or a 3-D (t, y, x) movie, not shape {shape}")
    scale = attributes.get("scale")
    scale = [1.0] * ndim if scale is None else [float(s) for s in scale]
    translate = attributes.get("translate")
    translate = [0.0] * ndim if translate is None else [float(t) for t in translate]
    units = list(attributes.get("units") or [None] * ndim)
    metadata = dict(attributes.get("metadata") or {})

    pixel_size, offset, xy_units = [], [], []
    for unit, step, origin in zip((_axis_unit(u) for u in units[-2:]), scale[-2:], translate[-2:]):
        factor, si = parse_unit(unit)
        if unit and si == "m":  # any length -> nm
            factor, unit = factor * 1e9, "nm"
        else:
            factor = 1.0
        pixel_size.append(step * factor)
        offset.append(origin * factor)
        xy_units.append(unit)
    if xy_units[0] != xy_units[1]:
        raise ValueError(
            f"layer {name!r} has different units on its y and x axes ({xy_units[0]!r}, {xy_units[1]!r})"
        )
    frame_time = metadata.get("frame_time_s")
    if ndim == 3:
        factor, si = parse_unit(_axis_unit(units[0]))
        if si == "s":
            frame_time = scale[0] * factor
    return Channel(
        data=data,
        name=name,
        z_unit=str(metadata.get("z_unit") or ""),
        pixel_size=(pixel_size[0], pixel_size[1]),
        xy_unit=xy_units[0],
        offset=(offset[0], offset[1]),
        frame_time_s=float(frame_time) if ndim == 3 and isinstance(frame_time, (int, float)) else None,
        header=jsonable(metadata),
    )
