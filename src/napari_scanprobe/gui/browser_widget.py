"""Scan browser: many scans open at once, their channels side by side, and what the file says.

Multimodal SPM data (height, amplitude, phase, trace and retrace) is read as one layer per
channel. This dock widget picks a scan and shows either its channels side by side in napari's
grid, or one channel of every open scan side by side (compare samples). Only the tiles shown
are visible; each is labelled with its channel, direction and unit; all tiles share one camera,
so zoom and pan move them together. It also lists the selected layer's channel facts and the
file header.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .compat import grid_of, set_tile_label
from .layers import LayerMeta
from .reader import open_scan

_MAX_TREE_ITEMS = 2000

#: The views the dock offers, in the order of its "View" list.
STACKED, CHANNELS, COMPARE = range(3)

#: The compare entry that takes each scan's height (topography) channel, whatever its name.
HEIGHT = "Height / topography (each scan's)"


def scans_in(viewer) -> dict[str, list]:
    """Open image layers grouped by the file they came from (their ``source``)."""
    groups: dict[str, list] = {}
    for layer in viewer.layers:
        source = LayerMeta(layer).source
        if source and getattr(layer, "_type_string", "") == "image":
            groups.setdefault(source, []).append(layer)
    return groups


def tile_label(layer, with_scan: bool = False) -> str:
    """``"Height (retrace) · nm"``, then the last processing step (``"· flatten plane"``);
    ``"<scan> · "`` first when scans are compared."""
    meta = LayerMeta(layer)
    words = [meta.title or layer.name, meta.z_unit or "no unit"]
    if with_scan:
        words.insert(0, layer.name.split(" | ")[0])
    if meta.processing:
        last = meta.processing[-1]
        words.append(f"{last.get('step', '')} {last.get('method', '')}".strip())
    return " · ".join(words)


def grid_shape(n: int, tile_aspect: float, canvas: tuple[float, float]) -> tuple[int, int]:
    """Rows and columns for ``n`` tiles of height/width ``tile_aspect`` that make them largest
    on a canvas of ``(height, width)`` pixels."""
    height, width = canvas
    best, best_size = (1, n), -1.0
    for columns in range(1, n + 1):
        rows = math.ceil(n / columns)
        size = min(width / columns, height / rows / tile_aspect)  # tile width on screen
        if size > best_size + 1e-9:
            best, best_size = (rows, columns), size
    return best


class ScanBrowser(QWidget):
    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self._shifted: dict = {}  # layer -> its affine before a comparison drew it from (0, 0)
        self._labelled: list = []
        self.view_box = QComboBox()
        self.view_box.addItems(
            ["All layers stacked", "Channels of the scan side by side", "One channel of every scan"]
        )
        self.view_box.setToolTip(
            "Stacked: napari's usual view. Channels side by side: every channel of the chosen scan in its own "
            "tile (other scans hidden). One channel of every scan: the chosen channel of each open scan side by "
            "side, each drawn from its own top-left corner and enlarged to the largest scan's size (the label "
            "says by how much: the scale bar holds for tiles without that note). Tiles zoom and pan together."
        )
        self.scan_box = QComboBox()
        self.scan_box.setToolTip("The scan (file) whose channels are shown and listed")
        self.channel_box = QComboBox()
        self.channel_box.setToolTip("The channel to compare across the open scans")
        for box in (self.view_box, self.scan_box, self.channel_box):
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            box.setMinimumContentsLength(12)
            box.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.open_button = QPushButton("Open scans…")
        self.open_button.setToolTip(
            "Open scanning probe files with this plugin, TIFF, text and .dat exports included "
            "(napari's File ▸ Open leaves those extensions to its own image reader)"
        )
        self.open_status = QLabel()
        self.open_status.setWordWrap(True)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["key", "value"])
        self.tree.setColumnWidth(0, 160)
        self.tree.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # long values: tooltips

        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("View", self.view_box)
        form.addRow("Scan", self.scan_box)
        form.addRow("Channel", self.channel_box)
        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.addWidget(self.open_button)
        layout.addWidget(self.open_status)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.tree, 1)
        area = QScrollArea()  # short laptop screens: scroll down rather than push the window taller
        area.setWidgetResizable(True)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        area.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(area)
        self.setMinimumWidth(260)

        self.open_button.clicked.connect(self._open_dialog)
        self.view_box.currentIndexChanged.connect(self._arrange)
        self.scan_box.currentIndexChanged.connect(self._arrange)
        self.channel_box.currentIndexChanged.connect(self._arrange)
        self.viewer.layers.events.inserted.connect(self._refresh_scans)
        self.viewer.layers.events.removed.connect(self._refresh_scans)
        self.viewer.layers.selection.events.active.connect(self._show_active)
        self._refresh_scans()
        self._show_active()

    # -- what a script calls ---------------------------------------------------------------
    def open_scans(self, paths) -> list:
        """Open each file with this plugin; the layers added. A file that fails is named, with
        the reason, below the button (the others still open)."""
        added, failed = [], []
        for path in paths:
            try:
                added.extend(open_scan(self.viewer, path))
            except Exception as exc:  # one line per file, never a traceback
                cause = exc.__cause__ or exc
                reason = getattr(cause, "reason", None) or str(cause) or type(cause).__name__
                failed.append(f"{Path(path).name}: {reason}")
        self.open_status.setText(
            "<br>".join(failed[:5]) + (f"<br>… {len(failed) - 5} more" if len(failed) > 5 else "")
        )
        return added

    def show_channels(self, source: str | None = None) -> None:
        """Every channel of the scan read from ``source`` (default: the chosen one) side by side."""
        if source is not None:
            self.scan_box.setCurrentIndex(max(self.scan_box.findData(str(source)), 0))
        self.view_box.setCurrentIndex(CHANNELS)

    def compare(self, channel: str = HEIGHT) -> None:
        """Channel ``channel`` (a title, or :data:`HEIGHT`) of every open scan side by side."""
        index = self.channel_box.findText(channel)
        if index < 0:
            raise ValueError(f"channel: no open scan has {channel!r}")
        self.channel_box.setCurrentIndex(index)
        self.view_box.setCurrentIndex(COMPARE)

    def tiles(self) -> list:
        """The layers shown side by side now (empty when stacked)."""
        view = self.view_box.currentIndex()
        groups = scans_in(self.viewer)
        if view == CHANNELS:
            return groups.get(self.scan_box.currentData(), [])
        if view == COMPARE:
            wanted = self.channel_box.currentText()
            chosen = []
            for layers in groups.values():
                match = [
                    la
                    for la in layers
                    if (LayerMeta(la).is_height if wanted == HEIGHT else LayerMeta(la).title == wanted)
                ]
                chosen.extend(match[-1:])  # the top one of the scan: the last opened/processed
            return chosen
        return []

    def _open_dialog(self, *args) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open scans")
        if paths:
            self.open_scans(paths)

    # -- scans -------------------------------------------------------------------------
    def _refresh_scans(self, event=None):
        groups = scans_in(self.viewer)
        current = self.scan_box.currentData()
        self.scan_box.blockSignals(True)
        self.scan_box.clear()
        for source, layers in groups.items():
            self.scan_box.addItem(f"{layers[0].name.split(' | ')[0]} ({len(layers)} channels)", source)
            self.scan_box.setItemData(self.scan_box.count() - 1, source, Qt.ItemDataRole.ToolTipRole)
        self.scan_box.setCurrentIndex(max(self.scan_box.findData(current), 0))
        self.scan_box.blockSignals(False)

        counts: dict[str, int] = {}
        for layers in groups.values():
            for title in {LayerMeta(la).title for la in layers if LayerMeta(la).title}:
                counts[title] = counts.get(title, 0) + 1
        current = self.channel_box.currentText()
        self.channel_box.blockSignals(True)
        self.channel_box.clear()
        self.channel_box.addItem(HEIGHT)
        for title in sorted(counts, key=lambda t: (-counts[t], t.lower())):
            self.channel_box.addItem(title)
        self.channel_box.setCurrentIndex(max(self.channel_box.findText(current), 0))
        self.channel_box.blockSignals(False)
        self._arrange()

    def _arrange(self, *args):
        view = self.view_box.currentIndex()
        self.scan_box.setEnabled(view != COMPARE)
        self.channel_box.setEnabled(view == COMPARE)
        self._undo_arrangement()
        tiles = self.tiles()
        grid = grid_of(self.viewer)
        if not tiles:
            grid.enabled = False
            return
        for layers in scans_in(self.viewer).values():
            for layer in layers:
                layer.visible = any(layer is t for t in tiles)
        zoom = {id(layer): 1.0 for layer in tiles}
        if view == COMPARE:
            widest = max(_extent(layer) for layer in tiles)
            for layer in tiles:
                zoom[id(layer)] = widest / max(_extent(layer), 1e-12)
                self._draw_from_origin(layer, zoom[id(layer)])
        for layer in tiles:
            text = tile_label(layer, with_scan=view == COMPARE)
            if not math.isclose(zoom[id(layer)], 1.0, rel_tol=0.01):
                text += f" · shown ×{zoom[id(layer)]:.3g}"
            if set_tile_label(layer, text):
                self._labelled.append(layer)
        grid.stride = 1
        grid.shape = grid_shape(len(tiles), _aspect(tiles), _canvas_size(self.viewer))
        grid.enabled = True
        fit_view(self.viewer, tiles)

    def _draw_from_origin(self, layer, zoom: float) -> None:
        """Draw ``layer`` from (0, 0), ``zoom`` times larger, so scans far apart and of different
        sizes fill the tiles of the one camera. Only the drawing changes (napari's ``affine``):
        the layer's ``scale`` and ``translate`` -- the file's geometry, which is saved -- stay."""
        from napari.utils.transforms import Affine

        self._shifted[layer] = layer.affine
        scale, shift = [1.0] * layer.ndim, [0.0] * layer.ndim
        scale[-2:] = [zoom, zoom]
        shift[-2:] = [-zoom * float(t) for t in layer.translate[-2:]]
        layer.affine = Affine(scale=scale, translate=shift, ndim=layer.ndim)

    def _undo_arrangement(self) -> None:
        open_layers = list(self.viewer.layers)
        for layer, affine in self._shifted.items():
            if any(layer is la for la in open_layers):
                layer.affine = affine
        self._shifted.clear()
        for layer in self._labelled:
            set_tile_label(layer, None)
        self._labelled.clear()

    # -- facts of the selected layer -----------------------------------------------------
    def _show_active(self, event=None):
        layer = self.viewer.layers.selection.active
        self.tree.clear()
        meta = LayerMeta(layer)
        if meta.channel is None:
            self.summary.setText("Select a layer opened by napari-scanprobe to see its channel and header.")
            return
        dy, dx = meta.pixel_size or (math.nan, math.nan)
        self.summary.setText(
            f"<b>{meta.channel}</b> {meta.direction or ''} — values in {meta.z_unit or 'arb.'}; "
            f"pixel {dy:.4g} × {dx:.4g} {meta.xy_unit or 'px'}; shape {tuple(layer.data.shape)}; "
            f"format {meta.format}"
        )
        budget = [_MAX_TREE_ITEMS]
        _fill(self.tree.invisibleRootItem(), {"channel": meta.channel_header, "file": meta.header}, budget)
        self.tree.expandToDepth(0)


def fit_view(viewer, layers) -> None:
    """Zoom and centre the camera on ``layers`` only (hidden layers elsewhere do not count)."""
    try:
        viewer.reset_view(layers=layers)  # napari >= 0.9
        return
    except (TypeError, IndexError):  # older napari; or 2-D tiles while a movie is open (0.9.2)
        pass
    extents = np.array([np.asarray(layer.extent.world)[:, -2:] for layer in layers])
    low, high = extents[:, 0].min(axis=0), extents[:, 1].max(axis=0)
    canvas = getattr(viewer, "canvas", None)
    box = canvas.viewbox_size(viewer.layers) if hasattr(canvas, "viewbox_size") else _canvas_size(viewer)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = tuple(float(v) for v in (low + high) / 2)
    camera.zoom = 0.95 * float(np.min(np.asarray(box, float)[-2:] / np.maximum(high - low, 1e-12)))


def _extent(layer) -> float:
    """The larger physical side of a layer (its own units)."""
    shape, scale = layer.data.shape[-2:], layer.scale[-2:]
    return max(float(shape[0] * abs(scale[0])), float(shape[1] * abs(scale[1])))


def _aspect(layers) -> float:
    """The largest height/width of the layers' physical extent (at least one pixel)."""
    ratios = []
    for layer in layers:
        shape, scale = layer.data.shape[-2:], layer.scale[-2:]
        ratios.append(float(shape[0] * abs(scale[0])) / max(float(shape[1] * abs(scale[1])), 1e-12))
    return float(np.max(ratios)) if ratios else 1.0


def _canvas_size(viewer) -> tuple[float, float]:
    """The canvas (height, width) in screen pixels; a landscape guess when napari hides it."""
    size = getattr(getattr(viewer, "canvas", None), "size", None) or getattr(viewer, "_canvas_size", None)
    try:
        height, width = (float(v) for v in size)
    except (TypeError, ValueError):
        return (600.0, 800.0)
    return (height, width) if height > 0 and width > 0 else (600.0, 800.0)


def _fill(parent, value, budget):
    """Add ``value`` (nested dicts/lists) below ``parent``; at most ``budget[0]`` items in all."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        if budget[0] <= 0:
            QTreeWidgetItem(parent, ["…", "(more entries not shown)"])
            return
        budget[0] -= 1
        if isinstance(child, (dict, list)) and child:
            item = QTreeWidgetItem(parent, [str(key), ""])
            _fill(item, child, budget)
        else:
            text = child if isinstance(child, str) else json.dumps(child)
            item = QTreeWidgetItem(parent, [str(key), text[:500]])
            item.setToolTip(1, text[:500])
