"""The job model of the retrieve queue: states and immutable job snapshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from workstation.dimse.outcome import RetrieveOutcome, RetrieveProgress, RetrieveState
from workstation.dimse.send import SendProgress
from workstation.errors import WorkstationError
from workstation.nodes import RemoteNode, RetrieveMethod
from workstation.query import InformationModel, Level, Query


class QueueClosed(WorkstationError):
    """The retrieve queue was shut down: it accepts no new or repeated jobs."""


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """DONE, PARTIAL, FAILED or CANCELLED: the job will not change unless retried."""
        return self not in (JobState.QUEUED, JobState.RUNNING)

    @property
    def retryable(self) -> bool:
        return self in (JobState.PARTIAL, JobState.FAILED, JobState.CANCELLED)


class JobKind(StrEnum):
    """What a job does: fetch from a node (C-MOVE/C-GET), or send from the local store."""

    RETRIEVE = "retrieve"
    SEND = "send"


FROM_OUTCOME = {
    RetrieveState.DONE: JobState.DONE,
    RetrieveState.PARTIAL: JobState.PARTIAL,
    RetrieveState.FAILED: JobState.FAILED,
    RetrieveState.CANCELLED: JobState.CANCELLED,
}


@dataclass(frozen=True)
class RetrieveJob:
    """A snapshot of one job; the queue hands out a new one on every change.

    ``expected`` is what the caller knew at submit time (NumberOfStudyRelatedInstances from
    the C-FIND); ``progress`` is the running attempt's (``progress.expected`` is what the
    retrieve listed, only the missing instances for a retry). ``missing`` lists the SOP
    Instance UIDs the last attempt did not bring. Times are ``time.time()`` seconds.
    ``label`` and ``missing`` are left out of ``repr`` so a logged job shows no patient data.
    """

    id: int
    node: RemoteNode
    level: Level
    study_uid: str
    series_uids: tuple[str, ...] = ()
    label: str = field(default="", repr=False)
    expected: int | None = None
    state: JobState = JobState.QUEUED
    progress: RetrieveProgress | None = None
    message: str = ""
    missing: tuple[str, ...] = field(default=(), repr=False)
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    #: True between :meth:`RetrieveQueue.cancel` of a running job and its end.
    cancelling: bool = False
    #: RETRIEVE fetches from ``node``; SEND stores the study (or its ``series_uids``) of the
    #: local store on ``node``. A send's ``expected`` is the instances of its selection,
    #: ``missing`` what is still to send (the next attempt sends only these when set).
    kind: JobKind = JobKind.RETRIEVE
    #: A send's progress over the whole selection (instances sent by earlier attempts count).
    send_progress: SendProgress | None = None
    #: A send's instances not sent by the last attempt: (SOP Instance UID, why).
    details: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def method(self) -> RetrieveMethod:
        return self.node.retrieve_method

    @property
    def is_finished(self) -> bool:
        return self.state.finished

    @property
    def fraction(self) -> float | None:
        """How far the current attempt is, 0..1, when known; 1.0 once DONE.

        Counts what arrived against what the retrieve listed when it listed anything: the
        PACS's sub-operation counters cover one C-MOVE/C-GET request only, and a retry sends
        one request per series, so ``progress.fraction`` can jump back between requests.
        """
        if self.state is JobState.DONE:
            return 1.0
        if self.kind is JobKind.SEND:
            return None if self.send_progress is None else self.send_progress.fraction
        progress = self.progress
        if progress is None:
            return None
        if progress.expected:
            return min(1.0, progress.received / progress.expected)
        return progress.fraction


def request_query(job: RetrieveJob) -> Query:
    """The study-root request of a job: its unique keys only."""
    if job.level is Level.SERIES:
        base = Query.build(InformationModel.STUDY_ROOT, Level.SERIES, defaults=False)
        return base.with_keys(
            StudyInstanceUID=job.study_uid, SeriesInstanceUID="\\".join(job.series_uids)
        )
    base = Query.build(InformationModel.STUDY_ROOT, Level.STUDY, defaults=False)
    return base.with_keys(StudyInstanceUID=job.study_uid)


def final_progress(outcome: RetrieveOutcome) -> RetrieveProgress:
    """The progress an outcome stands for (``remaining`` 0 when everything arrived)."""
    return RetrieveProgress(
        received=outcome.received,
        expected=outcome.expected,
        completed=outcome.completed,
        remaining=0 if outcome.ok and outcome.completed is not None else None,
        failed=outcome.failed,
        warning=outcome.warning,
        bytes=outcome.bytes,
        elapsed=outcome.seconds,
    )


def scope(job: RetrieveJob) -> str:
    """What a job fetches or sends, without patient data (for the log)."""
    if job.level is Level.SERIES:
        count = len(job.series_uids)
        return f"{count} series of a study" if count != 1 else "a series"
    return "a study"
