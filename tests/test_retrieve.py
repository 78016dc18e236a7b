"""C-MOVE and C-GET through ``workstation.move``/``get`` against real Orthanc and dcmqrscp.

Every test that retrieves checks that the SOP Instance UIDs in our store are exactly those the
PACS holds for the request, and that each stored instance equals the PACS's (pixel data too).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

import workstation as ws
from tests.servers import LOOPBACK, dcmtk, free_port
from tests.support import port_open
from workstation.demo import Archive, DemoArchive
from workstation.dimse.outcome import RetrieveProgress


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ws.LocalStore]:
    with ws.LocalStore(tmp_path / "store") as store:
        yield store


@pytest.fixture
def scp(store: ws.LocalStore, store_port: int) -> Iterator[ws.StorageServer]:
    """Our storage SCP as the session PACS know it: WORKSTATION at 127.0.0.1:store_port."""
    with ws.StorageServer(ws.LocalAE("WORKSTATION", store_port, LOOPBACK), store) as server:
        yield server


def stored_uids(store: ws.LocalStore, study_uid: str | None = None) -> set[str]:
    store.flush()
    return store.instance_uids(study_uid=study_uid)


def assert_identical(store: ws.LocalStore, uids: set[str], source) -> None:  # type: ignore[no-untyped-def]
    """Each stored instance equals the source's dataset, pixel data included."""
    for uid in uids:
        path = store.path_of(uid)
        assert path is not None and path.is_file(), uid
        ours = dcmread(path)
        theirs = source(uid)
        assert ours.PixelData == theirs.PixelData, uid
        assert ours == theirs, uid  # every element, file meta aside


def from_orthanc(orthanc):  # type: ignore[no-untyped-def]
    from io import BytesIO

    return lambda uid: dcmread(BytesIO(orthanc.file_bytes(uid)))


def from_archive(archive: Archive):  # type: ignore[no-untyped-def]
    refs = {ref.SOPInstanceUID: ref for ref in archive.all_instances()}
    return lambda uid: archive.dataset(refs[uid])


class Recorder:
    def __init__(self) -> None:
        self.events: list[RetrieveProgress] = []

    def __call__(self, progress: RetrieveProgress) -> None:
        self.events.append(progress)


def test_move_study_from_orthanc(orthanc, scp, store, archive: Archive) -> None:  # type: ignore[no-untyped-def]
    study = archive.studies[0]
    progress = Recorder()
    outcome = ws.move(
        orthanc.node,
        ws.Query.study(StudyInstanceUID=study.StudyInstanceUID),
        scp,
        on_progress=progress,
    )
    held = orthanc.instance_uids(study.StudyInstanceUID)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert outcome.expected == outcome.received == len(held) == study.number_of_instances
    assert outcome.missing == ()
    assert stored_uids(store) == held
    assert_identical(store, held, from_orthanc(orthanc))
    assert progress.events and progress.events[-1].fraction == 1.0
    assert max(e.received for e in progress.events) == len(held)


def test_get_study_from_orthanc(orthanc, store, archive: Archive) -> None:  # type: ignore[no-untyped-def]
    study = archive.studies[5]
    outcome = ws.get(orthanc.node, ws.Query.study(StudyInstanceUID=study.StudyInstanceUID), store)
    held = orthanc.instance_uids(study.StudyInstanceUID)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert stored_uids(store) == held
    assert_identical(store, held, from_orthanc(orthanc))


def test_move_study_from_dcmqrscp(dcmqrscp, scp, store, archive: Archive) -> None:  # type: ignore[no-untyped-def]
    study = archive.studies[13]
    outcome = ws.move(dcmqrscp.node, ws.Query.study(StudyInstanceUID=study.StudyInstanceUID), scp)
    want = archive.sop_instance_uids(study.StudyInstanceUID)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert stored_uids(store) == want
    assert_identical(store, want, from_archive(archive))


def test_get_by_patient_id_from_dcmqrscp(dcmqrscp, store, archive: Archive) -> None:  # type: ignore[no-untyped-def]
    # STUDY level without StudyInstanceUID: the matching studies are found first.
    outcome = ws.get(dcmqrscp.node, ws.Query.study(PatientID="TB1-000002"), store)
    want = {
        ref.SOPInstanceUID for ref in archive.all_instances() if ref.study.PatientID == "TB1-000002"
    }
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert len({s.StudyInstanceUID for s in archive.studies if s.PatientID == "TB1-000002"}) > 1
    assert stored_uids(store) == want
    assert_identical(store, want, from_archive(archive))


def test_series_level_move(orthanc, scp, store, archive: Archive) -> None:  # type: ignore[no-untyped-def]
    series = archive.studies[6].series[1]
    query = ws.Query.series(SeriesInstanceUID=series.SeriesInstanceUID)
    outcome = ws.move(orthanc.node, query, scp)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert stored_uids(store) == {i.SOPInstanceUID for i in series.instances}


def test_list_of_study_uids_in_one_call(orthanc, scp, store, archive: Archive) -> None:  # type: ignore[no-untyped-def]
    studies = archive.studies[1:4]
    uids = "\\".join(s.StudyInstanceUID for s in studies)
    outcome = ws.move(orthanc.node, ws.Query.study(StudyInstanceUID=uids), scp)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    want = set().union(*(archive.sop_instance_uids(s.StudyInstanceUID) for s in studies))
    assert stored_uids(store) == want


def test_image_level_get_of_two_instances(dcmqrscp, store, archive: Archive) -> None:  # type: ignore[no-untyped-def]
    study = archive.studies[0]
    series = study.series[0]
    picked = [i.SOPInstanceUID for i in series.instances[:2]]
    query = ws.Query.image(
        StudyInstanceUID=study.StudyInstanceUID,
        SeriesInstanceUID=series.SeriesInstanceUID,
        SOPInstanceUID="\\".join(picked),
    )
    outcome = ws.get(dcmqrscp.node, query, store)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert stored_uids(store) == set(picked)


def test_same_study_twice_is_stored_once(orthanc, scp, store, archive: Archive) -> None:  # type: ignore[no-untyped-def]
    study = archive.studies[2]
    query = ws.Query.study(StudyInstanceUID=study.StudyInstanceUID)
    first = ws.move(orthanc.node, query, scp)
    second = ws.move(orthanc.node, query, scp)
    assert first.state is second.state is ws.RetrieveState.DONE
    files = [p for p in store.root.rglob("*.dcm") if ".incoming" not in p.parts]
    assert len(files) == study.number_of_instances
    assert stored_uids(store) == archive.sop_instance_uids(study.StudyInstanceUID)


def test_nothing_matches_is_a_clear_failure(orthanc, scp) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ws.OperationFailed) as info:
        ws.move(orthanc.node, ws.Query.study(PatientID="NO-SUCH-PATIENT"), scp)
    assert "nothing" in str(info.value) and "matches" in str(info.value)


def run_cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKSTATION_CONFIG_DIR": str(config)}
    return subprocess.run(
        [sys.executable, "-m", "workstation", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_cli_move_and_get(
    orthanc, dcmqrscp, store_port: int, archive: Archive, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    study = archive.studies[7]
    target = tmp_path / "cli-store"
    moved = run_cli(
        "move",
        str(orthanc.node),
        "-q",
        f"StudyInstanceUID={study.StudyInstanceUID}",
        "--store",
        str(target),
        "--port",
        str(store_port),
        "--bind",
        LOOPBACK,
        "--json",
        config=tmp_path / "cfg",
    )
    assert moved.returncode == 0, moved.stderr + moved.stdout

    outcome = json.loads(moved.stdout)
    assert outcome["state"] == "done" and outcome["received"] == study.number_of_instances
    got = run_cli(
        "get",
        str(dcmqrscp.node),
        "-q",
        "PatientID=TB1-000001",
        "--store",
        str(target),
        config=tmp_path / "cfg",
    )
    assert got.returncode == 0, got.stderr + got.stdout
    assert "done: received" in got.stdout
    with ws.LocalStore(target) as check:
        want = archive.sop_instance_uids(study.StudyInstanceUID) | {
            r.SOPInstanceUID for r in archive.all_instances() if r.study.PatientID == "TB1-000001"
        }
        assert check.instance_uids() == want


def test_dcmtk_movescu_into_our_store_scp(
    orthanc, store_port: int, archive: Archive, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """DCMTK movescu asks Orthanc to send a study to `workstation store-scp`."""
    study = archive.studies[10]
    target = tmp_path / "scp-store"
    env = {**os.environ, "WORKSTATION_CONFIG_DIR": str(tmp_path / "cfg")}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workstation",
            "store-scp",
            "--store",
            str(target),
            "--port",
            str(store_port),
            "--bind",
            LOOPBACK,
            "--allow",
            "ORTHANC",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_open(store_port):
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        result = subprocess.run(
            [
                dcmtk("movescu"),
                "-S",
                "-aet",
                "MOVESCU",
                "-aec",
                "ORTHANC",
                "-aem",
                "WORKSTATION",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={study.StudyInstanceUID}",
                LOOPBACK,
                str(orthanc.node.port),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        # A storescu calling as an AE not in --allow is turned away.
        refused = subprocess.run(
            [
                dcmtk("storescu"),
                "-aet",
                "INTRUDER",
                "-aec",
                "WORKSTATION",
                LOOPBACK,
                str(store_port),
                str(tmp_path / "none.dcm"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert refused.returncode != 0
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert out.count("stored ") == study.number_of_instances
    with ws.LocalStore(target) as check:
        assert check.instance_uids() == archive.sop_instance_uids(study.StudyInstanceUID)


def test_killed_retrieve_leaves_no_partial_file_and_retry_completes(tmp_path: Path) -> None:
    """kill -9 a `workstation move` midway: every visible file is whole; a rerun completes."""
    demo = demo_with_big_study()
    port = free_port()
    demo.delay_per_instance = 0.05
    target = tmp_path / "store"
    study = demo.archive.studies[0]  # type: ignore[union-attr]
    env = {**os.environ, "WORKSTATION_CONFIG_DIR": str(tmp_path / "cfg")}
    with demo:
        demo.add_destination("WORKSTATION", LOOPBACK, port)
        args = [
            "move",
            str(demo.node),
            "-q",
            f"StudyInstanceUID={study.StudyInstanceUID}",
            "--store",
            str(target),
            "--port",
            str(port),
            "--bind",
            LOOPBACK,
        ]
        proc = subprocess.Popen(
            [sys.executable, "-m", "workstation", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while len(list(target.rglob("*.dcm"))) < 5:
            assert proc.poll() is None, "the retrieve ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.kill()
        proc.wait()
        visible = [p for p in target.rglob("*.dcm") if ".incoming" not in p.parts]
        assert 5 <= len(visible) < study.number_of_instances
        for path in visible:  # whole files only: each equals the archive's instance
            ds = dcmread(path)
            assert ds.PixelData == dcmread_bytes(demo.part10(ds.SOPInstanceUID)).PixelData
        demo.delay_per_instance = 0
        rerun = run_cli(*args, "--only-missing", "--json", config=tmp_path / "cfg")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        resumed = json.loads(rerun.stdout)
        # The rerun asked only for what the killed one had not stored.
        assert resumed["already_stored"] == len(visible)
        assert resumed["received"] == study.number_of_instances - len(visible)
        with ws.LocalStore(target) as check:
            assert check.instance_uids() == {
                i.SOPInstanceUID for s in study.series for i in s.instances
            }


def dcmread_bytes(data: bytes):  # type: ignore[no-untyped-def]
    from io import BytesIO

    return dcmread(BytesIO(data))


def demo_with_big_study() -> DemoArchive:
    from workstation.demo import generate_archive

    archive = generate_archive(
        seed=7,
        patients=1,
        studies_per_patient=(1, 1),
        series_per_study=(2, 2),
        instances_per_series=(20, 20),
        rows=64,
        columns=64,
    )
    return DemoArchive(archive, ae_title="DEMO", port=0)


def test_a_second_storage_server_on_the_same_port_shares_the_first(
    orthanc, scp, store, archive: Archive, store_port: int
) -> None:  # type: ignore[no-untyped-def]
    """The API uses a storage SCP already running in this process instead of binding twice."""
    study = archive.studies[8]
    second = ws.StorageServer(ws.LocalAE("WORKSTATION", store_port, LOOPBACK), store)
    with second:
        assert second.running and second.port == scp.port
        outcome = ws.move(
            orthanc.node, ws.Query.study(StudyInstanceUID=study.StudyInstanceUID), second
        )
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert stored_uids(store) == archive.sop_instance_uids(study.StudyInstanceUID)
    assert scp.running  # stopping the sharer leaves the owner listening


def test_only_missing_asks_for_what_the_store_lacks(orthanc, scp, store, archive: Archive) -> None:  # type: ignore[no-untyped-def]
    study = archive.studies[11]
    first_series = study.series[0]
    query = ws.Query.series(
        StudyInstanceUID=study.StudyInstanceUID, SeriesInstanceUID=first_series.SeriesInstanceUID
    )
    assert ws.move(orthanc.node, query, scp).state is ws.RetrieveState.DONE
    whole = ws.Query.study(StudyInstanceUID=study.StudyInstanceUID)
    outcome = ws.move(orthanc.node, whole, scp, only_missing=True)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert outcome.already_stored == len(first_series.instances)
    assert outcome.received == study.number_of_instances - len(first_series.instances)
    assert stored_uids(store) == orthanc.instance_uids(study.StudyInstanceUID)
    again = ws.move(orthanc.node, whole, scp, only_missing=True)
    assert again.state is ws.RetrieveState.DONE and again.received == 0
    assert again.already_stored == study.number_of_instances


def test_no_patient_data_in_logs_at_info(
    orthanc, scp, store, archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    """Names, IDs and birth dates stay out of the log at INFO and above (pynetdicom's too)."""
    import logging

    study = archive.studies[0]
    caplog.set_level(logging.INFO)
    list(ws.find(orthanc.node, ws.Query.study(PatientName="Müller*")))
    ws.move(orthanc.node, ws.Query.study(PatientID=study.PatientID), scp)
    ws.get(orthanc.node, ws.Query.study(StudyInstanceUID=study.StudyInstanceUID), store)
    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert caplog.records  # something was logged, so the check means something
    for secret in (study.PatientName, "Müller", study.PatientID, study.PatientBirthDate):
        assert secret not in text


def _study_with_series(archive: Archive, at_least: int):  # type: ignore[no-untyped-def]
    return next(s for s in archive.studies if len(s.series) >= at_least)


@pytest.mark.parametrize("method", ["move", "get"])
def test_series_in_parallel_over_several_associations(  # type: ignore[no-untyped-def]
    orthanc, scp, store, archive: Archive, method: str
) -> None:
    study = _study_with_series(archive, 3)
    node = orthanc.node.with_options(retrieve_associations=3)
    query = ws.Query.study(StudyInstanceUID=study.StudyInstanceUID)
    progress = Recorder()
    if method == "move":
        outcome = ws.move(node, query, scp, on_progress=progress)
    else:
        outcome = ws.get(node, query, store, on_progress=progress)
    held = orthanc.instance_uids(study.StudyInstanceUID)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert outcome.associations == 3
    assert outcome.expected == outcome.received == len(held)
    assert stored_uids(store) == held
    assert_identical(store, held, from_orthanc(orthanc))
    assert progress.events[-1].fraction == 1.0
    assert outcome.completed == len(held)  # the lanes' counters add up


def test_cancel_stops_every_parallel_association(tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    demo = demo_with_big_study()
    demo.delay_per_instance = 0.2  # 20 instances a series: 4 s each without a cancel
    token = ws.CancelToken()

    def on_progress(progress: RetrieveProgress) -> None:
        if progress.received >= 4:
            token.cancel()

    with demo, ws.LocalStore(tmp_path / "store") as store:
        node = demo.node.with_options(retrieve_associations=2)
        study = demo.archive.studies[0]  # type: ignore[union-attr]
        start = time.monotonic()
        outcome = ws.get(
            node,
            ws.Query.study(StudyInstanceUID=study.StudyInstanceUID),
            store,
            on_progress=on_progress,
            cancel=token,
        )
        assert outcome.state is ws.RetrieveState.CANCELLED, outcome.message
        assert outcome.associations == 2
        assert time.monotonic() - start < 3.5
        assert 4 <= outcome.received < 40
        assert len(stored_uids(store)) == outcome.received  # what arrived is what it says


def test_only_missing_over_parallel_associations_fetches_only_the_missing(  # type: ignore[no-untyped-def]
    orthanc, scp, store, archive: Archive
) -> None:
    study = _study_with_series(archive, 3)
    node = orthanc.node.with_options(retrieve_associations=3)
    query = ws.Query.study(StudyInstanceUID=study.StudyInstanceUID)
    assert ws.move(node, query, scp).state is ws.RetrieveState.DONE
    held = sorted(stored_uids(store))
    gone = held[:: max(1, len(held) // 3)][:3]  # one here and there, across series
    store.index.delete_instances(gone)
    for uid in gone:
        path = store.root / next(p for p in store.root.rglob(f"{uid}.dcm"))
        path.unlink()
    before = scp.received
    outcome = ws.move(node, query, scp, only_missing=True)
    assert outcome.state is ws.RetrieveState.DONE, outcome.message
    assert scp.received - before == len(gone)  # the PACS sent only those
    assert stored_uids(store) == set(held)
