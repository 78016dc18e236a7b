"""The audit trail: each retrieve, send, export, import, deletion and push leaves one record.

Real peers: a C-MOVE from the session Orthanc, DCMTK's storescu pushing to our storage SCP, a
send to a second storage SCP of ours. Expected UIDs, counts and patients come from the demo
archive, never from what our code reports.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

import workstation as ws
from tests.servers import LOOPBACK, dcmtk, dcmtk_env, free_port
from workstation import audit
from workstation.audit import AuditEvent, AuditFilter, trail_for
from workstation.audit_xml import check_xml, to_xml
from workstation.demo import Archive


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ws.LocalStore]:
    with ws.LocalStore(tmp_path / "store") as store:
        yield store


@pytest.fixture
def quiet_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="workstation")
    return caplog


def events(store: ws.LocalStore, **filters: object) -> list[AuditEvent]:
    return trail_for(store.root).query(AuditFilter(**filters))  # type: ignore[arg-type]


def study_files(archive: Archive, files: list[Path], index: int) -> list[Path]:
    uid = archive.studies[index].StudyInstanceUID
    refs = archive.all_instances()
    return [f for ref, f in zip(refs, files, strict=True) if ref.study.StudyInstanceUID == uid]


def assert_no_patient_in_log(caplog: pytest.LogCaptureFixture, *studies: object) -> None:
    text = caplog.text
    assert caplog.records, "nothing was logged: the check would prove nothing"
    for study in studies:
        name = study.PatientName  # type: ignore[attr-defined]
        family = name.split("^")[0]
        assert name not in text and family not in text, f"patient name {family} logged"
        assert study.PatientID not in text  # type: ignore[attr-defined]


def test_retrieve_from_orthanc_is_one_audit_record(
    orthanc, store: ws.LocalStore, store_port: int, archive: Archive, quiet_log
) -> None:  # type: ignore[no-untyped-def]
    study = archive.studies[0]
    with ws.StorageServer(ws.LocalAE("WORKSTATION", store_port, LOOPBACK), store) as scp:
        outcome = ws.move(
            orthanc.node, ws.Query.study(StudyInstanceUID=study.StudyInstanceUID), scp
        )
    assert outcome.ok, outcome.message
    (event,) = events(store)
    assert event.action == "retrieve" and event.outcome == "done"
    assert event.node == str(orthanc.node) and event.peer_aet == orthanc.node.ae_title
    assert event.local_aet == "WORKSTATION" and event.detail == "C-MOVE"
    assert event.study_uids == (study.StudyInstanceUID,)
    assert event.instances == study.number_of_instances and event.failed == 0
    assert event.patients == ((study.PatientID, study.PatientName),)
    assert event.user and abs(event.time.timestamp() - time.time()) < 120
    assert_no_patient_in_log(quiet_log, study)


def test_import_export_delete_each_leave_one_record_kept_after_the_delete(
    store: ws.LocalStore, archive: Archive, archive_files: list[Path], tmp_path: Path, quiet_log
) -> None:  # type: ignore[no-untyped-def]
    study = archive.studies[1]
    files = study_files(archive, archive_files, 1)
    medium = tmp_path / "medium"
    medium.mkdir()
    for f in files:
        (medium / f.name).write_bytes(f.read_bytes())

    report = store.import_path(medium)
    assert report.stored == study.number_of_instances
    (imported,) = events(store, action="import")
    assert imported.outcome == "done" and imported.instances == len(files)
    assert imported.study_uids == (study.StudyInstanceUID,)
    assert imported.patients == ((study.PatientID, study.PatientName),)
    assert imported.detail == str(medium)

    exported_to = tmp_path / "out.zip"
    ws.export_instances(store, exported_to, studies=[study.StudyInstanceUID], zip=True)
    (exported,) = events(store, action="export")
    assert exported.outcome == "done" and exported.instances == len(files)
    assert exported.study_uids == (study.StudyInstanceUID,) and exported.detail == str(exported_to)

    assert store.delete_study(study.StudyInstanceUID) == len(files)
    (deleted,) = events(store, action="delete")
    assert deleted.outcome == "done" and deleted.instances == len(files)
    assert deleted.study_uids == (study.StudyInstanceUID,)
    assert deleted.patients == ((study.PatientID, study.PatientName),)  # looked up before
    assert store.index.study(study.StudyInstanceUID) is None

    # The study is gone; its whole history stays, and only its own.
    history = events(store, study_uid=study.StudyInstanceUID)
    assert [e.action for e in history] == ["delete", "export", "import"]
    assert events(store, study_uid=archive.studies[2].StudyInstanceUID) == []
    assert events(store, study_uid=study.StudyInstanceUID[:-1]) == []  # no prefix match

    path = store.root / ".workstation" / audit.AUDIT_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for extra in path.parent.glob(audit.AUDIT_NAME + "-*"):  # WAL and shared memory
        assert stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0, extra
    assert_no_patient_in_log(quiet_log, study)


def test_push_from_storescu_is_one_record_per_association(
    store: ws.LocalStore, archive: Archive, archive_files: list[Path], quiet_log
) -> None:  # type: ignore[no-untyped-def]
    study = archive.studies[2]
    files = study_files(archive, archive_files, 2)
    with ws.StorageServer(ws.LocalAE("WS", free_port(), LOOPBACK), store) as scp:
        result = subprocess.run(
            [dcmtk("storescu"), "-aet", "MODALITY1", "-aec", "WS", LOOPBACK, str(scp.port)]
            + [str(f) for f in files],
            capture_output=True,
            text=True,
            timeout=60,
            env=dcmtk_env(),
        )
        assert result.returncode == 0, result.stderr
        scp.store.flush()
    (event,) = events(store)  # the association's end is recorded before stop() returns
    assert event.action == "receive" and event.outcome == "done"
    assert event.peer_aet == "MODALITY1" and event.local_aet == "WS"
    assert event.peer_host == LOOPBACK and event.node == f"MODALITY1@{LOOPBACK}"
    assert event.instances == len(files) == study.number_of_instances and event.failed == 0
    assert event.study_uids == (study.StudyInstanceUID,)
    assert event.patients == ((study.PatientID, study.PatientName),)
    assert_no_patient_in_log(quiet_log, study)


def test_send_is_recorded_by_the_sender_and_the_receiver(
    tmp_path: Path, archive: Archive, archive_files: list[Path]
) -> None:
    study = archive.studies[3]
    files = study_files(archive, archive_files, 3)
    with (
        ws.LocalStore(tmp_path / "a") as sender,
        ws.LocalStore(tmp_path / "b") as receiver,
        ws.StorageServer(ws.LocalAE("RECEIVER", free_port(), LOOPBACK), receiver) as scp,
    ):
        sender.import_path(files[0].parent)  # every study: send picks one
        node = ws.RemoteNode(ae_title="RECEIVER", host=LOOPBACK, port=scp.port)
        outcome = ws.send(node, store=sender, study_uid=study.StudyInstanceUID, calling_aet="A")
        assert outcome.ok
    (sent,) = events(sender, action="send")
    assert sent.outcome == "done" and sent.node == str(node) and sent.peer_aet == "RECEIVER"
    assert sent.instances == len(files) and sent.study_uids == (study.StudyInstanceUID,)
    assert sent.patients == ((study.PatientID, study.PatientName),)
    (received,) = events(receiver)
    assert received.action == "receive" and received.peer_aet == "A"
    assert received.instances == len(files)


def test_an_audit_that_cannot_be_written_never_fails_the_operation(
    tmp_path: Path, archive_files: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "store"
    (root / ".workstation" / audit.AUDIT_NAME).mkdir(parents=True)  # a folder: SQLite fails
    with ws.LocalStore(root) as store:
        report = store.import_path(archive_files[0])
        assert report.stored == 1
        assert store.delete_study(store.index.studies()[0].study_uid) == 1
    warnings = [r for r in caplog.records if "audit trail" in r.getMessage()]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)


def sample_events() -> list[AuditEvent]:
    common = dict(study_uids=("1.2.3.4",), patients=(("PID1", "Doe^Jane"),), instances=3)
    return [
        AuditEvent(
            action,
            outcome,
            node="PACS@10.0.0.1:104",
            peer_aet="PACS",
            peer_host="10.0.0.1",
            local_aet="WS",
            **common,  # type: ignore[arg-type]
        )
        for action, outcome in (
            ("retrieve", "done"),
            ("send", "partial"),
            ("export", "done"),
            ("import", "done"),
            ("delete", "done"),
            ("receive", "failed"),
        )
    ]


def test_xml_export_has_the_annex_a5_elements_and_event_codes() -> None:
    data = to_xml(sample_events())
    assert check_xml(data) == []
    root = ET.fromstring(data)
    assert root.tag == "AuditMessages"
    messages = root.findall("AuditMessage")
    codes = [
        (m.find("EventIdentification/EventID").get("csd-code"),  # type: ignore[union-attr]
         m.find("EventIdentification").get("EventActionCode"),  # type: ignore[union-attr]
         m.find("EventIdentification").get("EventOutcomeIndicator"))  # type: ignore[union-attr]
        for m in messages
    ]  # fmt: skip
    assert codes == [
        ("110104", "C", "0"),
        ("110104", "R", "4"),
        ("110106", "R", "0"),
        ("110107", "C", "0"),
        ("110105", "D", "0"),
        ("110104", "C", "8"),
    ]
    for message in messages:
        assert message.find("EventIdentification/EventID").get("codeSystemName") == "DCM"  # type: ignore[union-attr]
        assert message.find("AuditSourceIdentification").get("AuditSourceID")  # type: ignore[union-attr]
        people = message.findall("ActiveParticipant")
        assert any(p.get("UserIsRequestor") == "true" for p in people)
        objects = message.findall("ParticipantObjectIdentification")
        study = next(o for o in objects if o.get("ParticipantObjectTypeCode") == "2")
        assert study.get("ParticipantObjectID") == "1.2.3.4"
        assert study.find("ParticipantObjectIDTypeCode").get("csd-code") == "110180"  # type: ignore[union-attr]
        patient = next(o for o in objects if o.get("ParticipantObjectTypeCode") == "1")
        assert patient.get("ParticipantObjectID") == "PID1"
        assert patient.findtext("ParticipantObjectName") == "Doe^Jane"
    transfer = messages[0]
    roles = {
        p.find("RoleIDCode").get("csd-code"): p.get("UserID")  # type: ignore[union-attr]
        for p in transfer.findall("ActiveParticipant")
        if p.find("RoleIDCode") is not None
    }
    assert roles == {"110153": "PACS", "110152": "WS"}  # a retrieve: the PACS is the source


def test_check_xml_names_what_is_missing() -> None:
    broken = to_xml(sample_events()[:1]).replace(b' EventActionCode="C"', b"")
    assert check_xml(broken) == ["message 1: EventIdentification without EventActionCode"]
    assert check_xml(b"<AuditMessage>")[0].startswith("not well-formed XML")


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKSTATION_CONFIG_DIR": str(tmp_path / "config")}
    return subprocess.run(
        [sys.executable, "-m", "workstation", "audit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_cli_lists_filters_and_writes_xml(tmp_path: Path, archive_files: list[Path]) -> None:
    root = tmp_path / "store"
    with ws.LocalStore(root) as store:
        store.import_path(archive_files[0])
        study = store.index.studies()[0]
        store.delete_study(study.study_uid)
    listed = run_cli(tmp_path, "--store", str(root), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["action"] for r in rows] == ["delete", "import"]
    assert rows[0]["study_uids"] == [study.study_uid]
    assert rows[0]["patients"] == [{"id": study.patient_id, "name": study.patient_name}]

    only = run_cli(tmp_path, "--store", str(root), "--action", "import", "--json")
    assert [r["action"] for r in json.loads(only.stdout)] == ["import"]
    future = run_cli(tmp_path, "--store", str(root), "--since", "2999-01-01", "--json")
    assert json.loads(future.stdout) == []
    text = run_cli(tmp_path, "--store", str(root), "--study", study.study_uid)
    assert text.returncode == 0 and study.study_uid in text.stdout
    assert len(text.stdout.splitlines()) == 2

    xml_file = tmp_path / "audit.xml"
    written = run_cli(tmp_path, "--store", str(root), "--xml", str(xml_file))
    assert written.returncode == 0, written.stderr
    assert check_xml(xml_file.read_bytes()) == []
    codes = [e.get("csd-code") for e in ET.parse(xml_file).getroot().iter("EventID")]
    assert codes == ["110105", "110107"]

    bad = run_cli(tmp_path, "--store", str(root), "--since", "yesterday")
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr
    missing = run_cli(tmp_path, "--store", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "--store" in missing.stderr
    assert "Traceback" not in bad.stderr + missing.stderr
