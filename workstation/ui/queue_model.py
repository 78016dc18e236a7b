"""The queue as a table: one :class:`~workstation.jobs.RetrieveJob` snapshot per line.

Retrieves and sends share the table: the Job column says which ("Retrieve ← PACS (C-MOVE)",
"Send → ARCHIVE"), Images counts received or sent of expected.

The queue reports changes on its notifier thread; the window pushes them into a
:class:`~workstation.ui.throttle.BatchBuffer` and :meth:`QueueTableModel.apply` takes each
flushed batch (in order, so the newest snapshot of a job wins).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor

from workstation.jobs import JobKind, JobState, RetrieveJob
from workstation.jobs.send_job import details_text
from workstation.ui.table_model import RowTableModel

#: Role with the job's progress as a float 0..1, or None when unknown.
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 10


class QueueColumn(Enum):
    LABEL = "Study"
    NODE = "Job"
    STATE = "State"
    PROGRESS = "Progress"
    COUNT = "Images"
    SPEED = "Speed"
    MESSAGE = "Details"


_STATE_TEXT = {
    JobState.QUEUED: "Queued",
    JobState.RUNNING: "Retrieving",
    JobState.DONE: "Done",
    JobState.PARTIAL: "Partial",
    JobState.FAILED: "Failed",
    JobState.CANCELLED: "Cancelled",
}
_STATE_COLOUR = {
    JobState.DONE: QColor(0x1B, 0x7F, 0x3B),
    JobState.PARTIAL: QColor(0xB3, 0x6B, 0x00),
    JobState.FAILED: QColor(0xC0, 0x15, 0x2F),
}


def state_text(job: RetrieveJob) -> str:
    if job.cancelling:
        return "Cancelling…"
    if job.kind is JobKind.SEND and job.state is JobState.RUNNING:
        return "Sending"
    return _STATE_TEXT.get(job.state, str(job.state))


def kind_text(job: RetrieveJob) -> str:
    """ "Retrieve ← PACS (C-MOVE)" or "Send → ARCHIVE"."""
    if job.kind is JobKind.SEND:
        return f"Send → {job.node.label}"
    return f"Retrieve ← {job.node.label} (C-{job.method.upper()})"


def _sent_count(job: RetrieveJob) -> int:
    if job.send_progress is not None:
        return job.send_progress.sent
    if job.state in (JobState.QUEUED, JobState.RUNNING) and not job.missing:
        return 0
    return max(0, (job.expected or 0) - len(job.missing))  # loaded from the job file


def count_text(job: RetrieveJob) -> str:
    """ "87/120": instances received (or sent) of those expected (what is known of either)."""
    if job.kind is JobKind.SEND:
        total = job.send_progress.total if job.send_progress is not None else job.expected
        return f"{_sent_count(job)}/{total or 0}"
    progress = job.progress
    received = progress.received if progress is not None else None
    expected = progress.expected if progress is not None and progress.expected else job.expected
    if received is None:
        return f"0/{expected}" if expected else ""
    return f"{received}/{expected}" if expected else str(received)


def size_text(size: float) -> str:
    """Bytes as kB, MB or GB (decimal units, as network speeds are given)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size / 1e3:.0f} kB"


def speed_text(job: RetrieveJob) -> str:
    if job.kind is JobKind.SEND:
        sending = job.send_progress
        if sending is None or sending.elapsed <= 0:
            return ""
        if job.state is JobState.RUNNING:
            rate = sending.bytes / sending.elapsed
            return f"{sending.done / sending.elapsed:.0f} img/s · {size_text(rate)}/s"
        return f"{sending.elapsed:.1f} s · {size_text(sending.bytes)}"
    progress = job.progress
    if progress is None or progress.elapsed <= 0:
        return ""
    if job.state is JobState.RUNNING:
        rate = progress.bytes / progress.elapsed
        return f"{progress.rate:.0f} img/s · {size_text(rate)}/s"
    return f"{progress.elapsed:.1f} s · {size_text(progress.bytes)}"


class QueueTableModel(RowTableModel[RetrieveJob, QueueColumn]):
    """The jobs of the retrieve queue, oldest first."""

    columns = tuple(QueueColumn)
    numeric = frozenset({QueueColumn.COUNT})
    styled = frozenset({QueueColumn.STATE})

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)

    def key(self, row: RetrieveJob) -> str:
        return str(row.id)

    def apply(self, jobs: list[RetrieveJob]) -> None:
        """Take a batch of snapshots in the order they happened."""
        latest: dict[int, RetrieveJob] = {}
        for job in jobs:
            latest.pop(job.id, None)
            latest[job.id] = job  # keep the newest, in order of its last change
        self.upsert(sorted(latest.values(), key=lambda j: j.id))

    def job(self, position: int) -> RetrieveJob:
        return self.row_at(position)

    def display(self, row: RetrieveJob, column: QueueColumn) -> str:
        match column:
            case QueueColumn.LABEL:
                return row.label or row.study_uid
            case QueueColumn.NODE:
                return kind_text(row)
            case QueueColumn.STATE:
                return state_text(row)
            case QueueColumn.PROGRESS:
                fraction = row.fraction
                return "" if fraction is None else f"{fraction:.0%}"
            case QueueColumn.COUNT:
                return count_text(row)
            case QueueColumn.SPEED:
                return speed_text(row)
            case QueueColumn.MESSAGE:
                return row.message
        return ""

    def sort_key(self, row: RetrieveJob, column: QueueColumn) -> Any:
        if column is QueueColumn.PROGRESS:
            return row.fraction or 0.0
        if column is QueueColumn.COUNT:
            if row.kind is JobKind.SEND:
                return _sent_count(row)
            return row.progress.received if row.progress is not None else 0
        return self.display(row, column).casefold()

    def tooltip(self, row: RetrieveJob, column: QueueColumn) -> str | None:
        if column in (QueueColumn.MESSAGE, QueueColumn.STATE):
            if row.details:  # a send's instances not sent, with the reasons (first ten)
                lines = details_text(row).splitlines()
                more = [f"… and {len(lines) - 10} more"] if len(lines) > 10 else []
                return "\n".join([row.message, "", "Not sent:", *lines[:10], *more])
            return row.message or None
        if column is QueueColumn.LABEL:
            what = f"{len(row.series_uids)} series" if row.series_uids else "whole study"
            return f"{row.label}\n{what}, attempt {row.attempts}"
        return None

    def extra_data(self, row: RetrieveJob, column: QueueColumn, role: int) -> Any:
        if role == PROGRESS_ROLE:
            return row.fraction
        if column is QueueColumn.STATE and role == Qt.ItemDataRole.ForegroundRole:
            return _STATE_COLOUR.get(row.state)
        return None
