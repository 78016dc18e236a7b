"""The one place that opens associations.

Associations we request run on the lean requestor (:mod:`workstation.dimse.wire.scu`): our own
socket loop with TCP_NODELAY, pynetdicom's PDU classes for the negotiation. This module proposes
the presentation contexts an operation needs and turns failures into the exceptions of
:mod:`workstation.errors`, whose messages say what to check. It imports no pynetdicom at load,
so ``workstation echo`` starts quickly; :mod:`.pynetdicom_ae` tunes pynetdicom for the places
that still run its AE (the demo archive).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from workstation.dimse.wire.negotiation import AssociationFailure
from workstation.dimse.wire.pdu import PeerClosed, TlsRecord
from workstation.dimse.wire.scp import Receiver
from workstation.dimse.wire.scu import LeanAssociation, open_association
from workstation.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectionFailed,
    DimseTimeout,
    NetworkError,
    NoAcceptedContext,
    TlsFailed,
)
from workstation.nodes import DEFAULT_AE_TITLE, RemoteNode

log = logging.getLogger(__name__)

#: The Verification SOP Class (PS3.4 A.4).
VERIFICATION = "1.2.840.10008.1.1"

Context = tuple[str, Sequence[str] | None]
"""An abstract syntax with its transfer syntaxes (``None``: Explicit then Implicit VR LE)."""


def _describe_connect_failure(node: RemoteNode) -> str:
    """Connect once more ourselves to learn why pynetdicom could not (refused, DNS...)."""
    try:
        with socket.create_connection((node.host, node.port), timeout=node.connect_timeout):
            pass
    except (socket.gaierror, UnicodeError):  # UnicodeError: a name IDNA cannot encode
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


_REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognised",
    (1, 7): "called AE title not recognised",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}


def _describe_rejection(rejection: tuple[int, int, int], node: RemoteNode, calling_aet: str) -> str:
    result, source, reason = rejection
    diagnostic = (source, reason)
    text = _REJECT_REASONS.get(diagnostic, f"source {source}, reason {reason}")
    kind = "permanently" if result == 1 else "for now"
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
    elif source == 3:
        advice = "the PACS is busy or at its association limit; try again shortly"
    return f"association rejected {kind} by {node} ({text}): {advice}"


#: What we propose when an operation names no transfer syntaxes.
UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")


@contextmanager
def associate(
    node: RemoteNode,
    contexts: Sequence[Context],
    *,
    calling_aet: str = DEFAULT_AE_TITLE,
    dimse_timeout: float | None = None,
    scp_roles: Sequence[str] = (),
    receiver: Receiver | None = None,
    dimse_timeout_none: bool = False,
) -> Iterator[LeanAssociation]:
    """Open an association with ``node`` proposing ``contexts``; release it on exit.

    Raises :class:`ConnectionFailed`, :class:`AssociationRejected`,
    :class:`AssociationAborted` or :class:`NoAcceptedContext` with a message that names what
    to check. ``dimse_timeout`` defaults to the node's; ``dimse_timeout_none`` waits for ever
    (retrieves run their own watchdog). ``scp_roles`` and ``receiver``: C-GET.
    """
    timeout = None if dimse_timeout_none else dimse_timeout or node.dimse_timeout
    proposed = [(abstract, list(syntaxes or UNCOMPRESSED)) for abstract, syntaxes in contexts]
    log.debug("requesting association with %s", node)
    tls = None
    if node.tls:
        from workstation.dimse.tls import node_context

        tls = node_context(node)
    try:
        assoc = open_association(
            node.host,
            node.port,
            node.ae_title,
            calling_aet,
            proposed,
            scp_roles=scp_roles,
            connect_timeout=node.connect_timeout,
            dimse_timeout=timeout,
            receiver=receiver,
            tls=tls,
        )
    except AssociationFailure as failure:
        if failure.kind == "connect":
            raise ConnectionFailed(_describe_connect_failure(node)) from None
        tls_problem = _describe_tls_failure(failure, node)
        if tls_problem:
            raise TlsFailed(tls_problem) from None
        if failure.kind == "rejected" and failure.rejection is not None:
            raise AssociationRejected(
                _describe_rejection(failure.rejection, node, calling_aet)
            ) from None
        if failure.kind == "none":
            raise NoAcceptedContext(
                f"{node} accepted the association but none of the services we asked for "
                f"({', '.join(_syntax_name(a) for a, _ in contexts[:3])}): "
                "check that the PACS offers them to our AE title"
            ) from None
        hint = "" if node.tls else " (or, if it is a DICOM TLS port, turn on TLS for the node)"
        raise AssociationAborted(
            f"{node} accepted the TCP connection but did not complete the association "
            f"({failure}): check that it is a DICOM port and the AE title is right{hint}"
        ) from None
    try:
        yield assoc
    except DimseTimeout:
        # Code that only saw "no response" may call it a timeout; say what really happened.
        if assoc.timed_out or not (
            assoc.peer_aborted or assoc.peer_released or assoc.protocol_error
        ):
            raise
        raise ended_error(assoc, node, calling_aet) from None
    finally:
        if assoc.is_established:
            assoc.release()
        else:
            assoc.close()


def _describe_tls_failure(failure: AssociationFailure, node: RemoteNode) -> str:
    """A plain-language line for a TLS failure, or "" when ``failure`` is not one."""
    cause = failure.cause
    if isinstance(cause, TlsRecord):
        return (
            f"{node} speaks DICOM over TLS on port {node.port}: turn on TLS for this node "
            "(--tls, or TLS in the Nodes dialog)"
        )
    if not node.tls or cause is None:
        return ""
    import ssl

    from workstation.dimse.tls import describe_client_error, describe_closed_after_handshake

    have_cert = bool(node.tls_cert)
    if failure.kind == "tls" or (
        isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLEOFError)
    ):
        return describe_client_error(cause, str(node), node.host, node.port, have_cert=have_cert)
    if isinstance(cause, ssl.SSLEOFError | PeerClosed | ConnectionError):
        return describe_closed_after_handshake(str(node), have_cert=have_cert)
    return ""


def ended_error(assoc: LeanAssociation, node: RemoteNode, calling_aet: str) -> NetworkError:
    """The error for an association that ended before the final response to its last request.

    For the DIMSE timeout, callers say what the wait was for; this covers the rest. A PACS that
    aborts as soon as a request arrives, without a word, is most often one that accepts any
    association but serves only the AE titles it knows (Orthanc does this), so that is named.
    """
    request = assoc.last_request or "the request"
    if assoc.timed_out:
        return DimseTimeout(
            f"{node} sent no {request} response for {assoc.dimse_timeout:g} s; we aborted"
        )
    if assoc.protocol_error:
        return AssociationAborted(
            f"{node} broke the DICOM protocol during {request} ({assoc.protocol_error}); "
            "we aborted the association"
        )
    if assoc.peer_released:
        return AssociationAborted(
            f"{node} released the association without answering our {request} request"
        )
    if assoc.peer_aborted and not assoc.answered:
        return AssociationAborted(
            f"{node} aborted the association on our {request} request without answering it: "
            f"the usual cause is a PACS that does not know our calling AE title {calling_aet!r}; "
            f"add {calling_aet} (with this computer's address) to the AE titles it serves, "
            "or use --aet with one it knows"
        )
    return AssociationAborted(f"{node} aborted the association during {request}")


def abort_now(assoc: Any) -> None:
    """Abort ``assoc`` and wake the thread waiting for its responses (any thread may call)."""
    assoc.abort()


def _syntax_name(uid: str) -> str:
    from pydicom.uid import UID

    return UID(uid).name
