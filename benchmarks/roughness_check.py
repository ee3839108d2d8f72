"""ISO 25178 roughness of napari-scanprobe against independent implementations, on real files.

    python benchmarks/roughness_check.py          # SurfaceTopography installed here (requirements.txt)
    python -m venv /tmp/st && /tmp/st/bin/pip install SurfaceTopography    # or in its own Python
    python benchmarks/roughness_check.py --st-python /tmp/st/bin/python

For every 2-D length channel (z in nm) of every image file in ``../shared/spm-samples``
(``--samples`` to change) it prints our Sa ... Sdq of the channel as read, beside:

* SurfaceTopography (run in its own Python, ``--st-python``; the array goes over in an .npz):
  ``Sq`` = ``rms_height_from_area()``, ``Sdq`` = ``rms_gradient()`` (non-periodic topography
  with the file's physical size), ``Sp``/``Sv`` from ``max()``/``min()``/``mean()``, and
  ``Sa``/``Ssk``/``Sku`` from its ``heights()`` with the textbook moments;
* Gwyddion 2.62: ``Sp = max - mean`` and ``Sv = mean - min`` from what Gwyddion reads from the
  same file (``ground_truth.json``'s min, max, mean).

The last column is the largest relative difference over all parameters; the target is 0.5 %.
Without ``--st-python`` SurfaceTopography is run in this Python when it is installed here;
when it is not, only the Gwyddion columns are compared.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_scanprobe import read  # noqa: E402
from napari_scanprobe.measure import ROUGHNESS_PARAMETERS, roughness  # noqa: E402

ST_SCRIPT = r"""
import json, sys
import numpy as np
import SurfaceTopography as st
out = {}
with np.load(sys.argv[1]) as arrays:
    for key in arrays.files:
        if key.endswith("__size"):
            continue
        z = arrays[key]
        topo = st.Topography(z, tuple(arrays[key + "__size"]), periodic=False)
        h = topo.heights() - topo.mean()
        sq = topo.rms_height_from_area()
        out[key] = {
            "Sa": float(np.mean(np.abs(h))), "Sq": float(sq),
            "Ssk": float(np.mean(h**3) / sq**3), "Sku": float(np.mean(h**4) / sq**4),
            "Sp": float(topo.max() - topo.mean()), "Sv": float(topo.mean() - topo.min()),
            "Sz": float(topo.max() - topo.min()), "Sdq": float(topo.rms_gradient()),
        }
print(json.dumps(out))
"""


def channels(samples: Path, limit: int):
    truth = json.loads((samples / "ground_truth.json").read_text())
    for relpath, entry in sorted(truth.items()):
        if entry.get("kind") != "image":
            continue
        scan = read(samples / relpath)
        for i, ch in enumerate(scan.channels):
            if ch.data.ndim != 2 or ch.z_unit != "nm" or ch.data.size > limit:
                continue
            z = np.asarray(ch.data, dtype=np.float64)
            if not np.all(np.isfinite(z)) or np.ptp(z) == 0:
                continue
            yield f"{relpath} [{ch.title}]", ch, z, entry["channels"][i]


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "spm-samples")
    parser.add_argument("--st-python", help="a Python with SurfaceTopography installed")
    parser.add_argument("--max-pixels", type=int, default=2048 * 2048)
    args = parser.parse_args()
    if args.st_python is None and importlib.util.find_spec("SurfaceTopography") is not None:
        args.st_python = sys.executable

    found = list(channels(args.samples, args.max_pixels))
    ours = {key: roughness(ch) for key, ch, _, _ in found}
    theirs: dict[str, dict] = {}
    if args.st_python:
        with tempfile.TemporaryDirectory() as tmp:
            npz = Path(tmp) / "heights.npz"
            arrays = {}
            for i, (_, ch, z, _) in enumerate(found):
                arrays[f"c{i}"] = z
                arrays[f"c{i}__size"] = np.array(
                    [z.shape[0] * ch.pixel_size[0], z.shape[1] * ch.pixel_size[1]]
                )
            np.savez(npz, **arrays)
            done = subprocess.run(
                [args.st_python, "-c", ST_SCRIPT, str(npz)], capture_output=True, text=True, check=True
            )
            raw = json.loads(done.stdout)
            theirs = {found[int(k[1:])][0]: v for k, v in raw.items()}

    worst_st = worst_gwy = 0.0
    print(f"{len(found)} channels (z in nm) of real files; relative differences, target <= 0.5 %\n")
    for key, ch, z, ref in found:
        r = ours[key]
        print(f"{key}  {z.shape[1]}x{z.shape[0]} px, {ch.pixel_size[1]:.4g} x {ch.pixel_size[0]:.4g} nm")
        print("   " + " ".join(f"{p:>11}" for p in ROUGHNESS_PARAMETERS))
        print("   " + " ".join(f"{getattr(r, p):11.5g}" for p in ROUGHNESS_PARAMETERS) + "   ours")
        if key in theirs:
            t = theirs[key]
            diff = max(rel(getattr(r, p), t[p]) for p in ROUGHNESS_PARAMETERS)
            worst_st = max(worst_st, diff)
            print(
                "   "
                + " ".join(f"{t[p]:11.5g}" for p in ROUGHNESS_PARAMETERS)
                + f"   SurfaceTopography  max diff {100 * diff:.2g} %"
            )
        scale = 1e9 if ref["unit_z"] == "m" else 1.0
        gwy = {"Sp": (ref["max"] - ref["mean"]) * scale, "Sv": (ref["mean"] - ref["min"]) * scale}
        diff = max(rel(getattr(r, p), gwy[p]) for p in gwy)
        worst_gwy = max(worst_gwy, diff)
        cells = [f"{gwy[p]:11.5g}" if p in gwy else f"{'':>11}" for p in ROUGHNESS_PARAMETERS]
        print("   " + " ".join(cells) + f"   Gwyddion 2.62  max diff {100 * diff:.2g} %")
    print()
    if theirs:
        print(f"largest difference to SurfaceTopography (8 parameters): {100 * worst_st:.3g} %")
    print(f"largest difference to Gwyddion (Sp, Sv): {100 * worst_gwy:.3g} %")
    return 0 if max(worst_st, worst_gwy) <= 0.005 else 1


if __name__ == "__main__":
    sys.exit(main())
