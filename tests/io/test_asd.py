"""High-speed AFM ``.asd`` movies: against AFMReader (ground_truth.json), synthetic files of
every header version, laziness, sniffing and bad input."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest

from napari_scanprobe.io import asd, find_format, read
from napari_scanprobe.io import movie as movie_module
from tests.io.helpers import claims, declined, found_by_content, noise, write_file
from tests.io.synth_asd import expected_values, write_asd

SAMPLES = ("hsafm_asd/202110200146.asd", "hsafm_asd/asd_sample_0.asd")
_CHANNEL_OF_CALL = {"TP": "Height", "ER": "Error", "PH": "Phase"}


def _close(actual, expected, span, what):
    tol = 1e-4 * span if span > 0 else 1e-4 * abs(expected) + 1e-12
    assert abs(float(actual) - float(expected)) <= tol, f"{what}: {actual!r} != {expected!r} (tol {tol:g})"


# --------------------------------------------------------------------------------------
# Real samples against AFMReader
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("relpath", SAMPLES)
def test_matches_afmreader(relpath, sample, ground_truth):
    import dask.array as da

    refs = ground_truth[relpath]["channels"]
    scan = read(sample(relpath))
    assert scan.format == "asd" and scan.path == str(sample(relpath))
    assert len(scan.channels) == len(refs)
    for ch, ref in zip(scan.channels, refs):
        kind = ref["call"].split("channel='")[1][:2]
        label = f"{relpath} [{kind}]"
        assert ch.name == _CHANNEL_OF_CALL[kind], label
        assert ch.direction is None
        assert ch.header["kind"] == kind
        assert ch.z_unit == ("deg" if kind == "PH" else "nm"), label
        assert isinstance(ch.data, da.Array) and ch.data.dtype == np.float32, label
        assert ch.data.shape == tuple(ref["shape"]), label
        assert ch.xy_unit == "nm"
        _close(ch.pixel_size[0], ref["pixel_to_nm"], 0, f"{label} dy")
        _close(ch.pixel_size[1], ref["pixel_to_nm"], 0, f"{label} dx")
        assert ch.offset == (0.0, 0.0)
        data = np.asarray(ch.data, dtype=np.float64)
        span = ref["max"] - ref["min"]
        # whole-movie statistics
        _close(data.min(), ref["min"], span, f"{label} min")
        _close(data.max(), ref["max"], span, f"{label} max")
        _close(data.mean(), ref["mean"], span, f"{label} mean")
        # AFMReader's corners and edge means are those of frame 0 (row 0 = top row)
        frame = data[0]
        corners = (frame[0, 0], frame[0, -1], frame[-1, 0], frame[-1, -1])
        for name, value, want in zip(("TL", "TR", "BL", "BR"), corners, ref["corners_TL_TR_BL_BR"]):
            _close(value, want, span, f"{label} corner {name}")
        _close(frame[0].mean(), ref["row0_mean"], span, f"{label} row 0 mean")
        _close(frame[:, 0].mean(), ref["col0_mean"], span, f"{label} column 0 mean")
        # frame time comes from the header (ms -> s)
        assert ch.frame_time_s == pytest.approx(scan.header["frame_time_ms"] / 1000.0)


def test_header_is_json_and_describes_the_file(sample):
    scan = read(sample("hsafm_asd/202110200146.asd"))
    text = json.dumps(scan.header)
    assert "TP" in text and "PH" in text
    assert scan.header["file_version"] == 1
    assert scan.header["x_pixels"] == scan.channels[0].data.shape[2]
    assert scan.header["operator_name"] == "Anonymous"
    for ch in scan.channels:
        json.dumps(ch.header)
        assert "conversion" in ch.header


# --------------------------------------------------------------------------------------
# Synthetic files: every header version, conversions, text encodings
# --------------------------------------------------------------------------------------


def _levels(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 4096, size=shape).astype(np.int16)


@pytest.mark.parametrize("version", [0, 1, 2])
@pytest.mark.parametrize("ad_range", [0x1, 0x3, 0x20000, 0x40000])
def test_synthetic_versions_and_ad_ranges(tmp_path, version, ad_range):
    levels = _levels((2, 3, 5, 7))  # two channels, 3 frames of 5 x 7 (non-square)
    path = write_asd(
        tmp_path / "movie.asd", levels, channels=("TP", "PH"), version=version, ad_range=ad_range,
        scan_size_nm=(140, 50), frame_time_ms=250.0, comment="sample: actin", comment_offset_size=3 if version == 0 else 0,
    )  # fmt: skip
    scan = read(path)
    assert [(c.name, c.z_unit) for c in scan.channels] == [("Height", "nm"), ("Phase", "deg")]
    assert scan.header["file_version"] == version
    assert scan.header["comment"] == "sample: actin"
    for ch, lv, kind in zip(scan.channels, levels, ("TP", "PH")):
        assert ch.data.shape == (3, 5, 7)
        assert ch.pixel_size == pytest.approx((50 / 5, 140 / 7))
        assert ch.frame_time_s == pytest.approx(0.25)
        want = expected_values(lv, kind, ad_range=ad_range)
        np.testing.assert_allclose(np.asarray(ch.data), want, rtol=1e-5, atol=1e-5 * np.ptp(want))


def test_single_channel_and_larger_frame_header(tmp_path):
    levels = _levels((4, 6, 6), seed=1)
    path = write_asd(tmp_path / "er.asd", levels, channels=("ER",), frame_header_size=48, ad_range=0x10000)
    scan = read(path)
    (ch,) = scan.channels
    assert (ch.name, ch.z_unit) == ("Error", "nm")
    np.testing.assert_allclose(
        np.asarray(ch.data), expected_values(levels, "ER", ad_range=0x10000), rtol=1e-5, atol=1e-6
    )


def test_shift_jis_text_is_decoded(tmp_path):
    path = write_asd(
        tmp_path / "jp.asd", _levels((1, 4, 4)), operator="安藤", comment="ミオシン V, 緩衝液 pH 7"
    )
    scan = read(path)
    assert scan.header["operator_name"] == "安藤"
    assert scan.header["comment"] == "ミオシン V, 緩衝液 pH 7"
    json.dumps(scan.header, ensure_ascii=False)


def test_stray_bytes_in_text_never_crash(tmp_path):
    path = write_asd(tmp_path / "junk.asd", _levels((1, 4, 4)), operator="abc", comment="x" * 10)
    raw = bytearray(path.read_bytes())
    start = 165 + 3  # comment of a version 1 header
    raw[start : start + 4] = b"\xff\xfe\x81\x00"
    path.write_bytes(bytes(raw))
    scan = read(path)
    assert isinstance(scan.header["comment"], str)
    json.dumps(scan.header)


# --------------------------------------------------------------------------------------
# Laziness
# --------------------------------------------------------------------------------------


def count_reads(monkeypatch) -> list[tuple[int, int]]:
    """Record every ``(offset, nbytes)`` the .asd reader reads from here on."""
    reads = []
    original = asd._read_span

    def counting(p, offset, nbytes, fh=None):
        reads.append((offset, nbytes))
        return original(p, offset, nbytes, fh)

    monkeypatch.setattr(asd, "_read_span", counting)
    return reads


def test_small_movie_is_held_in_memory(tmp_path, monkeypatch):
    """Under movie.EAGER_BYTES every channel's frames are read in ONE read when the file is opened
    and held; frames (one per chunk) and np.asarray of the whole movie never read the file
    again and give exactly what the lazy frame-by-frame path gives."""
    base = _levels((2, 3, 24, 32), seed=4)  # (channel, frame, y, x)
    path = write_asd(tmp_path / "small.asd", base, n_frames=40, channels=("TP", "ER"))
    reads = count_reads(monkeypatch)
    small = read(path)
    assert len(reads) == 1, "one read for every channel"
    start, nbytes = reads[0]
    assert start == small.header["data_start"] and nbytes == 2 * 40 * (32 + 2 * 24 * 32)
    for ch in small.channels:
        assert ch.data.shape == (40, 24, 32) and ch.data.chunks[0] == (1,) * 40
    reads.clear()
    frame7 = np.asarray(small.channels[1].data[7])
    whole = np.asarray(small.channels[1].data)
    assert reads == [], "an in-memory movie never reads the file again"
    np.testing.assert_array_equal(whole[7], frame7)
    monkeypatch.setattr(movie_module, "EAGER_BYTES", 0)
    lazy = read(path)
    for a, b in zip(small.channels, lazy.channels):
        np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
        np.testing.assert_array_equal(a.data.compute(), np.asarray(b.data[:]))  # through dask's scheduler
    want = expected_values(base[1, 5 % 3], "ER")
    np.testing.assert_allclose(np.asarray(small.channels[1].data[5]), want, rtol=1e-5, atol=1e-4)


def test_asarray_gives_a_new_array_each_time(tmp_path):
    """np.asarray(movie) skips dask's scheduler but, like dask, never hands out the held data:
    changing the result changes neither the movie nor the next result."""
    base = _levels((2, 8, 8), seed=6)
    scan = read(write_asd(tmp_path / "tiny.asd", base, n_frames=2))
    data = scan.channels[0].data
    first = np.asarray(data)
    first[:] = 12345.0
    again = np.asarray(data)
    np.testing.assert_allclose(again[1], expected_values(base[1], "TP"), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(data[1]), again[1])
    assert np.asarray(data, dtype=np.float64).dtype == np.float64
    data[0] = 7.0  # dask changes the array in place: np.asarray must see it
    np.testing.assert_array_equal(np.asarray(data)[0], 7.0)
    np.testing.assert_array_equal(np.asarray(data)[1], again[1])


def test_movie_is_lazy_only_the_indexed_frame_is_read(tmp_path, monkeypatch):
    """A movie above movie.EAGER_BYTES: nothing read at opening, one frame read per frame shown."""
    monkeypatch.setattr(movie_module, "EAGER_BYTES", 0)
    n, ny, nx = 2000, 48, 64
    base = _levels((3, ny, nx), seed=2)
    path = write_asd(tmp_path / "long.asd", base, n_frames=n)
    assert path.stat().st_size > n * ny * nx * 2

    reads = count_reads(monkeypatch)
    scan = read(path)
    (ch,) = scan.channels
    assert ch.data.shape == (n, ny, nx)
    assert reads == [], "opening the movie must not read frame data"

    start = scan.header["data_start"]
    stride = 32 + 2 * ny * nx

    def frames_read():
        got = sorted({(off - start) // stride for off, _ in reads})
        assert all(nbytes <= stride for _, nbytes in reads), "a chunk read more than one frame"
        return got

    frame0 = np.asarray(ch.data[0])
    assert frames_read() == [0]
    np.testing.assert_allclose(frame0, expected_values(base[0], "TP"), rtol=1e-5, atol=1e-4)

    reads.clear()
    frame = np.asarray(ch.data[1234])
    assert frames_read() == [1234]
    np.testing.assert_allclose(frame, expected_values(base[1234 % 3], "TP"), rtol=1e-5, atol=1e-4)

    reads.clear()
    corner = ch.data[7, :4, -3:].compute()
    assert frames_read() == [7] and corner.shape == (4, 3)

    reads.clear()
    whole = np.asarray(ch.data)  # every frame: one read of the channel's span, not one per frame
    assert len(reads) == 1 and whole.shape == (n, ny, nx)
    np.testing.assert_array_equal(whole[1234], frame)


@pytest.mark.parametrize("small", [True, False])
def test_long_movie_groups_frames_into_at_most_max_chunks(tmp_path, monkeypatch, small):
    """Past movie.MAX_CHUNKS frames, consecutive frames share a chunk so the graph stays bounded
    (a million tiny frames must not build a million tasks); values are unchanged, through dask's
    scheduler and through a frame cut out as napari does."""
    if not small:
        monkeypatch.setattr(movie_module, "EAGER_BYTES", 0)
    base = _levels((5, 6, 10), seed=9)
    path = write_asd(tmp_path / "long.asd", base, n_frames=23)
    monkeypatch.setattr(movie_module, "MAX_CHUNKS", 23)
    one_each = read(path).channels[0].data
    assert one_each.chunks[0] == (1,) * 23
    monkeypatch.setattr(movie_module, "MAX_CHUNKS", 5)
    grouped = read(path).channels[0].data
    assert grouped.chunks[0] == (5, 5, 5, 5, 3) and len(grouped.dask) == 5
    expected = np.stack([expected_values(base[t % 5], "TP") for t in range(23)])
    np.testing.assert_allclose(grouped.compute(), expected, rtol=1e-5, atol=1e-4)  # dask's scheduler
    np.testing.assert_array_equal(grouped[3:17].compute(), one_each[3:17].compute())
    np.testing.assert_array_equal(np.asarray(grouped[21]), np.asarray(one_each[21]))


@pytest.mark.parametrize("small", [True, False])
def test_frames_cut_by_ints_and_slices_skip_dask(tmp_path, monkeypatch, small):
    """np.asarray(movie[key]) for integer/slice keys (how napari shows a frame) reads from the
    frame source without dask's scheduler, and gives exactly what dask computes; any other key,
    a slice of a slice, or a changed movie goes through dask."""
    import dask.base

    if not small:
        monkeypatch.setattr(movie_module, "EAGER_BYTES", 0)
    base = _levels((3, 12, 20), seed=8)
    data = read(write_asd(tmp_path / "m.asd", base, n_frames=9)).channels[0].data
    keys = [
        3,
        -1,
        np.int64(2),
        (4, 5),
        (0, slice(2, 9, 3), -4),
        slice(2, 7),
        slice(None, None, -2),
        (slice(1, 8, 2), slice(None), 7),
        (slice(5, 5),),
    ]
    expected = {str(k): data[k].compute() for k in keys}  # through dask's scheduler
    other = {"ellipsis": (data[..., 3], ...), "list": (data[[1, 4]], ...), "nested": (data[2:6][1], ...)}
    other = {k: (v[0], v[0].compute()) for k, v in other.items()}

    def no_scheduler(*args, **kwargs):
        raise AssertionError("dask's scheduler ran")

    monkeypatch.setattr(dask.base, "get_scheduler", no_scheduler)
    for key in keys:
        view = data[key]
        assert type(view) is type(data) and view.shape == expected[str(key)].shape
        got = np.asarray(view)
        np.testing.assert_array_equal(got, expected[str(key)], err_msg=str(key))
        assert np.asarray(view, dtype=np.float64).dtype == np.float64
        got[...] = -1.0  # a new array each time, never the held data
        np.testing.assert_array_equal(np.asarray(data[key]), expected[str(key)])
    for view, _want in other.values():
        with pytest.raises(AssertionError, match="scheduler"):
            np.asarray(view)
    monkeypatch.undo()
    for name, (view, want) in other.items():
        np.testing.assert_array_equal(np.asarray(view), want, err_msg=name)
    data[1] = 5.0
    np.testing.assert_array_equal(np.asarray(data[1]), 5.0)


def test_graph_is_picklable_and_holds_no_open_file(sample, monkeypatch):
    """A small movie's graph (one task per frame) pickles without the frames it holds: the copy
    reads them from the file, like a large movie."""
    scan = read(sample("hsafm_asd/asd_sample_0.asd"))
    data = scan.channels[0].data
    blob = pickle.dumps(data)
    assert len(blob) < 100_000 < data.size * 2, "the held raw frames must not travel with the graph"
    clone = pickle.loads(blob)
    reads = count_reads(monkeypatch)
    np.testing.assert_array_equal(np.asarray(clone[5]), np.asarray(data[5]))
    assert len(reads) == 1, "the copy reads its frame from the file"


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


def test_recognised_by_content_under_any_name(sample, tmp_path):
    for rel in SAMPLES:
        copy = found_by_content(sample(rel), tmp_path, asd, sample(rel).stem + ".dat")
        assert len(read(copy).channels) >= 1


def test_other_files_are_not_claimed(samples_dir, tmp_path):
    assert not claims(asd, write_file(tmp_path, "noise.asd", noise(8192, seed=5)))
    assert not claims(asd, write_file(tmp_path, "zeros.asd", b"\x00" * 4096))
    others = [
        p
        for p in samples_dir.rglob("*")
        if p.is_file() and p.suffix != ".asd" and p.name != "ground_truth.json"
    ]
    assert others
    for path in others:
        assert not claims(asd, path), f"asd claims {path.name}"


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", [40, 120, 170, 174, 5000, 250_000, 500_301])
def test_truncated_sample(sample, tmp_path, cut):
    raw = sample("hsafm_asd/202110200146.asd").read_bytes()
    path = tmp_path / "cut.asd"
    path.write_bytes(raw[:cut])
    reason = declined(path)
    if cut >= 174:
        assert "truncated" in reason


def test_absurd_dimensions_do_not_allocate(sample, tmp_path):
    raw = bytearray(sample("hsafm_asd/asd_sample_0.asd").read_bytes())
    for offset, value in ((48, 1_000_000), (52, 1_000_000), (48, -5), (36, 10**9), (36, 0)):
        bad = bytearray(raw)
        bad[offset : offset + 4] = struct.pack("<i", value)  # x/y pixels, number of frames
        path = tmp_path / f"bad_{offset}_{value}.asd"
        path.write_bytes(bytes(bad))
        declined(path)


def test_corrupt_header_fields(sample, tmp_path):
    raw = bytes(sample("hsafm_asd/asd_sample_0.asd").read_bytes())
    cases = {
        "adrange": (133, struct.pack("<I", 0x1234)),  # unknown AD range code
        "namesize": (16, struct.pack("<i", -7)),
        "headersize": (4, struct.pack("<i", 10**8)),
        "framehdr": (8, struct.pack("<i", 3000)),  # frame header larger than the data
    }
    for name, (offset, patch) in cases.items():
        path = tmp_path / f"{name}.asd"
        path.write_bytes(raw[:offset] + patch + raw[offset + len(patch) :])
        if name != "headersize":  # an absurd header size is not even taken for an .asd file
            assert find_format(path) is asd, name
        declined(path)


def test_unknown_version_not_claimed(sample, tmp_path):
    raw = sample("hsafm_asd/asd_sample_0.asd").read_bytes()
    path = tmp_path / "v7.asd"
    path.write_bytes(struct.pack("<i", 7) + raw[4:])
    assert find_format(path) is None
    declined(path)
