"""JPK (Bruker) high-speed AFM movies in HDF5 (``.h5-jpk``), as written by JPK SPM 8.x.

Layout (pycroscopy/USID style), learned with ``h5py``:

* root attributes ``file-format-info = "JPK SCAN"``, ``file-format-version``;
* one group per measurement, ``Measurement_000``, whose attributes hold the scan:
  ``position-pattern.grid.ilength``/``jlength`` (pixels along the fast/slow axis),
  ``ulength``/``vlength`` (scan size, unit ``position-pattern.grid.unit.unit``, metres),
  ``xcenter``/``ycenter``, ``reflect``, ``timing-settings.scanRate`` (lines per second) and
  the whole JPK property tree; ``Position_Indices``/``Position_Values`` list the pixels (x
  fastest, y growing with the row index); ``meta-data/start-times`` (ms) the frame starts;
* one group per channel, ``Channel_000`` ..., with attributes ``channel.name``,
  ``channel.fancy-name``, ``retrace`` (``"true"``/``"false"``) and the calibration slots
  (``encoder.*``, ``conversion.<slot>.*``, ``conversions.default``). The composed scaling of
  the default slot is stored as ``net-encoder.scaling.multiplier``/``offset`` with its unit in
  ``net-encoder.scaling.unit.unit`` (e.g. Error: 5.2e-9 V/count * 2.0 * 2.79e-9 m/V =
  ``net-encoder`` 2.9e-17 m/count);
* in each channel group one dataset of raw integers, shape ``(jlength * ilength, frames)``
  (one column per frame, chunked one frame per chunk) plus a ``thumbnail``.

Rules:

* values = ``raw * net multiplier + net offset`` in the net-encoder unit, then lengths -> nm
  and the rest SI via ``value_scale`` (AFMReader 0.0.7 does the same and multiplies
  lengths by 1e9), falling back to ``encoder.scaling`` when there is no net encoder;
* rows are stored bottom-up (row index grows with y, as ``Position_Values`` shows), so they
  are flipped for display unless ``position-pattern.grid.reflect`` is true -- the same rule
  as JPK's TIFF scans (Gwyddion's ``jpkscan``) and what AFMReader's default
  ``flip_image=True`` does;
* pixel size = ``ulength / ilength`` (x) and ``vlength / jlength`` (y); offset = grid centre
  minus half the scan size (the grid origin, as JPK TIFF files store it);
* ``frame_time_s`` = mean interval between the recorded frame start times
  (``meta-data/start-times``); without them, ``jlength / scanRate`` (AFMReader's frame
  period, which leaves out the pause between frames);
* every channel group becomes a Channel in file order, named by its fancy name ("Height",
  "Height (measured)", "Lock-In Amplitude" ...) with direction ``"trace"``/``"retrace"``.

Header: ``Scan.header`` holds the root attributes and EVERY attribute of each measurement
group (the grid, timing, feedback and environment settings: the JPK property tree, 363
attributes in the sample file). A channel's ``header`` holds only the channel attributes the
reader uses (:data:`CHANNEL_KEYS`: names, direction, the composed scaling and its calibration
slot; the ``encoder.scaling`` ones too when there is no composed scaling) plus the data set's
``quantity`` and ``units``; all of them stay one call away: :func:`read_attributes`
``(path, ch.header["group"])``. Why: HDF5 reads attributes one by one (~15-20 us each, open +
type + read, even with h5py's low-level calls), so the ~50 per channel (every calibration slot)
would add ~8 ms to a 9-channel file, while the measurement group's tree is read once per file
(~6 ms of the ~25 ms to open the sample, whose largest part, ~10 ms, is HDF5 inflating its 36
compressed data chunks).

Frames: ``Channel.data`` is a ``(t, y, x)`` float32 dask array, one frame per chunk
(``movie.py``). A small movie (at most ``movie.EAGER_BYTES`` as float32, all channels) has its
raw levels read (one ``read_direct`` per channel) while the file is open for the header, and
held: frames are converted from them on demand, and ``np.asarray`` converts the whole movie in
one step. A larger movie is read on demand: each frame opens the file, reads its column(s) and
closes it, so no HDF5 handle outlives a read and the graph pickles.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np

from .movie import FrameSource, is_small, lazy_movie
from .scan import Channel, ReaderError, Scan, check_shape, clean_name, decode, jsonable
from .units import length_to_nm, value_scale

FORMAT = "h5-jpk"
EXTENSIONS = (".h5-jpk",)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_SUPERBLOCK_OFFSETS = (0, 512, 1024, 2048)

#: The channel attributes read into ``Channel.header`` (all of them: :func:`read_attributes`).
CHANNEL_KEYS = (
    "channel.name",
    "channel.fancy-name",
    "retrace",
    "conversions.default",
    "net-encoder.scaling.multiplier",
    "net-encoder.scaling.offset",
    "net-encoder.scaling.unit.unit",
)
_CHANNEL_NOTE = "CHANNEL_KEYS only; all of them: napari_scanprobe.io.h5jpk.read_attributes(path, group)"
#: Read as well when the channel has no composed (net-encoder) scaling.
_ENCODER_KEYS = ("encoder.scaling.multiplier", "encoder.scaling.offset", "encoder.scaling.unit.unit")


def _has_magic(head: bytes) -> bool:
    return any(head[o : o + 8] == HDF5_MAGIC for o in _SUPERBLOCK_OFFSETS)


def _text(value) -> str:
    if isinstance(value, bytes):
        return decode(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.reshape(-1)[0])
    return str(value)


def _number(attrs, key: str, default=None):
    try:
        value = attrs[key]
    except KeyError:
        return default
    try:
        if isinstance(value, (bytes, str, np.bytes_)):
            value = _text(value)
        value = np.asarray(value, dtype=np.float64).reshape(-1)
        return float(value[0]) if value.size else default
    except (TypeError, ValueError):
        return default


def _flag(attrs, key: str) -> bool:
    value = attrs.get(key, False)
    if isinstance(value, (bytes, str, np.bytes_)):
        return _text(value).strip().lower() in ("true", "1", "yes")
    try:
        return bool(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return False


def _measurements(f) -> list[str]:
    import h5py

    names = [k for k in f if k.startswith("Measurement_") and f.get(k, getclass=True) is h5py.Group]
    return sorted(names)


def _is_jpk(f) -> bool:
    info = f.attrs.get("file-format-info")
    if info is not None and _text(info).strip().upper().startswith("JPK"):
        return True
    for name in _measurements(f):
        attrs = f[name].attrs
        if "position-pattern.grid.ilength" in attrs and (
            "jpkspm_version" in attrs or "description.source-software" in attrs
        ):
            return True
    return False


def sniff(path: Path, head: bytes) -> bool:
    """HDF5 magic, then (only then) a look inside with h5py for JPK's scan attributes."""
    try:
        if not _has_magic(head):
            return False
        import h5py

        with h5py.File(path, "r") as f:
            return _is_jpk(f)
    except Exception:  # noqa: BLE001 - a sniffer must never raise
        return False


# --------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------


class H5jpkFrames(FrameSource):
    """Array-like ``(t, y, x)`` float32 view of one channel data set, converted on demand.

    ``held``: the data set's raw levels as stored, read when the file was opened (a small
    movie); without them each ``frames`` call opens the file, reads the requested frame columns
    and closes it again. Pickles as path, data set name and numbers (never the held levels).
    """

    def __init__(
        self,
        path: str,
        dataset: str,
        frames_last: bool,
        shape,
        mult: float,
        offset: float,
        flip: bool,
        held: np.ndarray | None = None,
    ):
        super().__init__(path, shape)
        self.dataset = dataset
        self.frames_last = frames_last  # dataset is (pixels, frames), else (frames, pixels)
        self.mult = mult
        self.offset = offset
        self.flip = flip
        self.held = held

    def frames(self, start: int, stop: int) -> np.ndarray:
        _, ny, nx = self.shape
        if stop <= start:
            return np.empty((0, ny, nx), np.float32)
        if self.held is not None:
            return self.convert(self.select(self.held, start, stop))
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                raw = self.select(f[self.dataset], start, stop)
        except (OSError, KeyError, ValueError) as exc:
            raise ReaderError(self.path, f"cannot read frames {start}..{stop - 1} of {self.dataset} ({exc})") from None
        return self.convert(raw)

    def select(self, data, start: int, stop: int) -> np.ndarray:
        """Raw frames ``start:stop`` as ``(n, pixels)`` from the data set (h5py or held levels)."""
        if data.ndim == 1:
            return data[()][None, :]
        if self.frames_last:
            return data[:, start:stop].T
        return data[start:stop, :]

    def convert(self, raw: np.ndarray) -> np.ndarray:
        """``(n, pixels)`` raw levels -> new float32 ``(n, y, x)`` values, rows flipped if needed."""
        _, ny, nx = self.shape
        raw = raw.reshape(-1, ny, nx)
        if self.flip:
            raw = raw[:, ::-1, :]
        out = raw.astype(np.float64)  # then scaled in place: faster than one mixed-type multiply
        out *= self.mult
        if self.offset:
            out += self.offset
        return out.astype(np.float32)


# --------------------------------------------------------------------------------------
# Attributes
# --------------------------------------------------------------------------------------


#: HDF5's byte orders and integer signs (``H5T_ORDER_LE``/``BE``, ``H5T_SGN_NONE``/``2``) -> numpy's.
_ORDER = {0: "<", 1: ">"}
_SIGN = {0: "u", 1: "i"}


def _scalar_dtype(ftype, h5t) -> str | None:
    """numpy type of a scalar fixed-length string or number attribute of HDF5 type ``ftype``
    (built from its class, size and order: ``ftype.dtype`` takes longer than the read itself)."""
    kind, size = ftype.get_class(), ftype.get_size()
    if kind == h5t.STRING:
        return None if ftype.is_variable_str() else f"S{size}"
    order = _ORDER.get(ftype.get_order())
    if kind == h5t.FLOAT and order:
        return f"{order}f{size}"
    if kind == h5t.INTEGER and order and ftype.get_sign() in _SIGN:
        return f"{order}{_SIGN[ftype.get_sign()]}{size}"
    return None


def _attrs(obj, keys=None) -> dict:
    """The h5py object's attributes (or those of ``keys`` it has) as a dict of raw values, read once.

    Nearly every JPK attribute is one number or one fixed-length string: those are read with
    h5py's low-level calls in the file's own type (no conversion path, no data space query:
    about half the time of ``obj.attrs[name]``); a one-element array is read as its value.
    Anything else goes through h5py.
    """
    from h5py import h5a, h5t

    names: list[bytes] = []
    h5a.iterate(obj.id, names.append)
    if keys is not None:
        have = set(names)
        names = [k for k in (key.encode() for key in keys) if k in have]
    out = {}
    for name in names:
        key = name.decode("utf-8", "replace")
        try:
            attr = h5a.open(obj.id, name)
            ftype = attr.get_type()
            if attr.get_storage_size() == ftype.get_size() and (dtype := _scalar_dtype(ftype, h5t)):
                value = np.empty((), dtype)
                attr.read(value, mtype=ftype)
                out[key] = value[()]
            else:
                out[key] = obj.attrs[key]
        except (OSError, TypeError, ValueError, KeyError):  # unreadable types (dangling references ...)
            out[key] = "<unreadable>"
    return out


def read_attributes(path: str | Path, group: str = "/") -> dict:
    """Every HDF5 attribute of ``group`` (e.g. ``"Measurement_000/Channel_001"``), JSON-ready.

    ``read`` keeps only :data:`CHANNEL_KEYS` of each channel group; this reads the rest.
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return jsonable(_attrs(f[group]))
    except (OSError, KeyError) as exc:
        raise ReaderError(path, f"cannot read the attributes of {group!r} ({exc})") from None


# --------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------


def _scaling(attrs) -> tuple[float, float, str, str]:
    """(multiplier, offset, unit, which) of the composed default calibration slot."""
    for prefix in ("net-encoder", "encoder"):
        mult = _number(attrs, f"{prefix}.scaling.multiplier")
        if mult is not None and np.isfinite(mult):
            offset = _number(attrs, f"{prefix}.scaling.offset", 0.0)
            offset = offset if offset is not None and np.isfinite(offset) else 0.0
            unit = _text(attrs.get(f"{prefix}.scaling.unit.unit", b""))
            return mult, offset, unit, prefix
    return 1.0, 0.0, "", "raw"


def _frame_time(group, attrs: dict, ny: int) -> tuple[float | None, str]:
    times = group.get("meta-data/start-times")
    if times is not None and getattr(times, "size", 0) >= 2 and times.size <= 10**7:
        try:
            starts = np.asarray(times[()], dtype=np.float64).reshape(-1)
            steps = np.diff(starts)
            if steps.size and np.all(np.isfinite(steps)) and np.all(steps > 0):
                return float(steps.mean()) / 1000.0, "mean interval of meta-data/start-times (ms)"
        except (OSError, ValueError, TypeError):
            pass
    rate = _number(attrs, "timing-settings.scanRate")
    if rate and np.isfinite(rate) and rate > 0:
        return ny / rate, "lines / timing-settings.scanRate"
    return None, "unknown"


def _channel_dataset(group, npix: int):
    """(data set, frames_last, frames) of the channel's data set (not the thumbnail), or None."""
    import h5py

    for key in group:
        if key.lower() == "thumbnail" or not isinstance(obj := group[key], h5py.Dataset):
            continue
        shape = obj.shape
        if len(shape) == 2 and shape[0] == npix:
            return obj, True, shape[1]
        if len(shape) == 2 and shape[1] == npix:
            return obj, False, shape[0]
        if len(shape) == 1 and shape[0] == npix:
            return obj, True, 1
    return None


def _read_whole(path: Path, dset) -> np.ndarray:
    """The data set's raw levels as stored, in one read into a new array."""
    try:
        raw = np.empty(dset.shape, dset.dtype)
        dset.read_direct(raw)
    except (OSError, ValueError, TypeError) as exc:
        raise ReaderError(path, f"cannot read {dset.name} ({exc})") from None
    return raw


def read(path: Path) -> Scan:
    path = Path(path)
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency
        raise ReaderError(path, "reading .h5-jpk files needs the h5py package") from None

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ReaderError(path, f"not a readable HDF5 file (truncated or corrupt: {exc})") from None

    stat = path.stat()
    base = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"
    with f:
        if not _is_jpk(f):
            raise ReaderError(path, "HDF5 file without JPK scan attributes (not a JPK high-speed movie)")
        header = {"root": jsonable(_attrs(f))}
        found: list[tuple[H5jpkFrames, object, str, dict]] = []  # (frames, data set, dask name, fields)
        for mname in _measurements(f):
            group = f[mname]
            attrs = _attrs(group)
            nx = _number(attrs, "position-pattern.grid.ilength")
            ny = _number(attrs, "position-pattern.grid.jlength")
            ulen = _number(attrs, "position-pattern.grid.ulength")
            vlen = _number(attrs, "position-pattern.grid.vlength")
            if nx is None or ny is None:
                raise ReaderError(path, f"{mname} has no image grid (not an image movie: force map or spectroscopy?)")
            if not (np.isfinite(nx) and np.isfinite(ny)) or nx != int(nx) or ny != int(ny):
                raise ReaderError(path, f"{mname}: invalid grid size {nx!r} x {ny!r}")
            nx, ny = int(nx), int(ny)
            check_shape(path, (ny, nx), "frame")
            npix = nx * ny
            unit = _text(attrs.get("position-pattern.grid.unit.unit", b"m")) or "m"
            try:
                width_nm = abs(length_to_nm(ulen, unit)) if ulen is not None else float("nan")
                height_nm = abs(length_to_nm(vlen, unit)) if vlen is not None else float("nan")
            except ValueError:
                width_nm = height_nm = float("nan")
            if np.isfinite(width_nm) and np.isfinite(height_nm) and width_nm > 0 and height_nm > 0:
                pixel_size, xy_unit = (height_nm / ny, width_nm / nx), "nm"
                xc = _number(attrs, "position-pattern.grid.xcenter", 0.0) or 0.0
                yc = _number(attrs, "position-pattern.grid.ycenter", 0.0) or 0.0
                x0 = length_to_nm(xc, unit) - width_nm / 2
                y0 = length_to_nm(yc, unit) - height_nm / 2
                offset = (y0, x0) if np.isfinite(x0) and np.isfinite(y0) else (0.0, 0.0)
            else:
                pixel_size, xy_unit, offset = (1.0, 1.0), "", (0.0, 0.0)
            flip = not _flag(attrs, "position-pattern.grid.reflect")
            frame_time_s, timing = _frame_time(group, attrs, ny)
            header[mname] = jsonable(attrs)
            header[mname]["frame_time_rule"] = timing

            for cname in sorted((k for k in group if k.startswith("Channel_")), key=lambda k: (len(k), k)):
                if not isinstance(cgroup := group[cname], h5py.Group):
                    continue
                cattrs = _attrs(cgroup, CHANNEL_KEYS)
                if "net-encoder.scaling.multiplier" not in cattrs:
                    cattrs.update(_attrs(cgroup, _ENCODER_KEYS))
                found_dataset = _channel_dataset(cgroup, npix)
                if found_dataset is None:
                    continue  # no image data set of this grid's size
                dset, frames_last, nframes = found_dataset
                dname = dset.name.rsplit("/", 1)[-1]
                if nframes <= 0:
                    raise ReaderError(path, f"{mname}/{cname} holds no frame")
                title = _text(cattrs.get("channel.fancy-name", b"")) or _text(cattrs.get("channel.name", b"")) or dname
                name = clean_name(title)
                direction = "retrace" if _flag(cattrs, "retrace") else "trace"
                mult, off, zunit_file, which = _scaling(cattrs)
                factor, z_unit = value_scale(zunit_file)
                dpath = f"{mname}/{cname}/{dname}"
                source = H5jpkFrames(
                    str(path), dpath, frames_last, (nframes, ny, nx), mult * factor, off * factor, flip
                )
                token = hashlib.sha1(f"{base}|{dpath}".encode()).hexdigest()[:16]
                chan_header = jsonable(cattrs)
                chan_header.update(
                    {
                        "group": f"{mname}/{cname}",
                        "attributes_read": _CHANNEL_NOTE,
                        "dataset": dpath,
                        "dataset_attrs": jsonable(_attrs(dset, ("quantity", "units"))),
                        "scaling_used": which,
                        "value_rule": f"raw * {mult!r} + {off!r} ({zunit_file or 'no unit'})",
                        "flipped_rows": flip,
                    }
                )
                found.append(
                    (
                        source,
                        dset,
                        f"h5jpk-{token}",
                        {
                            "name": name,
                            "direction": direction,
                            "z_unit": z_unit,
                            "pixel_size": pixel_size,
                            "xy_unit": xy_unit,
                            "offset": offset,
                            "frame_time_s": frame_time_s,
                            "header": jsonable(chan_header),
                        },
                    )
                )
        if not found:
            raise ReaderError(path, "JPK HDF5 file holds no image channel")
        # a small movie's raw levels are read now, while the file is open (see the module docstring)
        if is_small(sum(4 * math.prod(source.shape) for source, _, _, _ in found)):
            for source, dset, _, _ in found:
                source.held = _read_whole(path, dset)
    channels = [Channel(data=lazy_movie(source, token), **fields) for source, _, token, fields in found]
    return Scan(path=str(path), format=FORMAT, channels=channels, header=header)  # JSON-ready: built so
