"""The one place that opens associations.

It tunes pynetdicom once (TCP_NODELAY on every socket, unlimited PDU size, no per-identifier
logging), proposes the presentation contexts an operation needs, and turns pynetdicom's quiet
failure flags into the exceptions of :mod:`workstation.errors`, whose messages say what to check.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.transport import AssociationServer, AssociationSocket

from workstation.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectionFailed,
    NoAcceptedContext,
)
from workstation.nodes import DEFAULT_AE_TITLE, RemoteNode

log = logging.getLogger(__name__)

#: The Verification SOP Class (PS3.4 A.4).
VERIFICATION = "1.2.840.10008.1.1"

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


Context = tuple[str, Sequence[str] | None]
"""An abstract syntax with its transfer syntaxes (``None``: pynetdicom's uncompressed set)."""


def make_ae(calling_aet: str = DEFAULT_AE_TITLE) -> AE:
    tune_pynetdicom()
    ae = AE(ae_title=calling_aet)
    ae.maximum_pdu_size = MAXIMUM_PDU_SIZE
    return ae


def _describe_connect_failure(node: RemoteNode) -> str:
    """Connect once more ourselves to learn why pynetdicom could not (refused, DNS...)."""
    try:
        with socket.create_connection((node.host, node.port), timeout=node.connect_timeout):
            pass
    except socket.gaierror:
        return f"cannot resolve host {node.host!r}: check the host name of {node.label}"
    except TimeoutError:
        return (
            f"no answer from {node.host}:{node.port} within {node.connect_timeout:g} s: "
            "check the address, that the PACS is running, and any firewall between"
        )
    except ConnectionRefusedError:
        return (
            f"connection refused by {node.host}:{node.port}: nothing listens there; "
            f"check the host and port of {node.label} and that the PACS is running"
        )
    except OSError as exc:
        return f"cannot connect to {node.host}:{node.port}: {exc.strerror or exc}"
    return f"the connection to {node.host}:{node.port} was dropped before association"


def _describe_rejection(assoc: Association, node: RemoteNode, calling_aet: str) -> str:
    primitive = assoc.acceptor.primitive
    reason = ""
    diagnostic = None
    if primitive is not None and primitive.result_source is not None:
        reason = primitive.reason_str
        diagnostic = (primitive.result_source, primitive.diagnostic)
    advice = "check that the PACS knows our AE title and the called AE title is right"
    if diagnostic == (1, 3):
        advice = (
            f"the PACS does not know our calling AE title {calling_aet!r}: "
            f"add {calling_aet} to its list of allowed clients, or use --aet with one it knows"
        )
    elif diagnostic == (1, 7):
        advice = (
            f"the PACS is not called {node.ae_title!r}: correct the AE title in the node "
            "(it is case-sensitive)"
        )
    elif diagnostic is not None and diagnostic[0] == 3:
        advice = "the PACS is busy or at its association limit; try again shortly"
    text = f" ({reason})" if reason else ""
    return f"association rejected by {node}{text}: {advice}"


@contextmanager
def associate(
    node: RemoteNode,
    contexts: Sequence[Context],
    *,
    calling_aet: str = DEFAULT_AE_TITLE,
    dimse_timeout: float | None = None,
    ext_neg: list[Any] | None = None,
    evt_handlers: list[Any] | None = None,
) -> Iterator[Association]:
    """Open an association with ``node`` proposing ``contexts``; release it on exit.

    Raises :class:`ConnectionFailed`, :class:`AssociationRejected`,
    :class:`AssociationAborted` or :class:`NoAcceptedContext` with a message that names what
    to check. ``dimse_timeout`` defaults to the node's.
    """
    ae = make_ae(calling_aet)
    ae.connection_timeout = node.connect_timeout
    ae.acse_timeout = node.connect_timeout
    ae.dimse_timeout = node.dimse_timeout if dimse_timeout is None else dimse_timeout
    ae.network_timeout = None
    for abstract, syntaxes in contexts:
        if syntaxes is None:
            ae.add_requested_context(abstract)
        else:
            ae.add_requested_context(abstract, list(syntaxes))

    connected = threading.Event()
    handlers = [(evt.EVT_CONN_OPEN, lambda event: connected.set()), *(evt_handlers or [])]
    log.debug("requesting association with %s", node)
    assoc = ae.associate(
        node.host,
        node.port,
        ae_title=node.ae_title,
        max_pdu=MAXIMUM_PDU_SIZE,
        ext_neg=ext_neg,
        evt_handlers=handlers,
    )
    if not assoc.is_established:
        if assoc.is_rejected:
            raise AssociationRejected(_describe_rejection(assoc, node, calling_aet))
        if not connected.is_set():
            raise ConnectionFailed(_describe_connect_failure(node))
        if (
            assoc.is_aborted
            and assoc.acceptor.primitive is not None
            and not assoc.accepted_contexts
        ):
            raise NoAcceptedContext(
                f"{node} accepted the association but none of the services we asked for "
                f"({', '.join(_syntax_name(a) for a, _ in contexts[:3])}): "
                "check that the PACS offers them to our AE title"
            )
        raise AssociationAborted(
            f"{node} accepted the TCP connection but did not complete the association within "
            f"{node.connect_timeout:g} s: check that it is a DICOM port and the AE title is right"
        )
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        ae.shutdown()


def abort_now(assoc: Association) -> None:
    """Abort ``assoc`` and wake the thread waiting in a ``send_c_*`` response loop.

    After an abort pynetdicom's response generators still wait up to the DIMSE timeout (for
    ever for retrieves) for a message that will never come; an empty message makes them
    yield their "no response" status at once.
    """
    if assoc.is_established:
        assoc.abort()
    assoc.dimse.msg_queue.put((None, None))


def _syntax_name(uid: str) -> str:
    from pydicom.uid import UID

    return UID(uid).name
