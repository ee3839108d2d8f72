"""The one place that maps the core's data model onto napari layers and back.

A :class:`~napari_scanprobe.io.scan.Channel` becomes an image ``LayerDataTuple`` with the
physical ``scale`` (nm per pixel; seconds per frame for movies), ``translate`` from the file's
offsets, ``units``, ``axis_labels``, a name ``"<file stem> | <channel> (<direction>)"`` and
``metadata`` holding everything a later step (or a recipe) needs. :class:`LayerMeta` is the one
way the widgets read (and write) that metadata. A channel whose header holds a ``look``
(colormap, opacity, blending -- as a class activation map saved by this plugin) is drawn with it.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np

from .. import __version__
from ..io.scan import Channel, Scan
from ..process.superres import upscaled_geometry
from .compat import IMAGE_AUTO_CONTRAST

#: napari's colormap per kind of channel: heights get the AFM convention.
_HEIGHT_COLORMAP = "afmhot"

#: Frames of a movie sampled for its contrast limits (a long movie is never read whole).
CONTRAST_FRAMES = 16

#: The layer attributes a ``look`` may set (kept in a saved file's metadata).
LOOK_KEYS = ("colormap", "opacity", "blending")


class LayerMeta:
    """Typed access to what napari-scanprobe keeps in a layer's ``metadata``.

    ``LayerMeta(layer)`` (or ``LayerMeta(metadata_dict)``) reads the layer's own dict, so the
    setters write into the layer. Keys the layer lacks read as None (or an empty list/dict):
    any layer, ours or not, can be asked.
    """

    __slots__ = ("_m",)

    def __init__(self, layer_or_metadata: Any):
        m = layer_or_metadata
        if not isinstance(m, dict):
            m = getattr(layer_or_metadata, "metadata", None)
        self._m: dict = m if isinstance(m, dict) else {}

    def _text(self, key: str) -> str | None:
        value = self._m.get(key)
        return str(value) if value not in (None, "") else None

    @property
    def channel(self) -> str | None:
        """The channel name (``"Height"``); None for a layer this plugin did not make."""
        return self._text("channel")

    @property
    def direction(self) -> str | None:
        return self._text("direction")

    @property
    def title(self) -> str | None:
        """``"Height (retrace)"``: the channel with its direction, as files and models name it."""
        name, direction = self.channel, self.direction
        if name is None:
            return None
        return f"{name} ({direction})" if direction else name

    @property
    def role(self) -> str | None:
        """The vendor-neutral kind of channel (``"topography"`` …) when the reader set one."""
        return self._text("role")

    @property
    def is_height(self) -> bool:
        """A height (topography) channel (see :func:`is_height`)."""
        return is_height(self.role, self.channel, self.z_unit)

    @property
    def z_unit(self) -> str | None:
        return self._text("z_unit")

    @property
    def xy_unit(self) -> str | None:
        return self._text("xy_unit")

    @property
    def pixel_size(self) -> tuple[float, float] | None:
        size = self._m.get("pixel_size")
        return (float(size[0]), float(size[1])) if size is not None else None

    @property
    def pixel_size_nm(self) -> tuple[float, float] | None:
        """The pixel size when it is in nm, else None (pixels without a physical size)."""
        return self.pixel_size if self.xy_unit == "nm" else None

    @property
    def source(self) -> str | None:
        """The file the layer was read from (``"synthetic"`` for sample data)."""
        return self._text("source")

    @property
    def format(self) -> str | None:
        return self._text("format")

    @property
    def header(self) -> dict:
        return self._m.get("header") or {}

    @property
    def channel_header(self) -> dict:
        return self._m.get("channel_header") or {}

    @property
    def processing(self) -> list[dict]:
        """The steps that made the layer from the file, in order (a copy)."""
        return [s for s in self._m.get("processing") or [] if isinstance(s, dict)]

    @property
    def is_cam(self) -> bool:
        """True for a class activation map, made here or reopened from a file it was saved to."""
        saved = self.channel_header
        return any(step.get("step") == "cam" for step in self.processing) or (
            "look" in saved and "category" in saved and "method" in saved
        )

    @property
    def model(self) -> dict:
        """A class activation map's model: ``{"name", "path"}`` (empty for other layers)."""
        model = self._m.get("model")
        return model if isinstance(model, dict) else {}

    @property
    def classification(self) -> dict:
        """The Classifier's last prediction: ``{"model", "label", "probabilities"[, "frames"]}``."""
        return self._m.get("classification") or {}

    @classification.setter
    def classification(self, record: dict) -> None:
        self._m["classification"] = record


def layer_name(scan: Scan, channel: Channel) -> str:
    return f"{scan.stem} | {channel.title}"


def _sample_frames(data: Any) -> np.ndarray:
    """A 2-D image, or up to :data:`CONTRAST_FRAMES` frames spread over a movie, as one array."""
    if data.ndim != 3:
        return np.asarray(data)
    n = int(data.shape[0])
    picks = np.unique(np.linspace(0, n - 1, min(n, CONTRAST_FRAMES)).round().astype(int))
    return np.stack([np.asarray(data[int(i)]) for i in picks])


def contrast_limits(data: Any) -> list[float]:
    """Limits from the data: finite min/max of an image; of a movie, the 0.5-99.5 percentiles
    of frames sampled over its whole length (a drifting movie stays visible). Never empty."""
    values = _sample_frames(data)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return [0.0, 1.0]
    if values.ndim == 3:
        low, high = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
    else:
        low, high = float(finite.min()), float(finite.max())
    if high <= low:
        pad = abs(low) * 1e-6 or 1.0
        low, high = low - pad, high + pad
    return [low, high]


def _look(header: dict) -> dict:
    """The ``look`` a file's channel header keeps (JSON text in .gwy/.gsf), only known keys."""
    look = header.get("look") if isinstance(header, dict) else None
    if isinstance(look, str):
        try:
            look = json.loads(look)
        except ValueError:
            return {}
    if not isinstance(look, dict):
        return {}
    return {k: look[k] for k in LOOK_KEYS if isinstance(look.get(k), (str, int, float))}


#: Channel names vendors give the height (topography) when the reader sets no role.
_HEIGHT_NAMES = ("height", "topography", "z", "z-axis")


def is_height(role: str | None, name: str | None, z_unit: str | None) -> bool:
    """A height (topography) channel: the reader's role when it gives one, else a length
    channel with a name vendors give the height."""
    if role:
        return role == "topography"
    return z_unit == "nm" and (name or "").strip().lower() in _HEIGHT_NAMES


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
    if data.ndim == 3 and IMAGE_AUTO_CONTRAST:
        kwargs["auto_contrast"] = True  # limits follow the frame shown
    kwargs.update(_look(channel.header))
    return (data, kwargs, "image")


def scan_to_layers(scan: Scan) -> list[tuple]:
    """One layer per channel, in file order except the first height channel, which goes last
    (napari draws the last layer on top: the topography is what a file opens on)."""
    channels = list(scan.channels)
    top = next((ch for ch in channels if is_height(getattr(ch, "role", None), ch.name, ch.z_unit)), None)
    if top is not None:
        channels.remove(top)
        channels.append(top)
    return [channel_to_layer(scan, ch) for ch in channels]


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


def axis_unit(unit: Any) -> str:
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
    ``metadata["frame_time_s"]``; ``metadata["z_unit"]`` and ``["role"]`` -> the same fields; the layer name (which already holds
    the direction) ->
    ``name``; the whole metadata (``processing`` included), made JSON-safe, -> ``header``.
    Raises ``ValueError`` for RGB, multiscale or non-2-D/3-D layers.
    """
    from ..io.scan import ROLES, jsonable
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
    if "look" in metadata:  # as the layer is drawn now (the user may have changed it)
        look = {k: attributes[k] for k in LOOK_KEYS if isinstance(attributes.get(k), (str, int, float))}
        metadata["look"] = {**_look(metadata), **look}

    pixel_size, offset, xy_units = [], [], []
    for unit, step, origin in zip((axis_unit(u) for u in units[-2:]), scale[-2:], translate[-2:]):
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
        factor, si = parse_unit(axis_unit(units[0]))
        if si == "s":
            frame_time = scale[0] * factor
    role = metadata.get("role")
    return Channel(
        data=data,
        name=name,
        role=role if role in ROLES else None,
        z_unit=str(metadata.get("z_unit") or ""),
        pixel_size=(pixel_size[0], pixel_size[1]),
        xy_unit=xy_units[0],
        offset=(offset[0], offset[1]),
        frame_time_s=float(frame_time) if ndim == 3 and isinstance(frame_time, (int, float)) else None,
        header=jsonable(metadata),
    )
