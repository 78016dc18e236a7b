"""Our storage SCP against a peer that lies, truncates, re-sends, stalls or never stops.

Each case is what an attacker on the same network (or a broken modality) can do. The peers are
DCMTK's storescu/echoscu, raw TCP sockets, and our own lean requestor sending hand-made bytes.
Every refusal must leave nothing visible in the store, keep what was stored before, and keep the
SCP serving others.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

import workstation as ws
from tests.servers import LOOPBACK, dcmtk, dcmtk_env
from tests.test_store import make_instance, sop_uid
from workstation.dimse.wire import commands as cmd
from workstation.dimse.wire.pdu import p_data
from workstation.dimse.wire.scu import LeanAssociation, open_association
from workstation.implementation import IMPLEMENTATION_CLASS_UID
from workstation.store.walk import read_part10

SUCCESS, MISMATCH, CANNOT_UNDERSTAND = 0x0000, 0xA900, 0xC000


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[ws.StorageServer]:
    store = ws.LocalStore(tmp_path / "store")
    server = ws.StorageServer(
        ws.LocalAE("WS", port=0, bind=LOOPBACK), store, artim=1.0, network_timeout=5.0
    )
    with server:
        yield server
    store.close()


def _dcm_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.dcm") if ".conflicts" not in p.parts)


def _data_set(part10: bytes) -> bytes:
    """The data set of a Part-10 file, as a sender puts it on the wire."""
    return part10[read_part10(part10)[1] :]


def _associate(server: ws.StorageServer, calling: str = "SENDER") -> LeanAssociation:
    return open_association(
        LOOPBACK, server.port, "WS", calling, [(CTImageStorage, [ExplicitVRLittleEndian])]
    )


def _store(server: ws.StorageServer, part10: bytes, sop: str | None = None) -> int:
    assoc = _associate(server)
    try:
        status, _ = assoc.store_raw(CTImageStorage, sop or dcmread_uid(part10), _data_set(part10))
    finally:
        assoc.release()
    return status


def dcmread_uid(part10: bytes) -> str:
    from io import BytesIO

    return str(dcmread(BytesIO(part10), stop_before_pixels=True).SOPInstanceUID)


def test_a_differing_resend_never_replaces_the_stored_instance(
    scp: ws.StorageServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    original = make_instance(sop_uid(1), name="Doe^John", pixel=3)
    forged = make_instance(sop_uid(1), name="Evil^Eve", pixel=0)
    seen: list[ws.store.StoredInstance] = []
    scp.subscribe(seen.append)
    (tmp_path / "a.dcm").write_bytes(original)
    (tmp_path / "b.dcm").write_bytes(forged)
    for name in ("a.dcm", "b.dcm", "a.dcm"):  # DCMTK's storescu as the sender
        result = subprocess.run(
            [dcmtk("storescu"), "-aec", "WS", LOOPBACK, str(scp.port), str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=30,
            env=dcmtk_env(),
        )
        assert result.returncode == 0, result.stderr
    root = scp.store.root
    (stored,) = _dcm_files(root)
    assert dcmread(stored).PatientName == "Doe^John"  # the first version stays
    assert _data_set(stored.read_bytes()) == _data_set(original)
    (aside,) = (root / ".conflicts").iterdir()
    assert _data_set(aside.read_bytes()) == _data_set(forged)  # kept for a person to see
    assert [s.conflict is not None for s in seen] == [False, True, False]
    assert seen[2].duplicate  # the original once more is just "already stored"
    assert "other content" in caplog.text
    scp.store.flush()
    (row,) = scp.store.index.instances()
    assert row.path == str(stored.relative_to(root))
    assert [p.patient_name for p in scp.store.index.patients()] == ["Doe^John"]


@pytest.mark.parametrize("cut", ["in the pixel data", "in an element header"])
def test_truncated_data_sets_are_refused_and_never_published(
    scp: ws.StorageServer, cut: str, caplog: pytest.LogCaptureFixture
) -> None:
    whole = _data_set(make_instance(sop_uid(2), pixel=5))
    offset = {
        "in the pixel data": len(whole) - 100,
        "in an element header": whole.index(b"\x10\x00\x10\x00") + 3,  # (0010,0010) cut
    }[cut]
    part10 = make_instance(sop_uid(2), pixel=5)
    head = part10[: len(part10) - len(whole)]
    caplog.set_level(logging.WARNING)
    assert _store(scp, head + whole[:offset], sop_uid(2)) == CANNOT_UNDERSTAND
    assert _dcm_files(scp.store.root) == []
    assert scp.store.instance_uids() == set()
    assert "refused an instance from SENDER" in caplog.text
    assert _store(scp, part10) == SUCCESS  # the SCP still serves, and the whole one lands


def test_an_element_length_that_lies_is_refused(scp: ws.StorageServer) -> None:
    part10 = make_instance(sop_uid(3), pixel=1)
    data = bytearray(_data_set(part10))
    pixel = data.index(b"\xe0\x7f\x10\x00")  # (7FE0,0010), explicit VR OW: 4-byte length at +8
    struct.pack_into("<I", data, pixel + 8, 0x7FFFFFF0)
    assoc = _associate(scp)
    try:
        status, comment = assoc.store_raw(CTImageStorage, sop_uid(3), bytes(data))
    finally:
        assoc.release()
    assert status == CANNOT_UNDERSTAND and comment
    assert _dcm_files(scp.store.root) == []


def test_a_data_set_that_is_not_the_announced_instance_is_refused(scp: ws.StorageServer) -> None:
    part10 = make_instance(sop_uid(4))
    assert _store(scp, part10, sop=sop_uid(5)) == MISMATCH  # DCMTK storescp answers 0xA900
    assert _dcm_files(scp.store.root) == []


def test_files_carry_our_implementation_and_the_sender(scp: ws.StorageServer) -> None:
    assert _store(scp, make_instance(sop_uid(6))) == SUCCESS
    (path,) = _dcm_files(scp.store.root)
    meta = dcmread(path).file_meta
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.SourceApplicationEntityTitle == "SENDER"
    assert path.stat().st_mode & 0o777 == 0o600


def test_silent_connections_time_out_and_never_take_an_association_slot(
    scp: ws.StorageServer,
) -> None:
    idle = [socket.create_connection((LOOPBACK, scp.port)) for _ in range(40)]
    try:
        start = time.monotonic()
        result = subprocess.run(
            [dcmtk("echoscu"), "-aec", "WS", LOOPBACK, str(scp.port)],
            capture_output=True,
            text=True,
            timeout=30,
            env=dcmtk_env(),
        )
        assert result.returncode == 0, result.stderr  # not "local limit exceeded"
        assert time.monotonic() - start < 2
        for sock in idle:  # ARTIM (1 s here) closes every one of them
            sock.settimeout(5)
            assert sock.recv(16) == b""
    finally:
        for sock in idle:
            sock.close()


def test_an_endless_message_is_streamed_to_disk_and_dropped(scp: ws.StorageServer) -> None:
    """100 MB of data fragments that never end: memory stays flat, nothing is published."""
    assoc = _associate(scp)
    cid = assoc.negotiated.context_for(CTImageStorage)
    assert cid is not None
    assoc._send(p_data(cid, cmd.c_store_rq(1, CTImageStorage, sop_uid(7)), command=True, max_pdu=0))
    chunk = bytes(1 << 16)
    fragment = struct.pack(">BxIIBB", 4, len(chunk) + 6, len(chunk) + 2, cid, 0) + chunk
    before = _rss_mb()
    for _ in range(1600):
        assoc.sock.sendall(fragment)
    grown = _rss_mb() - before
    incoming = scp.store.root / ".incoming"
    assert sum(p.stat().st_size for p in incoming.iterdir()) > 50 << 20  # it went to disk
    assoc.close()  # the peer leaves mid-message
    deadline = time.monotonic() + 10
    while any(incoming.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(incoming.iterdir()) == []
    assert _dcm_files(scp.store.root) == []
    assert grown < 30, f"the SCP grew by {grown:.0f} MB"
    assert _store(scp, make_instance(sop_uid(8))) == SUCCESS


def test_a_stalled_association_is_aborted(scp: ws.StorageServer) -> None:
    assoc = _associate(scp)
    assoc.sock.settimeout(15)
    start = time.monotonic()
    assert assoc.sock.recv(64)[:1] == b"\x07"  # A-ABORT after network_timeout (5 s here)
    assert 4 < time.monotonic() - start < 12
    assoc.close()


def test_garbage_instead_of_an_association_request(scp: ws.StorageServer) -> None:
    for garbage in (b"GET / HTTP/1.1\r\n\r\n", os.urandom(64), b"\x01\x00\xff\xff\xff\xff"):
        with socket.create_connection((LOOPBACK, scp.port), timeout=5) as sock:
            sock.sendall(garbage)
            try:
                reply = sock.recv(16)
            except ConnectionResetError:
                reply = b""
            assert reply[:1] in (b"", b"\x07")  # closed, or an A-ABORT
    assert _store(scp, make_instance(sop_uid(9))) == SUCCESS


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_many_parallel_senders_all_land(scp: ws.StorageServer) -> None:
    instances = [make_instance(sop_uid(100 + i), pixel=i % 7) for i in range(60)]
    failures: list[int] = []

    def send(part: list[bytes]) -> None:
        assoc = _associate(scp)
        try:
            for data in part:
                status, _ = assoc.store_raw(CTImageStorage, dcmread_uid(data), _data_set(data))
                if status != SUCCESS:
                    failures.append(status)
        finally:
            assoc.release()

    threads = [threading.Thread(target=send, args=(instances[i::6],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    assert len(_dcm_files(scp.store.root)) == 60


def test_a_retrieve_reports_a_differing_copy_and_keeps_the_stored_one(  # type: ignore[no-untyped-def]
    orthanc, store_port: int, tmp_path: Path, archive
) -> None:
    """The store holds a forged version of one instance; a C-MOVE brings the PACS's."""
    from io import BytesIO

    from pydicom.filewriter import dcmwrite

    study = archive.studies[2]
    uid = sorted(orthanc.instance_uids(study.StudyInstanceUID))[0]
    forged = dcmread(BytesIO(orthanc.file_bytes(uid)))
    forged.PatientName = "Forged^Name"
    out = BytesIO()
    dcmwrite(out, forged, enforce_file_format=True)
    with ws.LocalStore(tmp_path / "store") as store:
        kept = store.store_bytes(out.getvalue())
        local = ws.LocalAE("WORKSTATION", store_port, LOOPBACK)
        with ws.StorageServer(local, store) as server:
            outcome = ws.move(
                orthanc.node, ws.Query.study(StudyInstanceUID=study.StudyInstanceUID), server
            )
        assert outcome.state is ws.RetrieveState.DONE, outcome.message
        assert outcome.conflicts == (uid,)
        assert "differing from the stored copy" in outcome.message
        assert kept.path.read_bytes() == out.getvalue()  # never replaced
        (aside,) = (store.root / ".conflicts").iterdir()
        assert dcmread(aside).PatientName == dcmread(BytesIO(orthanc.file_bytes(uid))).PatientName


def test_a_c_store_of_another_sop_class_than_its_context_is_refused(scp: ws.StorageServer) -> None:
    part10 = make_instance(sop_uid(10))
    assoc = _associate(scp)
    try:
        cid = assoc.negotiated.context_for(CTImageStorage)
        assert cid is not None
        mr = "1.2.840.10008.5.1.4.1.1.4"
        assoc._send_message(cid, cmd.c_store_rq(1, mr, sop_uid(10)), _data_set(part10))
        ((_, response, _),) = list(assoc._responses(1))
    finally:
        assoc.release()
    assert response[cmd.STATUS] == 0x0122
    assert _dcm_files(scp.store.root) == []


def test_a_peer_trickling_its_association_request_is_cut_at_artim(scp: ws.StorageServer) -> None:
    with socket.create_connection((LOOPBACK, scp.port), timeout=10) as sock:
        start = time.monotonic()
        sock.sendall(b"\x01\x00\x00\x00\x01\x00")  # an A-ASSOCIATE-RQ header claiming 256 bytes
        closed = False
        for _ in range(40):  # then a byte every 0.1 s, each resetting a per-recv timer
            time.sleep(0.1)
            try:
                sock.sendall(b"\x00")
            except OSError:
                closed = True
                break
        if not closed:
            sock.settimeout(5)
            try:
                closed = sock.recv(16) == b""
            except ConnectionResetError:
                closed = True
        assert closed and time.monotonic() - start < 3  # ARTIM is 1 s here
