"""A cancellation token shared between the thread that asks and the thread that works."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from workstation.listeners import Listeners

log = logging.getLogger(__name__)


class CancelToken:
    """Set once by anyone (a Stop button, Ctrl+C, a script); watched by running operations.

    Operations register a callback with :meth:`on_cancel` so a cancel acts at once (send
    C-CANCEL, arm the abort timer) rather than when the operation next looks at the token.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()  # the event's state, against on_cancel's check
        self._callbacks: Listeners[None] = Listeners("a cancel callback failed", log)

    def cancel(self) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
        # Added before the event was set (on_cancel checks it under the lock): all here.
        for callback in self._callbacks.take():
            callback(None)  # a failure reaches the one who cancels

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when cancelled (at once if already); returns an unregister function."""
        with self._lock:
            if not self._event.is_set():
                return self._callbacks.add(lambda _: callback())
        callback()
        return lambda: None
