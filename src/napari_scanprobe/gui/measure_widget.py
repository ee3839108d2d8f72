"""Measure dock: line profiles (every channel of the scan, in nm), kymographs of movies, step
height, ISO 25178 roughness, height histogram, a colour bar with the unit and a cursor readout.

Thin by design: shapes and layers are turned into physical coordinates, masks and Channels;
the numbers come from :mod:`napari_scanprobe.measure`; results go back as plots, tables and
(for a kymograph) a new image layer that records the step in ``metadata["processing"]``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Image, Labels, Layer, Shapes
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error
from qtpy.QtCore import QBuffer, QIODevice, Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from .. import measure
from ..atomic import atomic_write
from ..io.scan import Channel
from .compat import text_overlay_of
from .layers import LayerMeta, axis_unit, contrast_limits, layer_to_channel, processing_step
from .plots import LinePlot

#: What each roughness parameter means, for the table's tooltips.
PARAMETER_HELP = {
    "Sa": "Arithmetic mean height: mean of |z - mean|",
    "Sq": "Root mean square height (standard deviation of the heights)",
    "Ssk": "Skewness: > 0 peaks dominate, < 0 valleys dominate",
    "Sku": "Kurtosis: 3 for Gaussian heights, > 3 sharp peaks/valleys",
    "Sp": "Maximum peak height above the mean",
    "Sv": "Maximum valley depth below the mean",
    "Sz": "Maximum height: Sp + Sv",
    "Sdq": "Root mean square gradient (slope), from the physical pixel size",
}
WHOLE = "whole image"
SHAPE = "selected shape"


def _button(text: str, tip: str, slot) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.clicked.connect(slot)
    return button


def _form_tab(label: str, field: QWidget, *widgets: QWidget) -> QWidget:
    """A tab: one labelled field, then ``widgets`` from top to bottom."""
    tab = QWidget()
    layout = QVBoxLayout(tab)
    form = QFormLayout()
    form.addRow(label, field)
    layout.addLayout(form)
    for widget in widgets:
        layout.addWidget(widget)
    return tab


def _wrapped(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        layout.addWidget(w)
    return box


def channel_title(layer: Layer) -> str:
    """The channel's title (``"Z (forward)"``) from our metadata, else the layer name."""
    return LayerMeta(layer).title or layer.name


def layer_channel(layer: Image, data: Any = None) -> Channel:
    """An image layer (or ``data`` in its frame, e.g. one frame of a movie) as a Channel in nm."""
    attributes = {
        "name": channel_title(layer),
        "scale": list(layer.scale),
        "translate": list(layer.translate),
        "units": list(layer.units) if hasattr(layer, "units") else None,
        "metadata": {"z_unit": LayerMeta(layer).z_unit or ""},
    }
    if data is not None and getattr(data, "ndim", 0) == 2 and layer.ndim == 3:
        attributes.update(scale=attributes["scale"][1:], translate=attributes["translate"][1:])
        attributes["units"] = attributes["units"][1:] if attributes["units"] else None
    channel = layer_to_channel(layer.data if data is None else data, attributes)
    channel.name = attributes["name"]
    return channel


def shape_world(shapes: Shapes, index: int) -> np.ndarray:
    """Vertices of one shape in world coordinates ``(y, x)`` (the last two axes)."""
    return np.array([shapes.data_to_world(v) for v in shapes.data[index]])[:, -2:]


def region_from_shape(layer: Image, vertices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask of the image pixels inside a polygon/rectangle given in world ``(y, x)``."""
    from skimage.draw import polygon2mask

    points = []
    for y, x in vertices:
        world = list(np.asarray(layer.data_to_world(np.zeros(layer.ndim)), dtype=float))
        world[-2:] = [y, x]
        points.append(np.asarray(layer.world_to_data(world))[-2:])
    return polygon2mask(shape, np.array(points))


class MeasureWidget(QWidget):
    """Dock widget: input layers at the top, one tab per measurement, readout at the bottom."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.last_profile: measure.Profile | None = None
        self.last_roughness: measure.Roughness | None = None
        self.last_step: measure.StepHeight | None = None
        self.last_histogram: measure.Histogram | None = None

        self.image_box = QComboBox()
        self.image_box.setToolTip(
            "The image or movie layer to measure (its scan's other channels are profiled too)"
        )
        self.shapes_box = QComboBox()
        self.shapes_box.setToolTip(
            "The Shapes layer holding the line, rectangles or ROI; selected shapes are used"
        )
        self.new_shapes = _button(
            "New", "Add a Shapes layer to draw a line on (press L for a line)", self.add_shapes
        )
        self.line_width = QDoubleSpinBox()
        self.line_width.setRange(0.0, 1e6)
        self.line_width.setDecimals(2)
        self.line_width.setToolTip(
            "Width of the band across the line whose values are averaged (0: the line itself)"
        )
        form = QFormLayout()
        form.addRow("Image layer", self.image_box)
        form.addRow("Shapes layer", _row(self.shapes_box, self.new_shapes))
        self.width_label = QLabel("Line width (nm)")
        form.addRow(self.width_label, self.line_width)

        self.tabs = QTabWidget()
        self.tabs.addTab(self._profile_tab(), "Profile")
        self.tabs.addTab(self._step_tab(), "Step")
        self.tabs.addTab(self._roughness_tab(), "Roughness")
        self.tabs.addTab(self._histogram_tab(), "Histogram")

        self.colorbar = QCheckBox("Colour bar with unit")
        self.colorbar.setToolTip("Show the image layer's colour bar and its physical unit on the canvas")
        self.colorbar.toggled.connect(self.show_colorbar)
        self.readout = _wrapped("cursor: move over the image")
        self.readout.setToolTip("Position and value under the mouse cursor, with units")
        self.status = _wrapped()

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.tabs)
        layout.addWidget(self.colorbar)
        layout.addWidget(self.readout)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.setMinimumWidth(300)

        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self.refresh_layers)
        self.image_box.currentIndexChanged.connect(self._image_changed)
        self._followed: Shapes | None = None
        self.shapes_box.currentIndexChanged.connect(self._follow_shapes)
        self.viewer.cursor.events.position.connect(self.update_readout)
        self.refresh_layers()

    # -- layout -----------------------------------------------------------------------------
    def _profile_tab(self) -> QWidget:
        self.plot_channel = QComboBox()
        self.plot_channel.setToolTip("The channel drawn in the plot (the CSV holds every channel)")
        self.plot_channel.currentTextChanged.connect(self._draw_profile)
        self.plot_channel.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.plot_channel.setMinimumContentsLength(10)
        self.profile_plot = LinePlot(title="profile", x_label="distance (nm)")
        self.follow = QCheckBox("Follow the line")
        self.follow.setChecked(True)
        self.follow.setToolTip("Redraw the profile whenever the line is drawn, moved or edited")
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.cancel_button = _button("Cancel", "Stop the kymograph", self.cancel)
        self.cancel_button.setVisible(False)
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(
            _row(
                _button(
                    "Profile",
                    "Profile of every channel of the scan along the selected line or path",
                    self.run_profile,
                ),
                _button(
                    "Kymograph",
                    "On a movie: the profile in every frame, as a new layer (time x distance)",
                    self.run_kymograph,
                ),
            )
        )
        layout.addWidget(_row(QLabel("Plot channel"), self.plot_channel))
        layout.addWidget(self.follow)
        layout.addWidget(self.profile_plot)
        layout.addWidget(
            _row(
                _button(
                    "Save CSV…", "Save distance and every channel's values as CSV", lambda: self.save_csv()
                ),
                _button("Save PNG…", "Save the plot as a PNG image", lambda: self.save_png()),
            )
        )
        layout.addWidget(_row(self.progress, self.cancel_button))
        return tab

    def _step_tab(self) -> QWidget:
        self.step_result = _wrapped("Select two rectangles (or polygons) on the two levels, then Measure.")
        tab = QWidget()
        layout = QVBoxLayout(tab)
        layout.addWidget(
            _button(
                "Measure step height", "Difference of the mean heights in two selected shapes", self.run_step
            )
        )
        layout.addWidget(self.step_result)
        layout.addStretch(1)
        return tab

    def _roughness_tab(self) -> QWidget:
        self.region_box = QComboBox()
        self.region_box.setToolTip(
            "Evaluated area: the whole image, the selected shape(s), or a Labels layer (label > 0)"
        )
        self.table = QTableWidget(len(measure.ROUGHNESS_PARAMETERS), 3)
        self.table.setHorizontalHeaderLabels(["parameter", "value", "unit"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setMinimumWidth(200)
        self.table.resizeRowsToContents()
        header = self.table.horizontalHeader().sizeHint().height()
        rows = self.table.verticalHeader().length()
        self.table.setMinimumHeight(header + rows + 2 * self.table.frameWidth() + 8)
        for row, name in enumerate(measure.ROUGHNESS_PARAMETERS):
            item = QTableWidgetItem(name)
            item.setToolTip(PARAMETER_HELP[name])
            self.table.setItem(row, 0, item)
        button = _button(
            "Roughness (ISO 25178)", "Sa, Sq, Ssk, Sku, Sp, Sv, Sz, Sdq of the area", self.run_roughness
        )
        return _form_tab("Area", self.region_box, button, self.table)

    def _histogram_tab(self) -> QWidget:
        self.bins = QSpinBox()
        self.bins.setRange(2, 4096)
        self.bins.setValue(128)
        self.bins.setToolTip("Number of equal height bins")
        self.histogram_plot = LinePlot(title="pixels per bin", x_label="height")
        button = _button(
            "Height histogram", "Counts of the area's heights (same area as Roughness)", self.run_histogram
        )
        return _form_tab("Bins", self.bins, button, self.histogram_plot)

    # -- layers -----------------------------------------------------------------------------
    def refresh_layers(self, *args) -> None:
        try:
            self._fill_layer_boxes()
        except RuntimeError:  # the dock was closed: its Qt widgets are gone
            self._disconnect()

    def _disconnect(self) -> None:
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.disconnect(self.refresh_layers)
        self.viewer.cursor.events.position.disconnect(self.update_readout)
        if self._followed is not None:
            with contextlib.suppress(Exception):
                self._followed.events.data.disconnect(self._line_changed)

    def _fill_layer_boxes(self) -> None:
        for box, kind, extra in (
            (self.image_box, Image, []),
            (self.shapes_box, Shapes, []),
            (self.region_box, Labels, [WHOLE, SHAPE]),
        ):
            current = box.currentText()
            box.blockSignals(True)
            box.clear()
            names = [layer.name for layer in self.viewer.layers if isinstance(layer, kind)]
            box.addItems(extra + [f"Labels: {n}" if kind is Labels else n for n in names])
            if current and box.findText(current) >= 0:
                box.setCurrentIndex(box.findText(current))
            box.blockSignals(False)
        self._image_changed()
        self._follow_shapes()

    @property
    def image(self) -> Image | None:
        name = self.image_box.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    @property
    def shapes(self) -> Shapes | None:
        name = self.shapes_box.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _image_changed(self, *args) -> None:
        layer = self.image
        unit = self._xy_unit(layer) if layer is not None else "nm"
        self.width_label.setText(f"Line width ({unit})")
        if self.colorbar.isChecked():
            self.show_colorbar(True)

    def _xy_unit(self, layer: Image) -> str:
        """The lateral unit as the readout and labels show it (no pixel data is read)."""
        units = list(layer.units) if hasattr(layer, "units") else []
        return (axis_unit(units[-1]) if units else "") or "px"

    def _z_unit(self, layer: Image) -> str:
        return LayerMeta(layer).z_unit or ""

    def add_shapes(self) -> Shapes:
        image = self.image
        frame = {"ndim": image.ndim, "units": list(image.units)} if image is not None else {}
        edge = max(image.scale[-2:]) if image is not None else 1.0  # one pixel, in world units
        layer = self.viewer.add_shapes(
            name="measure lines", edge_color="cyan", edge_width=edge, face_color="transparent", **frame
        )
        layer.mode = "add_line"
        self.shapes_box.setCurrentText(layer.name)
        return layer

    def _frame(self, layer: Image) -> Any:
        """The 2-D image shown now: the layer itself, or a movie's current frame."""
        if layer.ndim == 2:
            return layer.data
        point = list(self.viewer.dims.point)[-layer.ndim :]
        t = int(round(float(layer.world_to_data(point)[0])))
        return layer.data[int(np.clip(t, 0, layer.data.shape[0] - 1))]

    def _siblings(self, layer: Image) -> list[Image]:
        """The image layers of the same scan (same source file and shape), ``layer`` first."""
        source = LayerMeta(layer).source
        others = [
            other
            for other in self.viewer.layers
            if isinstance(other, Image)
            and other.name != layer.name  # napari hands docks proxies of layers: compare names
            and source
            and LayerMeta(other).source == source
            and other.data.shape == layer.data.shape
            and not other.rgb
        ]
        return [layer, *others]

    def _selected(self, kinds: tuple[str, ...], count: int) -> list[np.ndarray]:
        """World vertices of ``count`` shapes of these kinds: the selected ones, else the last drawn."""
        shapes = self.shapes
        if shapes is None:
            raise ValueError("choose a Shapes layer (or press New and draw)")
        found = [i for i in sorted(shapes.selected_data) if shapes.shape_type[i] in kinds]
        if len(found) < count:
            found = [i for i in range(len(shapes.data)) if shapes.shape_type[i] in kinds][-count:]
        if len(found) < count:
            raise ValueError(
                f"draw or select {count} shape(s) of type {' or '.join(kinds)} in '{shapes.name}'"
            )
        return [shape_world(shapes, i) for i in found[:count]]

    def _region(self, layer: Image, frame: Any) -> np.ndarray | None:
        choice = self.region_box.currentText()
        if choice == WHOLE or not choice:
            return None
        if choice == SHAPE:
            (vertices,) = self._selected(("rectangle", "polygon", "ellipse"), 1)
            return region_from_shape(layer, vertices, frame.shape)
        labels = self.viewer.layers[choice.removeprefix("Labels: ")]
        mask = np.asarray(labels.data)
        if mask.ndim == 3 and layer.ndim == 3 and mask.shape[1:] == frame.shape:
            mask = mask[int(round(float(layer.world_to_data(list(self.viewer.dims.point)[-3:])[0])))]
        if mask.shape != frame.shape:
            raise ValueError(f"the Labels layer '{labels.name}' is {mask.shape}, the image {frame.shape}")
        return mask > 0

    def _need_image(self) -> Image:
        layer = self.image
        if layer is None:
            raise ValueError("choose an image layer")
        return layer

    def _follow_shapes(self, *args) -> None:
        """Redraw the profile when the line of the chosen Shapes layer is drawn, moved or edited."""
        shapes = self.shapes
        if self._followed is not None:
            with contextlib.suppress(Exception):
                self._followed.events.data.disconnect(self._line_changed)
        self._followed = shapes
        if shapes is not None:
            shapes.events.data.connect(self._line_changed)

    def _line_changed(self, *args) -> None:
        try:
            follow = self.follow.isChecked()
        except RuntimeError:  # the dock was closed
            self._disconnect()
            return
        if follow:
            self.run_profile(quiet=True)

    def _report(self, exc: Exception) -> None:
        self.status.setText(f"⚠ {exc}")
        show_error(str(exc))

    # -- profile and kymograph --------------------------------------------------------------
    def run_profile(self, *args, quiet: bool = False) -> measure.Profile | None:
        """The profile along the selected line; ``quiet``: a problem goes to the status line only."""
        try:
            layer = self._need_image()
            (line,) = self._selected(("line", "path"), 1)
            channels = [layer_channel(other, self._frame(other)) for other in self._siblings(layer)]
            self.last_profile = measure.profile(channels, line, width=self.line_width.value())
        except ValueError as exc:
            if quiet:
                self.status.setText(f"⚠ {exc}")
            else:
                self._report(exc)
            return None
        p = self.last_profile
        current = self.plot_channel.currentText()
        self.plot_channel.blockSignals(True)
        self.plot_channel.clear()
        self.plot_channel.addItems(list(p.values))
        self.plot_channel.setCurrentText(current if current in p.values else next(iter(p.values)))
        self.plot_channel.blockSignals(False)
        self._draw_profile()
        self.status.setText(f"profile: {p.distance[-1]:.4g} {p.distance_unit}, {len(p.values)} channel(s)")
        return p

    def _draw_profile(self, *args) -> None:
        p = self.last_profile
        name = self.plot_channel.currentText()
        if p is None or name not in p.values:
            return
        unit = p.units[name]
        self.profile_plot.series.clear()
        self.profile_plot.colors.clear()
        self.profile_plot.title = f"{name} ({unit})" if unit else name
        self.profile_plot.x_label = f"distance ({p.distance_unit})"
        self.profile_plot.set_series(name, p.distance, p.values[name])

    def run_kymograph(self, *args) -> None:
        try:
            layer = self._need_image()
            if layer.ndim != 3:
                raise ValueError(f"'{layer.name}' is not a movie; Kymograph needs a (t, y, x) layer")
            (line,) = self._selected(("line", "path"), 1)
            channel = layer_channel(layer)
        except ValueError as exc:
            self._report(exc)
            return
        width = self.line_width.value()
        worker = create_worker(
            measure.kymograph_steps, channel, line, width, _start_thread=False, _ignore_errors=True
        )
        worker.yielded.connect(lambda u: self.progress.setValue(int(100 * u.fraction)))
        worker.returned.connect(lambda k: self._add_kymograph(layer, k))
        worker.errored.connect(self._report)
        worker.finished.connect(self._kymograph_stopped)
        self.worker = worker
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.status.setText("kymograph running…")
        worker.start()

    def _add_kymograph(self, layer: Image, k: measure.Kymograph) -> None:
        step_nm = float(k.distance[1] - k.distance[0]) if len(k.distance) > 1 else 1.0
        metadata = {key: v for key, v in layer.metadata.items() if key not in ("header", "channel_header")}
        record = {"points": k.points.tolist(), "width": k.width}
        metadata["processing"] = LayerMeta(layer).processing + [
            processing_step("kymograph", "bilinear", record)
        ]
        metadata["pixel_size"] = [k.frame_time_s or 1.0, step_nm]
        new = self.viewer.add_image(
            k.data,
            name=f"{layer.name} | kymograph",
            scale=[k.frame_time_s or 1.0, step_nm],
            units=[
                "s" if k.frame_time_s else "pixel",
                k.distance_unit if k.distance_unit != "px" else "pixel",
            ],
            axis_labels=["t", "distance"],
            colormap=layer.colormap.name,
            contrast_limits=contrast_limits(k.data),
            metadata=metadata,
        )
        self.status.setText(
            f"added '{new.name}': {k.data.shape[0]} frames x {k.distance[-1]:.4g} {k.distance_unit}"
        )

    def _kymograph_stopped(self) -> None:
        if self.worker is not None and self.worker.abort_requested:
            self.status.setText("kymograph cancelled")
        self.progress.setVisible(False)
        self.cancel_button.setVisible(False)
        self.worker = None

    def cancel(self, *args) -> None:
        if self.worker is not None:
            self.worker.quit()

    def save_csv(self, path: str | None = None) -> Path | None:
        if self.last_profile is None:
            self._report(ValueError("make a profile first"))
            return None
        path = (
            path or QFileDialog.getSaveFileName(self, "Save profile as CSV", "profile.csv", "CSV (*.csv)")[0]
        )
        if not path:
            return None
        target = atomic_write(path, self.last_profile.to_csv().encode("utf-8"))
        self.status.setText(f"saved {target}")
        return target

    def save_png(self, path: str | None = None) -> Path | None:
        path = path or QFileDialog.getSaveFileName(self, "Save plot as PNG", "profile.png", "PNG (*.png)")[0]
        if not path:
            return None
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        self.profile_plot.grab().save(buffer, "PNG")
        target = atomic_write(path, bytes(buffer.data()))
        self.status.setText(f"saved {target}")
        return target

    # -- step, roughness, histogram ---------------------------------------------------------
    def run_step(self, *args) -> measure.StepHeight | None:
        try:
            layer = self._need_image()
            frame = self._frame(layer)
            first, second = (
                region_from_shape(layer, v, frame.shape)
                for v in self._selected(("rectangle", "polygon", "ellipse"), 2)
            )
            a = measure.step_height(layer_channel(layer, frame), first, second)
            s = a if a.height >= 0 else measure.step_height(layer_channel(layer, frame), second, first)
        except ValueError as exc:
            self._report(exc)
            return None
        self.last_step = s
        unit = f" {s.unit}" if s.unit else ""
        self.step_result.setText(
            f"Step height: {s.height:.4g} ± {s.uncertainty:.2g}{unit}\n"
            f"upper level {s.upper_mean:.4g}{unit} (σ {s.upper_std:.3g}, {s.upper_pixels} px)\n"
            f"lower level {s.lower_mean:.4g}{unit} (σ {s.lower_std:.3g}, {s.lower_pixels} px)"
        )
        return s

    def _area(self) -> tuple[Image, Channel, np.ndarray | None]:
        """The image layer, its shown frame as a Channel, and the chosen area's mask (None: all)."""
        layer = self._need_image()
        frame = self._frame(layer)
        return layer, layer_channel(layer, frame), self._region(layer, frame)

    def run_roughness(self, *args) -> measure.Roughness | None:
        try:
            layer, channel, mask = self._area()
            r = measure.roughness(channel, mask=mask)
        except ValueError as exc:
            self._report(exc)
            return None
        self.last_roughness = r
        for row, (parameter, _, unit) in enumerate(r.rows()):
            self.table.setItem(row, 1, QTableWidgetItem(r.text(parameter, unit=False)))
            self.table.setItem(row, 2, QTableWidgetItem(unit))
        self.status.setText(f"roughness of {r.pixels} pixels of '{layer.name}'")
        return r

    def run_histogram(self, *args) -> measure.Histogram | None:
        try:
            _, channel, mask = self._area()
            h = measure.height_histogram(channel, bins=self.bins.value(), mask=mask)
        except ValueError as exc:
            self._report(exc)
            return None
        self.last_histogram = h
        self.histogram_plot.x_label = f"height ({h.unit})" if h.unit else "value"
        self.histogram_plot.set_series("pixels", h.centers, h.counts)
        return h

    # -- colour bar and readout -------------------------------------------------------------
    def show_colorbar(self, on: bool) -> None:
        layer = self.image
        for other in self.viewer.layers:
            if isinstance(other, Image):
                other.colorbar.visible = bool(on) and layer is not None and other.name == layer.name
        text = text_overlay_of(self.viewer)
        unit = self._z_unit(layer) if layer is not None else ""
        text.visible = bool(on) and layer is not None
        text.position = "top_right"
        text.text = f"colour bar: {channel_title(layer)} ({unit or 'no unit'})" if layer is not None else ""

    def update_readout(self, *args) -> None:
        try:
            layer = self.image
        except RuntimeError:  # the dock was closed
            self._disconnect()
            return
        if layer is None:
            return
        position = self.viewer.cursor.position
        value = layer.get_value(position, world=True)
        y, x = position[-2], position[-1]
        unit = self._xy_unit(layer)
        z_unit = self._z_unit(layer)
        text = f"x {x:.4g} {unit}, y {y:.4g} {unit}"
        if value is not None and np.isscalar(value) and np.isfinite(value):
            text += f"; {channel_title(layer)} {float(value):.4g} {z_unit}".rstrip()
        self.readout.setText(text)
