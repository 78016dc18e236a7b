"""The harness's own tests: the generator is deterministic and the real servers hold its archive.

DCMTK's findscu/movescu serve as the independent client, so these say nothing about the
workstation's own DIMSE code.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread

import tests.servers
from tests.servers import (
    LOOPBACK,
    DcmqrscpServer,
    OrthancServer,
    ServerError,
    WlmscpfsServer,
    dcmtk,
    dcmtk_env,
    findscu,
    free_port,
    port_open,
)
from workstation.demo import (
    MODALITY_SOP_CLASSES,
    UID_PREFIX,
    Archive,
    generate_archive,
    generate_bulk,
    generate_large_study,
)

STUDY_KEYS = ["QueryRetrieveLevel=STUDY", "SpecificCharacterSet=ISO_IR 192", "StudyInstanceUID"]


def test_generator_is_deterministic(archive: Archive) -> None:
    again = generate_archive(seed=1)
    assert again == archive
    assert (
        generate_archive(seed=2).studies[0].StudyInstanceUID != archive.studies[0].StudyInstanceUID
    )
    uids = [ref.SOPInstanceUID for ref in archive.all_instances()]
    assert len(uids) == len(set(uids))
    assert all(uid.startswith(UID_PREFIX) and len(uid) <= 64 for uid in uids)
    names = {p.PatientName for p in archive.patients}
    assert {"Müller^Jürgen", "Иванов^Иван", "Yamada^Tarou=山田^太郎", "SMITH^JANE"} <= names
    modalities = {s.Modality for study in archive.studies for s in study.series}
    assert modalities == set(MODALITY_SOP_CLASSES)


def test_written_files_equal_the_datasets(archive: Archive, archive_files: list[Path]) -> None:
    refs = archive.all_instances()
    for index in (0, len(refs) // 2, len(refs) - 1):
        written = dcmread(archive_files[index])
        expected = archive.dataset(refs[index])
        assert expected == written
        assert written.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert written.pixel_array.shape == (archive.rows, archive.columns)


def test_bulk_and_large_generators_are_quick(tmp_path: Path) -> None:
    started = time.perf_counter()
    bulk = generate_bulk(seed=5, studies=300)
    paths = bulk.write(tmp_path / "bulk")
    assert len(paths) == len(bulk.studies) == 300
    large = generate_large_study(seed=5, instances=10, rows=64, columns=64, series=3)
    assert [len(s.instances) for s in large.studies[0].series] == [4, 3, 3]
    assert time.perf_counter() - started < 10


def test_orthanc_holds_the_archive(orthanc: OrthancServer, archive: Archive) -> None:
    assert orthanc.instance_uids() == archive.sop_instance_uids()
    study = archive.studies[3]
    assert orthanc.instance_uids(study.StudyInstanceUID) == archive.sop_instance_uids(
        study.StudyInstanceUID
    )
    stats = orthanc.statistics()
    assert stats["CountStudies"] == len(archive.studies)
    assert stats["CountPatients"] == len(archive.patients)


def test_orthanc_keeps_uploaded_files_byte_for_byte(
    orthanc: OrthancServer, archive: Archive, archive_files: list[Path]
) -> None:
    ref = archive.all_instances()[5]
    assert orthanc.file_bytes(ref.SOPInstanceUID) == archive_files[5].read_bytes()


@pytest.mark.parametrize("server_name", ["orthanc", "dcmqrscp"])
def test_findscu_finds_every_study(
    server_name: str, request: pytest.FixtureRequest, archive: Archive
) -> None:
    server = request.getfixturevalue(server_name)
    answers = findscu(server.node, [*STUDY_KEYS, "PatientName"])
    assert {a.StudyInstanceUID for a in answers} == {s.StudyInstanceUID for s in archive.studies}
    names = {str(a.PatientName) for a in answers}
    assert names == {p.PatientName for p in archive.patients}


def test_orthanc_matches_modalities_in_study(orthanc: OrthancServer, archive: Archive) -> None:
    answers = findscu(orthanc.node, [*STUDY_KEYS, "ModalitiesInStudy=CT"])
    expected = {s.StudyInstanceUID for s in archive.studies if "CT" in s.modalities}
    assert {a.StudyInstanceUID for a in answers} == expected


def test_name_matching_differs_between_servers(
    orthanc: OrthancServer, dcmqrscp: DcmqrscpServer, archive: Archive
) -> None:
    """Orthanc matches PN case-insensitively, dcmqrscp exactly: 'SMITH*' finds Jane only."""
    query = [*STUDY_KEYS, "PatientName=SMITH*"]
    smiths = {
        s.StudyInstanceUID for s in archive.studies if s.PatientName.upper().startswith("SMITH")
    }
    jane = {s.StudyInstanceUID for s in archive.studies if s.PatientName == "SMITH^JANE"}
    assert {a.StudyInstanceUID for a in findscu(orthanc.node, query)} == smiths
    assert {a.StudyInstanceUID for a in findscu(dcmqrscp.node, query)} == jane


def test_worklist_returns_the_items(worklist: WlmscpfsServer) -> None:
    keys = [
        "SpecificCharacterSet",
        "PatientName",
        "AccessionNumber",
        "ScheduledProcedureStepSequence[0].Modality",
        "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate",
    ]
    answers = findscu(worklist.node, keys, model="worklist")
    got = {(a.AccessionNumber, str(a.PatientName)) for a in answers}
    assert got == {(i.AccessionNumber, str(i.PatientName)) for i in worklist.items}
    assert {a.ScheduledProcedureStepSequence[0].Modality for a in answers} == {"CT", "MR", "US"}


@pytest.mark.parametrize("server_name", ["orthanc", "dcmqrscp"])
def test_move_to_registered_destination(
    server_name: str,
    request: pytest.FixtureRequest,
    archive: Archive,
    storescp_port: int,
    tmp_path: Path,
) -> None:
    """C-MOVE to STORESCP (a DCMTK storescp on ``storescp_port``) delivers the study."""
    server = request.getfixturevalue(server_name)
    study = archive.studies[1]
    receiver = subprocess.Popen(
        [dcmtk("storescp"), "-aet", "STORESCP", "-od", str(tmp_path), str(storescp_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dcmtk_env(),
    )
    try:
        node = server.node
        move = [dcmtk("movescu"), "-S", "-aet", "MOVESCU", "-aec", node.ae_title]
        move += ["-aem", "STORESCP", "-k", "QueryRetrieveLevel=STUDY"]
        move += ["-k", f"StudyInstanceUID={study.StudyInstanceUID}", LOOPBACK, str(node.port)]
        deadline = time.monotonic() + 10
        while not port_open(storescp_port) and time.monotonic() < deadline:
            time.sleep(0.05)
        result = subprocess.run(move, capture_output=True, text=True, timeout=60, env=dcmtk_env())
        assert result.returncode == 0, result.stderr
    finally:
        receiver.terminate()
        receiver.wait(10)
    received = {dcmread(p).SOPInstanceUID for p in tmp_path.iterdir()}
    assert received == archive.sop_instance_uids(study.StudyInstanceUID)


def test_private_orthanc_starts_empty_and_stops(
    make_orthanc: Callable[..., OrthancServer], archive_files: list[Path]
) -> None:
    server = make_orthanc(files=archive_files[:3])
    assert len(server.instance_uids()) == 3
    server.delete_all()
    assert server.instance_uids() == set()
    server.kill()
    assert not server.running


def test_missing_binary_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tests.servers, "ORTHANC_BINARY", str(tmp_path / "Orthanc"))
    with pytest.raises(ServerError, match="apt-get install orthanc"):
        OrthancServer(tmp_path).start()
    assert free_port() > 0
