"""A C-MOVE of explicit UIDs lists its instances on a second association while it runs.

The completion check's listing (C-FINDs study -> series -> image) no longer delays the C-MOVE
when it cannot change what is asked for: the query names its level's UIDs and nothing else.
These tests check, against the quirky pynetdicom PACS (tests/quirky.py), Orthanc and DCMTK
dcmqrscp, what a user sees: the C-MOVE went out before the listing ended; the outcome, its
missing list and Retry are those of a listing made first; every other query still lists first;
and the listing's failures (refused second association, a PACS that serves one association and
exits, an IMAGE-level
listing that finds nothing, a study the PACS does not hold, a cancel) never fail the retrieve
nor let it say "done" over nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

import workstation as ws
from tests.quirky import LOOPBACK, QuirkyArchive, wait_for_abort
from tests.servers import DcmqrscpServer
from workstation.demo import generate_archive
from workstation.dimse.retrieve import _lists_alongside, _Request

#: Two studies of two series of three 16x16 instances each.
CONTENT = generate_archive(
    seed=7,
    patients=2,
    studies_per_patient=(1, 1),
    series_per_study=(2, 2),
    instances_per_series=(3, 3),
)
STUDY = CONTENT.studies[0]
STUDY_UIDS = CONTENT.sop_instance_uids(STUDY.StudyInstanceUID)
QUERY = ws.Query.study(StudyInstanceUID=STUDY.StudyInstanceUID)
IDLE = 1.5
UNKNOWN_STUDY = "1.2.826.0.1.3680043.2.1125.999.7"


class ListingPacs(QuirkyArchive):
    """A QuirkyArchive that records the order of C-MOVEs and finished C-FINDs.

    ``hold_listing``: IMAGE-level C-FINDs wait until a C-MOVE has arrived (a retrieve that
    lists first would wait here ``HOLD`` seconds); ``hold_forever``: until the requestor
    aborts. ``empty_images``: IMAGE-level C-FINDs answer success with no match.
    """

    HOLD = 8.0

    def __init__(self, datasets: Any) -> None:
        super().__init__(datasets)
        self.events: list[str] = []
        self.move_arrived = threading.Event()
        self.hold_listing = False
        self.hold_forever = False
        self.empty_images = False
        self.listing_aborted = threading.Event()

    def _on_find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        level = str(event.identifier.get("QueryRetrieveLevel", ""))
        if level == "IMAGE" and self.hold_forever:
            if wait_for_abort(event, 30):
                self.listing_aborted.set()
            return
        if level == "IMAGE" and self.hold_listing:
            self.move_arrived.wait(self.HOLD)
        if level == "IMAGE" and self.empty_images:
            yield 0x0000, None
        else:
            yield from super()._on_find(event)
        self.events.append(f"find {level}")

    def _on_move(self, event: Any) -> Iterator[Any]:
        self.events.append("move")
        self.move_arrived.set()
        yield from super()._on_move(event)

    def listed_before_the_move(self) -> bool:
        return "find IMAGE" in self.events[: self.events.index("move")]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ws.LocalStore]:
    local = ws.LocalStore(tmp_path / "store", fsync=False)
    yield local
    local.close()


@pytest.fixture
def storage(store: ws.LocalStore) -> Iterator[ws.StorageServer]:
    with ws.StorageServer(ws.LocalAE("WORKSTATION", 0, LOOPBACK), store) as server:
        yield server


@pytest.fixture
def pacs(storage: ws.StorageServer) -> Iterator[ListingPacs]:
    archive = ListingPacs(CONTENT)
    archive.add_destination("WORKSTATION", LOOPBACK, storage.port)
    with archive:
        yield archive


def assert_whole_study(outcome: ws.RetrieveOutcome, store: ws.LocalStore) -> None:
    """DONE with the listing's check: every listed instance arrived, and only those."""
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert {i.sop_instance_uid for i in outcome.instances} == STUDY_UIDS
    assert outcome.expected == outcome.received == len(STUDY_UIDS)
    assert outcome.missing == ()
    assert outcome.message.startswith(f"received {len(STUDY_UIDS)} of {len(STUDY_UIDS)} ")
    assert "count only" not in outcome.message
    assert store.instance_uids() == STUDY_UIDS


# -- the window's Retrieve: the C-MOVE does not wait for the listing ------------------------------


def test_the_move_goes_out_while_the_listing_runs(
    pacs: ListingPacs, storage: ws.StorageServer, store: ws.LocalStore
) -> None:
    """As the window's queue asks (only_missing, the C-FIND's count), into an empty store:
    the PACS holds back the listing's IMAGE-level C-FIND until the C-MOVE arrives, so a
    retrieve that listed first would wait; this one ends DONE with the full listing."""
    pacs.hold_listing = True
    snapshots: list[ws.RetrieveProgress] = []
    started = time.monotonic()
    outcome = ws.move(
        pacs.node,
        QUERY,
        storage,
        idle_timeout=IDLE,
        only_missing=True,
        expected=len(STUDY_UIDS),
        on_progress=snapshots.append,
    )
    took = time.monotonic() - started

    assert not pacs.listed_before_the_move()
    assert took < ListingPacs.HOLD / 2, f"the C-MOVE waited for the listing ({took:.1f} s)"
    assert_whole_study(outcome, store)
    assert snapshots[-1].expected == len(STUDY_UIDS) and snapshots[-1].fraction == 1.0


@pytest.mark.parametrize(
    ("query", "alongside"),
    [
        (QUERY, True),
        (ws.Query.series(StudyInstanceUID="1.2.3", SeriesInstanceUID="1.2.3.4\\1.2.3.5"), True),
        (ws.Query.study(model="P", PatientID="P1", StudyInstanceUID="1.2.3"), True),
        (ws.Query.study(StudyInstanceUID="1.2.3", PatientID="P1"), False),  # narrows: study root
        (ws.Query.study(StudyInstanceUID="1.2.3", AccessionNumber="A1"), False),
        (ws.Query.study(model="P", PatientID="P*", StudyInstanceUID="1.2.3"), False),
        (ws.Query.study(PatientID="P1"), False),  # resolved to studies by the listing
        (ws.Query.patient(PatientID="P1"), False),  # not a UID
    ],
    ids=[
        "study",
        "series",
        "patient-root",
        "study-root+PatientID",
        "+accession",
        "wildcard",
        "no-uid",
        "patient",
    ],
)
def test_which_requests_list_alongside(query: ws.Query, alongside: bool) -> None:
    node = ws.RemoteNode("PACS", LOOPBACK, 104)
    assert _lists_alongside(node, _Request(query, None, True, None, None)) is alongside
    # Never without the check, nor when series go over several associations.
    assert not _lists_alongside(node, _Request(query, None, False, None, None))
    parallel = ws.RemoteNode("PACS", LOOPBACK, 104, retrieve_associations=2)
    assert not _lists_alongside(parallel, _Request(query, None, True, None, None))


def test_other_queries_still_list_first(
    pacs: ListingPacs, storage: ws.StorageServer, store: ws.LocalStore
) -> None:
    """A key besides the UIDs may narrow what the listing finds: the C-MOVE then waits for the
    listing and asks for what it found."""
    query = ws.Query.study(StudyInstanceUID=STUDY.StudyInstanceUID, PatientID=STUDY.PatientID)
    outcome = ws.move(pacs.node, query, storage, idle_timeout=IDLE)
    assert pacs.listed_before_the_move(), pacs.events
    assert_whole_study(outcome, store)


def test_parallel_series_list_first(
    pacs: ListingPacs, storage: ws.StorageServer, store: ws.LocalStore
) -> None:
    """Series over two associations need the series from the listing: it comes first."""
    parallel = ws.RemoteNode(
        pacs.ae_title, LOOPBACK, pacs.port, retrieve_associations=2, dimse_timeout=10
    )
    outcome = ws.move(parallel, QUERY, storage, idle_timeout=IDLE)
    assert pacs.listed_before_the_move(), pacs.events
    assert outcome.associations == 2
    assert_whole_study(outcome, store)


def test_only_missing_with_part_stored_lists_first(
    pacs: ListingPacs, storage: ws.StorageServer, store: ws.LocalStore
) -> None:
    """One series is already stored: the listing comes first, to leave it out of the
    C-MOVE; an empty store needs no such thing (see the first test)."""
    series = STUDY.series[0]
    query = ws.Query.series(
        StudyInstanceUID=STUDY.StudyInstanceUID, SeriesInstanceUID=series.SeriesInstanceUID
    )
    first = ws.move(pacs.node, query, storage, idle_timeout=IDLE, only_missing=True)
    assert not pacs.listed_before_the_move(), pacs.events  # nothing of it stored yet
    assert first.state is ws.RetrieveState.DONE, first.message
    pacs.events.clear()
    pacs.requests.clear()

    outcome = ws.move(pacs.node, QUERY, storage, idle_timeout=IDLE, only_missing=True)
    assert pacs.listed_before_the_move(), pacs.events
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert outcome.already_stored == len(series.instances)
    asked = {str(uid) for r in pacs.requests for uid in r.SOPInstanceUID}
    assert asked == STUDY_UIDS - {i.SOPInstanceUID for i in series.instances}
    assert store.instance_uids() == STUDY_UIDS


# -- the listing's failures -------------------------------------------------------------------


def test_second_association_refused_lists_after_the_move(
    pacs: ListingPacs, storage: ws.StorageServer, store: ws.LocalStore
) -> None:
    """A PACS that serves one association at a time refuses the listing's while the C-MOVE
    runs: the listing is made once the C-MOVE's association is released, and the retrieve
    keeps the listing's exact check."""
    assert pacs._ae is not None
    pacs._ae.maximum_associations = 1
    outcome = ws.move(pacs.node, QUERY, storage, idle_timeout=IDLE)
    assert pacs.events.index("move") < pacs.events.index("find IMAGE"), pacs.events
    assert_whole_study(outcome, store)


def test_listing_that_finds_nothing_never_says_done_with_nothing(
    pacs: ListingPacs, storage: ws.StorageServer, store: ws.LocalStore
) -> None:
    """A PACS whose IMAGE-level C-FIND finds nothing, but which moves the study: the
    instances that arrived are counted against NumberOfStudyRelatedInstances, not "of 0"."""
    pacs.empty_images = True
    outcome = ws.move(pacs.node, QUERY, storage, idle_timeout=IDLE, expected=99)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert outcome.received == len(STUDY_UIDS) == outcome.expected
    assert " of 0 " not in outcome.message and " of 99 " not in outcome.message
    assert "checked by count only" in outcome.message
    assert store.instance_uids() == STUDY_UIDS


def test_cancel_during_the_listing_ends_both(
    pacs: ListingPacs, storage: ws.StorageServer, store: ws.LocalStore
) -> None:
    """The listing hangs in its IMAGE-level C-FIND while the C-MOVE sends slowly: a cancel
    after two instances sends C-CANCEL on the C-MOVE and aborts the listing's association."""
    pacs.hold_forever = True
    pacs.delay_per_instance = 0.4
    token = ws.CancelToken()
    cancelled_at: list[float] = []

    def on_progress(progress: ws.RetrieveProgress) -> None:
        if progress.received >= 2 and not cancelled_at:
            cancelled_at.append(time.monotonic())
            token.cancel()

    outcome = ws.move(pacs.node, QUERY, storage, on_progress=on_progress, cancel=token)
    ended = time.monotonic()

    assert outcome.state is ws.RetrieveState.CANCELLED, outcome.message
    assert ended - cancelled_at[0] < 2.0
    assert pacs.cancel_seen.wait(5), "the PACS never saw the C-CANCEL"
    assert pacs.listing_aborted.wait(5), "the listing's association was not aborted"
    assert 2 <= outcome.received < len(STUDY_UIDS)
    assert store.instance_uids() < STUDY_UIDS


# -- against Orthanc and dcmqrscp ------------------------------------------------------------------


def test_orthanc_study_it_does_not_hold_is_nothing_matching(  # type: ignore[no-untyped-def]
    orthanc, store: ws.LocalStore, storage: ws.StorageServer
) -> None:
    """The window asks with the C-FIND's count; Orthanc holds no such study: the empty listing
    and the PACS's answer end the retrieve at once, FAILED, saying the PACS has nothing."""
    query = ws.Query.study(StudyInstanceUID=UNKNOWN_STUDY)
    started = time.monotonic()
    outcome = ws.move(orthanc.node, query, storage, idle_timeout=20, expected=5)
    took = time.monotonic() - started
    print(f"orthanc answered {outcome.status} -> {outcome.message}")
    assert outcome.state is ws.RetrieveState.FAILED
    assert "the PACS has nothing matching" in outcome.message
    assert outcome.received == 0 and store.instance_uids() == set()
    assert took < 5, f"waited {took:.1f} s for nothing"


def test_dcmqrscp_study_it_does_not_hold_is_nothing_matching(  # type: ignore[no-untyped-def]
    dcmqrscp, store_port: int, tmp_path: Path
) -> None:
    query = ws.Query.study(StudyInstanceUID=UNKNOWN_STUDY)
    local = ws.LocalStore(tmp_path / "store")
    with local, ws.StorageServer(ws.LocalAE("WORKSTATION", store_port, LOOPBACK), local) as scp:
        started = time.monotonic()
        outcome = ws.move(dcmqrscp.node, query, scp, idle_timeout=20, expected=5)
        took = time.monotonic() - started
    assert outcome.state is ws.RetrieveState.FAILED
    assert "the PACS has nothing matching" in outcome.message
    assert took < 5, f"waited {took:.1f} s for nothing"


def test_single_process_dcmqrscp_falls_back_to_the_count(  # type: ignore[no-untyped-def]
    archive, archive_files: list[Path], tmp_path: Path
) -> None:
    """dcmqrscp 3.6.7 --single-process serves one association, then exits: the listing's
    second association never opens. The C-MOVE (which a listing made first would have lost)
    brings the study, checked by the PACS's counters, and the retrieve does not fail."""
    study = archive.studies[3]
    want = archive.sop_instance_uids(study.StudyInstanceUID)
    refs = archive.all_instances()
    files = [p for p, ref in zip(archive_files, refs, strict=True) if ref.SOPInstanceUID in want]
    local = ws.LocalStore(tmp_path / "store")
    with local, ws.StorageServer(ws.LocalAE("WORKSTATION", 0, LOOPBACK), local) as scp:
        server = DcmqrscpServer(
            tmp_path / "dcmqrscp",
            move_destinations={"WORKSTATION": (LOOPBACK, scp.port)},
            extra_args=["--single-process"],
        )
        server.add_files(files)
        server.start()
        try:
            query = ws.Query.study(StudyInstanceUID=study.StudyInstanceUID)
            outcome = ws.move(server.node, query, scp, idle_timeout=10)
        finally:
            server.stop()
        assert outcome.state is ws.RetrieveState.DONE, outcome.message
        assert outcome.received == outcome.completed == len(want)
        assert "checked by count only" in outcome.message
        assert local.instance_uids() == want
