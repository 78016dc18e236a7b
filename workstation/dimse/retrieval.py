"""The state of one retrieve in progress: counters, arrivals, cancel, watchdog, outcome.

:class:`Retrieval` is shared by C-MOVE and C-GET (see :mod:`.retrieve`). A retrieve runs its
requests on one association, or series by series on several at once (:meth:`run_parallel`);
each association is a *lane* with its own message ID and pending counters. Arrivals come from
association threads, responses from the requesting threads, cancel from anywhere: all state is
guarded by one condition variable, and nothing here sends on an association while holding it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from workstation.cancel import CancelToken
from workstation.dimse.association import abort_now, ended_error
from workstation.dimse.outcome import (
    ExpectedInstance,
    RetrieveOutcome,
    RetrieveProgress,
    RetrieveState,
    retrieve_message,
)
from workstation.dimse.plan import Expectation as Expectation
from workstation.dimse.plan import split_request, uid_list
from workstation.dimse.status import Category, StatusInfo, describe
from workstation.errors import NetworkError
from workstation.nodes import CANCEL_GRACE, DEFAULT_IDLE_TIMEOUT, RemoteNode, RetrieveMethod
from workstation.store import StoredInstance

log = logging.getLogger(__name__)

ProgressCallback = Callable[[RetrieveProgress], None]

_COUNTERS = ("completed", "remaining", "failed", "warning")

#: Retrievals running in this process: an arrival one of them asked for is not unrequested.
_active: weakref.WeakSet[Retrieval] = weakref.WeakSet()
_active_lock = threading.Lock()


@dataclass(frozen=True)
class Timing:
    """How a caller follows and bounds a retrieve: progress, cancel, idle and total timeouts."""

    on_progress: ProgressCallback | None = None
    cancel: CancelToken | None = None
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    total_timeout: float | None = None


class _Lane:
    """One association of a retrieve: the request in flight and its pending counters."""

    def __init__(self, assoc: Any) -> None:
        self.assoc = assoc
        self.msg_id = 0
        self.counters: dict[str, int | None] = dict.fromkeys(_COUNTERS)


class Retrieval:
    """One retrieve in progress; all state lives here, guarded by one lock."""

    def __init__(
        self,
        node: RemoteNode,
        method: RetrieveMethod,
        *,
        calling_aet: str,
        timing: Timing,
        expectation: Expectation | None = None,
        move_destination: str = "",
        query_model: str = "",
    ) -> None:
        expectation = expectation or Expectation()
        on_progress, cancel = timing.on_progress, timing.cancel
        idle_timeout, total_timeout = timing.idle_timeout, timing.total_timeout
        self.node = node
        self.method = method
        self.calling_aet = calling_aet
        self.on_progress = on_progress
        self.token = cancel or CancelToken()
        self.idle_timeout = idle_timeout
        self.total_timeout = total_timeout
        self.lock = threading.Condition()
        self.start = time.monotonic()
        self.last_activity = self.start
        self.expected: dict[str, ExpectedInstance] | None = (
            None
            if expectation.instances is None
            else {i.sop_instance_uid: i for i in expectation.instances}
        )
        #: Without a listing: the count from NumberOf*RelatedInstances or the caller.
        self.expected_count: int | None = (
            expectation.count if expectation.instances is None else None
        )
        #: (keyword, UIDs) when nothing is listed: what arrivals belong to this retrieve.
        self.scope = expectation.scope
        self.received: set[str] = set()
        #: SOP Instance UIDs that arrived with content differing from the stored copy.
        self.conflicts: list[str] = []
        self.bytes = 0
        self.lanes: list[_Lane] = []
        self.finished_counts = dict.fromkeys(("completed", "failed", "warning"), 0)
        self.failed_uids: list[str] = []
        self.final: StatusInfo | None = None
        self.error: str | None = None
        self.stop_reason: str | None = None
        self.cancel_sent = False
        self.query_model = query_model
        self.done = False
        self.move_destination = move_destination
        #: Listed instances left out because the store already held them (only_missing).
        self.already_stored = expectation.already_stored
        self.cancel_grace = CANCEL_GRACE
        #: Whether every final response so far carried the three sub-operation counters.
        self.reported_counts = True
        #: (level, how many UIDs) of list requests the PACS refused (then sent one by one).
        self.lists_refused: list[tuple[str, int]] = []
        #: The requests went out one UID each because the node is known not to take lists.
        self.one_per_uid = expectation.one_per_uid
        #: Instances that arrived meanwhile that neither this retrieve nor another one running
        #: asked for (stored all the same: they are valid data).
        self.unrequested: set[str] = set()
        with _active_lock:
            _active.add(self)
        #: The sink instances are written through: its write failures explain missing ones.
        self.sink: Any = None
        self._write_failures_at_start = 0
        #: Retry cannot help (e.g. the PACS refuses C-GET altogether): say so, not "retry".
        self.retry_useless = False
        #: The listing (run alongside a C-MOVE) found nothing the request covers.
        self.listed_nothing = False

    def fail(self, message: str) -> None:
        """Record why the retrieve could not go on (the first reason is kept)."""
        with self.lock:
            if self.error is None:
                self.error = message

    # -- arrivals (association threads) -------------------------------------------------------

    def _wanted(self, stored: StoredInstance) -> bool:
        if self.expected is not None:
            return stored.sop_instance_uid in self.expected
        if self.scope is None:
            return False
        keyword, uids = self.scope
        value = {
            "StudyInstanceUID": stored.study_uid,
            "SeriesInstanceUID": stored.series_uid,
            "SOPInstanceUID": stored.sop_instance_uid,
            "PatientID": stored.patient_id,
        }.get(keyword)
        return value in uids

    def on_stored(self, stored: StoredInstance) -> None:
        if not self._wanted(stored):
            if self.lanes and not self.done:
                with _active_lock:
                    others = [r for r in _active if r is not self]
                if not any(other._wanted(stored) for other in others):
                    with self.lock:
                        self.unrequested.add(stored.sop_instance_uid)
            return
        with self.lock:
            if self.expected is not None and stored.sop_instance_uid not in self.expected:
                # Judged by scope just before a listing that leaves it out was given.
                self.unrequested.add(stored.sop_instance_uid)
                return
            self.last_activity = time.monotonic()
            if stored.conflict is not None:
                self.conflicts.append(stored.sop_instance_uid)
            if stored.sop_instance_uid not in self.received:
                self.received.add(stored.sop_instance_uid)
                self.bytes += stored.size
            self.lock.notify_all()
        self._report()

    def expect_listed(
        self, instances: tuple[ExpectedInstance, ...] | None, count: int | None = None
    ) -> None:
        """Give a C-MOVE that started without its listing what the listing found.

        ``instances``: the listing (arrivals so far, counted by scope, are checked against it
        from now on); ``None`` when it failed, ``()`` when it found nothing. Without instances,
        ``count`` (NumberOf*RelatedInstances) replaces the caller's count, and after a listing
        that found nothing the caller's count is dropped: a PACS that then sends nothing and
        says so ends the retrieve at once ("nothing matching").
        """
        with self.lock:
            if instances:
                self.expected = {i.sop_instance_uid: i for i in instances}
                self.expected_count = None
                outside = self.received - self.expected.keys()
                self.received -= outside
                self.unrequested |= outside  # as if the listing had come first
                listed = self.unrequested & self.expected.keys()
                self.received |= listed
                self.unrequested -= listed
            else:
                self.listed_nothing = instances is not None
                if count is not None or self.listed_nothing:
                    self.expected_count = count
            self.lock.notify_all()
        self._report()

    def _report(self) -> None:
        if self.on_progress is None:
            return
        try:
            self.on_progress(self.progress())
        except Exception:
            log.exception("a progress callback failed")

    def progress(self) -> RetrieveProgress:
        with self.lock:
            done = self.finished_counts

            def total(key: str, base: int = 0) -> int | None:
                values = [lane.counters[key] for lane in self.lanes]
                known = [v for v in values if v is not None]
                return base + sum(known) if known else None

            return RetrieveProgress(
                received=len(self.received),
                expected=self.expected_count if self.expected is None else len(self.expected),
                completed=total("completed", done["completed"]),
                remaining=total("remaining"),
                failed=total("failed", done["failed"]),
                warning=total("warning", done["warning"]),
                bytes=self.bytes,
                elapsed=time.monotonic() - self.start,
            )

    # -- cancel and watchdog ------------------------------------------------------------------

    def request_cancel(self) -> None:
        with self.lock:
            lanes = [(lane.assoc, lane.msg_id) for lane in self.lanes]
            if self.cancel_sent or self.done:
                return
            self.cancel_sent = True
            self.stop_reason = "cancelled"
            self.lock.notify_all()
        lanes = [(assoc, msg_id) for assoc, msg_id in lanes if assoc.is_established]
        if not lanes:
            return
        log.info("cancelling the %s on %s", self.method, self.node)
        for assoc, msg_id in lanes:
            try:
                assoc.send_c_cancel(msg_id, query_model=self.query_model)
            except Exception as exc:
                log.debug("C-CANCEL not sent: %s", exc)
        timer = threading.Timer(self.cancel_grace, self._abort)
        timer.daemon = True
        timer.start()

    def _abort(self) -> None:
        with self.lock:
            assocs = [] if self.done else [lane.assoc for lane in self.lanes]
        for assoc in assocs:
            if assoc.is_established:
                abort_now(assoc)

    def _watchdog(self) -> None:
        while True:
            with self.lock:
                if self.done:
                    return
                now = time.monotonic()
                expired = True
                if self.total_timeout is not None and now - self.start > self.total_timeout:
                    self.stop_reason = f"no final response within {self.total_timeout:g} s"
                elif now - self.last_activity > self.idle_timeout:
                    self.stop_reason = f"no response and no instance for {self.idle_timeout:g} s"
                else:
                    expired = False
            if not expired:
                # A sleep, not self.lock.wait: every arrival notifies the lock, and waking
                # this thread per instance cost the receiving thread a GIL hand-off.
                time.sleep(0.25)
                continue
            log.warning("aborting the %s on %s: %s", self.method, self.node, self.stop_reason)
            self._abort()
            return

    # -- the DIMSE exchange -------------------------------------------------------------------

    def follow(
        self,
        lane: _Lane,
        responses: Iterable[tuple[Dataset, Dataset | None]],
        *,
        uid_list: bool = False,
    ) -> StatusInfo | None:
        """Consume the C-MOVE/C-GET responses of one request, sent on ``lane``.

        ``uid_list``: the request names several UIDs of its level. If the PACS ends it without
        a single sub-operation (a failure, or a success with nothing matched: how SCPs that do
        not take lists answer them), its final status is returned and not counted: the caller
        asks again one UID at a time.
        """
        for status, identifier in responses:
            if not status:
                with self.lock:
                    if self.stop_reason is None:
                        self.error = str(ended_error(lane.assoc, self.node, self.calling_aet))
                return None
            info = describe(int(status.Status))
            with self.lock:
                self.last_activity = time.monotonic()
                for key, keyword in (
                    ("completed", "NumberOfCompletedSuboperations"),
                    ("remaining", "NumberOfRemainingSuboperations"),
                    ("failed", "NumberOfFailedSuboperations"),
                    ("warning", "NumberOfWarningSuboperations"),
                ):
                    if keyword in status and status[keyword].value is not None:
                        lane.counters[key] = int(status[keyword].value)
                attempted = sum(lane.counters[k] or 0 for k in ("completed", "failed", "warning"))
                if (
                    uid_list
                    and info.category in (Category.SUCCESS, Category.FAILURE)
                    and not attempted
                ):
                    lane.counters = dict.fromkeys(_COUNTERS)
                    return info
                if info.category is not Category.PENDING:
                    self.reported_counts = self.reported_counts and all(
                        keyword in status
                        for keyword in (
                            "NumberOfCompletedSuboperations",
                            "NumberOfFailedSuboperations",
                            "NumberOfWarningSuboperations",
                        )
                    )
                    # With several lanes, the least good final status is the retrieve's.
                    if self.final is None or _rank(info) >= _rank(self.final):
                        self.final = info
                    for key in self.finished_counts:
                        self.finished_counts[key] += lane.counters[key] or 0
                    # The totals now live in finished_counts; the next request counts anew.
                    lane.counters = {"completed": 0, "failed": 0, "warning": 0, "remaining": None}
                    if identifier is not None and "FailedSOPInstanceUIDList" in identifier:
                        self.failed_uids += [
                            str(u) for u in _as_list(identifier.FailedSOPInstanceUIDList)
                        ]
            self._report()
            if info.category is not Category.PENDING:
                return None
        return None

    def run_requests(
        self, assoc: Any, requests: Iterable[Dataset], send: Callable[..., Any]
    ) -> None:
        """Send ``requests`` one after the other on ``assoc``; ``send(assoc, request, id)``."""
        lane = self._add_lane(assoc)
        unregister = self.token.on_cancel(self.request_cancel)
        self._start_watchdog()
        try:
            self._run_lane(lane, iter(requests), send)
        finally:
            unregister()

    def run_parallel(
        self,
        open_association: Callable[[], AbstractContextManager[Any]],
        requests: Sequence[Dataset],
        send: Callable[..., Any],
        associations: int,
    ) -> None:
        """Send ``requests`` over up to ``associations`` associations at once, each taking
        the next request when its last one is answered (a study series by series)."""
        pending = iter(list(requests))
        take_lock = threading.Lock()

        def take() -> Iterator[Dataset]:
            while True:
                with take_lock:
                    request = next(pending, None)
                if request is None:
                    return
                yield request

        failures: list[str] = []

        def worker() -> None:
            try:
                with open_association() as assoc:
                    lane = self._add_lane(assoc)
                    if self.cancel_sent:
                        return
                    self._run_lane(lane, take(), send)
            except NetworkError as exc:
                log.warning("%s: one of the parallel associations failed: %s", self.node, exc)
                failures.append(str(exc))
            except Exception as exc:  # a bug must not pass for a quiet, partial retrieve
                log.exception("%s: a parallel association failed", self.node)
                failures.append(f"internal error: {exc}")

        unregister = self.token.on_cancel(self.request_cancel)
        self._start_watchdog()
        threads = [
            threading.Thread(target=worker, name=f"retrieve-lane-{i}", daemon=True)
            for i in range(max(1, min(associations, len(requests))))
        ]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            unregister()
        with self.lock:
            if failures and self.error is None:
                self.error = failures[0]  # shown when something is missing

    def _add_lane(self, assoc: Any) -> _Lane:
        lane = _Lane(assoc)
        with self.lock:
            self.lanes.append(lane)
            self.lock.notify_all()
        return lane

    def _start_watchdog(self) -> None:
        threading.Thread(target=self._watchdog, name="retrieve-watchdog", daemon=True).start()

    def _run_lane(self, lane: _Lane, requests: Iterator[Dataset], send: Callable[..., Any]) -> None:
        for first in requests:
            queued = [first]
            while queued:
                request = queued.pop(0)
                if self.cancel_sent or self.error or self.stop_reason:
                    return
                with self.lock:
                    lane.msg_id += 1
                    msg_id = lane.msg_id
                uids = uid_list(request)
                refused = self.follow(
                    lane, send(lane.assoc, request, msg_id), uid_list=len(uids) > 1
                )
                if refused is not None:
                    level = str(request.QueryRetrieveLevel).lower()
                    log.warning(
                        "%s answered a C-%s naming %d %s UIDs with %s and no sub-operation: "
                        "asking one UID at a time",
                        self.node,
                        self.method.upper(),
                        len(uids),
                        level,
                        refused,
                    )
                    with self.lock:
                        self.lists_refused.append((level, len(uids)))
                    queued[:0] = split_request(request)
                    continue
                if self.final is not None and self.final.category is Category.FAILURE:
                    return

    def _still_expecting(self) -> bool:
        """Whether instances the PACS is going to send (or said it sent) have not arrived.

        With a listing: listed instances that neither arrived nor were reported failed.
        Without one: fewer arrivals than the sub-operations the PACS counted as completed.
        """
        if self.expected is not None:
            settled = self.received.union(self.failed_uids)
            return any(uid not in settled for uid in self.expected)
        target = max(self.announced(), self.expected_count or 0)
        if not target and self.nothing_matched():
            return False
        # Knowing nothing (no counts, or a success that counted nothing), only the idle
        # timeout can tell that the PACS has finished sending.
        return not target or len(self.received) < target

    def expecting_more(self) -> bool:
        """Whether instances the retrieve expects have neither arrived nor been reported
        failed (with a listing), or fewer arrived than the PACS counted (without one)."""
        with self.lock:
            return self.final is None or self._still_expecting()

    def nothing_matched(self) -> bool:
        """The PACS said, with explicit zero counters, that it had nothing to send, and
        nothing we know of says otherwise (no listing, or a count of zero).

        A PACS that sends no counters may still be sending (success before its C-STOREs):
        only the idle timeout tells then.
        """
        return (
            self.final is not None
            and self.final.category is Category.SUCCESS
            and self.reported_counts
            and not self.announced()
            and not self.finished_counts["failed"]
            and not self.expected
            and not self.expected_count
            and not self.received
        )

    def write_failures(self) -> tuple[int, str]:
        """How many instances our store failed to write during this retrieve, and why."""
        if self.sink is None:
            return 0, ""
        count, reason = self.sink.write_failures()
        return count - self._write_failures_at_start, reason

    def watch_sink(self, sink: Any) -> None:
        self.sink = sink
        self._write_failures_at_start = sink.write_failures()[0]

    def announced(self) -> int:
        return self.finished_counts["completed"] + self.finished_counts["warning"]

    def wait_for_stragglers(self) -> None:
        """After the final response, wait for instances still on their way.

        Some PACS answer success before their C-STOREs land; we wait until everything
        expected has arrived, or nothing has arrived for the idle timeout, or the total
        timeout is reached.
        """
        with self.lock:
            while (
                not self.cancel_sent
                and self.error is None
                and self.stop_reason is None
                and self.final is not None
                and self.final.category not in (Category.FAILURE, Category.CANCEL)
                and self._still_expecting()
            ):
                now = time.monotonic()
                idle = now - self.last_activity
                if idle >= self.idle_timeout:
                    self.stop_reason = f"no instance for {self.idle_timeout:g} s"
                    break
                wait = min(0.25, self.idle_timeout - idle)
                if self.total_timeout is not None:
                    left = self.start + self.total_timeout - now
                    if left <= 0:
                        self.stop_reason = f"not complete within {self.total_timeout:g} s"
                        break
                    wait = min(wait, left)
                self.lock.wait(wait)
            self.done = True

    # -- the outcome ------------------------------------------------------------------------

    def outcome(self, destination_hint: str = "") -> RetrieveOutcome:
        with _active_lock:
            _active.discard(self)
        with self.lock:
            self.done = True
            expected = self.expected
            received = len(self.received)
            missing: tuple[str, ...] = ()
            if expected is not None:
                missing = tuple(uid for uid in expected if uid not in self.received)
            final = self.final
            counts = self.finished_counts
            if self.cancel_sent:
                state = RetrieveState.CANCELLED
            elif expected is not None:
                state = (
                    RetrieveState.DONE
                    if not missing
                    else RetrieveState.PARTIAL
                    if received
                    else RetrieveState.FAILED
                )
            elif not received:
                state = RetrieveState.FAILED
            elif (
                final is None
                or final.category is not Category.SUCCESS
                or counts["failed"]
                or received < max(self.announced(), self.expected_count or 0)
            ):
                state = RetrieveState.PARTIAL
            else:
                state = RetrieveState.DONE
            seconds = time.monotonic() - self.start
            message = retrieve_message(
                self, state, final, received, missing, seconds, destination_hint
            )
            return RetrieveOutcome(
                node=self.node,
                method=self.method,
                state=state,
                message=message,
                status=final,
                expected=self.expected_count if expected is None else len(expected),
                received=received,
                completed=counts["completed"] if final is not None else None,
                failed=counts["failed"] if final is not None else None,
                warning=counts["warning"] if final is not None else None,
                missing=missing,
                failed_uids=tuple(self.failed_uids),
                seconds=seconds,
                bytes=self.bytes,
                instances=tuple(expected.values()) if expected is not None else (),
                already_stored=self.already_stored,
                conflicts=tuple(dict.fromkeys(self.conflicts)),
                associations=max(1, len(self.lanes)),
                one_per_uid=self.one_per_uid or bool(self.lists_refused),
                uid_list_refused=bool(self.lists_refused),
                unrequested=len(self.unrequested),
                write_failures=self.write_failures()[0],
            )


def _rank(info: StatusInfo) -> int:
    """How bad a final status is, for choosing the retrieve's among several lanes."""
    order = [Category.SUCCESS, Category.WARNING, Category.CANCEL, Category.FAILURE]
    return order.index(info.category) if info.category in order else len(order)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v for v in value.split("\\") if v]
    try:
        return list(value)
    except TypeError:
        return [value]
