"""Keeps Qt objects on the GUI thread: debug checks of thread affinity, and the GC pinned there.

The window's blocking work runs on Python threads (the task runner's pool, the C-FIND
helper's reader, the store's writer, the retrieve queue, the preview decoder). Qt objects
are not thread-safe: a model, widget or timer used on one of those threads, or a QObject
deleted there while the GUI thread uses it, corrupts Qt's state and may crash the process
much later, far from the cause (a general protection fault in libQt6Core, and no Python
stack). Two guards:

- :func:`check_gui_thread`: GUI-side methods (model updates, buffer flushes, task callbacks)
  call it first. With ``WORKSTATION_CHECK_THREADS=1`` in the environment (the test suite sets
  it) a call from another thread is logged with its stack, kept in :data:`violations` and
  raised as :class:`ThreadAffinityError`; otherwise it costs one global lookup.
- :class:`GuiThreadCollector`: Python's cyclic garbage collector runs on whichever thread
  happens to allocate when a threshold is crossed; a search's workers allocate most (every
  association leaves thousands of objects in reference cycles). A Python-owned QObject caught
  in a cycle would then be destroyed on that worker (Qt says "QObject::~QObject: Timers
  cannot be stopped from another thread", when it says anything). The collector switches
  automatic collection off and collects from a GUI-thread timer with the same thresholds, as
  calibre and pyqtgraph do.
"""

from __future__ import annotations

import gc
import logging
import os
import threading

from PySide6.QtCore import QObject, QTimer

log = logging.getLogger(__name__)

#: Set (to anything but "" or "0") to turn the thread-affinity checks on.
CHECK_THREADS_ENV = "WORKSTATION_CHECK_THREADS"
#: Milliseconds between two looks at the collector's counts.
COLLECT_INTERVAL_MS = 200

_enabled = os.environ.get(CHECK_THREADS_ENV, "") not in ("", "0")
#: What ran on the wrong thread, in order (tests assert it stays empty).
violations: list[str] = []


class ThreadAffinityError(AssertionError):
    """A GUI-thread method ran on another thread."""


def checks_enabled() -> bool:
    return _enabled


def enable_checks(enabled: bool = True) -> None:
    """Turn the checks on or off (they start as ``WORKSTATION_CHECK_THREADS`` says)."""
    global _enabled
    _enabled = enabled


def check_gui_thread(what: str) -> None:
    """Fail loudly when checks are on and this is not the GUI thread (see the module doc).

    The GUI thread is the main thread: the window's QApplication is made there.
    """
    if _enabled and threading.current_thread() is not threading.main_thread():
        message = f"{what} ran on thread {threading.current_thread().name!r}, not the GUI thread"
        violations.append(message)
        log.error(message, stack_info=True)
        raise ThreadAffinityError(message)


class GuiThreadCollector(QObject):
    """Runs Python's cyclic garbage collection on the GUI thread only (see the module doc).

    Create it on the GUI thread once the QApplication exists; :meth:`close` gives collection
    back to the interpreter.
    """

    def __init__(self, parent: QObject | None = None, interval_ms: int = COLLECT_INTERVAL_MS):
        super().__init__(parent)
        check_gui_thread("GuiThreadCollector()")
        self._thresholds = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.collect)
        self._timer.start()
        #: Collections run so far, by generation.
        self.collections = [0, 0, 0]

    def collect(self) -> None:
        """Collect the generations whose counts passed their thresholds, like the interpreter."""
        counts = gc.get_count()
        generation = -1
        for level, (count, threshold) in enumerate(zip(counts, self._thresholds, strict=True)):
            if threshold <= 0 or count <= threshold:
                break
            generation = level
        if generation >= 0:
            gc.collect(generation)
            self.collections[generation] += 1

    def close(self) -> None:
        self._timer.stop()
        if self._was_enabled:
            gc.enable()
