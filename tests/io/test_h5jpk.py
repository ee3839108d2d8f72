"""JPK high-speed movies in HDF5 (``.h5-jpk``): against AFMReader (ground_truth.json), the
file's own layout read with h5py, laziness, sniffing and bad input."""

from __future__ import annotations

import json
import pickle
import shutil

import h5py
import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, find_format, h5jpk, hdf5, read
from napari_scanprobe.io import movie as movie_module
from tests.io.helpers import declined

SAMPLE = "jpk/sample_0.h5-jpk"


def _close(actual, expected, span, what):
    tol = 1e-4 * span if span > 0 else 1e-4 * abs(expected) + 1e-12
    assert abs(float(actual) - float(expected)) <= tol, f"{what}: {actual!r} != {expected!r} (tol {tol:g})"


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.fixture(scope="module")
def scan(samples_dir):
    path = samples_dir / SAMPLE
    if not path.is_file():
        pytest.fail(f"sample file {SAMPLE} is missing")
    return read(path)


# --------------------------------------------------------------------------------------
# Against AFMReader
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["height_trace", "height_retrace"])
def test_matches_afmreader(scan, ground_truth, which):
    import dask.array as da

    ref = next(c for c in ground_truth[SAMPLE]["channels"] if f"'{which}'" in c["call"])
    direction = which.split("_")[1]
    ch = next(c for c in scan.channels if c.name == "Height" and c.direction == direction)
    assert isinstance(ch.data, da.Array) and ch.data.dtype == np.float32
    assert ch.data.shape == tuple(ref["shape"])
    assert ch.z_unit == "nm" and ch.xy_unit == "nm"
    _close(ch.pixel_size[1], ref["pixel_to_nm"], 0, "dx")
    _close(ch.pixel_size[0], ref["pixel_to_nm"], 0, "dy")
    data = np.asarray(ch.data, dtype=np.float64)
    span = ref["max"] - ref["min"]
    _close(data.min(), ref["min"], span, "min")
    _close(data.max(), ref["max"], span, "max")
    _close(data.mean(), ref["mean"], span, "mean")
    frame = data[0]  # AFMReader's corners/edges are those of frame 0, after its flip
    for name, value, want in zip(
        ("TL", "TR", "BL", "BR"),
        (frame[0, 0], frame[0, -1], frame[-1, 0], frame[-1, -1]),
        ref["corners_TL_TR_BL_BR"],
    ):
        _close(value, want, span, f"corner {name}")
    _close(frame[0].mean(), ref["row0_mean"], span, "row 0 mean")
    _close(frame[:, 0].mean(), ref["col0_mean"], span, "column 0 mean")


# --------------------------------------------------------------------------------------
# Against the file's own layout
# --------------------------------------------------------------------------------------


def test_every_channel_in_file_order(scan, sample):
    with h5py.File(sample(SAMPLE), "r") as f:
        group = f["Measurement_000"]
        expected = []
        for key in sorted(k for k in group if k.startswith("Channel_")):
            attrs = group[key].attrs
            retrace = _text(attrs["retrace"]).lower() == "true"
            expected.append((_text(attrs["channel.fancy-name"]), "retrace" if retrace else "trace"))
    assert [(c.name, c.direction) for c in scan.channels] == expected
    titles = {c.title for c in scan.channels}
    assert {"Height (trace)", "Height (retrace)", "Height (measured) (trace)"} <= titles


def test_units_scaling_and_orientation(scan, sample):
    units = {c.name: c.z_unit for c in scan.channels}
    assert units["Height"] == "nm" and units["Error Signal"] == "nm" and units["Lock-In Amplitude"] == "nm"
    assert units["Lock-In Phase"] == "deg"
    with h5py.File(sample(SAMPLE), "r") as f:
        group = f["Measurement_000"]
        ny = int(group.attrs["position-pattern.grid.jlength"])
        positions = group["Position_Values"][()]
        chan = group["Channel_001"]  # Height (trace)
        raw = chan["Height"][:, 1]  # frame 1, stored pixel by pixel
        mult = chan.attrs["net-encoder.scaling.multiplier"]
        off = chan.attrs["net-encoder.scaling.offset"]
    # stored rows go up in y: the first stored pixel is the bottom-left one
    assert positions[-1, 1] > positions[0, 1]
    ch = scan.channels[1]
    assert (ch.name, ch.direction) == ("Height", "trace")
    frame = np.asarray(ch.data[1], dtype=np.float64)
    span = float(np.ptp(frame))
    _close(frame[-1, 0], (raw[0] * mult + off) * 1e9, span, "bottom-left = first stored pixel")
    _close(
        frame[0, 0],
        (raw[(ny - 1) * frame.shape[1]] * mult + off) * 1e9,
        span,
        "top-left = first pixel of last row",
    )
    np.testing.assert_allclose(frame[::-1].ravel(), (raw * mult + off) * 1e9, rtol=1e-6)


def test_geometry_and_timing(scan, sample):
    with h5py.File(sample(SAMPLE), "r") as f:
        attrs = f["Measurement_000"].attrs
        starts = f["Measurement_000/meta-data/start-times"][()].ravel()
        u, v = attrs["position-pattern.grid.ulength"], attrs["position-pattern.grid.vlength"]
        xc, yc = attrs["position-pattern.grid.xcenter"], attrs["position-pattern.grid.ycenter"]
    for ch in scan.channels:
        assert ch.pixel_size == pytest.approx((v * 1e9 / ch.data.shape[1], u * 1e9 / ch.data.shape[2]))
        assert ch.offset == pytest.approx(((yc - v / 2) * 1e9, (xc - u / 2) * 1e9))
        assert ch.frame_time_s == pytest.approx(np.diff(starts).mean() / 1000.0)


def test_header_is_json(scan):
    text = json.dumps(scan.header)
    assert "JPK SCAN" in text
    assert scan.header["Measurement_000"]["position-pattern.grid.ilength"] == 128
    for ch in scan.channels:
        json.dumps(ch.header)
        assert ch.header["dataset"].startswith("Measurement_000/Channel_")


def _same_value(got, value, key):
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, h5py.Reference):
        assert got == "<HDF5 object reference>", key
    elif isinstance(value, (bytes, np.bytes_)):
        assert got == value.decode("utf-8", "replace").replace("\x00", ""), key
    elif np.isnan(value):
        assert got == "nan", key
    else:
        assert got == pytest.approx(float(value)), key


def test_header_holds_every_attribute(scan, sample):
    """Measurement groups and channel groups: every attribute, with h5py's values; the
    channel's data set attributes too."""
    path = sample(SAMPLE)
    with h5py.File(path, "r") as f:
        group = f["Measurement_000"]
        expected = {k: group.attrs[k] for k in group.attrs}
        chan = {k: f["Measurement_000/Channel_001"].attrs[k] for k in f["Measurement_000/Channel_001"].attrs}
        data = {
            k: f["Measurement_000/Channel_001/Height"].attrs[k]
            for k in f["Measurement_000/Channel_001/Height"].attrs
        }
    header = scan.header["Measurement_000"]
    assert set(expected) <= set(header) and len(expected) > 300
    for key, value in expected.items():
        _same_value(header[key], value, key)
    height = scan.channels[1]
    assert height.header["group"] == "Measurement_000/Channel_001"
    assert set(chan) <= set(height.header) and len(chan) > 50
    for key, value in chan.items():
        _same_value(height.header[key], value, key)
    assert set(height.header["dataset_attrs"]) == set(data)
    for key, value in data.items():
        _same_value(height.header["dataset_attrs"][key], value, key)


def _through_h5py(monkeypatch):
    """Make the HDF5 parser refuse every file, so the reader goes through h5py."""

    def refuse(buf):
        raise hdf5.Unsupported("refused for the test")

    monkeypatch.setattr(hdf5, "File", refuse)


def test_parser_and_h5py_agree(scan, sample, monkeypatch):
    """The file parsed by io/hdf5.py (the fast path) and read through h5py (the fallback for
    other HDF5 layouts): the same channels, headers and values."""
    assert all(isinstance(ch.data.frame_source, h5jpk.StoredFrames) for ch in scan.channels)
    _through_h5py(monkeypatch)
    other = read(sample(SAMPLE))
    assert all(isinstance(ch.data.frame_source, h5jpk.H5pyFrames) for ch in other.channels)
    assert other.header == scan.header
    for a, b in zip(scan.channels, other.channels):
        assert a.facts() == b.facts() and a.header == b.header
        np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))


# --------------------------------------------------------------------------------------
# Laziness, handles, pickling
# --------------------------------------------------------------------------------------


def test_small_movie_is_held_in_memory(sample, tmp_path, monkeypatch):
    """Under movie.EAGER_BYTES every channel's raw levels are read when the file is opened (no
    file handle kept): frames (one per chunk) and np.asarray of the whole movie never touch the
    file again and give exactly what the lazy frame-by-frame path reads."""
    path = tmp_path / "movie.h5-jpk"
    shutil.copy(sample(SAMPLE), path)
    small = read(path)
    with h5py.File(path, "r+") as f:  # nothing holds the file open
        assert "Measurement_000" in f
    monkeypatch.setattr(movie_module, "EAGER_BYTES", 0)
    lazy = read(path)
    expected = [np.asarray(ch.data) for ch in lazy.channels]
    path.unlink()  # the small movie needs the file no more
    for ch, want in zip(small.channels, expected):
        assert ch.data.chunks[0] == (1,) * 4
        np.testing.assert_array_equal(np.asarray(ch.data), want)
        np.testing.assert_array_equal(np.asarray(ch.data[2]), want[2])
        np.testing.assert_array_equal(ch.data.compute(), want)  # through dask's scheduler
    whole = np.asarray(small.channels[1].data)
    whole[:] = 0.0  # a new array: the movie is unchanged
    np.testing.assert_array_equal(np.asarray(small.channels[1].data), expected[1])


def test_lazy_per_frame_and_no_leaked_handle(sample, tmp_path, monkeypatch):
    """A movie above movie.EAGER_BYTES: nothing read at opening, one frame read per frame shown."""
    monkeypatch.setattr(movie_module, "EAGER_BYTES", 0)
    path = tmp_path / "movie.h5-jpk"
    shutil.copy(sample(SAMPLE), path)
    calls = []
    original = h5jpk.JpkFrames.frames

    def counting(self, start, stop):
        calls.append((self.dataset, start, stop))
        return original(self, start, stop)

    monkeypatch.setattr(h5jpk.JpkFrames, "frames", counting)
    movie = read(path)
    assert calls == [] and movie.channels[1].data.frame_source.held is None
    frame = np.asarray(movie.channels[1].data[2])
    assert frame.shape == (128, 128)
    assert calls == [("Measurement_000/Channel_001/Height", 2, 3)]
    # no handle is left open: the file can be opened for writing in this process
    with h5py.File(path, "r+") as f:
        assert "Measurement_000" in f


def test_graph_is_picklable(scan):
    """Without the raw levels a small movie holds (the copy reads the file): a small pickle."""
    data = scan.channels[1].data
    blob = pickle.dumps(data)
    assert len(blob) < 50_000 < data.size
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(np.asarray(clone[3]), np.asarray(data[3]))


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


def test_recognised_by_content_under_any_name(sample, tmp_path):
    copy = tmp_path / "movie.h5"
    shutil.copy(sample(SAMPLE), copy)
    assert find_format(copy) is h5jpk
    assert len(read(copy).channels) == 9


def test_other_hdf5_files_are_not_claimed(tmp_path):
    plain = tmp_path / "plain.h5-jpk"
    with h5py.File(plain, "w") as f:
        f["data"] = np.arange(12.0).reshape(3, 4)
        f.attrs["file-format-info"] = "NOT JPK"
    lookalike = tmp_path / "lookalike.h5"
    with h5py.File(lookalike, "w") as f:  # USID-like but without any JPK attribute
        g = f.create_group("Measurement_000").create_group("Channel_000")
        g["Height"] = np.zeros((16, 2), np.int32)
    for path in (plain, lookalike):
        with open(path, "rb") as fh:
            assert not h5jpk.sniff(path, fh.read(4096))
        assert find_format(path) is not h5jpk
        with pytest.raises(ReaderError) as info:
            read(path)
        assert path.name in str(info.value)


def test_non_hdf5_files_are_not_claimed(samples_dir, tmp_path):
    fake = tmp_path / "fake.h5-jpk"
    fake.write_bytes(hdf5.MAGIC + bytes(range(256)) * 8)
    assert not h5jpk.sniff(fake, fake.read_bytes()[:4096])
    for path in samples_dir.rglob("*"):
        if path.is_file() and path.suffix != ".h5-jpk" and path.name != "ground_truth.json":
            with open(path, "rb") as fh:
                assert not h5jpk.sniff(path, fh.read(4096)), path.name


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [100, 4096, 200_000, 2_000_000, 2_244_000])
def test_truncated_sample(sample, tmp_path, cut):
    path = tmp_path / "cut.h5-jpk"
    path.write_bytes(sample(SAMPLE).read_bytes()[:cut])
    declined(path)


def _write_jpk(
    path, frames, *, ilength=None, jlength=None, frames_last=True, grid=True, libver=None, **storage
):
    t, ny, nx = frames.shape
    with h5py.File(path, "w", libver=libver) as f:
        f.attrs["file-format-info"] = np.bytes_(b"JPK SCAN")
        m = f.create_group("Measurement_000")
        if grid:
            m.attrs["position-pattern.grid.ilength"] = np.int32(ilength or nx)
            m.attrs["position-pattern.grid.jlength"] = np.int32(jlength or ny)
            m.attrs["position-pattern.grid.ulength"] = 2e-7
            m.attrs["position-pattern.grid.vlength"] = 1e-7
            m.attrs["position-pattern.grid.unit.unit"] = np.bytes_(b"m")
        m.attrs["timing-settings.scanRate"] = 50.0
        c = m.create_group("Channel_000")
        c.attrs["channel.name"] = np.bytes_(b"height")
        c.attrs["channel.fancy-name"] = np.bytes_(b"Height")
        c.attrs["retrace"] = np.bytes_(b"false")
        c.attrs["net-encoder.scaling.multiplier"] = 1e-12
        c.attrs["net-encoder.scaling.offset"] = 1e-6
        c.attrs["net-encoder.scaling.unit.unit"] = np.bytes_(b"m")
        flat = frames.reshape(t, ny * nx)
        c.create_dataset("Height", data=flat.T if frames_last else flat, **storage)


@pytest.mark.parametrize(
    "layout, via",
    [
        ({"frames_last": True}, h5jpk.StoredFrames),
        ({"frames_last": False}, h5jpk.StoredFrames),
        (
            {"frames_last": True, "chunks": (60, 1), "compression": "gzip", "shuffle": True},
            h5jpk.StoredFrames,
        ),
        ({"frames_last": False, "chunks": (2, 7), "compression": "gzip"}, h5jpk.StoredFrames),
        ({"frames_last": True, "libver": "latest"}, h5jpk.H5pyFrames),  # a layout io/hdf5.py leaves to h5py
        ({"frames_last": True, "chunks": (60, 1), "fletcher32": True}, h5jpk.H5pyFrames),
    ],
    ids=["pixels-frames", "frames-pixels", "jpk-chunks", "odd-chunks", "hdf5-latest", "checksummed"],
)
@pytest.mark.parametrize("small", [True, False], ids=["held", "on-demand"])
def test_synthetic_layouts(tmp_path, monkeypatch, layout, via, small):
    levels = np.random.default_rng(1).integers(-1000, 1000, size=(3, 6, 10)).astype(np.int32)
    path = tmp_path / "synthetic.h5-jpk"
    _write_jpk(path, levels, **layout)
    if not small:
        monkeypatch.setattr(movie_module, "EAGER_BYTES", 0)
    (ch,) = read(path).channels
    if via is h5jpk.StoredFrames and not small and "chunks" not in layout:
        via = h5jpk.H5pyFrames  # a contiguous data set of a large file: h5py reads a frame of it alone
    assert type(ch.data.frame_source) is via
    assert (ch.data.frame_source.held is not None) is small
    if small:
        path.unlink()  # a small movie needs its file no more, whichever way it was read
    assert (ch.name, ch.direction, ch.z_unit) == ("Height", "trace", "nm")
    assert ch.data.shape == (3, 6, 10)
    assert ch.pixel_size == pytest.approx((100 / 6, 200 / 10))
    assert ch.frame_time_s == pytest.approx(6 / 50.0)  # no start times: lines / line rate
    expected = (levels[:, ::-1, :] * 1e-12 + 1e-6) * 1e9
    np.testing.assert_allclose(np.asarray(ch.data), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ch.data[1:3]), expected[1:3], rtol=1e-6)


def test_corrupt_layouts(tmp_path):
    levels = np.zeros((2, 4, 4), np.int32)
    cases = {
        "absurd.h5-jpk": {"ilength": 1_000_000, "jlength": 1_000_000},
        "mismatch.h5-jpk": {"ilength": 5},
        "nogrid.h5-jpk": {"grid": False},
    }
    for name, kwargs in cases.items():
        path = tmp_path / name
        _write_jpk(path, levels, **kwargs)
        assert find_format(path) is h5jpk
        declined(path)


def test_absurd_frame_count_isdeclined(tmp_path):
    """A data set declaring a billion frames (never written): declined at once, no graph built."""
    path = tmp_path / "absurd_frames.h5-jpk"
    _write_jpk(path, np.zeros((1, 4, 4), np.int32))
    with h5py.File(path, "r+") as f:
        chan = f["Measurement_000/Channel_000"]
        del chan["Height"]
        chan.create_dataset("Height", shape=(16, 10**9), dtype="i4", chunks=(16, 1))
    assert declined(path, "frames").startswith("Measurement_000/Channel_000 declares 1000000000 frames")


@pytest.mark.parametrize("small", [True, False], ids=["held", "on-demand"])
def test_corrupt_chunk_is_a_clear_error_for_its_frame(sample, tmp_path, monkeypatch, small):
    """A damaged compressed chunk: the file opens (frames are inflated when asked for); that
    frame is one ReaderError naming the file, the other frames read."""
    data = bytearray(sample(SAMPLE).read_bytes())
    with h5py.File(sample(SAMPLE), "r") as f:
        info = f["Measurement_000/Channel_001/Height"].id.get_chunk_info(2)  # frame 2
    middle = info.byte_offset + info.size // 2
    data[middle : middle + 64] = bytes(64)
    path = tmp_path / "damaged.h5-jpk"
    path.write_bytes(bytes(data))
    if not small:
        monkeypatch.setattr(movie_module, "EAGER_BYTES", 0)
    movie = read(path).channels[1].data
    assert np.asarray(movie[1]).shape == (128, 128)
    with pytest.raises(ReaderError) as failure:
        np.asarray(movie[2])
    assert path.name in str(failure.value) and "frames 2..2" in failure.value.reason
