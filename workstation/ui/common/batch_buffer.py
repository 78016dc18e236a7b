"""A buffer that any thread fills and the GUI thread drains, at most ~10 times a second.

Search results, retrieve progress and incoming files all arrive on worker or association
threads, far more often than a screen can show. Producers call :meth:`BatchBuffer.push` (cheap:
a lock and a list append); the first push after a flush asks the GUI thread, through the qasync
loop, to arm a single-shot timer; when it fires, the consumer gets everything gathered so far
in one call, or at most ``max_items`` of it: the rest waits for the next tick, so one flush
never holds the GUI thread for long when a producer outruns the screen. With ``budget_ms``
the flush is time-sliced as well: from what the last call cost per item, the consumer gets only
as many items as fit in the budget (a table's insertion grows dearer as the table grows), and
the rest follows at the next turn of the event loop, after the window has painted and handled
its input. Nothing wakes the GUI thread while nothing arrives.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QObject, QTimer

from workstation.ui.common.tasks import gui_loop, post
from workstation.ui.common.thread_guard import check_gui_thread

#: Milliseconds between two flushes: ~10 a second.
FLUSH_INTERVAL_MS = 100
#: The fewest items a time-sliced flush hands over (a slow call must not starve the rest).
MIN_SLICE = 100


class BatchBuffer(QObject):
    """Collects items from any thread; calls ``consume(items)`` on the GUI thread, throttled."""

    def __init__(
        self,
        consume: Callable[[list[Any]], None],
        *,
        interval_ms: int = FLUSH_INTERVAL_MS,
        max_items: int | None = None,
        budget_ms: float | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._consume = consume
        self._interval = interval_ms / 1000
        self._max_items = max_items
        self._budget = None if budget_ms is None else budget_ms / 1000
        self._slice: int | None = None  # with a budget: what the next timed flush may take
        self._next_turn = False  # the last flush left items over for the next turn
        self._loop = gui_loop()
        self._lock = threading.Lock()
        self._items: list[Any] = []
        self._armed = False
        self._closed = False
        self._last_flush = 0.0
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer)
        #: Flushes done so far (tests and the stall benchmark read it).
        self.flushes = 0

    def push(self, item: Any) -> None:
        """Add one item (any thread)."""
        self.extend((item,))

    def extend(self, items: Iterable[Any]) -> None:
        """Add several items (any thread)."""
        with self._lock:
            if self._closed:
                return
            self._items.extend(items)
            if self._armed or not self._items:
                return
            self._armed = True
        if threading.current_thread() is threading.main_thread():
            self._arm()
        elif not post(self._loop, self._arm):
            with self._lock:
                self._armed = False

    def _arm(self) -> None:
        check_gui_thread("BatchBuffer._arm")
        if self._closed:
            return
        if self._next_turn:  # the rest of a time-sliced flush
            self._timer.start(0)
            return
        wait = self._last_flush + self._interval - time.monotonic()
        self._timer.start(max(0, int(wait * 1000)))

    @property
    def pending(self) -> int:
        """Items gathered and not yet handed over."""
        with self._lock:
            return len(self._items)

    def flush(self) -> None:
        """Hand everything gathered to the consumer now (GUI thread)."""
        self._drain(None)

    def _on_timer(self) -> None:
        limits = [n for n in (self._max_items, self._slice) if n is not None]
        self._drain(min(limits) if limits else None)

    def _drain(self, limit: int | None) -> None:
        check_gui_thread("BatchBuffer flush")
        self._timer.stop()
        with self._lock:
            if limit is None or len(self._items) <= limit:
                items, self._items = self._items, []
                self._armed = False
            else:  # stays armed: the rest goes at the next tick
                items, self._items = self._items[:limit], self._items[limit:]
            more = self._armed
        started = time.monotonic()
        if not self._next_turn:
            self._last_flush = started
        self._next_turn = more and self._budget is not None and limit is not None
        if items and not self._closed:
            self.flushes += 1
            self._consume(items)
            if self._budget is not None:
                self._fit_slice(len(items), time.monotonic() - started)
        if more:
            self._arm()

    def _fit_slice(self, count: int, seconds: float) -> None:
        """Size the next timed flush so that it fits in the budget at this call's pace."""
        assert self._budget is not None
        fits = int(count * self._budget / seconds) if seconds > 0 else None
        self._slice = None if fits is None else max(MIN_SLICE, fits)

    def clear(self) -> None:
        """Drop what is waiting (a new search started)."""
        with self._lock:
            self._items = []

    def close(self) -> None:
        """Stop delivering; later pushes are dropped."""
        with self._lock:
            self._closed = True
            self._items = []
        self._timer.stop()
