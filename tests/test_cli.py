"""The command line as a person at a terminal uses it, against real Orthanc and wlmscpfs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from workstation.demo import Archive


def run(*args: str, config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKSTATION_CONFIG_DIR": str(config), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "workstation", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "config"


def test_echo(orthanc, config: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("echo", str(orthanc.node), config=config)
    assert result.returncode == 0, result.stderr
    assert "echo success" in result.stdout


def test_find_table_shows_exactly_the_matches(orthanc, archive: Archive, config: Path) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "find",
        str(orthanc.node),
        "-S",
        "-q",
        "PatientName=Müller*",
        "-q",
        "StudyDate=20150101-20241231",
        config=config,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    want = [
        s
        for s in archive.studies
        if s.PatientName.startswith("Müller") and "20150101" <= s.StudyDate <= "20241231"
    ]
    assert len(lines) == 1 + len(want)  # header + one row per study
    for study in want:
        assert any(study.StudyInstanceUID in line and study.PatientName in line for line in lines)
    assert f"{len(want)} matches" in result.stderr


def test_find_json_is_one_dicom_json_object_per_line(
    orthanc, archive: Archive, config: Path
) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "find",
        str(orthanc.node),
        "-P",
        "-L",
        "PATIENT",
        "-q",
        "PatientID=TB1*",
        "--json",
        config=config,
    )
    assert result.returncode == 0, result.stderr
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    names = {obj["00100010"]["Value"][0]["Alphabetic"] for obj in objects}
    assert {o["00100020"]["Value"][0] for o in objects} == {s.PatientID for s in archive.studies}
    assert "Yamada^Tarou" in names and "Παπαδόπουλος^Γιώργος" in names
    yamada = next(o for o in objects if o["00100010"]["Value"][0]["Alphabetic"] == "Yamada^Tarou")
    assert yamada["00100010"]["Value"][0]["Ideographic"] == "山田^太郎"


def test_find_csv_and_limit(orthanc, config: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("find", str(orthanc.node), "--csv", "--limit", "4", config=config)
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    assert rows[0].startswith("PatientName,PatientID")
    assert len(rows) == 5


def test_query_file_merged_under_selectors(
    orthanc, archive: Archive, config: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "Smith*"
    ds.AccessionNumber = "A000099"  # overridden below
    ds.StudyInstanceUID = ""
    path = tmp_path / "query.dcm"
    ds.save_as(path, implicit_vr=True, little_endian=True)
    result = run(
        "find",
        str(orthanc.node),
        str(path),
        "-q",
        "AccessionNumber=A000012",
        "--json",
        config=config,
    )
    assert result.returncode == 0, result.stderr
    uids = {json.loads(line)["0020000D"]["Value"][0] for line in result.stdout.splitlines()}
    assert uids == {s.StudyInstanceUID for s in archive.studies if s.AccessionNumber == "A000012"}


def test_worklist_by_sequence_selector(worklist, worklist_items, config: Path) -> None:  # type: ignore[no-untyped-def]
    result = run(
        "find",
        str(worklist.node),
        "-W",
        "-q",
        "ScheduledProcedureStepSequence.Modality=MR",
        "--json",
        config=config,
    )
    assert result.returncode == 0, result.stderr
    found = {json.loads(line)["00080050"]["Value"][0] for line in result.stdout.splitlines()}
    want = {
        str(i.AccessionNumber)
        for i in worklist_items
        if i.ScheduledProcedureStepSequence[0].Modality == "MR"
    }
    assert found == want and found


def test_same_studies_as_dcmtk_findscu(orthanc, config: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.servers import findscu

    ours = run("find", str(orthanc.node), "-q", "StudyDate=20200101-", "--json", config=config)
    assert ours.returncode == 0, ours.stderr
    our_uids = {json.loads(line)["0020000D"]["Value"][0] for line in ours.stdout.splitlines()}
    theirs = findscu(
        orthanc.node,
        ["QueryRetrieveLevel=STUDY", "StudyDate=20200101-", "StudyInstanceUID"],
    )
    assert our_uids == {str(ds.StudyInstanceUID) for ds in theirs}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-q", "PatientNme=x"], "did you mean 'PatientName'"),
        (["-q", "(0010,001G)=x"], "bad tag '(0010,001G)'"),
        (["-q", "=x"], "selector"),
        (["/no/such/query.dcm"], "/no/such/query.dcm"),
    ],
)
def test_bad_input_is_one_line_no_traceback(
    orthanc, config: Path, args: list[str], expected: str
) -> None:  # type: ignore[no-untyped-def]
    result = run("find", str(orthanc.node), *args, config=config)
    assert result.returncode == 2  # bad usage
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert expected in result.stderr


def test_unreachable_node_exit_code_and_message(config: Path) -> None:
    from tests.servers import free_port

    port = free_port()
    result = run("find", f"PACS@127.0.0.1:{port}", config=config)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "connection refused" in result.stderr and str(port) in result.stderr


def test_saved_nodes_round_trip(orthanc, config: Path) -> None:  # type: ignore[no-untyped-def]
    assert run("nodes", "add", "main", str(orthanc.node), config=config).returncode == 0
    listing = run("nodes", "list", config=config)
    assert "main" in listing.stdout and str(orthanc.node) in listing.stdout
    echo = run("echo", "MAIN", config=config)
    assert echo.returncode == 0, echo.stderr
    assert run("nodes", "remove", "main", config=config).returncode == 0
    gone = run("echo", "main", config=config)
    assert gone.returncode == 2 and "no node named 'main'" in gone.stderr
