"""Hostile or careless input -- recipes, model files, output folders, odd files -- ends in one
clear error within 2 s and under 100 MB, never a hang, a traceback or a huge allocation."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from napari_scanprobe.batch import CLAIMS_NAME, SUMMARY_NAME, claim, release, run_batch
from napari_scanprobe.cli import main
from napari_scanprobe.io.scan import Channel
from napari_scanprobe.io.write import write
from napari_scanprobe.learn.modelfile import FORMAT, load_model
from napari_scanprobe.nn.weights import save_weights
from napari_scanprobe.recipe import load_recipe

WRITE = {"step": "write", "format": ".gsf", "name": "{stem} {channel}"}


def quickly(func, *args, error=ValueError, match=None):
    """Call ``func``: it must raise ``error`` (message matching) within 2 s and 100 MB."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(error, match=match) as info:
            func(*args)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"took {elapsed:.1f} s"
    assert peak < 100e6, f"peak {peak / 1e6:.0f} MB"
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    return message


def _scan(path: Path) -> Path:
    rng = np.random.default_rng(0)
    write(path, Channel(rng.normal(0, 1, (16, 16)), "Height", "trace", "nm", (2.0, 2.0)))
    return path


# ----------------------------------------------------------------------------- recipes


def test_the_billion_laughs_recipe_is_refused_at_once(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    lines.append("steps: *i")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 800
    message = quickly(load_recipe, str(bomb), match="anchors")
    assert "bomb.yaml" in message
    rc = main(["batch", str(bomb), str(tmp_path), "-o", str(tmp_path / "out")])
    assert rc == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"steps": [{"step": "flatten", "options": {"threshold": 1e999}}]}', "too large"),
        ('{"version": 1' + "0" * 400 + ', "steps": []}', "more than 30 digits"),
        ('{"steps": ' + "[" * 5000 + "]" * 5000 + "}", "JSON"),
        (
            '{"steps": [{"step": "denoise", "method": "nl_means", "options": {"patch_size": 1000000}}]}',
            "patch_size",
        ),
        ('{"steps": [{"step": "flatten", "options": {"threshold": NaN}}]}', "NaN"),
        ('{"steps": [{"step": {"a": 1}}]}', "unknown step"),
        ('{"steps": [{"step": "write", "name": "{channel:>999999999}"}]}', "format spec"),
        ('{"steps": [{"step": "write", "name": "{channel!r}"}]}', "format spec"),
        ('{"steps": [{"step": "write", "name": "a\\nb {channel}"}]}', "control character"),
        ('{"steps": [{"step": "write", "name": "a\\u0000b {channel}"}]}', "control character"),
        ('{"channels": ["' + "x" * 100000 + '", 5], "steps": [{"step": "flatten"}]}', "channels"),
        ('{"steps": [{"step": "denoise", "method": "tv", "options": {"seed": -3}}]}', "seed"),
        ('{"steps": [{"step": "upscale", "method": "cnn", "options": {"device": "cuda"}}]}', "for scripts"),
    ],
)
def test_bad_recipes_give_one_short_line(tmp_path, text, words):
    path = tmp_path / "r.json"
    path.write_text(text)
    message = quickly(load_recipe, str(path), match=None)
    assert words in message and "r.json" in message, message


def test_yaml_numbers_too_big_and_tags_are_refused(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("steps:\n  - {step: flatten, options: {threshold: 1.0e+999}}\n")
    assert "finite" in quickly(load_recipe, str(path))
    path.write_text("steps: !!python/object/apply:os.system ['true']\n")
    assert "r.yaml" in quickly(load_recipe, str(path))


def test_a_recipe_path_that_is_a_pipe_is_not_opened(tmp_path):
    fifo = tmp_path / "r.yaml"
    os.mkfifo(fifo)
    assert "not a regular file" in quickly(load_recipe, str(fifo))


# ----------------------------------------------------------------------------- model files


def _model_file(tmp_path, **changes) -> Path:
    description = {
        "format_version": 1,
        "architecture": {"name": "scanprobe-cnn", "blocks": 2, "filters": 4, "kernel_size": 3, "head": "gap"},
        "categories": ["a", "b"],
        "channels": [],
        "pixel_size_nm": None,
        "input_size": 32,
        "preprocessing": [],
    }
    description.update(changes)
    return save_weights(tmp_path / "m", {"w": np.zeros(4, np.float32)}, description, FORMAT)


def test_an_oversized_architecture_is_refused_before_any_tensor(tmp_path):
    arch = {"name": "scanprobe-cnn", "blocks": 8, "filters": 512, "kernel_size": 15, "head": "dense"}
    path = _model_file(tmp_path, architecture=arch, input_size=4096)
    before = set(sys.modules)
    message = quickly(load_model, path, match="limits")
    assert "m.json" in message
    assert "torch" not in set(sys.modules) - before  # decided from the numbers alone


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d.replace('"input_size": 32', '"input_size": 1e999'), "OverflowError"),
        (lambda d: d.replace('"input_size": 32', '"input_size": 1' + "0" * 400), "input_size"),
        (lambda d: d.replace('"preprocessing": []', '"preprocessing": [], "metrics": 5'), "metrics"),
        (
            lambda d: d.replace('"preprocessing": []', '"preprocessing": ' + "[" * 20000 + "]" * 20000),
            "m.json",
        ),
        (lambda d: d.replace('"categories": [', '"categories": 7, "x": ['), "m.json"),
    ],
)
def test_damaged_model_descriptions_give_one_line(tmp_path, edit, words):
    path = _model_file(tmp_path)
    description = path.with_suffix(".json")
    description.write_text(edit(description.read_text()))
    message = quickly(load_model, path, error=(ValueError, OSError))
    assert words in message, message


# ----------------------------------------------------------------------------- batch and CLI


def test_an_unusable_output_folder_stops_the_batch_before_any_work(tmp_path, monkeypatch):
    scan = _scan(tmp_path / "a.gsf")
    in_the_way = tmp_path / "file"
    in_the_way.write_text("x")
    ran = []
    monkeypatch.setattr("napari_scanprobe.batch.process_input", lambda *a: ran.append(a))
    recipe = {"steps": [WRITE]}
    for outdir in (in_the_way, in_the_way / "sub"):
        with pytest.raises((ValueError, OSError)) as info:
            run_batch(recipe, [scan], outdir, workers=0)
        assert str(in_the_way) in str(info.value)
    assert not ran


def test_empty_files_and_pipes_are_recorded_as_failed_and_never_opened(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _scan(data / "good.gsf")
    (data / "empty.gsf").write_bytes(b"")
    os.mkfifo(data / "pipe.gsf")
    result = run_batch({"steps": [WRITE]}, [data, data / "pipe.gsf"], tmp_path / "out", workers=0)
    status = {Path(r.input).name: (r.status, r.error) for r in result.results}
    assert status["good.gsf"][0] == "ok"
    assert status["empty.gsf"] == ("failed", f"{data / 'empty.gsf'}: empty file (0 bytes)")
    assert status["pipe.gsf"][0] == "failed" and "not a regular file" in status["pipe.gsf"][1]
    with open(tmp_path / "out" / SUMMARY_NAME, newline="") as fh:
        rows = {Path(r["input"]).name: r["status"] for r in csv.DictReader(fh)}
    assert rows == {"good.gsf": "ok", "empty.gsf": "failed", "pipe.gsf": "failed"}


def test_two_batches_into_one_folder_share_the_work(tmp_path):
    files = [_scan(tmp_path / f"s{i}.gsf") for i in range(3)]
    out = tmp_path / "out"
    recipe = load_recipe({"steps": [{"step": "flatten", "method": "plane"}, WRITE]})
    claims = out / CLAIMS_NAME
    claims.mkdir(parents=True)
    # another batch, alive, holds s1: this one leaves it alone
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert claim(claims, str(files[1]), recipe.fingerprint())
        held = next(claims.iterdir())
        held.write_text(f"{socket.gethostname()} {other.pid}\n")
        result = run_batch(recipe, files, out, workers=0)
        assert [r.status for r in result.results] == ["ok", "skipped (another batch)", "ok"]
        assert not (out / "s1 Height (trace).gsf").exists()
    finally:
        other.kill()
        other.wait()
    # its process is gone: the claim is stale and taken over; finished files are not redone
    again = run_batch(recipe, files, out, workers=0)
    assert [r.status for r in again.results] == ["skipped (done)", "ok", "skipped (done)"]
    assert list(claims.iterdir()) == []  # every claim released


def test_a_claim_is_exclusive_until_released(tmp_path):
    assert claim(tmp_path, "x.gsf", "f")
    assert not claim(tmp_path, "x.gsf", "f")  # this process holds it
    assert claim(tmp_path, "x.gsf", "other recipe")
    release(tmp_path, "x.gsf", "f")
    assert claim(tmp_path, "x.gsf", "f")


def test_the_cli_turns_any_error_into_one_line(tmp_path, monkeypatch, capsys):
    def explode(args):
        raise RuntimeError("something deep\nwent wrong")

    monkeypatch.setattr("napari_scanprobe.cli.cmd_info", explode)
    assert main(["info", "x"]) == 1
    err = capsys.readouterr().err
    assert err == "scanprobe info: error: something deep went wrong\n"


def test_train_checks_its_output_folder_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    start = time.perf_counter()
    assert main(["train", str(tmp_path / "no data"), "-o", str(tmp_path / "file" / "model")]) == 1
    assert time.perf_counter() - start < 2
    assert "not a folder" in capsys.readouterr().err


def test_predict_takes_npy_from_folders_like_every_command(tmp_path):
    from napari_scanprobe.inputs import expand_inputs

    data = tmp_path / "d"
    data.mkdir()
    np.save(data / "a.npy", np.zeros((8, 8)))
    _scan(data / "b.gsf")
    (data / "notes.txt").write_text("hello")
    items, left_out = expand_inputs([data])
    assert [i.path.name for i in items] == ["a.npy", "b.gsf"] and left_out == 1
    result = run_batch(
        {"steps": [{"step": "flatten", "method": "plane"}, WRITE]}, [data], tmp_path / "o", workers=0
    )
    assert [r.status for r in result.results] == ["ok", "ok"]
    assert (tmp_path / "o" / "a image.gsf").is_file()


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("r.json", '{"steps": [{"step": "flatten"}, {"step": "a\\nb"}]}'),  # a step name with a newline
        ("r.yaml", 'steps:\n  - {step: flatten}\n  - {step: "a\x00b"}\n'),  # a control character in YAML
        ("r.yaml", "steps: [{step: flatten}]\x0b\n"),
        ("r.json", '{"steps": [{"step": "' + "x" * 100_000 + '"}]}'),  # a huge step name is not quoted whole
        (
            "r.json",
            '{"steps": [{"step": "predict", "model": "' + "x" * 1000 + '", "sha256": "' + "0" * 64 + '"}]}',
        ),
        ("r.json", '{"steps": [{"step": "predict", "model": "a\\nb", "sha256": "' + "0" * 64 + '"}]}'),
    ],
)
def test_control_characters_never_break_the_one_line(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    message = quickly(load_recipe, str(path), match=None)
    assert "\n" not in message and name in message, message
