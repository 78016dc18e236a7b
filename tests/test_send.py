"""Sending studies, series and files to a node (C-STORE): DCMTK storescp and Orthanc receive.

A user checks that what arrived is what the store holds (the data set bytes after the File Meta
Information, or the pixels when the node needed them decompressed), that the outcome names
what was not sent and why, and that a stop leaves exactly the instances sent so far.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    UltrasoundImageStorage,
    generate_uid,
)
from pynetdicom import evt

import workstation as ws
from tests.quirky import QuirkySCP
from tests.servers import LOOPBACK, ManagedProcess, OrthancServer, dcmtk, free_port, port_open
from workstation.demo import Archive
from workstation.dimse.send import SendState
from workstation.nodes import RemoteNode
from workstation.store import LocalStore
from workstation.store.walk import read_part10


class Storescp(ManagedProcess):
    """DCMTK storescp writing what it receives into ``workdir/received``."""

    name = "storescp"

    def __init__(self, workdir: Path, *options: str, aet: str = "STORESCP") -> None:
        super().__init__(workdir)
        self.options = options
        self.aet = aet
        self.port = 0
        self.received = self.workdir / "received"

    @property
    def node(self) -> RemoteNode:
        return RemoteNode(self.aet, LOOPBACK, self.port, dimse_timeout=10, connect_timeout=5)

    def start(self, timeout: float = 15.0) -> Storescp:
        self.port = self.port or free_port()
        self.received.mkdir(exist_ok=True)
        argv = [dcmtk("storescp"), "-aet", self.aet, "-od", str(self.received), *self.options]
        self._spawn([*argv, str(self.port)])
        self._wait_until(lambda: port_open(self.port), timeout)
        return self

    def files(self) -> dict[str, bytes]:
        """SOP Instance UID -> the file storescp wrote."""
        found = {}
        for path in self.received.iterdir():
            data = path.read_bytes()
            found[str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = data
        return found


def data_set(part10: bytes) -> bytes:
    """The data set of a Part-10 file: the bytes after its File Meta Information."""
    _, offset, _ = read_part10(part10)
    return part10[offset:]


@pytest.fixture
def make_storescp(tmp_path: Path) -> Iterator[Callable[..., Storescp]]:
    started: list[Storescp] = []

    def make(*options: str) -> Storescp:
        server = Storescp(tmp_path / f"storescp{len(started)}", *options)
        started.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def storescp(make_storescp: Callable[..., Storescp]) -> Storescp:
    """A storescp taking every transfer syntax DCMTK knows (+xa)."""
    return make_storescp("+xa")


@pytest.fixture
def study(archive: Archive) -> Any:
    """The first study: a CT series of 6 and two US series of 4 and 3 (13 instances)."""
    first = archive.studies[0]
    assert [(s.Modality, len(s.instances)) for s in first.series] == [
        ("US", 4),
        ("US", 3),
        ("CT", 6),
    ]
    return first


def fill_store(root: Path, archive: Archive, studies: list[Any], tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    archive.write(incoming, studies)
    with LocalStore(root, fsync=False) as store:
        report = store.import_path(incoming)
        assert report.stored == len(archive.all_instances(studies))
        store.flush()


@pytest.fixture
def store(tmp_path: Path, archive: Archive, study: Any) -> Iterator[LocalStore]:
    """A local store holding the first two studies of the archive."""
    fill_store(tmp_path / "store", archive, [study, archive.studies[1]], tmp_path)
    with LocalStore(tmp_path / "store", fsync=False) as opened:
        yield opened


def test_study_arrives_at_storescp_identical(
    store: LocalStore, storescp: Storescp, archive: Archive, study: Any
) -> None:
    progress: list[ws.SendProgress] = []
    outcome = ws.send(
        storescp.node, store=store, study_uid=study.StudyInstanceUID, on_progress=progress.append
    )
    assert outcome.state is SendState.DONE
    assert str(outcome) == f"sent 13 of 13 instances to {storescp.node}"
    received = storescp.files()
    assert set(received) == archive.sop_instance_uids(study.StudyInstanceUID)
    sizes = 0
    for uid, data in received.items():
        path = store.path_of(uid)
        assert path is not None
        original = data_set(path.read_bytes())
        assert data_set(data) == original
        sizes += len(original)
    assert all(r.status == 0 and not r.converted for r in outcome.results)
    last = progress[-1]
    assert (last.sent, last.failed, last.total, last.bytes) == (13, 0, 13, sizes)
    assert [p.done for p in progress] == list(range(14))  # 0 before the first, then each one


def test_series_arrives_at_orthanc(
    store: LocalStore,
    make_orthanc: Callable[..., OrthancServer],
    archive: Archive,
    study: Any,
) -> None:
    orthanc = make_orthanc()
    series = study.series[1]
    outcome = ws.send(orthanc.node, store=store, series_uid=series.SeriesInstanceUID)
    assert outcome.ok and outcome.sent == 3, str(outcome)
    wanted = {i.SOPInstanceUID for i in series.instances}
    assert orthanc.instance_uids() == wanted
    for uid in wanted:
        path = store.path_of(uid)
        assert path is not None
        assert data_set(orthanc.file_bytes(uid)) == data_set(path.read_bytes())


CT_ONLY = r"""
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LocalEndianExplicit
TransferSyntax2 = LittleEndianImplicit
[[PresentationContexts]]
[CTOnly]
PresentationContext1 = VerificationSOPClass\Uncompressed
PresentationContext2 = CTImageStorage\Uncompressed
[[Profiles]]
[CT]
PresentationContexts = CTOnly
"""


def test_a_sop_class_the_node_refuses_is_reported_not_sent(
    store: LocalStore,
    make_storescp: Callable[..., Storescp],
    archive: Archive,
    study: Any,
    tmp_path: Path,
) -> None:
    config = tmp_path / "ct-only.cfg"
    config.write_text(CT_ONLY)
    node = make_storescp("-xf", str(config), "CT")
    outcome = ws.send(node.node, store=store, study_uid=study.StudyInstanceUID)
    ct = {i.SOPInstanceUID for i in study.series[2].instances}
    assert set(node.files()) == ct
    assert outcome.state is SendState.PARTIAL
    refused = (
        "the node does not accept Ultrasound Image Storage: it refused the presentation "
        "context (check the SOP classes it is configured to store)"
    )
    assert {r.sop_instance_uid for r in outcome.failed} == (
        archive.sop_instance_uids(study.StudyInstanceUID) - ct
    )
    assert {(r.sop_class_uid, r.reason, r.status) for r in outcome.failed} == {
        (UltrasoundImageStorage, refused, None)
    }
    assert str(outcome) == f"sent 6 of 13 instances to {node.node}; 7 not sent: 7 × {refused}"


def test_the_peers_failure_status_and_comment_are_reported(
    store: LocalStore, make_storescp: Callable[..., Storescp], study: Any
) -> None:
    node = make_storescp("+xa")
    shutil.rmtree(node.received)  # storescp cannot write: it answers "out of resources"
    outcome = ws.send(node.node, store=store, series_uid=study.series[1].SeriesInstanceUID)
    assert outcome.state is SendState.FAILED and outcome.sent == 0
    assert {r.status for r in outcome.results} == {0xA700}
    assert outcome.results[0].reason.startswith("the node answered 0xA700 out of resources")

    def refuse(event: Any) -> Dataset:
        status = Dataset()
        status.Status = 0xC123
        status.ErrorComment = "archive volume full"
        return status

    with QuirkySCP([(evt.EVT_C_STORE, refuse)], contexts=[UltrasoundImageStorage]) as scp:
        outcome = ws.send(scp.node, store=store, series_uid=study.series[1].SeriesInstanceUID)
    assert [(r.status, r.error_comment) for r in outcome.results] == [
        (0xC123, "archive volume full")
    ] * 3
    assert "0xC123 unable to process" in str(outcome) and "(archive volume full)" in str(outcome)


def test_cancel_stops_after_the_current_instance(
    store: LocalStore, storescp: Storescp, study: Any
) -> None:
    token = ws.CancelToken()

    def progress(p: ws.SendProgress) -> None:
        if p.sent == 3:
            token.cancel()

    outcome = ws.send(
        storescp.node,
        store=store,
        study_uid=study.StudyInstanceUID,
        on_progress=progress,
        cancel=token,
    )
    assert outcome.state is SendState.CANCELLED
    assert outcome.sent == 3 and outcome.total == 13
    sent = {r.sop_instance_uid for r in outcome.results if r.sent}
    assert set(storescp.files()) == sent
    assert {r.reason for r in outcome.failed} == {"not sent: the send was cancelled before it"}
    assert str(outcome) == f"cancelled: sent 3 of 13 instances to {storescp.node}"
    assert ws.send(storescp.node, store=store, study_uid=study.StudyInstanceUID).ok  # released


@pytest.fixture
def mixed_folder(tmp_path: Path, archive: Archive, study: Any) -> dict[str, Any]:
    """Two plain CT files, an RLE-compressed CT, a JPEG Baseline one no decoder can read, a
    text file, and a hidden folder with a DICOM file in it."""
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    refs = [r for r in archive.all_instances([study]) if r.instance.SOPClassUID == CTImageStorage]
    plain = []
    for ref in refs[:2]:
        path = folder / "sub" / f"{ref.SOPInstanceUID}.dcm"
        archive.dataset(ref).save_as(path, enforce_file_format=True)
        plain.append(ref.SOPInstanceUID)
    archive.dataset(refs[3]).save_as(folder / ".hidden" / "x.dcm", enforce_file_format=True)

    def copy(ref: Any, syntax: str) -> Dataset:
        ds = archive.dataset(ref)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if syntax == RLELossless:
            ds.compress(RLELossless, generate_instance_uid=False)
        else:
            ds.file_meta.TransferSyntaxUID = syntax
            ds.PixelData = encapsulate([b"\xff\xd8 not really a JPEG \xff\xd9"])
            ds["PixelData"].VR = "OB"
        ds.save_as(folder / f"{syntax}.dcm", enforce_file_format=True)
        return ds

    rle = copy(refs[2], RLELossless)
    jpeg = copy(refs[2], JPEGBaseline8Bit)
    (folder / "notes.txt").write_text("not DICOM")
    return {
        "folder": folder,
        "plain": plain,
        "rle": rle,
        "jpeg": jpeg,
        "pixels": archive.dataset(refs[2]).pixel_array,
    }


def test_files_a_node_takes_only_uncompressed_are_decompressed_or_reported(
    make_storescp: Callable[..., Storescp], mixed_folder: dict[str, Any]
) -> None:
    node = make_storescp()  # storescp's default: uncompressed transfer syntaxes only
    outcome = ws.send(node.node, [mixed_folder["folder"]])
    rle, jpeg = mixed_folder["rle"], mixed_folder["jpeg"]
    assert outcome.skipped == (str(mixed_folder["folder"] / "notes.txt"),)
    assert outcome.state is SendState.PARTIAL and (outcome.sent, outcome.total) == (3, 4)
    received = node.files()
    assert set(received) == {*mixed_folder["plain"], rle.SOPInstanceUID}
    arrived = dcmread(node.received / next(
        p for p in os.listdir(node.received) if p.endswith(rle.SOPInstanceUID)
    ))  # fmt: skip
    assert arrived.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(arrived.pixel_array, mixed_folder["pixels"])
    (failed,) = outcome.failed
    assert failed.sop_instance_uid == jpeg.SOPInstanceUID
    assert failed.reason.startswith(
        "not sent: it is compressed as JPEG Baseline (Process 1), which the node does not "
        "accept, and no decoder for it is installed (pydicom needs one of: "
    )
    assert str(outcome).endswith("; 1 file skipped (not DICOM)")
    assert {r.sop_instance_uid for r in outcome.results if r.converted} == {rle.SOPInstanceUID}


def test_compressed_files_go_as_they_are_where_the_node_takes_them(
    storescp: Storescp, mixed_folder: dict[str, Any]
) -> None:
    outcome = ws.send(storescp.node, [mixed_folder["folder"]])
    assert outcome.ok and outcome.sent == 4 and outcome.converted == 0, str(outcome)
    received = storescp.files()
    for ds in (mixed_folder["rle"], mixed_folder["jpeg"]):
        syntax = ds.file_meta.TransferSyntaxUID
        original = (mixed_folder["folder"] / f"{syntax}.dcm").read_bytes()
        assert data_set(received[ds.SOPInstanceUID]) == data_set(original)


def test_many_sop_classes_go_over_several_associations(
    make_storescp: Callable[..., Storescp], archive: Archive, study: Any, tmp_path: Path
) -> None:
    """65 SOP classes need 130 presentation contexts: more than one association carries."""
    folder = tmp_path / "classes"
    folder.mkdir()
    template = archive.dataset(archive.all_instances([study])[0])
    sent = set()
    for n in range(65):
        ds = template.copy()
        ds.file_meta = template.file_meta.copy()
        sop_class = f"1.2.826.0.1.3680043.10.1234.99.{n}"
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(folder / f"{n}.dcm", enforce_file_format=True)
        sent.add(ds.SOPInstanceUID)
    node = make_storescp("+xa", "-pm")  # promiscuous: takes SOP classes it does not know
    outcome = ws.send(node.node, [folder])
    assert outcome.ok and outcome.associations == 2, str(outcome)
    assert set(node.files()) == sent


def test_nothing_to_send_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ws.InvalidInput, match=r"no DICOM instances .* \(1 file that are not"):
        ws.send(RemoteNode("X", LOOPBACK, 1), [tmp_path])
    with pytest.raises(ws.InvalidInput, match="no such file or folder"):
        ws.send(RemoteNode("X", LOOPBACK, 1), [tmp_path / "missing"])


# -- the command line --------------------------------------------------------------------------


def cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WORKSTATION_CONFIG_DIR": str(config), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, "-m", "workstation", "send", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_cli_sends_a_study_from_the_store(
    tmp_path: Path,
    archive: Archive,
    study: Any,
    make_storescp: Callable[..., Storescp],
) -> None:
    config = tmp_path / "config"
    fill_store(tmp_path / "store", archive, [study], tmp_path)
    storescp = make_storescp("+xa")
    node = str(storescp.node)
    run = cli(node, "--study", study.StudyInstanceUID, "--store", str(tmp_path / "store"),
              "--json", config=config)  # fmt: skip
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert (result["state"], result["sent"], result["total"]) == ("done", 13, 13)
    assert {i["sop_instance_uid"] for i in result["instances"]} == set(storescp.files())
    assert set(storescp.files()) == archive.sop_instance_uids(study.StudyInstanceUID)


def test_cli_exit_codes(
    tmp_path: Path, archive: Archive, study: Any, make_storescp: Callable[..., Storescp]
) -> None:
    config = tmp_path / "config"
    folder = tmp_path / "files"
    archive.write(folder, [study])
    (tmp_path / "ct.cfg").write_text(CT_ONLY)
    refusing = make_storescp("-xf", str(tmp_path / "ct.cfg"), "CT")
    run = cli(str(refusing.node), str(folder), config=config)
    assert run.returncode == 1, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == (
        f"STORESCP: sent 6 of 13 instances to {refusing.node}; 7 not sent: 7 × the node does "
        "not accept Ultrasound Image Storage: it refused the presentation context (check the "
        "SOP classes it is configured to store)"
    )
    assert len(lines) == 8 and all(line.startswith("  not sent 1.2.") for line in lines[1:])

    usage = cli(str(refusing.node), config=config)
    assert usage.returncode == 2
    assert usage.stderr == (
        "workstation send: say what to send: files or folders, or --study UID / --series UID\n"
    )
    unknown = cli(str(refusing.node), "--study", "1.2.3", "--store", str(tmp_path / "s"),
                  config=config)  # fmt: skip
    assert unknown.returncode == 2 and "holds no study 1.2.3" in unknown.stderr


# -- the window --------------------------------------------------------------------------------


# The window's "Send to ▸" queues a send job: see tests/test_send_queue.py.
