"""Vendor-neutral channel roles and directions, read from the real instrument files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_scanprobe.cli import main
from napari_scanprobe.io import read
from napari_scanprobe.io.scan import ROLES, Channel, find_channel, role_for, role_of_title, select_channels

#: relpath -> {title: role} for channels of every format the samples hold (None: the file does not say)
EXPECTED = {
    "asylum_ibw/AR_20211011.ibw": {"Height (retrace)": "topography", "Amplitude (retrace)": "amplitude",
                                   "Phase (retrace)": "phase", "ZSensor (retrace)": "topography"},
    "asylum_ibw/IgorIBWReader_P0089OP0027.ibw": {"Deflection (retrace)": "deflection", "UserIn0 (retrace)": None},
    "bruker_nanoscope/full_multiple_images.txt": {"Height (retrace)": "topography", "Amplitude (retrace)": "amplitude"},
    "bruker_nanoscope/old_bruker.002": {"Height (trace)": "topography"},
    "gwyddion_gsf/GwiddionReader_chip.gsf": {"Topography": "topography"},
    "gwyddion_gwy/PTO_110_Virgin0001.gwy": {"Height (retrace)": "topography", "Deflection (retrace)": "deflection"},
    "gwyddion_gwy/GwiddionReader_chip.gwy": {"Channel 0": None},
    "hsafm_asd/202110200146.asd": {"Height": "topography", "Phase": "phase"},
    "jpk/sample_0.jpk": {"Height (retrace)": "topography", "Height (measured) (trace)": "topography",
                         "Lock-In Amplitude (trace)": "amplitude", "Lock-In Phase (trace)": "phase",
                         "Error Signal (trace)": "error"},
    "jpk/sample_0.jpk-qi-image": {"Height (measured) (trace)": "topography", "Vertical Deflection (trace)": "deflection",
                                  "Adhesion (trace)": "adhesion", "Slope (trace)": "stiffness"},
    "jpk/sample_0.h5-jpk": {"Height (trace)": "topography", "Height (measured) (trace)": "topography",
                            "Error Signal (retrace)": "error", "Lock-In Phase (retrace)": "phase"},
    "nanonis_sxm/A151216.123306-02602.sxm": {"Z (forward)": "topography", "Current (backward)": "current",
                                             "Frequency_Shift (forward)": "frequency", "Phase (forward)": "phase",
                                             "Amplitude (forward)": "amplitude", "Input_4 (forward)": None},
    "nanosurf_nid/NanoSurf_20160301.nid": {"Z-Axis (forward)": "topography", "Amplitude (backward)": "amplitude"},
    "ntmdt_mdt/test_mdt.mdt": {"Iprobe (forward)": "current"},
    "omicron_matrix/20201111--4_1.Z_mtrx": {"Z (trace)": "topography", "Z (retrace)": "topography"},
    "park_tiff/Park_20210916_034.tiff": {"Topography (forward)": "topography"},
    "rhk_sm4/topo_ABC_Graphite-Sample5_9K_2021_08_13_19_11_10_065.sm4": {
        "Topography (forward)": "topography", "Current (backward)": "current", "LIA Current (forward)": None},
    "wsxm/sample_0.top": {"Topography (forward)": "topography"},
}  # fmt: skip


@pytest.mark.parametrize("relpath", sorted(EXPECTED))
def test_every_format_sets_the_role_its_file_says(relpath, sample):
    scan = read(sample(relpath))
    roles = {ch.title: ch.role for ch in scan.channels}
    for title, role in EXPECTED[relpath].items():
        assert title in roles, f"{relpath}: no channel {title!r} (has {sorted(roles)})"
        assert roles[title] == role, f"{relpath} {title!r}: role {roles[title]!r}, expected {role!r}"
    assert all(r is None or r in ROLES for r in roles.values())


def test_every_image_format_is_covered(ground_truth):
    formats = {rel.split("/")[0] for rel, v in ground_truth.items() if v.get("kind") in ("image", "movie")}
    assert formats <= {rel.split("/")[0] for rel in EXPECTED}


def test_direction_words_pair_trace_with_forward():
    data = np.zeros((4, 4))
    assert Channel(data, "Z", "forward").sweep == Channel(data, "Height", "trace").sweep == "forward"
    assert Channel(data, "Z", "backward").sweep == Channel(data, "Height", "retrace").sweep == "backward"
    assert Channel(data, "Z").sweep is None
    with pytest.raises(ValueError, match="role"):
        Channel(data, "Z", role="height")


def test_the_role_a_title_stands_for():
    assert (
        role_of_title("Z (forward)")
        == role_of_title("topography")
        == role_of_title(" HEIGHT ")
        == "topography"
    )
    assert role_of_title("Lock-In Phase (retrace)") == "phase"
    assert role_of_title("UserIn0") is None


def test_a_height_in_volts_is_not_topography():
    assert role_for("Height", "nm") == "topography"
    assert role_for("Height", "V") is None
    assert role_for("Z", "nm", {"z": None}) is None  # a format's own words come first


def test_channels_are_found_by_title_name_or_role(sample):
    nanonis = read(sample("nanonis_sxm/test.sxm")).channels
    jpk = read(sample("jpk/sample_0.jpk")).channels
    assert find_channel(nanonis, "Z (backward)").title == "Z (backward)"  # titles still work
    assert find_channel(nanonis, "current").title == "Current (forward)"  # a name: the first of it
    assert find_channel(nanonis, "topography (retrace)").title == "Z (backward)"  # a role, retrace = backward
    assert find_channel(nanonis, "Height (trace)").title == "Z (forward)"  # Bruker words on a Nanonis file
    assert find_channel(jpk, "Z (forward)").title == "Height (trace)"  # Nanonis words on a JPK file
    assert (
        find_channel(jpk, "topography").title == "Height (retrace)"
    )  # no direction: the first in file order
    assert find_channel(nanonis, "Phase") is None
    with pytest.raises(ValueError, match=r"no channel 'Phase'.*Z \(forward\)' \(topography\)"):
        select_channels(nanonis, ["Phase"], "test.sxm")
    assert select_channels(nanonis, []) == nanonis[:1]


def test_a_role_without_a_direction_in_the_file_still_matches(sample):
    channels = read(sample("gwyddion_gsf/GwiddionReader_chip.gsf")).channels
    assert find_channel(channels, "Height (retrace)").title == "Topography"


def test_info_shows_the_role(sample, capsys):
    path = str(sample("nanonis_sxm/test.sxm"))
    assert main(["info", "--json", path]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [c["role"] for c in record["channels"]] == ["topography", "topography", "current", "current"]
    assert main(["info", path]) == 0
    assert "topography" in capsys.readouterr().out


def test_the_role_survives_a_scanprobe_tif(sample, tmp_path):
    from napari_scanprobe.io.write import write

    channel = read(sample("nanonis_sxm/test.sxm")).channels[2]
    out = write(tmp_path / "current.tif", channel)
    again = read(out).channels[0]
    assert (again.role, again.direction) == ("current", "forward")
