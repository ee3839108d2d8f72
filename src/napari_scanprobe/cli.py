"""The ``scanprobe`` command line: the same core the napari plugin uses.

scanprobe info FILE... [--json]     what each file holds: channels, shapes, pixel sizes, units
scanprobe demo [--headless]         napari with the sample scan loaded and the widgets docked
scanprobe train DATA_DIR -o MODEL   train a classifier on a folder with one sub-folder per category
scanprobe predict MODEL PATH...     category and probabilities per file (per frame for movies)
scanprobe evaluate MODEL FOLDER     accuracy, AUC, calibration of a model on a labelled folder
scanprobe cam MODEL PATH... -o DIR  class activation maps as DIR/<stem>.cam.tif
scanprobe batch RECIPE INPUTS... -o OUTDIR [--workers N] [--scheduler ADDRESS]
                                    a recipe over files, folders and globs, in parallel (Dask)
scanprobe measure FILE... [--flatten METHOD] [--profile Y0,X0,Y1,X1 [--width NM] [-o OUT.csv]]
                                    ISO 25178 roughness of every channel, or a line profile as CSV
scanprobe steps [STEP]              the processing steps a recipe can hold: methods, options, ranges

Every command takes its inputs by one rule (files, folders, globs: napari_scanprobe.inputs) and
ends any error in one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Callable, Iterator

import numpy as np

from . import __version__, plainjson
from .io import ReaderError, Scan, read
from .untrusted import one_line, reason_for


def _channel_facts(ch) -> dict:
    shape = [int(n) for n in ch.data.shape]
    return {**ch.facts(), "title": ch.title, "shape": shape, "frames": shape[0] if len(shape) == 3 else 1}


def _info_line(facts: dict) -> str:
    ny, nx = facts["shape"][-2:]
    dy, dx = facts["pixel_size"]
    unit = facts["xy_unit"] or "(no unit)"
    text = f"  {facts['title']:<34} {nx:>5} x {ny:<5} px   pixel {dx:.4g} x {dy:.4g} {unit}   values {facts['z_unit'] or '(no unit)'}   {facts['role'] or 'no role'}"
    if facts["frames"] > 1 or len(facts["shape"]) == 3:
        text += f"   {facts['frames']} frames"
        if facts["frame_time_s"]:
            text += f" @ {facts['frame_time_s']:.4g} s"
    return text


def _read_each(names: list[str], failed: Callable[[str, ReaderError], None]) -> Iterator[Scan]:
    """Each file read in turn; one that cannot be read goes to ``failed(name, error)`` and is skipped."""
    for name in names:
        try:
            scan = read(name)
        except ReaderError as exc:
            failed(name, exc)
            continue
        yield scan


def cmd_info(args) -> int:
    failures = []

    def failed(name: str, exc: ReaderError) -> None:
        failures.append(name)
        if args.json:
            print(plainjson.dumps({"path": str(name), "error": exc.reason}))
        else:
            print(f"scanprobe: error: {exc}", file=sys.stderr)

    for scan in _read_each(args.files, failed):
        channels = [_channel_facts(ch) for ch in scan.channels]
        if args.json:
            print(plainjson.dumps({"path": scan.path, "format": scan.format, "channels": channels}))
        else:
            print(f"{scan.path}  [{scan.format}, {len(channels)} channel{'' if len(channels) == 1 else 's'}]")
            for facts in channels:
                print(_info_line(facts))
    return 1 if failures else 0


def _has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def cmd_demo(args) -> int:
    headless = args.headless
    if not headless and not _has_display():
        print("scanprobe demo: no display found, running headless (the same pipeline, no window)")
        headless = True
    if headless:
        return _demo_headless(args.files)
    import napari

    from .gui.compat import scale_bar_of

    viewer = napari.Viewer(title="napari-scanprobe demo")
    if args.files:
        for name in args.files:
            viewer.open(name, plugin="napari-scanprobe")
    else:
        viewer.open_sample("napari-scanprobe", "afm_scan")
    for widget in ("Scan browser", "Preprocess", "Classifier"):
        viewer.window.add_plugin_dock_widget("napari-scanprobe", widget)
    scale_bar_of(viewer).visible = True
    napari.run()
    return 0


def _demo_headless(files) -> int:
    """The demo without a window: the plugin's reader/sample data into a napari ViewerModel."""
    from napari.components import ViewerModel

    from .gui.reader import read_layers
    from .gui.sample_data import synthetic_afm_scan

    viewer = ViewerModel(title="napari-scanprobe demo")
    try:
        tuples = read_layers(files) if files else synthetic_afm_scan()
    except ReaderError as exc:
        print(f"scanprobe: error: {exc}", file=sys.stderr)
        return 1
    what = ", ".join(files) if files else "the synthetic AFM sample scan"
    print(f"napari-scanprobe {__version__}: opened {what} headless")
    for data, kwargs, kind in tuples:
        layer = viewer.add_layer(_make_layer(data, kwargs, kind))
        scale = " x ".join(f"{s:.4g}" for s in layer.scale)
        units = ", ".join(str(u) for u in layer.units)
        lo, hi = layer.contrast_limits
        print(
            f"  layer {layer.name!r}: {kind} {tuple(layer.data.shape)}, scale {scale} ({units}), "
            f"values {lo:.4g} .. {hi:.4g} {layer.metadata.get('z_unit', '')}"
        )
    height = next((layer for layer in viewer.layers if layer.metadata.get("z_unit") == "nm"), None)
    if height is not None:  # what the Preprocess widget's default does, without the widget
        from .gui.layers import derived_layer, processing_step
        from .process.flatten import FLATTEN_OPTIONS, flatten

        options = FLATTEN_OPTIONS["auto"]
        data, kwargs, kind = derived_layer(
            height, flatten(height.data, "auto"), processing_step("flatten", "auto", options), "flatten auto"
        )
        flat = viewer.add_layer(_make_layer(data, kwargs, kind))
        lo, hi = np.nanpercentile(np.asarray(flat.data), [1, 99])
        print(f"  flattened {height.name!r} -> {flat.name!r}: 1-99 % height range {lo:.3g} .. {hi:.3g} nm")
    print(
        f"{len(viewer.layers)} layers; widgets need a window: run `scanprobe demo` on a desktop to see them docked"
    )
    return 0


def _make_layer(data, kwargs, kind):
    from napari.layers import Layer

    return Layer.create(data, kwargs, kind)


class ProgressBar:
    """A progress bar on stderr (tqdm: redrawn in place on a terminal, with the time left)."""

    FORMAT = "{desc} {bar:20} {percentage:3.0f}%{postfix} [{elapsed}<{remaining}]"
    #: when the work says its own time left (training: from the epochs so far), tqdm's guess from
    #: the bar's overall rate (fast reading, slow epochs) is not shown beside it
    FORMAT_OWN_ESTIMATE = "{desc} {bar:20} {percentage:3.0f}%{postfix} [{elapsed}]"

    def __init__(self, label: str, stream=None):
        from tqdm import tqdm

        self.bar = tqdm(
            total=100,
            desc=label,
            file=stream or sys.stderr,
            bar_format=self.FORMAT,
            mininterval=0.5,
            leave=True,
        )

    def update(self, fraction: float, text: str = "", own_estimate: bool = False) -> None:
        """``own_estimate``: ``text`` says the time left (a Progress with ``extra["seconds_left"]``)."""
        percent = 100 * min(max(fraction, 0.0), 1.0)
        self.bar.bar_format = self.FORMAT_OWN_ESTIMATE if own_estimate else self.FORMAT
        self.bar.set_postfix_str(text[:60], refresh=False)
        self.bar.update(percent - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _expand_inputs(paths: list[str], command: str, outdir=None) -> tuple[list[str], int]:
    """``(files, failures)`` by the one input rule (:mod:`napari_scanprobe.inputs`); inputs that
    cannot be run (missing, empty, a named pipe ...) are reported here and counted."""
    from .inputs import expand_inputs

    items, left_out = expand_inputs(paths, outdir)
    for item in items:
        if item.error:
            print(f"scanprobe {command}: error: {item.error}", file=sys.stderr)
    if left_out:
        print(
            f"scanprobe {command}: {left_out} file(s) in the folders given are not SPM files or arrays; left out"
        )
    return [str(i.path) for i in items if not i.error], sum(1 for i in items if i.error)


def _print_metrics(metrics: dict, categories: list[str]) -> None:
    from .learn.baseline import comparison_text
    from .learn.calibration import offsets_text

    if "accuracy" not in metrics:
        print("  no metrics: no validation images (--validation 0)")
        return
    print(f"  evaluated on {metrics['n']} {metrics['evaluated_on']}")
    print(
        f"  accuracy {metrics['accuracy']:.3f}   balanced accuracy {metrics['balanced_accuracy']:.3f}   ROC AUC {metrics['roc_auc']:.3f}"
    )
    for name in categories:
        c = metrics["per_class"][name]
        print(
            f"  {name:<20} precision {c['precision']:.3f}   recall {c['recall']:.3f}   ({c['support']} images)"
        )
    print(
        "  confusion matrix (rows: true, columns: predicted): "
        + "  ".join(f"{categories[i]}: {row}" for i, row in enumerate(metrics["confusion_matrix"]))
    )
    calibration = metrics.get("calibration")
    if calibration and calibration.get("ece_uncalibrated") is not None:
        print(
            f"  calibration: temperature {calibration['temperature']:.2f}, expected calibration error "
            f"{calibration['ece_uncalibrated']:.3f} before, {metrics['ece']:.3f} after"
            + offsets_text(calibration, categories)
        )
    baseline = metrics.get("baseline")
    if baseline:
        print(
            f"  feature baseline (random forest) on the same images: accuracy {baseline['accuracy']:.3f}   "
            f"balanced accuracy {baseline['balanced_accuracy']:.3f}   ROC AUC {baseline['roc_auc']:.3f}"
        )
        if "network_minus_features" in baseline:
            print(f"  {comparison_text(baseline['network_minus_features'])}")
    perm = metrics.get("permutation_test")
    if perm:
        print(
            f"  permutation test: {perm['permutations']} label shufflings, p = {perm['p_value']:.3g} (observed accuracy {perm['observed_accuracy']:.3f})"
        )


def cmd_train(args) -> int:
    from .learn.train import train_steps
    from .process.common import run_to_end

    options = {
        "epochs": args.epochs,
        "seed": args.seed,
        "permutations": args.permutations,
        "baseline": args.baseline,
    }
    if args.folds:
        options["folds"] = args.folds
    if args.validation is not None:
        options["validation"] = args.validation
    from pathlib import Path

    from .atomic import output_folder

    output_folder(Path(args.output).parent)  # checked before hours of training, not after
    bar = ProgressBar("training")

    def show(update):
        epoch = update.extra.get("epoch")
        text = update.message
        if epoch and "val_accuracy" in epoch:
            text += f"  val acc {epoch['val_accuracy']:.3f}"
        bar.update(update.fraction, text, "seconds_left" in update.extra)

    try:
        pixel_size = "auto" if args.pixel_size is None else _pixel_size_value(args.pixel_size)
        model = run_to_end(
            train_steps(
                args.data,
                args.channel or [],
                pixel_size=pixel_size,
                input_size=args.input_size,
                device=args.device,
                pretrained=args.pretrained,
                **options,
            ),
            show,
        )
        bar.close()
        out = model.save(args.output)
    except (ValueError, OSError) as exc:
        bar.close()
        print(f"scanprobe train: error: {exc}", file=sys.stderr)
        return 1
    info = model.training
    counts = ", ".join(f"{c}: {n}" for c, n in info["images_per_category"].items())
    print(
        f"trained on {counts} ({info['samples']} samples, {info['seconds']:.1f} s on {info['device']}); best epoch {info['best_epoch']}"
    )
    scale = f"{model.pixel_size:.4g} nm/px" if model.pixel_size else "images as they are"
    print(
        f"  input {model.input_size} px at {scale}; channels {', '.join(model.channels) or 'first of each file'}"
    )
    for skip in info["skipped"]:
        print(f"  skipped {skip['input']}: {skip['reason']}")
    if info["skipped"]:
        print(f"  {len(info['skipped'])} input(s) skipped")
    _print_metrics(model.metrics, model.categories)
    for warning in info.get("warnings", []):
        print(f"  warning: {warning}")
    print(f"model written to {out} (+ {out.with_suffix('.json').name})")
    return 0


def cmd_pretrain(args) -> int:
    from pathlib import Path

    from .atomic import output_folder
    from .learn.pretrain import pretrain

    output_folder(Path(args.output).parent)  # checked before the work, not after
    bar = ProgressBar("pretraining")
    try:
        pixel_size = "auto" if args.pixel_size is None else _pixel_size_value(args.pixel_size)
        out = pretrain(
            args.folder,
            args.output,
            args.channel or [],
            progress=lambda update: bar.update(
                update.fraction, update.message, "seconds_left" in update.extra
            ),
            pixel_size=pixel_size,
            input_size=args.input_size,
            device=args.device,
            epochs=args.epochs,
            seed=args.seed,
        )
    except (ValueError, OSError) as exc:
        bar.close()
        print(f"scanprobe pretrain: error: {exc}", file=sys.stderr)
        return 1
    bar.close()
    from .learn.pretrain import load_encoder

    info = load_encoder(out).training
    print(
        f"pretrained on {info['images']} unlabelled scans ({info['samples']} samples, {info['epochs_run']} epochs, "
        f"{info['seconds']:.1f} s on {info['device']}); contrastive loss {info['loss_first_epoch']:.3f} -> "
        f"{info['loss_last_epoch']:.3f}"
    )
    for skip in info["skipped"]:
        print(f"  skipped {skip['input']}: {skip['reason']}")
    print(
        f"encoder written to {out} (+ {out.with_suffix('.json').name}); use it with: scanprobe train ... --pretrained {out}"
    )
    return 0


def _pixel_size_value(text: str):
    """``--pixel-size``: "auto", "none" (images as they are) or nm per pixel."""
    if text.strip().lower() in ("auto", "none"):
        return None if text.strip().lower() == "none" else "auto"
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--pixel-size: expected nm per pixel, 'auto' or 'none', got {text!r}") from None


def cmd_evaluate(args) -> int:
    from .learn.modelfile import load_model
    from .learn.predict import evaluate

    skipped: list[tuple[object, Exception]] = []
    model = load_model(args.model)
    pixel_size = None if args.pixel_size is None else _pixel_size_value(args.pixel_size)
    if isinstance(pixel_size, str):
        raise ValueError("--pixel-size: evaluate needs nm per pixel or 'none'")
    metrics = evaluate(
        model,
        args.folder,
        pixel_size=pixel_size,
        device=args.device,
        on_error=lambda obj, exc: skipped.append((obj, exc)),
    )
    for obj, problem in skipped:
        print(
            f"  skipped {obj}: {reason_for(problem, str(obj))}",
            file=sys.stderr,
        )
    if args.json:
        print(plainjson.dumps(metrics))
        return 0
    _print_metrics(metrics, model.categories)
    print(f"  expected calibration error {metrics['ece']:.3f}")
    if metrics["unlike_training_median"] is not None:
        print(
            f"  unlike-training score: median {metrics['unlike_training_median']:.2f}, "
            f"{metrics['unlike_training_above_2']} image(s) above 2 (unlike the training data)"
        )
    return 0


def cmd_predict(args) -> int:
    from .learn.modelfile import load_model
    from .learn.predict import predict_many

    model = load_model(args.model)
    failures = []

    def failed(obj, exc):
        failures.append(obj)
        message = reason_for(exc, str(obj))
        if args.json:
            print(plainjson.dumps({"path": str(obj), "error": message}), flush=True)
        else:
            print(f"scanprobe predict: error: {obj}: {message}", file=sys.stderr)

    inputs, bad = _expand_inputs(args.paths, "predict")
    failures += [None] * bad
    try:
        pixel_size = None if args.pixel_size is None else _pixel_size_value(args.pixel_size)
        if isinstance(pixel_size, str):
            raise ValueError("--pixel-size: predict needs nm per pixel or 'none'")
        results = predict_many(model, inputs, pixel_size=pixel_size, device=args.device, on_error=failed)
    except ValueError as exc:
        print(f"scanprobe predict: error: {exc}", file=sys.stderr)
        return 1
    for path, result in zip(inputs, results, strict=True):
        if result is None:
            continue
        if args.json:
            print(plainjson.dumps({**result.as_dict(), "path": path}))
        else:
            probs = "  ".join(f"{c} {p:.3f}" for c, p in result.probabilities.items())
            frames = f"  ({len(result.frames)} frames)" if result.frames else ""
            unlike = (
                "" if result.unlike_training is None else f"  unlike training {result.unlike_training:.2f}"
            )
            print(f"{path}: {result.label}  [{probs}]{frames}{unlike}")
    return 1 if failures else 0


def cmd_cam(args) -> int:
    """One class activation map per input: ``OUTDIR/<input stem>.cam.tif`` (float32, the input's frame)."""
    from pathlib import Path

    from .atomic import output_folder
    from .io.write import write
    from .learn.cam import cam_channel, cam_lazy, check_layer, check_method, target_index
    from .learn.data import ARRAY_SUFFIXES, example_from_scan, pick_channels, read_example
    from .learn.modelfile import load_model
    from .nn.device import resolve_device

    model = load_model(args.model)
    method = check_method(args.method)
    layer = check_layer(model, method, args.layer)
    target = args.target
    if target is not None and target not in model.categories and target.isdigit():
        target = int(target)  # a category index
    target = target_index(model, target)
    resolve_device(args.device)
    pixel_size = None if args.pixel_size is None else _pixel_size_value(args.pixel_size)
    if isinstance(pixel_size, str):
        raise ValueError("--pixel-size: cam needs nm per pixel or 'none'")
    outdir = output_folder(args.output)
    names, failed = _expand_inputs(args.paths, "cam", outdir)
    written: dict = {}
    for name in names:
        out = outdir / f"{Path(name).stem}.cam.tif"
        try:
            if out in written:
                raise ValueError(f"its map {out} would overwrite the one of {written[out]} (same file name)")
            source = None  # the first channel used: its frame is the map's
            try:
                scan = read(name)
            except ReaderError:
                if Path(name).suffix.lower() not in ARRAY_SUFFIXES:
                    raise
                example = read_example(name, model.channels)  # .npy/.tif arrays, pictures
                if pixel_size is not None:
                    example.pixel_size = (pixel_size, pixel_size)
            else:
                example = example_from_scan(scan, model.channels)
                source = pick_channels(scan, model.channels)[0]
            result = cam_lazy(model, example, method, target, layer, device=args.device)
            write(out, cam_channel(result, model, like=source, source=str(name)))
            written[out] = name
        except Exception as exc:  # the error boundary of one input: the others go on
            failed += 1
            print(f"scanprobe cam: error: {name}: {reason_for(exc, str(name))}", file=sys.stderr)
            continue
        frames = f", {example.n_frames} frames" if example.is_movie else ""
        print(
            f"{name}: CAM {result.category} (p {result.probability:.3f}, {result.method} at {result.layer}{frames}) -> {out}"
        )
    return 1 if failed else 0


def cmd_batch(args) -> int:
    """A recipe over files/folders/globs: outputs, batch_summary.csv and batch_journal.jsonl in OUTDIR."""
    from .batch import CLAIMED, DONE, NOT_RUN, run_batch
    from .recipe import load_recipe

    recipe = load_recipe(args.recipe)
    bar = ProgressBar("batch")
    try:
        result = run_batch(
            recipe,
            args.inputs,
            args.output,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=lambda update: bar.update(
                update.fraction, f"{update.step}/{update.total} {update.message}"
            ),
        )
    except (ValueError, OSError) as exc:
        bar.close()
        print(f"scanprobe batch: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        bar.close()
        print(
            f"scanprobe batch: interrupted; finished files are kept, run the same command again to resume ({args.output})",
            file=sys.stderr,
        )
        return 130
    bar.close()
    for r in result.results:
        if r.status == "failed":
            print(f"scanprobe batch: error: {r.error}", file=sys.stderr)
    counts = {status: result.count(status) for status in ("ok", DONE, CLAIMED, "failed", NOT_RUN)}
    text = ", ".join(f"{n} {status}" for status, n in counts.items() if n or status in ("ok", "failed"))
    print(f"{len(result.results)} input(s): {text}; summary: {result.summary}")
    if result.left_out:
        print(f"  {result.left_out} file(s) in the folders given are not SPM files and were left out")
    return 1 if result.failed else 0


def cmd_movie(args) -> int:
    """Drift of a movie and its numbers frame by frame, as CSV (``scanprobe movie``)."""
    from .io import ReaderError, read
    from .learn.data import pick_channels
    from .process.common import run_to_end
    from .process.frame_table import frame_table_steps
    from .process.register import register_steps

    reference = int(args.reference) if args.reference.lstrip("-").isdigit() else args.reference
    bar = ProgressBar("movie")
    try:
        channel = pick_channels(read(args.file), [args.channel] if args.channel else [])[0]
        if channel.data.ndim != 3:
            raise ValueError(f"{args.file}: channel {channel.title!r} is an image, not a movie")
        size = tuple(channel.pixel_size) if channel.xy_unit else None
        reg = run_to_end(
            register_steps(channel.data, reference, args.per_line, size, channel.xy_unit or "px"),
            lambda u: bar.update(u.fraction / 2, f"registering: {u.message}"),
        )
        nm = size if channel.xy_unit == "nm" else None
        table = run_to_end(
            frame_table_steps(reg.movie, channel.z_unit, channel.frame_time_s, reg, args.model, nm),
            lambda u: bar.update(0.5 + u.fraction / 2, f"measuring: {u.message}"),
        )
        table.to_csv(args.output)
    except (ReaderError, ValueError, OSError) as exc:
        bar.close()
        print(f"scanprobe movie: error: {exc}", file=sys.stderr)
        return 1
    bar.close()
    flagged = [i for i, f in enumerate(reg.flagged) if f]
    print(
        f"{args.file}: {len(table)} frames, {len(flagged)} flagged"
        + (f" ({', '.join(map(str, flagged))})" if flagged else "")
        + f"; table: {args.output}"
    )
    return 0


def cmd_measure(args) -> int:
    """Roughness of every 2-D channel of each file, or (``--profile``) one line profile as CSV."""
    from .atomic import atomic_write
    from .measure import ROUGHNESS_PARAMETERS, profile, roughness
    from .process.flatten import flatten

    try:
        try:
            points = None if args.profile is None else np.array([float(v) for v in args.profile.split(",")])
        except ValueError:
            points = np.zeros(1)  # reported just below
        if points is not None and (points.size < 4 or points.size % 2 or not np.isfinite(points).all()):
            raise ValueError(f"--profile: expected Y0,X0,Y1,X1[,Y2,X2...] in nm, got {args.profile!r}")
        if points is not None and len(args.files) != 1:
            raise ValueError("--profile takes one FILE")
        failures = []

        def failed(name: str, exc: ReaderError) -> None:
            failures.append(name)
            print(f"scanprobe measure: error: {exc}", file=sys.stderr)

        for scan in _read_each(args.files, failed):
            channels = [ch for ch in scan.channels if ch.data.ndim == 2]
            if args.flatten:
                channels = [dataclasses.replace(ch, data=flatten(ch.data, args.flatten)) for ch in channels]
            if points is not None:
                text = profile(channels, points.reshape(-1, 2), width=args.width).to_csv()
                if args.output:
                    atomic_write(args.output, text.encode("utf-8"))
                else:
                    sys.stdout.write(text)
                continue
            print(f"{scan.path}")
            for ch in channels:
                r = roughness(ch)
                if args.json:
                    print(
                        plainjson.dumps(
                            {"path": scan.path, "channel": ch.title, **r.as_dict(), "units": r.units}
                        )
                    )
                else:
                    cells = "  ".join(f"{p} {r.text(p)}" for p in ROUGHNESS_PARAMETERS)
                    print(f"  {ch.title}: {cells}")
    except (ValueError, OSError) as exc:
        print(f"scanprobe measure: error: {exc}", file=sys.stderr)
        return 1
    return 1 if failures else 0


def cmd_steps(args) -> int:
    """The step contract (methods, options, ranges, units, help) as Markdown tables."""
    from .process.steps import STEPS, contract_markdown, step

    chosen = {args.step: step(args.step)} if args.step else STEPS
    print(contract_markdown(chosen), end="")
    return 0


def _add_model_run_options(parser: argparse.ArgumentParser) -> None:
    """--device and --pixel-size, for the commands that run a classifier."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument(
        "--pixel-size",
        default=None,
        help="nm per pixel of pictures/arrays without a scale ('none': as they are)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scanprobe", description="Scanning probe microscopy data: read, inspect, view."
    )
    parser.add_argument("--version", action="version", version=f"napari-scanprobe {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="list the channels, shapes, pixel sizes and units of SPM files")
    info.add_argument("files", nargs="+", metavar="FILE")
    info.add_argument("--json", action="store_true", help="one JSON object per file and line")
    info.set_defaults(func=cmd_info)

    demo = sub.add_parser("demo", help="open napari with the sample scan (or FILEs) and the plugin's widgets")
    demo.add_argument("files", nargs="*", metavar="FILE", help="SPM files to open instead of the sample scan")
    demo.add_argument(
        "--headless", action="store_true", help="run the same pipeline without a window and print it"
    )
    demo.set_defaults(func=cmd_demo)

    tr = sub.add_parser("train", help="train a CNN classifier on DATA_DIR (one sub-folder per category)")
    tr.add_argument("data", metavar="DATA_DIR")
    tr.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="MODEL",
        help="model path (writes MODEL.safetensors and MODEL.json)",
    )
    tr.add_argument(
        "--channel",
        action="append",
        metavar="NAME",
        help="channel to use (repeat to stack several); default: the first of each file",
    )
    tr.add_argument("--epochs", type=int, default=40)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--input-size", type=int, default=128, help="network input in pixels (default 128)")
    tr.add_argument(
        "--pixel-size",
        default=None,
        help="nm per pixel the network sees (pictures without a scale are taken to be at it); "
        "'none': every image as it is; default 'auto': the median of the data",
    )
    tr.add_argument(
        "--baseline",
        action="store_true",
        help="also report a random forest on image features on the same validation images",
    )
    tr.add_argument("--validation", type=float, default=None, help="validation fraction (default 0.2)")
    tr.add_argument("--folds", type=int, default=0, help="k-fold cross-validation instead of one split")
    tr.add_argument(
        "--permutations", type=int, default=0, help="label-permutation test: how many shuffled trainings"
    )
    tr.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    tr.add_argument(
        "--pretrained",
        default=None,
        metavar="ENCODER",
        help="start from an encoder made by 'scanprobe pretrain' (same channels and network)",
    )
    tr.set_defaults(func=cmd_train)

    pt = sub.add_parser(
        "pretrain", help="pretrain the classifier's encoder on a FOLDER of unlabelled scans (few labels)"
    )
    pt.add_argument("folder", metavar="FOLDER", help="unlabelled SPM files, arrays or pictures (recursive)")
    pt.add_argument(
        "-o", "--output", required=True, metavar="ENCODER", help="writes ENCODER.safetensors and ENCODER.json"
    )
    pt.add_argument("--channel", action="append", metavar="NAME", help="channel to use (as for train)")
    pt.add_argument("--epochs", type=int, default=20)
    pt.add_argument("--seed", type=int, default=0)
    pt.add_argument("--input-size", type=int, default=128, help="network input in pixels (as for train)")
    pt.add_argument(
        "--pixel-size", default=None, help="nm per pixel the network sees (as for train; default 'auto')"
    )
    pt.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    pt.set_defaults(func=cmd_pretrain)

    pr = sub.add_parser("predict", help="classify SPM files (folders: every file inside)")
    pr.add_argument("model", metavar="MODEL")
    pr.add_argument("paths", nargs="+", metavar="PATH")
    pr.add_argument(
        "--json", action="store_true", help="one JSON object per line: path, label, probabilities"
    )
    _add_model_run_options(pr)
    pr.set_defaults(func=cmd_predict)

    ev = sub.add_parser("evaluate", help="metrics of MODEL on FOLDER (one sub-folder per category)")
    ev.add_argument("model", metavar="MODEL")
    ev.add_argument("folder", metavar="FOLDER")
    ev.add_argument("--json", action="store_true", help="the metrics as one JSON object")
    _add_model_run_options(ev)
    ev.set_defaults(func=cmd_evaluate)

    cm = sub.add_parser("cam", help="class activation maps: OUTDIR/<input stem>.cam.tif per input")
    cm.add_argument("model", metavar="MODEL")
    cm.add_argument("paths", nargs="+", metavar="PATH")
    cm.add_argument(
        "-o", "--output", required=True, metavar="OUTDIR", help="folder for the maps (created if missing)"
    )
    cm.add_argument("--method", default="gradcam", help="cam, gradcam (default), gradcam++ or layercam")
    cm.add_argument(
        "--target", default=None, metavar="CATEGORY", help="category to explain (default: the predicted one)"
    )
    cm.add_argument(
        "--layer", default=None, metavar="L", help="network layer, block1 ... blockN (default: the last)"
    )
    _add_model_run_options(cm)
    cm.set_defaults(func=cmd_cam)

    ba = sub.add_parser("batch", help="apply a recipe (JSON/YAML) to files, folders and globs, in parallel")
    ba.add_argument("recipe", metavar="RECIPE", help="recipe file (.yaml, .yml or .json)")
    ba.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="files, folders (recursive) or glob patterns ('**' recursive)",
    )
    ba.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTDIR",
        help="folder for the outputs, summary and journal (created if missing)",
    )
    ba.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="local worker processes (default: one per core; 0: no parallelism)",
    )
    ba.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of an existing dask.distributed scheduler, e.g. tcp://host:8786",
    )
    ba.set_defaults(func=cmd_batch)

    mv = sub.add_parser("movie", help="drift of a movie and its per-frame numbers, as a CSV table")
    mv.add_argument("file", metavar="FILE", help="a movie file (.asd, .h5-jpk, .tif …)")
    mv.add_argument("-o", "--output", required=True, metavar="CSV", help="the per-frame table (.csv)")
    mv.add_argument("--channel", default=None, metavar="NAME", help="the channel (default: the first)")
    mv.add_argument(
        "--reference", default="first", help="first (default), mean (running mean) or a frame number"
    )
    mv.add_argument("--per-line", action="store_true", help="also correct creep along the slow scan axis")
    mv.add_argument("--model", default=None, metavar="MODEL", help="add each category's probability")
    mv.set_defaults(func=cmd_movie)

    me = sub.add_parser("measure", help="ISO 25178 roughness of every channel, or a line profile (CSV)")
    me.add_argument("files", nargs="+", metavar="FILE")
    me.add_argument("--flatten", metavar="METHOD", help="flatten each channel first (plane, auto, ...)")
    me.add_argument("--profile", metavar="Y0,X0,Y1,X1", help="a line or path, vertices (y, x) in nm")
    me.add_argument("--width", type=float, default=0.0, help="profile: width averaged across the line, nm")
    me.add_argument("-o", "--output", metavar="OUT.csv", help="profile: write the CSV here (default: print)")
    me.add_argument("--json", action="store_true", help="roughness: one JSON object per channel and line")
    me.set_defaults(func=cmd_measure)
    st = sub.add_parser(
        "steps", help="the processing steps a recipe can hold: methods, options, ranges, units"
    )
    st.add_argument("step", nargs="?", default=None, help="flatten, denoise, upscale, predict, cam or write")
    st.set_defaults(func=cmd_steps)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The CLI's error boundary: whatever goes wrong ends in one line on stderr, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        print(f"scanprobe {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
