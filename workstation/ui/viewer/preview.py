"""A quick look at one image of a stored series: decode, window, scale to 8 bit, show.

Decoding follows the grayscale pipeline of PS3.3 C.11 in short: the Modality LUT (rescale
slope/intercept, C.11.1), then the first Window Center/Width pair with the linear function of
C.11.2.1.2.1 (or the image's min/max when there is none), then MONOCHROME1 inversion. Colour
images (RGB, YBR converted by pydicom, PALETTE COLOR through its LUT) are scaled to 8 bit.

Only the middle frame of a multi-frame image is decoded. Decoding runs on a single background
thread; the widget shows the latest request only and drops stale results. The decoder thread
touches no Qt object but the QImage it makes: it hands the result to the GUI thread through the
window's event loop with a weak reference to the widget, which may be gone by then.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import shiboken6
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder, pixel_array
from pydicom.uid import UID
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QPixmap, QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from workstation.ui.common.tasks import gui_loop, post
from workstation.ui.common.thread_guard import check_gui_thread
from workstation.ui.viewer.imaging import compression_name, file_window

log = logging.getLogger(__name__)

NO_IMAGE = "No image"
#: QImage text key holding the decoded image's size before scaling, e.g. "512 × 512".
SOURCE_SIZE_KEY = "source-size"
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class PreviewUnavailable(Exception):
    """The file holds no image we can show; ``str(exc)`` is the placeholder text."""


def decode_preview(path: str | os.PathLike[str], max_size: int = 512) -> QImage:
    """The middle image of ``path`` as an 8-bit QImage no larger than ``max_size`` pixels.

    Raises :class:`PreviewUnavailable` with a placeholder text when there is no pixel data or
    it cannot be decoded (for example JPEG 2000 without a decoder installed). Safe to call
    from any thread: it only uses QImage, never QPixmap.
    """
    try:
        ds = dcmread(os.fspath(path), defer_size=1024)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise PreviewUnavailable(f"Not a readable DICOM file: {exc}") from exc
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise PreviewUnavailable(NO_IMAGE)
    frames = _int(ds.get("NumberOfFrames"), 1)
    try:
        arr = pixel_array(os.fspath(path), index=frames // 2 if frames > 1 else None)
    except Exception as exc:
        raise PreviewUnavailable(_decode_failure(ds, exc)) from exc
    image = _to_qimage(_to_8bit(arr, ds))
    source_size = f"{image.width()} × {image.height()}"
    if max(image.width(), image.height()) > max_size:
        image = image.scaled(
            max_size,
            max_size,
            Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation,
        )
    image.setText(SOURCE_SIZE_KEY, source_size)
    return image


def load_preview(path: str | os.PathLike[str], max_size: int = 512) -> QImage | None:
    """Like :func:`decode_preview`, but ``None`` instead of an exception."""
    try:
        return decode_preview(path, max_size)
    except PreviewUnavailable:
        return None


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _decode_failure(ds: Dataset, exc: Exception) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = UID(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else UID("")
    if not ts or not ts.is_compressed:
        log.info("cannot decode pixel data: %s", exc)
        return f"Cannot decode the image: {exc}"
    name = compression_name(ts)
    try:
        available = get_decoder(ts).is_available
    except Exception:  # no decoder class at all for this transfer syntax
        available = False
    if not available:
        return f"Compressed ({name}) — no decoder installed; the file is stored intact"
    log.info("cannot decode %s pixel data: %s", name, exc)
    return f"Compressed ({name}) — the image could not be decoded; the file is stored intact"


def _to_8bit(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Rows × columns (grayscale) or rows × columns × 3 (colour), dtype uint8."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
        photometric = "RGB"
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):  # pydicom gives YBR as RGB already
        rgb = arr[..., :3].astype(np.float64)
        top = float(rgb.max()) if rgb.size else 0.0
        scale = 255.0 / top if top > 255 else 1.0
        return np.clip(np.rint(rgb * scale), 0, 255).astype(np.uint8)
    if arr.ndim != 2:
        raise PreviewUnavailable(f"Unsupported image layout {arr.shape}")
    values = apply_modality_lut(arr, ds).astype(np.float64)
    window = file_window(ds)
    if window is not None:
        center, width = window
        low = center - 0.5 - (width - 1) / 2
        out = ((values - (center - 0.5)) / max(width - 1, 1e-6) + 0.5) * 255.0
        out[values <= low] = 0.0
        out[values > low + (width - 1)] = 255.0
    else:
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        out = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    gray = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return 255 - gray if photometric == "MONOCHROME1" else gray


def _to_qimage(pixels: np.ndarray) -> QImage:
    """A QImage owning a copy of ``pixels``, so the numpy buffer can be freed."""
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    grey = pixels.ndim == 2
    fmt = QImage.Format.Format_Grayscale8 if grey else QImage.Format.Format_RGB888
    return QImage(pixels.data, width, height, pixels.strides[0], fmt).copy()


_executor: ThreadPoolExecutor | None = None


def _decoder_pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview")
    return _executor


class PreviewWidget(QWidget):
    """Shows one image scaled to fit, or a placeholder text.

    Call :meth:`show_file` with a stored file (or ``None``); ``finished`` is emitted in the GUI
    thread once the latest request has been decoded (with or without an image).
    """

    finished = Signal()

    def __init__(self, parent: QWidget | None = None, *, max_size: int = 512) -> None:
        super().__init__(parent)
        self._max_size = max_size
        self._request = 0
        # The newest request, read by the decoder thread to skip work nobody waits for any more.
        self._latest = [0]
        self._image: QImage | None = None
        self._message = NO_IMAGE
        self._pending_caption = ""
        self._label = QLabel(NO_IMAGE)
        self._label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._label.setWordWrap(True)
        self._label.setMinimumSize(160, 160)
        self._label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        self._label.setStyleSheet("QLabel { background: #101010; color: #c8c8c8; padding: 8px; }")
        self._caption = QLabel()
        self._caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._caption.setStyleSheet("QLabel { color: palette(dark); }")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self._label, 1)
        layout.addWidget(self._caption)
        self._loop = gui_loop()

    def sizeHint(self) -> QSize:
        return QSize(280, 280)

    def image(self) -> QImage | None:
        """The image shown now, or None when a placeholder is shown."""
        return self._image

    def message(self) -> str:
        """The placeholder text shown now ('' while an image is shown)."""
        return self._message

    def show_file(self, path: str | os.PathLike[str] | None, caption: str = "") -> None:
        """Decode ``path`` in the background and show it; ``None`` shows the placeholder.

        ``caption`` is shown under the image once it is decoded (e.g. "Image 6 of 11").
        """
        self._request += 1
        self._latest[0] = self._request
        self._pending_caption = caption
        if path is None:
            self._show(None, NO_IMAGE)
            self.finished.emit()
            return
        request, latest = self._request, self._latest
        loop, widget = self._loop, weakref.ref(self)
        latest[0] = request
        if self._image is None:
            self._label.setText("Loading…")
        future = _decoder_pool().submit(
            _decode_or_message, Path(path), self._max_size, lambda: latest[0] != request
        )
        future.add_done_callback(lambda f: _deliver(loop, widget, request, f))

    def clear(self, message: str = NO_IMAGE) -> None:
        self._request += 1
        self._latest[0] = self._request
        self._show(None, message)

    def _on_decoded(self, request: int, result: object) -> None:
        check_gui_thread("PreviewWidget._on_decoded")
        if request != self._request:
            return  # a newer selection is on its way
        if isinstance(result, QImage):
            self._show(result, "")
        else:
            self._show(None, str(result))
        self.finished.emit()

    def _show(self, image: QImage | None, message: str) -> None:
        self._image, self._message = image, message
        if image is None:
            self._caption.setText("")
            self._label.setPixmap(QPixmap())
            self._label.setText(message)
        else:
            self._label.setText("")
            size = image.text(SOURCE_SIZE_KEY) or f"{image.width()} × {image.height()}"
            self._caption.setText(" · ".join(t for t in (self._pending_caption, size) if t))
            self._rescale()

    def _rescale(self) -> None:
        if self._image is None:
            return
        target = self._label.contentsRect().size()
        pixmap = QPixmap.fromImage(self._image)
        # Small images are enlarged without smoothing so pixels stay honest.
        smaller = self._image.width() < target.width() and self._image.height() < target.height()
        mode = (
            Qt.TransformationMode.FastTransformation
            if smaller
            else Qt.TransformationMode.SmoothTransformation
        )
        self._label.setPixmap(pixmap.scaled(target, Qt.AspectRatioMode.KeepAspectRatio, mode))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._rescale()


def _decode_or_message(path: Path, max_size: int, stale: Callable[[], bool]) -> QImage | str:
    if stale():  # the user has moved on to another series: skip the decoding
        return NO_IMAGE
    try:
        return decode_preview(path, max_size)
    except PreviewUnavailable as exc:
        return str(exc)
    except Exception as exc:  # a bug or an odd file must not kill the decoder thread
        log.exception("preview of %s failed", path.name)
        return f"Cannot show the image: {exc}"


def _deliver(
    loop: asyncio.AbstractEventLoop,
    widget: weakref.ref[PreviewWidget],
    request: int,
    future: Future[QImage | str],
) -> None:
    """Runs on the decoder thread: hand the result to the GUI thread.

    It used to emit a signal of a QObject owned by the widget; a widget deleted on the GUI
    thread during that emit (closing the window deletes the store browser) is a use-after-free
    in Qt. The event loop outlives every widget, and only a weak reference travels, so the
    last reference to the widget can never be dropped (and the widget deleted) here.
    """
    result: object = future.result() if not future.cancelled() else NO_IMAGE
    post(loop, _decoded, widget, request, result)


def _decoded(widget: weakref.ref[PreviewWidget], request: int, result: object) -> None:
    """On the GUI thread: show ``result`` if the widget still exists."""
    target = widget()
    if target is not None and shiboken6.isValid(target):
        target._on_decoded(request, result)
