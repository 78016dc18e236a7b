"""C-FIND through ``workstation.find`` against real Orthanc and DCMTK dcmqrscp.

Every test compares the set of StudyInstanceUIDs (or series, patients, worklist items) with
the set the generated archive says should match: no more, no less.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from pynetdicom import evt

import workstation as ws
from tests.quirky import QuirkySCP, silent_listener, slow_find
from workstation.demo import Archive
from workstation.dimse import association


@pytest.fixture(params=["orthanc", "dcmqrscp"])
def pacs(request: pytest.FixtureRequest) -> ws.RemoteNode:
    return request.getfixturevalue(request.param).node


def study_uids(results) -> set[str]:  # type: ignore[no-untyped-def]
    return {str(ds.StudyInstanceUID) for ds in results}


def expected(archive: Archive, predicate) -> set[str]:  # type: ignore[no-untyped-def]
    return {s.StudyInstanceUID for s in archive.studies if predicate(s)}


def test_wildcard_name_matches_exactly(pacs: ws.RemoteNode, archive: Archive) -> None:
    found = study_uids(ws.find(pacs, ws.Query.study(PatientName="Müller*")))
    assert found == expected(archive, lambda s: s.PatientName.startswith("Müller"))
    assert len(found) == 2


def test_date_range(pacs: ws.RemoteNode, archive: Archive) -> None:
    query = ws.Query.study(StudyDate="20180101-20201231")
    assert study_uids(ws.find(pacs, query)) == expected(
        archive, lambda s: "20180101" <= s.StudyDate <= "20201231"
    )


def test_open_ended_date_range_and_patient_id(pacs: ws.RemoteNode, archive: Archive) -> None:
    query = ws.Query.study(StudyDate="20220101-", PatientID="TB1-000012")
    assert study_uids(ws.find(pacs, query)) == expected(
        archive, lambda s: s.StudyDate >= "20220101" and s.PatientID == "TB1-000012"
    )


def test_accession_number(pacs: ws.RemoteNode, archive: Archive) -> None:
    found = list(ws.find(pacs, ws.Query.study(AccessionNumber="A000011")))
    assert study_uids(found) == expected(archive, lambda s: s.AccessionNumber == "A000011")
    assert str(found[0].PatientName) == "Yamada^Tarou=山田^太郎"


def test_modality_in_study_on_orthanc(orthanc, archive: Archive) -> None:  # type: ignore[no-untyped-def]
    query = ws.Query.study(ModalitiesInStudy="CT")
    found = list(ws.find(orthanc.node, query))
    assert study_uids(found) == expected(archive, lambda s: "CT" in s.modalities)


def test_names_decode_in_every_script(pacs: ws.RemoteNode, archive: Archive) -> None:
    names = {str(ds.PatientName) for ds in ws.find(pacs, ws.Query.study())}
    assert names == {s.PatientName for s in archive.studies}
    assert {"Παπαδόπουλος^Γιώργος", "Иванов^Иван", "Dvořák^Antonín"} <= names


def test_default_return_keys_are_filled(pacs: ws.RemoteNode, archive: Archive) -> None:
    study = archive.studies[0]
    (match,) = ws.find(pacs, ws.Query.study(StudyInstanceUID=study.StudyInstanceUID))
    assert match.PatientID == study.PatientID
    assert match.StudyDate == study.StudyDate
    assert match.AccessionNumber == study.AccessionNumber
    assert match.StudyDescription == study.StudyDescription
    if pacs.ae_title == "ORTHANC":  # dcmqrscp does not compute the NumberOf* keys
        assert int(match.NumberOfStudyRelatedInstances) == study.number_of_instances


def test_series_level(pacs: ws.RemoteNode, archive: Archive) -> None:
    study = archive.studies[6]
    series = list(ws.find(pacs, ws.Query.series(StudyInstanceUID=study.StudyInstanceUID)))
    assert {str(ds.SeriesInstanceUID) for ds in series} == {
        s.SeriesInstanceUID for s in study.series
    }
    assert {str(ds.Modality) for ds in series} == {s.Modality for s in study.series}


def test_image_level(pacs: ws.RemoteNode, archive: Archive) -> None:
    study = archive.studies[1]
    series = study.series[0]
    query = ws.Query.image(
        StudyInstanceUID=study.StudyInstanceUID, SeriesInstanceUID=series.SeriesInstanceUID
    )
    assert {str(ds.SOPInstanceUID) for ds in ws.find(pacs, query)} == {
        i.SOPInstanceUID for i in series.instances
    }


def test_patient_root_patient_level(pacs: ws.RemoteNode, archive: Archive) -> None:
    query = ws.Query.patient(PatientID="TB1-00001*")
    found = {str(ds.PatientID) for ds in ws.find(pacs, query)}
    assert found == {s.PatientID for s in archive.studies if s.PatientID.startswith("TB1-00001")}
    assert found == {"TB1-000010", "TB1-000011", "TB1-000012"}


def test_limit_stops_with_cancel(pacs: ws.RemoteNode, archive: Archive) -> None:
    results = ws.find(pacs, ws.Query.study(), limit=3)
    found = study_uids(results)
    assert len(found) == 3
    assert found <= expected(archive, lambda s: True)
    assert results.limited and results.cancelled


def test_results_stream_before_the_query_ends() -> None:
    holder: list[QuirkySCP] = []
    handler = slow_find(20, 0.1, honour_cancel=True, scp=holder)
    with QuirkySCP([(evt.EVT_C_FIND, handler)]) as scp:
        holder.append(scp)
        start = time.perf_counter()
        results = ws.find(scp.node, ws.Query.study())
        first = next(results)
        first_at = time.perf_counter() - start
        rest = list(results)
        total = time.perf_counter() - start
    assert str(first.PatientName) == "PATIENT^0000"
    assert len(rest) == 19
    assert first_at < total / 3  # the first match came long before the last


def test_cancel_from_another_thread_sends_c_cancel() -> None:
    holder: list[QuirkySCP] = []
    handler = slow_find(200, 0.05, honour_cancel=True, scp=holder)
    with QuirkySCP([(evt.EVT_C_FIND, handler)]) as scp:
        holder.append(scp)
        results = ws.find(scp.node, ws.Query.study())
        got = []
        for ds in results:
            got.append(ds)
            if len(got) == 3:
                threading.Thread(target=results.cancel).start()
        assert scp.cancelled.wait(5)
    assert 3 <= len(got) < 200
    assert results.cancelled
    assert results.status is not None and results.status.code == 0xFE00


def test_cancel_ignored_by_pacs_aborts_after_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("workstation.dimse.find.CANCEL_GRACE", 0.5)
    holder: list[QuirkySCP] = []
    handler = slow_find(400, 0.05, honour_cancel=False, scp=holder)
    with QuirkySCP([(evt.EVT_C_FIND, handler)]) as scp:
        holder.append(scp)
        results = ws.find(scp.node, ws.Query.study())
        token_thread = None
        start = time.perf_counter()
        count = 0
        for _ in results:
            count += 1
            if count == 2:
                token_thread = threading.Thread(target=results.cancel)
                token_thread.start()
        elapsed = time.perf_counter() - start
    assert count < 400
    assert elapsed < 5  # aborted after the grace period, not after 20 s of matches
    assert results.cancelled and results.status is None


def test_failure_status_raises_with_meaning() -> None:
    def handler(event):  # type: ignore[no-untyped-def]
        yield 0xA700, None

    with QuirkySCP([(evt.EVT_C_FIND, handler)]) as scp, pytest.raises(ws.OperationFailed) as info:
        list(ws.find(scp.node, ws.Query.study()))
    assert "0xA700" in str(info.value) and "out of resources" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "charset", "name"),
    [
        ("Müller^Jürgen".encode(), None, "Müller^Jürgen"),
        ("Müller^Jürgen".encode("latin-1"), None, "Müller^Jürgen"),
        ("Dvořák^Antonín".encode(), "ISO_IR 192", "Dvořák^Antonín"),
    ],
)
def test_responses_without_charset_decode_sanely(
    raw: bytes, charset: str | None, name: str
) -> None:
    from pydicom.dataset import Dataset

    def handler(event):  # type: ignore[no-untyped-def]
        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        if charset:
            ds.SpecificCharacterSet = charset
            ds.PatientName = name
        else:
            # Undeclared: pydicom writes str values as Latin-1, so these are the raw bytes.
            ds.PatientName = raw.decode("latin-1")
        ds.StudyInstanceUID = "1.2.3"
        yield 0xFF00, ds
        yield 0x0000, None

    with QuirkySCP([(evt.EVT_C_FIND, handler)]) as scp:
        (match,) = ws.find(scp.node, ws.Query.study())
    assert str(match.PatientName) == name


def test_worklist_by_scheduled_modality(worklist, worklist_items) -> None:  # type: ignore[no-untyped-def]
    query = ws.Query.build(
        ws.InformationModel.WORKLIST, None, ["ScheduledProcedureStepSequence.Modality=CT"]
    )
    found = {str(ds.AccessionNumber) for ds in ws.find(worklist.node, query)}
    want = {
        str(item.AccessionNumber)
        for item in worklist_items
        if item.ScheduledProcedureStepSequence[0].Modality == "CT"
    }
    assert found == want and found


def test_connection_refused_says_host_and_port() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    node = ws.RemoteNode("NOBODY", "127.0.0.1", port, connect_timeout=3)
    with pytest.raises(ws.ConnectionFailed) as info:
        list(ws.find(node, ws.Query.study()))
    assert "refused" in str(info.value) and f"127.0.0.1:{port}" in str(info.value)


def test_wrong_called_ae_title_is_rejected_with_advice(orthanc) -> None:  # type: ignore[no-untyped-def]
    node = orthanc.node.with_options(ae_title="NOT_ORTHANC")
    with pytest.raises(ws.AssociationRejected) as info:
        ws.echo(node)
    message = str(info.value)
    assert "NOT_ORTHANC" in message and "rejected" in message


def test_silent_peer_times_out_with_clear_error() -> None:
    sock, port = silent_listener()
    try:
        node = ws.RemoteNode("SILENT", "127.0.0.1", port, connect_timeout=1)
        start = time.perf_counter()
        with pytest.raises(ws.NetworkError) as info:
            ws.echo(node)
        assert time.perf_counter() - start < 10
        assert f"127.0.0.1:{port}" in str(info.value)
    finally:
        sock.close()


def test_echo_answers(pacs: ws.RemoteNode) -> None:
    result = ws.echo(pacs)
    assert result.status.code == 0 and result.seconds < 5


def test_every_socket_sets_tcp_nodelay(orthanc) -> None:  # type: ignore[no-untyped-def]
    from pynetdicom.sop_class import Verification

    with association.associate(orthanc.node, [(Verification, None)]) as assoc:
        sock = assoc.sock
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
