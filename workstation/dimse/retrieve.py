"""C-MOVE and C-GET with progress, cancel and a completion check (PS3.4 C.4.2, C.4.3).

A retrieve runs in three steps on the calling thread:

1. plan: list, with C-FINDs, every instance the request covers (see :mod:`.plan`);
2. send the C-MOVE (to our storage SCP, already listening) or the C-GET (storage on the same
   association), following the pending counters and counting what we really store;
3. wait for stragglers: some PACS answer success before their C-STOREs land, so the retrieve
   ends only when every listed instance has arrived or nothing has arrived for the idle timeout.

A watchdog aborts the association after ``idle_timeout`` seconds without a response or a
C-STORE, and after ``total_timeout`` in all (a PACS that stays pending forever). Cancel sends
C-CANCEL on the same association and aborts it after a grace period. Instances that arrive
late are kept: they are valid data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import build_role, evt
from pynetdicom.presentation import StoragePresentationContexts

from workstation.cancel import CancelToken
from workstation.dimse.association import abort_now, associate
from workstation.dimse.outcome import (
    ExpectedInstance,
    RetrieveOutcome,
    RetrieveProgress,
    RetrieveState,
)
from workstation.dimse.plan import Planner, RetrievePlan, requests_for_instances, requests_for_query
from workstation.dimse.status import Category, StatusInfo, describe
from workstation.dimse.storage import StorageServer, StoreSink
from workstation.errors import InvalidInput, NetworkError, OperationFailed
from workstation.nodes import RemoteNode
from workstation.query import InformationModel, Level, Query
from workstation.store import LocalStore, StoredInstance

log = logging.getLogger(__name__)

ProgressCallback = Callable[[RetrieveProgress], None]

#: Seconds the PACS gets to answer a C-CANCEL before we abort.
CANCEL_GRACE = 3.0
#: Transfer syntaxes we accept for C-GET: everything pynetdicom knows, compressed included.
GET_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian first: what we prefer
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
    "1.2.840.10008.1.2.5",
]
#: pynetdicom lets a requestor propose at most 128 presentation contexts.
MAX_CONTEXTS = 128


class _Retrieval:
    """One retrieve in progress; all state lives here, guarded by one lock."""

    def __init__(
        self,
        node: RemoteNode,
        method: str,
        *,
        calling_aet: str,
        on_progress: ProgressCallback | None,
        cancel: CancelToken | None,
        idle_timeout: float,
        total_timeout: float | None,
    ) -> None:
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
        self.expected: dict[str, ExpectedInstance] | None = None
        self.scope: tuple[str, set[str]] | None = None  # (keyword, UIDs) when nothing is listed
        self.received: set[str] = set()
        self.bytes = 0
        self.counters: dict[str, int | None] = dict.fromkeys(
            ("completed", "remaining", "failed", "warning")
        )
        self.finished_counts = dict.fromkeys(("completed", "failed", "warning"), 0)
        self.failed_uids: list[str] = []
        self.final: StatusInfo | None = None
        self.error: str | None = None
        self.stop_reason: str | None = None
        self.cancel_sent = False
        self.assoc: Any = None
        self.query_model: str = ""
        self.msg_id = 0
        self.done = False
        self.move_destination = ""

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
        }.get(keyword)
        return value in uids

    def on_stored(self, stored: StoredInstance) -> None:
        if not self._wanted(stored):
            return
        with self.lock:
            self.last_activity = time.monotonic()
            if stored.sop_instance_uid not in self.received:
                self.received.add(stored.sop_instance_uid)
                self.bytes += stored.size
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
            c = self.counters
            done = self.finished_counts
            return RetrieveProgress(
                received=len(self.received),
                expected=None if self.expected is None else len(self.expected),
                completed=None if c["completed"] is None else done["completed"] + c["completed"],
                remaining=c["remaining"],
                failed=None if c["failed"] is None else done["failed"] + c["failed"],
                warning=None if c["warning"] is None else done["warning"] + c["warning"],
                bytes=self.bytes,
                elapsed=time.monotonic() - self.start,
            )

    # -- cancel and watchdog ------------------------------------------------------------------

    def request_cancel(self) -> None:
        with self.lock:
            assoc = self.assoc
            if self.cancel_sent or self.done:
                return
            self.cancel_sent = True
            self.stop_reason = "cancelled"
            self.lock.notify_all()
        if assoc is None or not assoc.is_established:
            return
        log.info("cancelling the %s on %s", self.method, self.node)
        try:
            assoc.send_c_cancel(self.msg_id, query_model=self.query_model)
        except Exception as exc:
            log.debug("C-CANCEL not sent: %s", exc)
        timer = threading.Timer(CANCEL_GRACE, self._abort)
        timer.daemon = True
        timer.start()

    def _abort(self) -> None:
        with self.lock:
            assoc = None if self.done else self.assoc
        if assoc is not None and assoc.is_established:
            abort_now(assoc)

    def _watchdog(self) -> None:
        while True:
            with self.lock:
                if self.done or self.assoc is None:
                    return
                now = time.monotonic()
                if self.total_timeout is not None and now - self.start > self.total_timeout:
                    self.stop_reason = f"no final response within {self.total_timeout:g} s"
                elif now - self.last_activity > self.idle_timeout:
                    self.stop_reason = f"no response and no instance for {self.idle_timeout:g} s"
                else:
                    self.lock.wait(0.25)
                    continue
            log.warning("aborting the %s on %s: %s", self.method, self.node, self.stop_reason)
            self._abort()
            return

    # -- the DIMSE exchange -------------------------------------------------------------------

    def follow(self, responses: Iterable[tuple[Dataset, Dataset | None]]) -> None:
        """Consume the C-MOVE/C-GET responses of one request."""
        for status, identifier in responses:
            if not status:
                with self.lock:
                    if self.stop_reason is None:
                        aborted = self.assoc is not None and self.assoc.is_aborted
                        self.error = (
                            f"{self.node} aborted the association"
                            if aborted
                            else f"{self.node} stopped answering"
                        )
                return
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
                        self.counters[key] = int(status[keyword].value)
                if info.category is not Category.PENDING:
                    self.final = info
                    for key in self.finished_counts:
                        self.finished_counts[key] += self.counters[key] or 0
                    self.counters = dict.fromkeys(self.counters) | {
                        k: self.finished_counts[k] for k in self.finished_counts
                    }
                    self.counters["remaining"] = None
                    if identifier is not None and "FailedSOPInstanceUIDList" in identifier:
                        self.failed_uids += [
                            str(u) for u in _as_list(identifier.FailedSOPInstanceUIDList)
                        ]
            self._report()
            if info.category is not Category.PENDING:
                return

    def run_requests(
        self, assoc: Any, requests: Iterable[Dataset], send: Callable[..., Any]
    ) -> None:
        with self.lock:
            self.assoc = assoc
        unregister = self.token.on_cancel(self.request_cancel)
        watchdog = threading.Thread(target=self._watchdog, name="retrieve-watchdog", daemon=True)
        watchdog.start()
        try:
            for request in requests:
                if self.cancel_sent or self.error or self.stop_reason:
                    break
                self.msg_id += 1
                self.follow(send(request, self.msg_id))
                if self.final is not None and self.final.category is Category.FAILURE:
                    break
        finally:
            unregister()

    def wait_for_stragglers(self) -> None:
        """After the final response, wait for listed instances still on their way."""
        with self.lock:
            while (
                self.expected is not None
                and len(self.received) < len(self.expected)
                and not self.cancel_sent
                and self.error is None
                and self.final is not None
                and self.final.category is not Category.FAILURE
            ):
                idle = time.monotonic() - self.last_activity
                if idle >= self.idle_timeout:
                    self.stop_reason = f"no instance for {self.idle_timeout:g} s"
                    break
                self.lock.wait(min(0.25, self.idle_timeout - idle))
            self.done = True

    # -- the outcome ------------------------------------------------------------------------

    def outcome(self, destination_hint: str = "") -> RetrieveOutcome:
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
            elif final is None or final.category in (Category.FAILURE, Category.CANCEL):
                state = RetrieveState.FAILED
            elif final.category is Category.WARNING or counts["failed"]:
                state = RetrieveState.PARTIAL
            else:
                state = RetrieveState.DONE
            seconds = time.monotonic() - self.start
            message = self._message(state, final, received, missing, seconds, destination_hint)
            return RetrieveOutcome(
                node=self.node,
                method=self.method,
                state=state,
                message=message,
                status=final,
                expected=None if expected is None else len(expected),
                received=received,
                completed=counts["completed"] if final is not None else None,
                failed=counts["failed"] if final is not None else None,
                warning=counts["warning"] if final is not None else None,
                missing=missing,
                failed_uids=tuple(self.failed_uids),
                seconds=seconds,
                bytes=self.bytes,
                instances=tuple(expected.values()) if expected is not None else (),
            )

    def _message(
        self,
        state: RetrieveState,
        final: StatusInfo | None,
        received: int,
        missing: tuple[str, ...],
        seconds: float,
        destination_hint: str,
    ) -> str:
        of = f" of {len(self.expected)}" if self.expected is not None else ""
        noun = "instance" if received == 1 else "instances"
        rate = f" ({format_rate(self.bytes, seconds)})" if seconds > 0 and self.bytes else ""
        got = f"received {received}{of} {noun} in {seconds:.1f} s{rate}"
        if final is not None and final.code == 0xA801:
            return (
                f"the PACS does not know AE {self.move_destination} as a move destination; "
                f"add {self.move_destination} at {destination_hint} to its configuration"
            )
        if (
            self.method == "move"
            and final is not None
            and final.category is Category.FAILURE
            and not received
        ):
            # Many PACS (Orthanc among them) answer an unknown destination with 0xC000.
            return (
                f"{got}; the PACS answered {final}; check that it knows AE "
                f"{self.move_destination} as a move destination at {destination_hint}"
            )
        if state is RetrieveState.DONE:
            return got
        if state is RetrieveState.CANCELLED:
            return f"cancelled; {got}"
        reasons = []
        if final is not None and final.category is Category.FAILURE:
            reasons.append(f"the PACS answered {final}")
        if self.error:
            reasons.append(self.error)
        if self.stop_reason:
            reasons.append(self.stop_reason)
        why = "; ".join(reasons)
        if missing:
            why = (why + "; " if why else "") + (
                f"{len(missing)} instance{'s' if len(missing) != 1 else ''} missing "
                "(retry fetches only those)"
            )
        elif final is not None and final.category is Category.WARNING:
            why = (why + "; " if why else "") + f"the PACS answered {final}"
        return f"{got}; {why}" if why else got


def format_rate(size: int, seconds: float) -> str:
    per_second = size / seconds
    if per_second >= 1e6:
        return f"{per_second / 1e6:.1f} MB/s"
    return f"{per_second / 1e3:.0f} kB/s"


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [v for v in value.split("\\") if v]
    try:
        return list(value)
    except TypeError:
        return [value]


def _plan(node: RemoteNode, query: Query, calling_aet: str, check: bool) -> RetrievePlan:
    if query.model is InformationModel.WORKLIST or query.level is None:
        raise InvalidInput("retrieve needs a patient root (-P) or study root (-S) query")
    if not check:
        return RetrievePlan(requests_for_query(query), None)
    with associate(node, [(query.model.find_uid, None)], calling_aet=calling_aet) as assoc:
        try:
            instances = Planner(assoc, query).list_instances()
        except OperationFailed as exc:
            if query.get(query.level.unique_key):
                log.warning("%s; retrieving without a completion check", exc)
                return RetrievePlan(requests_for_query(query), None)
            raise
    if not instances:
        raise OperationFailed(f"nothing on {node} matches the {query}")
    requests = requests_for_instances(
        instances, query.level, patient_root=query.model is InformationModel.PATIENT_ROOT
    )
    return RetrievePlan(requests, instances)


def _prepare(
    node: RemoteNode,
    query: Query | None,
    retry_of: RetrieveOutcome | None,
    method: str,
    calling_aet: str,
    check: bool,
    kwargs: dict[str, Any],
) -> tuple[_Retrieval, RetrievePlan, InformationModel]:
    retrieval = _Retrieval(node, method, calling_aet=calling_aet, **kwargs)
    if retry_of is not None:
        instances = retry_of.missing_instances
        if not instances:
            raise InvalidInput("nothing to retry: no instance is missing from that retrieve")
        # A retry asks for the missing instances by their UIDs at IMAGE level, study root.
        plan = RetrievePlan(
            requests_for_instances(instances, Level.IMAGE, patient_root=False), instances
        )
        model = InformationModel.STUDY_ROOT
    else:
        assert query is not None
        plan = _plan(node, query, calling_aet, check)
        model = query.model
        if plan.instances is None and query.level is not None:
            key = query.level.unique_key
            retrieval.scope = (key, set((query.get(key) or "").split("\\")))
    if plan.instances is not None:
        retrieval.expected = {i.sop_instance_uid: i for i in plan.instances}
    retrieval.start = retrieval.last_activity = time.monotonic()
    return retrieval, plan, model


def move(
    node: RemoteNode,
    query: Query | None,
    scp: StorageServer,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    calling_aet: str | None = None,
    idle_timeout: float = 30.0,
    total_timeout: float | None = None,
    check: bool = True,
    retry_of: RetrieveOutcome | None = None,
) -> RetrieveOutcome:
    """C-MOVE what ``query`` matches on ``node`` to our storage SCP ``scp`` (PS3.4 C.4.2).

    The move destination is ``scp``'s AE title; the PACS must know it with our host and port.
    Returns a :class:`RetrieveOutcome`; transport failures before anything was sent raise
    :class:`~workstation.errors.NetworkError`.
    """
    if not scp.running:
        scp.start()
    aet = calling_aet or scp.ae_title
    kwargs = dict(
        on_progress=on_progress,
        cancel=cancel,
        idle_timeout=idle_timeout,
        total_timeout=total_timeout,
    )
    retrieval, plan, model = _prepare(node, query, retry_of, "move", aet, check, kwargs)
    retrieval.move_destination = scp.ae_title
    retrieval.query_model = model.move_uid
    unsubscribe = scp.subscribe(retrieval.on_stored)
    hint = f"port {scp.port}"
    try:
        if retrieval.token.cancelled:
            retrieval.cancel_sent = True
            return retrieval.outcome()
        with associate(
            node, [(model.move_uid, None)], calling_aet=aet, dimse_timeout=None
        ) as assoc:
            sock = assoc.dul.socket.socket if assoc.dul.socket else None
            local = sock.getsockname()[0] if sock else "our host"
            hint = f"{local}:{scp.port}"

            def send(request: Dataset, msg_id: int) -> Any:
                return assoc.send_c_move(request, scp.ae_title, model.move_uid, msg_id=msg_id)

            retrieval.run_requests(assoc, plan.requests, send)
        retrieval.wait_for_stragglers()
    except NetworkError as exc:
        retrieval.error = str(exc)
    finally:
        unsubscribe()
    return retrieval.outcome(hint)


def _get_contexts(model: InformationModel, sop_classes: set[str]) -> list[tuple[str, Any]]:
    contexts: list[tuple[str, Any]] = [(model.get_uid, None)]
    # Without a listing that names the SOP classes, DCMTK's and pynetdicom's usual 120.
    classes = sorted(sop_classes) or [str(cx.abstract_syntax) for cx in StoragePresentationContexts]
    for uid in classes[: MAX_CONTEXTS - len(contexts)]:
        contexts.append((uid, GET_TRANSFER_SYNTAXES))
    if len(classes) > MAX_CONTEXTS - 1:
        log.warning(
            "C-GET: %d SOP classes, only %d fit in one association", len(classes), MAX_CONTEXTS - 1
        )
    return contexts


def get(
    node: RemoteNode,
    query: Query | None,
    store: LocalStore,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    calling_aet: str = "WORKSTATION",
    idle_timeout: float = 30.0,
    total_timeout: float | None = None,
    check: bool = True,
    retry_of: RetrieveOutcome | None = None,
) -> RetrieveOutcome:
    """C-GET what ``query`` matches on ``node`` into ``store`` on one association (C.4.3).

    Proposes storage contexts for the SOP classes the listing found (compressed transfer
    syntaxes too) with SCP role selection, within pynetdicom's 128-context limit.
    """
    kwargs = dict(
        on_progress=on_progress,
        cancel=cancel,
        idle_timeout=idle_timeout,
        total_timeout=total_timeout,
    )
    retrieval, plan, model = _prepare(node, query, retry_of, "get", calling_aet, check, kwargs)
    retrieval.query_model = model.get_uid
    sink = StoreSink(store)
    sink.subscribe(retrieval.on_stored)
    contexts = _get_contexts(model, plan.sop_classes)
    roles = [build_role(UID(uid), scp_role=True) for uid, _ in contexts[1:]]
    try:
        if retrieval.token.cancelled:
            retrieval.cancel_sent = True
            return retrieval.outcome()
        with associate(
            node,
            contexts,
            calling_aet=calling_aet,
            dimse_timeout=None,
            ext_neg=roles,
            evt_handlers=[(evt.EVT_C_STORE, sink.handle_store)],
        ) as assoc:
            refused = [
                uid
                for uid, _ in contexts[1:]
                if not any(
                    cx.abstract_syntax == uid and cx.as_scp for cx in assoc.accepted_contexts
                )
            ]
            wanted = plan.sop_classes or {uid for uid, _ in contexts[1:]}
            if set(refused) >= wanted:
                retrieval.error = (
                    f"{node} refused to send by C-GET (SCP role refused for "
                    f"{', '.join(UID(u).name for u in refused[:3])}): use C-MOVE for this node"
                )
            else:

                def send(request: Dataset, msg_id: int) -> Any:
                    return assoc.send_c_get(request, model.get_uid, msg_id=msg_id)

                retrieval.run_requests(assoc, plan.requests, send)
        retrieval.wait_for_stragglers()
    except NetworkError as exc:
        retrieval.error = str(exc)
    return retrieval.outcome()


def retry(
    outcome: RetrieveOutcome, target: StorageServer | LocalStore, **options: Any
) -> RetrieveOutcome:
    """Fetch only the instances ``outcome`` says are missing, by the same method."""
    if isinstance(target, StorageServer):
        return move(outcome.node, None, target, retry_of=outcome, **options)
    return get(outcome.node, None, target, retry_of=outcome, **options)
