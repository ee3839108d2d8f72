"""The HDF5 subset parser (``io/hdf5.py``) against h5py, on files h5py writes and on the JPK
sample: every value it reads must be h5py's; everything it does not read must say so."""

from __future__ import annotations

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from napari_scanprobe.io import hdf5  # noqa: E402
from napari_scanprobe.io.scan import decode  # noqa: E402


def _parse(path) -> hdf5.File:
    return hdf5.File(path.read_bytes())


def _same(got, want, what):
    if isinstance(want, np.ndarray) and want.size == 1:  # one value reads as that value
        want = want.reshape(-1)[0]
    if isinstance(want, (bytes, np.bytes_)):
        assert got == decode(bytes(want)), what
    elif isinstance(want, np.ndarray) and want.dtype.kind == "S":
        assert got == [decode(bytes(v)) for v in want.ravel()], what
    elif isinstance(want, np.ndarray) and want.size != 1:
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape, what
        np.testing.assert_array_equal(got, want, err_msg=what)
    else:
        want = np.asarray(want).reshape(-1)[0]
        if np.isnan(want):
            assert np.isnan(got), what
        else:
            assert got == want and type(got) in (int, float), what


ATTRIBUTES = {
    "int8": np.int8(-5),
    "uint16": np.uint16(65000),
    "int32": np.int32(-123456),
    "uint64": np.uint64(2**63 + 5),
    "int64_be": np.array(-(2**40), dtype=">i8")[()],
    "float32": np.float32(1.5),
    "float64": 2.5e-9,
    "float64_be": np.array(3.25, dtype=">f8")[()],
    "nan": float("nan"),
    "string": np.bytes_(b"JPK SCAN"),
    "empty": np.bytes_(b""),
    "utf8": np.bytes_("Höhe µm".encode()),
    "one_element": np.array([7.0]),
    "vector": np.arange(5, dtype=np.int16),
    "matrix": np.arange(6.0).reshape(2, 3),
    "strings": np.array([b"a", b"bc", b""], dtype="S2"),
}


def test_attributes_of_every_simple_type(tmp_path):
    path = tmp_path / "attrs.h5"
    with h5py.File(path, "w") as f:
        for key, value in ATTRIBUTES.items():
            f.attrs[key] = value
        f.create_group("g").attrs["x"] = 1.0
    parsed = _parse(path)
    got = parsed.root.attrs()
    assert list(got) == list(ATTRIBUTES)
    with h5py.File(path, "r") as f:
        for key in ATTRIBUTES:
            _same(got[key], f.attrs[key], key)
    assert parsed["g"].attrs() == {"x": 1.0}


def test_many_attributes_and_members(tmp_path):
    """Hundreds of attributes (object header continuation blocks) and over a thousand members
    (a B-tree of more than one level): as h5py lists them."""
    path = tmp_path / "many.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("many")
        for k in range(400):
            g.attrs[f"attribute.{k:03d}"] = np.bytes_(b"x" * (k % 50)) if k % 2 else float(k)
        for k in range(1100):
            g.create_group(f"member_{k}")
    parsed = _parse(path)
    with h5py.File(path, "r") as f:
        got = parsed["many"].attrs()
        assert sorted(got) == sorted(f["many"].attrs)
        for key, value in got.items():
            _same(value, f["many"].attrs[key], key)
        assert sorted(parsed["many"]) == sorted(f["many"])
    assert isinstance(parsed["many/member_1099"], hdf5.Group)
    with pytest.raises(KeyError):
        parsed["many/member_1100"]


@pytest.mark.parametrize(
    "options",
    [
        {},  # contiguous
        {"chunks": (7, 3)},
        {"chunks": (16, 1), "compression": "gzip"},
        {"chunks": (5, 4), "compression": "gzip", "shuffle": True},
        {"chunks": (4, 4), "shuffle": True},
    ],
    ids=["contiguous", "chunked", "gzip", "shuffle+gzip", "shuffle"],
)
@pytest.mark.parametrize("dtype", ["<i4", ">f8", "<u2", "i1"])
def test_data_sets(tmp_path, options, dtype):
    values = (np.arange(20 * 9).reshape(20, 9) * 7 - 300).astype(dtype)
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=values, **options)
    parsed = _parse(path)
    dataset = parsed["d"]
    assert dataset.shape == (20, 9) and dataset.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(dataset.read(), values)
    storage, buf = dataset.storage(), path.read_bytes()
    part = storage.read(lambda o, n: buf[o : o + n], ((3, 17), (2, 3)))
    np.testing.assert_array_equal(part, values[3:17, 2:3])
    into = np.empty((9, 20), values.dtype)
    storage.read(lambda o, n: buf[o : o + n], None, into.T)  # a transposed view as the output
    np.testing.assert_array_equal(into, values.T)


def test_jpk_sample_matches_h5py(sample):
    path = sample("jpk/sample_0.h5-jpk")
    parsed = _parse(path)
    with h5py.File(path, "r") as f:
        names = []
        f.visit(names.append)
        for name in names:
            node, ref = parsed[name], f[name]
            attrs = node.attrs()
            assert sorted(attrs) == sorted(ref.attrs), name  # h5py lists them by name
            for key, value in attrs.items():
                if isinstance(ref.attrs[key], h5py.Reference):
                    assert value == hdf5.OBJECT_REFERENCE
                else:
                    _same(value, ref.attrs[key], f"{name}:{key}")
            if isinstance(ref, h5py.Dataset):
                assert isinstance(node, hdf5.Dataset) and node.shape == ref.shape
                np.testing.assert_array_equal(node.read(), ref[()], err_msg=name)
            else:
                assert isinstance(node, hdf5.Group) and sorted(node) == sorted(ref)


def test_layouts_it_does_not_read_say_so(tmp_path):
    """Each raises Unsupported (the caller then reads the file with h5py), never a wrong value."""
    latest = tmp_path / "latest.h5"
    with h5py.File(latest, "w", libver="latest") as f:
        f.attrs["x"] = 1.0
    vlen = tmp_path / "vlen.h5"
    with h5py.File(vlen, "w") as f:
        f.attrs["text"] = "variable-length"  # h5py writes str as a variable-length string
    compound = tmp_path / "compound.h5"
    with h5py.File(compound, "w") as f:
        f.attrs["pair"] = np.array((1, 2.0), dtype=[("a", "i4"), ("b", "f8")])
    fletcher = tmp_path / "fletcher.h5"
    with h5py.File(fletcher, "w") as f:
        f.create_dataset("d", data=np.arange(10), chunks=(5,), fletcher32=True)
    sparse = tmp_path / "sparse.h5"
    with h5py.File(sparse, "w") as f:
        d = f.create_dataset("d", shape=(10, 10), chunks=(5, 5), dtype="f4")
        d[0:5, 0:5] = 1.0  # three of four chunks never written
    with pytest.raises(hdf5.Unsupported):
        _parse(latest)
    with pytest.raises(hdf5.Unsupported):
        _parse(vlen).root.attrs()
    with pytest.raises(hdf5.Unsupported):
        _parse(compound).root.attrs()
    with pytest.raises(hdf5.Unsupported):
        _parse(fletcher)["d"].storage()
    with pytest.raises(hdf5.Unsupported):
        _parse(sparse)["d"].storage()


def test_corrupt_structures_raise_and_never_hang(sample):
    """Truncations and bit flips of the JPK sample: an exception or h5py's values, quickly."""
    data = sample("jpk/sample_0.h5-jpk").read_bytes()
    rng = np.random.default_rng(7)
    with pytest.raises(hdf5.Corrupt):
        hdf5.File(b"not an HDF5 file at all")
    for cut in (64, 100, 900, 5000, 60_000):
        with pytest.raises(Exception):  # noqa: B017 - any exception will do: the caller falls back to h5py
            f = hdf5.File(data[:cut])
            [f[m].attrs() for m in ("Measurement_000", "Measurement_000/Channel_001/Height")]
            f["Measurement_000/Channel_001/Height"].read()
    for _ in range(40):
        mutated = bytearray(data[:300_000])
        for at in rng.integers(0, len(mutated), 8):
            mutated[at] ^= 1 << int(rng.integers(0, 8))
        try:
            f = hdf5.File(bytes(mutated))
            for name in f["Measurement_000"]:
                f[f"Measurement_000/{name}"].attrs()
        except Exception:  # noqa: BLE001 - raising is the right answer to a corrupt file
            pass
