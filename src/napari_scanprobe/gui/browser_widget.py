"""Scan browser: the channels of one scan side by side, and what the file says about them.

Multimodal SPM data (height, amplitude, phase, trace and retrace) is read as one layer per
channel. This dock widget picks a scan, shows its channels side by side in napari's grid (the
others hidden), and lists the selected layer's channel facts and the file header.
"""

from __future__ import annotations

import json
import math

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .compat import grid_of

_MAX_TREE_ITEMS = 2000


def scans_in(viewer) -> dict[str, list]:
    """Open image layers grouped by the file they came from (``metadata["source"]``)."""
    groups: dict[str, list] = {}
    for layer in viewer.layers:
        source = layer.metadata.get("source") if hasattr(layer, "metadata") else None
        if source and getattr(layer, "_type_string", "") == "image":
            groups.setdefault(source, []).append(layer)
    return groups


class ScanBrowser(QWidget):
    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.scan_box = QComboBox()
        self.side_by_side = QCheckBox("Channels side by side (others hidden)")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["key", "value"])
        self.tree.setColumnWidth(0, 180)

        form = QFormLayout()
        form.addRow("Scan", self.scan_box)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.side_by_side)
        layout.addWidget(self.summary)
        layout.addWidget(self.tree)

        self.scan_box.currentIndexChanged.connect(self._arrange)
        self.side_by_side.toggled.connect(self._arrange)
        self.viewer.layers.events.inserted.connect(self._refresh_scans)
        self.viewer.layers.events.removed.connect(self._refresh_scans)
        self.viewer.layers.selection.events.active.connect(self._show_active)
        self._refresh_scans()
        self._show_active()

    # -- scans -------------------------------------------------------------------------
    def _refresh_scans(self, event=None):
        current = self.scan_box.currentData()
        self.scan_box.blockSignals(True)
        self.scan_box.clear()
        for source, layers in scans_in(self.viewer).items():
            self.scan_box.addItem(f"{layers[0].name.split(' | ')[0]} ({len(layers)} channels)", source)
        index = self.scan_box.findData(current)
        self.scan_box.setCurrentIndex(max(index, 0))
        self.scan_box.blockSignals(False)
        self._arrange()

    def _arrange(self, *args):
        source = self.scan_box.currentData()
        groups = scans_in(self.viewer)
        chosen = groups.get(source, [])
        if self.side_by_side.isChecked() and chosen:
            for layers in groups.values():
                for layer in layers:
                    layer.visible = layer in chosen
            grid = grid_of(self.viewer)
            grid.stride = 1
            grid.shape = (-1, min(len(chosen), 4))
            grid.enabled = True
            self.viewer.reset_view()
        else:
            grid_of(self.viewer).enabled = False

    # -- facts of the selected layer -----------------------------------------------------
    def _show_active(self, event=None):
        layer = self.viewer.layers.selection.active
        self.tree.clear()
        meta = getattr(layer, "metadata", None) or {}
        if "channel" not in meta:
            self.summary.setText("Select a layer opened by napari-scanprobe to see its channel and header.")
            return
        dy, dx = meta.get("pixel_size", (math.nan, math.nan))
        unit = meta.get("xy_unit") or "px"
        self.summary.setText(
            f"<b>{meta['channel']}</b> {meta.get('direction') or ''} — values in {meta.get('z_unit') or 'arb.'}; "
            f"pixel {dy:.4g} × {dx:.4g} {unit}; shape {tuple(layer.data.shape)}; format {meta.get('format')}"
        )
        budget = [_MAX_TREE_ITEMS]
        _fill(
            self.tree.invisibleRootItem(),
            {"channel": meta.get("channel_header", {}), "file": meta.get("header", {})},
            budget,
        )
        self.tree.expandToDepth(0)


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
            QTreeWidgetItem(parent, [str(key), text[:500]])
