"""pynetdicom's AE as the workstation tunes it: Nagle off on every socket of its associations."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from pynetdicom import build_context, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelMove,
)

from workstation.dimse.pynetdicom_ae import make_ae

LOOPBACK = "127.0.0.1"


def _nodelay(assoc: Association) -> int:
    sock = assoc.dul.socket.socket
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def _image() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    return ds


def test_every_socket_of_a_c_move_turns_nagle_off() -> None:
    """The query's both ends, and the C-MOVE sub-association's both ends (which pynetdicom
    requests by itself), all have TCP_NODELAY set."""
    seen: dict[str, int] = {}
    archive = make_ae("ARCHIVE")
    destination = make_ae("DEST")
    destination.add_supported_context(SecondaryCaptureImageStorage, ImplicitVRLittleEndian)

    def on_store(event: Any) -> int:
        seen["destination accepted"] = _nodelay(event.assoc)
        outgoing = [a for a in archive.active_associations if a.is_requestor]
        seen["archive requested"] = min(_nodelay(a) for a in outgoing)
        return 0x0000

    store_server = destination.start_server(
        (LOOPBACK, 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    assert store_server is not None
    store_port = store_server.server_address[1]

    def on_move(event: Any) -> Iterator[Any]:
        seen["archive accepted"] = _nodelay(event.assoc)
        context = build_context(SecondaryCaptureImageStorage, ImplicitVRLittleEndian)
        yield LOOPBACK, store_port, {"contexts": [context]}
        yield 1
        yield 0xFF00, _image()

    archive.add_supported_context(StudyRootQueryRetrieveInformationModelMove)
    move_server = archive.start_server(
        (LOOPBACK, 0), block=False, evt_handlers=[(evt.EVT_C_MOVE, on_move)]
    )
    assert move_server is not None
    client = make_ae("CLIENT")
    client.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    try:
        assoc = client.associate(LOOPBACK, move_server.server_address[1], ae_title="ARCHIVE")
        assert assoc.is_established
        seen["client requested"] = _nodelay(assoc)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = "1.2.3"
        statuses = [
            int(status.Status)
            for status, _ in assoc.send_c_move(
                query, "DEST", StudyRootQueryRetrieveInformationModelMove
            )
            if status
        ]
        assoc.release()
    finally:
        move_server.shutdown()
        store_server.shutdown()
    assert statuses[-1] == 0x0000  # the image went through the sub-association
    assert seen == {
        "client requested": 1,
        "archive accepted": 1,
        "archive requested": 1,
        "destination accepted": 1,
    }
