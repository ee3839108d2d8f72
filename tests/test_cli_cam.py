"""``scanprobe cam``: one float32 TIFF map per input, on the input's grid, errors per input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_scanprobe import read
from napari_scanprobe.cli import main
from napari_scanprobe.learn.cam import cam
from napari_scanprobe.learn.modelfile import ClassifierModel
from napari_scanprobe.nn.classifier import build_network, check_architecture

pytestmark = pytest.mark.slow  # every test here trains a network (or uses one trained here)


def save_model(path, channels, pixel_size, head="gap", categories=("clean", "dirty"), input_size=32) -> str:
    """A small untrained classifier (random weights, fixed seed) saved to ``path``."""
    arch = check_architecture(
        {"blocks": 3, "filters": 8, "head": head}, max(1, len(channels)), len(categories), input_size
    )
    torch.manual_seed(0)
    net = build_network(arch)
    state = {k: v.numpy() for k, v in net.state_dict().items() if v.is_floating_point()}
    return str(
        ClassifierModel(arch, state, list(categories), list(channels), pixel_size, input_size).save(path)
    )


def test_cam_writes_one_map_per_input_on_its_grid(sample, tmp_path, capsys):
    sxm = sample("nanonis_sxm/test.sxm")
    model = save_model(
        tmp_path / "z_model", ["Z (forward)"], pixel_size=40.0
    )  # 256 px at 19.5 nm/px -> 125 px seen
    out = tmp_path / "maps"  # created by the command
    assert main(["cam", model, str(sxm), "-o", str(out), "--method", "gradcam++"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    written = out / "test.cam.tif"
    assert len(lines) == 1 and str(sxm) in lines[0] and str(written) in lines[0]

    source = read(sxm).channels[0]
    with tifffile.TiffFile(written) as tif:
        page = tif.pages[0]
        data = page.asarray()
        assert data.dtype == np.float32 and data.shape == source.data.shape
        assert page.tags["ResolutionUnit"].value == 3  # centimetre
        num, den = page.tags["XResolution"].value
        assert num / den == pytest.approx(1e7 / source.pixel_size[1], rel=1e-6)  # pixels per cm
        num, den = page.tags["YResolution"].value
        assert num / den == pytest.approx(1e7 / source.pixel_size[0], rel=1e-6)
    expected = cam(model, sxm, "gradcam++")
    np.testing.assert_allclose(data, expected.map, atol=1e-6)
    assert expected.category in lines[0]

    back = read(written).channels[0]  # the plugin reads its own TIFF back with the scan's frame
    np.testing.assert_allclose(back.pixel_size, source.pixel_size)
    np.testing.assert_allclose(back.offset, source.offset)
    assert back.xy_unit == "nm" and back.name == f"CAM {expected.category}"


def test_cam_of_a_movie_and_of_an_array(sample, tmp_path, capsys):
    model = save_model(tmp_path / "any", [], pixel_size=None)
    movie = sample("hsafm_asd/asd_sample_0.asd")
    array = tmp_path / "plain.npy"
    np.save(array, np.random.default_rng(0).normal(size=(40, 50)).astype(np.float32))
    assert (
        main(
            ["cam", model, str(movie), str(array), "-o", str(tmp_path), "--target", "1", "--layer", "block2"]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "32 frames" in lines[0] and "CAM dirty" in lines[0] and "block2" in lines[1]
    maps = tifffile.imread(tmp_path / "asd_sample_0.cam.tif")
    source = read(movie).channels[0]
    assert maps.shape == source.data.shape and maps.dtype == np.float32
    peaks = maps.max(axis=(1, 2))  # each frame normalised on its own (an untrained model may find nothing: 0)
    assert (
        maps.min() >= 0
        and np.all(np.isclose(peaks, 1.0) | (peaks == 0))
        and np.isclose(peaks, 1.0).sum() > 16
    )
    np.testing.assert_allclose(
        maps[7], cam(model, np.asarray(source.data[7]), target="dirty", layer="block2").map, atol=1e-6
    )
    plain = tifffile.imread(tmp_path / "plain.cam.tif")
    assert plain.shape == (40, 50) and plain.dtype == np.float32


def test_bad_inputs_are_reported_and_the_rest_continue(sample, tmp_path, capsys):
    model = save_model(tmp_path / "z_model", ["Z (forward)"], pixel_size=40.0)
    broken = tmp_path / "broken.sxm"
    broken.write_bytes(b"\x00" * 10)
    other = sample("ntmdt_mdt/test_mdt.mdt")  # a current image: no "Z (forward)" nor any height
    good = sample("nanonis_sxm/test.sxm")
    out = tmp_path / "maps"
    assert main(["cam", model, str(broken), str(other), str(good), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert (
        "broken.sxm" in captured.err
        and "no channel 'Z (forward)'" in captured.err
        and "Traceback" not in captured.err
    )
    assert len(captured.out.strip().splitlines()) == 1 and (out / "test.cam.tif").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["test.cam.tif"]  # nothing half-written


def test_bad_options_fail_before_any_work(sample, tmp_path, capsys):
    good = str(sample("nanonis_sxm/test.sxm"))
    model = save_model(tmp_path / "z_model", ["Z (forward)"], pixel_size=40.0)
    dense = save_model(tmp_path / "dense", ["Z (forward)"], pixel_size=40.0, head="dense")
    out = tmp_path / "maps"
    cases = [
        (["cam", model, good, "-o", str(out), "--target", "infected"], "no category 'infected'"),
        (["cam", model, good, "-o", str(out), "--layer", "block7"], "no layer 'block7'"),
        (["cam", model, good, "-o", str(out), "--method", "saliency"], "unknown 'saliency'"),
        (["cam", dense, good, "-o", str(out), "--method", "cam"], "'dense' head"),
        (["cam", str(tmp_path / "missing"), good, "-o", str(out)], "missing"),
    ]
    for argv, message in cases:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not out.exists()
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    assert main(["cam", model, good, "-o", str(blocked)]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_a_failed_write_is_reported_and_the_next_input_continues(sample, tmp_path, capsys, monkeypatch):
    import errno

    import napari_scanprobe.io.tif_write as tif_write

    real_write, calls = tif_write.write, []

    def disk_full_once(path, channel):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(errno.ENOSPC, f"cannot write {path}: No space left on device")
        return real_write(path, channel)

    monkeypatch.setattr(tif_write, "write", disk_full_once)
    model = save_model(tmp_path / "any", [], pixel_size=None)
    first, second = tmp_path / "first.npy", tmp_path / "second.npy"
    for path in (first, second):
        np.save(path, np.random.default_rng(0).normal(size=(40, 40)).astype(np.float32))
    out = tmp_path / "maps"
    assert main(["cam", model, str(first), str(second), "-o", str(out)]) == 1
    captured = capsys.readouterr()
    assert (
        "first.cam.tif" in captured.err
        and "No space left on device" in captured.err
        and "Traceback" not in captured.err
    )
    assert sorted(p.name for p in out.iterdir()) == ["second.cam.tif"]
