"""Retrieves against PACS behaviours that Orthanc and DCMTK dcmqrscp don't produce.

Each test starts our ``StorageServer`` (AE ``WORKSTATION``) on a loopback port with a fresh
``LocalStore``, and a ``QuirkyArchive`` (tests/quirky.py: a DemoArchive that answers the listing
C-FINDs properly) holding a small generated study, whose C-MOVE or C-GET misbehaves on purpose.
It then checks what a user would: the outcome's state and message, how many instances arrived,
exactly which are missing, and that the store holds exactly what really arrived (for complete
retrieves: the whole study, pixel data identical to the source).

Timeouts are short (``idle_timeout=1.5``) and every wait is on a condition with a deadline.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import _config as pynetdicom_config

import workstation as ws
from tests.quirky import (
    LOOPBACK,
    QuirkyArchive,
    send_pending,
    store_over_own_association,
    wait_for_abort,
)
from workstation.demo import StudyInfo, generate_archive
from workstation.demo.archive import PENDING
from workstation.dimse import retrieve as retrieve_module
from workstation.dimse.pynetdicom_ae import tune_pynetdicom

#: Two studies of two series of three 16x16 instances each.
CONTENT = generate_archive(
    seed=5,
    patients=2,
    studies_per_patient=(1, 1),
    series_per_study=(2, 2),
    instances_per_series=(3, 3),
)
STUDY = CONTENT.studies[0]
OTHER = CONTENT.studies[1]
STUDY_UIDS = CONTENT.sop_instance_uids(STUDY.StudyInstanceUID)
QUERY = ws.Query.study(StudyInstanceUID=STUDY.StudyInstanceUID)
IDLE = 1.5
#: Slack for the machinery around a timeout (watchdog ticks, abort, association teardown).
SLACK = 1.2


def sources(study: StudyInfo = STUDY) -> dict[str, Dataset]:
    return {ref.SOPInstanceUID: CONTENT.dataset(ref) for ref in CONTENT.all_instances([study])}


class Arrivals:
    """What really reached our storage SCP and was stored, in order, duplicates included."""

    def __init__(self, server: ws.StorageServer) -> None:
        self.uids: list[str] = []
        self._cond = threading.Condition()
        server.subscribe(self._on_stored)

    def _on_stored(self, stored: Any) -> None:
        with self._cond:
            self.uids.append(stored.sop_instance_uid)
            self._cond.notify_all()

    @property
    def set(self) -> set[str]:
        with self._cond:
            return set(self.uids)

    def wait_for(self, predicate: Callable[[set[str]], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(set(self.uids)), timeout)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ws.LocalStore]:
    local = ws.LocalStore(tmp_path / "store", fsync=False)
    yield local
    local.close()


@pytest.fixture
def storage(store: ws.LocalStore) -> Iterator[ws.StorageServer]:
    server = ws.StorageServer(ws.LocalAE("WORKSTATION", 0, LOOPBACK), store)
    with server:
        yield server


@pytest.fixture
def arrivals(storage: ws.StorageServer) -> Arrivals:
    return Arrivals(storage)


@pytest.fixture
def pacs(storage: ws.StorageServer) -> Iterator[QuirkyArchive]:
    """The quirky PACS holding CONTENT; it knows WORKSTATION at our storage port."""
    archive = QuirkyArchive(CONTENT)
    archive.add_destination("WORKSTATION", LOOPBACK, storage.port)
    with archive:
        yield archive


def assert_store_holds_exactly(store: ws.LocalStore, arrivals: Arrivals) -> None:
    assert store.instance_uids() == arrivals.set


def assert_complete(outcome: ws.RetrieveOutcome, store: ws.LocalStore) -> None:
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert outcome.expected == len(STUDY_UIDS)
    assert outcome.received == len(STUDY_UIDS)
    assert outcome.missing == ()
    assert_study_in_store(store)


def assert_study_in_store(store: ws.LocalStore) -> None:
    """The store holds the whole study, each file's pixel data identical to the source's."""
    assert store.instance_uids(study_uid=STUDY.StudyInstanceUID) == STUDY_UIDS
    for uid, source in sources().items():
        path = store.path_of(uid)
        assert path is not None, uid
        stored = dcmread(path)
        assert stored.SOPInstanceUID == uid
        assert stored.PixelData == source.PixelData, uid


def dicom_files(store: ws.LocalStore) -> list[Path]:
    """The instance files in the study tree (not the hidden bookkeeping folders)."""
    return [
        p
        for p in store.root.rglob("*.dcm")
        if not p.relative_to(store.root).parts[0].startswith(".")
    ]


def received_uids(outcome: ws.RetrieveOutcome) -> set[str]:
    """The listed instances that arrived, as the outcome tells them."""
    return {i.sop_instance_uid for i in outcome.instances} - set(outcome.missing)


# -- 1. no pending responses ----------------------------------------------------------------------


def test_no_pending_responses_progress_comes_from_received(
    pacs: QuirkyArchive, storage: ws.StorageServer, store: ws.LocalStore, arrivals: Arrivals
) -> None:
    """The PACS stores everything over its own association, then answers only the final
    success with 0 sub-operations: no counters ever, yet the retrieve is DONE and its progress
    comes from received/expected."""

    def quirk(archive: QuirkyArchive, event: Any) -> Iterator[Any]:
        archive.store_to(event, [i.dataset() for i in archive.selected(event)])
        yield archive.destination(event)
        yield 0

    pacs.move_quirk = quirk
    snapshots: list[ws.RetrieveProgress] = []
    outcome = ws.move(pacs.node, QUERY, storage, on_progress=snapshots.append, idle_timeout=IDLE)

    assert_complete(outcome, store)
    assert outcome.status is not None and outcome.status.code == 0x0000
    assert outcome.message.startswith("received 6 of 6 instances in ")
    assert snapshots, "no progress was reported"
    assert all(s.remaining is None for s in snapshots)  # the PACS never sent counters
    assert [s.received for s in snapshots if s.received] == sorted(
        s.received for s in snapshots if s.received
    )
    assert any(s.remaining is None and s.fraction == 1.0 for s in snapshots)
    assert snapshots[-1].fraction == 1.0
    assert_store_holds_exactly(store, arrivals)


# -- 2. final success before the C-STOREs ----------------------------------------------------------


def test_final_success_before_the_stores_waits_for_them(
    pacs: QuirkyArchive, storage: ws.StorageServer, store: ws.LocalStore, arrivals: Arrivals
) -> None:
    """The PACS answers success at once and sends the instances ~1 s later from a thread:
    the retrieve waits for them (within the idle timeout) and ends DONE."""
    senders: list[threading.Thread] = []
    answered = threading.Event()

    def quirk(archive: QuirkyArchive, event: Any) -> Iterator[Any]:
        datasets = [i.dataset() for i in archive.selected(event)]
        address = archive.address(event)
        assert address is not None

        def later() -> None:
            answered.wait(5)
            time.sleep(1.0)  # the PACS's behaviour, not a test wait
            store_over_own_association(address, "WORKSTATION", datasets, on_sent=archive.record)

        senders.append(threading.Thread(target=later, daemon=True))
        senders[0].start()
        yield archive.destination(event)
        answered.set()
        yield 0

    pacs.move_quirk = quirk
    outcome = ws.move(pacs.node, QUERY, storage, idle_timeout=IDLE)
    for sender in senders:
        sender.join(10)

    assert_complete(outcome, store)
    assert outcome.status is not None and outcome.status.code == 0x0000
    assert outcome.completed == 0  # the PACS claimed nothing; we counted what arrived
    assert arrivals.set == STUDY_UIDS
    assert_store_holds_exactly(store, arrivals)


def test_without_listing_success_before_the_stores_is_not_done_with_nothing(
    pacs: QuirkyArchive, storage: ws.StorageServer, store: ws.LocalStore, arrivals: Arrivals
) -> None:
    """Many PACS refuse IMAGE-level C-FIND: the listing fails, the retrieve goes on without a
    completion check. If that PACS also answers success before its C-STOREs, the user must
    not be told DONE while none of the study has arrived."""
    release = threading.Event()
    senders: list[threading.Thread] = []

    def quirk(archive: QuirkyArchive, event: Any) -> Iterator[Any]:
        datasets = [i.dataset() for i in archive.selected(event)]
        address = archive.address(event)
        assert address is not None

        def later() -> None:
            if release.wait(20):
                store_over_own_association(address, "WORKSTATION", datasets)

        senders.append(threading.Thread(target=later, daemon=True))
        senders[0].start()
        yield archive.destination(event)
        yield 0

    pacs.refuse_find_levels = {"IMAGE"}
    pacs.move_quirk = quirk
    timer = threading.Timer(1.0, release.set)  # the PACS's queue delay
    timer.start()
    try:
        outcome = ws.move(pacs.node, QUERY, storage, idle_timeout=IDLE)
    finally:
        release.set()
        timer.cancel()
        for sender in senders:
            sender.join(10)
    # No listing (the PACS refused IMAGE-level C-FIND): the count comes from the study's
    # NumberOfStudyRelatedInstances, and the retrieve waits for that many.
    assert outcome.instances == ()
    assert outcome.expected == len(STUDY_UIDS)
    assert not (outcome.state is ws.RetrieveState.DONE and outcome.received < len(STUDY_UIDS)), (
        f"{outcome.state}: {outcome.message}"
    )
    assert outcome.state is ws.RetrieveState.DONE and outcome.received == len(STUDY_UIDS)
    assert "count" in outcome.message
    assert arrivals.set == STUDY_UIDS


# -- 3. pending forever / silent ---------------------------------------------------------------


def test_pending_forever_ends_at_the_total_timeout(
    pacs: QuirkyArchive, storage: ws.StorageServer, store: ws.LocalStore, arrivals: Arrivals
) -> None:
    """One instance, then Pending responses every 0.3 s for ever: the total timeout aborts
    the association; PARTIAL with the other five missing, the message names the timeout."""

    def quirk(archive: QuirkyArchive, event: Any) -> Iterator[Any]:
        instances = archive.selected(event)
        yield archive.destination(event)
        yield len(instances)
        archive.record(instances[0].sop_instance_uid)
        yield PENDING, instances[0].dataset()
        while not wait_for_abort(event, 0.3):
            send_pending(event, remaining=len(instances) - 1, completed=1)
        archive.peer_abort.set()

    pacs.move_quirk = quirk
    total = 2.0
    outcome = ws.move(pacs.node, QUERY, storage, idle_timeout=IDLE, total_timeout=total)

    assert outcome.state is ws.RetrieveState.PARTIAL, outcome.message
    assert f"no final response within {total:g} s" in outcome.message
    assert "5 instances missing" in outcome.message
    assert total <= outcome.seconds < total + SLACK
    assert outcome.received == 1
    first = pacs.sent[0]
    assert set(outcome.missing) == STUDY_UIDS - {first} and len(outcome.missing) == 5
    assert pacs.peer_abort.wait(5), "the PACS never saw the abort"
    assert pacs.aborted.wait(5)
    assert arrivals.set == {first}
    assert_store_holds_exactly(store, arrivals)


def test_silent_pacs_ends_at_the_idle_timeout(
    pacs: QuirkyArchive, storage: ws.StorageServer, store: ws.LocalStore, arrivals: Arrivals
) -> None:
    """The PACS accepts the C-MOVE and then says nothing: the idle timeout aborts it."""

    def quirk(archive: QuirkyArchive, event: Any) -> Iterator[Any]:
        yield archive.destination(event)
        if wait_for_abort(event, 30):
            archive.peer_abort.set()
        yield 0  # never reached in time: the association is gone

    pacs.move_quirk = quirk
    outcome = ws.move(pacs.node, QUERY, storage, idle_timeout=IDLE, total_timeout=30)

    assert outcome.state is ws.RetrieveState.FAILED, outcome.message
    assert f"no response and no instance for {IDLE:g} s" in outcome.message
    assert IDLE <= outcome.seconds < IDLE + SLACK
    assert outcome.received == 0
    assert set(outcome.missing) == STUDY_UIDS and len(outcome.missing) == len(STUDY_UIDS)
    assert pacs.peer_abort.wait(5), "the PACS never saw the abort"
    assert store.instance_uids() == set() == arrivals.set


# -- 4. abort mid-transfer, then retry --------------------------------------------------------


def abort_after(count: int) -> Callable[[QuirkyArchive, Any], Iterator[Any]]:
    """A C-MOVE that sends ``count`` instances, then aborts the association."""

    def quirk(archive: QuirkyArchive, event: Any) -> Iterator[Any]:
        instances = archive.selected(event)
        yield archive.destination(event)
        yield len(instances)
        for instance in instances[:count]:
            archive.record(instance.sop_instance_uid)
            yield PENDING, instance.dataset()
        event.assoc.abort()

    return quirk


def test_abort_mid_transfer_then_retry_fetches_only_the_missing(
    pacs: QuirkyArchive, storage: ws.StorageServer, store: ws.LocalStore, arrivals: Arrivals
) -> None:
    pacs.move_quirk = abort_after(2)
    outcome = ws.move(pacs.node, QUERY, storage, idle_timeout=IDLE)

    assert outcome.state is ws.RetrieveState.PARTIAL, outcome.message
    assert outcome.message.startswith("received 2 of 6 instances in ")
    assert str(pacs.node) in outcome.message
    assert "4 instances missing (retry fetches only those)" in outcome.message
    assert outcome.received == 2
    assert set(outcome.missing) == STUDY_UIDS - set(pacs.sent) and len(outcome.missing) == 4
    assert store.instance_uids() == set(pacs.sent) == arrivals.set

    # The PACS is well-behaved again (same node, same data): retry asks only for the missing.
    pacs.move_quirk = None
    sent_before, stores_before = len(pacs.sent), storage.received
    again = ws.retry(outcome, storage, idle_timeout=IDLE)

    assert again.state is ws.RetrieveState.DONE, again.message
    assert again.expected == again.received == len(outcome.missing)
    resent = pacs.sent[sent_before:]
    assert len(resent) == len(outcome.missing)  # C-STOREs the PACS sent on retry
    assert set(resent) == set(outcome.missing)
    assert storage.received - stores_before == len(outcome.missing)
    assert_study_in_store(store)
    assert_store_holds_exactly(store, arrivals)


def test_pacs_abort_is_reported_as_an_abort(pacs: QuirkyArchive, storage: ws.StorageServer) -> None:
    pacs.move_quirk = abort_after(2)
    outcome = ws.move(pacs.node, QUERY, storage, idle_timeout=IDLE)
    assert outcome.state is ws.RetrieveState.PARTIAL
    assert f"{pacs.node} aborted the association" in outcome.message


# -- 5. 0xB000: some sub-operations fail -------------------------------------------------------


def _hostile_copies() -> list[Dataset]:
    """Copies of a real instance whose UIDs our store must refuse to use as paths."""
    base = CONTENT.dataset(CONTENT.all_instances([STUDY])[0])
    hostile = []
    for sop_uid, series_uid in (
        ("../../../../../escaped", None),  # would land in tmp_path itself
        ("1.2.3.x", None),
        (str(generate_uid()), "../../../../outside"),
    ):
        ds = copy.deepcopy(base)
        ds.SOPInstanceUID = sop_uid
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        if series_uid:
            ds.SeriesInstanceUID = series_uid
        hostile.append(ds)
    return hostile


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning")
def test_b000_partial_lists_failed_uids_and_writes_nothing_outside_the_store(
    tmp_path: Path,
    storage: ws.StorageServer,
    store: ws.LocalStore,
    arrivals: Arrivals,
) -> None:
    hostile = _hostile_copies()
    hostile_uids = {str(ds.SOPInstanceUID) for ds in hostile}
    datasets = [ds for _, ds in CONTENT.datasets([STUDY])] + hostile
    before = {p for p in tmp_path.rglob("*")}
    with QuirkyArchive(datasets) as archive:
        archive.add_destination("WORKSTATION", LOOPBACK, storage.port)
        outcome = ws.move(archive.node, QUERY, storage, idle_timeout=IDLE)

    assert outcome.state is ws.RetrieveState.PARTIAL, outcome.message
    assert outcome.status is not None and outcome.status.code == 0xB000
    assert outcome.expected == len(STUDY_UIDS) + len(hostile)
    assert outcome.received == len(STUDY_UIDS)
    assert set(outcome.failed_uids) == hostile_uids and len(outcome.failed_uids) == 3
    assert set(outcome.missing) == hostile_uids and len(outcome.missing) == 3
    assert outcome.failed == 3
    assert "3 instances missing" in outcome.message
    assert store.instance_uids() == STUDY_UIDS == arrivals.set

    root = store.root.resolve()
    new = {p for p in tmp_path.rglob("*")} - before
    outside = [p for p in new if not p.resolve().is_relative_to(root)]
    assert outside == []
    assert not (tmp_path / "escaped.dcm").exists()
    assert not any("escaped" in p.name or "outside" in p.name for p in tmp_path.rglob("*"))
    assert not any((store.root / ".incoming").glob("*"))  # no temporary file left behind
    assert {p.stem for p in dicom_files(store)} == STUDY_UIDS


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI:UserWarning")
def test_b000_partial_ends_at_once_and_says_what_the_pacs_reported(
    storage: ws.StorageServer,
) -> None:
    datasets = [ds for _, ds in CONTENT.datasets([STUDY])] + _hostile_copies()
    with QuirkyArchive(datasets) as archive:
        archive.add_destination("WORKSTATION", LOOPBACK, storage.port)
        outcome = ws.move(archive.node, QUERY, storage, idle_timeout=IDLE)
    assert outcome.state is ws.RetrieveState.PARTIAL
    assert len(outcome.failed_uids) == len(outcome.missing) == 3
    assert outcome.seconds < IDLE  # every missing instance was reported failed: nothing to wait for
    assert "0xB000" in outcome.message
    assert "no instance for" not in outcome.message


# -- 6. 0xA801 move destination unknown -----------------------------------------------------------


def test_a801_unknown_destination_says_what_to_configure(
    storage: ws.StorageServer, store: ws.LocalStore
) -> None:
    with QuirkyArchive(CONTENT) as archive:  # knows no move destination at all
        outcome = ws.move(archive.node, QUERY, storage, idle_timeout=IDLE)

    assert outcome.state is ws.RetrieveState.FAILED
    assert outcome.status is not None and outcome.status.code == 0xA801
    assert outcome.message == (
        "the PACS does not know AE WORKSTATION as a move destination; "
        f"add WORKSTATION at {LOOPBACK}:{storage.port} to its configuration"
    )
    assert outcome.received == 0
    assert set(outcome.missing) == STUDY_UIDS
    assert store.instance_uids() == set()


def test_dcmqrscp_unknown_destination(dcmqrscp: Any, archive: Any, tmp_path: Path) -> None:
    """DCMTK dcmqrscp knows WORKSTATION and STORESCP only; we ask it to move to STRANGER."""
    study = archive.studies[0]
    with ws.LocalStore(tmp_path / "stranger") as local:
        server = ws.StorageServer(ws.LocalAE("STRANGER", 0, LOOPBACK), local)
        with server:
            outcome = ws.move(
                dcmqrscp.node,
                ws.Query.study(StudyInstanceUID=study.StudyInstanceUID),
                server,
                idle_timeout=IDLE,
                total_timeout=20,
            )
            port = server.port
        assert local.instance_uids() == set()
    print(f"dcmqrscp answered {outcome.status} -> {outcome.message}")
    assert outcome.state is ws.RetrieveState.FAILED
    assert outcome.received == 0
    assert outcome.status is not None
    assert outcome.status.code == 0xA801
    assert outcome.message == (
        "the PACS does not know AE STRANGER as a move destination; "
        f"add STRANGER at {LOOPBACK}:{port} to its configuration"
    )


# -- 7. C-GET role refused ----------------------------------------------------------------------


def test_get_with_storage_role_refused_says_use_move(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # tune_pynetdicom() turns on pynetdicom's process-wide unrestricted storage, under which
    # every acceptor in the process grants any role; this PACS must be able to refuse.
    tune_pynetdicom()
    monkeypatch.setattr(pynetdicom_config, "UNRESTRICTED_STORAGE_SERVICE", False)
    with QuirkyArchive(CONTENT) as archive, ws.LocalStore(tmp_path / "get") as local:
        archive.refuse_storage_roles()
        outcome = ws.get(archive.node, QUERY, local, idle_timeout=IDLE, total_timeout=10)
        assert local.instance_uids() == set()
        assert archive.gets == 0  # nothing was asked that could not be answered
    assert outcome.state is ws.RetrieveState.FAILED, outcome.message
    assert "refused to send by C-GET" in outcome.message
    assert "SCP role refused" in outcome.message
    assert "use C-MOVE" in outcome.message
    assert outcome.received == 0
    assert set(outcome.missing) == STUDY_UIDS


# -- 8. port already in use ----------------------------------------------------------------------


def test_port_in_use_names_port_program_and_fix(store: ws.LocalStore) -> None:
    import socket

    holder = socket.socket()
    holder.bind((LOOPBACK, 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        server = ws.StorageServer(ws.LocalAE("WORKSTATION", port, LOOPBACK), store)
        with pytest.raises(ws.PortInUse) as info:
            server.start()
        assert not server.running
    finally:
        holder.close()
    message = str(info.value)
    program = Path("/proc/self/comm").read_text().strip()
    assert f"port {port}" in message
    assert f"{program} (pid {os.getpid()})" in message
    assert "choose another port" in message and "--port" in message


# -- 9. cancel ----------------------------------------------------------------------------------


def _cancel_after(token: ws.CancelToken, count: int) -> tuple[Callable[[Any], None], list[float]]:
    """An on_progress callback that cancels from another thread once ``count`` arrived."""
    reached = threading.Event()
    when: list[float] = []

    def canceller() -> None:
        if reached.wait(20):
            when.append(time.monotonic())
            token.cancel()

    threading.Thread(target=canceller, daemon=True).start()

    def on_progress(progress: ws.RetrieveProgress) -> None:
        if progress.received >= count:
            reached.set()

    return on_progress, when


def test_cancel_stops_a_slow_move_promptly(
    pacs: QuirkyArchive, storage: ws.StorageServer, store: ws.LocalStore, arrivals: Arrivals
) -> None:
    pacs.delay_per_instance = 0.6  # 3.6 s for the study
    token = ws.CancelToken()
    on_progress, when = _cancel_after(token, 2)
    start = time.monotonic()
    outcome = ws.move(pacs.node, QUERY, storage, on_progress=on_progress, cancel=token)
    end = time.monotonic()

    assert outcome.state is ws.RetrieveState.CANCELLED, outcome.message
    assert outcome.message.startswith("cancelled; received ")
    assert pacs.cancel_seen.is_set(), "the PACS never saw the C-CANCEL"
    assert end - when[0] < 1.0  # promptly: the PACS answered the cancel
    assert end - start < 6 * pacs.delay_per_instance
    assert 2 <= outcome.received < len(STUDY_UIDS)
    assert outcome.status is not None and outcome.status.code == 0xFE00
    arrived = received_uids(outcome)
    assert len(arrived) == outcome.received
    assert arrived == arrivals.set < STUDY_UIDS
    assert set(outcome.missing) == STUDY_UIDS - arrived
    assert_store_holds_exactly(store, arrivals)


def test_cancel_ignored_by_the_pacs_aborts_after_the_grace(
    monkeypatch: pytest.MonkeyPatch,
    pacs: QuirkyArchive,
    storage: ws.StorageServer,
    store: ws.LocalStore,
    arrivals: Arrivals,
) -> None:
    # retrieve._prepare reads CANCEL_GRACE when each retrieve starts (not at import).
    monkeypatch.setattr(retrieve_module, "CANCEL_GRACE", 0.5)
    pacs.ignore_cancel = True
    pacs.delay_per_instance = 0.9
    token = ws.CancelToken()
    on_progress, when = _cancel_after(token, 2)
    outcome = ws.move(pacs.node, QUERY, storage, on_progress=on_progress, cancel=token)
    end = time.monotonic()

    assert outcome.state is ws.RetrieveState.CANCELLED, outcome.message
    assert pacs.cancel_seen.wait(5), "the PACS never saw the C-CANCEL"
    assert pacs.peer_abort.wait(5), "the PACS never saw the abort"
    assert 0.5 <= end - when[0] < 0.5 + SLACK
    assert outcome.status is None  # no final response: we aborted
    assert 2 <= outcome.received < len(STUDY_UIDS)
    # Whatever was in flight when we aborted is still stored; the PACS sends nothing more.
    arrived = received_uids(outcome)
    assert arrived <= arrivals.set <= set(pacs.sent)
    assert_store_holds_exactly(store, arrivals)


# -- 10. unsolicited, duplicate and late instances -------------------------------------------------


def test_late_unsolicited_and_duplicate_instances_are_kept_once(
    pacs: QuirkyArchive, storage: ws.StorageServer, store: ws.LocalStore, arrivals: Arrivals
) -> None:
    """The PACS sends one instance twice and one of another study, answers success with two
    instances still missing, and sends those only after our retrieve has given up."""
    release = threading.Event()
    senders: list[threading.Thread] = []
    unsolicited = CONTENT.dataset(CONTENT.all_instances([OTHER])[0])

    def quirk(archive: QuirkyArchive, event: Any) -> Iterator[Any]:
        instances = archive.selected(event)
        now, late = instances[:4], instances[4:]
        address = archive.address(event)
        assert address is not None
        items = [now[0].dataset(), *(i.dataset() for i in now), unsolicited]

        def later() -> None:
            if release.wait(20):
                store_over_own_association(
                    address, "WORKSTATION", [i.dataset() for i in late], on_sent=archive.record
                )

        senders.append(threading.Thread(target=later, daemon=True))
        senders[0].start()
        yield archive.destination(event)
        yield len(items)
        for ds in items:
            archive.record(str(ds.SOPInstanceUID))
            yield PENDING, ds

    pacs.move_quirk = quirk
    outcome = ws.move(pacs.node, QUERY, storage, idle_timeout=IDLE)

    late_uids = STUDY_UIDS - received_uids(outcome)
    assert outcome.state is ws.RetrieveState.PARTIAL, outcome.message
    assert outcome.received == 4  # the duplicate and the unsolicited one are not counted
    assert len(outcome.missing) == 2 and set(outcome.missing) == late_uids
    assert f"no instance for {IDLE:g} s" in outcome.message
    assert "2 instances missing" in outcome.message

    release.set()  # the retrieve is over: now the stragglers come
    assert arrivals.wait_for(lambda got: late_uids <= got, 10), "late instances never arrived"
    for sender in senders:
        sender.join(10)
    assert store.instance_uids(study_uid=STUDY.StudyInstanceUID) == STUDY_UIDS
    assert store.instance_uids(study_uid=OTHER.StudyInstanceUID) == {
        str(unsolicited.SOPInstanceUID)
    }
    assert_store_holds_exactly(store, arrivals)
    duplicated = pacs.sent[0]
    assert arrivals.uids.count(duplicated) == 2  # it really was stored twice
    files = dicom_files(store)
    assert len(files) == len(STUDY_UIDS) + 1
    assert [p for p in files if p.stem == duplicated] == [store.path_of(duplicated)]
    for uid, source in sources().items():
        assert dcmread(store.path_of(uid)).PixelData == source.PixelData


# -- progress counters ---------------------------------------------------------------------------


def test_progress_counters_after_the_final_response(
    pacs: QuirkyArchive, storage: ws.StorageServer, store: ws.LocalStore
) -> None:
    """A well-behaved PACS: the last progress snapshot (after the final response) must show
    the PACS's own totals, 6 completed, not twice that."""
    snapshots: list[ws.RetrieveProgress] = []
    outcome = ws.move(pacs.node, QUERY, storage, on_progress=snapshots.append, idle_timeout=IDLE)
    assert_complete(outcome, store)
    assert outcome.completed == 6
    last = snapshots[-1]
    assert last.fraction == 1.0
    assert last.completed == 6, f"progress says {last.completed} completed of 6"
