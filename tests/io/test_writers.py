"""Writers (.gsf, .gwy, .tif): round trips through our reader, real samples, bad input, atomicity."""

from __future__ import annotations

import errno
import json

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile

import napari_scanprobe.atomic as atomic
from napari_scanprobe import Channel, read
from napari_scanprobe.io import ReaderError, find_format, gsf, gwy, scanprobe_tif, tif_write
from napari_scanprobe.io.write import write

PROCESSING = [
    {"step": "flatten", "method": "rows", "options": {"order": 1}, "version": "0.1.0"},
    {"step": "denoise", "method": "nl_means", "options": {"h": 2.0, "shape": [3, 3]}, "version": "0.1.0"},
]


def height(ny: int = 6, nx: int = 9, seed: int = 0) -> Channel:
    """A nm height image with non-square pixels, an offset, a direction and metadata."""
    rng = np.random.default_rng(seed)
    data = (rng.normal(0.0, 3.0, (ny, nx)) + np.linspace(-20, 40, nx)).astype(np.float32)
    return Channel(
        data=data,
        name="Height",
        direction="retrace",
        z_unit="nm",
        pixel_size=(7.8125, 3.90625 * 1.1),
        xy_unit="nm",
        offset=(-250.0, 1234.5),
        header={
            "processing": PROCESSING,
            "Title": "clashes with a GSF key",
            "operator": "Anna Ø",
            "note": "two\nlines",
        },
    )


def voltage(ny: int = 5, nx: int = 4) -> Channel:
    """A channel whose values need no unit conversion, without lateral unit."""
    data = (np.arange(ny * nx, dtype=np.float32).reshape(ny, nx) - 7.25) / np.float32(3)
    return Channel(data=data, name="Bias", z_unit="V", pixel_size=(0.5, 0.25), xy_unit="", offset=(2.0, -1.0))


def read_one(path):
    scan = read(path)
    assert len(scan.channels) == 1
    return scan.channels[0]


def assert_same_frame(got: Channel, want: Channel) -> None:
    assert got.data.shape == want.data.shape
    assert got.pixel_size == pytest.approx(want.pixel_size, rel=1e-12)
    assert got.offset == pytest.approx(want.offset, rel=1e-12, abs=1e-12)
    assert (got.xy_unit, got.z_unit) == (want.xy_unit, want.z_unit)
    assert (got.name, got.direction, got.title) == (want.name, want.direction, want.title)


def assert_header_as_text(got: dict, want: dict) -> None:
    """Gwyddion metadata are strings: text as written, every other value as JSON text."""
    assert set(got) == set(want)
    for key, value in want.items():
        assert isinstance(got[key], str), key
        assert (got[key] if isinstance(value, str) else json.loads(got[key])) == value, key


# --------------------------------------------------------------------------------------
# Round trips through our reader
# --------------------------------------------------------------------------------------


def test_gsf_round_trip(tmp_path):
    want = height()
    path = write(tmp_path / "h.gsf", want)
    assert path == tmp_path / "h.gsf" and find_format(path) is gsf
    got = read_one(path)
    assert_same_frame(got, want)
    # GSF stores float32 metres: a nm value comes back within one float32 step
    np.testing.assert_array_max_ulp(got.data.astype(np.float32), want.data, maxulp=1)
    assert json.loads(got.header["processing"]) == PROCESSING
    assert got.header["Meta Title"] == "clashes with a GSF key"
    assert got.header["operator"] == "Anna Ø"
    assert json.loads(got.header["note"]) == "two\nlines"


def test_gsf_unscaled_values_are_exact(tmp_path):
    want = voltage()
    got = read_one(write(tmp_path / "v.gsf", want))
    assert_same_frame(got, want)
    np.testing.assert_array_equal(got.data.astype(np.float32), want.data)
    assert got.data.astype(np.float32).tobytes() == want.data.tobytes()


def test_gsf_header_layout(tmp_path):
    """Base SI units, lengths in metres, the data on a 4-byte boundary after 1..4 NULs."""
    ch = height(3, 5)
    raw = write(tmp_path / "h.gsf", ch).read_bytes()
    nul = raw.index(b"\0")
    header = gsf.parse_header(raw[len(gsf.MAGIC) : nul].decode("utf-8"))
    assert header["XYUnits"] == "m" and header["ZUnits"] == "m"
    assert float(header["XReal"]) == pytest.approx(ch.pixel_size[1] * 5 * 1e-9, rel=1e-15)
    assert float(header["YOffset"]) == pytest.approx(-250e-9, rel=1e-15)
    assert header["Title"] == "Height (retrace)"
    data_start = len(raw) - 3 * 5 * 4
    assert data_start % 4 == 0 and 1 <= data_start - nul <= 4
    assert raw[nul:data_start] == b"\0" * (data_start - nul)
    stored = np.frombuffer(raw, "<f4", offset=data_start).reshape(3, 5)
    np.testing.assert_allclose(stored, ch.data * 1e-9, rtol=2**-23)


def test_gwy_round_trip_several_channels(tmp_path):
    channels = [height(), voltage(6, 9), height(6, 9, seed=3)]
    channels[2].name, channels[2].direction, channels[2].header = "Height | CAM infected", None, {}
    path = write(tmp_path / "several.gwy", channels)
    assert find_format(path) is gwy
    scan = read(path)
    assert len(scan.channels) == 3
    for got, want in zip(scan.channels, channels):
        assert_same_frame(got, want)
        assert got.data.dtype == np.float64
        np.testing.assert_allclose(got.data, want.data, rtol=1e-12, atol=0)
    assert_header_as_text(scan.channels[0].header, height().header)
    assert scan.channels[2].header == {}


def test_gwy_float64_values_kept(tmp_path):
    ch = height()
    ch.data = ch.data.astype(np.float64) + 1e-6  # not representable in float32
    got = read_one(write(tmp_path / "h.gwy", ch))
    np.testing.assert_allclose(got.data, ch.data, rtol=1e-12, atol=0)


def test_tif_round_trip(tmp_path):
    want = height()
    path = write(tmp_path / "h.tif", want)
    assert find_format(path) is scanprobe_tif
    got = read_one(path)
    assert_same_frame(got, want)
    assert got.pixel_size == want.pixel_size and got.offset == want.offset  # JSON: exact
    assert got.data.dtype == np.float32
    np.testing.assert_array_equal(got.data, want.data)
    assert got.header == want.header
    assert got.frame_time_s is None


def test_tif_without_lateral_unit(tmp_path):
    want = voltage()
    path = write(tmp_path / "v.tiff", want)
    got = read_one(path)
    assert_same_frame(got, want)
    np.testing.assert_array_equal(got.data, want.data)
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        assert tags["ResolutionUnit"].value == 1  # none
        x, y = tags["XResolution"].value, tags["YResolution"].value
    assert x[0] / x[1] == pytest.approx(1 / 0.25) and y[0] / y[1] == pytest.approx(1 / 0.5)


def test_tif_tags_for_other_readers(tmp_path):
    """Plain TIFF readers get the pixel size in pixels per cm, and tifffile's own series work."""
    ch = height()
    ch.header["shape"] = [1, 2, 3]  # "shape": in a description means tifffile metadata to tifffile
    path = write(tmp_path / "h.tif", ch)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.dtype == np.float32 and page.shape == ch.data.shape
        assert page.tags["ResolutionUnit"].value == 3  # centimetre
        x, y = page.tags["XResolution"].value, page.tags["YResolution"].value
        assert x[0] / x[1] == pytest.approx(1e7 / ch.pixel_size[1], rel=1e-9)
        assert y[0] / y[1] == pytest.approx(1e7 / ch.pixel_size[0], rel=1e-9)
        assert page.description.startswith('{"napari_scanprobe"')
        assert page.description.isascii()
        assert tif.series[0].shape == ch.data.shape
        np.testing.assert_array_equal(tif.series[0].asarray(), ch.data)
    info = json.loads(page.description)["napari_scanprobe"]
    assert info["metadata"]["shape"] == [1, 2, 3]
    assert (info["name"], info["z_unit"], info["xy_unit"]) == ("Height", "nm", "nm")
    assert info["pixel_size"] == list(ch.pixel_size) and info["offset"] == list(ch.offset)
    assert read_one(path).header == ch.header


def test_tif_resolution_out_of_rational_range(tmp_path):
    ch = voltage()
    ch.xy_unit, ch.pixel_size = "nm", (1e-4, 1e-4)  # 1e11 pixels per cm: no TIFF rational holds it
    path = write(tmp_path / "tiny.tif", ch)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].tags["ResolutionUnit"].value == 1
    assert read_one(path).pixel_size == (1e-4, 1e-4)


def test_tif_movie_from_numpy(tmp_path):
    frames = np.random.default_rng(4).normal(size=(5, 8, 6)).astype(np.float32)
    want = Channel(frames, "Height", None, "nm", (2.0, 2.5), "nm", (1.0, 3.0), 0.125, header={"kind": "TP"})
    path = write(tmp_path / "movie.tif", want)
    got = read_one(path)
    assert isinstance(got.data, da.Array) and got.data.chunks[0] == (1,) * 5  # lazy, one frame per chunk
    assert got.is_movie and got.frame_time_s == 0.125
    assert_same_frame(got, want)
    np.testing.assert_array_equal(got.data[3].compute(), frames[3])
    np.testing.assert_array_equal(got.data.compute(), frames)
    assert got.header == {"kind": "TP"}


def test_tif_movie_from_lazy_movie_sample(sample, tmp_path):
    want = read(sample("hsafm_asd/202110200146.asd")).channels[1]
    assert isinstance(want.data, da.Array)
    got = read_one(write(tmp_path / "phase.tif", want))
    assert_same_frame(got, want)
    assert got.frame_time_s == want.frame_time_s
    np.testing.assert_array_equal(got.data.compute(), want.data.compute())
    assert got.header == want.header


def test_non_finite_values_kept(tmp_path):
    ch = voltage()
    ch.data = ch.data.copy()
    ch.data[0, 0], ch.data[1, 1], ch.data[2, 2] = np.nan, np.inf, -np.inf
    for ext in (".gsf", ".gwy", ".tif"):
        got = read_one(write(tmp_path / f"nan{ext}", ch))
        assert np.isnan(got.data[0, 0]) and got.data[1, 1] == np.inf and got.data[2, 2] == -np.inf, ext
        np.testing.assert_array_equal(got.data[np.isfinite(got.data)], ch.data[np.isfinite(ch.data)])


def test_scan_and_list_accepted(tmp_path):
    scan = read(write(tmp_path / "a.gwy", [height(), voltage()]))
    again = read(write(tmp_path / "b.gwy", scan))
    assert [c.title for c in again.channels] == [c.title for c in scan.channels]


# --------------------------------------------------------------------------------------
# Real sample files: read -> write -> read back equal
# --------------------------------------------------------------------------------------


def test_sxm_sample_to_every_format(sample, tmp_path):
    scan = read(sample("nanonis_sxm/test.sxm"))
    assert len(scan.channels) == 4
    back = read(write(tmp_path / "test.gwy", scan))
    for got, want in zip(back.channels, scan.channels, strict=True):
        assert_same_frame(got, want)
        np.testing.assert_allclose(got.data, want.data, rtol=1e-12, atol=0)
        assert_header_as_text(got.header, want.header)
    for want in scan.channels[:3]:  # Z forward/backward (nm), Current (A)
        got = read_one(write(tmp_path / "one.gsf", want))
        assert_same_frame(got, want)
        np.testing.assert_allclose(got.data, want.data, rtol=2**-23, atol=0)
        got = read_one(write(tmp_path / "one.tif", want))
        assert_same_frame(got, want)
        np.testing.assert_array_equal(got.data, want.data.astype(np.float32))
        assert got.header == want.header


def test_gwy_sample_round_trip(sample, tmp_path):
    """A Gwyddion file with four channels and their metadata containers comes back identical."""
    scan = read(sample("gwyddion_gwy/PTO_110_Virgin0001.gwy"))
    back = read(write(tmp_path / "copy.gwy", scan))
    assert len(back.channels) == len(scan.channels) == 4
    for got, want in zip(back.channels, scan.channels):
        assert_same_frame(got, want)
        np.testing.assert_allclose(got.data, want.data, rtol=1e-12, atol=0)  # nm -> metres -> nm
        assert got.header == want.header  # string metadata, written back as the same strings


def test_unitless_gwy_sample_round_trip(sample, tmp_path):
    (want,) = read(sample("gwyddion_gwy/test.gwy")).channels
    assert want.xy_unit == "" and want.z_unit == ""
    for ext in (".gwy", ".gsf", ".tif"):
        got = read_one(write(tmp_path / f"test{ext}", want))
        assert_same_frame(got, want)
        np.testing.assert_allclose(got.data, want.data, rtol=1e-12 if ext == ".gwy" else 2**-24, atol=0)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


def test_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"\.png.*\.gsf, \.gwy, \.tif, \.tiff"):
        write(tmp_path / "h.png", height())
    with pytest.raises(ValueError, match="without extension"):
        write(tmp_path / "h", height())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", [".gsf", ".tif"])
def test_several_channels_to_single_channel_format(tmp_path, ext):
    with pytest.raises(ValueError, match="holds one channel, not 2.*gwy"):
        write(tmp_path / f"two{ext}", [height(), voltage()])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", [".gsf", ".gwy"])
def test_movie_to_image_format(tmp_path, ext):
    movie = Channel(np.zeros((3, 4, 5), np.float32), "Height", z_unit="nm", frame_time_s=1.0)
    with pytest.raises(ValueError, match="'Height' is a movie.*use .tif"):
        write(tmp_path / f"movie{ext}", movie)
    with pytest.raises(ValueError, match="2-D image"):  # the format writers check on their own too
        (gsf.write if ext == ".gsf" else gwy.write)(
            tmp_path / f"movie{ext}", movie if ext == ".gsf" else [movie]
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(data=np.zeros(5, np.float32)), "2-D image"),
        (dict(data=np.zeros((2, 3, 4, 5), np.float32)), "shape (2, 3, 4, 5)"),
        (dict(data=np.zeros((0, 5), np.float32)), "empty"),
        (dict(data=np.zeros((3, 3), np.complex64)), "complex64"),
        (dict(data=np.array([["a", "b"]])), "only real numbers"),
        (dict(pixel_size=(0.0, 1.0)), "invalid pixel size"),
        (dict(pixel_size=(1.0, float("nan"))), "invalid pixel size"),
        (dict(offset=(float("inf"), 0.0)), "invalid offset"),
    ],
)
@pytest.mark.parametrize("ext", [".gsf", ".gwy", ".tif"])
def test_bad_channel(tmp_path, ext, change, words):
    ch = voltage()
    for key, value in change.items():
        setattr(ch, key, value)
    target = tmp_path / f"bad{ext}"
    with pytest.raises(ValueError) as info:
        write(target, ch)
    assert str(target) in str(info.value) and words in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_nothing_to_write(tmp_path):
    with pytest.raises(ValueError, match="nothing to write"):
        write(tmp_path / "none.gwy", [])
    with pytest.raises(ValueError, match="expected Channel"):
        write(tmp_path / "none.gwy", [np.zeros((3, 3))])


def test_no_overwrite(tmp_path):
    target = tmp_path / "h.gsf"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="already exists"):
        write(target, height(), overwrite=False)
    assert target.read_bytes() == b"keep me"
    write(target, height())  # the default replaces it
    assert read_one(target).name == "Height"


# --------------------------------------------------------------------------------------
# Write failures: one clear error, nothing half-written, an existing file untouched
# --------------------------------------------------------------------------------------

FORMATS = [".gsf", ".gwy", ".tif"]


@pytest.mark.parametrize("ext", FORMATS)
def test_missing_folder(tmp_path, ext):
    target = tmp_path / "no" / "such" / f"h{ext}"
    with pytest.raises(OSError) as info:
        write(target, height())
    assert str(target) in str(info.value) and "does not exist" in str(info.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ext", FORMATS)
def test_read_only_folder(tmp_path, ext, monkeypatch):
    """CI runs as root, where chmod does not forbid anything: the folder refuses the temp file instead."""

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    target = tmp_path / f"h{ext}"
    with pytest.raises(PermissionError) as info:
        write(target, height())
    assert str(info.value).count(str(target)) == 1 and "Permission denied" in str(info.value)
    assert info.value.errno == errno.EACCES
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("ext", FORMATS)
def test_full_disk(tmp_path, ext, existing, monkeypatch):
    """The disk fills up once the data are written: no temp file, no target, an old file unchanged."""
    target = tmp_path / f"h{ext}"
    if existing:
        write(target, voltage())
        before = target.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError) as info:
        write(target, height())
    assert info.value.errno == errno.ENOSPC
    assert str(target) in str(info.value) and "No space left on device" in str(info.value)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ([target.name] if existing else [])
    if existing:
        assert target.read_bytes() == before


def test_interrupted_tif_movie_write_leaves_nothing(tmp_path):
    """A lazy movie whose frames fail half-way (a file gone, Ctrl-C): the partial TIFF is removed."""

    def frame(t):
        if t == 3:
            raise KeyboardInterrupt
        return np.full((1, 4, 5), t, np.float32)

    frames = da.concatenate(
        [da.from_delayed(dask.delayed(frame)(t), (1, 4, 5), np.float32) for t in range(6)]
    )
    movie = Channel(frames, "Height", z_unit="nm", frame_time_s=1.0)
    target = tmp_path / "movie.tif"
    with pytest.raises(KeyboardInterrupt):
        write(target, movie)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# The reader of our TIFFs: sniffing and corrupt files
# --------------------------------------------------------------------------------------


def test_sniffer_claims_only_our_tiffs(samples_dir, tmp_path):
    ours = write(tmp_path / "ours.tif", height())
    head = ours.read_bytes()[:4096]
    assert scanprobe_tif.sniff(ours, head)
    assert scanprobe_tif.sniff(ours, head[:40])  # the description lies beyond head: read from the file
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((4, 4), np.float32), description='{"napari": 1}', metadata=None)
    tifffile.imwrite(tmp_path / "bare.tif", np.zeros((4, 4), np.float32))
    vendor_tiffs = sorted((samples_dir / "park_tiff").iterdir()) + sorted((samples_dir / "jpk").glob("*.jpk"))
    assert vendor_tiffs
    for path in (plain, tmp_path / "bare.tif", *vendor_tiffs):
        assert not scanprobe_tif.sniff(path, path.read_bytes()[:4096]), path.name
    assert find_format(plain) is None


def test_bigtiff_and_big_endian_sniffed(tmp_path):
    info = tif_write.description(height())
    for name, options in (("big.tif", dict(bigtiff=True)), ("motorola.tif", dict(byteorder=">"))):
        path = tmp_path / name
        with tifffile.TiffWriter(path, **options) as tif:
            tif.write(height().data, description=info, metadata=None)
        assert find_format(path) is scanprobe_tif, name
        np.testing.assert_array_equal(read_one(path).data, height().data)


def test_corrupt_description(tmp_path):
    path = tmp_path / "broken.tif"
    tifffile.imwrite(
        path, np.zeros((4, 4), np.float32), description='{"napari_scanprobe": nope', metadata=None
    )
    assert find_format(path) is scanprobe_tif
    with pytest.raises(ReaderError, match="not valid napari-scanprobe JSON") as info:
        read(path)
    assert "broken.tif" in str(info.value)
    bad = '{"napari_scanprobe": {"pixel_size": [0, 1]}}'
    tifffile.imwrite(path, np.zeros((4, 4), np.float32), description=bad, metadata=None)
    with pytest.raises(ReaderError, match="invalid pixel_size"):
        read(path)


@pytest.mark.parametrize("shape", [(4, 30, 30), (30, 30)])
def test_truncated_tif(tmp_path, shape, caplog):
    """Cut anywhere: a ReaderError naming the file, or (only when the pixels survive) the same data."""
    frames = np.random.default_rng(5).normal(size=shape).astype(np.float32)
    path = write(
        tmp_path / "scan.tif", Channel(frames, "Height", frame_time_s=1.0 if len(shape) == 3 else None)
    )
    raw = path.read_bytes()
    declined = 0
    for keep in range(8, len(raw), 211):
        cut = tmp_path / f"cut{keep}.tif"
        cut.write_bytes(raw[:keep])
        try:
            data = np.asarray(read(cut).channels[0].data)  # a movie's frames are read here, lazily
        except ReaderError as exc:
            assert cut.name in str(exc)
            declined += 1
        else:
            np.testing.assert_array_equal(data, frames, err_msg=f"cut to {keep} of {len(raw)} bytes")
    assert declined >= len(range(8, len(raw) - 64, 211))


def test_saved_files_get_the_usual_permissions(tmp_path):
    import os

    from napari_scanprobe.atomic import _UMASK, atomic_write

    path = atomic_write(tmp_path / "x.bin", b"data")
    assert path.read_bytes() == b"data"
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_UMASK
