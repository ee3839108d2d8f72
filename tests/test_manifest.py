"""The npe2 manifest: valid, the root file is the packaged one, menus exist, patterns cover every format."""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from pathlib import Path

import yaml

import napari_scanprobe
from napari_scanprobe.io.sniff import all_format_modules

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = Path(napari_scanprobe.__file__).parent / "napari.yaml"


def test_npe2_validate_passes():
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run([str(npe2), "validate", "napari-scanprobe"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_root_manifest_is_the_packaged_one():
    root = ROOT / "napari.yaml"
    assert root.is_symlink(), "napari.yaml at the repository root must be a symlink"
    assert root.resolve() == PACKAGED.resolve()


def _manifest() -> dict:
    return yaml.safe_load(PACKAGED.read_text())


def test_menu_ids_exist_in_napari():
    from napari._app_model.constants import MenuId

    known = {m.value for m in MenuId}
    for menu in _manifest()["contributions"].get("menus", {}):
        assert menu in known, f"menu id {menu!r} does not exist in napari: the menu would never appear"


def _claimed(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(name.lower(), p.lower()) for p in patterns)


def test_filename_patterns_cover_every_format_extension_but_shared_ones():
    from napari_scanprobe.gui.reader import SHARED_EXTENSIONS

    patterns = _manifest()["contributions"]["readers"][0]["filename_patterns"]
    for module in all_format_modules():
        for ext in module.EXTENSIONS:
            name = f"scan{ext}"
            assert _claimed(name, patterns) != (ext in SHARED_EXTENSIONS), (
                f"{module.FORMAT}: {name} claimed"
                if ext in SHARED_EXTENSIONS
                else f"{module.FORMAT}: {name} not claimed"
            )


def test_plain_images_and_text_open_without_a_reader_choice(tmp_path, sample):
    """napari asks the user to choose only when several readers match: ours must not match
    ordinary TIFF, text or .dat files, so napari's own reader opens a TIFF at once."""
    import npe2
    from napari.plugins import _npe2

    npe2.PluginManager.instance().discover()  # as napari does at start-up
    for name in ("photo.tif", "stack.TIFF", "notes.txt", "table.dat"):
        (tmp_path / name).write_bytes(b"II*\x00" + bytes(64))
        readers = _npe2.get_readers(str(tmp_path / name))
        assert "napari-scanprobe" not in readers, name
    assert "napari-scanprobe" in _npe2.get_readers(str(sample("nanonis_sxm/test.sxm")))


def test_nanoscope_numbered_extensions_match():
    patterns = _manifest()["contributions"]["readers"][0]["filename_patterns"]
    assert any(fnmatch.fnmatch("image.007", p) for p in patterns)


def test_manifest_commands_import():
    import importlib

    for command in _manifest()["contributions"]["commands"]:
        module, attr = command["python_name"].split(":")
        assert hasattr(importlib.import_module(module), attr), command["python_name"]
