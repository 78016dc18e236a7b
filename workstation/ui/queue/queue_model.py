"""The queue as a table: one :class:`~workstation.jobs.RetrieveJob` snapshot per line.

Retrieves and sends share the table: the Job column says which ("Retrieve ← PACS (C-MOVE)",
"Send → ARCHIVE"), Images counts received or sent of expected.

The queue reports changes on its notifier thread; the window pushes them into a
:class:`~workstation.ui.common.batch_buffer.BatchBuffer` and :meth:`QueueTableModel.apply`
takes each flushed batch (in order, so the newest snapshot of a job wins).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor

from workstation.jobs import JobKind, JobState, RetrieveJob
from workstation.jobs.send_job import details_text
from workstation.ui.common.table_model import RowTableModel

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


def _transfer(job: RetrieveJob) -> tuple[int, int, float] | None:
    """Images moved, bytes and seconds of the job's current (or last) attempt, when known."""
    if job.kind is JobKind.SEND:
        sending = job.send_progress
        if sending is None or sending.elapsed <= 0:
            return None
        return sending.done, sending.bytes, sending.elapsed
    progress = job.progress
    if progress is None or progress.elapsed <= 0:
        return None
    return progress.received, progress.bytes, progress.elapsed


def speed_text(job: RetrieveJob) -> str:
    """ "40 img/s · 2.1 MB/s": a running job's average so far, a finished job's average over
    its last attempt (the same words, so the two read alike; the tooltip says how long)."""
    transfer = _transfer(job)
    if transfer is None:
        return ""
    images, size, seconds = transfer
    if job.is_finished and not images:
        return ""  # nothing moved: no speed to speak of (the Details say why)
    return f"{images / seconds:.0f} img/s · {size_text(size / seconds)}/s"


def speed_tooltip(job: RetrieveJob) -> str | None:
    """ "Average of the last attempt: 119 images, 6.2 MB in 3.0 s"."""
    transfer = _transfer(job)
    if transfer is None:
        return None
    images, size, seconds = transfer
    what = "Average of the last attempt" if job.is_finished else "Average so far"
    noun = "image" if images == 1 else "images"
    return f"{what}: {images} {noun}, {size_text(size)} in {seconds:.1f} s"


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
        if column is QueueColumn.SPEED:
            transfer = _transfer(row) if speed_text(row) else None
            return transfer[1] / transfer[2] if transfer is not None else -1.0
        return self.display(row, column).casefold()

    def tooltip(self, row: RetrieveJob, column: QueueColumn) -> str | None:
        if column in (QueueColumn.MESSAGE, QueueColumn.STATE):
            if row.details:  # a send's instances not sent, with the reasons (first ten)
                lines = details_text(row).splitlines()
                more = [f"… and {len(lines) - 10} more"] if len(lines) > 10 else []
                return "\n".join([row.message, "", "Not sent:", *lines[:10], *more])
            return row.message or None
        if column is QueueColumn.SPEED:
            return speed_tooltip(row)
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
