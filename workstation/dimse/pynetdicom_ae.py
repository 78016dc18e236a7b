"""pynetdicom's AE, tuned for the workstation: for what still runs on it (the demo archive's
Q/R SCP, and the tests' quirky PACS).

Our own associations and storage SCP run on :mod:`workstation.dimse.wire`; the settings here
are process-wide in pynetdicom.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from pynetdicom import AE, _config
from pynetdicom.transport import AssociationServer, AssociationSocket

from workstation.nodes import DEFAULT_AE_TITLE

#: The largest PDU we accept; 0 tells the peer there is no limit.
MAXIMUM_PDU_SIZE = 0

_tuned = False
_tune_lock = threading.Lock()


def _nodelay(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # not a TCP socket (tests may hand in socketpairs)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def tune_pynetdicom() -> None:
    """Apply the process-wide pynetdicom settings the workstation relies on (idempotent).

    - TCP_NODELAY on outgoing and accepted sockets: pynetdicom leaves Nagle's algorithm on,
      which with delayed ACKs costs ~40 ms per DIMSE round trip even on loopback.
    - No pretty-printing of every C-FIND identifier: pynetdicom formats each one whatever the
      log level, and identifiers carry patient data.
    """
    global _tuned
    with _tune_lock:
        if _tuned:
            return
        _config.LOG_REQUEST_IDENTIFIERS = False
        _config.LOG_RESPONSE_IDENTIFIERS = False
        # pynetdicom's "standard" handlers summarise every PDU and DIMSE message whatever the
        # log level; ``workstation -vv`` turns them back on (see verbose_dimse_logging).
        _config.LOG_HANDLER_LEVEL = "none"
        _config.USE_SHORT_DIMSE_AET = True
        # Our storage SCP (and C-GET) accepts every storage SOP class, private ones too, in
        # any transfer syntax offered. It is process-wide in pynetdicom, so it is set here.
        _config.UNRESTRICTED_STORAGE_SERVICE = True

        create_socket = AssociationSocket._create_socket

        def _create_socket(self: AssociationSocket, address: Any) -> socket.socket:
            sock = create_socket(self, address)
            _nodelay(sock)
            return sock

        get_request = AssociationServer.get_request

        def _get_request(self: AssociationServer) -> tuple[socket.socket, tuple[str, int]]:
            client, address = get_request(self)
            _nodelay(client)
            return client, address

        AssociationSocket._create_socket = _create_socket  # type: ignore[method-assign]
        AssociationServer.get_request = _get_request  # type: ignore[method-assign]
        _tuned = True


def verbose_dimse_logging() -> None:
    """Let pynetdicom log every PDU and DIMSE message (at DEBUG), for troubleshooting."""
    tune_pynetdicom()
    _config.LOG_HANDLER_LEVEL = "standard"


def make_ae(calling_aet: str = DEFAULT_AE_TITLE) -> AE:
    tune_pynetdicom()
    ae = AE(ae_title=calling_aet)
    ae.maximum_pdu_size = MAXIMUM_PDU_SIZE
    return ae
