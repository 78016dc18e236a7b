"""The retrieve queue: jobs run on worker threads, a few at a time per node.

Locking: one lock guards every job record, the notifier's queue and the job file. Nothing
that talks to the network (an association, a CancelToken's callbacks) runs while it is held;
the listeners are called by the notifier thread without it, in the order the changes happened.
This module holds the public API; how jobs are scheduled and run, and the notifier, are in the
base class, :class:`~workstation.jobs.runner.JobRunner`.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

from workstation.dimse.storage import StorageServer
from workstation.errors import InvalidInput
from workstation.jobs import send_job
from workstation.jobs.jobfile import JobFile
from workstation.jobs.model import (
    JobKind,
    JobState,
    QueueClosed,
    RetrieveJob,
    scope,
)
from workstation.jobs.runner import JobEntry, JobRunner
from workstation.listeners import Listeners
from workstation.nodes import (
    DEFAULT_AE_TITLE,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_RETRIEVES_PER_NODE,
    RemoteNode,
)
from workstation.query import Level
from workstation.store import LocalStore

log = logging.getLogger(__name__)

ChangeCallback = Callable[[RetrieveJob], None]


class RetrieveQueue(JobRunner):
    """Retrieves queued by the user, run on worker threads, kept in ``db_path``.

    ``store`` receives C-GETs; ``scp`` (our storage SCP, started on demand) receives C-MOVEs
    and may be ``None`` when every node uses C-GET. ``on_change``, when given, is the first
    listener (see :meth:`add_listener`). ``db_path=None`` keeps the jobs in memory only.
    With ``resume=False`` the jobs interrupted at the last exit stay queued until
    :meth:`resume`.
    ``calling_aet`` defaults to the SCP's AE title.
    """

    def __init__(
        self,
        store: LocalStore,
        scp: StorageServer | None,
        *,
        db_path: str | Path | None,
        per_node_limit: int = DEFAULT_RETRIEVES_PER_NODE,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        on_change: ChangeCallback | None = None,
        resume: bool = True,
        calling_aet: str | None = None,
        total_timeout: float | None = None,
    ) -> None:
        if per_node_limit < 1:
            raise InvalidInput(f"per_node_limit must be at least 1, not {per_node_limit}")
        self._store = store
        self._scp = scp
        self._limit = per_node_limit
        self._idle_timeout = idle_timeout
        self._total_timeout = total_timeout
        self._calling_aet = calling_aet or (scp.ae_title if scp is not None else DEFAULT_AE_TITLE)
        self._listeners: Listeners[RetrieveJob] = Listeners("a retrieve queue listener failed", log)
        self._lock = threading.Lock()
        self._scp_start = threading.Lock()  # only serialises scp.start(); guards no state
        self._changed = threading.Condition(self._lock)  # a job changed: wait() and friends
        self._wake = threading.Condition(self._lock)  # the notifier has something to send
        self._entries: dict[int, JobEntry] = {}
        self._events: deque[RetrieveJob] = deque()
        self._seq = itertools.count()
        self._accepting = True
        self._closed = False
        self._file = JobFile(db_path)
        self._notifier: threading.Thread | None = None  # started by the first listener
        if on_change is not None:
            self.add_listener(on_change)
        with self._lock:
            interrupted = 0
            for job in self._file.load():
                entry = JobEntry(job, next(self._seq))
                self._entries[job.id] = entry
                if not job.state.finished:
                    interrupted += 1
                    entry.held = not resume
                    if job.state is JobState.RUNNING:
                        entry.job = dataclasses.replace(
                            job, state=JobState.QUEUED, message="interrupted; queued again"
                        )
                        self._file.save(entry.job)
            if interrupted:
                log.info(
                    "%d retrieve job(s) were interrupted at the last exit%s",
                    interrupted, "; resuming them" if resume else "",
                )  # fmt: skip
            self._schedule_locked()

    # -- public API ----------------------------------------------------------------------

    def add_listener(self, callback: ChangeCallback) -> Callable[[], None]:
        """Call ``callback(job)`` for every change from now on, on the queue's notifier
        thread, in order; returns a function that removes it. It must return quickly
        (marshal to the GUI thread); one that raises is logged and the others still hear."""
        unsubscribe = self._listeners.add(callback)
        with self._lock:
            if self._notifier is None and not self._closed:
                self._notifier = threading.Thread(
                    target=self._notify_loop, name="retrieve-queue-notifier", daemon=True
                )
                self._notifier.start()
        return unsubscribe

    def remove_listener(self, callback: ChangeCallback) -> None:
        """Stop calling ``callback`` (changes already being sent may still reach it)."""
        self._listeners.remove(callback)

    def submit(
        self,
        node: RemoteNode,
        *,
        study_uid: str,
        series_uids: Iterable[str] = (),
        label: str = "",
        expected: int | None = None,
    ) -> RetrieveJob:
        """Queue a retrieve of a study (or of some of its series); it starts at once if
        ``node`` has a free slot. Returns the job as it is after scheduling."""
        series = tuple(str(uid).strip() for uid in series_uids)
        study_uid = str(study_uid).strip()
        for uid in (study_uid, *series):
            if not uid or "\\" in uid:
                raise InvalidInput(f"invalid UID {uid!r} for a retrieve")
        job = RetrieveJob(
            id=0,
            node=node,
            level=Level.SERIES if series else Level.STUDY,
            study_uid=study_uid,
            series_uids=series,
            label=label,
            expected=expected,
            message="queued",
            created=time.time(),
        )
        return self._enqueue(job, f"from {node}")

    def submit_send(
        self,
        node: RemoteNode,
        *,
        study_uid: str,
        series_uids: Iterable[str] = (),
        label: str = "",
    ) -> RetrieveJob:
        """Queue a send (C-STORE) of a study of the local store, or of some of its series, to
        ``node``; it shares the node's limit with the retrieves. Reads the store's index (not
        for the GUI thread); raises :class:`InvalidInput` when the store holds none of it.
        ``label`` defaults to the patient and study (and series) as the store has them."""
        series = tuple(str(uid).strip() for uid in series_uids)
        study_uid = str(study_uid).strip()
        chosen = send_job.selection(self._store, study_uid, series)  # InvalidInput if nothing
        job = RetrieveJob(
            id=0,
            node=node,
            level=Level.SERIES if series else Level.STUDY,
            study_uid=study_uid,
            series_uids=series,
            label=label or send_job.label(self._store, study_uid, series),
            expected=len(chosen),
            message="queued",
            created=time.time(),
            kind=JobKind.SEND,
        )
        return self._enqueue(job, f"to {node}")

    def _enqueue(self, job: RetrieveJob, where: str) -> RetrieveJob:
        """Store a new job, schedule it, and return it as it is after scheduling."""
        with self._lock:
            if not self._accepting:
                raise QueueClosed("the retrieve queue is shut down")
            job = dataclasses.replace(job, id=self._file.insert(job))
            entry = JobEntry(job, next(self._seq))
            self._entries[job.id] = entry
            self._emit_locked(entry.job)
            self._schedule_locked()
            self._changed.notify_all()
            log.info("%s job %d queued: %s %s", job.kind, job.id, scope(job), where)
            return entry.job

    def cancel(self, job_id: int) -> RetrieveJob:
        """Cancel a job: a queued one at once, a running one by C-CANCEL then abort.

        A running job becomes CANCELLED (keeping what arrived) when its worker stops; until
        then its snapshot says ``cancelling``. Cancelling a finished job does nothing.
        """
        with self._lock:
            entry = self._entry_locked(job_id)
            state = entry.job.state
            if state is JobState.QUEUED:
                self._set_locked(
                    entry,
                    state=JobState.CANCELLED,
                    message="cancelled before it started",
                    finished=time.time(),
                )
                log.info("retrieve job %d cancelled while queued", job_id)
                return entry.job
            if state is not JobState.RUNNING or entry.token is None:
                return entry.job
            token = entry.token
            entry.stop = entry.stop or "user"
            self._set_locked(entry, persist=False, cancelling=True, message="cancelling")
            job = entry.job
        log.info("cancelling retrieve job %d", job_id)
        token.cancel()  # sends C-CANCEL: never under the lock
        return job

    def retry(self, job_id: int) -> RetrieveJob:
        """Queue a partial, failed or cancelled job again.

        When its last attempt (in this session) listed the instances and some of them
        arrived, the new attempt fetches only the missing ones; otherwise it repeats the
        whole request (which lists what the PACS holds again).
        """
        with self._lock:
            if not self._accepting:
                raise QueueClosed("the retrieve queue is shut down")
            entry = self._entry_locked(job_id)
            if not entry.job.state.retryable:
                raise InvalidInput(
                    f"job {job_id} is {entry.job.state}: only a partial, failed or cancelled "
                    "retrieve can be retried"
                )
            outcome = entry.outcome
            missing = outcome.missing_instances if outcome is not None else ()
            if entry.job.kind is JobKind.SEND:  # the next attempt sends job.missing, or all
                count = len(entry.job.missing)
                noun = "instance" if count == 1 else "instances"
                whole = "queued: the whole send again"
                message = f"queued: re-send of the {count} {noun} not sent" if count else whole
            elif outcome is not None and missing and len(missing) < len(outcome.instances):
                entry.retry_of = outcome
                noun = "instance" if len(missing) == 1 else "instances"
                message = f"queued: retry of the {len(missing)} missing {noun}"
            else:
                entry.retry_of = None
                message = "queued: retry of the whole request"
            entry.seq = next(self._seq)
            entry.held = False
            self._set_locked(
                entry, state=JobState.QUEUED, message=message, finished=None, cancelling=False
            )
            log.info("retrieve job %d: %s", job_id, message)
            self._schedule_locked()
            return entry.job

    def resume(self) -> None:
        """Start the interrupted jobs held back by ``resume=False``."""
        with self._lock:
            for entry in self._entries.values():
                entry.held = False
            self._schedule_locked()

    def remove(self, job_id: int) -> RetrieveJob:
        """Forget a finished job (no listener is called: the caller updates its list)."""
        with self._lock:
            entry = self._entry_locked(job_id)
            if not entry.job.state.finished:
                raise InvalidInput(f"job {job_id} is {entry.job.state}: cancel it first")
            self._forget_locked([job_id])
            return entry.job

    def clear_finished(self) -> list[int]:
        """Forget every finished job; returns their ids (no listener is called)."""
        with self._lock:
            ids = [i for i, e in self._entries.items() if e.job.state.finished]
            self._forget_locked(ids)
            return ids

    def jobs(self) -> list[RetrieveJob]:
        """Snapshots of every job, oldest first."""
        with self._lock:
            return [e.job for e in sorted(self._entries.values(), key=lambda e: e.job.id)]

    def get(self, job_id: int) -> RetrieveJob:
        """The snapshot of one job (KeyError if unknown)."""
        with self._lock:
            return self._entry_locked(job_id).job

    def wait(self, job_id: int, timeout: float | None = None) -> RetrieveJob:
        """Block until the job has finished (or cannot run: the queue is shut down); returns
        its snapshot, finished or not when ``timeout`` expired. Not for the GUI thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                job = self._entry_locked(job_id).job
                idle = job.state is JobState.QUEUED and (
                    not self._accepting or self._entries[job_id].held
                )
                if job.state.finished or idle:
                    return job
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return job
                self._changed.wait(left)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is running or waiting to run; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while any(self._active(e) for e in self._entries.values()):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(left)
            return True

    @property
    def persistent(self) -> bool:
        """Whether jobs are written to ``db_path``: False for ``None``, after a write error,
        or when another program has the file open (its jobs are not run twice)."""
        with self._lock:
            return self._file.persistent

    @property
    def per_node_limit(self) -> int:
        return self._limit

    @per_node_limit.setter
    def per_node_limit(self, value: int) -> None:
        """Change the limit; more jobs start at once if it grew (running ones keep going)."""
        if value < 1:
            raise InvalidInput(f"per_node_limit must be at least 1, not {value}")
        with self._lock:
            self._limit = value
            self._schedule_locked()

    @property
    def calling_aet(self) -> str:
        """Our AE title in the associations the jobs open."""
        return self._calling_aet

    @calling_aet.setter
    def calling_aet(self, value: str) -> None:
        """A new AE title (the settings changed): for the attempts that start from now on."""
        self._calling_aet = value

    def shutdown(
        self, wait: bool = True, cancel_running: bool = True, timeout: float | None = None
    ) -> None:
        """Stop accepting jobs and close the job file once the running ones have stopped.

        With ``cancel_running`` the running jobs are cancelled and kept as QUEUED, so they
        resume at the next start; without it they run to their end. Queued jobs stay queued.
        With ``wait`` this returns once the workers and the notifier ended (or ``timeout``).
        """
        with self._lock:
            self._accepting = False
            running = [e for e in self._entries.values() if e.job.state is JobState.RUNNING]
            tokens = []
            for entry in running:
                # A job the user is cancelling stays cancelled: it does not resume.
                if cancel_running and entry.token is not None and entry.stop is None:
                    entry.stop = "shutdown"
                    tokens.append(entry.token)
            threads = [e.thread for e in running if e.thread is not None]
            self._finalize_locked()
            self._changed.notify_all()
        if tokens:
            log.info("stopping %d running retrieve(s); they resume at the next start", len(tokens))
        for token in tokens:
            token.cancel()
        if not wait:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        current = threading.current_thread()
        for thread in [*threads, self._notifier]:
            if thread is None or thread is current:
                continue
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> RetrieveQueue:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()
