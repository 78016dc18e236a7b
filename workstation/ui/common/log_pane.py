"""The in-app log: a read-only view of the root logger, pynetdicom's messages included.

:class:`QtLogHandler` may be called from any thread (association threads, the store's writer,
executor workers). It formats the record where it is emitted, puts the line on a locked deque
and, when the deque was empty, wakes the GUI thread through the window's event loop (never by
emitting a signal of a pane's QObject: the pane may be deleted on the GUI thread during that
emit, a use-after-free in Qt; it holds the pane by a weak reference only); the pane then waits
:data:`FLUSH_INTERVAL_MS` and drains everything at once, so a burst of thousands of records
costs at most ten repaints a second. Widgets are only touched on the GUI thread.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections import deque
from functools import partial

import shiboken6
from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from workstation.ui.common.tasks import gui_loop, post
from workstation.ui.common.thread_guard import check_gui_thread

MAX_LINES = 5000
FLUSH_INTERVAL_MS = 100
LEVELS: tuple[tuple[str, int], ...] = (
    ("Debug", logging.DEBUG),
    ("Info", logging.INFO),
    ("Warning", logging.WARNING),
    ("Error", logging.ERROR),
)
_COLOURS = {logging.WARNING: "#b35c00", logging.ERROR: "#c0152f"}

Line = tuple[int, str]


class QtLogHandler(logging.Handler):
    """A logging handler feeding a :class:`LogPane`; thread-safe, never touches widgets."""

    def __init__(self, pane: LogPane, level: int = logging.INFO) -> None:
        super().__init__(level)
        #: What the handler collects at least, whatever the pane shows.
        self.base_level = level
        self.setFormatter(
            logging.Formatter("%(asctime)s  %(levelname)-7s  %(name)s: %(message)s", "%H:%M:%S")
        )
        self._pane = weakref.ref(pane)
        self._loop = gui_loop()
        self._lines: deque[Line] = deque(maxlen=MAX_LINES)
        self._lines_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
            return
        with self._lines_lock:
            first = not self._lines
            self._lines.append((record.levelno, text))
        if first:
            post(self._loop, _wake, self._pane)  # False once the loop closed: nobody listens

    def take(self) -> list[Line]:
        """Remove and return the lines waiting for the GUI thread."""
        with self._lines_lock:
            lines = list(self._lines)
            self._lines.clear()
        return lines


class LogPane(QWidget):
    """Read-only log view with a level filter; keeps the last :data:`MAX_LINES` lines.

    Feed it with :func:`install_log_handler`. The level combo filters what is shown; choosing
    Debug also makes the handler (and, if needed, the root logger) accept debug records.
    """

    level_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None, level: int = logging.INFO) -> None:
        super().__init__(parent)
        self._handler: QtLogHandler | None = None
        self._history: deque[Line] = deque(maxlen=MAX_LINES)
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(FLUSH_INTERVAL_MS)
        self._flush_timer.timeout.connect(self.flush)

        self.view = QPlainTextEdit(readOnly=True)
        self.view.setMaximumBlockCount(MAX_LINES)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.view.setPlaceholderText("Network and storage messages appear here.")
        self.level_combo = QComboBox()
        for name, value in LEVELS:
            self.level_combo.addItem(name, value)
        self.level_combo.setCurrentIndex(self._index_of(level))
        self.level_combo.currentIndexChanged.connect(self._on_level_chosen)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.clear)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Show:"))
        bar.addWidget(self.level_combo)
        bar.addStretch(1)
        bar.addWidget(clear)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.view)

    def level(self) -> int:
        return int(self.level_combo.currentData())

    def set_level(self, level: int) -> None:
        self.level_combo.setCurrentIndex(self._index_of(level))

    def text(self) -> str:
        return self.view.toPlainText()

    def clear(self) -> None:
        self._history.clear()
        self.view.clear()

    def attach(self, handler: QtLogHandler) -> None:
        """Called by :func:`install_log_handler`; the pane drains this handler's lines."""
        self._handler = handler

    def wake_up(self) -> None:
        """Lines are waiting: show them within :data:`FLUSH_INTERVAL_MS` (GUI thread)."""
        check_gui_thread("LogPane.wake_up")
        self._flush_timer.start()

    def flush(self) -> None:
        """Show the lines waiting in the handler (runs on the GUI thread)."""
        if self._handler is None:
            return
        lines = self._handler.take()
        if not lines:
            return
        self._history.extend(lines)
        threshold = self.level()
        self._append([line for line in lines if line[0] >= threshold])

    def _append(self, lines: list[Line]) -> None:
        if not lines:
            return
        bar = self.view.verticalScrollBar()
        at_bottom = bar.value() >= bar.maximum() - 2
        cursor = QTextCursor(self.view.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.beginEditBlock()
        for levelno, text in lines:
            if not self.view.document().isEmpty():
                cursor.insertBlock()
            cursor.insertText(text, _format(levelno))
        cursor.endEditBlock()
        if at_bottom:
            bar.setValue(bar.maximum())

    def _on_level_chosen(self, _index: int) -> None:
        level = self.level()
        if self._handler is not None:
            # Keep collecting INFO while showing only warnings, so switching back shows them.
            self._handler.setLevel(min(level, self._handler.base_level))
            _lower_root_level(self._handler.level)
        self.view.clear()
        self._append([line for line in self._history if line[0] >= level])
        self.level_changed.emit(level)

    @staticmethod
    def _index_of(level: int) -> int:
        values = [value for _, value in LEVELS]
        below = [i for i, value in enumerate(values) if value <= level]
        return below[-1] if below else 0


def _format(levelno: int) -> QTextCharFormat:
    fmt = QTextCharFormat()
    if levelno >= logging.ERROR:
        fmt.setForeground(QColor(_COLOURS[logging.ERROR]))
        fmt.setFontWeight(QFont.Weight.Bold)
    elif levelno >= logging.WARNING:
        fmt.setForeground(QColor(_COLOURS[logging.WARNING]))
    return fmt


def _wake(pane: weakref.ref[LogPane]) -> None:
    """On the GUI thread: wake the pane, if it still exists."""
    target = pane()
    if target is not None and shiboken6.isValid(target):
        target.wake_up()


def _lower_root_level(level: int) -> None:
    root = logging.getLogger()
    if root.level != logging.NOTSET and root.level > level:
        root.setLevel(level)


def install_log_handler(pane: LogPane, level: int | None = None) -> QtLogHandler:
    """Attach a handler feeding ``pane`` to the root logger and return it.

    Call on the GUI thread. ``level`` defaults to the pane's (INFO); the root logger is lowered
    to it when needed so INFO records reach the pane. The handler is removed from the root
    logger when the pane is destroyed; remove it yourself earlier with
    ``logging.getLogger().removeHandler(handler)``.
    """
    handler = QtLogHandler(pane, pane.level() if level is None else level)
    if level is not None:
        pane.set_level(level)
    pane.attach(handler)
    root = logging.getLogger()
    root.addHandler(handler)
    _lower_root_level(handler.level)
    pane.destroyed.connect(partial(root.removeHandler, handler))
    return handler
