"""A strip of series thumbnails (the middle image of each series), made in the background.

:class:`SeriesStrip` lists the series of a study at once, each with a placeholder; one
background thread decodes the middle image of each series and the strip swaps the placeholder
for it when it arrives. Thumbnails are kept in memory (:data:`THUMBNAILS`, keyed by series and
its instance count, so a series that grew is made again). The thread touches no Qt object but
the QImage it makes; results reach the GUI thread through the event loop with a weak
reference to the strip, which may be gone by then.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import shiboken6
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem, QWidget

from workstation.store import LocalStore, SeriesEntry
from workstation.store.layout import resolve_in_root
from workstation.ui.common.tasks import describe_error, gui_loop, post
from workstation.ui.common.thread_guard import check_gui_thread
from workstation.ui.viewer.preview import PreviewUnavailable, decode_preview

log = logging.getLogger(__name__)

#: Thumbnail size in pixels (the longer side).
THUMB_SIZE = 96
#: How many thumbnails stay in memory (about 10 kB each).
CACHE_LIMIT = 2000
SERIES_ROLE = Qt.ItemDataRole.UserRole + 1

ThumbKey = tuple[str, int]
#: (series UID, instance count) → the thumbnail, or the reason there is none.
THUMBNAILS: OrderedDict[ThumbKey, QImage | str] = OrderedDict()
#: Thumbnails being made (so that a refresh during a retrieve does not ask twice).
_PENDING: set[ThumbKey] = set()

_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thumbnails")
    return _executor


def make_thumbnail(store: LocalStore, series_uid: str, size: int = THUMB_SIZE) -> QImage | str:
    """The middle image of the series, at most ``size`` pixels, or why there is none.
    Blocking (reads the index and one file): run in a worker."""
    try:
        instances = store.index.instances(series_uid=series_uid)
        if not instances:
            return "No image"
        path = resolve_in_root(store.root, instances[len(instances) // 2].path)
        return decode_preview(path, size)
    except PreviewUnavailable as exc:
        text = str(exc)
        return text.split(" — ")[0] if text.startswith("Compressed") else "No image"
    except Exception as exc:  # the store closed, a file vanished: a placeholder, not a crash
        log.info("no thumbnail for a series: %s", describe_error(exc))
        return "No image"


def series_caption(series: SeriesEntry) -> str:
    number = f"{series.series_number}" if series.series_number is not None else "–"
    description = series.series_description or series.modality or "Series"
    count = series.instance_count
    return f"{number} · {description}\n{series.modality} · {count} image{'s' if count != 1 else ''}"


def _placeholder(text: str, size: int = THUMB_SIZE) -> QPixmap:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor("#202020"))
    painter = QPainter(pixmap)
    painter.setPen(QColor("#9a9a9a"))
    painter.drawText(
        pixmap.rect().adjusted(4, 4, -4, -4),
        int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap),
        text,
    )
    painter.end()
    return pixmap


def _framed(image: QImage, size: int = THUMB_SIZE) -> QPixmap:
    """The image centred on a black square, so every thumbnail has the same shape."""
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor("black"))
    painter = QPainter(pixmap)
    scaled = image.scaled(
        size,
        size,
        Qt.AspectRatioMode.KeepAspectRatio,
        Qt.TransformationMode.SmoothTransformation,
    )
    painter.drawImage((size - scaled.width()) // 2, (size - scaled.height()) // 2, scaled)
    painter.end()
    return pixmap


class SeriesStrip(QListWidget):
    """The series of one study as thumbnails; click chooses a series, double-click opens it."""

    #: A series was clicked (series UID).
    series_chosen = Signal(str)
    #: A series was double-clicked or Enter was pressed (series UID).
    series_opened = Signal(str)

    def __init__(
        self, parent: QWidget | None = None, *, vertical: bool = False, size: int = THUMB_SIZE
    ) -> None:
        super().__init__(parent)
        self._size = size
        self._generation = 0
        self._keys: dict[str, ThumbKey] = {}
        self._loop: asyncio.AbstractEventLoop = gui_loop()
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.TopToBottom if vertical else QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(True)
        self.setIconSize(QSize(size, size))
        self.setGridSize(QSize(size + 40, size + 44))
        self.setWordWrap(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        if vertical:
            self.setFixedWidth(size + 64)
            self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        else:
            self.setFixedHeight(size + 64)
            self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.itemClicked.connect(lambda item: self.series_chosen.emit(item.data(SERIES_ROLE)))
        self.itemActivated.connect(lambda item: self.series_opened.emit(item.data(SERIES_ROLE)))

    # -- public API ----------------------------------------------------------------------

    def set_series(self, store: LocalStore | None, series: Sequence[SeriesEntry]) -> None:
        """Show ``series`` (placeholders first); thumbnails not in memory are made meanwhile."""
        check_gui_thread("SeriesStrip.set_series")
        wanted = [(s.series_uid, s.instance_count) for s in series]
        if wanted == list(self._keys.values()) and self.count() == len(series):
            return  # the same study again: nothing to redo
        self._generation += 1
        current = self.current_series()
        self.clear()
        self._keys = {}
        for entry in series:
            key = (entry.series_uid, entry.instance_count)
            self._keys[entry.series_uid] = key
            item = QListWidgetItem(series_caption(entry))
            item.setData(SERIES_ROLE, entry.series_uid)
            item.setToolTip(series_caption(entry).replace("\n", " · "))
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            self.addItem(item)
            cached = THUMBNAILS.get(key)
            if cached is not None:
                THUMBNAILS.move_to_end(key)
                self._set_icon(item, cached)
            else:
                older = next(
                    (v for k, v in reversed(THUMBNAILS.items()) if k[0] == entry.series_uid),
                    "Loading…",
                )  # a series still arriving keeps its previous thumbnail meanwhile
                self._set_icon(item, older)
                if store is not None and key not in _PENDING:
                    _PENDING.add(key)
                    self._request(store, key)
        if current is not None:
            self.select_series(current)

    def select_series(self, series_uid: str) -> None:
        """Highlight the series (no signal)."""
        for row in range(self.count()):
            item = self.item(row)
            if item.data(SERIES_ROLE) == series_uid:
                self.blockSignals(True)
                self.setCurrentItem(item)
                self.blockSignals(False)
                self.scrollToItem(item)
                return

    def current_series(self) -> str | None:
        item = self.currentItem()
        uid = item.data(SERIES_ROLE) if item is not None else None
        return uid if isinstance(uid, str) else None

    def thumbnail(self, series_uid: str) -> QImage | str | None:
        """The thumbnail shown for a series: a QImage, a placeholder text, or None if absent."""
        key = self._keys.get(series_uid)
        return None if key is None else THUMBNAILS.get(key, "Loading…")

    def loading(self) -> bool:
        """Whether some thumbnail is still being made."""
        return any(key not in THUMBNAILS for key in self._keys.values())

    # -- internals -----------------------------------------------------------------------

    def _set_icon(self, item: QListWidgetItem, thumb: QImage | str) -> None:
        if isinstance(thumb, QImage):
            pixmap = _framed(thumb, self._size)
        else:
            pixmap = _placeholder(thumb, self._size)
        icon = QIcon(pixmap)
        icon.addPixmap(pixmap, QIcon.Mode.Selected)  # no selection tint over the image
        item.setIcon(icon)

    def _request(self, store: LocalStore, key: ThumbKey) -> None:
        strip, loop, size = weakref.ref(self), self._loop, self._size
        future = _pool().submit(make_thumbnail, store, key[0], size)
        future.add_done_callback(
            lambda f: post(loop, _arrived, strip, key, f.result() if not f.cancelled() else "")
        )

    def _on_thumbnail(self, key: ThumbKey) -> None:
        thumb = THUMBNAILS.get(key)
        if thumb is None:
            return
        for row in range(self.count()):
            item = self.item(row)
            if self._keys.get(item.data(SERIES_ROLE)) == key:
                self._set_icon(item, thumb)


def _arrived(strip: weakref.ref[SeriesStrip], key: ThumbKey, thumb: QImage | str) -> None:
    """On the GUI thread: remember the thumbnail and show it if the strip still exists."""
    _PENDING.discard(key)
    if not thumb:
        return
    THUMBNAILS[key] = thumb
    THUMBNAILS.move_to_end(key)
    while len(THUMBNAILS) > CACHE_LIMIT:
        THUMBNAILS.popitem(last=False)
    target = strip()
    if target is not None and shiboken6.isValid(target):
        target._on_thumbnail(key)
