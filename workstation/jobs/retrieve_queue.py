"""The retrieve queue: jobs run on worker threads, a few at a time per node.

Locking: one lock guards every job record, the notifier's queue and the job file. Nothing
that talks to the network (an association, a CancelToken's callbacks) runs while it is held;
the listeners are called by the notifier thread without it, in the order the changes happened.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
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
from workstation.nodes import (
    DEFAULT_AE_TITLE,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_RETRIEVES_PER_NODE,
    RemoteNode,
    RetrieveMethod,
)
from workstation.query import Level
from workstation.store import LocalStore

log = logging.getLogger(__name__)

#: Seconds between two progress snapshots of one job (state changes are never held back).
PROGRESS_INTERVAL = 0.1


# -- the queue -----------------------------------------------------------------------------


@dataclass(eq=False)
class _Entry:
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


ChangeCallback = Callable[[RetrieveJob], None]


class RetrieveQueue:
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
        self._entries: dict[int, _Entry] = {}
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
                entry = _Entry(job, next(self._seq))
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
            entry = _Entry(job, next(self._seq))
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

    # -- scheduling (lock held) ------------------------------------------------------------

    def _active(self, entry: _Entry) -> bool:
        state = entry.job.state
        if state is JobState.RUNNING:
            return True
        return state is JobState.QUEUED and self._accepting and not entry.held

    def _entry_locked(self, job_id: int) -> _Entry:
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

    def _start_locked(self, entry: _Entry) -> None:
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

    def _start_send_locked(self, entry: _Entry) -> None:
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

    def _set_locked(self, entry: _Entry, *, persist: bool = True, **changes: Any) -> None:
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

    def _finish(self, job_id: int, run: int, outcome: RetrieveOutcome | None, error: str) -> None:
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is None or entry.run != run:
                return
            stop, entry.stop = entry.stop, None
            entry.token = None
            entry.thread = None
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
            entry = self._entries.get(job_id)
            if entry is None or entry.run != run:
                return
            stop, entry.stop = entry.stop, None
            entry.token = None
            entry.thread = None
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
