"""Classifier dock widget: train a CNN on image layers (or a folder) and apply it, with CAMs.

Thin by design: the widget only turns its controls into calls of the core
(:func:`~napari_scanprobe.learn.train.train_steps`,
:func:`~napari_scanprobe.learn.predict.predict_steps`, :func:`.cam_layer.cam_layer`), runs them
in a ``thread_worker`` and shows what comes back.

* **Train** tab: each open image layer gets a category (or "(not used)") from a combo; the
  category names are editable. The model's channels are the assigned layers' channel
  (``metadata["channel"]``) plus the extra channels ticked below it, found among the layers of
  the same file (``metadata["source"]``) -- multimodal training. Or a folder with one
  sub-folder per category. Loss and accuracy curves grow epoch by epoch (train and
  validation); Stop ends training within a batch and keeps the best model so far. At the end:
  the metrics, the confusion matrix, and "Save model…".
* **Predict** tab: a model loaded from a file, or the one just trained; the checked image
  layers (or all); the results go into a table and into each layer's
  ``metadata["classification"]`` = ``{"model", "label", "probabilities", "unlike_training"[, "frames"]}``. For a
  movie the table shows the whole movie (the category of the mean probabilities over its
  frames) and how many frames fell in each category; the per-frame results are in the
  metadata. "Add CAM layer" adds a class activation map over each checked layer.

Errors become one napari notification and a status line, never a traceback dialog.
"""

from __future__ import annotations

import html
import math
from typing import Any

from napari.layers import Image, Layer
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..learn.baseline import comparison_text
from ..learn.calibration import offsets_text
from ..learn.modelfile import ClassifierModel
from ..learn.train import DEFAULT_PREPROCESSING, DEFAULTS
from ..nn.classifier import DEFAULT_ARCHITECTURE, HEADS
from ..process.flatten import FLATTEN_METHODS
from .layers import LayerMeta
from .plots import ConfusionMatrixPlot, LinePlot

NOT_USED = "(not used)"
SOURCE_LAYERS = "open image layers"
SOURCE_FOLDER = "folder (one sub-folder per category)"
DEFAULT_PREPROCESSING_CHOICE = "rows_median + plane"
PREDICTED = "predicted"

#: Preprocessing combo text -> the steps stored in the model (a flatten method with its defaults).
PREPROCESSING_CHOICES: dict[str, list[dict]] = {
    DEFAULT_PREPROCESSING_CHOICE: DEFAULT_PREPROCESSING,
    "none": [],
    **{m: [{"step": "flatten", "method": m, "options": {}}] for m in FLATTEN_METHODS},
}


def image_layers(viewer) -> list[Image]:
    """The viewer's single-channel image layers that can be classified: not RGB, not
    multiscale, not a class activation map."""
    return [
        layer
        for layer in viewer.layers
        if isinstance(layer, Image) and not layer.rgb and not layer.multiscale and not LayerMeta(layer).is_cam
    ]


def _same(a: Any, b: Any) -> bool:
    return a is not None and b is not None and str(a).strip().lower() == str(b).strip().lower()


def training_example(layer, channels: list[str], viewer_layers) -> Any:
    """The :class:`~napari_scanprobe.learn.data.Example` of ``layer`` for training on ``channels``.

    Exactly what prediction will take from the same layer (:func:`.cam_layer.layer_example`):
    the layer's data and pixel size, and the other channels from the layers of the same file.
    ValueError naming the layer and the channel when one is missing.
    """
    from .cam_layer import layer_example

    # layer_example reads only the channels (and the name, for messages) of the model
    wanted = ClassifierModel(
        architecture={},
        state={},
        categories=[],
        channels=list(channels),
        pixel_size=None,
        input_size=0,
        path="new classifier",
    )
    return layer_example(layer, wanted, viewer_layers)


def _percent(value: Any) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{100 * float(value):.1f} %"


def _number(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.{digits}f}"


def metrics_html(model: ClassifierModel) -> str:
    """The model's validation metrics as a short rich-text summary."""
    m, t = model.metrics, model.training
    lines = []
    if "accuracy" in m:
        lines.append(
            f"<b>Validation</b> ({m.get('n', '?')} images): accuracy <b>{_percent(m['accuracy'])}</b>, "
            f"balanced accuracy {_percent(m.get('balanced_accuracy'))}, ROC AUC {_number(m.get('roc_auc'))}"
        )
        rows = "".join(
            f"<tr><td>{name}</td><td align='right'>{_percent(c.get('precision'))}</td>"
            f"<td align='right'>{_percent(c.get('recall'))}</td><td align='right'>{c.get('support', '')}</td></tr>"
            for name, c in m.get("per_class", {}).items()
        )
        lines.append(
            "<table cellspacing='0' cellpadding='2'><tr><th align='left'>category</th><th>precision</th>"
            f"<th>recall</th><th>images</th></tr>{rows}</table>"
        )
    else:
        lines.append(f"No validation metrics: evaluated on {m.get('evaluated_on', 'nothing')}.")
    cv = m.get("cross_validation")
    if cv:
        folds = ", ".join(_percent(a) for a in cv.get("fold_accuracy", []))
        lines.append(
            f"{cv['folds']}-fold cross-validation, fold accuracies {folds}; final model trained {cv.get('final_epochs')} epochs on all images"
        )
    perm = m.get("permutation_test")
    if perm:
        lines.append(
            f"Permutation test: p = {_number(perm.get('p_value'))} ({perm.get('permutations')} label shuffles; "
            f"chance would reach the observed accuracy that often)"
        )
    cal = m.get("calibration")
    if cal and cal.get("ece_uncalibrated") is not None:
        lines.append(
            f"Calibration: temperature {_number(cal.get('temperature'), 2)}, expected calibration error "
            f"{_number(cal.get('ece_uncalibrated'))} before, {_number(m.get('ece'))} after"
            + offsets_text(cal, model.categories)
        )
    base = m.get("baseline")
    if base:
        lines.append(
            f"Feature baseline (random forest), same images: accuracy {_percent(base.get('accuracy'))}, "
            f"balanced {_percent(base.get('balanced_accuracy'))}, ROC AUC {_number(base.get('roc_auc'))}"
        )
        if "network_minus_features" in base:
            text = comparison_text(base["network_minus_features"])
            lines.append(html.escape(text[0].upper() + text[1:]))
    lines += [f"<b>Warning:</b> {html.escape(w)}" for w in t.get("warnings", [])]
    stopped = " Stopped by the user: the best epoch so far is kept." if t.get("stopped_by_user") else ""
    history = len(model.history)
    lines.append(
        f"Best epoch {t.get('best_epoch', '?')} of {history}; {t.get('seconds', '?')} s on {t.get('device', '?')}.{stopped}"
    )
    return "<br>".join(lines)


def _spin(value: int, lo: int, hi: int, tooltip: str = "", special: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    box.setToolTip(tooltip)
    if special:
        box.setSpecialValueText(special)
    return box


def _float_spin(
    value: float, lo: float, hi: float, step: float, decimals: int, tooltip: str = "", special: str = ""
) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setSingleStep(step)
    box.setValue(value)
    box.setToolTip(tooltip)
    if special:
        box.setSpecialValueText(special)
    return box


class _Panel(QWidget):
    """What both tabs share: a status line, a progress bar, errors as notifications."""

    def __init__(self, dock: ClassifierWidget):
        super().__init__()
        self.dock = dock
        self.worker = None
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setVisible(False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    @property
    def viewer(self):
        return self.dock.viewer

    def error(self, what: str, exc: Any) -> None:
        message = f"{what}: {exc}"
        self.status.setText(message)
        show_error(message)

    def _show_progress(self, update) -> None:
        self.progress.setValue(int(1000 * min(1.0, update.fraction)))
        loss = f", loss {update.loss:.4g}" if update.loss is not None else ""
        self.status.setText(f"{update.message}{loss}".strip(", "))


#: The narrowest a dock's content may get (napari's dock area on a 1280x800 laptop is ~400 px).
_NARROW_PX = 280


def _fit_narrow(inner: QWidget) -> None:
    """Let ``inner`` shrink to a laptop's dock: combo boxes no wider than a few words, form
    labels above their field when the row does not fit, status lines wrapped."""
    for combo in inner.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(8)
    for form in inner.findChildren(QFormLayout):
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    for spin in inner.findChildren(QAbstractSpinBox):
        spin.setMinimumWidth(0)
        spin.setMaximumWidth(16777215)
        spin.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)


def _scrolled(inner: QWidget) -> QScrollArea:
    """``inner`` in a vertical scroll area: no horizontal scrollbar, the content fits the width."""
    _fit_narrow(inner)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(inner)
    area.setMinimumWidth(
        min(inner.minimumSizeHint().width(), _NARROW_PX) + area.verticalScrollBar().sizeHint().width() + 4
    )
    return area


# ------------------------------------------------------------------------------------------
# Train
# ------------------------------------------------------------------------------------------


class TrainPanel(_Panel):
    """Categories, data, channels and options; Train / Stop; curves, metrics, confusion matrix."""

    def __init__(self, dock: ClassifierWidget):
        super().__init__(dock)
        self.model: ClassifierModel | None = None
        self._stop_requested = False
        self._plotted_run: str | None = None
        self._rows: list[tuple[Image, QComboBox]] = []
        self._names: list[str] = []

        self.source = QComboBox()
        self.source.addItems([SOURCE_LAYERS, SOURCE_FOLDER])
        self.source.setToolTip("Open image layers assigned to categories below, or a folder of files")
        self.pages = QStackedWidget()
        self.pages.addWidget(self._layers_page())
        self.pages.addWidget(self._folder_page())
        self.source.currentIndexChanged.connect(self._source_changed)

        self.options_box = self._options_group()
        self.train_button = QPushButton("Train")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.setToolTip("End training after the current batch; the best model so far is kept")
        self.loss_plot = LinePlot("loss", "epoch")
        self.accuracy_plot = LinePlot("accuracy", "epoch", y_range=(0.0, 1.0))
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.add_series("train")
            plot.add_series("validation")
        self.metrics_label = QLabel("")
        self.metrics_label.setWordWrap(True)
        self.metrics_label.setTextFormat(Qt.TextFormat.RichText)
        self.skipped_label = QLabel("")
        self.confusion = ConfusionMatrixPlot()
        self.save_button = QPushButton("Save model…")
        self.save_button.setEnabled(False)

        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.stop_button)
        inner = QWidget()
        layout = QVBoxLayout(inner)
        form = QFormLayout()
        form.addRow("Training images", self.source)
        layout.addLayout(form)
        layout.addWidget(self.pages)
        layout.addWidget(self.options_box)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.loss_plot)
        layout.addWidget(self.accuracy_plot)
        layout.addWidget(self.metrics_label)
        layout.addWidget(self.skipped_label)
        layout.addWidget(self.confusion)
        layout.addWidget(self.save_button)
        layout.addStretch(1)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(_scrolled(inner))

        self.train_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.save_button.clicked.connect(self._save_dialog)
        self.set_categories(["category 1", "category 2"])

    # -- building ------------------------------------------------------------------------
    def _layers_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        self.categories = QListWidget()
        self.categories.setToolTip("Category names: double-click to rename")
        self.categories.setMaximumHeight(90)
        self.categories.itemChanged.connect(self._category_renamed)
        self.add_category_button = QPushButton("Add category")
        self.remove_category_button = QPushButton("Remove category")
        self.add_category_button.clicked.connect(lambda *_: self.add_category())
        self.remove_category_button.clicked.connect(
            lambda *_: self.remove_category(self.categories.currentRow())
        )
        row = QHBoxLayout()
        row.addWidget(self.add_category_button)
        row.addWidget(self.remove_category_button)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["layer", "category"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(120)
        self.extra_channels = QListWidget()
        self.extra_channels.setMaximumHeight(70)
        self.extra_channels.setToolTip(
            "Other channels of the same scans, stacked as extra network inputs (multimodal)"
        )
        self.channel_label = QLabel("")
        self.channel_label.setWordWrap(True)
        layout.addWidget(QLabel("Categories"))
        layout.addWidget(self.categories)
        layout.addLayout(row)
        layout.addWidget(QLabel("Assign image layers to categories"))
        layout.addWidget(self.table)
        layout.addWidget(self.channel_label)
        layout.addWidget(self.extra_channels)
        return page

    def _folder_page(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        form.setContentsMargins(0, 0, 0, 0)
        self.folder = QLineEdit()
        self.folder.setPlaceholderText("a folder with one sub-folder per category")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_folder)
        row = QHBoxLayout()
        row.addWidget(self.folder)
        row.addWidget(browse)
        self.folder_channels = QLineEdit()
        self.folder_channels.setPlaceholderText("first channel of each file")
        self.folder_channels.setToolTip(
            "Channel names to stack, comma-separated (e.g. Height, Phase); empty: each file's first channel"
        )
        form.addRow("Folder", row)
        form.addRow("Channels", self.folder_channels)
        return page

    def _options_group(self) -> QGroupBox:
        box = QGroupBox("Options")
        form = QFormLayout(box)
        arch = DEFAULT_ARCHITECTURE
        self.epochs = _spin(
            DEFAULTS["epochs"],
            1,
            10000,
            "Training rounds over the images (fewer when early stopping is on)",
        )
        self.input_size = _spin(
            128, 8, 2048, "Network input in pixels (at the model pixel size); larger images are tiled"
        )
        self.input_size.setSingleStep(16)
        self.pixel_size = _float_spin(
            0.0,
            0.0,
            1e6,
            0.5,
            3,
            "nm per pixel the network sees; auto: the median of the inputs",
            special="auto",
        )
        self.validation = _float_spin(
            DEFAULTS["validation"],
            0.0,
            0.9,
            0.05,
            2,
            "Fraction of the images (per category, by file) held out for validation",
        )
        self.folds = _spin(
            DEFAULTS["folds"], 0, 50, "k-fold cross-validation instead of one validation split", special="off"
        )
        self.seed = _spin(DEFAULTS["seed"], 0, 2**31 - 1, "The same seed repeats a run on the CPU")
        self.preprocessing = QComboBox()
        self.preprocessing.addItems(list(PREPROCESSING_CHOICES))
        self.preprocessing.setToolTip(
            "Flattening applied to every image before the network, stored in the model and applied again at prediction"
        )
        self.permutations = _spin(
            DEFAULTS["permutations"],
            0,
            1000,
            "Label-permutation test: trainings on shuffled labels (0: none)",
        )
        self.blocks = _spin(
            arch["blocks"],
            1,
            8,
            "Convolution blocks; each halves the resolution",
        )
        self.filters = _spin(arch["filters"], 1, 512, "Filters of the first block; doubled block by block")
        self.head = QComboBox()
        self.head.addItems(list(HEADS))
        self.head.setToolTip(
            "gap: global average pooling (needed by the 'cam' method); dense: flatten + dense layer"
        )
        self.patience = _spin(
            DEFAULTS["patience"] if DEFAULTS["schedule"] == "plateau" else 0,
            0,
            10000,
            "off: the learning rate follows one cycle over every epoch and the last epoch is kept; "
            "a number: the rate is halved when the validation loss stalls, and training stops after "
            "this many epochs without a better one (the best epoch is kept)",
            special="off (one cycle)",
        )
        self.batch_size = _spin(DEFAULTS["batch_size"], 1, 1024, "Images per batch")
        self.baseline = QCheckBox("compare with a feature baseline")
        self.baseline.setToolTip(
            "Also train a random forest on image statistics, texture and FFT features and report it on the "
            "same validation images: does the CNN earn its keep?"
        )
        self.threads = _spin(
            0,
            0,
            256,
            "CPU threads for torch (auto: torch's default, all cores); fewer can be faster on a busy machine",
            special="auto",
        )
        for label, widget in (
            ("Training rounds (epochs), most", self.epochs),
            ("Network input (px)", self.input_size),
            ("Pixel size seen (nm/px)", self.pixel_size),
            ("Held out for checking", self.validation),
            ("Cross-validation folds", self.folds),
            ("Random seed", self.seed),
            ("Flattening first", self.preprocessing),
            ("Shuffled-label tests", self.permutations),
            ("Network blocks", self.blocks),
            ("Filters (first block)", self.filters),
            ("Network head", self.head),
            ("Stop after rounds without gain", self.patience),
            ("Images per batch", self.batch_size),
            ("CPU threads", self.threads),
        ):
            form.addRow(label, widget)
            form.labelForField(widget).setToolTip(widget.toolTip())
        form.addRow(self.baseline)
        self.pretrain_folder = QLineEdit()
        self.pretrain_folder.setPlaceholderText("none: train from scratch")
        self.pretrain_folder.setToolTip(
            "Optional: a folder of unlabelled scans of the same kind. The network first learns what they look "
            "like (self-supervised, no labels), then trains on the labelled images: better with few labels"
        )
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_pretrain_folder)
        row = QHBoxLayout()
        row.addWidget(self.pretrain_folder)
        row.addWidget(browse)
        label = QLabel("Pretrain on unlabelled scans…")
        label.setToolTip(self.pretrain_folder.toolTip())
        form.addRow(label)
        form.addRow(row)
        return box

    def _source_changed(self, index: int) -> None:
        self.pages.setCurrentIndex(index)

    def _browse_folder(self, *args) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Training folder (one sub-folder per category)", self.folder.text()
        )
        if folder:
            self.folder.setText(folder)

    def _browse_pretrain_folder(self, *args) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Unlabelled scans to pretrain on", self.pretrain_folder.text()
        )
        if folder:
            self.pretrain_folder.setText(folder)

    # -- categories ------------------------------------------------------------------------
    def category_names(self) -> list[str]:
        return list(self._names)

    def set_categories(self, names: list[str]) -> None:
        """Replace the categories (every layer becomes "(not used)")."""
        self.categories.blockSignals(True)
        self.categories.clear()
        for name in names:
            self.categories.addItem(self._category_item(name))
        self.categories.blockSignals(False)
        self._names = [str(n) for n in names]
        for _, combo in self._rows:
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([NOT_USED, *self._names])
            combo.blockSignals(False)
        self._assignments_changed()

    def _category_item(self, name: str) -> QListWidgetItem:
        item = QListWidgetItem(name)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
        return item

    def add_category(self, name: str | None = None) -> str:
        if name is None:
            n = len(self._names) + 1
            while f"category {n}" in self._names:
                n += 1
            name = f"category {n}"
        if not name.strip() or name in self._names:
            raise ValueError(f"category {name!r}: the name is empty or taken")
        self._names.append(name)
        self.categories.blockSignals(True)
        self.categories.addItem(self._category_item(name))
        self.categories.blockSignals(False)
        for _, combo in self._rows:
            combo.addItem(name)
        return name

    def remove_category(self, index: int) -> None:
        if not 0 <= index < len(self._names):
            return
        del self._names[index]
        self.categories.blockSignals(True)
        self.categories.takeItem(index)
        self.categories.blockSignals(False)
        for _, combo in self._rows:
            current = combo.currentIndex()
            combo.blockSignals(True)
            combo.removeItem(index + 1)
            combo.setCurrentIndex(0 if current == index + 1 else current - (current > index + 1))
            combo.blockSignals(False)
        self._assignments_changed()

    def _category_renamed(self, item: QListWidgetItem) -> None:
        row = self.categories.row(item)
        new = item.text().strip()
        others = self._names[:row] + self._names[row + 1 :]
        if not new or new in others:  # refuse empty and duplicate names
            self.categories.blockSignals(True)
            item.setText(self._names[row])
            self.categories.blockSignals(False)
            self.status.setText(f"category name {new!r} is empty or already used")
            return
        self._names[row] = new
        for _, combo in self._rows:
            combo.setItemText(row + 1, new)

    # -- layers ------------------------------------------------------------------------------
    def refresh_layers(self) -> None:
        """One row per open image layer; assignments of layers still open are kept."""
        kept = {id(layer): combo.currentText() for layer, combo in self._rows}
        self._rows = []
        self.table.setRowCount(0)
        for layer in image_layers(self.viewer):
            self._add_row(layer, kept.get(id(layer), NOT_USED))
        self._assignments_changed()

    def _add_row(self, layer: Image, category: str = NOT_USED) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        name = QTableWidgetItem(layer.name)
        name.setToolTip(f"{tuple(layer.data.shape)}, channel {LayerMeta(layer).title or '?'}")
        self.table.setItem(row, 0, name)
        combo = QComboBox()
        combo.addItems([NOT_USED, *self._names])
        combo.setCurrentText(category)
        combo.currentIndexChanged.connect(self._assignments_changed)
        self.table.setCellWidget(row, 1, combo)
        self._rows.append((layer, combo))

    def layer_inserted(self, layer) -> None:
        if layer in image_layers(self.viewer):
            self._add_row(layer)
            self._assignments_changed()

    def layer_removed(self, layer) -> None:
        for row, (candidate, _) in enumerate(self._rows):
            if candidate is layer:
                del self._rows[row]
                self.table.removeRow(row)
                self._assignments_changed()
                return

    def _rows_layers(self) -> list[Image]:
        """The layers offered for training, in table order."""
        return [layer for layer, _ in self._rows]

    def category_combo(self, layer) -> QComboBox:
        """The combo choosing ``layer``'s category."""
        for candidate, combo in self._rows:
            if candidate is layer:
                return combo
        raise ValueError(f"layer {getattr(layer, 'name', layer)!r} is not an open image layer")

    def assigned(self) -> dict[str, list[Image]]:
        """Category -> its layers, categories in the list's order (empty ones left out)."""
        out: dict[str, list[Image]] = {}
        for layer, combo in self._rows:
            if combo.currentIndex() > 0:
                out.setdefault(combo.currentText(), []).append(layer)
        return {name: out[name] for name in self._names if name in out}

    def _assignments_changed(self, *args) -> None:
        """Offer the other channels of the assigned layers' scans as extra channels."""
        layers = [layer for group in self.assigned().values() for layer in group]
        own = sorted({LayerMeta(layer).channel for layer in layers if LayerMeta(layer).channel})
        sources = {LayerMeta(layer).source for layer in layers if LayerMeta(layer).source}
        found = []
        for layer in image_layers(self.viewer):
            name = LayerMeta(layer).channel
            if (
                LayerMeta(layer).source in sources
                and name
                and not any(_same(name, o) for o in own)
                and name not in found
            ):
                found.append(str(name))
        checked = set(self.extra_channel_names())
        self.extra_channels.clear()
        for name in found:
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in checked else Qt.CheckState.Unchecked)
            self.extra_channels.addItem(item)
        if not layers:
            text = "Channels: assign layers first."
        elif len(own) > 1:
            text = f"Channels: the assigned layers hold different channels ({', '.join(own)}); assign layers of one channel"
        else:
            text = f"Channels: {own[0] if own else 'the layer itself'}" + (
                " + the extra channels ticked below:" if found else ""
            )
        self.channel_label.setText(text)
        self.extra_channels.setVisible(bool(found))

    def extra_channel_names(self) -> list[str]:
        return [
            self.extra_channels.item(i).text()
            for i in range(self.extra_channels.count())
            if self.extra_channels.item(i).checkState() == Qt.CheckState.Checked
        ]

    def set_extra_channel(self, name: str, checked: bool = True) -> None:
        for i in range(self.extra_channels.count()):
            item = self.extra_channels.item(i)
            if item.text() == name:
                item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
                return
        raise ValueError(f"channel {name!r} is not among the channels of the assigned layers' scans")

    # -- what to train on ----------------------------------------------------------------------
    def layer_channels(self) -> list[str]:
        """The model's channels: the assigned layers' channel, then the ticked extras."""
        layers = [layer for group in self.assigned().values() for layer in group]
        names = [LayerMeta(layer).channel for layer in layers]
        own = {name.lower(): name for name in names if name}
        extras = self.extra_channel_names()
        if len(own) > 1:
            raise ValueError(
                f"the assigned layers hold different channels ({', '.join(sorted(own.values()))}); assign layers of one channel and tick others as extra channels"
            )
        unnamed = [layer.name for layer in layers if not LayerMeta(layer).channel]
        if own and unnamed:
            raise ValueError(
                f"layer {unnamed[0]!r} has no channel name while the other assigned layers hold channel {next(iter(own.values()))!r}"
            )
        if not own:
            if extras:
                raise ValueError(
                    "the assigned layers have no channel information, so no other channel can be added"
                )
            return []
        return [next(iter(own.values())), *extras]

    def training_data(self) -> tuple[Any, list[str]]:
        """``(data, channels)`` for ``train_steps``: a folder path, or ``{category: [Example]}``."""
        if self.source.currentText() == SOURCE_FOLDER:
            folder = self.folder.text().strip()
            if not folder:
                raise ValueError("choose a training folder (one sub-folder per category)")
            channels = [c.strip() for c in self.folder_channels.text().split(",") if c.strip()]
            return folder, channels
        groups = self.assigned()
        if not groups:
            raise ValueError("assign image layers to at least two categories (or choose a folder)")
        channels = self.layer_channels()
        layers = list(self.viewer.layers)
        data = {
            category: [training_example(layer, channels, layers) for layer in group]
            for category, group in groups.items()
        }
        return data, channels

    def options(self) -> dict:
        """Keyword arguments of ``train_steps`` besides data, channels and should_stop."""
        return {
            "pixel_size": self.pixel_size.value() or "auto",
            "input_size": self.input_size.value(),
            "preprocessing": PREPROCESSING_CHOICES[self.preprocessing.currentText()],
            "architecture": {
                "blocks": self.blocks.value(),
                "filters": self.filters.value(),
                "head": self.head.currentText(),
            },
            "epochs": self.epochs.value(),
            "validation": self.validation.value(),
            "folds": self.folds.value(),
            "seed": self.seed.value(),
            "permutations": self.permutations.value(),
            "schedule": "plateau" if self.patience.value() else "one-cycle",
            "patience": self.patience.value() or DEFAULTS["patience"],
            "batch_size": self.batch_size.value(),
            "threads": self.threads.value() or None,
            "baseline": self.baseline.isChecked(),
        }

    # -- run -------------------------------------------------------------------------------------
    def start(self, *args) -> None:
        if self.worker is not None:
            return
        from ..learn.pretrain import pretrain_then_train_steps
        from ..learn.train import train_steps

        try:
            data, channels = self.training_data()
            options = self.options()
        except (ValueError, OSError) as exc:
            self.error("Cannot train", exc)
            return
        unlabelled = self.pretrain_folder.text().strip()
        run: tuple = (train_steps, data, channels)
        if unlabelled:  # pretraining first, then training from its encoder
            run = (pretrain_then_train_steps, unlabelled, data, channels)
        self._stop_requested = False
        self._plotted_run = None
        for plot in (self.loss_plot, self.accuracy_plot):
            plot.clear()
        self.confusion.clear()
        self.metrics_label.setText("")
        self.skipped_label.setText("")
        worker = create_worker(
            *run,
            should_stop=lambda: self._stop_requested,
            **options,
            _start_thread=False,
            _ignore_errors=True,
        )
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._trained)
        worker.errored.connect(lambda exc: self.error("Training failed", exc))
        worker.finished.connect(self._finished)
        self.worker = worker
        self.train_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.status.setText("pretraining…" if unlabelled else "training…")
        worker.start()

    def stop(self, *args) -> None:
        """Ask training to end after the current batch; the best model so far is returned."""
        if self.worker is not None:
            self._stop_requested = True
            self.stop_button.setEnabled(False)
            self.status.setText("stopping…")

    def _on_progress(self, update) -> None:
        if not self._stop_requested:
            self._show_progress(update)
        entry = update.extra.get("epoch")
        run = str(update.extra.get("run", ""))
        if entry is None or run.startswith("permutation"):
            return  # permutation runs train on shuffled labels: not the model's curves
        if run != self._plotted_run:  # a new cross-validation fold or the final run
            self._plotted_run = run
            for plot, title in ((self.loss_plot, "loss"), (self.accuracy_plot, "accuracy")):
                plot.clear()
                plot.title = f"{title} — {run.rstrip(': ')}" if run else title
        epoch = entry["epoch"]
        self.loss_plot.add_point("train", epoch, entry["train_loss"])
        self.accuracy_plot.add_point("train", epoch, entry["train_accuracy"])
        if "val_loss" in entry:
            self.loss_plot.add_point("validation", epoch, entry["val_loss"])
            self.accuracy_plot.add_point("validation", epoch, entry["val_accuracy"])

    def _trained(self, model: ClassifierModel | None) -> None:
        if model is None:
            self.status.setText("stopped while pretraining: no model trained")
            return
        self.model = model
        self.metrics_label.setText(metrics_html(model))
        skipped = model.training.get("skipped", [])
        self.skipped_label.setText(
            f"Skipped inputs: {len(skipped)}" + (" (hover for the reasons)" if skipped else "")
        )
        self.skipped_label.setToolTip("\n".join(f"{s['input']}: {s['reason']}" for s in skipped))
        matrix = model.metrics.get("confusion_matrix")
        if matrix:
            self.confusion.set_matrix(matrix, model.categories)
        self.save_button.setEnabled(True)
        stopped = " (stopped: best epoch kept)" if model.training.get("stopped_by_user") else ""
        self.status.setText(
            f"trained{stopped}: accuracy {_percent(model.metrics.get('accuracy'))} on the validation images"
        )
        self.dock.set_model(model)

    def _finished(self) -> None:
        self.worker = None
        self.train_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.progress.setVisible(False)

    # -- save ------------------------------------------------------------------------------------
    def _save_dialog(self, *args) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save classifier model", "classifier.safetensors", "Classifier model (*.safetensors)"
        )
        if path:
            self.save_model(path)

    def save_model(self, path: str) -> str | None:
        """Write the trained model (``.safetensors`` + ``.json``); returns the weights path."""
        if self.model is None:
            self.error("Cannot save", "train a model first")
            return None
        try:
            out = self.model.save(path)
        except (OSError, ValueError) as exc:
            self.error("Saving the model failed", exc)
            return None
        self.status.setText(f"saved {out} (+ .json)")
        self.dock.set_model(self.model)
        return str(out)


# ------------------------------------------------------------------------------------------
# Predict
# ------------------------------------------------------------------------------------------


class PredictPanel(_Panel):
    """Model, layers, Predict, results table; CAM layers."""

    def __init__(self, dock: ClassifierWidget):
        super().__init__(dock)
        self.model_path = QLineEdit()
        self.model_path.setReadOnly(True)
        self.model_path.setPlaceholderText("no model: load one or train one")
        load = QPushButton("Load model…")
        load.clicked.connect(self._load_dialog)
        self.model_info = QLabel("")
        self.model_info.setWordWrap(True)
        self.all_layers = QCheckBox("all image layers")
        self.all_layers.setToolTip("Classify every open image layer (class activation maps excluded)")
        self.all_layers.toggled.connect(lambda on: self.layer_list.setEnabled(not on))
        self.layer_list = QListWidget()
        self.layer_list.setMinimumHeight(100)
        self.predict_button = QPushButton("Predict")
        self.predict_button.clicked.connect(self.start)
        self.table = QTableWidget(0, 0)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setMinimumHeight(120)

        self.cam_method = QComboBox()
        from ..learn.cam import METHODS

        self.cam_method.addItems(list(METHODS))
        self.cam_method.setCurrentText("gradcam")
        self.cam_method.setToolTip(
            "How the map is computed: gradcam (default), gradcam++ and layercam work with any model; "
            "cam needs the global-average-pooling head"
        )
        self.cam_target = QComboBox()
        self.cam_target.addItem(PREDICTED)
        self.cam_target.setToolTip("The category whose evidence the map shows (default: the predicted one)")
        self.cam_button = QPushButton("Add CAM layer")
        self.cam_button.setToolTip("A class activation map over each checked layer: where the network looked")
        self.cam_button.clicked.connect(self.add_cam)
        self.cam_worker = None
        self._layers: list[Image] = []
        self._table_layers: list[Image] = []  # the layer of each row of the results table
        self.export_button = QPushButton("Export recipe…")
        self.export_button.setToolTip(
            "Save a recipe that replays the first checked layer's processing, then predicts with this "
            "model and writes the class activation map (scanprobe batch runs it on many files)"
        )
        self.export_button.clicked.connect(self._export_dialog)

        row = QHBoxLayout()
        row.addWidget(self.model_path)
        row.addWidget(load)
        cam_box = QGroupBox("Class activation map")
        cam_form = QFormLayout(cam_box)
        cam_form.addRow("Method", self.cam_method)
        cam_form.addRow("Category explained", self.cam_target)
        cam_form.addRow(self.cam_button)
        inner = QWidget()
        layout = QVBoxLayout(inner)
        layout.addWidget(QLabel("Model"))
        layout.addLayout(row)
        layout.addWidget(self.model_info)
        layout.addWidget(QLabel("Layers to classify"))
        layout.addWidget(self.all_layers)
        layout.addWidget(self.layer_list)
        layout.addWidget(self.predict_button)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
        layout.addWidget(cam_box)
        layout.addWidget(self.export_button)
        layout.addStretch(1)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(_scrolled(inner))

    # -- model -----------------------------------------------------------------------------------
    @property
    def model(self) -> ClassifierModel | None:
        return self.dock.model

    def show_model(self, model: ClassifierModel | None) -> None:
        if model is None:
            return
        self.model_path.setText(model.path or "the model just trained (not saved)")
        size = f"{model.pixel_size:.3g} nm/px" if model.pixel_size else "images as they are"
        self.model_info.setText(
            f"categories: {', '.join(model.categories)}; channels: {', '.join(model.channels) or 'first channel'}; "
            f"input {model.input_size} px at {size}"
        )
        current = self.cam_target.currentText()
        self.cam_target.clear()
        self.cam_target.addItems([PREDICTED, *model.categories])
        self.cam_target.setCurrentText(current if current in model.categories else PREDICTED)

    def _load_dialog(self, *args) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load classifier model", "", "Classifier model (*.safetensors *.json)"
        )
        if path:
            self.load_model(path)

    def load_model(self, path: str) -> ClassifierModel | None:
        from ..learn.modelfile import load_model

        try:
            model = load_model(path)
        except (OSError, ValueError) as exc:
            self.error("Cannot load the model", exc)
            return None
        self.dock.set_model(model)
        self.status.setText(f"loaded {model.name}")
        return model

    # -- layers ------------------------------------------------------------------------------------
    def refresh_layers(self) -> None:
        """One checkable item per open image layer; ticks of layers still open are kept."""
        checked = {id(layer) for layer in self._checked_layers()}
        self._layers = []
        self.layer_list.clear()
        for layer in image_layers(self.viewer):
            self.layer_inserted(layer, id(layer) in checked)

    def layer_inserted(self, layer, checked: bool = False) -> None:
        if layer not in image_layers(self.viewer):
            return
        item = QListWidgetItem(layer.name)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
        self.layer_list.addItem(item)
        self._layers.append(layer)

    def layer_removed(self, layer) -> None:
        """The layer leaves the list of layers to classify, and its row the results table."""
        for row, candidate in enumerate(self._layers):
            if candidate is layer:
                del self._layers[row]
                self.layer_list.takeItem(row)
                break
        for row, candidate in enumerate(self._table_layers):
            if candidate is layer:
                del self._table_layers[row]
                self.table.removeRow(row)
                break

    def _checked_layers(self) -> list[Image]:
        return [
            layer
            for i, layer in enumerate(self._layers)
            if self.layer_list.item(i).checkState() == Qt.CheckState.Checked
        ]

    def set_checked(self, layers: list, checked: bool = True) -> None:
        """Tick (or untick) ``layers`` in the list."""
        ids = {id(layer) for layer in layers}
        for i, layer in enumerate(self._layers):
            if id(layer) in ids:
                self.layer_list.item(i).setCheckState(
                    Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked
                )

    def selected_layers(self) -> list[Image]:
        """The layers to classify: all image layers, or the ticked ones."""
        return image_layers(self.viewer) if self.all_layers.isChecked() else self._checked_layers()

    def _inputs(self) -> tuple[ClassifierModel, list[Image], list]:
        from .cam_layer import layer_example

        if self.model is None:
            raise ValueError("load a model, or train one in the Train tab")
        layers = self.selected_layers()
        if not layers:
            raise ValueError("tick the layers to classify (or 'all image layers')")
        viewer_layers = list(self.viewer.layers)
        return self.model, layers, [layer_example(layer, self.model, viewer_layers) for layer in layers]

    # -- predict -------------------------------------------------------------------------------------
    def start(self, *args) -> None:
        if self.worker is not None:
            return
        from ..learn.predict import predict_steps

        try:
            model, layers, examples = self._inputs()
        except (ValueError, OSError) as exc:
            self.error("Cannot predict", exc)
            return
        worker = create_worker(predict_steps, model, examples, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._show_progress)
        worker.returned.connect(lambda results: self._predicted(model, layers, results))
        worker.errored.connect(lambda exc: self.error("Prediction failed", exc))
        worker.finished.connect(self._finished)
        self.worker = worker
        self.predict_button.setEnabled(False)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.status.setText("predicting…")
        worker.start()

    def _predicted(self, model: ClassifierModel, layers: list, results: list) -> None:
        movies = any(r.frames is not None for r in results)
        headers = ["layer", "category", *[f"P({c})" for c in model.categories], "unlike"] + (
            ["frames"] if movies else []
        )
        self.table.clear()
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(results))
        open_layers = list(self.viewer.layers)
        self._table_layers = list(layers)
        for row, (layer, result) in enumerate(zip(layers, results, strict=True)):
            unlike = "n/a" if result.unlike_training is None else f"{result.unlike_training:.2f}"
            cells = [
                layer.name,
                result.label,
                *[f"{result.probabilities[c]:.3f}" for c in model.categories],
                unlike,
            ]
            if movies:
                cells.append(_frame_summary(result.frames, model.categories))
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col >= 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, col, item)
            record = {
                "model": model.path or model.name,
                "label": result.label,
                "probabilities": dict(result.probabilities),
                "unlike_training": result.unlike_training,
            }
            if result.frames is not None:
                record["frames"] = result.frames
            LayerMeta(layer).classification = record
        self.table.horizontalHeaderItem(len(model.categories) + 2).setToolTip(
            "Unlike the training data: about 1 or less for images like those the model learnt from; "
            "well above 1 (say > 2) means the category and its probability mean little"
        )
        self.table.resizeColumnsToContents()
        for layer in [la for la in layers if not any(la is o for o in open_layers)]:
            self.layer_removed(layer)  # deleted while the network ran
        self.status.setText(f"classified {len(results)} layer(s) with {model.name}")

    def _finished(self) -> None:
        self.worker = None
        self.predict_button.setEnabled(True)
        self.progress.setVisible(False)

    # -- CAM ---------------------------------------------------------------------------------------------
    # -- recipe --------------------------------------------------------------------------------
    def _export_dialog(self, *args) -> None:
        from .recipe_export import ask_recipe_path

        layers = self.selected_layers()
        if not layers:
            show_info("Check a layer to classify first.")
            return
        path = ask_recipe_path(self, layers[0].name)
        if path:
            self.export_recipe(path, layers[0])

    def export_recipe(self, path, layer: Image | None = None):
        """Write a recipe to ``path``: ``layer``'s processing history, predict with the model
        (which must be saved: the recipe pins its file by hash), a CAM step with the chosen
        method and category, and a ``.gwy`` write (image + map in one file). Returns the path,
        or None after showing an error."""
        from .recipe_export import export_layer_recipe

        layers = [layer] if layer is not None else self.selected_layers()
        if not layers:
            show_info("Check a layer to classify first.")
            return None
        if self.model is None or not self.model.path:
            show_error(
                "Save the model first (Train tab ▸ Save model…) or load a saved one: a recipe refers to a model file."
            )
            return None
        target = None if self.cam_target.currentText() == PREDICTED else self.cam_target.currentText()
        try:
            out = export_layer_recipe(
                layers[0],
                path,
                write={"format": ".gwy", "name": "{file}"},
                model=self.model.path,
                cam={"method": self.cam_method.currentText(), "target": target},
            )
        except (ValueError, OSError) as exc:
            show_error(f"Cannot export the recipe of {layers[0].name!r}: {exc}")
            return None
        self.status.setText(f"recipe written to {out}")
        return out

    def add_cam(self, *args) -> None:
        """Compute a class activation map of each checked layer in a worker, then add the layers."""
        if self.cam_worker is not None:
            return
        from .cam_layer import cam_layer

        try:
            model, layers, _ = self._inputs()  # checks the channels before any work
        except (ValueError, OSError) as exc:
            self.error("Cannot compute the CAM", exc)
            return
        method = self.cam_method.currentText()
        target = None if self.cam_target.currentText() == PREDICTED else self.cam_target.currentText()
        viewer_layers = list(self.viewer.layers)

        def compute():
            return [cam_layer(layer, model, method, target, viewer_layers=viewer_layers) for layer in layers]

        worker = create_worker(compute, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._add_cam_layers)
        worker.errored.connect(lambda exc: self.error("CAM failed", exc))
        worker.finished.connect(self._cam_finished)
        self.cam_worker = worker
        self.cam_button.setEnabled(False)
        self.status.setText(f"computing {method} maps…")
        worker.start()

    def _add_cam_layers(self, tuples: list) -> None:
        for data, kwargs, kind in tuples:
            self.viewer.add_layer(Layer.create(data, kwargs, kind))
        self.status.setText(f"added {len(tuples)} CAM layer(s)")

    def _cam_finished(self) -> None:
        self.cam_worker = None
        self.cam_button.setEnabled(True)


def _frame_summary(frames: list[dict] | None, categories: list[str]) -> str:
    """``"12 frames: 8 A, 4 B"`` for a movie, ``""`` for an image."""
    if not frames:
        return ""
    counts = {c: sum(1 for f in frames if f["label"] == c) for c in categories}
    return f"{len(frames)} frames: " + ", ".join(f"{n} {c}" for c, n in counts.items() if n)


# ------------------------------------------------------------------------------------------
# The dock
# ------------------------------------------------------------------------------------------


class ClassifierWidget(QWidget):
    """Dock widget with a Train and a Predict tab sharing one model (the last trained or loaded)."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.model: ClassifierModel | None = None
        self.tabs = QTabWidget()
        self.train = TrainPanel(self)
        self.predict = PredictPanel(self)
        self.tabs.addTab(self.train, "Train")
        self.tabs.addTab(self.predict, "Predict")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        self.viewer.layers.events.inserted.connect(self._layer_inserted)
        self.viewer.layers.events.removed.connect(self._layer_removed)
        self.train.refresh_layers()
        self.predict.refresh_layers()

    def set_model(self, model: ClassifierModel) -> None:
        """Use ``model`` for prediction and CAM (a loaded one, or the one just trained)."""
        self.model = model
        self.predict.show_model(model)

    def _layer_inserted(self, event) -> None:
        try:
            self.train.layer_inserted(event.value)
            self.predict.layer_inserted(event.value)
        except RuntimeError:  # the dock was closed: its Qt widgets are gone
            self._disconnect()

    def _layer_removed(self, event) -> None:
        try:
            self.train.layer_removed(event.value)
            self.predict.layer_removed(event.value)
        except RuntimeError:
            self._disconnect()

    def _disconnect(self) -> None:
        self.viewer.layers.events.inserted.disconnect(self._layer_inserted)
        self.viewer.layers.events.removed.disconnect(self._layer_removed)


__all__ = [
    "ClassifierWidget",
    "PredictPanel",
    "TrainPanel",
    "image_layers",
    "metrics_html",
    "training_example",
]
