"""A node's character set: queries with non-ASCII text go out in it, end to end.

A Latin-1 study (stored with SpecificCharacterSet ISO_IR 100) is looked for on real Orthanc
and DCMTK dcmqrscp, which both decode the query's character set, and on an old PACS (written in
tests/quirky.py) that compares the bytes: there the query must be sent in Latin-1, and the CLI
says so when a UTF-8 query finds nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import evt
from test_cli import run

import workstation as ws
from tests.quirky import QuirkySCP, latin1_pacs_find
from tests.servers import DcmqrscpServer, OrthancServer
from workstation import settings
from workstation.errors import InvalidInput

NAME = "Gödel^Kurt"


@pytest.fixture(scope="module")
def latin1_file(archive_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One study whose names are stored in Latin-1 (SpecificCharacterSet ISO_IR 100)."""
    ds = dcmread(archive_files[0])
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = NAME
    ds.PatientID = "LATIN1-1"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path_factory.mktemp("latin1") / "latin1.dcm"
    ds.save_as(path)
    assert b"G\xf6del^Kurt" in path.read_bytes()
    return path


@pytest.fixture(scope="module")
def latin1_dcmqrscp(
    latin1_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DcmqrscpServer]:
    server = DcmqrscpServer(tmp_path_factory.mktemp("dcmqrscp-latin1"), aet="LATIN1")
    server.add_files([latin1_file])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def names(node: ws.RemoteNode, pattern: str) -> list[str]:
    return [str(ds.PatientName) for ds in ws.find(node, ws.Query.study(PatientName=pattern))]


# -- what goes on the wire -----------------------------------------------------------------


@pytest.fixture
def recording_scp() -> Iterator[tuple[QuirkySCP, list[bytes]]]:
    received: list[bytes] = []

    def handler(event: Any) -> Iterator[tuple[int, None]]:
        received.append(event.request.Identifier.getvalue())
        yield 0x0000, None

    with QuirkySCP([(evt.EVT_C_FIND, handler)]) as scp:
        yield scp, received


def test_non_ascii_values_are_sent_in_the_node_charset(
    recording_scp: tuple[QuirkySCP, list[bytes]],
) -> None:
    scp, received = recording_scp
    latin1 = scp.node.with_options(charset="ISO_IR 100")
    results = ws.find(latin1, ws.Query.study(PatientName="Gödel*"))
    assert list(results) == [] and results.charset == "ISO_IR 100"
    assert b"G\xf6del*" in received[-1] and b"ISO_IR 100" in received[-1]
    assert list(ws.find(scp.node, ws.Query.study(PatientName="Gödel*"))) == []
    assert b"G\xc3\xb6del*" in received[-1] and b"ISO_IR 192" in received[-1]
    ascii_only = ws.find(latin1, ws.Query.study(PatientName="Godel*"))
    assert list(ascii_only) == [] and ascii_only.charset == ""
    assert b"\x08\x00\x05\x00" not in received[-1]  # no (0008,0005) for ASCII


def test_an_explicit_charset_wins_over_the_node() -> None:
    query = ws.Query.study(PatientName="Gödel*").with_selectors("SpecificCharacterSet=ISO_IR 192")
    assert query.identifier(charset="ISO_IR 100").SpecificCharacterSet == "ISO_IR 192"
    assert ws.Query.study(PatientName="Gödel*").identifier("ISO_IR 100").SpecificCharacterSet == (
        "ISO_IR 100"
    )


def test_a_value_the_node_charset_cannot_encode_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        ws.Query.study(PatientName="Иван*").identifier(charset="ISO_IR 100")
    message = str(caught.value)
    assert "'И'" in message and "ISO_IR 100 (Latin-1)" in message
    node = ws.RemoteNode("NOWHERE", "127.0.0.1", 9, charset="ISO_IR 100")  # never reached
    with pytest.raises(InvalidInput, match="'И'"):
        list(ws.find(node, ws.Query.study(PatientName="Иван*")))
    run("nodes", "add", "lat", str(node), "--charset", "ISO_IR 100", config=tmp_path)
    result = run("find", "lat", "-q", "PatientName=Иван*", config=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "'И'" in result.stderr and "ISO_IR 100 (Latin-1)" in result.stderr


# -- real PACS -----------------------------------------------------------------------------


def test_latin1_study_on_orthanc(
    make_orthanc: Callable[..., OrthancServer], latin1_file: Path
) -> None:
    """Orthanc decodes the query's character set: Latin-1 and the UTF-8 default both work."""
    node = make_orthanc(files=[latin1_file]).node
    assert names(node.with_options(charset="ISO_IR 100"), "Gödel*") == [NAME]
    assert names(node, "Gödel*") == [NAME]
    assert names(node.with_options(charset="ISO_IR 100"), "GÖDEL^K*") == [NAME]


def test_latin1_study_on_dcmqrscp(latin1_dcmqrscp: DcmqrscpServer) -> None:
    """dcmqrscp (3.6.7) converts the query to its own character set: both work."""
    node = latin1_dcmqrscp.node
    assert names(node.with_options(charset="ISO_IR 100"), "Gödel*") == [NAME]
    assert names(node, "Gödel*") == [NAME]


@pytest.fixture
def byte_matching_pacs() -> Iterator[QuirkySCP]:
    with QuirkySCP([(evt.EVT_C_FIND, latin1_pacs_find([NAME, "Müller^Anna"]))]) as scp:
        yield scp


def test_a_byte_matching_pacs_needs_the_latin1_charset(byte_matching_pacs: QuirkySCP) -> None:
    node = byte_matching_pacs.node
    assert names(node.with_options(charset="ISO_IR 100"), "Gödel*") == [NAME]
    assert names(node, "Gödel*") == []
    assert names(node, "G*del*") == [NAME]  # ASCII: the same in every character set


def test_cli_hint_then_nodes_add_charset(byte_matching_pacs: QuirkySCP, tmp_path: Path) -> None:
    address = str(byte_matching_pacs.node)
    assert run("nodes", "add", "lat", address, "--method", "get", config=tmp_path).returncode == 0
    missed = run("find", "lat", "-q", "PatientName=Gödel*", config=tmp_path)
    assert missed.returncode == 0 and missed.stdout.count("\n") <= 1  # a header at most
    hint = (
        "no match; the query was sent as ISO_IR 192 (UTF-8): if lat holds Latin-1 names, set "
        f'its character set with `workstation nodes add lat {address} --charset "ISO_IR 100"`'
    )
    assert hint in missed.stderr.splitlines()

    added = run("nodes", "add", "lat", address, "--charset", "ISO_IR 100", config=tmp_path)
    assert added.returncode == 0, added.stderr
    listing = run("nodes", "list", config=tmp_path).stdout
    assert "get, ISO_IR 100 (Latin-1)" in listing  # the method given before is kept
    found = run("find", "lat", "-q", "PatientName=Gödel*", "--json", config=tmp_path)
    assert found.returncode == 0, found.stderr
    [line] = found.stdout.splitlines()
    assert json.loads(line)["00100010"]["Value"] == [{"Alphabetic": NAME}]
    assert "no match" not in found.stderr

    bad = run("nodes", "add", "lat", address, "--charset", "latin1", config=tmp_path)
    assert bad.returncode == 2 and "unknown character set 'latin1'" in bad.stderr


def test_nodes_list_shows_the_charset_only_when_not_the_default(tmp_path: Path) -> None:
    run("nodes", "add", "plain", "A@127.0.0.1:104", config=tmp_path)
    run("nodes", "add", "greek", "B@127.0.0.1:104", "--charset", "iso_ir 126", config=tmp_path)
    lines = run("nodes", "list", config=tmp_path).stdout.splitlines()
    assert [line.split()[-1] for line in lines] == ["(Greek)", "move"]


# -- the settings file ---------------------------------------------------------------------


def test_settings_without_a_charset_load_with_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A settings file written before nodes had a character set still loads."""
    monkeypatch.setenv("WORKSTATION_CONFIG_DIR", str(tmp_path))
    old = {
        "version": 1,
        "nodes": {
            "pacs": {
                "ae_title": "PACS",
                "host": "127.0.0.1",
                "port": 104,
                "retrieve_method": "get",
                "connect_timeout": 5.0,
                "dimse_timeout": 30.0,
            }
        },
    }
    settings.settings_path().write_text(json.dumps(old), encoding="utf-8")
    node = settings.load().nodes["pacs"]
    assert node.charset == "ISO_IR 192" and node.retrieve_method == "get"
    loaded = settings.load()
    loaded.nodes["pacs"] = node.with_options(charset="ISO_IR 100")
    settings.save(loaded)
    saved = json.loads(settings.settings_path().read_text(encoding="utf-8"))
    assert saved["nodes"]["pacs"]["charset"] == "ISO_IR 100"
    assert settings.load().nodes["pacs"].charset == "ISO_IR 100"
