"""Retrieves that work with every Q/R SCP: beyond a single UID, and errors that tell the truth.

Against real dcmqrscp and Orthanc where they show the behaviour (dcmqrscp answers a
multi-valued PatientID with success and no sub-operation), and against ``QuirkyArchive``
(tests/quirky.py) for SCPs we cannot run: one that refuses UID lists, one that answers one
match per instance at every level. A full disk is a real tmpfs (root only).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import workstation as ws
from tests.quirky import LOOPBACK, QuirkyArchive
from workstation.demo import Archive, DemoArchive, generate_archive
from workstation.dimse import retrieve as retrieve_module
from workstation.dimse.outcome import ExpectedInstance
from workstation.dimse.wire import negotiation
from workstation.dimse.wire.assoc_pdu import AssociateAC, AssociateRQ, PresentationContextRQ

#: Three patients, one study each, two series of three instances.
CONTENT = generate_archive(
    seed=9,
    patients=3,
    studies_per_patient=(1, 1),
    series_per_study=(2, 2),
    instances_per_series=(3, 3),
)
ALL_UIDS = {ref.SOPInstanceUID for ref in CONTENT.all_instances()}
#: Generous: these tests check what arrives, not how fast (CI runs them on a busy machine).
IDLE = 8.0


@pytest.fixture(autouse=True)
def _forget_refused_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a node refused is remembered per process: every test starts afresh."""
    monkeypatch.setattr(retrieve_module, "_REFUSED_LISTS", set())


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ws.LocalStore]:
    with ws.LocalStore(tmp_path / "store", fsync=False) as local:
        yield local


@pytest.fixture
def storage(store: ws.LocalStore) -> Iterator[ws.StorageServer]:
    with ws.StorageServer(ws.LocalAE("WORKSTATION", 0, LOOPBACK), store) as server:
        yield server


@pytest.fixture
def pacs(storage: ws.StorageServer) -> Iterator[QuirkyArchive]:
    archive = QuirkyArchive(CONTENT)
    archive.add_destination("WORKSTATION", LOOPBACK, storage.port)
    with archive:
        yield archive


def _unique_key_values(request: Any) -> list[str]:
    """The UIDs a C-MOVE/C-GET identifier names at its level (decoded by pynetdicom)."""
    key = ws.Level(str(request.QueryRetrieveLevel)).unique_key
    value = request.get(key)
    values = [value] if isinstance(value, str) else list(value or [])
    return [str(v) for v in values if str(v)]


# -- 1. PATIENT level: one request per patient -------------------------------------------------


def test_patient_retrieve_of_several_patients_from_dcmqrscp(  # type: ignore[no-untyped-def]
    dcmqrscp, store_port: int, archive: Archive, tmp_path: Path
) -> None:
    """dcmqrscp answers a multi-valued PatientID with success and no sub-operation: each
    patient must be asked for on its own, and every instance of both must arrive."""
    matched = sorted({s.PatientID for s in archive.studies if s.PatientID.startswith("TB1-00001")})
    assert len(matched) > 1
    want = {r.SOPInstanceUID for r in archive.all_instances() if r.study.PatientID in matched}
    with ws.LocalStore(tmp_path / "store") as local:
        scp = ws.StorageServer(ws.LocalAE("WORKSTATION", store_port, LOOPBACK), local)
        with scp:
            listed = ws.move(dcmqrscp.node, ws.Query.patient(PatientID="TB1-00001*"), scp)
        local.flush()
        assert local.instance_uids() == want
    # Without the listing: a multi-valued PatientID goes out as one request per patient.
    first, second = matched[:2]
    pair = {r.SOPInstanceUID for r in archive.all_instances() if r.study.PatientID in matched[:2]}
    with ws.LocalStore(tmp_path / "other") as local:
        unlisted = ws.get(
            dcmqrscp.node,
            ws.Query.patient(PatientID=f"{first}\\{second}"),
            local,
            check=False,
            expected=len(pair),
        )
        local.flush()
        assert local.instance_uids() == pair
    assert listed.state is ws.RetrieveState.DONE, listed.message
    assert listed.received == len(want)
    assert unlisted.state is ws.RetrieveState.DONE, unlisted.message


def test_patient_requests_name_one_patient_each() -> None:
    instances = [
        ExpectedInstance("1.1", "1.1.1", f"1.1.1.{n}", patient_id=pid)
        for n, pid in enumerate(["A", "B", "A", "C"])
    ]
    from workstation.dimse.plan import requests_for_instances, requests_for_query

    requests = requests_for_instances(instances, ws.Level.PATIENT, patient_root=True)
    assert [r.PatientID for r in requests] == ["A", "B", "C"]
    split = requests_for_query(ws.Query.patient(PatientID="A\\B"))
    assert [r.PatientID for r in split] == ["A", "B"]


# -- 2. UID lists refused: one request per UID, remembered --------------------------------------


@pytest.mark.parametrize("code", [0xC000, 0xA801])
def test_refused_uid_list_falls_back_to_one_request_per_uid(
    pacs: QuirkyArchive, storage: ws.StorageServer, store: ws.LocalStore, code: int
) -> None:
    """A study-level retrieve resolved from a name sends a list of StudyInstanceUIDs; this SCP
    refuses lists (0xC000, or 0xA801 as a crashing one answers): the studies are asked for one
    at a time, all arrive, the outcome says so, and the next retrieve skips the list."""

    def quirk(archive: QuirkyArchive, event: Any) -> Iterator[Any]:
        if len(_unique_key_values(event.identifier)) > 1:
            yield archive.destination(event)
            yield code, None
            return
        yield from DemoArchive._on_move(archive, event)

    pacs.move_quirk = quirk
    query = ws.Query.study(PatientName="*")
    outcome = ws.move(pacs.node, query, storage, idle_timeout=IDLE)
    store.flush()

    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert store.instance_uids() == ALL_UIDS
    assert outcome.uid_list_refused and outcome.one_per_uid
    assert "refused a request naming 3 study UIDs" in outcome.message
    assert [len(_unique_key_values(r)) for r in pacs.requests] == [3, 1, 1, 1]

    # The node is remembered as one that takes no lists: no refused request this time.
    pacs.requests.clear()
    again = ws.move(pacs.node, query, storage, idle_timeout=IDLE)
    assert again.state is ws.RetrieveState.DONE, again.message
    assert [len(_unique_key_values(r)) for r in pacs.requests] == [1, 1, 1]
    assert again.one_per_uid and not again.uid_list_refused
    assert "one request per UID" in again.message


def test_node_marked_one_uid_per_request_never_sends_a_list(
    pacs: QuirkyArchive, store: ws.LocalStore
) -> None:
    node = pacs.node.with_options(uid_lists=False)
    outcome = ws.get(node, ws.Query.study(PatientName="*"), store, idle_timeout=IDLE)
    store.flush()
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert store.instance_uids() == ALL_UIDS
    assert [len(_unique_key_values(r)) for r in pacs.requests] == [1, 1, 1]
    assert outcome.one_per_uid and not outcome.uid_list_refused


def test_a_list_the_pacs_takes_stays_one_request(
    pacs: QuirkyArchive, storage: ws.StorageServer, store: ws.LocalStore
) -> None:
    outcome = ws.move(pacs.node, ws.Query.study(PatientName="*"), storage, idle_timeout=IDLE)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert [len(_unique_key_values(r)) for r in pacs.requests] == [3]
    assert not outcome.one_per_uid


# -- 3. nothing matched: stop at once ------------------------------------------------------------


@pytest.mark.parametrize("method", ["move", "get"])
def test_no_check_retrieve_of_nothing_stops_at_once(  # type: ignore[no-untyped-def]
    dcmqrscp, store_port: int, tmp_path: Path, method: str
) -> None:
    """dcmqrscp answers a UID it does not hold with success and zero sub-operations: even
    without the listing, the retrieve ends at once and says the PACS has nothing."""
    query = ws.Query.study(StudyInstanceUID="1.2.826.0.1.3680043.2.1125.999.1")
    with ws.LocalStore(tmp_path / "store") as local:
        started = time.monotonic()
        if method == "move":
            scp = ws.StorageServer(ws.LocalAE("WORKSTATION", store_port, LOOPBACK), local)
            with scp:
                outcome = ws.move(dcmqrscp.node, query, scp, check=False, idle_timeout=20)
        else:
            outcome = ws.get(dcmqrscp.node, query, local, check=False, idle_timeout=20)
        took = time.monotonic() - started
    assert outcome.state is ws.RetrieveState.FAILED
    assert "the PACS has nothing matching" in outcome.message
    assert took < 5, f"waited {took:.1f} s for nothing"


# -- 4. listing de-duplicated ---------------------------------------------------------------------


def test_listing_asks_once_per_study_and_series_when_matches_repeat(
    pacs: QuirkyArchive, storage: ws.StorageServer, store: ws.LocalStore
) -> None:
    """An SCP answering one match per instance at every level: the listing of a patient
    retrieve sends one C-FIND per study and series, not one per duplicate."""
    pacs.repeat_matches = 6
    patient = CONTENT.studies[0].PatientID
    outcome = ws.move(pacs.node, ws.Query.patient(PatientID=patient), storage, idle_timeout=IDLE)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert outcome.expected == 6
    # resolve the patient, its one study, the study's series, then two series listings
    assert pacs.finds == 1 + 1 + 1 + 2


# -- 5. deflate ------------------------------------------------------------------------------------


def test_cget_does_not_offer_deflate_and_our_scp_prefers_other_syntaxes() -> None:
    deflate = negotiation.DEFLATED_EXPLICIT_VR_LE
    assert deflate not in retrieve_module.GET_TRANSFER_SYNTAXES
    ct = "1.2.840.10008.5.1.4.1.1.2"
    request = AssociateRQ(
        called_ae="WORKSTATION",
        calling_ae="PACS",
        contexts=[PresentationContextRQ(1, ct, [deflate, negotiation.EXPLICIT_VR_LE])],
    )
    answer, agreed = negotiation.accept(request.encode()[6:], our_aet="WORKSTATION", max_pdu=0)
    assert agreed.contexts[1] == (ct, negotiation.EXPLICIT_VR_LE)
    assert AssociateAC.decode(answer[6:]).contexts[0].transfer_syntax == negotiation.EXPLICIT_VR_LE


# -- errors that tell the truth -------------------------------------------------------------------


@contextlib.contextmanager
def tiny_disk(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {exc}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_during_a_retrieve_names_our_disk_as_the_cause(
    storage: ws.StorageServer, tmp_path: Path
) -> None:
    """Our store on a 300 kB tmpfs: the PACS's sub-operations fail because we cannot write,
    and the outcome says so first, not 'the PACS could not process the request'."""
    big = generate_archive(
        seed=4,
        patients=1,
        studies_per_patient=(1, 1),
        series_per_study=(1, 1),
        instances_per_series=(12, 12),
        rows=160,
        columns=160,
    )
    with tiny_disk(tmp_path / "disk", "300k") as disk, ws.LocalStore(disk / "store") as local:
        server = ws.StorageServer(ws.LocalAE("WORKSTATION", 0, LOOPBACK), local)
        with server, QuirkyArchive(big) as archive:
            archive.add_destination("WORKSTATION", LOOPBACK, server.port)
            study = big.studies[0].StudyInstanceUID
            outcome = ws.move(
                archive.node, ws.Query.study(StudyInstanceUID=study), server, idle_timeout=IDLE
            )
            local.flush()
            stored = local.instance_uids()
    assert outcome.state in (ws.RetrieveState.PARTIAL, ws.RetrieveState.FAILED)
    assert outcome.write_failures > 0
    assert outcome.message.split("; ")[1].startswith("our local store could not write")
    assert "No space left on device" in outcome.message
    assert "could not process" not in outcome.message
    assert outcome.write_failures == len(outcome.missing) > 0
    assert outcome.received + len(outcome.missing) == 12
    assert stored <= set(big.sop_instance_uids(study))
    print(outcome.message)


def test_get_role_refused_does_not_promise_a_retry(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pynetdicom import _config as pynetdicom_config

    from workstation.dimse.pynetdicom_ae import tune_pynetdicom

    tune_pynetdicom()
    monkeypatch.setattr(pynetdicom_config, "UNRESTRICTED_STORAGE_SERVICE", False)
    with QuirkyArchive(CONTENT) as archive, ws.LocalStore(tmp_path / "get") as local:
        archive.refuse_storage_roles()
        study = CONTENT.studies[0].StudyInstanceUID
        outcome = ws.get(archive.node, ws.Query.study(StudyInstanceUID=study), local)
    assert "use C-MOVE for this node" in outcome.message
    assert "retry" not in outcome.message.lower()
    assert "6 instances not retrieved" in outcome.message


def test_instances_nobody_asked_for_are_mentioned(
    pacs: QuirkyArchive, storage: ws.StorageServer, store: ws.LocalStore
) -> None:
    first, other = CONTENT.studies[0], CONTENT.studies[1]
    extra = CONTENT.dataset(CONTENT.all_instances([other])[0])

    def quirk(archive: QuirkyArchive, event: Any) -> Iterator[Any]:
        responses = DemoArchive._on_move(archive, event)
        yield next(responses)  # the destination
        yield next(responses) + 1  # the sub-operation count
        yield from responses
        yield 0xFF00, extra

    pacs.move_quirk = quirk
    outcome = ws.move(
        pacs.node,
        ws.Query.study(StudyInstanceUID=first.StudyInstanceUID),
        storage,
        idle_timeout=IDLE,
    )
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert outcome.unrequested == 1
    assert "1 instance nobody asked for also arrived and was stored" in outcome.message
    store.flush()
    assert str(extra.SOPInstanceUID) in store.instance_uids()


def test_cli_remembers_a_node_that_refuses_uid_lists(tmp_path: Path) -> None:
    from tests.servers import free_port
    from tests.test_retrieve import run_cli

    def quirk(archive: QuirkyArchive, event: Any) -> Iterator[Any]:
        if len(_unique_key_values(event.identifier)) > 1:
            yield archive.destination(event)
            yield 0xC000, None
            return
        yield from DemoArchive._on_move(archive, event)

    port = free_port()
    config = tmp_path / "config"
    with QuirkyArchive(CONTENT) as archive:
        archive.add_destination("WORKSTATION", LOOPBACK, port)
        archive.move_quirk = quirk
        added = run_cli("nodes", "add", "quirky", str(archive.node).strip(), config=config)
        assert added.returncode == 0, added.stderr
        moved = run_cli(
            *("move", "quirky", "-S", "-q", "PatientName=*", "--port", str(port)),
            *("--store", str(tmp_path / "store"), "--idle-timeout", "10"),
            config=config,
        )
        assert moved.returncode == 0, moved.stdout + moved.stderr
        assert "refused a request naming 3 study UIDs" in moved.stdout
        assert "quirky: saved as a node that takes one UID per request" in moved.stderr
        listed = run_cli("nodes", "list", config=config)
        assert "one UID per request" in listed.stdout
        archive.requests.clear()
        again = run_cli(
            *("move", "quirky", "-S", "-q", "PatientName=*", "--port", str(port)),
            *("--store", str(tmp_path / "store2"), "--idle-timeout", "10"),
            config=config,
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert [len(_unique_key_values(r)) for r in archive.requests] == [1, 1, 1]
