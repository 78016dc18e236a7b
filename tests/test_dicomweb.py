"""DICOMweb nodes (PS3.18) against Orthanc with its DICOMweb plugin: QIDO-RS search, WADO-RS
retrieve into the local store, STOW-RS send, credentials, and the CLI as a user runs it."""

from __future__ import annotations

import fnmatch
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import workstation as ws
from tests.servers import LOOPBACK, OrthancServer, free_port
from workstation.demo.generator import Archive
from workstation.dicomweb import credentials
from workstation.dicomweb.client import CredentialsRefused
from workstation.errors import ConnectionFailed
from workstation.nodes import RemoteNode, RetrieveMethod

USER, PASSWORD = "alice", "correct horse"


@pytest.fixture(scope="module")
def web_orthanc(
    tmp_path_factory: pytest.TempPathFactory, archive_files: list[Path]
) -> Iterator[OrthancServer]:
    """Orthanc holding the archive, DICOMweb at /dicom-web/, HTTP Basic user alice."""
    server = OrthancServer(
        tmp_path_factory.mktemp("orthanc-web"), dicomweb=True, users={USER: PASSWORD}
    )
    try:
        server.start()
        server.upload(archive_files)
        yield server
    finally:
        server.kill()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "config"
    monkeypatch.setenv("WORKSTATION_CONFIG_DIR", str(folder))
    return folder


@pytest.fixture
def web(web_orthanc: OrthancServer, config: Path) -> RemoteNode:
    """The node ``web`` with its password saved as ``nodes add`` saves it."""
    node = RemoteNode(url=web_orthanc.dicomweb_url, name="web", auth="basic", username=USER)
    credentials.save_secret(node, PASSWORD)
    return node


def study_uids(results: ws.FindResults) -> set[str]:
    return {str(ds.StudyInstanceUID) for ds in results}


# -- the node model ----------------------------------------------------------------------------


def test_a_url_gives_a_web_node_and_old_settings_still_load() -> None:
    node = RemoteNode.parse("https://pacs.example.org/dicom-web/", name="w")
    assert (node.is_web, node.host, node.port, node.url) == (
        True, "pacs.example.org", 443, "https://pacs.example.org/dicom-web",
    )  # fmt: skip
    assert node.retrieve_method is RetrieveMethod.WADO and str(node) == node.url
    dimse = RemoteNode.parse("ORTHANC@127.0.0.1:4242")
    assert not dimse.is_web and str(dimse) == "ORTHANC@127.0.0.1:4242"
    # a node saved before DICOMweb existed (no url/auth/username keys) loads as it was
    old = {"ae_title": "PACS", "host": "10.0.0.1", "port": 104, "retrieve_method": "get"}
    assert RemoteNode(**old) == RemoteNode.parse("PACS@10.0.0.1:104", retrieve_method="get")
    with pytest.raises(ws.InvalidInput, match="http"):
        RemoteNode.parse("ftp://host/dicom-web")


# -- QIDO-RS -----------------------------------------------------------------------------------


def test_qido_studies_by_patient_name_wildcard(web: RemoteNode, archive: Archive) -> None:
    # Orthanc's DICOMweb plugin (1.7) matches no non-ASCII text in QIDO-RS: an ASCII prefix
    name = next(s.PatientName for s in archive.studies if s.PatientName[:3].isascii())
    pattern = name[:3] + "*"
    expected = {
        s.StudyInstanceUID for s in archive.studies if fnmatch.fnmatchcase(s.PatientName, pattern)
    }
    results = ws.find(web, ws.Query.study(PatientName=pattern))
    assert study_uids(results) == expected and results.count == len(expected)
    assert results.status is not None and results.status.code == 0


def test_qido_studies_by_date_range(web: RemoteNode, archive: Archive) -> None:
    dates = sorted({s.StudyDate for s in archive.studies})
    low, high = dates[len(dates) // 4], dates[3 * len(dates) // 4]
    expected = {s.StudyInstanceUID for s in archive.studies if low <= s.StudyDate <= high}
    assert 0 < len(expected) < len(archive.studies)
    assert study_uids(ws.find(web, ws.Query.study(StudyDate=f"{low}-{high}"))) == expected


def test_qido_series_of_a_study(web: RemoteNode, archive: Archive) -> None:
    study = archive.studies[3]
    found = list(ws.find(web, ws.Query.series(StudyInstanceUID=study.StudyInstanceUID)))
    assert {str(ds.SeriesInstanceUID) for ds in found} == {
        s.SeriesInstanceUID for s in study.series
    }
    assert {str(ds.Modality) for ds in found} == {s.Modality for s in study.series}


# -- WADO-RS -----------------------------------------------------------------------------------


def stored_file(store: ws.LocalStore, study: str, series: str, sop: str) -> Path:
    return store.root / study / series / f"{sop}.dcm"


def test_wado_retrieves_a_study_byte_identical(
    web: RemoteNode, web_orthanc: OrthancServer, archive: Archive, tmp_path: Path
) -> None:
    study = archive.studies[5]
    refs = archive.all_instances([study])
    seen: list[ws.RetrieveProgress] = []
    with ws.LocalStore(tmp_path / "store") as store:
        outcome = ws.get(
            web, ws.Query.study(StudyInstanceUID=study.StudyInstanceUID), store,
            on_progress=seen.append,
        )  # fmt: skip
        assert outcome.ok, outcome
        assert (outcome.method, outcome.received, outcome.expected) == (
            "wado",
            len(refs),
            len(refs),
        )
        assert store.instance_uids(study.StudyInstanceUID) == {
            r.instance.SOPInstanceUID for r in refs
        }
        for ref in refs:
            path = stored_file(
                store, study.StudyInstanceUID, ref.series.SeriesInstanceUID,
                ref.instance.SOPInstanceUID,
            )  # fmt: skip
            assert path.read_bytes() == web_orthanc.file_bytes(ref.instance.SOPInstanceUID)
    assert seen and seen[-1].received == len(refs)


def test_only_missing_retrieves_just_the_rest(
    web: RemoteNode, archive: Archive, tmp_path: Path
) -> None:
    study = next(s for s in archive.studies if len(s.series) >= 2)
    first = study.series[0]
    total = sum(len(s.instances) for s in study.series)
    with ws.LocalStore(tmp_path / "store") as store:
        part = ws.get(
            web,
            ws.Query.series(
                StudyInstanceUID=study.StudyInstanceUID, SeriesInstanceUID=first.SeriesInstanceUID
            ),
            store,
        )
        assert part.ok and part.received == len(first.instances)
        rest = ws.get(
            web, ws.Query.study(StudyInstanceUID=study.StudyInstanceUID), store, only_missing=True
        )
        assert rest.ok, rest
        assert (rest.already_stored, rest.received) == (
            len(first.instances), total - len(first.instances),
        )  # fmt: skip
        assert store.instance_uids(study.StudyInstanceUID) == archive.sop_instance_uids(
            study.StudyInstanceUID
        )


# -- STOW-RS -----------------------------------------------------------------------------------


def test_stow_round_trip_to_a_second_orthanc(
    web: RemoteNode,
    archive: Archive,
    make_orthanc: Callable[..., OrthancServer],
    tmp_path: Path,
) -> None:
    study = archive.studies[7]
    other = make_orthanc(dicomweb=True)
    target = RemoteNode(url=other.dicomweb_url, name="other")
    with ws.LocalStore(tmp_path / "store") as store:
        assert ws.get(web, ws.Query.study(StudyInstanceUID=study.StudyInstanceUID), store).ok
        outcome = ws.send(target, store=store, study_uid=study.StudyInstanceUID)
    expected = archive.sop_instance_uids(study.StudyInstanceUID)
    assert outcome.ok and outcome.sent == len(expected), outcome
    found = ws.find(target, ws.Query.image(StudyInstanceUID=study.StudyInstanceUID))
    assert {str(ds.SOPInstanceUID) for ds in found} == expected
    assert other.instance_uids(study.StudyInstanceUID) == expected
    # The WADO-RS retrieve and the STOW-RS send are in the store's audit trail.
    from workstation import audit

    events = audit.trail_for(tmp_path / "store").query()
    actions = sorted((e.action, e.node, e.study_uids, e.instances) for e in events)
    count = len(expected)
    assert [(a, s, n) for a, _node, s, n in actions] == [
        ("retrieve", (study.StudyInstanceUID,), count),
        ("send", (study.StudyInstanceUID,), count),
    ]


# -- failures ----------------------------------------------------------------------------------


def test_a_wrong_password_or_token_says_so_in_one_line(
    web: RemoteNode, web_orthanc: OrthancServer, tmp_path: Path
) -> None:
    credentials.save_secret(web, "wrong")
    with pytest.raises(CredentialsRefused) as caught:
        list(ws.find(web, ws.Query.study(PatientID="*")))
    message = str(caught.value)
    assert message.startswith("DICOMweb node web refused our credentials (HTTP 401)")
    assert "\n" not in message and "--password-file" in message
    bearer = RemoteNode(url=web_orthanc.dicomweb_url, name="tok", auth="bearer")
    credentials.save_secret(bearer, "not-a-token")
    with ws.LocalStore(tmp_path / "store") as store, pytest.raises(CredentialsRefused) as caught:
        ws.get(bearer, ws.Query.study(StudyInstanceUID="1.2.3"), store)
    assert str(caught.value).startswith("DICOMweb node tok refused our credentials (HTTP 401)")
    assert "--token-file" in str(caught.value)


def test_a_server_that_is_down_is_named(config: Path) -> None:
    node = RemoteNode(url=f"http://{LOOPBACK}:{free_port()}/dicom-web", name="gone")
    with pytest.raises(
        ConnectionFailed, match=r"cannot reach DICOMweb node gone at .*connection refused"
    ):
        list(ws.find(node, ws.Query.study()))


def test_the_window_search_helper_takes_web_nodes(web: RemoteNode, archive: Archive) -> None:
    from workstation.cancel import CancelToken
    from workstation.dimse.find_helper import FindOutcome, FindProcess

    helper = FindProcess()
    try:
        rows = [
            row
            for batch in helper.study_rows(
                web,
                ws.Query.study(),
                calling_aet="WS",
                limit=None,
                cancel=CancelToken(),
                outcome=FindOutcome(),
            )
            for row in batch
        ]
    finally:
        helper.close()
    assert {row.study_uid for row in rows} == {s.StudyInstanceUID for s in archive.studies}


# -- the CLI -----------------------------------------------------------------------------------


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKSTATION_CONFIG_DIR": str(config), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "workstation", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_cli_add_find_get(web_orthanc: OrthancServer, archive: Archive, tmp_path: Path) -> None:
    config = tmp_path / "config"
    secret = tmp_path / "password.txt"
    secret.write_text(PASSWORD + "\n")
    added = run_cli(
        config, "nodes", "add", "web", web_orthanc.dicomweb_url,
        "--user", USER, "--password-file", str(secret),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    settings_text = (config / "settings.json").read_text()
    assert PASSWORD not in settings_text and web_orthanc.dicomweb_url in settings_text
    kept = config / credentials.FILE_NAME
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and PASSWORD in kept.read_text()

    study = next(s for s in archive.studies if s.PatientName.isascii())  # see above
    found = run_cli(config, "find", "web", "-q", f"PatientName={study.PatientName}", "--json")
    assert found.returncode == 0, found.stderr
    uids = {json.loads(line)["0020000D"]["Value"][0] for line in found.stdout.splitlines()}
    assert uids == {
        s.StudyInstanceUID for s in archive.studies if s.PatientName == study.PatientName
    }

    store = tmp_path / "store"
    got = run_cli(
        config, "get", "web", "-q", f"StudyInstanceUID={study.StudyInstanceUID}",
        "--store", str(store),
    )  # fmt: skip
    assert got.returncode == 0, got.stderr + got.stdout
    files = {p.stem for p in (store / study.StudyInstanceUID).rglob("*.dcm")}
    assert files == archive.sop_instance_uids(study.StudyInstanceUID)

    secret.write_text("wrong\n")
    assert (
        run_cli(
            config, "nodes", "add", "web", web_orthanc.dicomweb_url, "--password-file", str(secret)
        ).returncode
        == 0
    )
    refused = run_cli(config, "echo", "web")
    assert refused.returncode == 1
    assert (
        refused.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "DICOMweb node web refused our credentials (HTTP 401): check them, or save new ones "
            f"with: workstation nodes add web {web_orthanc.dicomweb_url} --user {USER} "
            "--password-file FILE"
        )
    )


def test_qido_uid_list(web: RemoteNode, archive: Archive) -> None:
    uids = {archive.studies[1].StudyInstanceUID, archive.studies[9].StudyInstanceUID}
    assert (
        study_uids(ws.find(web, ws.Query.study(StudyInstanceUID="\\".join(sorted(uids))))) == uids
    )


def test_our_dicom_json_reader_matches_pydicom(web: RemoteNode, archive: Archive) -> None:
    """QIDO-RS answers are turned into identifier bytes without pydicom: the same data sets
    as pydicom's Dataset.from_json gives, for studies, series and instances."""
    from workstation.dicomweb.client import DicomWebClient
    from workstation.dicomweb.dicomjson import encode
    from workstation.dicomweb.qido import pydicom_identifier
    from workstation.identifiers import RawIdentifier

    study = archive.studies[0].StudyInstanceUID
    with DicomWebClient(web) as client:
        items = [
            *client.get_json("studies", [("includefield", "all")], what="test"),
            *client.get_json(f"studies/{study}/series", [("includefield", "all")], what="test"),
            *client.get_json(f"studies/{study}/instances", [("includefield", "all")], what="test"),
        ]
    assert len(items) > len(archive.studies)
    assert any(not json.dumps(item, ensure_ascii=False).isascii() for item in items)
    for item in items:
        fast = encode(item)
        assert fast is not None
        ours, theirs = RawIdentifier(fast, implicit_vr=False), pydicom_identifier(item)
        assert ours.dataset() == theirs.dataset()
        assert ours.json_dict() == theirs.json_dict()


def test_the_retrieve_queue_retrieves_from_a_web_node(
    web: RemoteNode, archive: Archive, tmp_path: Path
) -> None:
    """The window's retrieves go through the queue: a web node needs no storage SCP."""
    from workstation.jobs import JobState, RetrieveQueue

    study = archive.studies[11]
    with ws.LocalStore(tmp_path / "store") as store:
        queue = RetrieveQueue(store, None, db_path=tmp_path / "jobs.sqlite")
        try:
            job = queue.submit(web, study_uid=study.StudyInstanceUID)
            done = queue.wait(job.id, 60)
        finally:
            queue.shutdown()
        assert done.state is JobState.DONE, done.message
        assert store.instance_uids(study.StudyInstanceUID) == archive.sop_instance_uids(
            study.StudyInstanceUID
        )
