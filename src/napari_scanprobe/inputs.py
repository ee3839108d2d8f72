"""The one rule for what a command's inputs are (``scanprobe predict``, ``cam``, ``batch``).

An input is a file, a folder or a glob pattern (``**`` recursive):

* a **file** given by name is always taken (the reader then says what is wrong with it);
* a **folder** gives every file inside it, recursively, that a reader claims (an SPM file) or
  that is a plain image array (``.npy``, ``.tif``, ``.tiff``); hidden files and folders, and
  anything inside the output folder, are skipped; other files are *left out* and counted;
* a **glob pattern** gives the files it matches, with the same rule as a folder.

An empty (0-byte) file, a named pipe, a device or a socket is never opened: it becomes an
input with an ``error`` (recorded as failed), as does a name that matches nothing. The same
file reached twice is taken once. :func:`read_input` reads one input: an SPM file, or a plain
array as a scan of one channel called ``image`` (no pixel size).
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .learn.data import ARRAY_SUFFIXES  # plain image arrays every command accepts beside SPM files


@dataclass
class Input:
    """One file to process; ``sub``: its folder relative to the folder or pattern it came from
    (outputs keep that structure); ``error``: why it cannot be run (recorded as failed)."""

    path: Path
    sub: Path = Path()
    error: str = ""


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _hidden(path: Path, root: Path) -> bool:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = (path.name,)
    return any(p.startswith(".") for p in parts)


def _glob_root(pattern: str) -> Path:
    """The folder part of ``pattern`` before its first wildcard."""
    root = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def unusable(path: Path) -> str:
    """Why ``path`` cannot be read without opening it ('' when it is a non-empty regular file)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"{path}: cannot access the file ({exc.strerror})"
    if stat.S_ISDIR(info.st_mode):
        return ""
    if not stat.S_ISREG(info.st_mode):
        return f"{path}: not a regular file (a named pipe, device or socket is not read)"
    if info.st_size == 0:
        return f"{path}: empty file (0 bytes)"
    return ""


def _wanted(path: Path) -> bool:
    """The folder rule: a reader claims it, or it is a plain image array."""
    from .io import find_format

    return path.suffix.lower() in ARRAY_SUFFIXES or find_format(path) is not None


def expand_inputs(
    inputs: Iterable[str | os.PathLike], outdir: str | os.PathLike | None = None
) -> tuple[list[Input], int]:
    """``(inputs, left_out)`` by the rule in the module docstring; ``outdir`` is skipped."""
    out_resolved = Path(outdir).resolve() if outdir is not None else None
    found: list[Input] = []
    seen: set[Path] = set()
    left_out = 0

    def add(path: Path, sub: Path, from_folder: bool) -> None:
        nonlocal left_out
        key = path.resolve()
        if key in seen:
            return
        error = unusable(path)
        if from_folder and not error and not _wanted(path):
            left_out += 1
            return
        seen.add(key)
        found.append(Input(path, sub, error))

    def entries(matches: Iterable[Path]) -> list[Path]:
        return [m for m in matches if not m.is_dir() and not _inside(m, out_resolved)]

    for item in inputs:
        name = str(item)
        path = Path(name)
        if path.is_dir():
            for f in entries(sorted(path.rglob("*"))):
                if not _hidden(f, path):
                    add(f, f.parent.relative_to(path), True)
        elif os.path.lexists(path):
            add(path, Path(), False)
        elif glob.has_magic(name):
            root = _glob_root(name)
            matches = entries(Path(m) for m in sorted(glob.glob(name, recursive=True)))
            if not matches:
                found.append(Input(path, Path(), f"{name}: no file matches this pattern"))
            for m in matches:
                try:
                    sub = m.parent.relative_to(root)
                except ValueError:
                    sub = Path()
                add(m, sub, True)
        else:
            found.append(Input(path, Path(), f"{name}: no such file or folder"))
    return found, left_out


def read_input(path: str | os.PathLike):
    """The :class:`~napari_scanprobe.io.scan.Scan` of one input: an SPM file, or a plain array
    (``.npy``/``.tif``) as one channel ``image``. ReaderError naming the file otherwise."""
    from .io import ReaderError, read
    from .io.scan import Channel, Scan

    path = Path(path)
    problem = unusable(path)
    if problem:
        raise ReaderError(path, problem.split(": ", 1)[1])
    try:
        return read(path)
    except ReaderError:
        if path.suffix.lower() not in ARRAY_SUFFIXES:
            raise
    from .learn.data import read_example

    example = read_example(path)
    return Scan(
        str(path), "array", [Channel(example.channels[0], "image", pixel_size=(1.0, 1.0), xy_unit="")]
    )
