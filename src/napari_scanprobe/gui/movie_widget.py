"""Movie dock: drift correction of HS-AFM movies and their numbers frame by frame.

Thin by design: it reads the chosen movie layer's geometry, runs the core's generators
(:func:`~napari_scanprobe.process.register.register_steps`,
:func:`~napari_scanprobe.process.frame_table.frame_table_steps`) in a ``thread_worker`` with
progress, time left and Cancel, and shows what they return: the corrected movie as a new layer
(same scale, units and history plus the ``register`` step), the drift trace in nm, the flagged
frames, and the per-frame table (plotted over time, saved as CSV).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Layer
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..process.frame_table import FrameTable, frame_table_steps
from ..process.register import Registration, register_steps
from .layers import LayerMeta, derived_layer, layer_to_channel, processing_step
from .plots import LinePlot

_REFERENCES = {"first frame": "first", "running mean": "mean", "chosen frame": "frame"}


def layer_channel(layer: Image):
    """The core's Channel of an image layer (pixel size in nm, frame time, z unit)."""
    return layer_to_channel(
        layer.data,
        {
            "name": layer.name,
            "scale": list(layer.scale),
            "translate": list(layer.translate),
            "units": list(layer.units),
            "metadata": {"z_unit": LayerMeta(layer).z_unit},
        },
    )


def flagged_text(flagged: np.ndarray) -> str:
    """``"18, 22–31"``: flagged frame numbers, runs shortened."""
    frames = np.flatnonzero(flagged)
    if frames.size == 0:
        return "none"
    parts, start = [], frames[0]
    for prev, cur in zip(frames, [*frames[1:], None], strict=True):
        if cur is None or cur != prev + 1:
            parts.append(str(start) if start == prev else f"{start}–{prev}")
            start = cur
    return ", ".join(parts)


class MovieWidget(QWidget):
    """Dock widget: register a movie layer, its drift trace and flagged frames, the per-frame table."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.registration: Registration | None = None
        self.registered_layers: tuple[Layer, Layer] | None = None  # (input, corrected)
        self.table: FrameTable | None = None

        self.input = ComboBox(
            label="movie",
            choices=self._movie_layers,
            tooltip="A (t, y, x) image layer: an HS-AFM movie (.asd, .h5-jpk …)",
        )
        self.reference = ComboBox(
            label="reference",
            choices=list(_REFERENCES),
            value="first frame",
            tooltip="What each frame is aligned to: the first frame, the running mean of the frames "
            "corrected so far (follows a sample that changes), or a frame you choose",
        )
        self.frame = SpinBox(
            label="frame", min=0, max=0, tooltip="The reference frame (for 'chosen frame')", visible=False
        )
        self.window = SpinBox(
            label="mean of (frames)",
            value=10,
            min=1,
            max=1000,
            tooltip="How many of the last corrected frames the running mean holds",
            visible=False,
        )
        self.per_line = CheckBox(
            text="per-line correction (creep)",
            tooltip="Also take out a smooth x offset along the slow scan axis: piezo creep and "
            "drift during the frame",
        )
        self.run_button = PushButton(text="Register", tooltip="Correct the drift: adds the corrected movie")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, max=100, visible=False)
        self.status = Label(value="")
        self.flagged = Label(value="")
        self.flagged.tooltip = (
            "Frames whose correlation with the reference collapsed (object lost, feedback error, "
            "tip change): kept, given the drift of their neighbours"
        )
        top = Container(
            widgets=[
                self.input,
                self.reference,
                self.frame,
                self.window,
                self.per_line,
                Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
                self.progress,
                self.status,
            ],
            labels=True,
        )
        self.drift_plot = LinePlot("Drift", x_label="frame")
        self.drift_plot.setToolTip("How far each frame's content moved against the reference (nm)")

        self.model = FileEdit(
            label="classifier",
            mode="r",
            filter="*.safetensors *.json",
            tooltip="Optional: a saved classifier model; the table gets each category's probability",
        )
        self.table_button = PushButton(
            text="Per-frame table",
            tooltip="Height (mean, min, max), roughness Sa/Sq, drift and probabilities for every frame",
        )
        self.export_button = PushButton(text="Export CSV…", enabled=False)
        self.column = ComboBox(label="plot", choices=[], tooltip="The column plotted over time")
        table_controls = Container(
            widgets=[
                self.model,
                Container(widgets=[self.table_button, self.export_button], layout="horizontal", labels=False),
                self.column,
            ],
            labels=True,
        )
        self.table_view = QTableWidget(0, 0)
        self.table_view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table_view.setMinimumHeight(120)
        self.table_view.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.table_plot = LinePlot("", x_label="frame")

        register_box = QGroupBox("Drift correction")
        box = QVBoxLayout(register_box)
        box.addWidget(top.native)
        box.addWidget(self.flagged.native)
        box.addWidget(self.drift_plot)
        table_box = QGroupBox("Per-frame numbers")
        box = QVBoxLayout(table_box)
        box.addWidget(table_controls.native)
        box.addWidget(self.table_plot)
        box.addWidget(self.table_view)
        layout = QVBoxLayout(self)
        layout.addWidget(register_box)
        layout.addWidget(table_box)
        layout.addStretch(1)
        self.setMinimumWidth(300)

        self.reference.changed.connect(self._reference_changed)
        self.input.changed.connect(self._input_changed)
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        self.table_button.changed.connect(self.start_table)
        self.export_button.changed.connect(self._export_dialog)
        self.column.changed.connect(self._plot_column)
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        self._input_changed()

    # -- layers ------------------------------------------------------------------------------
    def _movie_layers(self, widget=None):
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and layer.ndim == 3 and not layer.rgb
        ]

    def _layers_changed(self, event=None):
        try:
            self.input.reset_choices()
        except RuntimeError:  # the dock was closed: its Qt widgets are gone
            self.viewer.layers.events.inserted.disconnect(self._layers_changed)
            self.viewer.layers.events.removed.disconnect(self._layers_changed)

    @property
    def layer(self) -> Image | None:
        return self.input.value

    def _input_changed(self, *args):
        layer = self.layer
        self.frame.max = max(0, layer.data.shape[0] - 1) if layer is not None else 0

    def _reference_changed(self, *args):
        self.frame.visible = self.reference.value == "chosen frame"
        self.window.visible = self.reference.value == "running mean"

    def options(self) -> dict[str, Any]:
        """The ``register`` step's options as the dock is set."""
        choice = _REFERENCES[self.reference.value]
        options: dict[str, Any] = {
            "reference": str(int(self.frame.value)) if choice == "frame" else choice,
            "per_line": bool(self.per_line.value),
        }
        if choice == "mean":
            options["window"] = int(self.window.value)
        return options

    # -- work --------------------------------------------------------------------------------
    def _run(self, steps, *args, on_done, **kwargs) -> None:
        worker = create_worker(steps, *args, **kwargs, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(on_done)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._stopped)
        self.worker = worker
        self.run_button.enabled = self.table_button.enabled = False
        self.cancel_button.enabled = True
        self.progress.value = 0
        self.progress.visible = True
        worker.start()

    def start(self, *args) -> None:
        layer = self.layer
        if layer is None:
            show_info("Choose a movie layer (t, y, x) first.")
            return
        channel = layer_channel(layer)
        options = self.options()
        self.status.value = "registering…"
        self._run(
            register_steps,
            channel.data,
            pixel_size=channel.pixel_size,
            unit=channel.xy_unit or "px",
            **options,
            on_done=lambda result: self._registered(layer, result, options),
        )

    def _registered(self, layer: Image, result: Registration, options: dict) -> None:
        step = processing_step("register", "phase", options)
        data, kwargs, kind = derived_layer(layer, result.movie, step, "registered")
        self.viewer.add_layer(Layer.create(data, kwargs, kind))
        out = next(x for x in self.viewer.layers if x.data is data)  # the viewer's own layer object
        self.registration, self.registered_layers = result, (layer, out)
        table = result.table()
        unit = result.unit
        frames = table["frame"]
        self.drift_plot.title = f"Drift ({unit})"
        self.drift_plot.set_series("x", frames, table[f"dx_{unit}"])
        self.drift_plot.set_series("y", frames, table[f"dy_{unit}"])
        self.flagged.value = f"flagged frames: {flagged_text(result.flagged)}"
        self.status.value = f"added '{out.name}'"

    def start_table(self, *args) -> None:
        layer = self.layer
        if layer is None:
            show_info("Choose a movie layer (t, y, x) first.")
            return
        channel = layer_channel(layer)
        registration = None
        if self.registered_layers is not None and any(layer is x for x in self.registered_layers):
            registration = self.registration
        model = self.model.value
        model = str(model) if model and Path(model).is_file() else None
        self.status.value = "measuring frames…"
        self._run(
            frame_table_steps,
            channel.data,
            z_unit=channel.z_unit,
            frame_time_s=channel.frame_time_s,
            registration=registration,
            model=model,
            pixel_size=channel.pixel_size if channel.xy_unit == "nm" else None,
            on_done=self._show_table,
        )

    def _show_table(self, table: FrameTable) -> None:
        self.table = table
        names = list(table.columns)
        view = self.table_view
        view.clear()
        view.setColumnCount(len(names))
        view.setRowCount(len(table))
        view.setHorizontalHeaderLabels([table.heading(n) for n in names])
        for c, name in enumerate(names):
            for r, value in enumerate(table.columns[name]):
                text = f"{value:.4g}" if isinstance(value, float) else str(value)
                view.setItem(r, c, QTableWidgetItem(text))
        plotted = [n for n in names if n not in ("frame", "time", "flagged")]
        self.column.choices = plotted
        self.column.value = "mean" if "mean" in plotted else plotted[0]
        self.export_button.enabled = True
        self._plot_column()
        self.status.value = f"table of {len(table)} frames"

    def _plot_column(self, *args) -> None:
        name = self.column.value
        if self.table is None or name is None:
            return
        self.table_plot.series.clear()
        self.table_plot.colors.clear()
        self.table_plot.title = self.table.heading(name)
        self.table_plot.set_series(name, self.table.columns["frame"], self.table.columns[name])

    def _on_progress(self, update) -> None:
        self.progress.value = int(100 * update.fraction)
        self.status.value = update.message

    def _failed(self, exc: Exception) -> None:
        self.status.value = f"failed: {exc}"
        show_error(f"Movie: {exc}")

    def _stopped(self) -> None:
        self.run_button.enabled = self.table_button.enabled = True
        self.cancel_button.enabled = False
        self.progress.visible = False
        if self.worker is not None and self.worker.abort_requested:
            self.status.value = "cancelled"
        self.worker = None

    def cancel(self, *args) -> None:
        if self.worker is not None:
            self.worker.quit()

    # -- export ------------------------------------------------------------------------------
    def _export_dialog(self, *args) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the per-frame table", "frames.csv", "CSV (*.csv)")
        if path:
            self.export_csv(path)

    def export_csv(self, path: str | Path) -> None:
        if self.table is None:
            show_info("Make the per-frame table first.")
            return
        try:
            self.table.to_csv(path)
        except OSError as exc:
            show_error(f"Cannot save the table: {exc}")
            return
        self.status.value = f"saved {Path(path).name}"
