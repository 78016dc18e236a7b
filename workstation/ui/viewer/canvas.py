"""The image area of the viewer: draws one image with zoom and pan, the corner text, and turns
the mouse into requests (scroll, window/level) for the viewer.

Mouse: wheel scrolls through the images (Ctrl+wheel zooms), left drag changes the window
(horizontal the width, vertical the level), right drag zooms, middle drag pans.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPoint, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

ZOOM_STEP = 1.15
MIN_ZOOM, MAX_ZOOM = 0.05, 40.0


class ImageCanvas(QWidget):
    """Shows a QImage fitted to the widget times :meth:`zoom_factor`, moved by the pan."""

    #: Scroll by this many images (negative: back).
    scroll_requested = Signal(int)
    #: A left drag moved by (dx, dy) screen pixels: the viewer changes the window.
    window_dragged = Signal(int, int)
    #: Zoom or pan changed (the corner text shows the zoom).
    view_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._message = ""
        self._corners: tuple[str, str, str, str] = ("", "", "", "")
        self._zoom = 1.0  # relative to fitting the window
        self._pan = QPointF(0, 0)
        self._drag_button: Qt.MouseButton | None = None
        self._last = QPoint()
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(False)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._font = QFont(self.font())
        self._font.setPointSizeF(max(self._font.pointSizeF(), 9.0))

    def sizeHint(self) -> QSize:
        return QSize(640, 640)

    # -- state ---------------------------------------------------------------------------

    def image(self) -> QImage | None:
        """The image shown (before zoom), or None while a message is shown."""
        return self._image

    def message(self) -> str:
        return self._message

    def set_image(self, image: QImage | None, message: str = "") -> None:
        self._image = image
        self._message = message
        self.update()

    def set_corners(
        self, top_left: str, top_right: str, bottom_left: str, bottom_right: str
    ) -> None:
        self._corners = (top_left, top_right, bottom_left, bottom_right)
        self.update()

    def corners(self) -> tuple[str, str, str, str]:
        return self._corners

    def zoom_factor(self) -> float:
        """Zoom relative to fitting the widget (1.0 = fit)."""
        return self._zoom

    def scale(self) -> float:
        """Screen pixels per image pixel."""
        if self._image is None or self._image.isNull():
            return 1.0
        fit = min(self.width() / self._image.width(), self.height() / self._image.height())
        return max(fit, 1e-6) * self._zoom

    def set_zoom(self, factor: float, anchor: QPointF | None = None) -> None:
        """Zoom to ``factor`` × fit, keeping the image point under ``anchor`` in place."""
        factor = min(max(factor, MIN_ZOOM), MAX_ZOOM)
        if anchor is not None and self._zoom > 0:
            centre = QPointF(self.width() / 2, self.height() / 2) + self._pan
            ratio = factor / self._zoom
            self._pan += (anchor - centre) * (1 - ratio)
        self._zoom = factor
        self.view_changed.emit()
        self.update()

    def pan(self) -> QPointF:
        return QPointF(self._pan)

    def set_pan(self, offset: QPointF) -> None:
        self._pan = QPointF(offset)
        self.view_changed.emit()
        self.update()

    def reset_view(self) -> None:
        self._zoom = 1.0
        self._pan = QPointF(0, 0)
        self.view_changed.emit()
        self.update()

    def image_rect(self) -> QRectF:
        """Where the image is drawn, in widget coordinates."""
        if self._image is None:
            return QRectF()
        s = self.scale()
        w, h = self._image.width() * s, self._image.height() * s
        centre = QPointF(self.width() / 2, self.height() / 2) + self._pan
        return QRectF(centre.x() - w / 2, centre.y() - h / 2, w, h)

    # -- painting ------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("black"))
        if self._image is not None and not self._image.isNull():
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            painter.drawImage(self.image_rect(), self._image)
        painter.setFont(self._font)
        if self._message:
            painter.setPen(QColor("#e0e0e0"))
            painter.drawText(
                self.rect().adjusted(40, 40, -40, -40),
                int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap),
                self._message,
            )
        margin = 8
        area = self.rect().adjusted(margin, margin, -margin, -margin)
        aligns = (
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop,
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop,
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom,
            Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignBottom,
        )
        for text, align in zip(self._corners, aligns, strict=True):
            if not text:
                continue
            painter.setPen(QColor(0, 0, 0, 220))  # a shadow keeps text readable on white
            painter.drawText(area.translated(1, 1), int(align), text)
            painter.setPen(QColor("#f0e68c"))
            painter.drawText(area, int(align), text)
        painter.end()

    # -- mouse ---------------------------------------------------------------------------

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if not steps:
            event.ignore()
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.set_zoom(self._zoom * ZOOM_STEP**steps, event.position())
        else:
            self.scroll_requested.emit(-1 if steps > 0 else 1)
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self._drag_button = event.button()
        self._last = event.position().toPoint()
        self.setFocus()
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag_button is None:
            return
        point = event.position().toPoint()
        dx, dy = point.x() - self._last.x(), point.y() - self._last.y()
        self._last = point
        if self._drag_button == Qt.MouseButton.LeftButton:
            self.window_dragged.emit(dx, dy)
        elif self._drag_button == Qt.MouseButton.RightButton:
            centre = QPointF(self.width() / 2, self.height() / 2)
            self.set_zoom(self._zoom * math.exp(-dy / 200), centre)
        elif self._drag_button == Qt.MouseButton.MiddleButton:
            self.set_pan(self._pan + QPointF(dx, dy))
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == self._drag_button:
            self._drag_button = None
        event.accept()
