"""Errors that tell the truth: the real cause, on one line, never a traceback.

Against a real Orthanc that serves only the AE titles it knows, small pynetdicom SCPs that abort
or send invalid values, and the command line as a person types it. Bad input exits with 2,
network failures with 1.
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag
from pynetdicom import evt

import workstation as ws
from tests.quirky import QuirkySCP
from tests.servers import LOOPBACK, OrthancServer, free_port
from workstation.errors import StoreError, StoreUnusable
from workstation.logs import PER_MINUTE, RateLimit
from workstation.query import Query

NO_SUCH_HOST = "no.such.host.invalid"
#: A host name the IDNA codec refuses (a label over 63 characters): not even a DNS query.
UNENCODABLE_HOST = "a" * 64 + ".example"


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


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserting there is exactly one)."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "config"


# -- a PACS that aborts when it gets a request ----------------------------------------------------


@pytest.fixture(scope="module")
def strict_orthanc(
    tmp_path_factory: pytest.TempPathFactory, archive_files: list[Path]
) -> Iterator[OrthancServer]:
    """An Orthanc that serves only the modalities it knows: for any other calling AE title it
    accepts the association and aborts it on the first request."""
    server = OrthancServer(
        tmp_path_factory.mktemp("strict-orthanc"),
        extra_config={
            f"DicomAlwaysAllow{service}": False for service in ("Echo", "Find", "Get", "Move")
        },
    )
    try:
        server.start()
        server.upload(archive_files[:3])
        yield server
    finally:
        server.kill()


def test_find_aborted_by_the_pacs_says_so_and_names_our_ae_title(
    strict_orthanc: OrthancServer,
) -> None:
    start = time.monotonic()
    with pytest.raises(ws.AssociationAborted) as info:
        list(ws.find(strict_orthanc.node, ws.Query.study(), calling_aet="STRANGER"))
    message = str(info.value)
    assert time.monotonic() - start < 5
    assert "aborted the association on our C-FIND request" in message
    assert "calling AE title 'STRANGER'" in message
    assert "too broad" not in message and "\n" not in message


def test_echo_aborted_by_the_pacs_is_no_timeout(strict_orthanc: OrthancServer) -> None:
    with pytest.raises(ws.AssociationAborted) as info:
        ws.echo(strict_orthanc.node, calling_aet="STRANGER")
    message = str(info.value)
    assert "aborted the association on our C-ECHO request" in message
    assert "'STRANGER'" in message and "within" not in message


def test_the_advice_in_the_message_works(strict_orthanc: OrthancServer) -> None:
    """Once the PACS knows our AE title (and address), the same request is served."""
    strict_orthanc.add_modality("KNOWN", LOOPBACK, free_port())
    assert ws.echo(strict_orthanc.node, calling_aet="KNOWN").status.code == 0
    assert len(list(ws.find(strict_orthanc.node, ws.Query.study(), calling_aet="KNOWN"))) == 1


@pytest.mark.parametrize("verb", ["echo", "find", "move", "get"])
def test_cli_on_a_pacs_that_does_not_know_us(
    strict_orthanc: OrthancServer, verb: str, config: Path, tmp_path: Path
) -> None:
    extra: list[str] = []
    if verb in ("move", "get"):
        extra = ["-q", "PatientID=x", "--store", str(tmp_path / "store")]
    if verb == "move":
        extra += ["--port", str(free_port()), "--bind", LOOPBACK]
    result = run(verb, str(strict_orthanc.node), "--aet", "STRANGER", *extra, config=config)
    assert result.returncode == 1
    line = one_line(result)
    assert "aborted the association on our C-" in line
    assert "'STRANGER'" in line and "too broad" not in line


def _aborting_find(matches: int) -> Any:
    def handler(event: Any) -> Iterator[tuple[int, Dataset | None]]:
        for i in range(matches):
            ds = Dataset()
            ds.QueryRetrieveLevel = "STUDY"
            ds.StudyInstanceUID = f"1.2.3.{i + 1}"
            yield 0xFF00, ds
        event.assoc.abort()

    return handler


def test_abort_on_the_request_names_the_likely_cause() -> None:
    with (
        QuirkySCP([(evt.EVT_C_FIND, _aborting_find(0))]) as scp,
        pytest.raises(ws.AssociationAborted, match="calling AE title 'ME'"),
    ):
        list(ws.find(scp.node, ws.Query.study(), calling_aet="ME"))


def test_abort_after_matches_is_not_blamed_on_the_ae_title() -> None:
    with QuirkySCP([(evt.EVT_C_FIND, _aborting_find(2))]) as scp:
        results = ws.find(scp.node, ws.Query.study(), calling_aet="ME")
        got = []
        with pytest.raises(ws.AssociationAborted) as info:
            for match in results:
                got.append(match.StudyInstanceUID)
    assert got == ["1.2.3.1", "1.2.3.2"]
    assert "aborted the association during C-FIND" in str(info.value)
    assert "AE title" not in str(info.value)


# -- what used to end in a traceback --------------------------------------------------------------


@pytest.mark.parametrize("host", [NO_SUCH_HOST, UNENCODABLE_HOST])
@pytest.mark.parametrize("verb", ["echo", "find", "move", "get"])
def test_unresolvable_host_is_one_line(verb: str, host: str, config: Path, tmp_path: Path) -> None:
    extra = ["-q", "PatientID=x", "--store", str(tmp_path / "s")] if verb in ("move", "get") else []
    result = run(verb, f"NOPE@{host}:104", *extra, config=config)
    assert result.returncode == 1
    assert f"cannot resolve host {host!r}" in one_line(result)


@pytest.mark.parametrize("host", [NO_SUCH_HOST, UNENCODABLE_HOST])
def test_api_raises_network_error_for_an_unresolvable_host(host: str) -> None:
    node = ws.RemoteNode.parse(f"NOPE@{host}:104")
    with pytest.raises(ws.NetworkError, match="cannot resolve host"):
        ws.echo(node)
    with pytest.raises(ws.NetworkError, match="cannot resolve host"):
        list(ws.find(node, ws.Query.study()))


def test_a_file_is_no_store(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_text("x")
    with pytest.raises(StoreUnusable, match="it is a file") as info:
        ws.LocalStore(path)
    assert isinstance(info.value, ws.InvalidInput) and isinstance(info.value, StoreError)
    with pytest.raises(StoreUnusable, match=f"{path} is a file"):
        ws.LocalStore(path / "inside")


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
def test_an_uncreatable_store_folder_says_which_folder() -> None:
    with pytest.raises(StoreUnusable, match="cannot create /proc/no-such-thing"):
        ws.LocalStore("/proc/no-such-thing/store")


@pytest.mark.parametrize("verb", ["move", "get"])
def test_cli_store_that_is_a_file(
    orthanc: OrthancServer, verb: str, config: Path, tmp_path: Path
) -> None:
    path = tmp_path / "a-file"
    path.write_text("x")
    result = run(verb, str(orthanc.node), "-q", "PatientID=x", "--store", str(path), config=config)
    assert result.returncode == 2
    assert one_line(result).endswith(f"cannot use {path} as the store: it is a file, not a folder")


@pytest.mark.parametrize(
    ("verb", "option", "value"),
    [
        ("find", "--limit", "-3"),
        ("find", "--limit", "0"),
        ("find", "--timeout", "-1"),
        ("echo", "--timeout", "0"),
        ("get", "--idle-timeout", "-1"),
        ("move", "--idle-timeout", "nan"),
        ("move", "--total-timeout", "-5"),
        ("get", "--total-timeout", "soon"),
    ],
)
def test_impossible_numbers_are_usage_errors(
    verb: str, option: str, value: str, config: Path
) -> None:
    keys = [] if verb == "echo" else ["-q", "PatientID=x"]
    result = run(verb, "PACS@127.0.0.1:104", *keys, f"{option}={value}", config=config)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(f"workstation {verb}: argument {option}: ") and value in line


# -- values that used to go out unchecked ---------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "named"),
    [
        ("StudyDate=2024-13-45", "'2024-13-45'"),
        ("StudyDate=20241345", "'20241345'"),
        ("StudyDate=20240101-20241399", "end date '20241399'"),
        ("StudyDate=20240230-", "start date '20240230'"),
        ("StudyDate=20241231-20240101", "starts after it ends"),
        ("StudyDate=yesterday", "'yesterday'"),
        ("StudyTime=2599", "hour 25"),
        ("AcquisitionDateTime=20241301", "'20241301'"),
        ("PatientName=Smith\x01*", "U+0001"),
        ("PatientID=ab\x7f", "U+007F"),
        ("AccessionNumber=A\tB", "U+0009"),
    ],
)
def test_impossible_values_are_refused_naming_the_bad_part(
    orthanc: OrthancServer, selector: str, named: str, config: Path
) -> None:
    result = run("find", str(orthanc.node), "-q", selector, config=config)
    assert result.returncode == 2
    line = one_line(result)
    assert named in line and selector.split("=")[0] in line


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("20240101-", "20240101-"),
        ("-20241231", "-20241231"),
        ("", ""),
        ("2024*", "2024*"),
        ("2024-01-02", "20240102"),
        ("2024-01-02-2024-02-03", "20240102-20240203"),
        ("20240101\\20240301", ["20240101", "20240301"]),
    ],
)
def test_legal_date_values_pass_and_dashed_dates_are_converted(value: str, sent: object) -> None:
    assert Query.study(StudyDate=value).identifier().StudyDate == sent


def test_escape_sequences_stay_legal_in_text_but_not_in_codes() -> None:
    name = "\x1b$BYamada\x1b(B"
    assert Query.study(PatientName=name).identifier().PatientName == name
    with pytest.raises(ws.InvalidInput, match=r"U\+001B"):
        Query.study(Modality="\x1bCT")


def test_dashed_dates_find_what_dicom_dates_find(orthanc: OrthancServer, config: Path) -> None:
    found = {}
    for value in ("20160201-20201231", "2016-02-01-2020-12-31"):
        result = run("find", str(orthanc.node), "-q", f"StudyDate={value}", "--csv", config=config)
        assert result.returncode == 0, result.stderr
        found[value] = result.stdout
    assert found["2016-02-01-2020-12-31"] == found["20160201-20201231"]
    assert found["20160201-20201231"].count("\n") == 1 + 12  # the header and 12 of 28 studies


def test_random_bytes_are_not_a_query_file(
    orthanc: OrthancServer, config: Path, tmp_path: Path
) -> None:
    path = tmp_path / "noise.dcm"
    path.write_bytes(random.Random(9).randbytes(4096))
    result = run("find", str(orthanc.node), str(path), config=config)
    assert result.returncode == 2
    assert one_line(result).startswith(f"workstation find: {path} is not a DICOM query file: ")


def test_no_random_file_passes_for_a_query_file(tmp_path: Path) -> None:
    rng = random.Random(4)
    path = tmp_path / "noise.dcm"
    for i in range(600):
        data = rng.randbytes(rng.choice([1, 4, 8, 9, 16, 100, 2000]))
        path.write_bytes(b"\0" * 128 + b"DICM" + data if i % 3 == 0 else data)
        with pytest.raises(ws.InvalidInput, match="is not a DICOM query file"):
            Query.build("S", "STUDY", query_file=path)


@pytest.mark.parametrize("verb", ["move", "get"])
def test_retrieve_without_keys_asks_for_all(
    orthanc: OrthancServer, verb: str, config: Path, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    result = run(verb, str(orthanc.node), "--store", str(store), config=config)
    assert result.returncode == 2
    assert one_line(result) == (
        f"workstation {verb}: {verb} needs -q to say what to retrieve "
        "(or --all for everything the PACS holds)"
    )
    empty = run(verb, str(orthanc.node), "-q", "PatientID=", "--store", str(store), config=config)
    assert empty.returncode == 2 and "--all" in one_line(empty)
    assert not store.exists()  # refused before anything was opened


def test_get_all_retrieves_everything(
    make_orthanc, archive_files: list[Path], config: Path, tmp_path: Path
) -> None:
    pacs = make_orthanc(archive_files[:4])
    store = tmp_path / "store"
    result = run("get", str(pacs.node), "--all", "--store", str(store), "--json", config=config)
    assert result.returncode == 0, result.stderr + result.stdout
    assert json.loads(result.stdout)["received"] == 4


# -- warnings about a peer's values ---------------------------------------------------------------


def _raw(tag: int, vr: str, value: bytes) -> RawDataElement:
    return RawDataElement(Tag(tag), vr, len(value), value, 0, True, True)


def _invalid_values_find(count: int, distinct: bool) -> Any:
    """Matches whose IS, DS and DA values pydicom warns about (or cannot convert)."""

    def handler(event: Any) -> Iterator[tuple[int, Dataset | None]]:
        for i in range(count):
            ds = Dataset()
            ds.QueryRetrieveLevel = "STUDY"
            ds.PatientName = f"P^{i}"
            ds.StudyInstanceUID = f"1.2.3.{i + 1}"
            series = f"x{i:02d}" if distinct else "abc"
            ds[0x00080020] = _raw(0x00080020, "DA", b"2024XX01")
            ds[0x00201206] = _raw(0x00201206, "IS", series.encode().ljust(4))
            ds[0x00101030] = _raw(0x00101030, "DS", b"x.5 ")
            yield 0xFF00, ds
        yield 0x0000, None

    return handler


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom, in the SCP encoding the values
@pytest.mark.parametrize("output", ["--csv", "--json"])
def test_a_warning_about_a_peer_value_prints_once_on_one_line(output: str, config: Path) -> None:
    with QuirkySCP([(evt.EVT_C_FIND, _invalid_values_find(5, distinct=False))]) as scp:
        result = run("find", str(scp.node), output, config=config)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 5 + (output == "--csv")
    assert result.stderr.count("Invalid value for VR IS: 'abc'") == 1
    assert "warn" not in result.stderr and ".py" not in result.stderr
    assert "Traceback" not in result.stderr
    assert all(line.startswith("WARNING ") for line in result.stderr.splitlines())


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom, in the SCP encoding the values
def test_a_flood_of_warnings_is_cut_short(config: Path) -> None:
    with QuirkySCP([(evt.EVT_C_FIND, _invalid_values_find(40, distinct=True))]) as scp:
        result = run("find", str(scp.node), "--csv", config=config)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 41
    lines = result.stderr.strip().splitlines()
    assert sum("Invalid value for VR IS" in line for line in lines) == PER_MINUTE
    assert len(lines) == PER_MINUTE + 1
    assert lines[-1].endswith(f"... {40 - PER_MINUTE} more warnings about invalid data suppressed")


def test_rate_limit_once_per_message_and_n_per_window() -> None:
    now = [0.0]
    limit = RateLimit(per_minute=3, window=60, clock=lambda: now[0])
    reported: list[str] = []

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("pydicom", logging.WARNING, "x.py", 1, message, None, None)

    limit._report = lambda count: reported.append(str(count))  # type: ignore[method-assign]
    shown = [limit.filter(record(m)) for m in ["a", "a", "b", "c", "d", "e", "e", "a"]]
    assert shown == [True, False, True, True, False, False, False, False]
    now[0] = 61
    assert limit.filter(record("f")) and reported == ["2"]
    assert not limit.filter(record("b"))  # still once per message, in any window
    limit.flush()
    assert reported == ["2"]


@pytest.mark.parametrize(
    ("bind", "says"),
    [("no.such.host.invalid", "no such address"), ("192.0.2.1", "not an address of this")],
)
def test_storage_scp_on_an_address_not_ours_says_so(tmp_path: Path, bind: str, says: str) -> None:
    with ws.LocalStore(tmp_path / "store") as store:
        server = ws.StorageServer(ws.LocalAE("WORKSTATION", 0, bind), store)
        with pytest.raises(ws.WorkstationError) as info:
            server.start()
    assert says in str(info.value) and "--bind" in str(info.value)
