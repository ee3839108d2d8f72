"""A scripted classification session: train a small CNN, classify and explain images in napari.

Trains a small classifier on generated HS-AFM membrane images (healthy vs malaria-infected:
infected membranes carry knobs; ``napari_scanprobe.learn.synthetic``), opens the plugin's
membrane sample images and a real scan, docks the Classifier widget with the model, predicts,
adds a Grad-CAM layer over an image, saves the image with its map as one Gwyddion file,
exports the whole pipeline as a recipe and takes a screenshot::

    python examples/classify_session.py [SCAN] [-o OUTDIR] [--images N] [--epochs N] [--keep-open]

SCAN (a real file, default the Nanonis sample of ``../shared/spm-samples`` or
``$SCANPROBE_SAMPLES``) is flattened with the API and classified too -- the model knows only
membranes, so its answer there only shows that real files go through the same path. Writes
``OUTDIR/knobs.safetensors`` + ``.json``, ``OUTDIR/membrane_cam.gwy``,
``OUTDIR/classify_recipe.yaml`` and ``OUTDIR/classify.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SAMPLES = Path(
    os.environ.get("SCANPROBE_SAMPLES", Path(__file__).resolve().parents[2] / "shared" / "spm-samples")
)
DEFAULT_SCAN = SAMPLES / "nanonis_sxm" / "test.sxm"
PLUGIN = "napari-scanprobe"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "scan", nargs="?", default=str(DEFAULT_SCAN), help=f"a real SPM file (default: {DEFAULT_SCAN})"
    )
    parser.add_argument(
        "-o",
        "--output",
        default="classify_output",
        help="folder for the model, the saved layers, the recipe, the screenshot",
    )
    parser.add_argument(
        "--images", type=int, default=40, help="generated training images per category (default 40)"
    )
    parser.add_argument("--epochs", type=int, default=15, help="training epochs (default 15)")
    parser.add_argument("--keep-open", action="store_true", help="leave the window open at the end")
    args = parser.parse_args(argv)
    import torch  # noqa: F401  (first: importing torch after Qt can crash)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    import napari
    from napari.layers import Layer

    import napari_scanprobe as sp
    from napari_scanprobe.gui.cam_layer import cam_layer
    from napari_scanprobe.gui.recipe_export import export_layer_recipe
    from napari_scanprobe.learn.data import Example
    from napari_scanprobe.learn.synthetic import knob_dataset

    # 1. a small model on generated 1 µm images (128 px), seen by the network at half resolution
    data = knob_dataset(args.images, args.images, size=128, seed=1)
    px = data.pixel_size_nm
    images = {
        c: [
            Example([img], ["Height"], (px, px))
            for img, label in zip(data.images, data.labels, strict=True)
            if label == i
        ]
        for i, c in enumerate(data.categories)
    }
    model = sp.train(images, pixel_size=2 * px, input_size=64, epochs=args.epochs, seed=0)
    path = model.save(out / "knobs")
    print(
        f"trained on {len(data)} images; validation accuracy {model.metrics.get('accuracy', float('nan')):.2f}; saved {path}"
    )

    # 2. napari: membrane samples and a real scan, the Classifier widget with the model
    viewer = napari.Viewer(title="napari-scanprobe: classification session")
    membranes = [
        layer for layer in viewer.open_sample(PLUGIN, "knob_membranes") if "category" in layer.metadata
    ]  # not the knob masks
    scan_layers = viewer.open(args.scan, plugin=PLUGIN)
    height = next((layer for layer in scan_layers if layer.metadata.get("z_unit") == "nm"), scan_layers[0])
    viewer.add_image(
        sp.flatten(height.data, "auto"),
        name=f"{height.name} | API flatten",
        scale=height.scale,
        translate=height.translate,
        units=height.units,
    )
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Classifier")
    widget.set_model(model)

    for layer in [*membranes, height]:
        result = sp.predict(model, layer.data, pixel_size=tuple(layer.scale[-2:]))  # nm per pixel
        truth = layer.metadata.get("category", "?")
        probs = ", ".join(f"{c} {p:.2f}" for c, p in result.probabilities.items())
        print(f"  {layer.name:<28} truth {truth:<9} predicted {result.label:<9} ({probs})")

    # 3. a CAM layer over an infected membrane, saved with it as one .gwy
    infected = next(layer for layer in membranes if layer.metadata.get("category") == "infected")
    cam = viewer.add_layer(Layer.create(*cam_layer(infected, model, "gradcam")))
    saved = napari.save_layers(str(out / "membrane_cam.gwy"), [infected, cam], plugin=PLUGIN)
    print(
        f"CAM layer {cam.name!r} (values {float(cam.data.min()):.2f}..{float(cam.data.max()):.2f}); saved {saved[0]}"
    )

    # 4. the pipeline as a recipe (predict + CAM + write), replayed on the array
    recipe = export_layer_recipe(
        infected, out / "classify_recipe.yaml", write=".gwy", model=path, cam={"method": "gradcam"}
    )
    replay = sp.run_recipe(recipe, infected.data, pixel_size=tuple(infected.scale[-2:]))
    assert replay.cam.category == cam.metadata["category"]
    print(f"recipe {recipe}: run_recipe predicts {replay.prediction.label}, explains {replay.cam.category}")

    for layer in viewer.layers:
        layer.visible = layer in (infected, cam)
    viewer.window.resize(1200, 800)
    viewer.reset_view()  # fits every layer; then zoom onto the membrane
    whole, part = viewer.layers.extent.world, infected.extent.world
    scene = getattr(viewer, "scene", None)  # napari 0.9 moved the camera to viewer.scene
    camera = scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera
    camera.center = tuple((part[0] + part[1]) / 2)
    camera.zoom *= 0.9 * max(whole[1] - whole[0]) / max(part[1] - part[0])
    shot = viewer.screenshot(str(out / "classify.png"), canvas_only=True)
    print(f"screenshot {out / 'classify.png'} ({shot.shape[1]} x {shot.shape[0]} px)")

    if args.keep_open:
        napari.run()
    else:
        viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
