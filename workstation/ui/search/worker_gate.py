"""Lets a busy worker thread step aside while the GUI thread paints or updates a model.

Every Python method Qt calls while painting a table (the model's ``index`` and ``multiData``,
two per visible cell, five hundred for the results table) must first take the GIL. A worker
that turns C-FIND responses into rows without pause holds it most of the time, so each of
those calls may wait for the interpreter's switch interval, and one repaint of the results
stretched from ~12 ms to over 150 ms while a large search streamed in. The GUI thread closes
the gate when it starts to paint the table or to add a batch of rows; the worker calls
:meth:`WorkerGate.wait` before each row and, while the gate is closed, blocks without the GIL.
The gate reopens as soon as that event is handled, and after :data:`MAX_HOLD_MS` at most, so
a worker is never held up for long, even when nothing gets painted.
"""

from __future__ import annotations

import threading

from PySide6.QtCore import QEvent, QObject, QTimer

from workstation.ui.common.thread_guard import check_gui_thread

#: Longest time one hold keeps workers waiting (a flush whose paint never comes).
MAX_HOLD_MS = 50


class WorkerGate(QObject):
    """Closed by the GUI thread while it paints; waited on by worker threads."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._open = threading.Event()
        self._open.set()
        self._reopen = QTimer(self)
        self._reopen.setSingleShot(True)
        self._reopen.timeout.connect(self._open.set)

    def hold(self, ms: int = 0) -> None:
        """Close the gate (GUI thread) until this event is handled, or for ``ms`` at most."""
        check_gui_thread("WorkerGate.hold")
        self._open.clear()
        self._reopen.start(min(ms, MAX_HOLD_MS))

    def wait(self) -> None:
        """Block while the gate is closed (worker thread; returns at once when it is open)."""
        self._open.wait(MAX_HOLD_MS / 1000)

    def watch_paints(self, widget: QObject) -> None:
        """Hold the workers whenever ``widget`` (a view's viewport) paints."""
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.hold()
        return False

    def close(self) -> None:
        self._reopen.stop()
        self._open.set()
