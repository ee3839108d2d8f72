"""Fuzzing campaign over the untrusted inputs: SPM files, recipe files, model files.

Each case mutates a valid input (a real sample from ../shared/spm-samples, a recipe, a model
saved in code), runs the matching loader in a forked worker process (a pool of ``--jobs``, each
recycled after ``--recycle`` cases; one that hangs or dies is replaced) under a CPU-time and a
memory limit, and is counted as one of

* ``ok``            -- the input was read (readers: every channel, first frame of movies);
* ``clear error``   -- ReaderError / ValueError / FileNotFoundError with a one-line message;
* ``unclear error`` -- one of those, but with a message over 2,000 characters or several lines;
* ``traceback``     -- any other exception (TypeError, OverflowError, RecursionError ...);
* ``hang``          -- still running after ``--timeout`` seconds of CPU (or ``--wall-limit`` s);
* ``crash``         -- the worker died (segfault, abort, out-of-memory kill);
* ``allocation``    -- peak RSS grew by more than 10x the input size (and over ``--floor-mb``),
  or the loader hit the memory limit / reported "not enough memory".

Usage (a long campaign, low priority, 2 processes)::

    nice -n 10 python benchmarks/fuzz.py --cases 20000 --jobs 2 --seed 1

``--targets readers,recipes,models`` picks what to fuzz; ``--keep DIR`` saves every input
whose outcome is not ok/clear error for replay (``python benchmarks/fuzz.py --replay FILE``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
SAMPLES = Path(os.environ.get("SCANPROBE_SAMPLES", ROOT.parent / "shared" / "spm-samples"))

OUTCOMES = ("ok", "clear error", "unclear error", "traceback", "hang", "crash", "allocation")
CLEAR_TYPES = ("ReaderError", "ValueError", "FileNotFoundError")

# ---------------------------------------------------------------------------------------
# byte mutations (SPM files, model weights, recipe text)
# ---------------------------------------------------------------------------------------

HOSTILE_NUMBERS = [b"0", b"-1", b"1e308", b"-1e308", b"1e-320", b"nan", b"inf", b"4294967295", b"2147483648",
                   b"999999999999", b"1000000000", b"65536", b"9" * 40]  # fmt: skip
HOSTILE_BINARY = [
    struct.pack("<I", v) for v in (0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 65536, 1 << 20)
] + [struct.pack("<d", v) for v in (1e308, -1e308, 5e-324, float("nan"), float("inf"), 0.0)]


def mutate_bytes(data: bytes, rng: np.random.Generator, others: list[bytes]) -> tuple[str, bytes]:
    """1-3 stacked mutations of ``data``; returns (label, bytes)."""
    labels = []
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        n = len(buf)
        if n == 0:
            break
        kind = int(rng.integers(0, 10))
        head = min(n, 65536)
        if kind == 0:  # truncation
            cut = int(rng.integers(0, n))
            del buf[cut:]
            labels.append(f"truncate@{cut}")
        elif kind == 1:  # bit flips in the header
            for pos in rng.integers(0, min(n, 4096), size=int(rng.integers(1, 33))):
                buf[pos] ^= 1 << int(rng.integers(0, 8))
            labels.append("flips-head")
        elif kind == 2:  # bit flips anywhere
            for pos in rng.integers(0, n, size=int(rng.integers(1, 65))):
                buf[pos] ^= 1 << int(rng.integers(0, 8))
            labels.append("flips")
        elif kind in (3, 4):  # a number in a text header
            numbers = list(re.finditer(rb"-?\d+(\.\d+)?([eE][-+]?\d+)?", bytes(buf[:head])))
            if numbers:
                m = numbers[int(rng.integers(0, len(numbers)))]
                new = HOSTILE_NUMBERS[int(rng.integers(0, len(HOSTILE_NUMBERS)))]
                buf[m.start() : m.end()] = new
                labels.append(f"number@{m.start()}={new[:12].decode()}")
        elif kind == 5:  # a binary field
            value = HOSTILE_BINARY[int(rng.integers(0, len(HOSTILE_BINARY)))]
            pos = int(rng.integers(0, max(1, head - len(value)))) & ~3
            buf[pos : pos + len(value)] = value
            labels.append(f"binary@{pos}")
        elif kind == 6:  # a header chunk repeated (amplification)
            start = int(rng.integers(0, head))
            length = int(rng.integers(1, min(4096, n - start) + 1))
            copies = int(rng.choice([2, 10, 100, 400]))
            chunk = bytes(buf[start : start + length])
            buf[start:start] = chunk * copies
            labels.append(f"repeat{copies}x{length}@{start}")
        elif kind == 7:  # insertion / deletion
            pos = int(rng.integers(0, n))
            if rng.random() < 0.5:
                buf[pos:pos] = rng.bytes(int(rng.integers(1, 64)))
                labels.append(f"insert@{pos}")
            else:
                del buf[pos : pos + int(rng.integers(1, 64))]
                labels.append(f"delete@{pos}")
        elif kind == 8 and others:  # splice with another file
            other = others[int(rng.integers(0, len(others)))]
            pos = int(rng.integers(0, n))
            buf[pos:] = other[pos : pos + int(rng.integers(1, 1 << 16))]
            labels.append(f"splice@{pos}")
        else:  # a run of one byte value
            pos = int(rng.integers(0, head))
            buf[pos : pos + int(rng.integers(1, 256))] = bytes([int(rng.choice([0, 0xFF, 0x7F]))]) * 8
            labels.append(f"fill@{pos}")
    return "+".join(labels) or "unchanged", bytes(buf)


# ---------------------------------------------------------------------------------------
# structural mutations (recipe and model documents)
# ---------------------------------------------------------------------------------------


HOSTILE_VALUES = [
    None, True, -1, 0, 2**63, 10**400, -(10**400), float("1e308"), 1e-320, "", "x" * 100_000,
    "{channel:>999999999}", "a\nb", "a\x00b", "../../etc/passwd", [], {}, [1, 2, 3], {"a": 1},
    512, 8, 15, 1e6, "1e999", "nan", 3.5, "Height (trace)", "topography",
]  # fmt: skip


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _paths(value, (*prefix, i))


def mutate_document(doc, rng: np.random.Generator):
    """A deep-copied ``doc`` with 1-3 nodes replaced, removed or given extra keys."""
    doc = json.loads(json.dumps(doc))
    labels = []
    for _ in range(int(rng.integers(1, 4))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        where = paths[int(rng.integers(0, len(paths)))]
        parent = doc
        for key in where[:-1]:
            parent = parent[key]
        action = rng.random()
        if action < 0.75:
            # a copy: a shared list or dict edited by a later mutation could come to hold itself
            value = copy.deepcopy(HOSTILE_VALUES[int(rng.integers(0, len(HOSTILE_VALUES)))])
            parent[where[-1]] = value
            labels.append(f"{'.'.join(map(str, where))}={str(value)[:20]!r}")
        elif action < 0.9 and isinstance(parent, dict):
            del parent[where[-1]]
            labels.append(f"del {'.'.join(map(str, where))}")
        elif isinstance(parent, dict):
            parent["unknown_key"] = copy.deepcopy(HOSTILE_VALUES[int(rng.integers(0, len(HOSTILE_VALUES)))])
            labels.append("extra key")
    return "+".join(labels), doc


def alias_bomb(depth: int, width: int, field: str) -> str:
    """A YAML "billion laughs": ``width ** depth`` strings from a few hundred bytes."""
    lines = ['a0: &a0 "lol"']
    for k in range(1, depth):
        lines.append(f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * width)}]")
    lines += ["format: napari-scanprobe recipe", "version: 1", "channels: []", "steps: [{step: flatten}]"]
    lines.append(f"{field}: *a{depth - 1}")
    return "\n".join(lines) + "\n"


RECIPES = [
    {"format": "napari-scanprobe recipe", "version": 1, "name": "flatten + denoise", "channels": [],
     "steps": [{"step": "flatten", "method": "auto",
                "options": {"iterations": 3, "threshold": 3.0, "dilation": 2, "degree": 2, "features": "above",
                            "scars": True}},
               {"step": "denoise", "method": "nl_means", "options": {"patch_size": 5, "patch_distance": 6}},
               {"step": "write", "format": ".gsf", "name": "{file} {channel}"}]},
    {"format": "napari-scanprobe recipe", "version": 1, "channels": ["Height (trace)", "Z (forward)"],
     "steps": [{"step": "flatten", "method": "plane"}, {"step": "denoise", "method": "median", "options": {"size": 3}},
               {"step": "write", "format": ".tif", "name": "{stem}_{channel}"}]},
    {"format": "napari-scanprobe recipe", "version": 1, "channels": ["Height"],
     "steps": [{"step": "flatten", "method": "auto"}, {"step": "predict", "model": "model"},
               {"step": "cam", "model": "model", "method": "gradcam", "target": None, "layer": None},
               {"step": "write", "format": ".gwy", "name": "{file}"}]},
]  # fmt: skip


# ---------------------------------------------------------------------------------------
# the cases
# ---------------------------------------------------------------------------------------


class Campaign:
    def __init__(self, seed: int, workdir: Path):
        self.seed = seed
        self.workdir = workdir
        gt = json.loads((SAMPLES / "ground_truth.json").read_text())
        self.samples = sorted(SAMPLES / rel for rel in gt)
        self.sample_bytes = {p: p.read_bytes() for p in self.samples}
        self.model_dir = workdir / "model"
        self.model_dir.mkdir()
        self._model_files = None

    # --- set-up in the parent, before any fork, so children share the imports ---
    def prepare(self, targets: list[str]) -> None:
        from napari_scanprobe.io.sniff import all_format_modules

        all_format_modules()  # every format module imported once, here, not in each child

        if "recipes" in targets:
            import yaml  # noqa: F401

            from napari_scanprobe.recipe import load_recipe  # noqa: F401
        if "models" in targets or "recipes" in targets:
            self._model_files = self._make_model()

    def _make_model(self) -> dict[str, bytes]:
        """A valid small model saved in code (random weights: loading does not care)."""
        import torch

        torch.set_num_threads(1)
        from napari_scanprobe.learn.modelfile import ClassifierModel, load_model
        from napari_scanprobe.nn.classifier import check_architecture, expected_shapes

        arch = check_architecture(None, in_channels=1, n_classes=2, input_size=64)
        rng = np.random.default_rng(0)
        state = {
            k: rng.standard_normal(shape).astype(np.float32) for k, shape in expected_shapes(arch).items()
        }
        model = ClassifierModel(arch, state, ["good", "bad"], ["Height (trace)"], None, 64)
        model.save(self.model_dir / "model")
        load_model(self.model_dir / "model")  # warms the loader (libraries mapped before the forks)
        return {p.name: p.read_bytes() for p in self.model_dir.iterdir()}

    def case(self, index: int, target: str, case_dir: Path) -> tuple[str, Path, int, callable]:
        """(label, input path, input bytes, run) for case ``index``; run() raises or returns."""
        rng = np.random.default_rng([self.seed, index])
        if target == "readers":
            source = self.samples[int(rng.integers(0, len(self.samples)))]
            others = [self.sample_bytes[p] for p in self.samples[:: max(1, len(self.samples) // 6)]]
            label, data = mutate_bytes(self.sample_bytes[source], rng, others)
            path = case_dir / ("case" + "".join(source.suffixes))
            path.write_bytes(data)

            def run():
                from napari_scanprobe.io import read

                scan = read(path)
                for ch in scan.channels:  # every pixel of images, the first frame of (lazy) movies
                    np.asarray(ch.data[0] if ch.data.ndim == 3 else ch.data)

            return f"{source.relative_to(SAMPLES)}: {label}", path, len(data), run
        if target == "recipes":
            for name, data in self._model_files.items():
                (case_dir / name).write_bytes(data)
            choice = rng.random()
            if choice < 0.02:  # nesting deeper than any parser's recursion limit
                depth = int(rng.choice([100, 1000, 100_000]))
                text = (
                    "format: napari-scanprobe recipe\nversion: 1\nsteps: " + "[" * depth + "]" * depth + "\n"
                )
                label, suffix = f"steps nested {depth} deep", ".yaml"
            elif choice < 0.05:
                field = str(rng.choice(["channels", "format", "version", "steps", "name"]))
                text = alias_bomb(int(rng.integers(6, 10)), int(rng.integers(5, 10)), field)
                label, suffix = f"alias bomb in {field}", ".yaml"
            else:
                base = RECIPES[int(rng.integers(0, len(RECIPES)))]
                label, doc = mutate_document(base, rng)
                suffix = str(rng.choice([".yaml", ".json"]))
                if suffix == ".json":
                    text = json.dumps(doc)
                else:
                    import yaml

                    text = yaml.safe_dump(doc, sort_keys=False) if doc else ""
                if choice > 0.8:  # then bytes
                    more, raw = mutate_bytes(text.encode(), rng, [])
                    text = raw.decode("utf-8", errors="replace")
                    label += f" + {more}"
            path = case_dir / ("recipe" + suffix)
            path.write_text(text, encoding="utf-8")

            def run():
                from napari_scanprobe.recipe import load_recipe

                load_recipe(path)

            return label, path, len(text.encode()), run
        # models
        files = dict(self._model_files)
        choice = rng.random()
        if choice < 0.03:  # nesting deeper than any parser's recursion limit
            depth = int(rng.choice([100, 1000, 100_000]))
            text = files["model.json"].decode()
            files["model.json"] = text.replace(
                '"metrics": {', '"metrics": ' + "[" * depth + "]" * depth + ', "x": {', 1
            ).encode()
            label = f"metrics nested {depth} deep"
        elif choice < 0.6:
            label, doc = mutate_document(json.loads(files["model.json"]), rng)
            files["model.json"] = json.dumps(doc).encode()
        else:
            name = str(rng.choice(sorted(files)))
            label, files[name] = mutate_bytes(files[name], rng, [])
            label = f"{name}: {label}"
        for name, data in files.items():
            (case_dir / name).write_bytes(data)
        path = case_dir / "model.json"

        def run():
            from napari_scanprobe.learn.modelfile import load_model

            load_model(path)

        return label, path, sum(map(len, files.values())), run


# ---------------------------------------------------------------------------------------
# running cases in a pool of forked workers
# ---------------------------------------------------------------------------------------


def _status_bytes(key: str) -> int:
    """``VmRSS``, ``VmHWM`` (peak RSS) ... of this process from /proc/self/status, in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _run_case(campaign: Campaign, index: int, target: str, case_dir: Path, mem_limit: int) -> dict:
    """One case in a worker: build the input, run the loader, classify what happened."""
    result = {"outcome": "ok", "message": "", "label": "", "size": 0, "extra": 0}
    try:
        label, path, size, run = campaign.case(index, target, case_dir)
        result.update(label=label[:300], size=size)
        vm = _status_bytes("VmSize")
        resource.setrlimit(resource.RLIMIT_AS, (vm + mem_limit, resource.RLIM_INFINITY))
        with open("/proc/self/clear_refs", "w") as fh:  # resets the peak RSS (VmHWM) to the current RSS
            fh.write("5")
        start = _status_bytes("VmRSS")
        try:
            run()
        except MemoryError:
            result.update(outcome="allocation", message="MemoryError (the memory limit was hit)")
        except BaseException as exc:  # noqa: BLE001 -- classify everything
            kind = type(exc).__name__
            message = str(exc)
            if "not enough memory" in message:
                result.update(outcome="allocation", message=message[:300])
            elif kind in CLEAR_TYPES:
                unclear = len(message) > 2000 or "\n" in message.strip() or not message.strip()
                outcome = "unclear error" if unclear else "clear error"
                result.update(outcome=outcome, message=f"{kind}: {message[:300]}")
            else:
                result.update(outcome="traceback", message=f"{kind}: {message[:300]}")
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        result["extra"] = max(0, _status_bytes("VmHWM") - start)
    except BaseException as exc:  # noqa: BLE001 -- a failure of the harness itself
        result.update(outcome="traceback", message=f"harness: {type(exc).__name__}: {exc}"[:300])
    return result


def _worker(campaign: Campaign, commands: int, results: int, mem_limit: int) -> None:
    """A forked worker: runs the cases the parent sends (index, target, folder) until EOF."""
    with os.fdopen(commands, "r") as inbox, os.fdopen(results, "w") as outbox:
        for line in inbox:
            index, target, case_dir = json.loads(line)
            result = _run_case(campaign, index, target, Path(case_dir), mem_limit)
            outbox.write(json.dumps(result)[:60000] + "\n")
            outbox.flush()
    os._exit(0)


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class _Worker:
    def __init__(self, campaign: Campaign, mem_limit: int):
        c_read, c_write = os.pipe()
        r_read, r_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(c_write)
            os.close(r_read)
            _worker(campaign, c_read, r_write, mem_limit)
        os.close(c_read)
        os.close(r_write)
        self.pid = pid
        self.inbox = os.fdopen(c_write, "w")
        self.results = r_read
        self.buffer = b""
        self.case = None  # (index, target, case_dir, wall0, cpu0) while busy
        self.done = 0

    def send(self, index: int, target: str, case_dir: Path) -> None:
        self.case = (index, target, case_dir, time.time(), _cpu_seconds(self.pid))
        self.inbox.write(json.dumps([index, target, str(case_dir)]) + "\n")
        self.inbox.flush()

    def stop(self, kill: bool = True) -> int:
        """End the worker (killed: the other workers hold copies of its inbox, so it sees no EOF)."""
        if kill:
            os.kill(self.pid, signal.SIGKILL)
        try:
            self.inbox.close()
        except OSError:
            pass
        os.close(self.results)
        return os.waitpid(self.pid, 0)[1]


def run_campaign(args) -> dict:
    import gc
    import select

    targets = args.targets.split(",")
    shm = Path("/dev/shm")  # in memory where there is one: the cases write many files
    work = Path(tempfile.mkdtemp(prefix="scanprobe-fuzz-", dir=shm if shm.is_dir() else None))
    campaign = Campaign(args.seed, work)
    campaign.prepare(targets)
    gc.collect()
    gc.freeze()  # the workers' collector leaves the parent's objects alone: fewer copied pages
    floor = args.floor_mb * 2**20
    mem_limit = args.mem_limit_mb * 2**20
    counts: dict[str, Counter] = defaultdict(Counter)
    examples: dict[tuple[str, str], list[str]] = defaultdict(list)
    keep = Path(args.keep) if args.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    started = time.time()
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))  # finish the running cases, then report

    def record(index, target, case_dir, outcome, message, result) -> None:
        if outcome in ("ok", "clear error", "unclear error") and result.get("extra", 0) > max(
            10 * result.get("size", 0), floor
        ):
            message = f"{result['extra'] / 2**20:.0f} MB for a {result['size']} byte input ({outcome})"
            outcome = "allocation"
        counts[target][outcome] += 1
        if outcome not in ("ok", "clear error"):
            label = result.get("label") or f"case {index}"
            if len(examples[target, outcome]) < args.examples:
                examples[target, outcome].append(f"case {index} [{label}] -> {message}")
            if keep and case_dir.exists():
                shutil.move(str(case_dir), keep / f"{target}-{outcome.replace(' ', '_')}-{index}")
        _rmtree(case_dir)
        done = sum(sum(c.values()) for c in counts.values())
        if args.progress and done % args.progress == 0:
            summary = "; ".join(f"{t}: {dict(c)}" for t, c in counts.items())
            print(f"... {done} cases, {time.time() - started:.0f} s: {summary}", file=sys.stderr, flush=True)

    workers = [_Worker(campaign, mem_limit) for _ in range(args.jobs)]
    next_case, last = args.first, args.first + args.cases
    while True:
        for w in workers:  # hand out work
            if w.case is None and next_case < last and not stopping:
                target = _weighted(args, next_case) if args.weights else targets[next_case % len(targets)]
                case_dir = work / f"case{next_case}"
                case_dir.mkdir()
                w.send(next_case, target, case_dir)
                next_case += 1
        busy = [w for w in workers if w.case is not None]
        if not busy:
            break
        ready, _, _ = select.select([w.results for w in busy], [], [], 0.5)
        for i, w in enumerate(workers):
            if w.case is None:
                continue
            index, target, case_dir, wall0, cpu0 = w.case
            if w.results in ready:
                chunk = os.read(w.results, 65536)
                if chunk:
                    w.buffer += chunk
                    if b"\n" not in w.buffer:
                        continue
                    line, w.buffer = w.buffer.split(b"\n", 1)
                    result = json.loads(line)
                    record(index, target, case_dir, result["outcome"], result["message"], result)
                    w.case = None
                    w.done += 1
                    if w.done >= args.recycle:  # a fresh worker now and then: no state builds up
                        w.stop()
                        workers[i] = _Worker(campaign, mem_limit)
                    continue
                status = w.stop(kill=False)  # EOF: the worker died on this case
                sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
                message = f"worker died ({signal.Signals(sig).name if sig else f'exit status {status}'})"
                record(index, target, case_dir, "crash", message, {})
                workers[i] = _Worker(campaign, mem_limit)
                continue
            cpu = _cpu_seconds(w.pid) - cpu0
            wall = time.time() - wall0
            if cpu > args.timeout or wall > args.wall_limit:  # CPU time: a loaded machine is no hang
                w.stop(kill=True)
                message = f"still running after {cpu:.0f} s of CPU ({wall:.0f} s wall)"
                record(index, target, case_dir, "hang", message, {})
                workers[i] = _Worker(campaign, mem_limit)
    for w in workers:
        w.stop()
    _rmtree(work)
    done = sum(sum(c.values()) for c in counts.values())
    return {"counts": counts, "examples": examples, "seconds": time.time() - started, "done": done}


def _weighted(args, index: int) -> str:
    pairs = [t.split(":") for t in args.weights.split(",")]
    total = sum(int(w) for _, w in pairs)
    k = index % total
    for name, w in pairs:
        if k < int(w):
            return name
        k -= int(w)
    return pairs[-1][0]


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument(
        "--first", type=int, default=0, help="index of the first case (to continue a campaign)"
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", default="readers,recipes,models")
    parser.add_argument("--weights", default="readers:6,recipes:2,models:2",
                        help="share of cases per target, e.g. readers:6,recipes:2,models:2 ('' = round robin)")  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, default=20.0, help="CPU seconds per case before it counts as a hang"
    )
    parser.add_argument("--wall-limit", type=float, default=600.0, help="wall seconds before a hang")
    parser.add_argument("--recycle", type=int, default=200, help="cases per worker before a fresh one")
    parser.add_argument("--mem-limit-mb", type=int, default=2048, help="address space a case may add")
    parser.add_argument(
        "--floor-mb", type=int, default=64, help="growth below this is never an allocation finding"
    )
    parser.add_argument("--examples", type=int, default=5, help="examples printed per target and outcome")
    parser.add_argument("--keep", help="folder to keep the inputs of findings in")
    parser.add_argument("--progress", type=int, default=0, help="print progress every N cases")
    args = parser.parse_args(argv)
    targets = args.targets.split(",")
    if args.weights:
        args.weights = ",".join(p for p in args.weights.split(",") if p.split(":")[0] in targets)
    if not (SAMPLES / "ground_truth.json").is_file():
        parser.error(f"no samples at {SAMPLES} (set SCANPROBE_SAMPLES)")
    report = run_campaign(args)
    counts = report["counts"]
    total = report["done"]
    print(f"fuzz campaign: {total} cases ({args.first} to {args.first + total - 1}), seed {args.seed}, {report['seconds']:.0f} s wall, "
          f"timeout {args.timeout:g} s of CPU, memory limit {args.mem_limit_mb} MB, "
          f"allocation finding: > max(10x input, {args.floor_mb} MB)")  # fmt: skip
    print(f"{'target':<10}" + "".join(f"{o:>15}" for o in OUTCOMES) + f"{'total':>10}")
    for target in targets:
        c = counts.get(target, Counter())
        print(f"{target:<10}" + "".join(f"{c[o]:>15}" for o in OUTCOMES) + f"{sum(c.values()):>10}")
    for (target, outcome), lines in sorted(report["examples"].items()):
        print(f"\n{target} / {outcome}:")
        for line in lines:
            print("  " + line)
    bad = sum(c[o] for c in counts.values() for o in OUTCOMES if o not in ("ok", "clear error"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
