"""The classifier across several SPM tasks: CNN (today's defaults) vs a feature baseline.

Tasks (two categories each):

* ``membranes``: the project's generator (``learn/synthetic.py``), 122 healthy + 109 infected
  images for training, 200 generated with another seed for testing;
* ``membranes-variant``: an independently written generator (``benchmarks/membranes_variant.py``:
  other knob shapes, sizes, noise, pixel sizes) with the same counts -- never tuned on;
* ``stm-tip``: real STM images of H:Si(100), good vs bad tip (``../shared/realdata/
  stm-hsi-tip-quality``, 354 + 354 PNG). A fixed 30 % of each class (by SHA-256) is held out
  for reporting and never looked at while tuning. The pictures carry no pixel size, so they are
  trained on as a user's ``scanprobe train`` would take them: as drawn (300 or 512 px across;
  partial scans keep their rows and are mirrored up if short). ``--stm-width N`` instead takes
  every picture to span the same frame, resampled to N px across (the atomic rows then blur
  together on the 512-px pictures).

``--split tune`` (what the defaults were chosen on): ``membranes`` with seeds 0.., and
``stm-tip`` trained on 70 % of the non-held-out images, tested on the other 30 %.
``--split report`` (the figures quoted): ``membranes-variant`` with seeds 100.. and ``stm-tip``
trained on all non-held-out images, tested on the held-out ones.
``--split agreed`` (``stm-tip`` only): tested on every picture that three or more people voted on
(all unanimous, as every label here is; 64 + 64), trained on all the others (two votes each):
how the methods do where a label is more than two people's word.

For every task and seed: accuracy, balanced accuracy, ROC AUC and ECE (expected calibration
error, 10 bins) of the CNN (``train`` + ``predict_many``, calibrated probabilities), of a random
forest and of a logistic regression on image statistics + texture + FFT features
(``learn/baseline.py``) of the same prepared images; the CNN's accuracy and ROC AUC minus each
baseline's with 95 % intervals (a paired bootstrap over the test images, ``baseline.compare``:
"ahead" when the accuracy interval excludes 0, else "level"); then the mean over seeds and how
often the CNN was ahead of each baseline. Under each row,
the same network without its calibration offsets (temperature only, ``learn/calibration.py``). ``--curve``
adds the learning curve: 5, 10, 20, 50 and all training images per category, with a "CNN
pretrained" column (``--pretrained`` adds it to a single ``--per-class`` run): the encoder
pretrained (``learn/pretrain.py``) once per task and seed on the task's training images with
their labels dropped -- for the membrane tasks also 200 more
generated unlabelled images, as a user has many more scans than labels -- then fine-tuned on
the few labelled ones like the plain CNN.

    python benchmarks/classifier_suite.py --split report --seeds 5 --curve   # the figures
    python benchmarks/classifier_suite.py --quick                             # a small trial run
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from membranes_variant import variant_dataset  # noqa: E402

from napari_scanprobe.learn.baseline import baseline_probabilities, compare  # noqa: E402
from napari_scanprobe.learn.data import Example, model_input  # noqa: E402
from napari_scanprobe.learn.images import read_image_export  # noqa: E402
from napari_scanprobe.learn.metrics import classification_report, expected_calibration_error  # noqa: E402
from napari_scanprobe.learn.predict import predict_many  # noqa: E402
from napari_scanprobe.learn.synthetic import knob_dataset  # noqa: E402
from napari_scanprobe.learn.train import train  # noqa: E402

STM = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "stm-hsi-tip-quality"
HELD_OUT = 0.3


def membranes(seed: int, n_train: tuple[int, int], n_test: int):
    def examples(ds):
        px = (ds.pixel_size_nm, ds.pixel_size_nm)
        return [
            Example([im], ["Height"], px, source=f"image {i}") for i, im in enumerate(ds.images)
        ], ds.labels

    train_x, train_y = examples(knob_dataset(*n_train, seed=seed))
    test_x, test_y = examples(knob_dataset(n_test // 2, n_test - n_test // 2, seed=seed + 50))
    return train_x, train_y, test_x, test_y, ["healthy", "infected"], {}


def membranes_variant(seed: int, n_train: tuple[int, int], n_test: int):
    def examples(items):
        xs = [Example([im], ["Height"], (px, px), source=f"image {i}") for i, (im, px, _) in enumerate(items)]
        return xs, np.array([lab for _, _, lab in items])

    train_x, train_y = examples(variant_dataset(*n_train, seed=10_000 + seed))
    test_x, test_y = examples(variant_dataset(n_test // 2, n_test - n_test // 2, seed=20_000 + seed))
    return train_x, train_y, test_x, test_y, ["healthy", "infected"], {}


#: ``--split agreed`` tests on the pictures with at least this many (unanimous) votes.
AGREED_VOTES = 3


def _stm_files() -> dict[str, list[tuple[Path, str, int]]]:
    """Per category, (path, sha256, number of votes) sorted by sha256."""
    with open(STM / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    by_class: dict[str, list[tuple[Path, str, int]]] = {}
    for row in rows:
        by_class.setdefault(row["label"], []).append(
            (STM / row["file"], row["sha256"], int(row["responses"]))
        )
    return {c: sorted(files, key=lambda f: f[1]) for c, files in sorted(by_class.items())}


def _stm_example(path: Path, width: int) -> Example:
    """The picture as drawn (``width`` 0), or taken to span the same frame as every other one,
    resampled to ``width`` px across (1 unit per model pixel)."""
    image = read_image_export(path)
    if not width:
        return Example([image], ["Height"], None, source=path.name)
    px = image.shape[1] / width
    return Example([image], ["Height"], (px, px), source=path.name)


def stm_tip(seed: int, split: str, limit: int | None, width: int = 0):
    categories = ["bad", "good"]
    train_files, test_files = [], []
    by_class = _stm_files()
    for k, c in enumerate(categories):
        files = by_class[c]
        n_hold = round(HELD_OUT * len(files))
        held, rest = files[:n_hold], files[n_hold:]
        if split == "report":
            tr, te = rest, held
        elif split == "agreed":
            te = [f for f in files if f[2] >= AGREED_VOTES]
            tr = [f for f in files if f[2] < AGREED_VOTES]
        else:
            order = np.random.default_rng(seed).permutation(len(rest))
            n_test = round(0.3 * len(rest))
            te, tr = [rest[i] for i in order[:n_test]], [rest[i] for i in order[n_test:]]
        if limit:
            tr, te = tr[:limit], te[: max(10, limit // 2)]
        train_files += [(f[0], k) for f in tr]
        test_files += [(f[0], k) for f in te]
    load = lambda files: ([_stm_example(p, width) for p, _ in files], np.array([k for _, k in files]))  # noqa: E731
    return *load(train_files), *load(test_files), categories, {"pixel_size": 1.0 if width else None}


def _subset(y: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    if per_class is None:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    return np.sort(
        np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)])
    )


def _scores(truth, probs) -> dict:
    r = classification_report(truth, probs, ["0", "1"])
    return {
        "accuracy": r["accuracy"],
        "balanced_accuracy": r["balanced_accuracy"],
        "roc_auc": r["roc_auc"],
        "ece": expected_calibration_error(truth, probs),
        "mean_confidence": float(np.mean(np.max(probs, axis=1))),  # above the accuracy: over-confident
    }


def _usable(example: Example, spec: dict) -> bool:
    try:
        model_input(example.frame(0), example.pixel_size, spec)
    except ValueError:
        return False
    return True


def unlabelled_extra(task: str, seed: int, n: int) -> list[Example]:
    """More unlabelled images of a generated task (none for the real STM images)."""
    if task == "membranes":
        ds = knob_dataset(n // 2, n - n // 2, seed=seed + 500)
        return [
            Example([im], ["Height"], (ds.pixel_size_nm,) * 2, f"unlabelled {i}")
            for i, im in enumerate(ds.images)
        ]
    if task == "membranes-variant":
        items = variant_dataset(n // 2, n - n // 2, seed=30_000 + seed)
        return [Example([im], ["Height"], (px, px), f"unlabelled {i}") for i, (im, px, _) in enumerate(items)]
    return []


def pretrained_encoder(task, seed, args, data):
    """The encoder pretrained on the task's training images without labels (and more unlabelled
    images for the generated tasks); its CPU seconds."""
    from napari_scanprobe.learn.pretrain import pretrain_steps
    from napari_scanprobe.process.common import run_to_end

    train_x, _, _, _, _, extra = data
    unlabelled = train_x + unlabelled_extra(task, seed, 40 if args.quick else 200)
    options = {"seed": seed, "threads": args.threads, **extra}
    if args.pretrain_epochs:
        options["epochs"] = args.pretrain_epochs
    t0 = time.process_time()
    encoder = run_to_end(pretrain_steps(unlabelled, **options))
    return encoder, time.process_time() - t0


def run_case(task, seed, per_class, args, data, encoder=None) -> dict:
    train_x, train_y, test_x, test_y, categories, extra = data
    pick = _subset(train_y, per_class, seed)
    size = int(args.option.get("input_size", 128))  # the network input train() will use
    spec = {"pixel_size": extra.get("pixel_size"), "input_size": size, "preprocessing": []}
    usable = np.array([_usable(x, spec) for x in test_x], dtype=bool)  # too-small partial scans are left out
    test_x, test_y = [x for x, ok in zip(test_x, usable, strict=True) if ok], test_y[usable]
    pick = np.array([i for i in pick if _usable(train_x[i], spec)], dtype=int)  # train() skips them too
    train_dict = {c: [train_x[i] for i in pick if train_y[i] == k] for k, c in enumerate(categories)}
    options = {"seed": seed, "threads": args.threads, **extra, **args.option}
    if args.epochs:
        options["epochs"] = args.epochs
    t0 = time.process_time()
    w0 = time.perf_counter()
    model = train(train_dict, **options)
    cpu, wall = time.process_time() - t0, time.perf_counter() - w0
    preds = predict_many(model, test_x)
    cnn = np.array([[p.probabilities[c] for c in categories] for p in preds])
    # the same network calibrated by its temperature alone (no offsets), for comparison
    plain = dataclasses.replace(model, confidence={**model.confidence, "offsets": None})
    cnn_t = np.array([[p.probabilities[c] for c in categories] for p in predict_many(plain, test_x)])
    unlike = np.array([p.unlike_training for p in preds], dtype=float)
    views_tr = [model_input(train_x[i].frame(0), train_x[i].pixel_size, model.spec) for i in pick]
    views_te = [model_input(x.frame(0), x.pixel_size, model.spec) for x in test_x]
    out = {
        "task": task,
        "seed": seed,
        "per_class": per_class or "all",
        "n_train": len(pick),
        "n_test": len(test_y),
        "train_cpu_s": round(cpu, 1),
        "train_wall_s": round(wall, 1),
        "epochs_run": len(model.history),
        "best_epoch": model.training["best_epoch"],
        "temperature": model.confidence.get("temperature"),
        "unlike_training_median": float(np.nanmedian(unlike)),
        "warnings": model.training.get("warnings", []),
        "cnn": _scores(test_y, cnn),
        "offsets": model.confidence.get("offsets"),
        "offsets_p_value": model.metrics.get("calibration", {}).get("offsets_p_value"),
        "cnn_temperature_only": _scores(test_y, cnn_t),
    }
    per_image = {"cnn": cnn, "cnn_temperature_only": cnn_t}
    for method, key in (("random_forest", "forest"), ("logistic_regression", "logistic")):
        probs = baseline_probabilities(views_tr, train_y[pick], views_te, 2, method=method, seed=seed)
        out[key] = _scores(test_y, probs)
        per_image[key] = probs
    # the CNN minus each baseline on the same test images, with 95 % intervals (paired bootstrap)
    out["cnn_minus"] = {
        key: compare(test_y, cnn, per_image[key], seed=seed) for key in ("forest", "logistic")
    }
    # every test image's probability of the second category, for looking at the errors (--json)
    out["test_images"] = [
        {"source": x.source, "truth": categories[t], **{k: float(p[i, 1]) for k, p in per_image.items()}}
        for i, (x, t) in enumerate(zip(test_x, test_y, strict=True))
    ]
    if encoder is not None:  # the same training, started from the pretrained encoder
        t0 = time.process_time()
        tuned = train(train_dict, pretrained=encoder, **options)
        out["pretrained_train_cpu_s"] = round(time.process_time() - t0, 1)
        preds = predict_many(tuned, test_x)
        out["pretrained"] = _scores(
            test_y, np.array([[p.probabilities[c] for c in categories] for p in preds])
        )
    return out


def _versus_lines(row: dict) -> list[str]:
    lines = []
    for key, c in row["cnn_minus"].items():
        acc, auc = c["accuracy"], c["roc_auc"]
        verdict = {"network": "CNN ahead", "features": f"{key} ahead"}.get(c["verdict"], c["verdict"])
        lines.append(
            f"    CNN minus {key}: accuracy {100 * acc['difference']:+.1f} points "
            f"({100 * acc['low']:+.1f} to {100 * acc['high']:+.1f}), ROC AUC {auc['difference']:+.3f} "
            f"({auc['low']:+.3f} to {auc['high']:+.3f}): {verdict}"
        )
    return lines


def _versus_counts(rows: list[dict]) -> list[str]:
    """Over the seeds: how often the CNN is ahead of, level with or behind each baseline."""
    out = []
    for key in rows[0]["cnn_minus"]:
        verdicts = [r["cnn_minus"][key]["verdict"] for r in rows]
        out.append(
            f"    CNN against {key} over {len(rows)} seeds: ahead on {verdicts.count('network')}, "
            f"level on {verdicts.count('level')}, behind on {verdicts.count('features')} "
            "(accuracy; ahead or behind: the 95 % interval excludes 0)"
        )
    return out


def _line(r: dict) -> str:
    cells = [f"{r['task']:<18}", f"{r['seed']:>4}", f"{str(r['per_class']):>4}"]
    for key in ("cnn", "forest", "logistic"):
        s = r[key]
        cells.append(f"{s['accuracy']:.3f} {s['balanced_accuracy']:.3f} {s['roc_auc']:.3f} {s['ece']:.3f}")
    cells.append(f"{r.get('train_cpu_s', float('nan')):7.0f}")
    if "pretrained" in r:
        s = r["pretrained"]
        cells.append(f"{s['accuracy']:.3f} {s['balanced_accuracy']:.3f} {s['roc_auc']:.3f} {s['ece']:.3f}")
    return " | ".join(cells)


HEADER = (
    f"{'task':<18} | seed | n/cl | CNN acc  bal   AUC   ECE   | forest acc bal AUC ECE    "
    "| logistic acc bal AUC ECE  | train CPU s"
)
PRETRAINED_HEADER = " | CNN pretrained acc bal AUC ECE"


def _by_votes(row: dict) -> dict:
    """Accuracy and ROC AUC of each method on the STM test pictures with two votes and with
    :data:`AGREED_VOTES` or more (every label here is unanimous: more votes, a surer label)."""
    votes = {path.name: n for files in _stm_files().values() for path, _, n in files}
    out = {}
    for name, keep in (
        ("2 votes", lambda n: n < AGREED_VOTES),
        (f"{AGREED_VOTES}+ votes", lambda n: n >= AGREED_VOTES),
    ):
        images = [t for t in row["test_images"] if keep(votes[t["source"]])]
        truth = np.array([t["truth"] == "good" for t in images], dtype=int)
        if len(images) < 2 or truth.min() == truth.max():
            continue
        out[name] = {"n": len(images)}
        for key in ("cnn", "forest", "logistic"):
            p = np.array([t[key] for t in images])
            out[name][key] = _scores(truth, np.stack([1 - p, p], axis=1))
    return out


def _votes_lines(by_votes: dict, label: str = "") -> list[str]:
    return [
        f"    {name} ({v['n']} pictures){label}: "
        + ", ".join(
            f"{k} {v[k]['accuracy']:.3f} / AUC {v[k]['roc_auc']:.3f}" for k in ("cnn", "forest", "logistic")
        )
        for name, v in by_votes.items()
    ]


def _mean_votes(rows: list[dict]) -> dict:
    """:func:`_by_votes` averaged over the rows (seeds) of one task."""
    return {
        name: {
            "n": v["n"],
            **{
                k: {m: float(np.mean([r["by_votes"][name][k][m] for r in rows])) for m in v[k]}
                for k in ("cnn", "forest", "logistic")
            },
        }
        for name, v in rows[0]["by_votes"].items()
    }


def _mean(rows: list[dict]) -> dict:
    out = {k: rows[0][k] for k in ("task", "per_class")}
    out["seed"] = f"{len(rows)}x"
    for key in ("cnn", "cnn_temperature_only", "forest", "logistic", "pretrained"):
        if key in rows[0]:
            out[key] = {m: float(np.mean([r[key][m] for r in rows])) for m in rows[0][key]}
    out["train_cpu_s"] = float(np.mean([r["train_cpu_s"] for r in rows]))
    return out


def _option(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep:
        raise SystemExit(f"--option {text!r}: expected NAME=VALUE")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("tune", "report", "agreed"), default="report")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="start at this seed (to spread seeds over processes)"
    )
    parser.add_argument("--tasks", default=None, help="comma-separated (default: the split's tasks)")
    parser.add_argument("--curve", action="store_true", help="add the learning curve (5, 10, 20, 50, all)")
    parser.add_argument(
        "--per-class", type=int, default=None, help="train on this many images per category (default: all)"
    )
    parser.add_argument(
        "--pretrained",
        action="store_true",
        help="add the 'CNN pretrained' column without the whole curve (--curve implies it)",
    )
    parser.add_argument("--quick", action="store_true", help="few images and epochs: a trial run")
    parser.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: train's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--pretrain-epochs",
        type=int,
        default=None,
        help="pretraining epochs for --curve (default: pretrain's)",
    )
    parser.add_argument("--json", default=None, help="also write every row to this JSON file")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a training option for the CNN, e.g. sparsity=0 or 'architecture={\"filters\": 16}'",
    )
    parser.add_argument(
        "--stm-width",
        type=int,
        default=0,
        help="px across each STM picture once resampled (0: as drawn)",
    )
    args = parser.parse_args()
    args.option = dict(_option(o) for o in args.option)
    default_tasks = {
        "tune": ["membranes", "stm-tip"],
        "report": ["membranes-variant", "stm-tip"],
        "agreed": ["stm-tip"],
    }[args.split]
    tasks = args.tasks.split(",") if args.tasks else default_tasks
    seeds = range(args.first_seed, args.first_seed + (1 if args.quick else args.seeds))
    if args.quick:
        args.epochs = args.epochs or 6
        args.pretrain_epochs = args.pretrain_epochs or 3
    n_train, n_test = ((30, 30), 60) if args.quick else ((122, 109), 200)
    seed_base = 0 if args.split == "tune" else 100

    import torch

    print(
        f"classifier suite ({args.split} split): torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs; acc = accuracy, bal = balanced accuracy, ECE = expected calibration error"
    )
    args.pretrained = args.pretrained or args.curve
    print(HEADER + (PRETRAINED_HEADER if args.pretrained else ""))
    rows = []
    for task in tasks:
        task_rows = []
        for s in seeds:
            seed = seed_base + s
            if task == "membranes":
                data = membranes(seed, n_train, n_test)
            elif task == "membranes-variant":
                data = membranes_variant(seed, n_train, n_test)
            elif task == "stm-tip":
                if not STM.is_dir():
                    print(f"{task}: {STM} not found, skipped")
                    break
                data = stm_tip(seed, args.split, 40 if args.quick else None, args.stm_width)
            else:
                raise SystemExit(f"unknown task {task!r}")
            sizes = (5, 10, 20, 50, None) if args.curve else (args.per_class,)
            encoder = None
            if args.pretrained:
                encoder, cpu = pretrained_encoder(task, seed, args, data)
                print(f"    pretrained on {encoder.training['images']} unlabelled images in {cpu:.0f} CPU s")
            for per_class in sizes:
                row = run_case(task, seed, per_class, args, data, encoder)
                print(_line(row), flush=True)
                t, offsets, p = row["cnn_temperature_only"], row["offsets"] or [], row["offsets_p_value"]
                print(
                    f"    CNN without its calibration offsets ({', '.join(f'{b:+.2f}' for b in offsets)}"
                    + ("" if p is None else f"; p = {p:.3g}")
                    + f"): accuracy {t['accuracy']:.3f}, ROC AUC {t['roc_auc']:.3f}, ECE {t['ece']:.3f}"
                )
                print("\n".join(_versus_lines(row)))
                if task == "stm-tip" and args.split != "agreed":
                    row["by_votes"] = _by_votes(row)
                    print("\n".join(_votes_lines(row["by_votes"])))
                for w in row["warnings"]:
                    print(f"    warning: {w}")
                rows.append(row)
                task_rows.append(row)
        for per_class in sorted(
            {r["per_class"] for r in task_rows}, key=lambda v: (v == "all", v if v != "all" else 0)
        ):
            same = [r for r in task_rows if r["per_class"] == per_class]
            if len(same) > 1:
                mean = _mean(same)
                print(_line(mean) + "   <- mean")
                t = mean["cnn_temperature_only"]
                print(
                    f"    CNN with its temperature only: accuracy {t['accuracy']:.3f}, ROC AUC {t['roc_auc']:.3f}"
                )
                print("\n".join(_versus_counts(same)))
                if all("by_votes" in r for r in same):
                    print("\n".join(_votes_lines(_mean_votes(same), f", mean of {len(same)}")))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
