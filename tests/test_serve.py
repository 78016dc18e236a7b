"""``workstation serve``: the local store as a Q/R SCP, against real clients.

DCMTK's findscu/movescu/getscu/storescp and a fresh Orthanc query and retrieve from a store
filled with the seeded archive; expected results come from the generator's :class:`Archive`,
never from our SCP. Retrieved files are compared byte for byte (the data set after the file
meta group, which each receiver writes itself) with the files of the store.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelMove,
)

from tests.servers import (
    LOOPBACK,
    ManagedProcess,
    OrthancServer,
    dcmtk,
    dcmtk_env,
    findscu,
    free_port,
    port_open,
)
from workstation.demo.generator import Archive, StudyInfo
from workstation.dimse.pynetdicom_ae import make_ae
from workstation.nodes import RemoteNode
from workstation.serve import QRServer
from workstation.settings import Settings, _from_json
from workstation.store import LocalStore

SERVE_AET = "WSSERVE"
CALLERS = ["FINDSCU", "MOVESCU", "GETSCU", "ORTHANC", "TESTSCU"]


class Storescp(ManagedProcess):
    """DCMTK storescp as a C-MOVE destination, writing what it receives to ``workdir/in``."""

    name = "storescp"

    def __init__(self, workdir: Path, aet: str = "STORESCP") -> None:
        super().__init__(workdir)
        self.aet = aet
        self.port = free_port()
        self.folder = self.workdir / "in"
        self.folder.mkdir()

    def start(self, timeout: float = 15.0) -> Storescp:
        self._spawn([dcmtk("storescp"), "-aet", self.aet, "-od", str(self.folder), str(self.port)])
        self._wait_until(lambda: port_open(self.port), timeout)
        return self

    @property
    def node(self) -> RemoteNode:
        return RemoteNode(self.aet, LOOPBACK, self.port, name="storescp")

    def received(self) -> dict[str, Path]:
        return {
            str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
            for p in self.folder.iterdir()
        }

    def clear(self) -> None:
        for path in self.folder.iterdir():
            path.unlink()


def _body(part10: bytes) -> bytes:
    """The data set of a Part-10 file: what follows the file meta group (PS3.10 7.1)."""
    assert part10[128:132] == b"DICM"
    meta_length = int.from_bytes(part10[140:144], "little")  # (0002,0000) UL value
    return part10[144 + meta_length :]


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory, archive_files: list[Path]
) -> Iterator[LocalStore]:
    store = LocalStore(tmp_path_factory.mktemp("served") / "store", fsync=False)
    for path in archive_files:
        store.store_file(path, move=False)
    assert store.flush(30)
    yield store
    store.close()


@pytest.fixture(scope="module")
def storescp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storescp]:
    server = Storescp(tmp_path_factory.mktemp("storescp")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def saved_nodes(storescp: Storescp) -> dict[str, RemoteNode]:
    """The serving workstation's saved nodes (a test may add one)."""
    return {"storescp": storescp.node}


@pytest.fixture(scope="module")
def server(store: LocalStore, saved_nodes: dict[str, RemoteNode]) -> Iterator[QRServer]:
    with QRServer(
        store,
        ae_title=SERVE_AET,
        port=0,
        bind=LOOPBACK,
        destinations=lambda: list(saved_nodes.values()),
        allowed_callers=CALLERS,
    ) as running:
        yield running


@pytest.fixture
def node(server: QRServer) -> RemoteNode:
    return RemoteNode(SERVE_AET, LOOPBACK, server.port)


def _stored_body(store: LocalStore, sop_uid: str) -> bytes:
    path = store.path_of(sop_uid)
    assert path is not None
    return _body(path.read_bytes())


def _series_uids(study: StudyInfo) -> set[str]:
    return {s.SeriesInstanceUID for s in study.series}


def _multi_series_study(archive: Archive) -> StudyInfo:
    return next(s for s in archive.studies if len(s.series) > 1 and s.number_of_instances > 3)


# -- C-FIND ----------------------------------------------------------------------------------


def _uids(responses: list[Dataset], keyword: str) -> list[str]:
    return [str(r.get(keyword, "")) for r in responses]


def test_find_study_root_study_level_by_name_and_date_range(
    node: RemoteNode, archive: Archive
) -> None:
    # PN matches ignoring case (Smith^John and SMITH^JANE), the date range bounds included.
    responses = findscu(
        node,
        [
            "QueryRetrieveLevel=STUDY",
            "PatientName=smith*",
            "StudyDate=20150101-20201231",
            "StudyInstanceUID",
            "NumberOfStudyRelatedInstances",
            "ModalitiesInStudy",
        ],
    )
    expected = {
        s.StudyInstanceUID
        for s in archive.studies
        if s.PatientName.lower().startswith("smith") and "20150101" <= s.StudyDate <= "20201231"
    }
    uids = _uids(responses, "StudyInstanceUID")
    assert len(uids) == len(set(uids)) and set(uids) == expected and len(expected) >= 2
    for rsp in responses:
        study = archive.study(str(rsp.StudyInstanceUID))
        assert rsp.SpecificCharacterSet == "ISO_IR 192"
        assert int(rsp.NumberOfStudyRelatedInstances) == study.number_of_instances
        modalities = rsp.ModalitiesInStudy
        found = [modalities] if isinstance(modalities, str) else list(modalities)
        assert sorted(found) == sorted(set(study.modalities))


def test_find_non_ascii_names_and_case_sensitive_text(node: RemoteNode, archive: Archive) -> None:
    keys = ["QueryRetrieveLevel=STUDY", "StudyInstanceUID", "PatientName"]
    müller = findscu(node, [*keys, "SpecificCharacterSet=ISO_IR 192", "PatientName=MÜLLER*"])
    assert set(_uids(müller, "StudyInstanceUID")) == {
        s.StudyInstanceUID for s in archive.studies if s.PatientName.startswith("Müller")
    }
    assert {str(r.PatientName) for r in müller} == {"Müller^Jürgen", "Müller^Anna"}
    yamada = findscu(node, [*keys, "SpecificCharacterSet=ISO_IR 192", "PatientName=山田*"])
    assert {str(r.PatientName) for r in yamada} == {"Yamada^Tarou=山田^太郎"}
    description = archive.studies[0].StudyDescription  # "US ABDOMEN": upper case
    prefix = description[:3]
    exact = findscu(node, [*keys, f"StudyDescription={prefix}*"])
    assert set(_uids(exact, "StudyInstanceUID")) == {
        s.StudyInstanceUID for s in archive.studies if s.StudyDescription.startswith(prefix)
    }
    assert findscu(node, [*keys, f"StudyDescription={description[:3].lower()}*"]) == []


def test_find_study_root_series_and_image_levels(node: RemoteNode, archive: Archive) -> None:
    study = _multi_series_study(archive)
    series = findscu(
        node,
        [
            "QueryRetrieveLevel=SERIES",
            f"StudyInstanceUID={study.StudyInstanceUID}",
            "SeriesInstanceUID",
            "Modality",
            "NumberOfSeriesRelatedInstances",
        ],
    )
    assert sorted(_uids(series, "SeriesInstanceUID")) == sorted(_series_uids(study))
    by_uid = {s.SeriesInstanceUID: s for s in study.series}
    for rsp in series:
        info = by_uid[str(rsp.SeriesInstanceUID)]
        assert rsp.Modality == info.Modality
        assert int(rsp.NumberOfSeriesRelatedInstances) == len(info.instances)
    target = study.series[0]
    images = findscu(
        node,
        [
            "QueryRetrieveLevel=IMAGE",
            f"StudyInstanceUID={study.StudyInstanceUID}",
            f"SeriesInstanceUID={target.SeriesInstanceUID}",
            "SOPInstanceUID",
            "SOPClassUID",
            "InstanceNumber",
        ],
    )
    assert sorted(_uids(images, "SOPInstanceUID")) == sorted(
        i.SOPInstanceUID for i in target.instances
    )
    assert {str(r.SOPClassUID) for r in images} == {i.SOPClassUID for i in target.instances}


def test_find_study_root_uid_list(node: RemoteNode, archive: Archive) -> None:
    two = archive.studies[:2]
    responses = findscu(
        node,
        [
            "QueryRetrieveLevel=SERIES",
            "StudyInstanceUID=" + "\\".join(s.StudyInstanceUID for s in two),
            "SeriesInstanceUID",
        ],
    )
    assert sorted(_uids(responses, "SeriesInstanceUID")) == sorted(
        uid for s in two for uid in _series_uids(s)
    )


def test_find_patient_root_every_level(node: RemoteNode, archive: Archive) -> None:
    patients = findscu(
        node,
        ["QueryRetrieveLevel=PATIENT", "PatientID", "PatientName", "NumberOfPatientRelatedStudies"],
        model="patient",
    )
    counts: dict[str, int] = {}
    for s in archive.studies:
        counts[s.PatientID] = counts.get(s.PatientID, 0) + 1
    assert {str(r.PatientID): int(r.NumberOfPatientRelatedStudies) for r in patients} == counts
    assert len(patients) == len(archive.patients)

    study = _multi_series_study(archive)
    pid = study.PatientID
    studies = findscu(
        node,
        ["QueryRetrieveLevel=STUDY", f"PatientID={pid}", "StudyInstanceUID", "StudyID"],
        model="patient",
    )
    assert sorted(_uids(studies, "StudyInstanceUID")) == sorted(
        s.StudyInstanceUID for s in archive.studies if s.PatientID == pid
    )
    # StudyID is not in the index: it is read from the files, and returned true.
    assert {str(r.StudyInstanceUID): str(r.StudyID) for r in studies} == {
        s.StudyInstanceUID: s.StudyID for s in archive.studies if s.PatientID == pid
    }
    series = findscu(
        node,
        [
            "QueryRetrieveLevel=SERIES",
            f"PatientID={pid}",
            f"StudyInstanceUID={study.StudyInstanceUID}",
            "SeriesInstanceUID",
        ],
        model="patient",
    )
    assert sorted(_uids(series, "SeriesInstanceUID")) == sorted(_series_uids(study))
    target = study.series[-1]
    images = findscu(
        node,
        [
            "QueryRetrieveLevel=IMAGE",
            f"PatientID={pid}",
            f"StudyInstanceUID={study.StudyInstanceUID}",
            f"SeriesInstanceUID={target.SeriesInstanceUID}",
            "SOPInstanceUID",
        ],
        model="patient",
    )
    assert sorted(_uids(images, "SOPInstanceUID")) == sorted(
        i.SOPInstanceUID for i in target.instances
    )


def test_find_with_a_malformed_range_is_refused(node: RemoteNode) -> None:
    result = subprocess.run(
        [
            dcmtk("findscu"),
            "-v",
            "-S",
            "-aet",
            "FINDSCU",
            "-aec",
            SERVE_AET,
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "StudyDate=2020-2021-2022",
            LOOPBACK,
            str(node.port),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=dcmtk_env(),
    )
    # 0xA900, Identifier does not match SOP Class, in DCMTK's words
    assert "datasetdoesnotmatchsopclass" in (result.stdout + result.stderr).lower()


# -- C-MOVE and C-GET ------------------------------------------------------------------------


def _movescu(node: RemoteNode, destination: str, keys: list[str]) -> str:
    argv = [dcmtk("movescu"), "-v", "-S", "-aet", "MOVESCU", "-aec", SERVE_AET]
    argv += ["-aem", destination]
    for key in keys:
        argv += ["-k", key]
    result = subprocess.run(
        [*argv, LOOPBACK, str(node.port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dcmtk_env(),
    )
    return result.stdout + result.stderr


def test_movescu_to_a_saved_node_sends_every_instance_byte_identical(
    node: RemoteNode, archive: Archive, store: LocalStore, storescp: Storescp
) -> None:
    storescp.clear()
    study = _multi_series_study(archive)
    output = _movescu(
        node,
        storescp.aet,
        ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study.StudyInstanceUID}"],
    )
    received = storescp.received()
    assert set(received) == archive.sop_instance_uids(study.StudyInstanceUID), output[-2000:]
    for uid, path in received.items():
        assert _body(path.read_bytes()) == _stored_body(store, uid)


def test_move_to_an_unknown_destination_answers_a801(node: RemoteNode, archive: Archive) -> None:
    output = _movescu(
        node,
        "NOSUCHAE",
        ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={archive.studies[0].StudyInstanceUID}"],
    )
    assert "movedestinationunknown" in output.lower(), output[-2000:]  # 0xA801


def test_getscu_retrieves_a_series(
    node: RemoteNode, archive: Archive, store: LocalStore, tmp_path: Path
) -> None:
    study = _multi_series_study(archive)
    series = max(study.series, key=lambda s: len(s.instances))
    argv = [dcmtk("getscu"), "-S", "-aet", "GETSCU", "-aec", SERVE_AET, "-od", str(tmp_path)]
    argv += ["-k", "QueryRetrieveLevel=SERIES"]
    argv += ["-k", f"StudyInstanceUID={study.StudyInstanceUID}"]
    argv += ["-k", f"SeriesInstanceUID={series.SeriesInstanceUID}"]
    result = subprocess.run(
        [*argv, LOOPBACK, str(node.port)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=dcmtk_env(),
    )
    assert result.returncode == 0, result.stderr
    files = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in tmp_path.iterdir()}
    assert sorted(files) == sorted(i.SOPInstanceUID for i in series.instances)
    for uid, path in files.items():
        assert _body(path.read_bytes()) == _stored_body(store, uid)


def test_move_counts_sub_operations_and_lists_the_failed_instance(
    tmp_path: Path, archive: Archive, archive_files: list[Path], storescp: Storescp
) -> None:
    """An instance whose file vanished is a failed sub-operation, named in the final answer."""
    study = _multi_series_study(archive)
    wanted = archive.sop_instance_uids(study.StudyInstanceUID)
    storescp.clear()
    with LocalStore(tmp_path / "store", fsync=False) as small:
        for path in archive_files:
            if dcmread(path, stop_before_pixels=True).SOPInstanceUID in wanted:
                small.store_file(path, move=False)
        assert small.flush(30)
        lost = sorted(wanted)[0]
        lost_path = small.path_of(lost)
        assert lost_path is not None
        lost_path.unlink()
        with QRServer(
            small,
            ae_title=SERVE_AET,
            port=0,
            bind=LOOPBACK,
            destinations=lambda: [storescp.node],
            allowed_callers=["TESTSCU"],
        ) as serving:
            ae = make_ae("TESTSCU")
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            assoc = ae.associate(LOOPBACK, serving.port, ae_title=SERVE_AET)
            assert assoc.is_established
            identifier = Dataset()
            identifier.QueryRetrieveLevel = "STUDY"
            identifier.StudyInstanceUID = study.StudyInstanceUID
            responses: list[tuple[Dataset, Any]] = []
            try:
                for status, rsp_identifier in assoc.send_c_move(
                    identifier, storescp.aet, StudyRootQueryRetrieveInformationModelMove
                ):
                    responses.append((status, rsp_identifier))
            finally:
                assoc.release()
                ae.shutdown()
    pending = [s for s, _ in responses if s.Status == 0xFF00]
    final, final_identifier = responses[-1]
    total = len(wanted)
    assert [int(s.NumberOfRemainingSuboperations) for s in pending] == list(
        range(total - 1, -1, -1)
    )
    assert final.Status == 0xB000  # sub-operations complete, one or more failures
    assert final.NumberOfCompletedSuboperations == total - 1
    assert final.NumberOfFailedSuboperations == 1
    assert final_identifier is not None
    assert str(final_identifier.FailedSOPInstanceUIDList) == lost
    assert set(storescp.received()) == wanted - {lost}


# -- Orthanc as the client --------------------------------------------------------------------


def test_orthanc_queries_and_retrieves_from_us(
    make_orthanc: Callable[..., OrthancServer],
    server: QRServer,
    saved_nodes: dict[str, RemoteNode],
    archive: Archive,
    store: LocalStore,
) -> None:
    orthanc = make_orthanc()
    orthanc.add_modality(SERVE_AET, LOOPBACK, server.port)
    saved_nodes["orthanc"] = orthanc.node  # AE ORTHANC: both a caller and a destination
    try:
        query = orthanc.request(
            "POST",
            f"/modalities/{SERVE_AET}/query",
            {"Level": "Study", "Query": {"PatientName": "smith*", "StudyInstanceUID": ""}},
        )
        answers = orthanc.request("GET", f"{query['Path']}/answers?expand&simplify")
        expected = {
            s.StudyInstanceUID for s in archive.studies if s.PatientName.lower().startswith("smith")
        }
        assert sorted(a["StudyInstanceUID"] for a in answers) == sorted(expected)
        orthanc.request("POST", f"{query['Path']}/retrieve", {"TargetAet": orthanc.aet})
        held = orthanc.instance_uids()
        wanted = {uid for study in expected for uid in archive.sop_instance_uids(study)}
        assert held == wanted
        for uid in sorted(wanted)[:5]:
            assert _body(orthanc.file_bytes(uid)) == _stored_body(store, uid)
    finally:
        del saved_nodes["orthanc"]


# -- callers, the CLI, settings -------------------------------------------------------------


def test_an_unknown_caller_is_rejected(node: RemoteNode) -> None:
    result = subprocess.run(
        [dcmtk("echoscu"), "-aet", "INTRUDER", "-aec", SERVE_AET, LOOPBACK, str(node.port)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=dcmtk_env(),
    )
    assert result.returncode != 0
    assert "rejected" in (result.stdout + result.stderr).lower()


def test_serving_nobody_is_refused_with_what_to_do(store: LocalStore) -> None:
    with pytest.raises(Exception, match="--allow-any"):
        QRServer(store, ae_title=SERVE_AET, port=0, allowed_callers=[])


def test_old_settings_files_load_with_serving_off() -> None:
    old = _from_json({"version": 1, "ae_title": "OLD", "nodes": {}})
    assert old.ae_title == "OLD"
    assert old.serve_enabled is False
    assert old.serve_port == Settings().serve_port


def test_cli_serve_answers_saved_nodes_and_logs_no_patient_data(
    tmp_path: Path, archive: Archive, archive_files: list[Path]
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "settings.json").write_text(
        json.dumps(
            {
                "version": 1,
                "ae_title": "CLISERVE",
                "nodes": {"viewer": {"ae_title": "FINDSCU", "host": LOOPBACK, "port": 104}},
            }
        )
    )
    study = archive.studies[0]
    with LocalStore(tmp_path / "store", fsync=False) as small:
        for path in archive_files[: study.number_of_instances]:
            small.store_file(path, move=False)
    port = free_port()
    env = {**os.environ, "WORKSTATION_CONFIG_DIR": str(config), "PYTHONIOENCODING": "utf-8"}
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "workstation", "serve"),
            *("--store", str(tmp_path / "store"), "--port", str(port), "--bind", LOOPBACK),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_open(port):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "workstation serve did not listen"
            time.sleep(0.1)
        node = RemoteNode("CLISERVE", LOOPBACK, port)
        responses = findscu(
            node, ["QueryRetrieveLevel=STUDY", f"PatientID={study.PatientID}", "PatientName"]
        )
        assert _uids(responses, "StudyInstanceUID") == [study.StudyInstanceUID]
        refused = subprocess.run(
            [dcmtk("echoscu"), "-aet", "INTRUDER", "-aec", "CLISERVE", LOOPBACK, str(port)],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert refused.returncode != 0
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "serving" in stderr and "to FINDSCU" in stderr
    assert "association from FINDSCU" in stderr
    assert "C-FIND STUDY (Study Root) from FINDSCU: 1 matches" in stderr
    assert "association from INTRUDER" in stderr and "rejected" in stderr
    assert study.PatientID not in stderr
    assert study.PatientName.split("^")[0] not in stderr


# -- the window: Nodes → Local AE, and the session ---------------------------------------------


def test_nodes_dialog_turns_serving_on(
    qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QDialog

    from workstation import settings as settings_module
    from workstation.ui.nodes.nodes_dialog import NodesDialog

    monkeypatch.setenv("WORKSTATION_CONFIG_DIR", str(tmp_path / "config"))
    dialog = NodesDialog(settings_module.load())
    qtbot.addWidget(dialog)
    assert not dialog.serve_check.isChecked()
    dialog.serve_check.setChecked(True)
    dialog.serve_port_edit.setFocus()
    dialog.serve_port_edit.selectAll()
    qtbot.keyClicks(dialog.serve_port_edit, "99999")
    assert "99999 is not between 1 and 65535" in dialog.local_error.text()
    dialog.serve_port_edit.selectAll()
    qtbot.keyClicks(dialog.serve_port_edit, "11200")
    assert dialog.local_error.text() == ""
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    saved = settings_module.load()
    assert saved.serve_enabled is True and saved.serve_port == 11200


def test_the_window_session_serves_the_store_when_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, archive: Archive, archive_files: list[Path]
) -> None:
    from workstation.session import Session

    monkeypatch.setenv("WORKSTATION_CONFIG_DIR", str(tmp_path / "config"))
    settings = Settings(
        store_port=free_port(),
        store_bind=LOOPBACK,
        store_dir=str(tmp_path / "store"),
        serve_enabled=True,
        serve_port=free_port(),
        nodes={"viewer": RemoteNode("FINDSCU", LOOPBACK, 104, name="viewer")},
    )
    study = archive.studies[0]
    session = Session.open(settings=settings)
    try:
        assert session.serve is not None, session.serve_status
        for path in archive_files[: study.number_of_instances]:
            session.store.store_file(path, move=False)
        assert session.store.flush(30)
        node = RemoteNode(settings.ae_title, LOOPBACK, settings.serve_port)
        images = findscu(
            node,
            [
                "QueryRetrieveLevel=IMAGE",
                f"StudyInstanceUID={study.StudyInstanceUID}",
                "SOPInstanceUID",
            ],
        )
        assert set(_uids(images, "SOPInstanceUID")) == archive.sop_instance_uids(
            study.StudyInstanceUID
        )
    finally:
        session.close()
    assert not port_open(settings.serve_port)
    off = Session.open(settings=dataclasses.replace(settings, serve_enabled=False))
    try:
        assert off.serve is None and not port_open(settings.serve_port)
    finally:
        off.close()
