"""The queue pane: retrieves and sends, with progress bars and Cancel / Retry / Remove / Details."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from workstation.jobs import JobKind, JobState, RetrieveJob, RetrieveQueue
from workstation.jobs.send_job import details_text
from workstation.ui.common.batch_buffer import BatchBuffer
from workstation.ui.common.table_view import TableView
from workstation.ui.common.tasks import TaskRunner
from workstation.ui.queue.queue_model import PROGRESS_ROLE, QueueColumn, QueueTableModel

log = logging.getLogger(__name__)


class ProgressDelegate(QStyledItemDelegate):
    """Paints a progress bar from :data:`PROGRESS_ROLE` (0..1; empty bar when unknown)."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        fraction = index.data(PROGRESS_ROLE)
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(3, 3, -3, -3)
        bar.minimum = 0
        bar.maximum = 1000
        bar.progress = 0 if fraction is None else round(float(fraction) * 1000)
        bar.text = "" if fraction is None else f"{float(fraction):.0%}"
        bar.textVisible = True
        bar.textAlignment = Qt.AlignmentFlag.AlignCenter
        bar.state = option.state | QStyle.StateFlag.State_Horizontal
        bar.direction = option.direction
        bar.fontMetrics = option.fontMetrics
        bar.palette = option.palette
        style = option.widget.style() if option.widget else QApplication.style()
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter)


class StateDelegate(QStyledItemDelegate):
    """The State cell: on a selected row the word keeps its colour (red Failed, green Done),
    on a chip of the base colour inside the row's selection highlight, so selecting a row
    never hides how its job ended. Unselected cells paint as usual (coloured text)."""

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        colour = index.data(Qt.ItemDataRole.ForegroundRole)
        if not isinstance(colour, QColor) or not option.state & QStyle.StateFlag.State_Selected:
            super().paint(painter, option, index)
            return
        item = QStyleOptionViewItem(option)
        self.initStyleOption(item, index)
        text, item.text = item.text, ""
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, item, painter, option.widget)
        metrics = option.fontMetrics
        room = option.rect.adjusted(2, 3, -2, -3)
        shown = metrics.elidedText(text, Qt.TextElideMode.ElideRight, room.width() - 8)
        chip = QRect(room.topLeft(), QSize(metrics.horizontalAdvance(shown) + 8, room.height()))
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(option.palette.base())
        painter.drawRoundedRect(chip, 4, 4)
        painter.setPen(colour)
        painter.drawText(chip, Qt.AlignmentFlag.AlignCenter, shown)
        painter.restore()


class QueueView(QWidget):
    """Shows the queue's jobs; the buttons act on the selected ones through the task runner."""

    #: A retrieve reached DONE or PARTIAL (the study UID): the window refreshes the local column.
    job_finished = Signal(str)
    #: The user double-clicked a job: show that study (study UID).
    open_requested = Signal(str)

    def __init__(
        self, queue: RetrieveQueue, runner: TaskRunner, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.queue = queue
        self.runner = runner
        #: The last "Details…" box (deleted by Qt when closed).
        self.details_box: QMessageBox | None = None
        self.model = QueueTableModel(self)
        self.buffer = BatchBuffer(self._apply, parent=self)
        self.table = TableView()
        self.table.configure(self.model, row_height=24)  # in queue order, no sorting
        self.table.setObjectName("queueTable")
        self.table.setItemDelegateForColumn(
            list(QueueColumn).index(QueueColumn.PROGRESS), ProgressDelegate(self.table)
        )
        self.table.setItemDelegateForColumn(
            list(QueueColumn).index(QueueColumn.STATE), StateDelegate(self.table)
        )
        header = self.table.horizontalHeader()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for column, width in {
            QueueColumn.LABEL: 300,
            QueueColumn.NODE: 130,
            QueueColumn.STATE: 90,
            QueueColumn.PROGRESS: 150,
            QueueColumn.COUNT: 70,
            QueueColumn.SPEED: 150,
        }.items():
            self.table.setColumnWidth(list(QueueColumn).index(column), width)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.table.doubleClicked.connect(self._on_double_click)
        self.model.dataChanged.connect(self._update_buttons)

        self.title = QLabel("<b>Queue</b>")
        self.summary = QLabel("")
        self.cancel_button = self._button(
            "Cancel",
            "Stop the selected jobs, or the only one running (a send stops after the image "
            "being sent)",
            self.cancel,
        )
        self.retry_button = self._button(
            "Retry",
            "Fetch again what the selected retrieves missed; send again what the sends did not",
            self.retry,
        )
        self.details_button = self._button(
            "Details…", "The images the selected send did not send, and why", self.show_details
        )
        self.remove_button = self._button(
            "Remove", "Forget the selected finished jobs", self.remove
        )
        self.clear_button = self._button(
            "Clear finished", "Forget every finished job", self.clear_finished
        )
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.title)
        bar.addSpacing(12)
        bar.addWidget(self.summary, 1)
        buttons = (self.cancel_button, self.retry_button, self.details_button, self.remove_button)
        for button in buttons:
            bar.addWidget(button)
        bar.addSpacing(12)
        bar.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 4)
        layout.addLayout(bar)
        layout.addWidget(self.table)
        self._update_buttons()

    def _button(self, text: str, tip: str, slot: Callable[[], None]) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    # -- updates --------------------------------------------------------------------------------

    def on_change(self, job: RetrieveJob) -> None:
        """The queue's callback (notifier thread): buffer it for the GUI thread."""
        self.buffer.push(job)

    def load(self, jobs: list[RetrieveJob]) -> None:
        """The jobs already in the queue (at start-up), through the same buffer (keeps order)."""
        self.buffer.extend(jobs)

    def _apply(self, jobs: list[RetrieveJob]) -> None:
        before = {j.id: j.state for j in self.model.rows}
        self.model.apply(jobs)
        new = [j.id for j in jobs if j.id not in before]
        if new:  # a job just queued: bring it into view (the newest are at the bottom)
            position = self.model.position(str(max(new)))
            if position is not None:
                self.table.scrollTo(self.model.index(position, 0))
        for job in jobs:
            if job.kind is JobKind.SEND:
                continue
            if job.state in (JobState.DONE, JobState.PARTIAL) and before.get(job.id) != job.state:
                self.job_finished.emit(job.study_uid)
                before[job.id] = job.state
        self._update_summary()
        self._update_buttons()

    def _update_summary(self) -> None:
        jobs = self.model.rows
        running = sum(j.state is JobState.RUNNING for j in jobs)
        queued = sum(j.state is JobState.QUEUED for j in jobs)
        # A failed retrieve whose study another job has since retrieved whole needs nothing.
        done = {
            j.study_uid
            for j in jobs
            if j.kind is JobKind.RETRIEVE and j.state is JobState.DONE and not j.series_uids
        }
        failed = sum(
            j.state in (JobState.FAILED, JobState.PARTIAL)
            and not (j.kind is JobKind.RETRIEVE and j.study_uid in done)
            for j in jobs
        )
        parts = []
        if running:
            parts.append(f"{running} running")
        if queued:
            parts.append(f"{queued} waiting")
        if failed:
            parts.append(f"{failed} need attention")
        self.summary.setText(", ".join(parts) if parts else ("idle" if jobs else "empty"))

    # -- selection and actions ------------------------------------------------------------------

    def selected_jobs(self) -> list[RetrieveJob]:
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.model.job(row) for row in rows]

    def _cancel_targets(self) -> list[RetrieveJob]:
        """The selected jobs; with none selected, the one job still running or waiting."""
        selected = self.selected_jobs()
        if selected:
            return selected
        unfinished = [j for j in self.model.rows if not j.is_finished]
        return unfinished if len(unfinished) == 1 else []

    def _update_buttons(self, *_: Any) -> None:
        jobs = self.selected_jobs()
        self.cancel_button.setEnabled(
            any(not j.is_finished and not j.cancelling for j in self._cancel_targets())
        )
        self.retry_button.setEnabled(any(j.state.retryable for j in jobs))
        self.remove_button.setEnabled(any(j.is_finished for j in jobs))
        self.details_button.setEnabled(len(jobs) == 1 and bool(jobs[0].details))
        self.clear_button.setEnabled(any(j.is_finished for j in self.model.rows))

    def cancel(self) -> None:
        ids = [j.id for j in self._cancel_targets() if not j.is_finished]
        self._act("Cancel retrieve", ids, self.queue.cancel)

    def retry(self) -> None:
        ids = [j.id for j in self.selected_jobs() if j.state.retryable]
        self._act("Retry retrieve", ids, self.queue.retry)

    def remove(self) -> None:
        ids = [j.id for j in self.selected_jobs() if j.is_finished]
        self.runner.run(
            lambda _c: [self.queue.remove(i).id for i in ids],
            title="Remove retrieve",
            success=self._forget,
        )

    def clear_finished(self) -> None:
        self.runner.run(
            lambda _c: self.queue.clear_finished(), title="Clear finished", success=self._forget
        )

    def _forget(self, ids: list[int]) -> None:
        self.buffer.flush()
        self.model.remove_keys(str(i) for i in ids)
        self._update_summary()
        self._update_buttons()

    def _act(self, title: str, ids: list[int], action: Callable[[int], RetrieveJob]) -> None:
        """Run ``action`` on each job in a worker: a cancel sends C-CANCEL.

        The returned snapshots are not shown: the queue reports the same changes, in order,
        through :meth:`on_change`, and a snapshot from here could arrive after a newer one.
        """
        if ids:
            self.runner.run(lambda _c: [action(i) for i in ids], title=title)

    def show_details(self) -> None:
        """A send's instances not sent, with the reasons (a box that does not block)."""
        jobs = self.selected_jobs()
        if len(jobs) != 1 or not jobs[0].details:
            return
        job = jobs[0]
        box = QMessageBox(QMessageBox.Icon.Information, "Send details", job.message, parent=self)
        box.setInformativeText(f"{len(job.details)} not sent (SOP Instance UID: why):")
        box.setDetailedText(details_text(job))
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.details_box = box

    def _on_double_click(self, index: QModelIndex) -> None:
        job = self.model.job(index.row())
        if job.kind is JobKind.SEND:
            self.show_details()
            return
        if job.state in (JobState.DONE, JobState.PARTIAL):
            self.open_requested.emit(job.study_uid)

    def close_view(self) -> None:
        self.buffer.close()
