"""Run a recipe over many files: ``scanprobe batch RECIPE INPUTS... -o OUTDIR``.

* Inputs: files, folders and glob patterns, by the rule every command shares
  (:mod:`napari_scanprobe.inputs`: SPM files and plain ``.npy``/``.tif`` arrays; hidden files,
  other files and anything inside OUTDIR are left out; empty files, named pipes and devices
  are recorded as failed, never opened). OUTDIR is checked (made, writable) first. Outputs of a file found in a folder go to the same sub-folder of OUTDIR, so
  scans with the same name in different folders do not collide. Each file is processed by
  :func:`napari_scanprobe.recipe.run_recipe_file`; a movie frame by frame.
* Parallel with Dask: by default a local ``dask.distributed`` cluster of processes, one per
  core (``workers``), one file per task; ``scheduler="tcp://host:8786"`` runs the same batch
  on an existing cluster (its workers must see the input and output paths and have
  napari-scanprobe installed); ``workers=0`` runs in this process, one file after the other.
  Models travel inside the recipe, so workers never read model files.
* Resume: after each file the main process appends a line to ``OUTDIR/batch_journal.jsonl``
  (input, its size and modification time, the recipe's fingerprint, the outputs and the
  prediction). A rerun skips an input whose journal line matches (same file, same recipe) and
  whose outputs all exist -- status ``skipped (done)`` -- so a batch stopped by a crash or
  Ctrl-C continues where it was. Outputs are written atomically, so none is half-written.
* Two batches into one OUTDIR share the work: each file is claimed atomically (a file in
  ``OUTDIR/.scanprobe-claims`` created exclusively) before it is processed, and released once
  the journal has it; a file another running batch has claimed is ``skipped (another batch)``
  (or ``skipped (done)`` when that batch has finished it by the end). A claim whose process is
  gone (same machine) is taken over.
* A file that fails is recorded with its error and the batch goes on. At the end (also after
  Ctrl-C) ``OUTDIR/batch_summary.csv`` lists every input: ``input``, ``status`` (``ok``,
  ``failed``, ``skipped (done)``, ``not run``), ``error``, ``category``, one ``P(<category>)``
  column per category of the recipe's model, one column per number of a ``measure`` step
  (``"Z (forward): Sq [nm]"``), ``frames`` (movies) and ``outputs`` (relative to OUTDIR,
  ``;``-separated).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import math
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import plainjson
from .atomic import output_folder
from .inputs import Input, expand_inputs
from .process.common import Progress
from .recipe import FileResult, Recipe, load_recipe
from .untrusted import one_line

SUMMARY_NAME = "batch_summary.csv"
JOURNAL_NAME = "batch_journal.jsonl"
DONE = "skipped (done)"
NOT_RUN = "not run"
CLAIMED = "skipped (another batch)"
CLAIMS_NAME = ".scanprobe-claims"

log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    """Every input's :class:`~napari_scanprobe.recipe.FileResult` in input order, and the summary."""

    results: list[FileResult]
    summary: Path
    left_out: int = 0  # files inside the given folders that no reader claims
    categories: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> int:
        return self.count("failed")


# --------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------


def _name_key(recipe: Recipe, inp: Input) -> tuple[Path, str] | None:
    """What a write name depends on besides the channel: equal keys = colliding outputs."""
    from .recipe import safe_file_name

    write = recipe.step("write")
    if write is None:
        return None
    return inp.sub, write["name"].format(
        stem=safe_file_name(inp.path.stem), file=safe_file_name(inp.path.name), channel="\0"
    )


def _check_collisions(recipe: Recipe, inputs: list[Input]) -> None:
    """Mark inputs whose outputs would overwrite an earlier input's (e.g. a.sxm and a.gwy)."""
    first: dict[tuple[Path, str], Input] = {}
    for inp in inputs:
        key = _name_key(recipe, inp)
        if inp.error or key is None:
            continue
        if key in first:
            inp.error = (
                f"{inp.path}: its outputs would overwrite those of {first[key].path} (the same names after the "
                f"recipe's write name {(recipe.step('write') or {}).get('name')!r}); put {{file}} in the name, or use separate folders"
            )
        else:
            first[key] = inp


# --------------------------------------------------------------------------------------
# The journal (resume)
# --------------------------------------------------------------------------------------


def _stat(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _read_journal(path: Path) -> dict[str, dict]:
    """The last entry per input of the journal (a damaged line -- e.g. cut by a crash -- is ignored)."""
    entries: dict[str, dict] = {}
    if not path.is_file():
        return entries
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            entries[entry["input"]] = entry
        except (ValueError, KeyError, TypeError):
            continue
    return entries


def _done(entry: dict | None, inp: Input, fingerprint: str, outdir: Path) -> bool:
    if entry is None or entry.get("recipe") != fingerprint:
        return False
    try:
        if [entry.get("size"), entry.get("mtime_ns")] != list(_stat(inp.path)):
            return False
    except OSError:
        return False
    return all((outdir / rel).is_file() for rel in entry.get("outputs", []))


def _relative(path: str, outdir: Path) -> str:
    try:
        return Path(path).resolve().relative_to(outdir.resolve()).as_posix()
    except ValueError:
        return str(path)


def _journal_entry(result: FileResult, inp: Input, fingerprint: str, outdir: Path) -> dict:
    size, mtime = _stat(inp.path)
    return {
        "input": str(inp.path.resolve()),
        "size": size,
        "mtime_ns": mtime,
        "recipe": fingerprint,
        "outputs": [_relative(p, outdir) for p in result.outputs],
        "category": result.category,
        "probabilities": result.probabilities,
        "frames": result.frames,
        "measurements": result.measurements,
    }


def _append(path: Path, entry: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(plainjson.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# --------------------------------------------------------------------------------------
# Claims: two batches into one folder share the work
# --------------------------------------------------------------------------------------


def _claim_path(claims: Path, path: str, fingerprint: str) -> Path:
    key = hashlib.sha256(f"{Path(path).resolve()}\0{fingerprint}".encode()).hexdigest()[:40]
    return claims / f"{key}.claim"


def _alive(text: str) -> bool:
    """Whether the claim's owner (``host pid``) may still run: True unless it is provably gone."""
    try:
        host, pid = text.split()[:2]
        if host != socket.gethostname():
            return True
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (ValueError, OSError):
        return True  # unreadable, or a process we may not signal: leave it alone
    return True


def claim(claims: Path, path: str, fingerprint: str) -> bool:
    """Take the claim on ``path`` for this process (atomically); False when another holds it."""
    target = _claim_path(claims, path, fingerprint)
    for _ in range(2):
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                owner = target.read_text(encoding="utf-8")
            except OSError:
                return False
            if _alive(owner):
                return False
            with contextlib.suppress(OSError):
                target.unlink()  # its process is gone: take it over
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"{socket.gethostname()} {os.getpid()}\n")
        return True
    return False


def release(claims: Path, path: str, fingerprint: str) -> None:
    with contextlib.suppress(OSError):
        _claim_path(claims, path, fingerprint).unlink()


# --------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------


def process_input(recipe: Recipe, path: str, outdir: str, claims: str | None = None) -> FileResult:
    """One file, as a batch task: never raises; a failure is a FileResult with its error.

    ``claims``: the claims folder; the file is skipped (status ``skipped (another batch)``)
    when another batch holds its claim. Dask work inside (a lazy movie) runs synchronously in
    this task, frame by frame.
    """
    import dask

    from .io import ReaderError
    from .recipe import run_recipe_file

    if claims is not None and not claim(Path(claims), path, recipe.fingerprint()):
        return FileResult(path, CLAIMED)
    try:
        with dask.config.set(scheduler="synchronous"):
            return run_recipe_file(recipe, path, outdir)
    except ReaderError as exc:
        return FileResult(path, "failed", str(exc))
    except Exception as exc:  # the error boundary: one bad file never stops the batch
        if not isinstance(exc, (ValueError, OSError, MemoryError)):
            log.debug("unexpected failure on %s", path, exc_info=True)
        message = one_line(exc)
        return FileResult(path, "failed", message if path in message else f"{path}: {message}")


def _local_cluster(workers: int):
    """A local cluster: ``workers`` processes of one thread each (numpy/BLAS/OpenMP: one thread).

    dask sets ``MALLOC_TRIM_THRESHOLD_`` in its worker processes, which also stops glibc from
    raising its mmap threshold: every image-sized temporary is then mapped and unmapped anew,
    and the page faults cost about half as much again as the processing itself (measured:
    flatten + nl_means on 512 x 512 scans, 30x the page faults). Our tasks are short and
    their memory comes back with each file, so the workers keep glibc's default.
    """
    import dask
    from dask.distributed import Client, LocalCluster

    environ = {
        k: v
        for k, v in dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
        if k != "MALLOC_TRIM_THRESHOLD_"
    }
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    return Client(cluster), cluster


def _connect(address: str):
    from dask.distributed import Client

    try:
        return Client(address, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise OSError(f"cannot reach the dask scheduler at {address} ({exc})") from None


def _run_distributed(
    client,
    recipe: Recipe,
    todo: list[Input],
    outdir: Path,
    claims: Path,
    finished: Callable[[Input, FileResult], None],
) -> None:
    from dask.distributed import as_completed

    shared = client.scatter(recipe, broadcast=True, hash=False)
    futures = {
        client.submit(
            process_input, shared, str(inp.path), str(outdir / inp.sub), str(claims), pure=False
        ): inp
        for inp in todo
    }
    try:
        for future in as_completed(futures):
            inp = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # a worker died (out of memory, killed) or could not run the task
                result = FileResult(
                    str(inp.path), "failed", f"{inp.path}: the worker failed ({type(exc).__name__}: {exc})"
                )
            finished(inp, result)
    finally:
        client.cancel(list(futures))


def run_batch(
    recipe: Any,
    inputs: Iterable[str | os.PathLike],
    outdir: str | os.PathLike,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: Callable[[Progress], Any] | None = None,
) -> BatchResult:
    """Apply ``recipe`` to every input; write the outputs, journal and summary into ``outdir``.

    ``workers``: local worker processes (None: one per core; 0: run here, one file after the
    other). ``scheduler``: address of an existing ``dask.distributed`` scheduler instead.
    ``progress`` sees one :class:`Progress` per finished input. Raises ValueError for a bad
    recipe or options and OSError when OUTDIR cannot be made or the scheduler not reached;
    per-file problems are recorded in the results instead.

    The local cluster starts its workers with ``multiprocessing``'s spawn method, so a script
    that calls this with ``workers`` != 0 must do so under ``if __name__ == "__main__":``.
    """
    recipe = load_recipe(recipe)
    if workers is not None and scheduler is not None:
        raise ValueError(
            "workers and scheduler exclude each other: the cluster at the scheduler has its own workers"
        )
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ValueError(f"workers: expected a whole number >= 0, got {workers!r}")
    if not recipe.writes and not (recipe.step("predict") or recipe.step("cam") or recipe.step("measure")):
        raise ValueError(
            "the recipe neither writes files, predicts nor measures: add a 'write' step (or a 'predict' step)"
        )
    outdir = output_folder(outdir)

    items, left_out = expand_inputs(inputs, outdir)
    if not items:
        raise ValueError("no input file: the folders given hold no file napari-scanprobe can read")
    _check_collisions(recipe, items)
    journal_path = outdir / JOURNAL_NAME
    journal = _read_journal(journal_path)
    fingerprint = recipe.fingerprint()
    claims = outdir / CLAIMS_NAME
    claims.mkdir(exist_ok=True)
    results: dict[int, FileResult] = {}
    todo: list[Input] = []
    for i, inp in enumerate(items):
        if inp.error:
            results[i] = FileResult(str(inp.path), "failed", inp.error)
            continue
        entry = journal.get(str(inp.path.resolve()))
        if entry is not None and _done(entry, inp, fingerprint, outdir):
            results[i] = _done_result(inp, entry, outdir)
        else:
            todo.append(inp)
    index = {id(inp): i for i, inp in enumerate(items)}
    total = len(items)

    def finished(inp: Input, result: FileResult) -> None:
        result.input = str(inp.path)
        results[index[id(inp)]] = result
        if result.status == "ok":
            try:
                _append(journal_path, _journal_entry(result, inp, fingerprint, outdir))
            except (
                OSError
            ) as exc:  # the input vanished, or the journal cannot be written: only resume suffers
                log.warning("batch journal: %s not recorded (%s)", inp.path, exc)
        if result.status != CLAIMED:
            release(claims, str(inp.path), fingerprint)
        if progress is not None:
            progress(Progress(len(results), total, message=f"{inp.path.name}: {result.status}"))

    if progress is not None and results:
        progress(Progress(len(results), total, message=f"{len(results)} done or not runnable"))
    try:
        if todo and scheduler is None and workers == 0:
            for inp in todo:
                finished(inp, process_input(recipe, str(inp.path), str(outdir / inp.sub), str(claims)))
        elif todo:
            n = workers or os.cpu_count() or 1
            client, cluster = (_connect(scheduler), None) if scheduler else _local_cluster(min(n, len(todo)))
            try:
                _run_distributed(client, recipe, todo, outdir, claims, finished)
            finally:
                with contextlib.suppress(Exception):
                    client.close()
                if cluster is not None:
                    with contextlib.suppress(Exception):
                        cluster.close()
    finally:  # also after Ctrl-C: the summary says what was done
        _take_over_finished(results, items, journal_path, fingerprint, outdir)
        ordered = [results.get(i) or FileResult(str(inp.path), NOT_RUN) for i, inp in enumerate(items)]
        batch = BatchResult(ordered, outdir / SUMMARY_NAME, left_out, recipe.categories)
        write_summary(batch, outdir)
    return batch


def _take_over_finished(
    results: dict[int, FileResult], items: list[Input], journal_path: Path, fingerprint: str, outdir: Path
) -> None:
    """Files another batch had claimed and has finished since: ``skipped (done)`` with its results."""
    claimed = [i for i, r in results.items() if r.status == CLAIMED]
    if not claimed:
        return
    journal = _read_journal(journal_path)
    for i in claimed:
        inp = items[i]
        entry = journal.get(str(inp.path.resolve()))
        if entry is not None and _done(entry, inp, fingerprint, outdir):
            results[i] = _done_result(inp, entry, outdir)


def _done_result(inp: Input, entry: dict, outdir: Path) -> FileResult:
    return FileResult(
        str(inp.path),
        DONE,
        category=entry.get("category"),
        probabilities=entry.get("probabilities") or {},
        frames=entry.get("frames"),
        outputs=[str(outdir / rel) for rel in entry.get("outputs", [])],
        measurements=entry.get("measurements") or {},
    )


def write_summary(batch: BatchResult, outdir: Path) -> Path:
    """``OUTDIR/batch_summary.csv`` (see the module docstring), written atomically."""
    from .atomic import atomic_write

    measured = list(dict.fromkeys(k for r in batch.results for k in r.measurements))
    columns = [
        "input",
        "status",
        "error",
        "category",
        *[f"P({c})" for c in batch.categories],
        *measured,
        "frames",
        "outputs",
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for r in batch.results:
        probs = [_number(r.probabilities.get(c)) for c in batch.categories]
        outputs = "; ".join(_relative(p, outdir) for p in r.outputs)
        writer.writerow(
            [
                r.input,
                r.status,
                r.error,
                r.category or "",
                *probs,
                *[_number(r.measurements.get(k)) for k in measured],
                "" if r.frames is None else r.frames,
                outputs,
            ]
        )
    return atomic_write(batch.summary, buffer.getvalue().encode("utf-8"))


def _number(value: Any) -> str:
    """A measurement's CSV cell: empty where it is missing or undefined (NaN)."""
    return "" if value is None or not math.isfinite(float(value)) else f"{float(value):.6g}"
