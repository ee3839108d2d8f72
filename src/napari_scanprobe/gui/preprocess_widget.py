"""Preprocessing dock widget: flatten, denoise and upscale napari image layers.

Thin by design: each section's controls are built from the step's contract
(:mod:`napari_scanprobe.process.steps`: method labels and help, option labels with units,
ranges and tooltips); it runs the core function in a ``thread_worker`` and adds the result as a
new layer that keeps the input's frame and extends its ``metadata["processing"]`` history. The
live preview of one frame runs in a worker too (the viewer never freezes; a stale preview is
dropped). CNN methods run the core's generator, so the progress bar shows the loss and Cancel
stops at the next step. The dock is at most :data:`DOCK_WIDTH` px wide and wraps its texts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Layer
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QLabel, QSizePolicy, QTabWidget, QVBoxLayout, QWidget

from ..process.contract import Option, Step
from ..process.steps import STEPS, step_function
from ..untrusted import one_line
from .layers import derived_layer, layer_to_array, processing_step

_PREVIEW_DELAY_MS = 250
#: The dock's width: fits beside the canvas on a 1280 x 800 laptop.
DOCK_WIDTH = 380


@dataclass
class Operation:
    """One kind of preprocessing: its contract and the core functions that run it."""

    contract: Step
    run: Callable[..., Any]  # run(image, method=..., **options) -> array
    steps: Callable[..., Any] | None = None  # steps(image, method=..., **options) -> generator (long work)

    @property
    def step(self) -> str:
        return self.contract.name

    def zoom(self, params: dict) -> int:
        return int(params.get("factor", 1))


def operations() -> list[Operation]:
    from ..process.denoise import denoise_steps
    from ..process.superres import upscale_steps

    return [
        Operation(STEPS["flatten"], step_function("flatten")),
        Operation(STEPS["denoise"], step_function("denoise"), denoise_steps),
        Operation(STEPS["upscale"], step_function("upscale"), upscale_steps),
    ]


def _tooltip(option: Option) -> str:
    allowed = option.range_text
    unit = f" {option.unit}" if option.unit and option.kind in ("int", "float") else ""
    return f"{option.help}. Allowed: {allowed}{unit}." if allowed else option.help


def _option_widget(option: Option):
    """The control of one option: label with its unit, range from the contract, help as tooltip."""
    common = {"name": option.name, "label": option.title, "tooltip": _tooltip(option)}
    if option.kind == "bool":
        return CheckBox(value=option.default, **common)
    if option.kind == "choice":
        return ComboBox(choices=list(option.choices), value=option.default, **common)
    if option.kind == "int":
        return SpinBox(value=option.default, min=int(option.low), max=int(option.high), **common)
    low = float(option.low)
    default = option.default if option.default is not None else low
    # the step sets the shown decimals: a tenth of the default's order of magnitude
    step = 10.0 ** (math.floor(math.log10(abs(default))) - 1) if default else 0.01
    widget = FloatSpinBox(value=float(default), min=low, max=float(option.high), step=step, **common)
    if option.nullable:  # the lowest value stands for null: "auto (calibrated on the image)"
        widget.native.setSpecialValueText(f"auto ({option.none_means})")
    return widget


def _option_value(option: Option, widget) -> Any:
    if option.nullable and option.kind == "float" and widget.value <= float(option.low):
        return None
    return widget.value


def _wrapping(label: Label) -> Label:
    """A label whose text wraps instead of widening the dock."""
    native = label.native
    if not isinstance(native, QLabel):
        native = native.findChild(QLabel) or native
    if isinstance(native, QLabel):
        native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
    return label


class OperationPanel(Container):
    """One section: method, its options, live preview, Run / Cancel and progress."""

    def __init__(self, dock: PreprocessWidget, op: Operation):
        super().__init__(labels=True)
        self.dock, self.op = dock, op
        contract = op.contract
        self.method = ComboBox(
            name="method",
            label="Method",
            choices=[(m.label or m.name, m.name) for m in contract.methods],
            tooltip=contract.help,
        )
        for i, m in enumerate(contract.methods):  # each method's help on its entry of the list
            self.method.native.setItemData(i, m.help, Qt.ToolTipRole)
        # options every method takes that a user sets here (factor); seed and saved weights are for scripts/recipes
        self._extra_options = {o.name: o for o in contract.common if o.kind == "choice"}
        self.extras = {name: _option_widget(o) for name, o in self._extra_options.items()}
        self.pair = ComboBox(
            name="pair",
            label="Second observation",
            choices=self._pair_choices,
            nullable=True,
            visible=False,
            tooltip="The retrace (or another observation) of the same area on the same grid",
        )
        self.option_box = Container(labels=True)
        self._options: dict[str, Option] = {}
        self.preview = CheckBox(
            name="preview",
            label="Live preview",
            value=False,
            tooltip="Show the result on the current frame as the options change",
        )
        self.run_button = PushButton(text=f"Run {contract.label.lower()}")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, max=100, visible=False)
        self.status = _wrapping(Label(value=""))
        self.extend(
            [
                self.method,
                *self.extras.values(),
                self.pair,
                self.option_box,
                self.preview,
                self.run_button,
                self.cancel_button,
                self.progress,
                self.status,
            ]
        )
        self.worker = None
        self.chosen: dict | None = None  # what an automatic method reported it chose (Progress extra "auto")
        self.preview_worker = None
        self._preview_generation = 0
        self._preview_timer = QTimer(self.native)  # dies with the panel: no late previews
        self._preview_timer.setSingleShot(True)
        self._preview_timer.timeout.connect(self.update_preview)
        self.method.changed.connect(self._method_changed)
        self.preview.changed.connect(self.schedule_preview)
        self.run_button.changed.connect(self.start)
        self.cancel_button.changed.connect(self.cancel)
        for widget in self.extras.values():
            widget.changed.connect(self.schedule_preview)
        self._method_changed()

    # -- parameters ----------------------------------------------------------------------
    def _method_changed(self, *args):
        method = self.op.contract.method(self.method.value)
        self.option_box.clear()
        self._options = {}
        for option in method.options:
            if option.script_only:
                continue  # arrays, devices, threads: for scripts
            widget = _option_widget(option)
            widget.changed.connect(self.schedule_preview)
            self.option_box.append(widget)
            self._options[option.name] = option
        self.method.tooltip = method.help
        self.preview.enabled = method.preview
        if not self.preview.enabled:
            self.preview.value = False
        self.pair.visible = self._wants_pair()
        if self._wants_pair():
            self.pair.reset_choices()
            self.pair.value = self.dock.partner_of(self.dock.layer)
        self.schedule_preview()

    def _wants_pair(self) -> bool:
        """Noise2Noise learns from a second observation of the same scan (retrace, next frame)."""
        return self.method.value == "n2n"

    def _pair_choices(self, widget=None):
        return [layer for layer in self.dock.viewer.layers if isinstance(layer, Image)]

    def params(self) -> dict:
        """The method's options plus top-level parameters, as plain Python values."""
        values = {w.name: _option_value(self._options[w.name], w) for w in self.option_box}
        values.update({name: w.value for name, w in self.extras.items()})
        if self._wants_pair() and self.pair.value is not None:
            values["pair"] = self.pair.value
        return values

    def _call_args(self) -> tuple[str, dict, dict]:
        """(method, kwargs for the core, options for the history -- layers replaced by their names)."""
        method, params = self.method.value, self.params()
        kwargs, record = dict(params), dict(params)
        if "pair" in params:
            kwargs["pair"] = layer_to_array(params["pair"])[0]
            record["pair"] = params["pair"].name
        return method, kwargs, record

    # -- preview ---------------------------------------------------------------------------
    def schedule_preview(self, *args):
        """Recompute the preview shortly (after the last of several quick changes), or remove it."""
        if self.preview.value:
            self._preview_timer.start(_PREVIEW_DELAY_MS)
        else:
            self.dock.remove_preview()

    def update_preview(self):
        """Compute the preview of the current frame in a worker; only the latest one is shown."""
        layer = self.dock.layer
        if layer is None or not self.preview.value:
            return
        method, kwargs, _ = self._call_args()
        frame = self.dock.current_frame(layer)
        self._preview_generation += 1
        generation = self._preview_generation
        worker = create_worker(
            self.op.run, frame, method=method, **kwargs, _start_thread=False, _ignore_errors=True
        )
        worker.returned.connect(lambda result: self._preview_ready(generation, layer, result, kwargs))
        worker.errored.connect(lambda exc: self._preview_failed(generation, exc))
        worker.finished.connect(lambda: self._preview_done(worker))
        self.preview_worker = worker
        worker.start()

    def _preview_ready(self, generation: int, layer, result, kwargs: dict):
        try:
            if generation != self._preview_generation or not self.preview.value:
                return  # the options changed meanwhile: a newer preview is on its way
            self.status.value = ""
            self.dock.show_preview(layer, result, zoom=self.op.zoom(kwargs))
        except RuntimeError:  # the dock was closed while the preview was computed
            pass

    def _preview_failed(self, generation: int, exc: Exception):
        if generation == self._preview_generation:  # a bad parameter: say it, keep the widget alive
            self.status.value = f"preview: {one_line(exc)}"

    def _preview_done(self, worker):
        if self.preview_worker is worker:
            self.preview_worker = None

    # -- run ---------------------------------------------------------------------------------
    def start(self, *args):
        layer = self.dock.layer
        if layer is None:
            show_info("Choose an image layer first.")
            return
        try:  # the contract's check first: a bad value is named at once, without a worker
            method, kwargs, record = self._call_args()
            self.op.contract.check(method, {k: v for k, v in kwargs.items() if k != "pair"})
            image, _ = layer_to_array(layer)
        except Exception as exc:  # the dock's error boundary: one line, the dock stays alive
            self.status.value = f"{self.op.contract.label}: {one_line(exc)}"
            return
        long = self.op.contract.method(method).long and self.op.steps is not None
        if long:
            worker = create_worker(
                self.op.steps, image, method=method, **kwargs, _start_thread=False, _ignore_errors=True
            )
            worker.yielded.connect(self._on_progress)
            self.progress.visible = True
            self.progress.value = 0
        else:
            worker = create_worker(
                self.op.run, image, method=method, **kwargs, _start_thread=False, _ignore_errors=True
            )
        worker.returned.connect(lambda result: self._finished(layer, result, method, record))
        worker.errored.connect(self._failed)
        worker.finished.connect(self._stopped)
        self.worker = worker
        self.chosen = None
        self.run_button.enabled = False
        self.cancel_button.enabled = long
        self.status.value = (
            f"{self.op.contract.label} ({self.op.contract.method(method).label or method}) running…"
        )
        self.dock.remove_preview()
        worker.start()

    def _on_progress(self, update):
        if "auto" in update.extra:
            self.chosen = update.extra["auto"]
        self.progress.value = int(100 * update.fraction)
        loss = f", loss {update.loss:.4g}" if update.loss is not None else ""
        self.status.value = f"step {update.step}/{update.total}{loss} {update.message}".strip()

    def _finished(self, layer: Layer, result, method: str, record: dict):
        step = processing_step(self.op.step, method, record)
        if self.chosen is not None:  # e.g. denoise auto: the noise it measured, the method and mix
            step["auto"] = self.chosen
        suffix = f"{self.op.step} {method}" + (f" x{record['factor']}" if "factor" in record else "")
        data, kwargs, kind = derived_layer(layer, result, step, suffix, zoom=self.op.zoom(record))
        self.dock.viewer.add_layer(Layer.create(data, kwargs, kind))
        self.status.value = f"added '{kwargs['name']}'"

    def _failed(self, exc: Exception):
        self.status.value = f"failed: {one_line(exc)}"
        show_error(f"{self.op.contract.label} failed: {one_line(exc)}")

    def _stopped(self):
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        self.progress.visible = False
        if self.worker is not None and self.worker.abort_requested:
            self.status.value = "cancelled"
        self.worker = None

    def cancel(self, *args):
        if self.worker is not None:
            self.worker.quit()


class PreprocessWidget(QWidget):
    """Dock widget: input layer at the top, one tab per operation."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self._preview_layer = None
        self.input = ComboBox(
            label="Input layer", choices=self._image_layers, tooltip="The image layer to process"
        )
        self.tabs = QTabWidget()
        self.panels = {op.step: OperationPanel(self, op) for op in operations()}
        for step, panel in self.panels.items():
            self.tabs.addTab(panel.native, STEPS[step].label)
            self.tabs.setTabToolTip(self.tabs.count() - 1, STEPS[step].help)
        top = Container(widgets=[self.input], labels=True)
        self.recipe_format = ComboBox(
            label="Recipe writes",
            choices=[".gsf", ".gwy", ".tif"],
            value=".gsf",
            tooltip="The output format of the exported recipe's write step",
        )
        self.export_button = PushButton(
            text="Export recipe…",
            tooltip="Save the selected layer's processing history as a recipe (YAML/JSON) for `scanprobe batch`",
        )
        self.export_button.changed.connect(self._export_dialog)
        bottom = Container(widgets=[self.recipe_format, self.export_button], labels=True)
        layout = QVBoxLayout(self)
        layout.addWidget(top.native)
        layout.addWidget(self.tabs)
        layout.addWidget(bottom.native)
        layout.addStretch(1)
        self.setMaximumWidth(DOCK_WIDTH)
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        self.input.changed.connect(self._input_changed)
        self.viewer.dims.events.current_step.connect(self._input_changed)

    # -- layers ------------------------------------------------------------------------------
    def _image_layers(self, widget=None):
        return [
            layer
            for layer in self.viewer.layers
            if isinstance(layer, Image) and layer is not self._preview_layer and not layer.rgb
        ]

    def _layers_changed(self, event=None):
        try:
            self.input.reset_choices()
            for panel in self.panels.values():
                panel.pair.reset_choices()
        except RuntimeError:  # the dock was closed: its Qt widgets are gone
            self._disconnect()

    def _disconnect(self):
        self.viewer.layers.events.inserted.disconnect(self._layers_changed)
        self.viewer.layers.events.removed.disconnect(self._layers_changed)
        self.viewer.dims.events.current_step.disconnect(self._input_changed)

    @property
    def layer(self) -> Image | None:
        return self.input.value

    def _input_changed(self, *args):
        try:
            for panel in self.panels.values():
                panel.schedule_preview()
        except RuntimeError:
            self._disconnect()

    def partner_of(self, layer) -> Image | None:
        """The trace/retrace (forward/backward) twin of ``layer`` from the same file, if open."""
        if layer is None:
            return None
        meta = layer.metadata
        twins = {"trace": "retrace", "retrace": "trace", "forward": "backward", "backward": "forward"}
        want = twins.get(meta.get("direction"))
        for other in self._image_layers():
            m = other.metadata
            if (
                other is not layer
                and want
                and m.get("source") == meta.get("source")
                and m.get("channel") == meta.get("channel")
                and m.get("direction") == want
            ):
                return other
        return None

    def current_frame(self, layer: Image) -> np.ndarray:
        """The 2-D frame of ``layer`` the viewer shows now."""
        data = layer.data
        if data.ndim == 2:
            return np.asarray(data)
        index = int(layer.world_to_data(self.viewer.dims.point)[0])
        return np.asarray(data[int(np.clip(index, 0, data.shape[0] - 1))])

    # -- recipes -------------------------------------------------------------------------------
    def recipe_layer(self) -> Image | None:
        """The layer whose history is exported: the selected image layer, else the input layer."""
        active = self.viewer.layers.selection.active
        if isinstance(active, Image) and active is not self._preview_layer and not active.rgb:
            return active
        return self.layer

    def _export_dialog(self, *args):
        from .recipe_export import ask_recipe_path

        layer = self.recipe_layer()
        if layer is None:
            show_info("Choose an image layer first.")
            return
        path = ask_recipe_path(self, layer.name)
        if path:
            self.export_recipe(path, layer)

    def export_recipe(self, path, layer: Image | None = None):
        """Write ``layer``'s (default: :meth:`recipe_layer`) history as a recipe to ``path``.

        The recipe processes the layer's channel, replays its steps and writes the result in
        the format chosen in "recipe writes". Returns the path, or None after showing an error.
        """
        from .recipe_export import export_layer_recipe

        layer = layer if layer is not None else self.recipe_layer()
        if layer is None:
            show_info("Choose an image layer first.")
            return None
        try:
            out = export_layer_recipe(layer, path, write=self.recipe_format.value)
        except Exception as exc:  # the dock's error boundary: one line, the dock stays alive
            show_error(f"Cannot export the recipe of {layer.name!r}: {one_line(exc)}")
            return None
        show_info(f"Recipe of {layer.name!r} written to {out}")
        return out

    # -- preview layer -----------------------------------------------------------------------
    def show_preview(self, layer: Image, result: np.ndarray, zoom: int = 1):
        scale, translate = list(layer.scale[-2:]), list(layer.translate[-2:])
        if zoom != 1:
            from ..process.superres import upscaled_geometry

            scale, translate = upscaled_geometry(scale, translate, zoom)
        finite = result[np.isfinite(result)]
        limits = (float(finite.min()), float(finite.max())) if finite.size and np.ptp(finite) > 0 else None
        if self._preview_layer is None or self._preview_layer not in self.viewer.layers:
            self._preview_layer = self.viewer.add_image(
                result,
                name=f"{layer.name} | preview",
                scale=scale,
                translate=translate,
                units=[str(u) for u in layer.units[-2:]],
                colormap=layer.colormap.name,
                metadata={"preview": True},
            )
        else:
            self._preview_layer.data = result
            self._preview_layer.scale = scale
            self._preview_layer.translate = translate
        if limits:
            self._preview_layer.contrast_limits = limits

    def remove_preview(self):
        if self._preview_layer is not None and self._preview_layer in self.viewer.layers:
            self.viewer.layers.remove(self._preview_layer)
        self._preview_layer = None
