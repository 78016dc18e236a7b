"""C-MOVE and C-GET with progress, cancel and a completion check (PS3.4 C.4.2, C.4.3).

A retrieve runs in three steps on the calling thread:

1. plan: list, with C-FINDs, every instance the request covers (see :mod:`.plan`);
2. send the C-MOVE (to our storage SCP, already listening) or the C-GET (storage on the same
   association), following the pending counters and counting what we really store;
3. wait for stragglers: some PACS answer success before their C-STOREs land, so the retrieve
   ends only when every listed instance has arrived or nothing has arrived for the idle timeout.

A C-MOVE whose query names its level's UIDs and nothing else (:func:`_lists_alongside`: the
window's Retrieve) runs 1 and 2 at once: it sends the C-MOVE built from the query, lists on a
second association meanwhile (:class:`_Listing`), counts arrivals by the query's UIDs until the
listing ends, then checks them against the listing as if it had come first.

A watchdog aborts the association after ``idle_timeout`` seconds without a response or a
C-STORE, and after ``total_timeout`` in all (a PACS that stays pending forever). Cancel sends
C-CANCEL on the same association and aborts it after a grace period. Instances that arrive
late are kept: they are valid data.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID

from workstation import audit
from workstation.cancel import CancelToken
from workstation.dimse.association import associate
from workstation.dimse.outcome import ExpectedInstance, RetrieveOutcome
from workstation.dimse.plan import (
    Planner,
    RetrievePlan,
    requests_for_instances,
    requests_for_query,
    split_request,
    split_uids,
)
from workstation.dimse.retrieval import Expectation, ProgressCallback, Retrieval, Timing
from workstation.dimse.storage import StorageServer, StoreSink
from workstation.errors import InvalidInput, NetworkError, OperationFailed
from workstation.nodes import (
    CANCEL_GRACE,
    DEFAULT_AE_TITLE,
    DEFAULT_IDLE_TIMEOUT,
    RemoteNode,
    RetrieveMethod,
)
from workstation.query import InformationModel, Level, Query
from workstation.store import LocalStore

log = logging.getLogger(__name__)

#: Transfer syntaxes we accept for C-GET: everything pynetdicom knows, compressed included,
#: but not Deflated Explicit VR Little Endian: a PACS that picks it would leave files some
#: validators and viewers cannot read (our storage SCP also prefers any other syntax).
GET_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian first: what we prefer
    "1.2.840.10008.1.2",
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
#: When a retrieve ends with instances missing, how long an instance our SCP is still
#: receiving (the PACS went away mid-C-STORE) may take to be stored and counted.
SETTLE_SECONDS = 2.0
#: A requestor may propose at most 128 presentation contexts (odd IDs 1-255, PS3.8 9.3.2.2).
MAX_CONTEXTS = 128
#: Pauses before each try of a listing whose association was refused while the C-MOVE ran.
LISTING_RETRY_DELAYS = (0.05, 0.25, 0.7)


def _plan(node: RemoteNode, query: Query, calling_aet: str, check: bool) -> RetrievePlan:
    if query.model is InformationModel.WORKLIST or query.level is None:
        raise InvalidInput("retrieve needs a patient root (-P) or study root (-S) query")
    if not check:
        return RetrievePlan(requests_for_query(query), None)
    with associate(node, [(query.model.find_uid, None)], calling_aet=calling_aet) as assoc:
        planner = Planner(assoc, query, charset=node.charset)
        try:
            instances = planner.list_instances()
        except OperationFailed as exc:
            if query.get(query.level.unique_key):
                log.warning("%s; retrieving with a count check only", exc)
                return RetrievePlan(requests_for_query(query), None, planner.count())
            raise
    if not instances:
        raise OperationFailed(f"nothing on {node} matches the {query}")
    requests = requests_for_instances(
        instances, query.level, patient_root=query.model is InformationModel.PATIENT_ROOT
    )
    return RetrievePlan(requests, instances)


@dataclass(frozen=True)
class _Request:
    """What to retrieve: a query, or the missing part of an earlier outcome."""

    query: Query | None
    retry_of: RetrieveOutcome | None
    check: bool
    expected: int | None
    #: Leave out instances this store already holds (``only_missing=True``).
    store: LocalStore | None


def _leave_out_stored(plan: RetrievePlan, store: LocalStore) -> tuple[RetrievePlan, int]:
    """The plan for what ``store`` does not hold yet, and how many it already holds."""
    assert plan.instances is not None
    held: set[str] = set()
    for study in {i.study_uid for i in plan.instances}:
        held |= store.instance_uids(study_uid=study)
    remaining = tuple(i for i in plan.instances if i.sop_instance_uid not in held)
    if len(remaining) == len(plan.instances):
        return plan, 0
    requests = requests_for_instances(remaining, Level.IMAGE, patient_root=False)
    return RetrievePlan(requests, remaining), len(plan.instances) - len(remaining)


def _lists_alongside(node: RemoteNode, request: _Request) -> bool:
    """Whether a C-MOVE may list while it runs: when the listing cannot change what is asked.

    The query names its level's unique key with explicit UIDs and no other key narrows it
    (only the unique keys above, explicit too); not a retry; the node retrieves on one
    association (series in parallel need the listing first); with ``only_missing``, only when
    the store holds nothing the request covers.
    """
    query = request.query
    if query is None or request.retry_of is not None or not request.check:
        return False
    level = query.level
    if query.model is InformationModel.WORKLIST or level is None or level is Level.PATIENT:
        return False
    if node.retrieve_associations > 1:
        return False
    depth = list(Level).index(level)
    allowed = [lv.unique_key for lv in list(Level)[1 : depth + 1]]
    if query.model is InformationModel.PATIENT_ROOT:
        allowed.append("PatientID")
    keys = query.matching_keys()
    if level.unique_key not in keys or set(keys) - set(allowed):
        return False
    if any(c in value for value in keys.values() for c in "*?"):
        return False
    uids = split_uids(keys[level.unique_key])
    if not uids:
        return False
    store = request.store
    if store is None:
        return True
    if level is Level.STUDY:
        return not any(store.instance_uids(study_uid=uid) for uid in uids)
    if level is Level.SERIES:
        return not any(store.instance_uids(series_uid=uid) for uid in uids)
    return False


class _Listing:
    """The completion check's listing of a C-MOVE, run on a second association meanwhile.

    :meth:`start` once the C-MOVE's association is open (a PACS serving one association at a
    time then serves the C-MOVE first); :meth:`finish` after the C-MOVE's final response gives
    the :class:`Retrieval` what the listing found. A listing refused (IMAGE-level C-FIND) falls
    back to NumberOf*RelatedInstances as :func:`_plan` does; one whose association could not
    be opened while the C-MOVE ran is tried again after it
    (``LISTING_RETRY_DELAYS``); any other failure leaves the retrieve checked by the PACS's
    counters. :meth:`stop` (cancel) aborts it.
    """

    def __init__(self, node: RemoteNode, query: Query, calling_aet: str) -> None:
        self.node, self.query, self.calling_aet = node, query, calling_aet
        #: What was found: instances (``()``: nothing), or None; and the fallback count.
        self.instances: tuple[ExpectedInstance, ...] | None = None
        self.count: int | None = None
        self._not_opened = False
        self._stopped = False
        self._finished = False
        self._assoc: Any = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="retrieve-listing", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            assoc = self._assoc
        if assoc is not None and assoc.is_established:
            assoc.abort()

    def _run(self, last: bool = False) -> None:
        """List; on failure log why (an association refused while the C-MOVE runs is tried
        again after it: logged only at the ``last`` try)."""
        try:
            self._list()
        except NetworkError as exc:
            with self._lock:
                self._not_opened = self._assoc is None and not self._stopped
            if self._stopped:
                return
            if self._not_opened and not last:
                log.info("%s: no second association while the C-MOVE runs: %s", self.node, exc)
            else:
                log.warning("listing the instances for the C-MOVE failed: %s", exc)
        except Exception:  # a bug must not take the retrieve with it
            log.exception("listing the instances for the C-MOVE failed")

    def _list(self) -> None:
        model = self.query.model
        with associate(self.node, [(model.find_uid, None)], calling_aet=self.calling_aet) as assoc:
            with self._lock:
                if self._stopped:
                    assoc.abort()
                    return
                self._assoc = assoc
            planner = Planner(assoc, self.query, charset=self.node.charset)
            try:
                instances = planner.list_instances()
            except OperationFailed as exc:
                log.warning("%s; checking the C-MOVE by count only", exc)
                self.count = planner.count()
                return
            if not instances:
                self.count = planner.count()
            self.instances = instances

    def finish(self, retrieval: Retrieval) -> None:
        """Wait for the listing (or its stop) and give ``retrieval`` what it found."""
        if self._finished:
            return
        self._finished = True
        while self._thread.is_alive() and not self._stopped:
            self._thread.join(0.1)
        # A PACS serving one association at a time may still count the C-MOVE's for a moment.
        for attempt, delay in enumerate(LISTING_RETRY_DELAYS, 1):
            if not self._not_opened or self._stopped or retrieval.token.wait(delay):
                break
            self._assoc, self._not_opened = None, False
            self._run(last=attempt == len(LISTING_RETRY_DELAYS))
        if self._stopped and retrieval.token.cancelled:
            retrieval.request_cancel()  # cancelled while listing: the retrieve ends cancelled
        retrieval.expect_listed(self.instances, self.count)  # None if it did not complete


def _prepare(
    node: RemoteNode,
    method: RetrieveMethod,
    calling_aet: str,
    request: _Request,
    timing: Timing,
    move_destination: str = "",
    list_later: bool = False,
) -> tuple[Retrieval, RetrievePlan, InformationModel]:
    """List what ``request`` covers and build the :class:`Retrieval` that will follow it.

    ``list_later``: send the request built from the query and follow it by scope; the caller
    lists alongside (:class:`_Listing`) and gives the Retrieval the result.
    """
    query, retry_of = request.query, request.retry_of
    already_stored = 0
    scope: tuple[str, set[str]] | None = None
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
        plan = _plan(node, query, calling_aet, request.check and not list_later)
        model = query.model
        if request.store is not None and plan.instances is not None:
            plan, already_stored = _leave_out_stored(plan, request.store)
            if already_stored:
                model = InformationModel.STUDY_ROOT  # IMAGE-level requests, as for a retry
        if plan.instances is None and query.level is not None:
            key = query.level.unique_key
            scope = (key, set((query.get(key) or "").split("\\")))
    one_per_uid = False
    if not _takes_uid_lists(node):
        split = tuple(single for r in plan.requests for single in split_request(r))
        one_per_uid = len(split) > len(plan.requests)
        plan = RetrievePlan(split, plan.instances, plan.count)
    expectation = Expectation(
        instances=plan.instances,
        count=plan.count if plan.count is not None else request.expected,
        scope=scope,
        already_stored=already_stored,
        one_per_uid=one_per_uid,
    )
    retrieval = Retrieval(
        node,
        method,
        calling_aet=calling_aet,
        timing=timing,
        expectation=expectation,
        move_destination=move_destination,
        query_model=model.move_uid if method is RetrieveMethod.MOVE else model.get_uid,
    )
    retrieval.cancel_grace = CANCEL_GRACE
    return retrieval, plan, model


#: Nodes (``AET@HOST:PORT``) that refused a UID list in this process: asked one UID at a time.
_REFUSED_LISTS: set[str] = set()


def _takes_uid_lists(node: RemoteNode) -> bool:
    return node.uid_lists and str(node) not in _REFUSED_LISTS


def _remember(outcome: RetrieveOutcome) -> RetrieveOutcome:
    if outcome.uid_list_refused:
        _REFUSED_LISTS.add(str(outcome.node))
    return outcome


def _audited(
    store: LocalStore, outcome: RetrieveOutcome, query: Query | None, aet: str, dest: str = ""
) -> RetrieveOutcome:
    """Record the retrieve in the store's audit trail (never fails it)."""
    audit.record_retrieve(store, outcome, query, aet, dest)
    return outcome


def _nothing_to_send(retrieval: Retrieval, plan: RetrievePlan) -> bool:
    """Cancelled before it began, or everything is already in the store (only_missing)."""
    if retrieval.token.cancelled:
        retrieval.cancel_sent = True
        return True
    return not plan.requests


def move(
    node: RemoteNode,
    query: Query | None,
    scp: StorageServer,
    *,
    on_progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    calling_aet: str | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    total_timeout: float | None = None,
    check: bool = True,
    retry_of: RetrieveOutcome | None = None,
    expected: int | None = None,
    only_missing: bool = False,
) -> RetrieveOutcome:
    """C-MOVE what ``query`` matches on ``node`` to our storage SCP ``scp`` (PS3.4 C.4.2).

    The move destination is ``scp``'s AE title; the PACS must know it with our host and port.
    ``only_missing`` leaves out the listed instances ``scp``'s store already holds.
    Returns a :class:`RetrieveOutcome`; transport failures before anything was sent raise
    :class:`~workstation.errors.NetworkError`. A DICOMweb node is retrieved from by WADO-RS
    into ``scp``'s store (:mod:`workstation.dicomweb.wado`).
    """
    if node.is_web:
        from workstation.dicomweb.wado import wado_retrieve

        outcome = wado_retrieve(
            node, query, scp.store, on_progress=on_progress, cancel=cancel,
            calling_aet=calling_aet or scp.ae_title, idle_timeout=idle_timeout,
            total_timeout=total_timeout, retry_of=retry_of, only_missing=only_missing,
        )  # fmt: skip
        return _audited(scp.store, outcome, query, calling_aet or scp.ae_title)
    if not scp.running:
        scp.start()
    aet = calling_aet or scp.ae_title
    timing = Timing(on_progress, cancel, idle_timeout, total_timeout)
    request = _Request(query, retry_of, check, expected, scp.store if only_missing else None)
    alongside = _lists_alongside(node, request)
    retrieval, plan, model = _prepare(
        node, RetrieveMethod.MOVE, aet, request, timing, scp.ae_title, list_later=alongside
    )
    retrieval.watch_sink(scp)
    unsubscribe = scp.subscribe(retrieval.on_stored)
    hint = f"port {scp.port}"
    listing: _Listing | None = None
    unregister: Callable[[], None] | None = None
    unsent = False
    try:
        if _nothing_to_send(retrieval, plan):
            return _audited(scp.store, retrieval.outcome(), query, aet, scp.ae_title)

        def open_one() -> Any:
            return associate(
                node, [(model.move_uid, None)], calling_aet=aet, dimse_timeout_none=True
            )

        def send(assoc: Any, request: Dataset, msg_id: int) -> Any:
            return assoc.send_c_move(request, scp.ae_title, model.move_uid, msg_id=msg_id)

        lanes, requests = _parallel_plan(node, plan, model)
        if lanes > 1:
            retrieval.run_parallel(open_one, requests, send, lanes)
        else:
            with open_one() as assoc:
                hint = f"{assoc.local_address}:{scp.port}"
                if alongside:
                    assert query is not None
                    listing = _Listing(node, query, aet)
                    unregister = retrieval.token.on_cancel(listing.stop)
                    listing.start()
                retrieval.run_requests(assoc, plan.requests, send)
        scp.drain()  # instances acknowledged are written before anything is counted
        if listing is not None:
            listing.finish(retrieval)
        retrieval.wait_for_stragglers()
    except NetworkError as exc:
        if alongside and listing is None:
            unsent = True
            raise  # as when the listing's association fails first: nothing was sent
        retrieval.fail(str(exc))
        if listing is not None:
            listing.finish(retrieval)  # the missing instances, for Retry
    finally:
        if unregister is not None:
            unregister()
        if listing is not None:
            listing.stop()
        if not unsent and retrieval.expecting_more():
            scp.settle(SETTLE_SECONDS)  # an instance still arriving when the PACS went away
        scp.drain()
        unsubscribe()
    return _audited(scp.store, _remember(retrieval.outcome(hint)), query, aet, scp.ae_title)


class _RoleRefused(NetworkError):
    """The PACS accepted none of the storage SOP classes with us as the SCP (C-GET)."""


def _parallel_plan(
    node: RemoteNode, plan: RetrievePlan, model: InformationModel
) -> tuple[int, tuple[Dataset, ...]]:
    """How many associations to use and the requests to spread over them.

    A study (or patient) retrieve becomes one request per series; requests for single
    instances (a retry, ``only_missing``) are already one per series and stay as they are, so
    a retry still asks only for what is missing.
    """
    if node.retrieve_associations <= 1 or plan.instances is None:
        return 1, plan.requests
    if any(r.get("QueryRetrieveLevel") == "IMAGE" for r in plan.requests):
        requests = plan.requests
    else:
        series: dict[str, list[ExpectedInstance]] = {}
        for instance in plan.instances:
            series.setdefault(instance.series_uid, []).append(instance)
        requests = tuple(
            request
            for instances in series.values()
            for request in requests_for_instances(
                instances, Level.SERIES, patient_root=model is InformationModel.PATIENT_ROOT
            )
        )
    if len(requests) < 2:
        return 1, plan.requests
    return min(node.retrieve_associations, len(requests)), requests


def _get_contexts(model: InformationModel, sop_classes: set[str]) -> list[tuple[str, Any]]:
    contexts: list[tuple[str, Any]] = [(model.get_uid, None)]
    # Without a listing that names the SOP classes, DCMTK's and pynetdicom's usual 120.
    if not sop_classes:
        from pynetdicom.presentation import StoragePresentationContexts

        sop_classes = {str(cx.abstract_syntax) for cx in StoragePresentationContexts}
    classes = sorted(sop_classes)
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
    calling_aet: str = DEFAULT_AE_TITLE,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    total_timeout: float | None = None,
    check: bool = True,
    retry_of: RetrieveOutcome | None = None,
    expected: int | None = None,
    only_missing: bool = False,
) -> RetrieveOutcome:
    """C-GET what ``query`` matches on ``node`` into ``store`` on one association (C.4.3).

    Proposes storage contexts for the SOP classes the listing found (compressed transfer
    syntaxes too) with SCP role selection, within pynetdicom's 128-context limit.
    ``only_missing`` leaves out the listed instances ``store`` already holds. A DICOMweb node
    is retrieved from by WADO-RS (:mod:`workstation.dicomweb.wado`).
    """
    if node.is_web:
        from workstation.dicomweb.wado import wado_retrieve

        outcome = wado_retrieve(
            node, query, store, on_progress=on_progress, cancel=cancel, calling_aet=calling_aet,
            idle_timeout=idle_timeout, total_timeout=total_timeout, retry_of=retry_of,
            only_missing=only_missing,
        )  # fmt: skip
        return _audited(store, outcome, query, calling_aet)
    timing = Timing(on_progress, cancel, idle_timeout, total_timeout)
    request = _Request(query, retry_of, check, expected, store if only_missing else None)
    retrieval, plan, model = _prepare(node, RetrieveMethod.GET, calling_aet, request, timing)
    sink = StoreSink(store)
    retrieval.watch_sink(sink)
    sink.subscribe(retrieval.on_stored)
    contexts = _get_contexts(model, plan.sop_classes)
    roles = [uid for uid, _ in contexts[1:]]

    def open_one() -> Any:
        return associate(
            node,
            contexts,
            calling_aet=calling_aet,
            dimse_timeout_none=True,
            scp_roles=roles,
            receiver=sink,
        )

    def send(assoc: Any, request: Dataset, msg_id: int) -> Any:
        refused = [
            uid
            for uid, _ in contexts[1:]
            if not any(cx.abstract_syntax == uid and cx.as_scp for cx in assoc.accepted_contexts)
        ]
        if set(refused) >= (plan.sop_classes or {uid for uid, _ in contexts[1:]}):
            raise _RoleRefused(
                f"{node} refused to send by C-GET (SCP role refused for "
                f"{', '.join(UID(u).name for u in refused[:3])}): use C-MOVE for this node"
            )
        return assoc.send_c_get(request, model.get_uid, msg_id=msg_id)

    try:
        if _nothing_to_send(retrieval, plan):
            return _audited(store, retrieval.outcome(), query, calling_aet)
        lanes, requests = _parallel_plan(node, plan, model)
        try:
            if lanes > 1:
                retrieval.run_parallel(open_one, requests, send, lanes)
            else:
                with open_one() as assoc:
                    retrieval.run_requests(assoc, plan.requests, send)
        except _RoleRefused as exc:
            retrieval.fail(str(exc))
            retrieval.retry_useless = True
        sink.drain()  # the last instances are written before the outcome counts them
        retrieval.wait_for_stragglers()
    except NetworkError as exc:
        retrieval.fail(str(exc))
    finally:
        if retrieval.expecting_more():
            sink.settle(SETTLE_SECONDS)
        sink.close()  # waits for the writes still owed
    return _audited(store, _remember(retrieval.outcome()), query, calling_aet)


def retry(
    outcome: RetrieveOutcome, target: StorageServer | LocalStore, **options: Any
) -> RetrieveOutcome:
    """Fetch only the instances ``outcome`` says are missing, by the same method."""
    if isinstance(target, StorageServer):
        return move(outcome.node, None, target, retry_of=outcome, **options)
    return get(outcome.node, None, target, retry_of=outcome, **options)
