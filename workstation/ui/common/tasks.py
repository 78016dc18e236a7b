"""The one way the window runs blocking work: in a worker thread, with results on the GUI thread.

Like Anki's ``QueryOp``: :meth:`TaskRunner.run` takes the blocking function, what to do with its
result, what to do if it fails and where progress goes. The function runs in a worker
(``loop.run_in_executor``); progress it reports is handed to the GUI thread with
``loop.call_soon_threadsafe``; success and failure callbacks run on the GUI thread. A failure
goes to the log and to :attr:`TaskRunner.failed` (the window shows it) unless the caller
handles it. No DIMSE call ever runs on the GUI thread: they all come through here or
through the retrieve queue's own threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import qasync
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication

from workstation.cancel import CancelToken
from workstation.errors import WorkstationError
from workstation.ui.common.thread_guard import check_gui_thread

log = logging.getLogger(__name__)

T = TypeVar("T")


def gui_loop() -> qasync.QEventLoop:
    """The qasync event loop of the GUI thread, created (and made current) on first use."""
    policy = asyncio.get_event_loop_policy()
    try:
        loop = policy.get_event_loop()
    except RuntimeError:
        loop = None
    if isinstance(loop, qasync.QEventLoop) and not loop.is_closed():
        return loop
    app = QApplication.instance()
    if app is None:
        raise RuntimeError("create the QApplication before the first background task")
    fresh = qasync.QEventLoop(app)
    asyncio.set_event_loop(fresh)
    return fresh


def post(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any) -> bool:
    """Call ``callback(*args)`` on the GUI thread, from any thread; False once the loop closed."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:  # the loop is closed: the window is gone, nobody is listening
        return False
    return True


class TaskContext:
    """Handed to the blocking function: report progress, and see whether to stop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, task: Task[Any]) -> None:
        self._loop = loop
        self._task = task
        self.cancel = task.cancel_token

    def report(self, value: Any) -> None:
        """Send ``value`` to the task's progress callback on the GUI thread (from the worker)."""
        if self._task.progress is not None:
            post(self._loop, self._task.deliver_progress, value)

    @property
    def cancelled(self) -> bool:
        return self.cancel.cancelled


class Task(Generic[T]):
    """One background job: cancel it with :meth:`cancel`; ``done`` once its callback ran."""

    def __init__(
        self,
        title: str,
        success: Callable[[T], None] | None,
        failure: Callable[[BaseException], None] | None,
        progress: Callable[[Any], None] | None,
    ) -> None:
        self.title = title
        self.success = success
        self.failure = failure
        self.progress = progress
        self.cancel_token = CancelToken()
        self.done = False
        self.detached = False

    def cancel(self) -> None:
        """Ask the function to stop (it watches :attr:`TaskContext.cancel`)."""
        self.cancel_token.cancel()

    def detach(self) -> None:
        """Cancel and forget: no callback runs any more (the widgets may be gone)."""
        self.detached = True
        self.cancel()

    def deliver_progress(self, value: Any) -> None:
        if not self.detached and not self.done and self.progress is not None:
            self.progress(value)


class TaskRunner(QObject):
    """Runs blocking functions in worker threads and calls back on the GUI thread."""

    #: (title, message) of a failure nobody handled; the window shows it.
    failed = Signal(str, str)

    def __init__(self, parent: QObject | None = None, max_workers: int = 16) -> None:
        super().__init__(parent)
        self._loop: asyncio.AbstractEventLoop = gui_loop()
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="ui-task")
        self._tasks: set[Task[Any]] = set()
        self._shut_down = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def running(self) -> int:
        return len(self._tasks)

    def run(
        self,
        work: Callable[[TaskContext], T],
        *,
        title: str,
        success: Callable[[T], None] | None = None,
        failure: Callable[[BaseException], None] | None = None,
        progress: Callable[[Any], None] | None = None,
    ) -> Task[T]:
        """Run ``work(context)`` in a worker; then ``success(result)`` or ``failure(exc)``.

        Without ``failure``, a failure is logged and emitted on :attr:`failed`. Call it on the
        GUI thread.
        """
        check_gui_thread(f"TaskRunner.run({title!r})")
        task: Task[T] = Task(title, success, failure, progress)
        if self._shut_down:  # the window is closing: nothing may call back into it
            task.detach()
            task.done = True
            return task
        context = TaskContext(self._loop, task)
        future = self._loop.run_in_executor(self._executor, _call, work, context)
        self._tasks.add(task)
        future.add_done_callback(lambda f: self._finish(task, f))
        return task

    def _finish(self, task: Task[T], future: asyncio.Future[T] | Future[T]) -> None:
        check_gui_thread(f"the callback of {task.title!r}")
        self._tasks.discard(task)
        task.done = True
        if task.detached:
            return
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            if task.success is not None:
                task.success(future.result())
            return
        if isinstance(exc, WorkstationError):
            log.warning("%s: %s", task.title, exc)
        else:
            log.error("%s failed unexpectedly", task.title, exc_info=exc)
        if task.failure is not None:
            task.failure(exc)
        else:
            self.failed.emit(task.title, describe_error(exc))

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    def shutdown(self) -> None:
        """Detach every task (no more callbacks) and stop accepting work; does not wait."""
        self._shut_down = True
        for task in list(self._tasks):
            task.detach()
        self._tasks.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)


def describe_error(exc: BaseException) -> str:
    """The message to show: a WorkstationError's own text, else the type and text."""
    if isinstance(exc, WorkstationError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _call(work: Callable[[TaskContext], T], context: TaskContext) -> T:
    return work(context)
