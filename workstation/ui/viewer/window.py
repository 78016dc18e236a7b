"""The image viewer: one series at a time, the study's series as thumbnails beside it.

Opening a series lists its files in a worker (index query plus the first file's frame count),
then the first image is decoded and shown while the frame counts of the other files are read
in the background. One decoding thread (:class:`~workstation.ui.viewer.loader.FrameLoader`)
decodes the image on screen first, then its neighbours; decoded frames stay in a cache bounded
in bytes. Windowing happens on the GUI thread from the cached values (a few milliseconds for
512 × 512), so dragging the window is immediate. Workers never touch a widget: results come
back through the event loop with a weak reference to the viewer.

Keys: arrows and PageUp/PageDown scroll (PageUp/PageDown by a tenth of the series), Home/End,
1-4 the CT presets (lung, bone, brain, abdomen), 0 the file's window, R resets the view.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QImage, QKeyEvent, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolBar, QVBoxLayout, QWidget

from workstation.store import LocalStore, SeriesEntry, StudyEntry
from workstation.ui.common.tasks import describe_error, gui_loop, post
from workstation.ui.common.thread_guard import check_gui_thread
from workstation.ui.viewer.canvas import ImageCanvas
from workstation.ui.viewer.imaging import CT_PRESETS, Frame, render
from workstation.ui.viewer.loader import (
    FrameCache,
    FrameKey,
    FrameLoader,
    SeriesListing,
    count_frames,
    list_series,
)
from workstation.ui.viewer.thumbnails import SeriesStrip

log = logging.getLogger(__name__)

#: Images decoded ahead of (and behind) the one on screen.
PREFETCH_AHEAD, PREFETCH_BEHIND = 8, 3
DEFAULT_PRESET = "Default"

_lister: ThreadPoolExecutor | None = None


def _list_pool() -> ThreadPoolExecutor:
    global _lister
    if _lister is None:
        _lister = ThreadPoolExecutor(max_workers=1, thread_name_prefix="viewer-list")
    return _lister


def _to_qimage(pixels: np.ndarray) -> QImage:
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    fmt = QImage.Format.Format_Grayscale8 if pixels.ndim == 2 else QImage.Format.Format_RGB888
    return QImage(pixels.data, width, height, pixels.strides[0], fmt).copy()


def person_name(value: str) -> str:
    """``Family^Given^Middle`` as "FAMILY, Given Middle" (the first component group only)."""
    first = value.split("=")[0]
    parts = [p for p in first.split("^")]
    if len(parts) < 2:
        return first
    given = " ".join(p for p in parts[1:3] if p)
    return f"{parts[0].upper()}, {given}" if given else parts[0].upper()


def dicom_date(value: str) -> str:
    return (
        f"{value[:4]}-{value[4:6]}-{value[6:8]}" if len(value) == 8 and value.isdigit() else value
    )


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.3g}"


class ViewerWindow(QWidget):
    """A top-level window showing a series of ``study_uid`` from the local store."""

    #: Emitted each time an image (or a message instead) is put on screen.
    image_shown = Signal()

    def __init__(
        self,
        store: LocalStore,
        study_uid: str,
        series_uid: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._store = store
        self._study_uid = study_uid
        self._study: StudyEntry | None = store.index.study(study_uid)
        self._series: list[SeriesEntry] = store.index.series(study_uid)
        self._series_uid = ""
        self._generation = 0
        self._latest = [0]  # the generation, for workers to see that they may stop
        self._listing: SeriesListing | None = None
        self._index = 0
        self._window: tuple[float, float] | None = None  # None: each image's own
        # For images without a window of their own: the first one's data range, kept while
        # scrolling so that brightness does not jump from image to image.
        self._auto_window: tuple[float, float] | None = None
        self._preset = DEFAULT_PRESET
        self._cache = FrameCache()
        self._failed: dict[FrameKey, str] = {}
        self._shown: FrameKey | None = None
        self._loop: asyncio.AbstractEventLoop = gui_loop()
        me = weakref.ref(self)
        loop = self._loop
        self._loader = FrameLoader(lambda key, result: post(loop, _frame_arrived, me, key, result))
        self.destroyed.connect(self._loader.close)

        self.canvas = ImageCanvas(self)
        self.strip = SeriesStrip(self, vertical=True)
        self.strip.setStyleSheet(
            "QListWidget { background: #161616; color: #d0d0d0; border: none; }"
            "QListWidget::item:selected { background: #2d4f7a; color: white; }"
        )
        self.toolbar = QToolBar(self)
        self.preset_actions: dict[str, QAction] = {}
        for number, name in enumerate([*CT_PRESETS, DEFAULT_PRESET]):
            shortcut = str(number + 1) if name in CT_PRESETS else "0"
            center_width = CT_PRESETS.get(name)
            tip = (
                f"{name} window: WL {center_width[0]:g} / WW {center_width[1]:g} ({shortcut})"
                if center_width
                else "The image's own window, or its data range (0)"
            )
            action = self.toolbar.addAction(name, partial(self.apply_preset, name))
            action.setToolTip(tip)
            action.setShortcut(QKeySequence(shortcut))
            self.addAction(action)
            self.preset_actions[name] = action
        self.toolbar.addSeparator()
        reset = self.toolbar.addAction("Reset", self.reset)
        reset.setToolTip("Fit the image and restore its window (R)")
        reset.setShortcut(QKeySequence("R"))
        self.addAction(reset)
        self.toolbar.addSeparator()
        self.hint = QLabel(
            "Wheel: scroll · Left drag: window (↔ width, ↕ level) · Right drag or Ctrl+wheel: "
            "zoom · Middle drag: pan"
        )
        self.hint.setStyleSheet("color: #888; padding-left: 8px;")
        self.toolbar.addWidget(self.hint)

        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(0)
        body.addWidget(self.strip)
        body.addWidget(self.canvas, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.toolbar)
        layout.addLayout(body, 1)

        self.canvas.scroll_requested.connect(self.step)
        self.canvas.window_dragged.connect(self._drag_window)
        self.canvas.view_changed.connect(self._update_corners)
        self.strip.series_chosen.connect(self.open_series)
        self.strip.series_opened.connect(self.open_series)

        title = "Viewer"
        if self._study is not None:
            name = person_name(self._study.patient_name)
            title = " — ".join(t for t in (name, self._study.study_description) if t)
        self.setWindowTitle(title)
        self.resize(1100, 800)
        self.strip.set_series(store, self._series)
        chosen = series_uid or (self._series[0].series_uid if self._series else None)
        if chosen is None:
            self.canvas.set_image(None, "This study has no series in the local store")
        else:
            self.open_series(chosen)

    # -- public API ----------------------------------------------------------------------

    @property
    def series_uid(self) -> str:
        return self._series_uid

    @property
    def current_index(self) -> int:
        """0-based position of the image on screen."""
        return self._index

    @property
    def image_count(self) -> int:
        return len(self._listing.keys) if self._listing is not None else 0

    @property
    def listing_complete(self) -> bool:
        return self._listing is not None and self._listing.complete

    def shown_key(self) -> FrameKey | None:
        """The file and frame whose pixels are on screen (None while none is)."""
        return self._shown

    def window_level(self) -> tuple[float, float] | None:
        """(center, width) applied to the image on screen."""
        frame = self._current_frame()
        if frame is None or frame.color:
            return None
        return self._window_for(frame)

    def corner_text(self) -> str:
        return "\n".join(self.canvas.corners())

    def cache(self) -> FrameCache:
        return self._cache

    def open_series(self, series_uid: str) -> None:
        """Show ``series_uid`` from its first image (listing and decoding in the background)."""
        check_gui_thread("ViewerWindow.open_series")
        if series_uid == self._series_uid:
            return
        self._series_uid = series_uid
        self._generation += 1
        self._latest[0] = self._generation
        self._listing = None
        self._index = 0
        self._window = None
        self._auto_window = None
        self._preset = DEFAULT_PRESET
        self._failed.clear()
        self._shown = None
        self._loader.want([])
        self.strip.select_series(series_uid)
        entry = self._series_entry()
        ct = entry is not None and entry.modality == "CT"
        for name, action in self.preset_actions.items():
            action.setEnabled(ct or name == DEFAULT_PRESET)
        self.canvas.set_image(None, "Loading…")
        self._update_corners()
        generation, store, me, loop = self._generation, self._store, weakref.ref(self), self._loop
        future = _list_pool().submit(list_series, store, series_uid)
        future.add_done_callback(lambda f: post(loop, _listed, me, generation, _outcome(f), False))

    def step(self, steps: int) -> None:
        """Move ``steps`` images forward (negative: back), stopping at either end."""
        self.show_index(self._index + steps)

    def show_index(self, index: int) -> None:
        count = self.image_count
        if not count:
            return
        index = min(max(index, 0), count - 1)
        if index == self._index and self._shown == self._listing.keys[index]:  # type: ignore[union-attr]
            return
        self._index = index
        self._show_current()

    def apply_preset(self, name: str) -> None:
        """A CT preset by name ("Lung", "Bone", "Brain", "Abdomen") or "Default"."""
        self._window = CT_PRESETS.get(name)
        self._preset = name if name in CT_PRESETS else DEFAULT_PRESET
        self._redraw()

    def set_window(self, center: float, width: float) -> None:
        self._window = (float(center), max(float(width), 1.0))
        self._preset = ""
        self._redraw()

    def reset(self) -> None:
        """Fit the image, back to its own window."""
        self._window = None
        self._preset = DEFAULT_PRESET
        self.canvas.reset_view()
        self._redraw()

    # -- events --------------------------------------------------------------------------

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        page = max(1, self.image_count // 10)
        moves = {
            Qt.Key.Key_Up: -1,
            Qt.Key.Key_Left: -1,
            Qt.Key.Key_Down: 1,
            Qt.Key.Key_Right: 1,
            Qt.Key.Key_PageUp: -page,
            Qt.Key.Key_PageDown: page,
        }
        if key in moves:
            self.step(moves[Qt.Key(key)])
        elif key == Qt.Key.Key_Home:
            self.show_index(0)
        elif key == Qt.Key.Key_End:
            self.show_index(self.image_count - 1)
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def closeEvent(self, event: QCloseEvent) -> None:
        self._latest[0] = -1
        self._loader.close()
        self._cache.clear()
        super().closeEvent(event)

    # -- internals -----------------------------------------------------------------------

    def _window_for(self, frame: Frame) -> tuple[float, float]:
        """The user's window, else the image's own, else the series' first data range."""
        if self._window is not None:
            return self._window
        if frame.window is not None:
            return frame.window
        if self._auto_window is None:
            self._auto_window = frame.default_window
        return self._auto_window

    def _series_entry(self) -> SeriesEntry | None:
        return next((s for s in self._series if s.series_uid == self._series_uid), None)

    def _current_key(self) -> FrameKey | None:
        if self._listing is None or not self._listing.keys:
            return None
        return self._listing.keys[min(self._index, len(self._listing.keys) - 1)]

    def _current_frame(self) -> Frame | None:
        key = self._shown
        return self._cache.get(key) if key is not None else None

    def _on_listed(self, generation: int, listing: SeriesListing | BaseException) -> None:
        if generation != self._generation:
            return
        if isinstance(listing, BaseException):
            self.canvas.set_image(None, f"Cannot list the series: {describe_error(listing)}")
            self.image_shown.emit()
            return
        current = self._current_key()
        self._listing = listing
        if current is not None and current in listing.keys:
            self._index = listing.keys.index(current)
        if not listing.keys:
            self.canvas.set_image(None, "This series has no image in the local store")
            self.image_shown.emit()
            return
        if not listing.complete:
            me, loop, stale = weakref.ref(self), self._loop, self._stale_check(generation)
            future = _list_pool().submit(count_frames, listing, stale)
            future.add_done_callback(
                lambda f: post(loop, _listed, me, generation, _outcome(f), True)
            )
        self._show_current()

    def _stale_check(self, generation: int) -> Callable[[], bool]:
        # The worker reads a plain list, never the viewer (a QObject must not be referenced,
        # let alone freed, on a worker thread).
        latest = self._latest
        return lambda: latest[0] != generation

    def _show_current(self) -> None:
        key = self._current_key()
        if key is None:
            return
        frame = self._cache.get(key)
        if frame is not None:
            self._display(key, frame)
        elif key in self._failed:
            self._shown = None
            self.canvas.set_image(None, self._failed[key])
            self._update_corners()
            self.image_shown.emit()
        else:
            self._update_corners()  # the number moves on; the pixels follow when decoded
        self._want()

    def _want(self) -> None:
        if self._listing is None:
            return
        keys = self._listing.keys
        order = [self._index]
        for step in range(1, max(PREFETCH_AHEAD, PREFETCH_BEHIND) + 1):
            if step <= PREFETCH_AHEAD:
                order.append(self._index + step)
            if step <= PREFETCH_BEHIND:
                order.append(self._index - step)
        wanted = [
            keys[i]
            for i in order
            if 0 <= i < len(keys) and keys[i] not in self._cache and keys[i] not in self._failed
        ]
        self._loader.want(wanted)

    def _on_frame(self, key: FrameKey, result: Frame | str) -> None:
        check_gui_thread("ViewerWindow._on_frame")
        if self._listing is None or key not in self._listing.keys:
            return  # from a series no longer shown
        current = self._current_key()
        if isinstance(result, Frame):
            self._cache.put(key, result, keep=current)
            if key == current:
                self._display(key, result)
        else:
            self._failed[key] = result
            if key == current:
                self._shown = None
                self.canvas.set_image(None, result)
                self._update_corners()
                self.image_shown.emit()

    def _display(self, key: FrameKey, frame: Frame) -> None:
        self._shown = key
        center, width = self._window_for(frame)
        self.canvas.set_image(_to_qimage(render(frame, center, width)))
        self._update_corners()
        self.image_shown.emit()

    def _redraw(self) -> None:
        key, frame = self._shown, self._current_frame()
        if key is not None and frame is not None:
            self._display(key, frame)
        else:
            self._update_corners()

    def _drag_window(self, dx: int, dy: int) -> None:
        frame = self._current_frame()
        if frame is None or frame.color:
            return
        center, width = self._window_for(frame)
        low, high = frame.data_range
        step = max((high - low) / 600.0, 0.05)
        self._window = (center + dy * step, max(width + dx * step, 1.0))
        self._preset = ""
        self._display(self._shown, frame)  # type: ignore[arg-type]

    def _update_corners(self) -> None:
        frame = self._current_frame()
        info: dict[str, str] = dict(frame.info) if frame is not None else {}
        study, series = self._study, self._series_entry()
        name = info.get("PatientName") or (study.patient_name if study else "")
        patient_id = info.get("PatientID") or (study.patient_id if study else "")
        born = dicom_date(info.get("PatientBirthDate", ""))
        sex = info.get("PatientSex", "")
        top_left = "\n".join(
            t for t in (person_name(name), patient_id, " ".join(x for x in (born, sex) if x)) if t
        )
        description = info.get("StudyDescription") or (study.study_description if study else "")
        date = dicom_date(info.get("StudyDate") or (study.study_date if study else ""))
        number = info.get("SeriesNumber") or (
            str(series.series_number) if series and series.series_number is not None else ""
        )
        series_text = info.get("SeriesDescription") or (series.series_description if series else "")
        modality = info.get("Modality") or (series.modality if series else "")
        top_right = "\n".join(
            t
            for t in (
                description,
                date,
                f"Se {number}: {series_text}".strip(": ") if number or series_text else "",
                modality,
            )
            if t
        )
        count = self.image_count
        position = f"Im {self._index + 1}/{count}" if count else ""
        if self._listing is not None and not self._listing.complete:
            position += "…"
        lines = [position]
        if "SliceLocation" in info:
            lines.append(f"Loc {info['SliceLocation']} mm")
        if frame is not None:
            rows, columns = frame.pixels.shape[:2]
            lines.append(f"{columns} × {rows}")
        bottom_left = "\n".join(t for t in lines if t)
        window = self.window_level()
        if window is not None:
            preset = f" ({self._preset})" if self._preset in CT_PRESETS else ""
            wl = f"WL {_number(window[0])} / WW {_number(window[1])}{preset}"
        else:
            wl = ""
        zoom = f"Zoom {self.canvas.scale() * 100:.0f}%" if frame is not None else ""
        bottom_right = "\n".join(t for t in (wl, zoom) if t)
        self.canvas.set_corners(top_left, top_right, bottom_left, bottom_right)


def _outcome(future: Any) -> Any:
    """A future's result, or its exception (the worker never raises into the event loop)."""
    if future.cancelled():
        return RuntimeError("cancelled")
    exc = future.exception()
    return exc if exc is not None else future.result()


def _alive(viewer: weakref.ref[ViewerWindow]) -> ViewerWindow | None:
    target = viewer()
    return target if target is not None and shiboken6.isValid(target) else None


def _listed(
    viewer: weakref.ref[ViewerWindow], generation: int, listing: Any, counted: bool
) -> None:
    target = _alive(viewer)
    if target is None:
        return
    if counted and listing is None:
        return  # the count was stopped: another series is shown
    target._on_listed(generation, listing)


def _frame_arrived(viewer: weakref.ref[ViewerWindow], key: FrameKey, result: Frame | str) -> None:
    target = _alive(viewer)
    if target is not None:
        target._on_frame(key, result)
