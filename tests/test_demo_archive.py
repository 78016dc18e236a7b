"""The demo Q/R SCP against DCMTK's findscu/getscu/movescu/storescp as independent clients.

Expected results are computed from the generator's :class:`Archive`, not from the SCP.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pynetdicom import build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from tests.support import free_port
from workstation.demo.archive import DemoArchive, demo_archive
from workstation.demo.generator import Archive, StudyInfo
from workstation.demo.matching import QueryError, match_one, matches
from workstation.dimse.pynetdicom_ae import make_ae

HOST = "127.0.0.1"
TODAY = dt.date.today()


def _dcmtk(tool: str) -> str | None:
    """The DCMTK binary (pynetdicom installs Python scripts of the same names: skip those)."""
    for folder in ["/usr/bin", *os.environ.get("PATH", "").split(os.pathsep)]:
        path = Path(folder) / tool
        if path.is_file() and os.access(path, os.X_OK):
            with path.open("rb") as handle:
                if handle.read(2) != b"#!":
                    return str(path)
    return None


TOOLS = {name: _dcmtk(name) for name in ("echoscu", "findscu", "getscu", "movescu", "storescp")}
needs_dcmtk = pytest.mark.skipif(
    None in TOOLS.values(), reason="DCMTK command-line tools are not installed"
)


def _tool(name: str) -> str:
    path = TOOLS[name]
    assert path is not None
    return path


def _run(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoArchive]:
    with demo_archive(seed=1) as server:
        yield server


@pytest.fixture(scope="module")
def content(demo: DemoArchive) -> Archive:
    assert demo.archive is not None
    return demo.archive


def _find(demo: DemoArchive, folder: Path, keys: list[str], model: str = "-S") -> list[Dataset]:
    """Run findscu with ``-k`` keys; return the response identifiers."""
    folder.mkdir(parents=True, exist_ok=True)
    args = [_tool("findscu"), model, "-aec", demo.ae_title, "-X", "-od", str(folder)]
    args += [arg for key in ["SpecificCharacterSet=ISO_IR 192", *keys] for arg in ("-k", key)]
    result = _run([*args, HOST, str(demo.port)])
    assert result.returncode == 0, result.stderr
    return [dcmread(path) for path in sorted(folder.glob("rsp*.dcm"))]


def _body(part10: bytes) -> bytes:
    """The data set of a Part-10 file: what follows the file meta group (PS3.10 7.1)."""
    assert part10[128:132] == b"DICM"
    meta_length = int.from_bytes(part10[140:144], "little")  # (0002,0000) UL value
    return part10[144 + meta_length :]


def _expected_body(content: Archive, sop_uid: str) -> bytes:
    ref = next(r for r in content.all_instances() if r.SOPInstanceUID == sop_uid)
    buffer = BytesIO()
    dcmwrite(buffer, content.dataset(ref), enforce_file_format=True)
    return _body(buffer.getvalue())


def _assert_study(content: Archive, folder: Path, study: StudyInfo) -> None:
    files = {
        dcmread(path, stop_before_pixels=True).SOPInstanceUID: path for path in folder.iterdir()
    }
    assert set(files) == content.sop_instance_uids(study.StudyInstanceUID)
    for uid, path in files.items():
        assert _body(path.read_bytes()) == _expected_body(content, uid)


def _values(value: object) -> list[str]:
    """A possibly multi-valued element value as a list of strings."""
    return [str(v) for v in value] if isinstance(value, list | tuple | MultiValue) else [str(value)]


def _multi_series_study(content: Archive) -> StudyInfo:
    return next(s for s in content.studies if len(s.series) > 1 and s.number_of_instances > 3)


# -- DCMTK as the client -----------------------------------------------------------------


@needs_dcmtk
def test_echo(demo: DemoArchive) -> None:
    result = _run([_tool("echoscu"), "-aec", demo.ae_title, HOST, str(demo.port)])
    assert result.returncode == 0, result.stderr


@needs_dcmtk
@pytest.mark.parametrize(
    ("pattern", "expect"),
    [
        ("Müller*", lambda name: name.startswith("Müller^")),
        ("M?LLER^J*", lambda name: name == "Müller^Jürgen"),  # case-insensitive
        ("smith^*", lambda name: name.lower().startswith("smith^")),
        ("Иван*", lambda name: name.startswith("Иванов")),
        ("*Tarou*", lambda name: "Tarou" in name),
        ("Sm?th^John", lambda name: name == "Smith^John"),
    ],
)
def test_study_find_by_wildcard_name(
    demo: DemoArchive,
    content: Archive,
    tmp_path: Path,
    pattern: str,
    expect: Callable[[str], bool],
) -> None:
    keys = [
        "QueryRetrieveLevel=STUDY",
        f"PatientName={pattern}",
        "StudyInstanceUID",
        "StudyDate",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
        "SeriesDescription",  # a SERIES key at STUDY level: returned empty
    ]
    responses = _find(demo, tmp_path, keys)
    expected = {s.StudyInstanceUID: s for s in content.studies if expect(s.PatientName)}
    assert expected, "the generator no longer makes this name"
    assert [r.StudyInstanceUID for r in responses] == [
        s.StudyInstanceUID for s in content.studies if s.StudyInstanceUID in expected
    ]
    for rsp in responses:
        study = expected[rsp.StudyInstanceUID]
        assert rsp.SpecificCharacterSet == "ISO_IR 192"
        assert rsp.QueryRetrieveLevel == "STUDY"
        assert str(rsp.PatientName) == study.PatientName
        assert rsp.StudyDate == study.StudyDate
        assert _values(rsp.ModalitiesInStudy) == list(study.modalities)
        assert rsp.NumberOfStudyRelatedSeries == len(study.series)
        assert rsp.NumberOfStudyRelatedInstances == study.number_of_instances
        assert rsp.SeriesDescription == ""


@needs_dcmtk
def test_study_find_does_not_fold_accents(
    demo: DemoArchive, content: Archive, tmp_path: Path
) -> None:
    """Like Orthanc, the demo matches names ignoring case but not accents: ``MULLER*`` does
    not find Müller (the window sends ``M*LL*`` and refines on its side instead)."""
    assert any(s.PatientName.startswith("Müller") for s in content.studies)
    unaccented = [s for s in content.studies if s.PatientName.upper().startswith("MULLER")]
    for pattern in ("MULLER*", "muller*"):
        keys = ["QueryRetrieveLevel=STUDY", f"PatientName={pattern}", "StudyInstanceUID"]
        responses = _find(demo, tmp_path / pattern.strip("*"), keys)
        assert [r.StudyInstanceUID for r in responses] == [s.StudyInstanceUID for s in unaccented]


@needs_dcmtk
def test_series_find(demo: DemoArchive, content: Archive, tmp_path: Path) -> None:
    study = _multi_series_study(content)
    keys = [
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={study.StudyInstanceUID}",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
    ]
    responses = _find(demo, tmp_path, keys)
    assert [r.SeriesInstanceUID for r in responses] == [s.SeriesInstanceUID for s in study.series]
    for rsp, series in zip(responses, study.series, strict=True):
        assert rsp.Modality == series.Modality
        assert rsp.SeriesNumber == series.SeriesNumber
        assert rsp.SeriesDescription == series.SeriesDescription
        assert rsp.NumberOfSeriesRelatedInstances == len(series.instances)


@needs_dcmtk
def test_series_find_by_modality_list_across_studies(
    demo: DemoArchive, content: Archive, tmp_path: Path
) -> None:
    keys = ["QueryRetrieveLevel=SERIES", "Modality=CR\\US", "SeriesInstanceUID", "StudyInstanceUID"]
    responses = _find(demo, tmp_path, keys)
    expected = {
        (study.StudyInstanceUID, series.SeriesInstanceUID)
        for study in content.studies
        for series in study.series
        if series.Modality in ("CR", "US")
    }
    assert {(r.StudyInstanceUID, r.SeriesInstanceUID) for r in responses} == expected


@needs_dcmtk
@pytest.mark.parametrize(
    ("query", "low", "high"),
    [
        ("20180101-20201231", "20180101", "20201231"),
        ("-20160630", "", "20160630"),
        ("20250101-", "20250101", ""),
        (TODAY.strftime("%Y%m%d"), TODAY.strftime("%Y%m%d"), TODAY.strftime("%Y%m%d")),
    ],
)
def test_study_find_by_date_range(
    demo: DemoArchive, content: Archive, tmp_path: Path, query: str, low: str, high: str
) -> None:
    responses = _find(demo, tmp_path, ["QueryRetrieveLevel=STUDY", f"StudyDate={query}"])
    expected = {
        s.StudyInstanceUID
        for s in content.studies
        if (not low or s.StudyDate >= low) and (not high or s.StudyDate <= high)
    }
    assert expected
    assert {r.StudyInstanceUID for r in responses} == expected
    assert all(low <= r.StudyDate and (not high or r.StudyDate <= high) for r in responses)


@needs_dcmtk
def test_today_and_yesterday_have_studies(demo: DemoArchive, tmp_path: Path) -> None:
    yesterday = TODAY - dt.timedelta(days=1)
    query = f"StudyDate={yesterday:%Y%m%d}-{TODAY:%Y%m%d}"
    responses = _find(demo, tmp_path, ["QueryRetrieveLevel=STUDY", query])
    dates = sorted(r.StudyDate for r in responses)
    assert len(dates) >= 4 and dates[0] == f"{yesterday:%Y%m%d}" and dates[-1] == f"{TODAY:%Y%m%d}"


@needs_dcmtk
def test_patient_root_patient_level(demo: DemoArchive, content: Archive, tmp_path: Path) -> None:
    keys = [
        "QueryRetrieveLevel=PATIENT",
        "PatientID=TB1-*",
        "PatientName",
        "NumberOfPatientRelatedStudies",
    ]
    responses = _find(demo, tmp_path, keys, model="-P")
    counts: dict[str, int] = {}
    for study in content.studies:
        counts[study.PatientID] = counts.get(study.PatientID, 0) + 1
    assert {r.PatientID: r.NumberOfPatientRelatedStudies for r in responses} == counts
    assert all("StudyInstanceUID" not in r for r in responses)


@needs_dcmtk
def test_get_study(demo: DemoArchive, content: Archive, tmp_path: Path) -> None:
    study = _multi_series_study(content)
    args = [_tool("getscu"), "-S", "-aec", demo.ae_title, "-od", str(tmp_path)]
    args += ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study.StudyInstanceUID}"]
    result = _run([*args, HOST, str(demo.port)])
    assert result.returncode == 0, result.stderr
    _assert_study(content, tmp_path, study)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "storescp exited"
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"storescp did not listen on {port}")


@needs_dcmtk
def test_move_study_to_storescp(demo: DemoArchive, content: Archive, tmp_path: Path) -> None:
    study = _multi_series_study(content)
    received = tmp_path / "received"
    received.mkdir()
    port = free_port()
    storescp = subprocess.Popen(
        [_tool("storescp"), "-aet", "MOVEDEST", "-od", str(received), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, storescp)
        demo.add_destination("MOVEDEST", HOST, port)
        args = [_tool("movescu"), "-S", "-aec", demo.ae_title, "-aem", "MOVEDEST"]
        args += [
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study.StudyInstanceUID}",
        ]
        result = _run([*args, HOST, str(demo.port)])
        assert result.returncode == 0, result.stderr
    finally:
        storescp.terminate()
        storescp.wait(timeout=10)
    _assert_study(content, received, study)


@needs_dcmtk
def test_move_to_unknown_destination_answers_a801(demo: DemoArchive, content: Archive) -> None:
    args = [_tool("movescu"), "-d", "-S", "-aec", demo.ae_title, "-aem", "NOSUCHAE"]
    args += [
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={content.studies[0].StudyInstanceUID}",
    ]
    result = _run([*args, HOST, str(demo.port)])
    output = (result.stdout + result.stderr).lower()
    assert "0xa801" in output, output[-2000:]


# -- pynetdicom as the client: cancel and refusals -----------------------------------------


def _identifier(level: str, **values: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_find_cancel(demo: DemoArchive, content: Archive) -> None:
    ae = make_ae("TESTSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(HOST, demo.port, ae_title=demo.ae_title)
    assert assoc.is_established
    demo.delay_per_match = 0.1
    statuses = []
    try:
        identifier = _identifier("STUDY", StudyInstanceUID="")
        for status, _ in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
            statuses.append(status.Status)
            if len(statuses) == 2:
                context = assoc.accepted_contexts[0].context_id
                assoc.send_c_cancel(1, context)
    finally:
        demo.delay_per_match = 0.0
        assoc.release()
        ae.shutdown()
    assert statuses[-1] == 0xFE00
    assert 2 <= len(statuses) < len(content.studies)


def test_get_cancel(demo: DemoArchive, content: Archive) -> None:
    study = max(content.studies, key=lambda s: s.number_of_instances)
    stored: list[str] = []

    def on_store(event: evt.Event) -> int:
        stored.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = make_ae("TESTSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles: list[Any] = []
    for sop_class in demo.sop_class_uids:
        ae.add_requested_context(sop_class)
        roles.append(build_role(sop_class, scp_role=True))
    assoc = ae.associate(
        HOST,
        demo.port,
        ae_title=demo.ae_title,
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, on_store)],
    )
    assert assoc.is_established
    demo.delay_per_instance = 0.1
    statuses = []
    try:
        identifier = _identifier("STUDY", StudyInstanceUID=study.StudyInstanceUID)
        responses = assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet)
        for status, _ in responses:
            statuses.append(status.Status)
            if len(statuses) == 2:
                context = next(
                    cx.context_id
                    for cx in assoc.accepted_contexts
                    if cx.abstract_syntax == StudyRootQueryRetrieveInformationModelGet
                )
                assoc.send_c_cancel(1, context)
    finally:
        demo.delay_per_instance = 0.0
        assoc.release()
        ae.shutdown()
    assert statuses[-1] == 0xFE00
    assert 2 <= len(stored) < study.number_of_instances


@pytest.mark.parametrize(
    "identifier",
    [
        _identifier("PATIENT", PatientID="*"),  # Study Root has no PATIENT level
        _identifier("", StudyInstanceUID=""),
    ],
)
def test_invalid_find_identifier_answers_a900(demo: DemoArchive, identifier: Dataset) -> None:
    ae = make_ae("TESTSCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(HOST, demo.port, ae_title=demo.ae_title)
    try:
        responses = list(assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind))
    finally:
        assoc.release()
        ae.shutdown()
    assert [status.Status for status, _ in responses] == [0xA900]


def test_instances_and_node(demo: DemoArchive, content: Archive) -> None:
    assert demo.instance_count == len(content.all_instances())
    assert demo.node.port == demo.port and demo.node.host == HOST
    today = [s for s in content.studies if s.StudyDate == TODAY.strftime("%Y%m%d")]
    assert len(today) >= 2


def test_stopped_archive_has_no_node() -> None:
    small = DemoArchive([], ae_title="EMPTY")
    assert small.instance_count == 0
    with pytest.raises(RuntimeError):
        _ = small.node


# -- matching rules (PS3.4 C.2.2.2) --------------------------------------------------------


@pytest.mark.parametrize(
    ("vr", "query", "values", "expected"),
    [
        ("PN", "", ("Doe^John",), True),
        ("PN", "*", (), True),
        ("PN", "doe^john", ("Doe^John",), True),
        ("PN", "Doe^John", ("Doe^John^^^",), True),
        ("PN", "Dvorak*", ("Dvořák^Antonín",), False),  # accents are not folded
        ("PN", "DVO??K*", ("Dvořák^Antonín",), True),  # but case is, as on Orthanc
        ("PN", "müller", ("MÜLLER",), True),
        ("PN", "山田*", ("Yamada^Tarou=山田^太郎",), True),
        ("PN", "Doe", ("Doe^John",), False),
        ("PN", "doe john", ("Doe^John",), True),
        ("PN", "Doe^*", ("Doe^John",), True),
        ("PN", "Yamada^Tarou", ("Yamada^Tarou=山田^太郎",), True),
        ("LO", "CT?HEAD", ("CT HEAD",), True),
        ("UI", "1.2.3", ("1.2.34",), False),
        ("DA", "20240101-20241231", ("20240615",), True),
        ("DA", "20240101-20241231", ("20250101",), False),
        ("DA", "-20240101", ("20240101",), True),
        ("DA", "20240101-", ("",), False),
        ("DA", "20240101", ("2024.01.01",), True),
        ("TM", "0800-1200", ("115959.123",), True),
        ("TM", "0800-1200", ("120100",), False),
        ("DT", "20240101-20240102", ("20240101120000+0100",), True),
        ("IS", "3", ("03",), True),
    ],
)
def test_match_one(vr: str, query: str, values: tuple[str, ...], expected: bool) -> None:
    assert match_one(vr, query, values) is expected


def test_uid_list_and_bad_range() -> None:
    assert matches("UI", ("1.2", "1.3"), ("1.3",))
    assert not matches("UI", ("1.2", "1.3"), ("1.4",))
    with pytest.raises(QueryError):
        match_one("DA", "2024-01-01", ("20240101",))
