"""Bad input ends in one clear ReaderError -- never a parser traceback, a hang or a huge allocation.

Includes a fuzz test that mutates every real sample (truncations, bit flips, header number
edits) with a fixed seed and a bounded count.
"""

from __future__ import annotations

import json
import re
import signal
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from napari_scanprobe.io import ReaderError, find_format, read
from napari_scanprobe.io.sniff import all_format_modules
from tests.conftest import SAMPLES_DIR

GT_PATH = SAMPLES_DIR / "ground_truth.json"
GT = json.loads(GT_PATH.read_text()) if GT_PATH.is_file() else {}
READABLE = sorted(k for k, v in GT.items() if v.get("kind") in ("image", "movie")) or ["<no samples>"]
SECONDS_PER_READ = 10
MUTATIONS_PER_FILE = 16


@contextmanager
def deadline(seconds: int, what: str):
    def alarm(signum, frame):
        raise AssertionError(f"{what}: still running after {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def read_or_decline(path: Path, budget_bytes: int) -> str:
    """Read ``path`` and every pixel of it (every frame of movies); return "read" or "declined".
    Anything else fails."""
    tracemalloc.start()
    try:
        with deadline(SECONDS_PER_READ, path.name):
            try:
                scan = read(path)
                for ch in scan.channels:
                    np.asarray(ch.data)
                    assert ch.data.ndim in (2, 3)
                    assert all(np.isfinite(v) and v > 0 for v in ch.pixel_size), ch.pixel_size
                    json.dumps(ch.facts(), allow_nan=False)  # what `scanprobe info --json` prints
                outcome = "read"
            except ReaderError as exc:
                assert path.name in str(exc), f"the error must name the file: {exc}"
                assert exc.reason and "Traceback" not in exc.reason
                outcome = "declined"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < budget_bytes, (
        f"{path.name}: allocated {peak / 1e6:.0f} MB for a {path.stat().st_size} byte file"
    )
    return outcome


def _budget(size: int) -> int:
    return 64 * size + 64_000_000


def mutants(data: bytes, rng: np.random.Generator):
    """(label, bytes) pairs: truncations, bit flips and header-number edits of ``data``."""
    n = len(data)
    for frac in (0.0005, 0.01, 0.1, 0.5, 0.9, 0.999):
        cut = max(1, int(n * frac))
        yield f"truncated at {cut}", data[:cut]
    for k in range(4):
        buf = bytearray(data)
        head = min(n, 4096)
        for pos in rng.integers(0, head, size=4 + 4 * k):
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        yield f"bit flips #{k}", bytes(buf)
    for k in range(2):  # anywhere in the file: pixel data and compressed chunks too
        buf = bytearray(data)
        for pos in rng.integers(0, n, size=16):
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        yield f"bit flips anywhere #{k}", bytes(buf)
    numbers = [m for m in re.finditer(rb"\d{2,}", data[:65536])]
    for k in range(MUTATIONS_PER_FILE - 10):
        if not numbers:
            break
        m = numbers[int(rng.integers(0, len(numbers)))]
        big = (b"9" * len(m.group()), b"1000000000", b"1e308", b"1e-320")[k % 4]
        yield f"number {m.group()[:12]!r}@{m.start()} -> {big!r}", data[: m.start()] + big + data[m.end() :]
    for copies in (10, 400):  # a piece of the header repeated: a small file must not become a huge read
        start = int(rng.integers(0, min(n, 4096)))
        chunk = data[start : start + int(rng.integers(16, 1024))]
        yield f"header bytes @{start} x{copies}", data[:start] + chunk * copies + data[start:]


@pytest.mark.parametrize("relpath", READABLE)
def test_fuzzed_samples_read_or_decline_cleanly(relpath, samples_dir, tmp_path):
    original = (samples_dir / relpath).read_bytes()
    rng = np.random.default_rng(sum(relpath.encode()))  # fixed per file, independent of hash seeds
    suffix = "".join(Path(relpath).suffixes)
    outcomes = []
    for i, (label, data) in enumerate(mutants(original, rng)):
        target = tmp_path / f"mutant{i}{suffix}"
        target.write_bytes(data)
        try:
            outcomes.append(read_or_decline(target, _budget(len(original))))
        except AssertionError as exc:
            raise AssertionError(f"{relpath} ({label}): {exc}") from None
        except Exception as exc:
            raise AssertionError(f"{relpath} ({label}): {type(exc).__name__} escaped: {exc}") from None
    assert "declined" in outcomes, "no mutation was declined: the truncations at least must be"


@pytest.mark.parametrize("module", [m.FORMAT for m in all_format_modules()])
def test_every_format_declines_empty_and_random_files(module, tmp_path):
    mod = next(m for m in all_format_modules() if m.FORMAT == module)
    rng = np.random.default_rng(1)
    for ext in mod.EXTENSIONS:
        for label, data in (("empty", b""), ("random", rng.bytes(20000)), ("text", b"hello world\n" * 100)):
            path = tmp_path / f"{label}{ext}"
            path.write_bytes(data)
            assert find_format(path) is None, f"{module} sniff claims {label} bytes named *{ext}"
            with pytest.raises(ReaderError) as info:
                read(path)
            assert path.name in str(info.value)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ReaderError, match="no such file"):
        read(tmp_path / "nothing.spm")
    with pytest.raises(ReaderError, match="folder"):
        read(tmp_path)


def test_every_sample_is_claimed_by_exactly_its_own_sniffer(samples_dir):
    """Content sniffing: no sniffer claims another vendor's sample."""
    for relpath, ref in GT.items():
        path = samples_dir / relpath
        head = path.read_bytes()[:4096]
        claims = [m.FORMAT for m in all_format_modules() if m.sniff(path, head)]
        if ref.get("kind") in ("image", "movie"):
            assert len(claims) == 1, f"{relpath}: claimed by {claims}"
        else:
            assert len(claims) <= 1, f"{relpath}: claimed by {claims}"
