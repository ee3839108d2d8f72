"""``scanprobe batch``: real files in, outputs read back; resume; failures recorded; a cluster; movies."""

from __future__ import annotations

import csv
import json
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from napari_scanprobe import read
from napari_scanprobe.batch import JOURNAL_NAME, SUMMARY_NAME, run_batch
from napari_scanprobe.cli import main
from napari_scanprobe.inputs import expand_inputs
from napari_scanprobe.io.scan import Channel
from napari_scanprobe.io.write import write
from napari_scanprobe.process.denoise import denoise
from napari_scanprobe.process.flatten import flatten
from napari_scanprobe.recipe import load_recipe, model_sha256, save_recipe
from tests.io.synth_asd import write_asd

Z_RECIPE = {
    "channels": ["Z (forward)"],
    "steps": [
        {"step": "flatten", "method": "auto"},
        {"step": "denoise", "method": "median", "options": {"size": 3}},
        {"step": "write", "format": ".tif", "name": "{stem} {channel}"},
    ],
}


def expected(data) -> np.ndarray:
    """What Z_RECIPE does to a channel, by direct calls."""
    return np.asarray(denoise(flatten(data, "auto"), "median", size=3), dtype=np.float32)


def z_forward(path):
    return next(ch for ch in read(path).channels if ch.title == "Z (forward)")


def summary_rows(outdir) -> list[dict]:
    with open(Path(outdir) / SUMMARY_NAME, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def recipe_file(tmp_path):
    return str(save_recipe(load_recipe(Z_RECIPE), tmp_path / "z.yaml"))


def test_batch_processes_real_files_and_writes_a_summary(sample, tmp_path, recipe_file, capsys):
    folder = sample("nanonis_sxm/test.sxm").parent
    out = tmp_path / "out"
    assert main(["batch", recipe_file, str(folder), "-o", str(out), "--workers", "0"]) == 0
    assert "2 ok, 0 failed" in capsys.readouterr().out
    rows = summary_rows(out)
    assert [Path(r["input"]).name for r in rows] == ["A151216.123306-02602.sxm", "test.sxm"]
    for row in rows:
        source = Path(row["input"])
        assert (
            row["status"] == "ok"
            and row["error"] == ""
            and row["outputs"] == f"{source.stem} Z (forward).tif"
        )
        raw = z_forward(source)
        back = read(out / row["outputs"]).channels[0]
        np.testing.assert_array_equal(np.asarray(back.data), expected(raw.data))  # float32 TIFF: exact
        assert back.pixel_size == raw.pixel_size and back.offset == raw.offset and back.xy_unit == "nm"
        assert back.z_unit == "nm" and back.direction == "forward"
        assert [s["method"] for s in back.header["processing"]] == ["auto", "median"]
        assert back.header["source"] == str(source)


def test_denoise_auto_records_what_it_chose_in_the_output(sample, tmp_path, monkeypatch):
    from napari_scanprobe.process import denoise as denoise_module
    from tests.helpers import untrained_denoise_network

    monkeypatch.setattr(denoise_module, "_cnn_steps", untrained_denoise_network)
    recipe = {
        "channels": ["Z (forward)"],
        "steps": [{"step": "denoise", "method": "auto"}, {"step": "write", "format": ".tif"}],
    }
    out = tmp_path / "out"
    run_batch(load_recipe(recipe), [sample("nanonis_sxm/test.sxm")], out, workers=0)
    (written,) = out.glob("*.tif")
    step = read(written).channels[0].header["processing"][-1]
    assert step["method"] == "auto" and step["options"] == {}
    chosen = step["auto"]["Z (forward)"]
    assert chosen["method"] == "n2v" and chosen["kind"] in ("white", "line")
    assert 0.0 <= chosen["network_weight"] <= 1.0


def test_gsf_output_holds_every_channel_by_default(sample, tmp_path):
    chip = sample("gwyddion_gsf/GwiddionReader_chip.gsf")
    recipe = {
        "steps": [{"step": "flatten", "method": "plane"}, {"step": "write"}]
    }  # every channel, .gsf, "{file} {channel}"
    result = run_batch(recipe, [chip], tmp_path / "out", workers=0)
    assert [r.status for r in result.results] == ["ok"]
    written = tmp_path / "out" / "GwiddionReader_chip.gsf Topography.gsf"
    assert result.results[0].outputs == [str(written)]
    raw = read(chip).channels[0]
    back = read(written).channels[0]
    np.testing.assert_allclose(back.data, flatten(raw.data, "plane"), rtol=1e-6, atol=1e-6 * np.ptp(raw.data))
    np.testing.assert_allclose(back.pixel_size, raw.pixel_size)


def test_rerun_skips_finished_inputs_and_redoes_changed_work(sample, tmp_path, recipe_file, capsys):
    inputs = [str(sample("nanonis_sxm/test.sxm")), str(sample("nanonis_sxm/A151216.123306-02602.sxm"))]
    out = tmp_path / "out"
    assert main(["batch", recipe_file, *inputs, "-o", str(out), "--workers", "0"]) == 0
    outputs = sorted(out.glob("*.tif"))
    stamps = [p.stat().st_mtime_ns for p in outputs]
    assert len(outputs) == 2 and len((out / JOURNAL_NAME).read_text().splitlines()) == 2

    capsys.readouterr()
    assert main(["batch", recipe_file, *inputs, "-o", str(out), "--workers", "0"]) == 0
    assert "2 skipped (done)" in capsys.readouterr().out
    assert [r["status"] for r in summary_rows(out)] == ["skipped (done)"] * 2
    assert [r["outputs"] for r in summary_rows(out)] == [
        "test Z (forward).tif",
        "A151216.123306-02602 Z (forward).tif",
    ]
    assert [p.stat().st_mtime_ns for p in outputs] == stamps  # nothing rewritten

    (out / "test Z (forward).tif").unlink()  # an output lost: that input is redone, the other skipped
    assert main(["batch", recipe_file, *inputs, "-o", str(out), "--workers", "0"]) == 0
    assert [r["status"] for r in summary_rows(out)] == ["ok", "skipped (done)"]
    assert (out / "test Z (forward).tif").is_file()

    changed = json.loads(json.dumps(Z_RECIPE))
    changed["steps"][1]["options"]["size"] = 5  # another recipe: everything is redone
    run_batch(changed, inputs, out, workers=0)
    assert [r["status"] for r in summary_rows(out)] == ["ok", "ok"]
    raw = z_forward(inputs[0])
    expect = np.asarray(denoise(flatten(raw.data, "auto"), "median", size=5), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(read(out / "test Z (forward).tif").channels[0].data), expect)


def test_a_failing_file_is_recorded_and_the_batch_goes_on(sample, tmp_path, recipe_file, capsys):
    good = sample("nanonis_sxm/test.sxm")
    spectrum = sample("nanonis_dat_3ds/Bias-Spectroscopy002.dat")
    no_channel = sample("ntmdt_mdt/test_mdt.mdt")  # an image, but without "Z (forward)"
    notes = tmp_path / "notes.txt"
    notes.write_text("not a scan")
    missing = tmp_path / "missing.sxm"
    pattern = str(tmp_path / "nothing" / "*.sxm")
    out = tmp_path / "out"
    args = [
        "batch",
        recipe_file,
        str(spectrum),
        str(good),
        str(notes),
        str(missing),
        pattern,
        str(no_channel),
        "-o",
        str(out),
        "--workers",
        "0",
    ]
    assert main(args) == 1
    captured = capsys.readouterr()
    rows = {Path(r["input"]).name: r for r in summary_rows(out)}
    assert rows["test.sxm"]["status"] == "ok" and (out / "test Z (forward).tif").is_file()
    for name, words in [
        ("Bias-Spectroscopy002.dat", "spectroscopy"),
        ("notes.txt", "notes.txt"),
        ("missing.sxm", "no such file"),
        ("*.sxm", "no file matches"),
        ("test_mdt.mdt", "no channel 'Z (forward)'"),
    ]:
        assert rows[name]["status"] == "failed", name
        assert words in rows[name]["error"], rows[name]["error"]
        assert rows[name]["error"] in captured.err
        assert rows[name]["outputs"] == ""
    assert "1 ok, 5 failed" in captured.out
    assert (
        len((out / JOURNAL_NAME).read_text().splitlines()) == 1
    )  # failures are not journaled: redone next time


def save_model(path, channels, pixel_size) -> str:
    torch = pytest.importorskip("torch")
    from napari_scanprobe.learn.modelfile import ClassifierModel
    from napari_scanprobe.nn.classifier import build_network, check_architecture

    arch = check_architecture({"blocks": 3, "filters": 8, "head": "gap"}, max(1, len(channels)), 2, 32)
    torch.manual_seed(0)
    state = {k: v.numpy() for k, v in build_network(arch).state_dict().items() if v.is_floating_point()}
    return str(ClassifierModel(arch, state, ["clean", "dirty"], list(channels), pixel_size, 32).save(path))


def test_predictions_and_cam_maps_from_a_batch(sample, tmp_path):
    from napari_scanprobe.learn.cam import cam
    from napari_scanprobe.learn.predict import predict

    sxm = sample("nanonis_sxm/test.sxm")
    model = save_model(tmp_path / "z_model", ["Z (forward)"], pixel_size=40.0)
    sha = model_sha256(model)
    recipe = {
        "channels": ["Z (forward)"],
        "steps": [
            {"step": "flatten", "method": "plane"},
            {"step": "predict", "model": model, "sha256": sha},
            {"step": "cam", "model": model, "sha256": sha, "method": "gradcam"},
            {"step": "write", "format": ".gwy", "name": "{stem}"},  # the image and its map in one .gwy
        ],
    }
    out = tmp_path / "out"
    result = run_batch(recipe, [sxm], out, workers=0)
    assert result.failed == 0
    raw = z_forward(sxm)
    flat = flatten(raw.data, "plane")
    direct = predict(model, {"Z (forward)": flat}, pixel_size=raw.pixel_size)
    row = summary_rows(out)[0]
    assert row["category"] == direct.label
    for c in ("clean", "dirty"):
        assert float(row[f"P({c})"]) == pytest.approx(direct.probabilities[c], abs=1e-5)
    gwy = read(out / "test.gwy")
    assert [ch.name for ch in gwy.channels] == ["Z", f"CAM {direct.label}"]
    np.testing.assert_allclose(gwy.channels[0].data, flat, atol=1e-9)
    expected_map = cam(model, {"Z (forward)": flat}, "gradcam", pixel_size=raw.pixel_size).map
    np.testing.assert_allclose(gwy.channels[1].data, expected_map, atol=1e-6)
    np.testing.assert_allclose(gwy.channels[1].pixel_size, raw.pixel_size)


@pytest.mark.slow
def test_a_multiprocess_cluster_runs_the_batch_through_scheduler(sample, tmp_path, recipe_file):
    from dask.distributed import LocalCluster

    inputs = [sample("nanonis_sxm/test.sxm"), sample("nanonis_sxm/A151216.123306-02602.sxm")]
    out = tmp_path / "out"
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        code = main(
            [
                "batch",
                recipe_file,
                *map(str, inputs),
                "-o",
                str(out),
                "--scheduler",
                cluster.scheduler_address,
            ]
        )
        tasks = cluster.scheduler.task_prefixes["process_input"].state_counts
        assert tasks["memory"] == 2  # both files were processed by the cluster's worker processes
    assert code == 0
    for source in inputs:
        back = read(out / f"{source.stem} Z (forward).tif").channels[0]
        np.testing.assert_array_equal(np.asarray(back.data), expected(z_forward(source).data))
    assert [r["status"] for r in summary_rows(out)] == ["ok", "ok"]


def test_workers_and_scheduler_exclude_each_other(tmp_path, recipe_file, sample, capsys):
    assert (
        main(
            [
                "batch",
                recipe_file,
                str(sample("nanonis_sxm/test.sxm")),
                "-o",
                str(tmp_path),
                "--workers",
                "2",
                "--scheduler",
                "tcp://x:1",
            ]
        )
        == 1
    )
    assert "exclude each other" in capsys.readouterr().err
    nothing = save_recipe(
        load_recipe({"steps": [{"step": "flatten", "method": "plane"}]}), tmp_path / "nothing.json"
    )
    assert main(["batch", str(nothing), str(sample("nanonis_sxm/test.sxm")), "-o", str(tmp_path / "o")]) == 1
    assert "neither writes" in capsys.readouterr().err


@pytest.mark.slow
def test_a_movie_is_processed_frame_by_frame(sample, tmp_path, monkeypatch):
    import napari_scanprobe.io.movie as movie

    recipe = load_recipe(
        {
            "steps": [
                {"step": "flatten", "method": "rows_median"},
                {"step": "denoise", "method": "median", "options": {"size": 3}},
                {"step": "write"},
            ]
        }
    )
    # a real HS-AFM movie: every frame as the functions give it, written as .tif (the movie format)
    real = sample("hsafm_asd/asd_sample_0.asd")
    result = run_batch(recipe, [real], tmp_path / "real", workers=0)
    assert (
        result.results[0].outputs == [str(tmp_path / "real" / "asd_sample_0.asd Height.tif")]
        and result.results[0].frames == 32
    )
    raw = read(real).channels[0]
    back = read(result.results[0].outputs[0]).channels[0]
    assert back.data.shape == raw.data.shape and back.frame_time_s == raw.frame_time_s
    for t in (0, 17, 31):
        frame = np.asarray(raw.data[t])
        np.testing.assert_array_equal(
            np.asarray(back.data[t]),
            denoise(flatten(frame, "rows_median"), "median", size=3).astype(np.float32),
        )

    # a long movie (kept on disk by the reader) never sits whole in memory
    monkeypatch.setattr(movie, "EAGER_BYTES", 2**20)
    rng = np.random.default_rng(0)
    levels = rng.integers(-400, 400, size=(4, 96, 96)).astype(np.int16)
    long = write_asd(tmp_path / "long.asd", levels, n_frames=300)
    short = write_asd(tmp_path / "short.asd", levels, n_frames=4)
    run_batch(recipe, [short], tmp_path / "warm", workers=0)  # imports and caches before measuring
    tracemalloc.start()
    try:
        result = run_batch(recipe, [long], tmp_path / "long", workers=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    whole = 300 * 96 * 96 * 4  # the movie as float32
    assert result.results[0].status == "ok" and result.results[0].frames == 300
    assert peak < whole / 5, f"peak {peak / 1e6:.1f} MB for a {whole / 1e6:.1f} MB movie"
    back = read(result.results[0].outputs[0]).channels[0]
    assert back.data.shape == (300, 96, 96)
    frame = np.asarray(read(long).channels[0].data[299])
    np.testing.assert_array_equal(
        np.asarray(back.data[299]),
        denoise(flatten(frame, "rows_median"), "median", size=3).astype(np.float32),
    )


def _scan_file(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    write(
        path, Channel(rng.normal(0, 1, (32, 40)) + np.arange(40) * 0.1, "Height", "trace", "nm", (2.0, 2.0))
    )
    return path


def test_channels_of_one_scan_never_overwrite_each_other(tmp_path):
    """A title repeated in a file is numbered by the reader, so each channel gets its own output;
    titles that differ only in characters a file name cannot hold fail the file, clearly."""
    rng = np.random.default_rng(5)

    def chan(name):
        return Channel(rng.normal(0, 1, (16, 16)), name, "trace", "nm", (2.0, 2.0))

    twice = write(tmp_path / "twice.gwy", [chan("Height"), chan("Height")])
    clash = write(tmp_path / "clash.gwy", [chan("Z/1"), chan("Z:1")])
    recipe = {"steps": [{"step": "write", "format": ".gsf", "name": "{stem} {channel}"}]}
    result = run_batch(recipe, [twice, clash], tmp_path / "out", workers=0)
    status = {Path(r.input).name: (r.status, r.error) for r in result.results}
    assert status["twice.gwy"][0] == "ok"
    assert sorted(p.name for p in (tmp_path / "out").glob("twice *")) == [
        "twice Height #2 (trace).gsf",
        "twice Height (trace).gsf",
    ]
    assert status["clash.gwy"][0] == "failed"
    assert (
        "'Z/1 (trace)' and 'Z:1 (trace)' would both be written to clash Z_1 (trace).gsf"
        in status["clash.gwy"][1]
    )
    assert not list((tmp_path / "out").glob("clash *"))  # nothing half-written


def test_folders_and_globs_mirror_subfolders_and_skip_the_output_folder(tmp_path):
    data = tmp_path / "data"
    for sub in ("a", "b/deep"):
        (data / sub).mkdir(parents=True)
    a = _scan_file(data / "a" / "x.gsf", 0)
    b = _scan_file(data / "b" / "deep" / "x.gsf", 1)  # the same name in another folder
    _scan_file(data / ".hidden.gsf", 2)
    (data / "notes.txt").write_text("hello")
    out = data / "out"  # inside the input folder
    recipe = {
        "steps": [
            {"step": "flatten", "method": "plane"},
            {"step": "write", "format": ".gsf", "name": "{stem} {channel}"},
        ]
    }
    result = run_batch(recipe, [data], out, workers=0)
    assert result.left_out == 1  # notes.txt; the hidden file is not counted
    assert [r.status for r in result.results] == ["ok", "ok"]
    first = out / "a" / "x Height (trace).gsf"
    second = out / "b" / "deep" / "x Height (trace).gsf"
    assert first.is_file() and second.is_file()
    np.testing.assert_allclose(
        read(second).channels[0].data, flatten(read(b).channels[0].data, "plane"), atol=1e-5
    )

    again = run_batch(recipe, [data], out, workers=0)  # the outputs in data/out are not inputs
    assert [(Path(r.input).name, r.status) for r in again.results] == [("x.gsf", "skipped (done)")] * 2
    items, _ = expand_inputs(
        [str(data / "**" / "*.gsf")], out
    )  # a recursive glob: the same, outputs left out
    assert [(i.path, i.sub) for i in items] == [(a, Path("a")), (b, Path("b/deep"))]
    # outputs of one folder that would overwrite each other: the later input fails, named
    _scan_file(data / "a" / "x.gwy", 3)
    clash = run_batch(recipe, [data / "a"], tmp_path / "o3", workers=0)
    statuses = {Path(r.input).name: (r.status, r.error) for r in clash.results}
    assert statuses["x.gsf"][0] == "ok" or statuses["x.gwy"][0] == "ok"
    failed = [e for s, e in statuses.values() if s == "failed"]
    assert len(failed) == 1 and "would overwrite" in failed[0] and "{file}" in failed[0]
    assert os.path.isfile(tmp_path / "o3" / "x Height (trace).gsf")


def test_undefined_roughness_is_an_empty_cell_and_null_in_the_journal(sample, tmp_path):
    """This constant-height scan's Z is flat: its skewness and kurtosis are undefined, on the
    first run and when a rerun takes the figures back from the journal."""
    recipe = {"channels": ["Z (forward)"], "steps": [{"step": "measure", "method": "roughness"}]}
    inputs = [str(sample("nanonis_sxm/A151216.123306-02602.sxm"))]
    out = tmp_path / "out"

    def no_nan(token):
        raise AssertionError(f"non-standard JSON token {token}")

    for status in ("ok", "skipped (done)"):
        run_batch(recipe, inputs, out, workers=0)
        (row,) = summary_rows(out)
        assert row["status"] == status
        assert row["Z (forward): Ssk"] == row["Z (forward): Sku"] == "" and row["Z (forward): Sq [nm]"] == "0"
    (line,) = (out / JOURNAL_NAME).read_text().splitlines()
    assert json.loads(line, parse_constant=no_nan)["measurements"]["Z (forward): Ssk"] is None
