"""How the retrieve queue runs its jobs: scheduling under the lock, the worker threads (a
retrieve or a send attempt each), and the notifier thread that tells the listeners.

:class:`JobRunner` is the base of :class:`~workstation.jobs.retrieve_queue.RetrieveQueue`, which
sets up the state declared below and offers the public API. The locking rules are the queue's:
methods named ``*_locked`` run with the lock held; the network is never touched under it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workstation.cancel import CancelToken
from workstation.dimse import retrieve as dimse
from workstation.dimse.outcome import RetrieveOutcome, RetrieveProgress
from workstation.dimse.send import SendProgress
from workstation.dimse.storage import StorageServer
from workstation.errors import InvalidInput, WorkstationError
from workstation.jobs import send_job
from workstation.jobs.jobfile import JobFile
from workstation.jobs.model import (
    FROM_OUTCOME,
    JobKind,
    JobState,
    QueueClosed,
    RetrieveJob,
    final_progress,
    request_query,
    scope,
)
from workstation.listeners import Listeners
from workstation.nodes import RetrieveMethod
from workstation.store import LocalStore

log = logging.getLogger(__name__)

#: Seconds between two progress snapshots of one job (state changes are never held back).
PROGRESS_INTERVAL = 0.1


@dataclass(eq=False)
class JobEntry:
    """The queue's private, mutable record of one job (guarded by the queue's lock)."""

    job: RetrieveJob
    seq: int  # FIFO position; a retry goes to the back
    held: bool = False  # loaded with resume=False: waits for resume()
    run: int = 0  # serial of the running attempt, to drop late callbacks of an old one
    token: CancelToken | None = None
    thread: threading.Thread | None = None
    stop: str | None = None  # why the running attempt was cancelled: "user" or "shutdown"
    outcome: RetrieveOutcome | None = None  # of the last attempt (this session only)
    retry_of: RetrieveOutcome | None = None  # the next attempt fetches only its missing
    next_emit: float = 0.0  # monotonic time before which progress is held back
    dirty: bool = False  # progress held back, to be sent by the notifier


class JobRunner:
    """Scheduling, workers and notifier of the retrieve queue (see the module doc)."""

    _store: LocalStore
    _scp: StorageServer | None
    _limit: int
    _idle_timeout: float
    _total_timeout: float | None
    _calling_aet: str
    _listeners: Listeners[RetrieveJob]
    _lock: threading.Lock
    _scp_start: threading.Lock
    _changed: threading.Condition
    _wake: threading.Condition
    _entries: dict[int, JobEntry]
    _events: deque[RetrieveJob]
    _accepting: bool
    _closed: bool
    _file: JobFile
    _notifier: threading.Thread | None

    # -- scheduling (lock held) ------------------------------------------------------------

    def _active(self, entry: JobEntry) -> bool:
        state = entry.job.state
        if state is JobState.RUNNING:
            return True
        return state is JobState.QUEUED and self._accepting and not entry.held

    def _entry_locked(self, job_id: int) -> JobEntry:
        try:
            return self._entries[job_id]
        except KeyError:
            raise KeyError(f"no retrieve job {job_id}") from None

    def _schedule_locked(self) -> None:
        if not self._accepting:
            return
        entries = self._entries.values()
        running = Counter(str(e.job.node) for e in entries if e.job.state is JobState.RUNNING)
        waiting = [e for e in entries if e.job.state is JobState.QUEUED and not e.held]
        for entry in sorted(waiting, key=lambda e: e.seq):
            key = str(entry.job.node)
            if running[key] < self._limit:
                running[key] += 1
                self._start_locked(entry)

    def _start_locked(self, entry: JobEntry) -> None:
        entry.run += 1
        entry.token = CancelToken()
        entry.stop = None
        retry_of, entry.retry_of = entry.retry_of, None
        if entry.job.kind is JobKind.SEND:
            self._start_send_locked(entry)
            return
        if retry_of is not None:
            message = f"retrieving the {len(retry_of.missing_instances)} missing instance(s)"
        else:
            message = "retrieving"
        self._set_locked(
            entry,
            state=JobState.RUNNING,
            message=message,
            progress=None,
            started=time.time(),
            finished=None,
            attempts=entry.job.attempts + 1,
            cancelling=False,
        )
        job = entry.job
        entry.thread = threading.Thread(
            target=self._work,
            args=(job, entry.run, entry.token, retry_of),
            name=f"retrieve-job-{job.id}",
            daemon=True,
        )
        entry.thread.start()
        log.info(
            "retrieve job %d started: attempt %d, %s by C-%s from %s",
            job.id, job.attempts, scope(job), job.method.upper(), job.node,
        )  # fmt: skip

    def _start_send_locked(self, entry: JobEntry) -> None:
        """Start an attempt of a send job (``entry.run`` and its token are set)."""
        count = len(entry.job.missing)
        self._set_locked(
            entry,
            state=JobState.RUNNING,
            message=f"sending the {count} instance(s) not sent yet" if count else "sending",
            send_progress=None,
            started=time.time(),
            finished=None,
            attempts=entry.job.attempts + 1,
            cancelling=False,
        )
        job = entry.job
        assert entry.token is not None
        entry.thread = threading.Thread(
            target=self._work_send,
            args=(job, entry.run, entry.token),
            name=f"send-job-{job.id}",
            daemon=True,
        )
        entry.thread.start()
        log.info(
            "send job %d started: attempt %d, %s to %s", job.id, job.attempts, scope(job), job.node
        )

    def _set_locked(self, entry: JobEntry, *, persist: bool = True, **changes: Any) -> None:
        """Apply ``changes`` to the job's snapshot, save it, and tell the listeners."""
        entry.job = dataclasses.replace(entry.job, **changes)
        entry.dirty = False
        entry.next_emit = time.monotonic() + PROGRESS_INTERVAL
        if persist:
            self._file.save(entry.job)
        self._emit_locked(entry.job)
        self._changed.notify_all()

    def _emit_locked(self, job: RetrieveJob) -> None:
        if self._notifier is not None:
            self._events.append(job)
            self._wake.notify()

    def _forget_locked(self, ids: list[int]) -> None:
        if self._closed:
            raise QueueClosed("the retrieve queue is shut down")
        for job_id in ids:
            del self._entries[job_id]
        self._file.delete(ids)
        if ids:
            log.info("removed %d finished retrieve job(s)", len(ids))

    def _finalize_locked(self) -> None:
        """Once shut down and idle: close the file and let the notifier drain and end."""
        if self._accepting or self._closed:
            return
        if any(e.job.state is JobState.RUNNING for e in self._entries.values()):
            return
        self._closed = True
        self._file.close()
        self._wake.notify_all()

    # -- workers -------------------------------------------------------------------------

    def _work(
        self,
        job: RetrieveJob,
        run: int,
        token: CancelToken,
        retry_of: RetrieveOutcome | None,
    ) -> None:
        """One attempt, on its own thread."""

        def on_progress(progress: RetrieveProgress) -> None:
            self._on_progress(job.id, run, progress)

        outcome: RetrieveOutcome | None = None
        error = ""
        try:
            outcome = self._retrieve(job, token, retry_of, on_progress)
        except WorkstationError as exc:
            error = str(exc)
        except Exception as exc:
            log.exception("retrieve job %d failed unexpectedly", job.id)
            error = f"unexpected error: {type(exc).__name__}: {exc}"
        self._finish(job.id, run, outcome, error)

    def _retrieve(
        self,
        job: RetrieveJob,
        token: CancelToken,
        retry_of: RetrieveOutcome | None,
        on_progress: Callable[[RetrieveProgress], None],
    ) -> RetrieveOutcome:
        """The network part; runs without the lock."""
        options: dict[str, Any] = dict(
            on_progress=on_progress,
            cancel=token,
            calling_aet=self._calling_aet,
            idle_timeout=self._idle_timeout,
            total_timeout=self._total_timeout,
        )
        move = (retry_of.method if retry_of is not None else job.method) == RetrieveMethod.MOVE
        if move and self._scp is None:
            raise InvalidInput(
                f"{job.node.label} retrieves by C-MOVE but no storage SCP is configured: "
                "set one up or switch the node to C-GET"
            )
        if move and self._scp is not None and not self._scp.running:
            with self._scp_start:  # StorageServer.start() is not safe to call concurrently
                self._scp.start()
        if retry_of is not None:
            target: StorageServer | LocalStore = self._scp if move and self._scp else self._store
            return dimse.retry(retry_of, target, **options)
        # The caller's count (from its C-FIND) serves only when the PACS cannot list.
        options["expected"] = job.expected
        # A resumed or repeated job asks only for what the store does not hold yet.
        options["only_missing"] = True
        if move and self._scp is not None:
            return dimse.move(job.node, request_query(job), self._scp, **options)
        return dimse.get(job.node, request_query(job), self._store, **options)

    def _on_progress(
        self,
        job_id: int,
        run: int,
        progress: RetrieveProgress | SendProgress,
        field: str = "progress",
    ) -> None:
        """From the retrieve's (or send's) threads: keep the latest, send at most every
        interval. ``field`` is the job's field it goes to (``send_progress`` for a send)."""
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is None or entry.run != run or entry.job.state is not JobState.RUNNING:
                return
            changes: dict[str, Any] = {field: progress}
            entry.job = dataclasses.replace(entry.job, **changes)
            now = time.monotonic()
            if now >= entry.next_emit:
                entry.next_emit = now + PROGRESS_INTERVAL
                entry.dirty = False
                self._emit_locked(entry.job)
            elif not entry.dirty and self._notifier is not None:
                entry.dirty = True
                self._wake.notify()

    def _ended_locked(self, job_id: int, run: int) -> tuple[JobEntry, str | None] | None:
        """The entry of an attempt that just ended, unless a newer run replaced it, and why it
        was stopped (None, "user" or "shutdown"); the entry forgets its thread and token."""
        entry = self._entries.get(job_id)
        if entry is None or entry.run != run:
            return None
        stop, entry.stop = entry.stop, None
        entry.token = None
        entry.thread = None
        return entry, stop

    def _finish(self, job_id: int, run: int, outcome: RetrieveOutcome | None, error: str) -> None:
        with self._lock:
            ended = self._ended_locked(job_id, run)
            if ended is None:
                return
            entry, stop = ended
            job = entry.job
            changes: dict[str, Any] = {"cancelling": False, "finished": time.time()}
            if outcome is not None:
                entry.outcome = outcome
                state = FROM_OUTCOME[outcome.state]
                message = outcome.message
                changes["missing"] = outcome.missing
                changes["progress"] = final_progress(outcome)
            else:
                state, message = JobState.FAILED, error
            if stop == "shutdown" and state is not JobState.DONE:
                state = JobState.QUEUED
                message = "interrupted by quitting; resumes at the next start"
                changes["finished"] = None
                entry.outcome = None  # the next start repeats the whole request
            elif stop == "user" and state is not JobState.DONE and state is not JobState.CANCELLED:
                state = JobState.CANCELLED
                message = f"cancelled; {message}"
            self._set_locked(entry, state=state, message=message, **changes)
            log.info(
                "retrieve job %d %s after %.1f s: %s",
                job_id, state, time.time() - (job.started or time.time()), message,
            )  # fmt: skip
            self._schedule_locked()
            self._finalize_locked()

    # -- send jobs -----------------------------------------------------------------------

    def _work_send(self, job: RetrieveJob, run: int, token: CancelToken) -> None:
        """One attempt of a send job, on its own thread (see :mod:`workstation.jobs.send_job`)."""

        def on_progress(progress: SendProgress) -> None:
            self._on_progress(job.id, run, progress, field="send_progress")

        attempt: send_job.SendAttempt | None = None
        error = ""
        try:
            attempt = send_job.run(
                job, self._store, calling_aet=self._calling_aet, cancel=token,
                on_progress=on_progress,
            )  # fmt: skip
        except WorkstationError as exc:
            error = str(exc)
        except Exception as exc:
            log.exception("send job %d failed unexpectedly", job.id)
            error = f"unexpected error: {type(exc).__name__}: {exc}"
        self._finish_send(job.id, run, attempt, error)

    def _finish_send(
        self, job_id: int, run: int, attempt: send_job.SendAttempt | None, error: str
    ) -> None:
        with self._lock:
            ended = self._ended_locked(job_id, run)
            if ended is None:
                return
            entry, stop = ended
            job = entry.job
            changes: dict[str, Any] = {"cancelling": False, "finished": time.time()}
            if attempt is not None:
                state, message, more = send_job.conclude(job, attempt)
                changes.update(more)
            else:
                state, message = JobState.FAILED, error
            interrupted = state is JobState.CANCELLED or attempt is None
            if stop == "shutdown" and interrupted:  # resumes with what is still to send
                left = len(changes.get("missing", job.missing)) or job.expected or 0
                state = JobState.QUEUED
                message = (
                    f"interrupted by quitting; {left} instance(s) still to send "
                    "resume at the next start"
                )
                changes["finished"] = None
            elif stop == "user" and attempt is None:
                state, message = JobState.CANCELLED, f"cancelled; {message}"
            self._set_locked(entry, state=state, message=message, **changes)
            log.info(
                "send job %d %s after %.1f s: %s",
                job_id, state, time.time() - (job.started or time.time()), message,
            )  # fmt: skip
            for uid, why in changes.get("details", ())[:5]:  # UIDs, never patient data
                log.debug("send job %d: %s not sent: %s", job_id, uid, why)
            self._schedule_locked()
            self._finalize_locked()

    # -- the notifier --------------------------------------------------------------------

    def _notify_loop(self) -> None:
        """Send the snapshots to the listeners in order, and held-back progress when due."""
        while True:
            with self._lock:
                while True:
                    now = time.monotonic()
                    deadlines = []
                    for entry in self._entries.values():
                        if not entry.dirty:
                            continue
                        if entry.next_emit <= now:
                            entry.dirty = False
                            entry.next_emit = now + PROGRESS_INTERVAL
                            self._events.append(entry.job)
                        else:
                            deadlines.append(entry.next_emit)
                    if self._events:
                        batch = list(self._events)
                        self._events.clear()
                        break
                    if self._closed:
                        return
                    self._wake.wait(min(deadlines) - now if deadlines else None)
            for job in batch:
                self._listeners.emit(job)
