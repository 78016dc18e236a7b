"""Association negotiation for the lean data path (PS3.8 9.3.2-4, Annex D.3.3).

The acceptor side decides from an A-ASSOCIATE-RQ what a storage SCP accepts: Verification and
every storage-like SOP class (standard storage, private and unknown ones) in the first transfer
syntax the caller proposes, which the SCP stores as received; Query/Retrieve, worklist and other
services are refused context by context. The requestor side builds an A-ASSOCIATE-RQ and reads
the answer (:func:`request`). Both return a :class:`Negotiated` that the message layer works
from. The PDUs are encoded and decoded by :mod:`.assoc_pdu` (no pynetdicom import:
``workstation echo`` starts in a few tens of milliseconds).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from workstation.dimse.wire.assoc_pdu import (
    APPLICATION_CONTEXT,
    AssociateAC,
    AssociateRQ,
    AssociationPduError,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
)
from workstation.dimse.wire.pdu import (
    A_ASSOCIATE_AC,
    A_ASSOCIATE_RJ,
    PDU_NAMES,
    PduError,
    PduReader,
    abort_pdu,
)
from workstation.implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"

# Presentation context results (PS3.8 9.3.3.2)
ACCEPTANCE = 0
ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

# A-ASSOCIATE-RJ (result, source, reason) triples (PS3.8 9.3.4)
REJECT_CALLING_AE = (1, 1, 3)
REJECT_CALLED_AE = (1, 1, 7)
REJECT_APPLICATION_CONTEXT = (1, 1, 2)
REJECT_LOCAL_LIMIT = (2, 3, 2)
REJECT_PROTOCOL_VERSION = (1, 3, 2)


@dataclass
class Negotiated:
    """An established association: who is who, and what each context carries."""

    calling_aet: str
    called_aet: str
    #: context id -> (abstract syntax, transfer syntax) of every accepted context
    contexts: dict[int, tuple[str, str]]
    #: the peer's Maximum Length (0: no limit): the largest P-DATA-TF body we may send it
    peer_max_pdu: int
    peer_implementation: str = ""
    #: SOP class -> (scu role, scp role) the acceptor agreed to, for C-GET
    roles: dict[str, tuple[bool, bool]] = field(default_factory=dict)

    def context_for(self, abstract: str, transfer_syntaxes: Sequence[str] = ()) -> int | None:
        """The id of an accepted context for ``abstract`` (preferring the given syntaxes)."""
        matches = [(cid, ts) for cid, (ab, ts) in self.contexts.items() if ab == abstract]
        for wanted in transfer_syntaxes:
            for cid, ts in matches:
                if ts == wanted:
                    return cid
        return matches[0][0] if matches else None


class Rejection(Exception):
    """The A-ASSOCIATE-RQ is refused with ``pdu`` (an A-ASSOCIATE-RJ); ``why`` says why."""

    def __init__(self, pdu: bytes, why: str) -> None:
        super().__init__(why)
        self.pdu = pdu


#: Standard services other than storage (PS3.4): refused on a storage SCP's contexts.
_NOT_STORAGE = (
    "1.2.840.10008.1.20.",  # Storage Commitment
    "1.2.840.10008.1.40",  # Procedural Event Logging
    "1.2.840.10008.1.42",  # Substance Administration Logging
    "1.2.840.10008.3.1.",  # Detached management, MPPS
    "1.2.840.10008.5.1.1.",  # Print management, media creation
    "1.2.840.10008.5.1.4.1.2.",  # Query/Retrieve: FIND, MOVE, GET
    "1.2.840.10008.5.1.4.20.",  # Defined procedure protocol Q/R
    "1.2.840.10008.5.1.4.31",  # Modality Worklist
    "1.2.840.10008.5.1.4.32.",  # General Purpose Worklist (retired)
    "1.2.840.10008.5.1.4.33",  # Instance Availability Notification
    "1.2.840.10008.5.1.4.34.4",  # Unified Procedure Step (34.4.x, 34.5, 34.6.x)
    "1.2.840.10008.5.1.4.34.5",
    "1.2.840.10008.5.1.4.34.6",
    "1.2.840.10008.5.1.4.37.",  # Relevant Patient Information Query
    "1.2.840.10008.5.1.4.41",  # Product Characteristics Query
    "1.2.840.10008.5.1.4.42",  # Substance Approval Query
    "1.2.840.10008.5.1.4.1.1.200.4",  # Protocol Approval Q/R (.4 .5 .6)
    "1.2.840.10008.5.1.4.1.1.200.5",
    "1.2.840.10008.5.1.4.1.1.200.6",
    "1.2.840.10008.5.1.4.1.1.201.2",  # Inventory Q/R (.2 to .6)
    "1.2.840.10008.5.1.4.1.1.201.3",
    "1.2.840.10008.5.1.4.1.1.201.4",
    "1.2.840.10008.5.1.4.1.1.201.5",
    "1.2.840.10008.5.1.4.1.1.201.6",
)
#: Q/R SOP classes of the non-image families (hanging protocols, colour palettes, implant
#: templates): ``<root>.2`` FIND and ``<root>.3`` MOVE; ``<root>.1`` is their storage.
_FAMILY_QR = tuple(
    f"1.2.840.10008.5.1.4.{family}.{kind}" for family in (38, 39, 43, 44, 45) for kind in (2, 3, 4)
)


def _is_storage_like(uid: str) -> bool:
    """Storage SOP classes, private ones and unknown ones (as DCMTK's storescp --promiscuous
    accepts them); not the other standard services. No SOP class table is loaded."""
    if uid.startswith(_NOT_STORAGE):
        return False
    return uid not in _FAMILY_QR


def reject_pdu(result: int, source: int, reason: int) -> bytes:
    return bytes([0x03, 0, 0, 0, 0, 4, 0, result, source, reason])


def accept(
    body: bytes | memoryview,
    *,
    our_aet: str,
    max_pdu: int,
    allowed_callers: Sequence[str] = (),
    check_called_aet: bool = False,
    at_limit: bool = False,
) -> tuple[bytes, Negotiated]:
    """Answer an A-ASSOCIATE-RQ body (after the 6-byte PDU header) as our storage SCP.

    Returns the A-ASSOCIATE-AC to send and what was agreed; raises :class:`Rejection` carrying
    the A-ASSOCIATE-RJ to send, or :class:`ValueError` when the PDU cannot be decoded (the
    caller aborts then).
    """
    try:
        request = AssociateRQ.decode(body)
    except AssociationPduError as exc:
        raise ValueError(f"an A-ASSOCIATE-RQ that cannot be decoded ({exc})") from None
    calling = request.calling_ae.strip()
    called = request.called_ae.strip()

    def refuse(triple: tuple[int, int, int], why: str) -> Rejection:
        return Rejection(reject_pdu(*triple), why)

    if request.protocol_version & 1 == 0:
        raise refuse(REJECT_PROTOCOL_VERSION, "protocol version not supported")
    if request.application_context != APPLICATION_CONTEXT:
        raise refuse(REJECT_APPLICATION_CONTEXT, "not the DICOM application context")
    if allowed_callers and calling not in {a.strip() for a in allowed_callers}:
        raise refuse(REJECT_CALLING_AE, f"calling AE title {calling!r} is not allowed")
    if check_called_aet and called != our_aet.strip():
        raise refuse(REJECT_CALLED_AE, f"called AE title {called!r} is not ours")
    if at_limit:
        raise refuse(REJECT_LOCAL_LIMIT, "too many associations at once")

    requested_roles = {r.sop_class_uid: r for r in request.roles}
    results: list[PresentationContextAC] = []
    contexts: dict[int, tuple[str, str]] = {}
    role_replies: list[RoleSelection] = []
    for proposed in request.contexts:
        abstract = proposed.abstract_syntax
        syntaxes = proposed.transfer_syntaxes
        if abstract == VERIFICATION:
            usable = [ts for ts in syntaxes if ts in (IMPLICIT_VR_LE, EXPLICIT_VR_LE)]
            result = TRANSFER_SYNTAXES_NOT_SUPPORTED
        elif _is_storage_like(abstract):
            # The caller's order, but deflate last: files some readers cannot open.
            usable = sorted(syntaxes, key=lambda ts: ts == DEFLATED_EXPLICIT_VR_LE)
            result = TRANSFER_SYNTAXES_NOT_SUPPORTED
        else:
            usable = []
            result = ABSTRACT_SYNTAX_NOT_SUPPORTED
        if usable:
            results.append(PresentationContextAC(proposed.context_id, ACCEPTANCE, usable[0]))
            contexts[proposed.context_id] = (abstract, usable[0])
            asked = requested_roles.get(abstract)
            if asked is not None:  # we act as the SCP only: the caller may keep its SCU role
                role_replies.append(RoleSelection(abstract, asked.scu_role, False))
        else:
            results.append(PresentationContextAC(proposed.context_id, result, ""))

    answer = AssociateAC(
        called_ae=request.called_ae,
        calling_ae=request.calling_ae,
        contexts=results,
        max_length=max_pdu,
        implementation_class_uid=IMPLEMENTATION_CLASS_UID,
        implementation_version_name=IMPLEMENTATION_VERSION_NAME,
        roles=role_replies,
    )
    negotiated = Negotiated(
        calling_aet=calling,
        called_aet=called,
        contexts=contexts,
        peer_max_pdu=request.max_length,
        peer_implementation=request.implementation_class_uid,
    )
    return answer.encode(), negotiated


class AssociationFailure(Exception):
    """Opening the association failed; ``kind`` is 'connect', 'rejected', 'aborted' or 'none'."""

    def __init__(
        self,
        kind: str,
        message: str,
        rejection: tuple[int, int, int] | None = None,
        cause: BaseException | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.rejection = rejection
        #: the exception behind a failed connection or read (a TLS error, say)
        self.cause = cause


def request(
    sock: socket.socket,
    called_aet: str,
    calling_aet: str,
    contexts: Sequence[tuple[str, Sequence[str]]],
    scp_roles: Sequence[str],
    max_pdu: int,
    timeout: float | None,
) -> tuple[PduReader, Negotiated]:
    """Send an A-ASSOCIATE-RQ on a connected ``sock`` and read the answer (the requestor's
    side). Returns the reader to go on with and what was agreed; raises
    :class:`AssociationFailure` (the caller closes the socket)."""
    offered = {
        2 * i + 1: (abstract, list(syntaxes)) for i, (abstract, syntaxes) in enumerate(contexts)
    }
    rq = AssociateRQ(
        called_ae=called_aet,
        calling_ae=calling_aet,
        contexts=[PresentationContextRQ(cid, ab, ts) for cid, (ab, ts) in offered.items()],
        max_length=max_pdu,
        implementation_class_uid=IMPLEMENTATION_CLASS_UID,
        implementation_version_name=IMPLEMENTATION_VERSION_NAME,
        roles=[RoleSelection(uid, False, True) for uid in scp_roles],
    )
    sock.settimeout(timeout)
    reader = PduReader(sock, max_length=1 << 20, buffer_size=1 << 16)
    try:
        sock.sendall(rq.encode())
        kind, body = reader.read()
    except TimeoutError:
        raise AssociationFailure(
            "aborted", f"no answer to the association request within {timeout:g} s"
        ) from None
    except (PduError, OSError) as exc:
        raise AssociationFailure("aborted", str(exc), cause=exc) from None
    if kind == A_ASSOCIATE_RJ:
        triple = (body[1], body[2], body[3]) if len(body) >= 4 else (1, 1, 1)
        raise AssociationFailure("rejected", "association rejected", triple)
    if kind != A_ASSOCIATE_AC:
        raise AssociationFailure("aborted", f"the peer answered with {PDU_NAMES[kind]}")
    try:
        answer = AssociateAC.decode(body)
    except AssociationPduError as exc:
        raise AssociationFailure("aborted", f"an A-ASSOCIATE-AC we cannot decode ({exc})") from None
    accepted = {
        cx.context_id: (offered[cx.context_id][0], cx.transfer_syntax)
        for cx in answer.contexts
        if cx.result == ACCEPTANCE
        and cx.context_id in offered
        and cx.transfer_syntax in offered[cx.context_id][1]  # never one we did not propose
    }
    if not accepted:
        with contextlib.suppress(OSError):
            sock.sendall(abort_pdu(0, 0))
        raise AssociationFailure("none", "no presentation context accepted")
    negotiated = Negotiated(
        calling_aet=calling_aet,
        called_aet=called_aet,
        contexts=accepted,
        peer_max_pdu=answer.max_length,
        peer_implementation=answer.implementation_class_uid,
        roles={r.sop_class_uid: (r.scu_role, r.scp_role) for r in answer.roles},
    )
    return reader, negotiated
