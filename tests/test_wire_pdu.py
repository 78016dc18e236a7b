"""The lean data path's framing: PDUs and presentation data values however a peer cuts them.

A message may come as one PDV or many, several PDVs may share a PDU, a command set may share
a PDU with its data set, and the bytes may trickle in one at a time; the result must always be
the same file. Peers: socket pairs, our SCP, and DCMTK's storescp (16 kB maximum PDU).
"""

from __future__ import annotations

import random
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

import workstation as ws
from tests.servers import LOOPBACK, dcmtk, dcmtk_env, free_port, port_open
from tests.test_storage_hostile import _data_set
from tests.test_store import make_instance, sop_uid
from workstation.dimse.wire import commands as cmd
from workstation.dimse.wire.pdu import (
    MCH_COMMAND,
    MCH_LAST,
    P_DATA_TF,
    PduError,
    PduReader,
    PeerClosed,
    iter_pdvs,
    p_data,
)
from workstation.dimse.wire.scu import open_association


def _pdv(cid: int, control: int, data: bytes) -> bytes:
    return struct.pack(">IBB", len(data) + 2, cid, control) + data


def _pdu(*pdvs: bytes) -> bytes:
    body = b"".join(pdvs)
    return struct.pack(">BxI", P_DATA_TF, len(body)) + body


@pytest.mark.parametrize("max_pdu", [0, 16384, 4096, 100, 7])
def test_p_data_respects_the_peer_maximum_and_reassembles(max_pdu: int) -> None:
    message = random.Random(max_pdu).randbytes(50_000)
    pdus = p_data(3, message, command=False, max_pdu=max_pdu)
    rebuilt = b""
    for index, pdu in enumerate(pdus):
        kind, length = struct.unpack(">BxI", pdu[:6])
        assert kind == P_DATA_TF and length == len(pdu) - 6
        assert max_pdu == 0 or length <= max_pdu
        ((cid, control, data),) = list(iter_pdvs(memoryview(pdu)[6:]))
        assert cid == 3 and not control & MCH_COMMAND
        assert bool(control & MCH_LAST) == (index == len(pdus) - 1)
        rebuilt += bytes(data)
    assert rebuilt == message


def test_several_pdvs_in_one_pdu_and_malformed_pdvs() -> None:
    body = memoryview(_pdu(_pdv(1, 3, b"cmd"), _pdv(1, 0, b"ab"), _pdv(1, 2, b"cd"))[6:])
    assert [(c, m, bytes(d)) for c, m, d in iter_pdvs(body)] == [
        (1, 3, b"cmd"),
        (1, 0, b"ab"),
        (1, 2, b"cd"),
    ]
    for bad in (_pdv(1, 0, b"abc")[:-1], b"\x00\x00\x00\x01\x01\x00", b"\x00\x00"):
        with pytest.raises(PduError):
            list(iter_pdvs(memoryview(bad)))


def test_the_reader_gets_whole_pdus_from_any_trickle() -> None:
    rng = random.Random(7)
    pdus = [_pdu(_pdv(1, 2, rng.randbytes(rng.randrange(0, 70_000)))) for _ in range(30)]
    stream = b"".join(pdus)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        reader = PduReader(ours, max_length=1 << 20, buffer_size=4096)
        pos = 0
        for expected in pdus:
            while pos < len(stream) and pos < stream.index(expected) + len(expected):
                step = rng.choice([1, 2, 5, 100, 4096, 65536])
                theirs.sendall(stream[pos : pos + step])
                pos += step
            kind, body = reader.read()
            assert kind == P_DATA_TF and bytes(body) == expected[6:]
        theirs.sendall(_pdu(_pdv(1, 2, b"x" * 200))[:50])
        theirs.shutdown(socket.SHUT_WR)
        with pytest.raises(PeerClosed):
            reader.read()


def test_the_reader_refuses_a_pdu_over_the_limit() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(struct.pack(">BxI", P_DATA_TF, 5000))
        with pytest.raises(PduError, match="larger than"):
            PduReader(ours, max_length=4096).read()
        theirs.sendall(b"\x09\x00\x00\x00\x00\x00")
        with pytest.raises(PduError, match="unknown PDU type"):
            PduReader(ours, max_length=4096).read()


@pytest.fixture
def scp(tmp_path: Path) -> Iterator[ws.StorageServer]:
    store = ws.LocalStore(tmp_path / "store", fsync=False)
    with ws.StorageServer(ws.LocalAE("WS", port=0, bind=LOOPBACK), store) as server:
        yield server
    store.close()


def _layouts(command: bytes, data: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """The same C-STORE cut into PDUs and PDVs in every way a peer may."""
    yield "one PDU for both", [_pdu(_pdv(1, 3, command), _pdv(1, 2, data))]
    yield "two PDUs", [_pdu(_pdv(1, 3, command)), _pdu(_pdv(1, 2, data))]
    for cut in range(1, len(command)):
        yield (
            f"command cut at {cut}",
            [
                _pdu(_pdv(1, 1, command[:cut])),
                _pdu(_pdv(1, 3, command[cut:]), _pdv(1, 2, data)),
            ],
        )
    for cut in range(1, len(data), 13):
        yield (
            f"data cut at {cut}",
            [
                _pdu(_pdv(1, 3, command), _pdv(1, 0, data[:cut])),
                _pdu(_pdv(1, 2, data[cut:])),
            ],
        )
    bytewise = [_pdv(1, 0, data[i : i + 1]) for i in range(len(data) - 1)]
    yield "one byte a PDV", [_pdu(_pdv(1, 3, command), *bytewise, _pdv(1, 2, data[-1:]))]


def test_every_fragmentation_of_a_c_store_gives_the_same_file(scp: ws.StorageServer) -> None:
    part10 = make_instance(sop_uid(1), pixel=9)
    data = _data_set(part10)
    assoc = open_association(
        LOOPBACK, scp.port, "WS", "FRAGMENTS", [(CTImageStorage, [ExplicitVRLittleEndian])]
    )
    command = cmd.c_store_rq(1, CTImageStorage, sop_uid(1))
    try:
        for name, pdus in _layouts(command, data):
            assoc._send(pdus)
            ((_, response, _),) = list(assoc._responses(1))
            assert response[cmd.STATUS] == 0, name
            stored = scp.store.path_of(sop_uid(1))
            assert stored is not None and _data_set(stored.read_bytes()) == data, name
    finally:
        assoc.release()
    assert len(list(scp.store.root.rglob("*.dcm"))) == 1


def test_sending_to_a_peer_with_a_16_kb_maximum_pdu(tmp_path: Path) -> None:
    """DCMTK's storescp announces 16 kB: a 500 kB instance goes in ~32 PDUs and arrives whole."""
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    server = subprocess.Popen(
        [dcmtk("storescp"), "--max-pdu", "16384", "-od", str(out), str(port)],
        env=dcmtk_env(),
    )
    try:
        deadline = time.monotonic() + 10
        while not port_open(port) and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        big = _grow_pixels(make_instance(sop_uid(2), pixel=4), 512)
        assoc = open_association(
            LOOPBACK, port, "STORESCP", "WS", [(CTImageStorage, [ExplicitVRLittleEndian])]
        )
        assert assoc.negotiated.peer_max_pdu == 16384
        try:
            status, _ = assoc.store_raw(CTImageStorage, sop_uid(2), _data_set(big))
        finally:
            assoc.release()
        assert status == 0
        (received,) = out.iterdir()
        assert dcmread(received).PixelData == dcmread(_as_file(tmp_path, big)).PixelData
    finally:
        server.terminate()
        server.wait(10)


def _grow_pixels(part10: bytes, size: int) -> bytes:
    """The same instance with a size x size image."""
    from io import BytesIO

    import numpy as np

    ds = dcmread(BytesIO(part10))
    ds.Rows = ds.Columns = size
    ds.PixelData = (np.arange(size * size, dtype=np.uint16) % 4096).tobytes()
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _as_file(folder: Path, data: bytes) -> Path:
    path = folder / "sent.dcm"
    path.write_bytes(data)
    return path
