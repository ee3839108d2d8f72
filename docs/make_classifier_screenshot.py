"""Make ``docs/classifier_widget.png``: the classifier dock's Train tab after a training run.

Synthetic HS-AFM membranes (healthy, and malaria-infected with knobs; see
``napari_scanprobe.learn.synthetic``) are opened as image layers, assigned to their categories
through the widget's own controls, and a small network is trained; then the whole Train tab
(options, curves, metrics, confusion matrix) is saved as a picture.

Run from the repository root (needs a display; headless: ``xvfb-run -a python docs/...``):

    python docs/make_classifier_screenshot.py [--per-category 40] [--epochs 25] [--out docs/classifier_widget.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch  # noqa: F401  (before Qt: importing torch after Qt can crash)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-category", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--out", default=str(Path(__file__).with_name("classifier_widget.png")))
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication, QScrollArea

    from napari_scanprobe.learn.synthetic import CATEGORIES, DEFAULT_PIXEL_SIZE_NM, knob_dataset

    viewer = napari.Viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-scanprobe", "Classifier")
    data = knob_dataset(args.per_category, args.per_category, size=128, seed=11)
    px = DEFAULT_PIXEL_SIZE_NM
    layers = {c: [] for c in CATEGORIES}
    for i, (image, label) in enumerate(zip(data.images, data.labels)):
        category = CATEGORIES[label]
        metadata = {
            "channel": "Height",
            "xy_unit": "nm",
            "pixel_size": [px, px],
            "z_unit": "nm",
            "source": f"membrane_{i:03d}.asd",
            "processing": [],
        }
        layers[category].append(
            viewer.add_image(
                image,
                name=f"membrane {i:03d}",
                scale=(px, px),
                units="nm",
                colormap="afmhot",
                metadata=metadata,
            )
        )

    panel = widget.train
    for row, category in enumerate(CATEGORIES):
        panel.categories.item(row).setText(category)
        for layer in layers[category]:
            panel.category_combo(layer).setCurrentText(category)
    panel.epochs.setValue(args.epochs)
    panel.input_size.setValue(64)
    panel.pixel_size.setValue(2 * px)  # the whole 1 µm image in the 64-px input, as the benchmark does
    panel.blocks.setValue(4)
    panel.filters.setValue(16)
    panel.validation.setValue(0.25)
    panel.patience.setValue(8)
    panel.threads.setValue(2)

    app = QApplication.instance()
    started = time.perf_counter()
    panel.train_button.click()
    while panel.worker is not None:
        app.processEvents()
        time.sleep(0.02)
    for _ in range(20):
        app.processEvents()
    if panel.model is None:
        raise SystemExit(f"training failed: {panel.status.text()}")
    print(f"trained in {time.perf_counter() - started:.1f} s: accuracy {panel.model.metrics.get('accuracy')}")

    inner = panel.findChild(QScrollArea).widget()  # the whole tab, not only the part in view
    inner.resize(420, inner.sizeHint().height())
    for _ in range(5):
        app.processEvents()
    inner.grab().save(args.out)
    print(f"wrote {args.out}")
    viewer.close()


if __name__ == "__main__":
    main()
