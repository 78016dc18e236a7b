"""Sends from the local store to a node, run as background tasks, shown in the status bar.

The Local store tab's "Send to ▸ node" asks :meth:`SendStatus.send`; the C-STOREs run in a
worker of the window's :class:`~workstation.ui.tasks.TaskRunner` (never on the GUI thread),
the progress of every running send shows in a label of the status bar with a Stop button
(stop after the instance being sent, then release), and the outcome goes to the status bar
and the log pane: "sent 12 of 12 instances to …", or what was not sent and why.

Sends do not go through the retrieve queue: its jobs, their persistence and its table are
about retrieves (a level, a study to complete, missing instances to fetch again), and a send
is short, ends with a per-instance result and has nothing to resume after a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from workstation.dimse.send import SendOutcome, SendProgress, SendState, send
from workstation.nodes import RemoteNode
from workstation.store import LocalStore
from workstation.ui.tasks import Task, TaskContext, TaskRunner, describe_error
from workstation.ui.thread_guard import check_gui_thread

log = logging.getLogger(__name__)

#: Seconds between two progress reports of one send (the last one always goes).
PROGRESS_INTERVAL = 0.1


class SendStatus(QWidget):
    """The status bar's view of running sends, and the way the window starts them.

    ``message`` carries one line for the status bar. Hidden while nothing is being sent.
    """

    message = Signal(str)
    #: Emitted (on the GUI thread) with each finished send's outcome.
    finished = Signal(object)

    def __init__(
        self,
        store: LocalStore,
        tasks: TaskRunner,
        calling_aet: Callable[[], str],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._store = store
        self._tasks = tasks
        self._calling_aet = calling_aet
        self._running: dict[Task[SendOutcome], str] = {}  # task -> its progress text
        self.label = QLabel()
        self.stop_button = QPushButton("Stop sending")
        self.stop_button.setToolTip("Stop after the image being sent")
        self.stop_button.clicked.connect(self.stop)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.stop_button)
        self.hide()

    @property
    def running(self) -> int:
        return len(self._running)

    def send(
        self, node: RemoteNode, *, study_uid: str | None = None, series_uid: str | None = None
    ) -> Task[SendOutcome]:
        """Send a study or a series of the local store to ``node`` in the background."""
        check_gui_thread("SendStatus.send")
        store, aet = self._store, self._calling_aet()
        what = "series" if series_uid else "study"

        def work(context: TaskContext) -> SendOutcome:
            last = 0.0

            def report(progress: SendProgress) -> None:
                nonlocal last
                now = time.monotonic()
                if now - last >= PROGRESS_INTERVAL or progress.done == progress.total:
                    last = now
                    context.report(progress)

            return send(
                node,
                store=store,
                study_uid=None if series_uid else study_uid,  # a series: only it
                series_uid=series_uid,
                calling_aet=aet,
                on_progress=report,
                cancel=context.cancel,
            )

        task: Task[SendOutcome] | None = None

        def progress(value: SendProgress) -> None:
            if task is not None and task in self._running:
                failed = f", {value.failed} not sent" if value.failed else ""
                self._running[task] = (
                    f"Sending {what} to {node.label}: {value.done}/{value.total}{failed}"
                )
                self._update()

        task = self._tasks.run(
            work,
            title=f"Send to {node.label}",
            success=lambda outcome: self._done(task, outcome),
            failure=lambda exc: self._failed(task, node, exc),
            progress=progress,
        )
        if not task.done:
            self._running[task] = f"Sending {what} to {node.label}…"
        self._update()
        self.message.emit(f"Sending {what} to {node.label}…")
        return task

    def stop(self) -> None:
        """Stop every running send after the instance it is sending."""
        for task in self._running:
            task.cancel()
        if self._running:
            self.stop_button.setEnabled(False)
            self.label.setText("Stopping after the current image…")

    # -- results -----------------------------------------------------------------------------

    def _done(self, task: Task[SendOutcome] | None, outcome: SendOutcome) -> None:
        self._forget(task)
        text = f"{outcome.node.label}: {outcome.summary}"
        if outcome.state in (SendState.PARTIAL, SendState.FAILED):
            for reason, count in outcome.reasons()[:5]:  # reasons name UIDs, never patients
                log.warning("send to %s: %d not sent: %s", outcome.node, count, reason)
        self.message.emit(text)
        self.finished.emit(outcome)

    def _failed(self, task: Task[SendOutcome] | None, node: RemoteNode, exc: BaseException) -> None:
        self._forget(task)
        self.message.emit(f"Could not send to {node.label}: {describe_error(exc)}")

    def _forget(self, task: Task[SendOutcome] | None) -> None:
        if task is not None:
            self._running.pop(task, None)
        self._update()

    def _update(self) -> None:
        if not self._running:
            self.hide()
            self.stop_button.setEnabled(True)
            return
        self.label.setText(" · ".join(self._running.values()))
        self.show()
