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
  (one column per frame, chunked one frame per chunk, shuffled and deflated) plus a
  ``thumbnail``.

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

Header: ``Scan.header`` holds the root attributes and every attribute of each measurement
group (the grid, timing, feedback and environment settings: the JPK property tree, 363
attributes in the sample file); a channel's ``header`` every attribute of its channel group
(names, direction, every calibration slot) plus its data set's path and attributes and the
rules applied.

Reading: the file's structures are parsed by :mod:`.hdf5` (``struct`` on the file's bytes:
~1 us per attribute, where h5py needs ~15-20 us and a JPK movie has ~900 of them). A file
that module does not understand -- other HDF5 layouts than JPK's, see its docstring -- is read
the same way through h5py, only slower: both go through one tree interface (``_Tree``), so
the rules above exist once.

Frames: ``Channel.data`` is a ``(t, y, x)`` float32 dask array, one frame per chunk
(``movie.py``); a frame's chunk is inflated when the frame is asked for. A small file (at most
``movie.EAGER_BYTES``) is read whole when opened and its bytes held, so frames never touch
the disk again; a larger one is read on demand: each frame opens the file, reads its chunk(s)
and closes it, so no handle outlives a read and the graph pickles.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
from pathlib import Path

import numpy as np

from . import hdf5
from .movie import FrameSource, is_small, lazy_movie
from .scan import Channel, ReaderError, Scan, check_shape, clean_name, decode, jsonable, role_for
from .units import length_to_nm, value_scale

log = logging.getLogger(__name__)

FORMAT = "h5-jpk"
EXTENSIONS = (".h5-jpk",)


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


# --------------------------------------------------------------------------------------
# The file's tree: parsed by .hdf5, or through h5py
# --------------------------------------------------------------------------------------


class _Tree:
    """What the reader asks of an HDF5 file; :class:`_Parsed` and :class:`_H5py` answer it."""

    def attrs(self, path: str) -> dict:
        """Every attribute of the object at ``path``: text (str or bytes), numbers or arrays."""
        raise NotImplementedError

    def members(self, path: str) -> list[str]:
        """Names of the members of the group at ``path``."""
        raise NotImplementedError

    def shape(self, path: str) -> tuple[int, ...] | None:
        """Shape of the data set at ``path``; None for a group."""
        raise NotImplementedError

    def values(self, path: str) -> np.ndarray:
        """The data set at ``path``, whole."""
        raise NotImplementedError

    def frames(self, path: str, **kw) -> JpkFrames:
        """The data set at ``path`` as a frame source (keywords: see :class:`JpkFrames`)."""
        raise NotImplementedError


class _Parsed(_Tree):
    """The tree parsed by :mod:`.hdf5` from ``buf``; ``held``: whether ``buf`` is the whole
    file's bytes, kept by the frame sources (else it is an mmap, closed after opening)."""

    def __init__(self, path: str, buf, held: bool):
        self.path, self.file, self.held = path, hdf5.File(buf), held

    def attrs(self, path):
        return self.file[path].attrs()

    def members(self, path):
        return list(self.file[path])

    def shape(self, path):
        return getattr(self.file[path], "shape", None)

    def values(self, path):
        return self.file[path].read()

    def frames(self, path, **kw):
        storage = self.file[path].storage()
        if storage.contiguous and not self.held:  # h5py reads a few frames of it without the rest
            raise hdf5.Unsupported(f"contiguous data set {path} in a large file")
        return StoredFrames(self.path, path, storage=storage, held=self.file.buf if self.held else None, **kw)


class _H5py(_Tree):
    """The tree read through h5py (any HDF5 layout); ``held``: whether frame sources read and
    hold their data set's raw levels now, as long as the movie stays small (``movie.is_small``
    of all channels as float32)."""

    def __init__(self, path: str, f, held: bool):
        self.path, self.f, self.held, self.held_bytes = path, f, held, 0

    def attrs(self, path):
        return _h5py_attrs(self.f[path])

    def members(self, path):
        return list(self.f[path])

    def shape(self, path):
        return getattr(self.f[path], "shape", None)

    def values(self, path):
        return self.f[path][()]

    def frames(self, path, **kw):
        data, held = self.f[path], None
        if self.held and is_small(self.held_bytes + 4 * data.size):
            held, self.held_bytes = data[()], self.held_bytes + 4 * data.size
        return H5pyFrames(self.path, path, held=held, **kw)


def _h5py_attrs(obj) -> dict:
    """The h5py object's attributes as a dict; a one-element array as its value (as .hdf5)."""
    out = {}
    for key in obj.attrs:
        try:
            value = obj.attrs[key]
        except (OSError, TypeError, ValueError, KeyError):  # unreadable types (dangling references ...)
            value = "<unreadable>"
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.reshape(-1)[0]
        out[key] = value
    return out


def read_tree(path: str | Path, fn, hold: bool = True):
    """``fn(tree)`` on the file's tree: parsed by :mod:`.hdf5` if it can, else through h5py.

    ``hold``: a small file (``movie.is_small``) is read whole and its bytes held by the frame
    sources; else the file is mapped while ``fn`` runs. The parser's failures (a layout it
    does not read, or a corrupt structure) send the file to h5py, whose verdict counts; a
    :class:`ReaderError` from ``fn`` is final."""
    path = Path(path)
    size = 0
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            if hold and is_small(size):
                return fn(_Parsed(str(path), fh.read(), held=True))
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return fn(_Parsed(str(path), buf, held=False))
    except ReaderError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py decides: it reads more layouts and names the problem
        log.debug("%s: read through h5py (%s: %s)", path, type(exc).__name__, exc)
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ReaderError(path, f"not a readable HDF5 file (truncated or corrupt: {exc})") from None
    with f:
        return fn(_H5py(str(path), f, held=hold and is_small(size)))


def _measurements(tree: _Tree) -> list[str]:
    return sorted(k for k in tree.members("/") if k.startswith("Measurement_") and tree.shape(k) is None)


def _is_jpk(tree: _Tree) -> bool:
    info = tree.attrs("/").get("file-format-info")
    if info is not None and _text(info).strip().upper().startswith("JPK"):
        return True
    for name in _measurements(tree):
        attrs = tree.attrs(name)
        if "position-pattern.grid.ilength" in attrs and (
            "jpkspm_version" in attrs or "description.source-software" in attrs
        ):
            return True
    return False


def sniff(path: Path, head: bytes) -> bool:
    """HDF5 magic, then (only then) a look at the root attributes for ``file-format-info =
    "JPK ..."`` (JPK's scan attributes on a measurement group will do too)."""
    if hdf5.superblock_at(head) < 0:
        return False
    try:
        return read_tree(path, _is_jpk, hold=False)
    except Exception:  # noqa: BLE001 - a sniffer must never raise
        return False


# --------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------


class JpkFrames(FrameSource):
    """Array-like ``(t, y, x)`` float32 view of one channel data set, converted on demand.

    ``dataset``: its path in the file; ``frames_last``: stored ``(pixels, frames)`` (else
    ``(frames, pixels)``; a 1-D data set is one frame); values = ``raw * mult + offset``,
    rows flipped if ``flip``. Subclasses read raw frames with :meth:`raw`.
    """

    def __init__(
        self, path: str, dataset: str, *, frames_last: bool, shape, mult: float, offset: float, flip: bool
    ):
        super().__init__(path, shape)
        self.dataset = dataset
        self.frames_last = frames_last
        self.mult = mult
        self.offset = offset
        self.flip = flip

    def raw(self, start: int, stop: int) -> np.ndarray:
        """Raw frames ``start:stop`` as ``(n, pixels)``, in the file's type."""
        raise NotImplementedError

    def frames(self, start: int, stop: int) -> np.ndarray:
        _, ny, nx = self.shape
        if stop <= start:
            return np.empty((0, ny, nx), np.float32)
        raw = self.raw(start, stop).reshape(-1, ny, nx)
        if self.flip:
            raw = raw[:, ::-1, :]
        out = np.empty(raw.shape, np.float32)  # computed in float64, stored as float32
        np.multiply(raw, self.mult, out=out, dtype=np.float64, casting="unsafe")
        if self.offset:
            out += np.float32(self.offset)
        return out


class StoredFrames(JpkFrames):
    """Frames read through the data set's :class:`.hdf5.Storage`: from ``held`` (the whole
    file's bytes, a small file) or else from the file, opened for each call."""

    def __init__(self, path: str, dataset: str, *, storage: hdf5.Storage, held: bytes | None = None, **kw):
        super().__init__(path, dataset, **kw)
        self.storage = storage
        self.held = held

    def raw(self, start, stop):
        storage, npix = self.storage, self.shape[1] * self.shape[2]
        # the frames as rows of a new array; a (pixels, frames) data set is read into its transpose
        if len(storage.shape) == 1:
            box, out = ((0, npix),), np.empty((1, npix), storage.dtype)
            into = out[0]
        elif self.frames_last:
            box, out = ((0, npix), (start, stop)), np.empty((stop - start, npix), storage.dtype)
            into = out.T
        else:
            box, out = ((start, stop), (0, npix)), np.empty((stop - start, npix), storage.dtype)
            into = out
        try:
            if self.held is not None:
                view = memoryview(self.held)
                storage.read(lambda offset, size: view[offset : offset + size], box, into)
            else:
                with open(self.path, "rb") as fh:

                    def get(offset: int, size: int) -> bytes:
                        fh.seek(offset)
                        return fh.read(size)

                    storage.read(get, box, into)
        except (OSError, hdf5.Corrupt, ValueError) as exc:
            raise ReaderError(
                self.path, f"cannot read frames {start}..{stop - 1} of {self.dataset} ({exc})"
            ) from None
        return out


class H5pyFrames(JpkFrames):
    """Frames read through h5py: from ``held`` (the data set's raw levels, read when a small
    file was opened) or else from the file, opened for each call."""

    def __init__(self, path: str, dataset: str, *, held: np.ndarray | None = None, **kw):
        super().__init__(path, dataset, **kw)
        self.held = held

    def raw(self, start, stop):
        if self.held is not None:
            return self.select(self.held, start, stop)
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                return self.select(f[self.dataset], start, stop)
        except (OSError, KeyError, ValueError) as exc:
            raise ReaderError(
                self.path, f"cannot read frames {start}..{stop - 1} of {self.dataset} ({exc})"
            ) from None

    def select(self, data, start: int, stop: int) -> np.ndarray:
        """Raw frames ``start:stop`` as ``(n, pixels)`` from the data set (h5py or held levels)."""
        if data.ndim == 1:
            return data[()][None, :]
        return data[:, start:stop].T if self.frames_last else data[start:stop, :]


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


def _frame_time(tree: _Tree, mname: str, attrs: dict, ny: int) -> tuple[float | None, str]:
    try:
        shape = tree.shape(f"{mname}/meta-data/start-times")
    except KeyError:
        shape = None
    if shape and 2 <= int(np.prod(shape)) <= 10**7:
        try:
            starts = np.asarray(tree.values(f"{mname}/meta-data/start-times"), dtype=np.float64).reshape(-1)
            steps = np.diff(starts)
            if steps.size and np.all(np.isfinite(steps)) and np.all(steps > 0):
                return float(steps.mean()) / 1000.0, "mean interval of meta-data/start-times (ms)"
        except (OSError, ValueError, TypeError):
            pass
    rate = _number(attrs, "timing-settings.scanRate")
    if rate and np.isfinite(rate) and rate > 0:
        return ny / rate, "lines / timing-settings.scanRate"
    return None, "unknown"


def _channel_dataset(tree: _Tree, cpath: str, npix: int) -> tuple[str, bool, int] | None:
    """(name, frames_last, frames) of the channel's data set (not the thumbnail), or None."""
    for key in tree.members(cpath):
        if key.lower() == "thumbnail" or (shape := tree.shape(f"{cpath}/{key}")) is None:
            continue
        if len(shape) == 2 and shape[0] == npix:
            return key, True, shape[1]
        if len(shape) == 2 and shape[1] == npix:
            return key, False, shape[0]
        if len(shape) == 1 and shape[0] == npix:
            return key, True, 1
    return None


def _grid(path: Path, mname: str, attrs: dict) -> dict:
    """Pixels, pixel size, offset and row flip of a measurement's image grid."""
    nx = _number(attrs, "position-pattern.grid.ilength")
    ny = _number(attrs, "position-pattern.grid.jlength")
    if nx is None or ny is None:
        raise ReaderError(path, f"{mname} has no image grid (not an image movie: force map or spectroscopy?)")
    if not (np.isfinite(nx) and np.isfinite(ny)) or nx != int(nx) or ny != int(ny):
        raise ReaderError(path, f"{mname}: invalid grid size {nx!r} x {ny!r}")
    nx, ny = int(nx), int(ny)
    check_shape(path, (ny, nx), "frame")
    ulen = _number(attrs, "position-pattern.grid.ulength")
    vlen = _number(attrs, "position-pattern.grid.vlength")
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
    return {"nx": nx, "ny": ny, "pixel_size": pixel_size, "xy_unit": xy_unit, "offset": offset, "flip": flip}


def _scan(path: Path, tree: _Tree) -> Scan:
    if not _is_jpk(tree):
        raise ReaderError(path, "HDF5 file without JPK scan attributes (not a JPK high-speed movie)")
    stat = path.stat()
    base = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"
    header = {"root": jsonable(tree.attrs("/"))}
    channels = []
    for mname in _measurements(tree):
        attrs = tree.attrs(mname)
        grid = _grid(path, mname, attrs)
        ny, nx = grid["ny"], grid["nx"]
        frame_time_s, timing = _frame_time(tree, mname, attrs, ny)
        header[mname] = jsonable(attrs)
        header[mname]["frame_time_rule"] = timing
        names = (
            k for k in tree.members(mname) if k.startswith("Channel_") and tree.shape(f"{mname}/{k}") is None
        )
        for cname in sorted(names, key=lambda k: (len(k), k)):
            cpath = f"{mname}/{cname}"
            found = _channel_dataset(tree, cpath, nx * ny)
            if found is None:
                continue  # no image data set of this grid's size
            dname, frames_last, nframes = found
            if nframes <= 0:
                raise ReaderError(path, f"{cpath} holds no frame")
            if nframes > stat.st_size:  # every frame takes at least a byte of the file
                raise ReaderError(path, f"{cpath} declares {nframes} frames, more than the file could hold")
            cattrs = tree.attrs(cpath)
            title = (
                _text(cattrs.get("channel.fancy-name", b""))
                or _text(cattrs.get("channel.name", b""))
                or dname
            )
            mult, off, zunit_file, which = _scaling(cattrs)
            factor, z_unit = value_scale(zunit_file)
            dpath = f"{cpath}/{dname}"
            dattrs = tree.attrs(dpath)
            source = tree.frames(
                dpath,
                frames_last=frames_last,
                shape=(nframes, ny, nx),
                mult=mult * factor,
                offset=off * factor,
                flip=grid["flip"],
            )
            chan_header = jsonable(cattrs)
            chan_header.update(
                {
                    "group": cpath,
                    "dataset": dpath,
                    "dataset_attrs": jsonable(dattrs),
                    "scaling_used": which,
                    "value_rule": f"raw * {mult!r} + {off!r} ({zunit_file or 'no unit'})",
                    "flipped_rows": grid["flip"],
                }
            )
            token = hashlib.sha1(f"{base}|{dpath}".encode()).hexdigest()[:16]
            channels.append(
                Channel(
                    data=lazy_movie(source, f"h5jpk-{token}"),
                    name=clean_name(title),
                    role=role_for(_text(cattrs.get("channel.name", b"")) or title, z_unit),
                    direction="retrace" if _flag(cattrs, "retrace") else "trace",
                    z_unit=z_unit,
                    pixel_size=grid["pixel_size"],
                    xy_unit=grid["xy_unit"],
                    offset=grid["offset"],
                    frame_time_s=frame_time_s,
                    header=chan_header,
                )
            )
    if not channels:
        raise ReaderError(path, "JPK HDF5 file holds no image channel")
    return Scan(path=str(path), format=FORMAT, channels=channels, header=header)  # JSON-ready: built so


def read(path: Path) -> Scan:
    path = Path(path)
    return read_tree(path, lambda tree: _scan(path, tree))
