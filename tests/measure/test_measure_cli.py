"""``scanprobe measure``: roughness of every channel, a profile as CSV, clear errors."""

from __future__ import annotations

import csv
import json

import pytest

from napari_scanprobe import read
from napari_scanprobe.cli import main
from napari_scanprobe.measure import profile, roughness
from napari_scanprobe.process.flatten import flatten


def test_roughness_of_every_channel_as_json(sample, capsys):
    path = sample("nanonis_sxm/test.sxm")
    assert main(["measure", str(path), "--flatten", "plane", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()[1:]]
    scan = read(path)
    assert [d["channel"] for d in lines] == [ch.title for ch in scan.channels]
    z = scan.channels[0]
    want = roughness(flatten(z.data, "plane"), pixel_size=z.pixel_size)
    assert lines[0]["Sq"] == pytest.approx(want.Sq) and lines[0]["units"]["Sq"] == "nm"


def test_profile_csv_written_to_a_file(sample, tmp_path):
    path = sample("nanonis_sxm/test.sxm")
    out = tmp_path / "p.csv"
    assert main(["measure", str(path), "--profile", "100,100,900,2000", "--width", "40", "-o", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    scan = read(path)
    want = profile(scan, [(100, 100), (900, 2000)], width=40)
    assert rows[0][0] == "distance [nm]" and len(rows) == len(want.distance) + 1
    assert float(rows[5][1]) == pytest.approx(want.values["Z (forward)"][4], rel=1e-6)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--profile", "1,2,3"], "Y0,X0,Y1,X1"),
        (["--profile", "1,2,a,b"], "Y0,X0,Y1,X1"),
        (["--flatten", "nope"], "nope"),
        (["--profile", "0,0,1e12,1e12"], "samples"),
    ],
)
def test_bad_options_give_one_line(sample, capsys, extra, message):
    assert main(["measure", str(sample("nanonis_sxm/test.sxm")), *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("scanprobe measure: error:") and message in err and "Traceback" not in err


def test_a_flat_channel_gives_standard_json_and_readable_text(sample, capsys):
    """This constant-height scan's Z is one value everywhere: skewness and kurtosis are undefined."""
    path = str(sample("nanonis_sxm/A151216.123306-02602.sxm"))

    def no_nan(token):
        raise AssertionError(f"non-standard JSON token {token}")

    assert main(["measure", path, "--json"]) == 0
    lines = [json.loads(line, parse_constant=no_nan) for line in capsys.readouterr().out.splitlines()[1:]]
    z = lines[0]
    assert z["channel"] == "Z (forward)" and z["Sq"] == 0 and z["Ssk"] is None and z["Sku"] is None
    assert str(z["Sv"]) == "0.0"  # not -0.0
    assert main(["measure", path]) == 0
    text = capsys.readouterr().out.splitlines()[1]
    assert text.startswith("  Z (forward): Sa 0 nm") and "Ssk n/a  Sku n/a" in text and "-0" not in text
