"""Callbacks that any thread adds or removes, called by the thread that has news.

The store (after each commit, on its index thread), the storage SCP (for each instance, on an
association thread) and the retrieve queue (for each job change, on its notifier thread) tell
whoever listens through a :class:`Listeners`; a cancel token keeps its callbacks in one too.
Callbacks are called outside the lock, in the order they were added, so one may add or
remove listeners, or take a while, without blocking the others' registration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Listeners(Generic[T]):
    """Callbacks taking one ``T``; :meth:`emit` calls each, logging (not raising) a failure.

    ``failure`` is the log line for a callback that raised (``"a store listener failed"``),
    written with ``logger``'s exception; the remaining callbacks are still called.
    """

    def __init__(self, failure: str, logger: logging.Logger) -> None:
        self._failure = failure
        self._log = logger
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[T], None]] = []

    def add(self, callback: Callable[[T], None]) -> Callable[[], None]:
        """Call ``callback`` from now on; returns a function that removes it again."""
        with self._lock:
            self._callbacks.append(callback)
        return lambda: self.remove(callback)

    def remove(self, callback: Callable[[T], None]) -> None:
        """Stop calling ``callback`` (nothing happens when it is not listening)."""
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

    def take(self) -> list[Callable[[T], None]]:
        """Remove every callback and return them (for news that comes once, as a cancel)."""
        with self._lock:
            callbacks, self._callbacks = self._callbacks, []
        return callbacks

    def emit(self, value: T) -> None:
        """Call every callback with ``value``, on this thread."""
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(value)
            except Exception:
                self._log.exception(self._failure)

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._callbacks)
