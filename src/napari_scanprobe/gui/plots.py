"""Small plots drawn with QPainter: a line plot with named series and a confusion-matrix heat map.

matplotlib is not a dependency; these two widgets are all the classifier dock needs. Colours
follow the widget's palette (napari's theme), so they read on dark and light themes alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFontMetrics, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

#: Series colours, in order of creation (colour-blind friendly, readable on dark and light).
PALETTE = ("#4e9fef", "#ff9f1c", "#5fd068", "#e5484d", "#b48ef0", "#a0a0a0")


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 × 10^k apart) covering ``[low, high]``, about ``count``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


class LinePlot(QWidget):
    """Named series of (x, y) points drawn as lines with markers, axes and a legend.

    ``y_range``: fixed y limits (e.g. ``(0, 1)`` for an accuracy); None: fit the data.
    Points with a non-finite y are skipped.
    """

    def __init__(
        self, title: str = "", x_label: str = "", y_range: tuple[float, float] | None = None, parent=None
    ):
        super().__init__(parent)
        self.title, self.x_label, self.y_range = title, x_label, y_range
        self.series: dict[str, tuple[list[float], list[float]]] = {}
        self.colors: dict[str, str] = {}
        self.setMinimumSize(220, 150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    # -- data ------------------------------------------------------------------------------
    def add_series(self, name: str, color: str | None = None) -> None:
        if name not in self.series:
            self.series[name] = ([], [])
            self.colors[name] = color or PALETTE[(len(self.colors)) % len(PALETTE)]

    def add_point(self, name: str, x: float, y: float) -> None:
        self.add_series(name)
        xs, ys = self.series[name]
        xs.append(float(x))
        ys.append(float(y) if y is not None else math.nan)
        self.update()

    def set_series(self, name: str, xs: Sequence[float], ys: Sequence[float]) -> None:
        self.add_series(name)
        self.series[name] = ([float(x) for x in xs], [math.nan if y is None else float(y) for y in ys])
        self.update()

    def clear(self) -> None:
        """Remove every point (the series, their colours and legend entries stay)."""
        for name in self.series:
            self.series[name] = ([], [])
        self.update()

    def points(self, name: str) -> list[tuple[float, float]]:
        xs, ys = self.series.get(name, ([], []))
        return list(zip(xs, ys))

    # -- drawing ---------------------------------------------------------------------------
    def _limits(self) -> tuple[float, float, float, float] | None:
        pts = [(x, y) for xs, ys in self.series.values() for x, y in zip(xs, ys) if math.isfinite(y)]
        if not pts:
            return None
        x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
        if self.y_range is not None:
            y0, y1 = self.y_range
        else:
            y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
            pad = (y1 - y0) * 0.08 or abs(y1) * 0.1 or 1.0
            y0, y1 = y0 - pad, y1 + pad
            if min(p[1] for p in pts) >= 0 > y0:
                y0 = 0.0
        if x1 <= x0:
            x0, x1 = x0 - 1, x1 + 1
        return x0, x1, y0, y1

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        fg = self.palette().color(self.foregroundRole())
        grid = QColor(fg)
        grid.setAlpha(50)
        metrics = QFontMetrics(self.font())
        line_h = metrics.height()
        left, right, top, bottom = metrics.horizontalAdvance("0.000") + 10, 8, line_h + 6, 2 * line_h + 6
        plot = QRectF(left, top, max(10, self.width() - left - right), max(10, self.height() - top - bottom))
        painter.setPen(fg)
        painter.drawText(
            QRectF(plot.left(), 0, plot.width(), line_h + 4),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            self.title,
        )
        self._draw_legend(painter, metrics, plot.right(), (line_h + 4) / 2, fg)
        painter.drawText(
            QRectF(plot.left(), self.height() - line_h - 2, plot.width(), line_h),
            Qt.AlignmentFlag.AlignHCenter,
            self.x_label,
        )
        painter.setPen(QPen(grid, 1))
        painter.drawRect(plot)
        limits = self._limits()
        if limits is None:
            painter.setPen(fg)
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "no data yet")
            painter.end()
            return
        x0, x1, y0, y1 = limits

        def to_px(x: float, y: float) -> QPointF:
            return QPointF(
                plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                plot.bottom() - (y - y0) / (y1 - y0) * plot.height(),
            )

        for t in nice_ticks(y0, y1, 5):
            p = to_px(x0, t)
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(plot.left(), p.y()), QPointF(plot.right(), p.y()))
            painter.setPen(fg)
            painter.drawText(
                QRectF(0, p.y() - line_h / 2, left - 4, line_h),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                _label(t),
            )
        x_ticks = [t for t in nice_ticks(x0, x1, 6) if float(t).is_integer()] or nice_ticks(x0, x1, 6)
        for t in x_ticks:
            p = to_px(t, y0)
            painter.setPen(QPen(grid, 1))
            painter.drawLine(QPointF(p.x(), plot.top()), QPointF(p.x(), plot.bottom()))
            painter.setPen(fg)
            painter.drawText(
                QRectF(p.x() - 30, plot.bottom() + 2, 60, line_h), Qt.AlignmentFlag.AlignHCenter, _label(t)
            )
        painter.setClipRect(plot.adjusted(-4, -4, 4, 4))
        for name, (xs, ys) in self.series.items():
            color = QColor(self.colors[name])
            painter.setPen(QPen(color, 2))
            path, started = QPainterPath(), False
            for x, y in zip(xs, ys):
                if not math.isfinite(y):
                    started = False
                    continue
                p = to_px(x, y)
                if started:
                    path.lineTo(p)
                else:
                    path.moveTo(p)
                    started = True
            painter.drawPath(path)
            painter.setBrush(color)
            if len(xs) <= 60:
                for x, y in zip(xs, ys):
                    if math.isfinite(y):
                        painter.drawEllipse(to_px(x, y), 2.5, 2.5)
            painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setClipping(False)
        painter.end()

    def _draw_legend(
        self, painter: QPainter, metrics: QFontMetrics, right: float, y: float, fg: QColor
    ) -> None:
        """The series that have points, in a row ending at ``right``, centred on height ``y``."""
        named = [n for n in self.series if self.series[n][0]]
        x = right - sum(metrics.horizontalAdvance(n) + 30 for n in named)
        for name in named:
            painter.setPen(QPen(QColor(self.colors[name]), 2))
            painter.drawLine(QPointF(x + 4, y), QPointF(x + 18, y))
            painter.setPen(fg)
            width = metrics.horizontalAdvance(name)
            painter.drawText(
                QRectF(x + 22, y - metrics.height() / 2, width + 4, metrics.height()),
                Qt.AlignmentFlag.AlignVCenter,
                name,
            )
            x += width + 30


class ConfusionMatrixPlot(QWidget):
    """A confusion matrix as a heat map: rows the true category, columns the predicted one.

    Each cell shows its count; its shade is the count as a fraction of its row (the recall of
    that row's category on the diagonal).
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.matrix: list[list[int]] = []
        self.labels: list[str] = []
        self.setMinimumSize(200, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_matrix(self, matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> None:
        matrix = [[int(v) for v in row] for row in matrix]
        if len(matrix) != len(labels) or any(len(row) != len(labels) for row in matrix):
            raise ValueError(
                f"confusion matrix: expected {len(labels)}×{len(labels)} counts for categories {list(labels)}, got {matrix}"
            )
        self.matrix, self.labels = matrix, [str(c) for c in labels]
        self.update()

    def clear(self) -> None:
        self.matrix, self.labels = [], []
        self.update()

    @property
    def total(self) -> int:
        return sum(sum(row) for row in self.matrix)

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        fg = self.palette().color(self.foregroundRole())
        metrics = QFontMetrics(self.font())
        line_h = metrics.height()
        if not self.matrix:
            painter.setPen(fg)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "confusion matrix: after training")
            painter.end()
            return
        k = len(self.labels)
        names = [_elide(metrics, n, 110) for n in self.labels]
        left = max(metrics.horizontalAdvance(n) for n in names) + line_h + 12
        top, bottom = line_h + 4, 2 * line_h + 6
        side = max(10.0, min((self.width() - left - 6) / k, (self.height() - top - bottom) / k))
        grid = QRectF(left, top, side * k, side * k)
        painter.setPen(fg)
        painter.drawText(
            QRectF(grid.left(), 0, grid.width(), line_h + 2), Qt.AlignmentFlag.AlignHCenter, "predicted"
        )
        painter.save()
        painter.translate(line_h / 2 + 2, grid.center().y())
        painter.rotate(-90)
        painter.drawText(
            QRectF(-grid.height() / 2, -line_h / 2, grid.height(), line_h),
            Qt.AlignmentFlag.AlignHCenter,
            "true",
        )
        painter.restore()
        base = QColor(PALETTE[0])
        for i in range(k):
            row_total = sum(self.matrix[i]) or 1
            for j in range(k):
                count = self.matrix[i][j]
                cell = QRectF(grid.left() + j * side, grid.top() + i * side, side, side)
                fraction = count / row_total
                color = QColor(base)
                color.setAlphaF(0.08 + 0.92 * fraction)
                painter.fillRect(cell, color)
                painter.setPen(QPen(fg, 0.5))
                painter.drawRect(cell)
                painter.setPen(QColor("white") if fraction > 0.5 else fg)
                painter.drawText(cell, Qt.AlignmentFlag.AlignCenter, str(count))
            painter.setPen(fg)
            painter.drawText(
                QRectF(line_h + 4, grid.top() + i * side, left - line_h - 8, side),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                names[i],
            )
            painter.drawText(
                QRectF(grid.left() + i * side, grid.bottom() + 2, side, line_h),
                Qt.AlignmentFlag.AlignHCenter,
                _elide(metrics, self.labels[i], int(side)),
            )
        painter.end()


def _elide(metrics: QFontMetrics, text: str, width: int) -> str:
    return metrics.elidedText(text, Qt.TextElideMode.ElideRight, max(10, width))
