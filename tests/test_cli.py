"""The scanprobe command line."""

from __future__ import annotations

import json
import subprocess
import sys

from napari_scanprobe.cli import main


def test_info_human(sample, capsys):
    assert main(["info", str(sample("nanonis_sxm/test.sxm"))]) == 0
    out = capsys.readouterr().out
    assert "sxm" in out and "Z (forward)" in out and "256 x 256" in out and "nm" in out
    assert "[sxm, 4 channels]" in out


def test_info_says_one_channel_in_the_singular(sample, capsys):
    assert main(["info", str(sample("hsafm_asd/asd_sample_0.asd"))]) == 0
    assert "[asd, 1 channel]" in capsys.readouterr().out


def test_info_json_one_object_per_file(sample, capsys):
    files = [str(sample("nanonis_sxm/test.sxm")), str(sample("hsafm_asd/asd_sample_0.asd"))]
    assert main(["info", "--json", *files]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    first, movie = (json.loads(line) for line in lines)
    assert first["format"] == "sxm" and len(first["channels"]) == 4
    assert first["channels"][0]["shape"] == [256, 256]
    assert movie["channels"][0]["frames"] == 32


def test_info_bad_file_fails_clearly(tmp_path, capsys):
    bad = tmp_path / "broken.sxm"
    bad.write_bytes(b"\x00" * 10)
    assert main(["info", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "broken.sxm" in err and "Traceback" not in err


def test_demo_headless_runs_the_pipeline():
    result = subprocess.run(
        [sys.executable, "-m", "napari_scanprobe.cli", "demo", "--headless"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "4 layers" in result.stdout and "flatten auto" in result.stdout
    assert "Height (trace)" in result.stdout and "nm" in result.stdout


def test_progress_bar_shows_one_time_left():
    import io

    from napari_scanprobe.cli import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar("training", stream=stream)
    bar.update(0.5, "step 1/2")  # nothing said about the time left: tqdm's estimate
    bar.bar.refresh()
    assert "<" in stream.getvalue().rsplit("\r", 1)[-1]
    bar.update(0.6, "epoch 2/40, about 7 min left", own_estimate=True)
    bar.bar.refresh()
    last = stream.getvalue().rsplit("\r", 1)[-1]
    assert "about 7 min left" in last and "<" not in last
    bar.close()
