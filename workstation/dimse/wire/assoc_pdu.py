"""A-ASSOCIATE-RQ, -AC and -RJ PDUs (PS3.8 9.3.2-9.3.4, user information: PS3.7 D.3.3).

Association negotiation used pynetdicom's PDU classes, and importing pynetdicom (and pydicom
with it) costs about half a second of every short command; this codec needs only ``struct``.
Decoding trusts nothing: whatever a peer sends, a fault is an :class:`AssociationPduError`.
Encoding is byte for byte what pynetdicom sends for the same association.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

# Item types (PS3.8 9.3.2-3, Annex D; PS3.7 D.3.3)
APPLICATION_CONTEXT_ITEM = 0x10
CONTEXT_RQ_ITEM = 0x20
CONTEXT_AC_ITEM = 0x21
ABSTRACT_SYNTAX_ITEM = 0x30
TRANSFER_SYNTAX_ITEM = 0x40
USER_INFORMATION_ITEM = 0x50
MAXIMUM_LENGTH_ITEM = 0x51
IMPLEMENTATION_CLASS_UID_ITEM = 0x52
ROLE_SELECTION_ITEM = 0x54
IMPLEMENTATION_VERSION_NAME_ITEM = 0x55

#: The most items one PDU, presentation context or user information item may hold; far more
#: than any real peer sends (at most 128 presentation contexts fit the odd ids 1-255).
MAX_ITEMS = 256
_ONCE = (MAXIMUM_LENGTH_ITEM, IMPLEMENTATION_CLASS_UID_ITEM, IMPLEMENTATION_VERSION_NAME_ITEM)
_INTERPRETED = (*_ONCE, ROLE_SELECTION_ITEM)
_UID_MAX = 64

_PDU_HEADER = struct.Struct(">BxI")
_FIXED = struct.Struct(">H2x16s16s32x")  # protocol version, reserved, called, calling, reserved
_ITEM = struct.Struct(">BxH")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_FIXED_SIZE = _FIXED.size  # 68


class AssociationPduError(ValueError):
    """An association PDU that cannot be decoded, or values that cannot be encoded."""


@dataclass
class PresentationContextRQ:
    context_id: int
    abstract_syntax: str
    transfer_syntaxes: list[str]


@dataclass
class PresentationContextAC:
    context_id: int
    #: 0 acceptance, 1 user rejection, 2 no reason, 3 abstract syntax not supported,
    #: 4 transfer syntaxes not supported (PS3.8 9.3.3.2)
    result: int
    #: significant only when accepted; "" may stand for a rejected context's
    transfer_syntax: str


@dataclass
class RoleSelection:
    sop_class_uid: str
    scu_role: bool
    scp_role: bool


class _UserInformation:
    """The interpreted sub-items of a user information item."""

    def __init__(self) -> None:
        self.max_length = 0
        self.implementation_class_uid = ""
        self.implementation_version_name = ""
        self.roles: list[RoleSelection] = []
        self.other: list[tuple[int, bytes]] = []


@dataclass
class AssociateRQ:
    """An A-ASSOCIATE-RQ (PS3.8 9.3.2)."""

    called_ae: str
    calling_ae: str
    application_context: str = APPLICATION_CONTEXT
    contexts: list[PresentationContextRQ] = field(default_factory=list)
    #: Maximum Length sub-item (0x51): the largest P-DATA-TF body we may be sent; 0 = no limit
    max_length: int = 0
    implementation_class_uid: str = ""  # 0x52 (left out when empty)
    implementation_version_name: str = ""  # 0x55 (left out when empty)
    roles: list[RoleSelection] = field(default_factory=list)  # 0x54
    protocol_version: int = 1
    #: (item type, value) of the user information sub-items not interpreted here (0x53
    #: asynchronous operations, 0x56/0x57 extended negotiation, 0x58/0x59 user identity...)
    other_user_items: list[tuple[int, bytes]] = field(default_factory=list)

    def encode(self) -> bytes:
        """The whole PDU, header included."""
        _check_ids([cx.context_id for cx in self.contexts])
        items = [_context_rq(cx) for cx in self.contexts]
        return _encode_pdu(0x01, self, items)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> AssociateRQ:
        """Decode the PDU after its 6-byte header; raises :class:`AssociationPduError`."""
        return cls(**_decoded(body, "A-ASSOCIATE-RQ", CONTEXT_RQ_ITEM, _decode_context_rq))


@dataclass
class AssociateAC:
    """An A-ASSOCIATE-AC (PS3.8 9.3.3); the AE titles echo the request's (not to be tested)."""

    called_ae: str
    calling_ae: str
    application_context: str = APPLICATION_CONTEXT
    contexts: list[PresentationContextAC] = field(default_factory=list)
    max_length: int = 0
    implementation_class_uid: str = ""
    implementation_version_name: str = ""
    roles: list[RoleSelection] = field(default_factory=list)
    protocol_version: int = 1
    other_user_items: list[tuple[int, bytes]] = field(default_factory=list)

    def encode(self) -> bytes:
        """The whole PDU, header included."""
        _check_ids([cx.context_id for cx in self.contexts])
        items = [_context_ac(cx) for cx in self.contexts]
        return _encode_pdu(0x02, self, items)

    @classmethod
    def decode(cls, body: bytes | memoryview) -> AssociateAC:
        """Decode the PDU after its 6-byte header; raises :class:`AssociationPduError`."""
        return cls(**_decoded(body, "A-ASSOCIATE-AC", CONTEXT_AC_ITEM, _decode_context_ac))


def _decoded(
    body: bytes | memoryview,
    name: str,
    context_item: int,
    decode_context: Callable[[bytes, int, int], Any],
) -> dict[str, Any]:
    """The fields an A-ASSOCIATE-RQ or -AC decodes to, as keyword arguments."""
    data = bytes(body)
    version, called, calling, application, found, user = _decode_pdu(data, name, context_item)
    contexts = [decode_context(data, start, end) for start, end in found]
    _check_unique(cx.context_id for cx in contexts)
    return {
        "called_ae": called,
        "calling_ae": calling,
        "application_context": application,
        "contexts": contexts,
        "max_length": user.max_length,
        "implementation_class_uid": user.implementation_class_uid,
        "implementation_version_name": user.implementation_version_name,
        "roles": user.roles,
        "protocol_version": version,
        "other_user_items": user.other,
    }


def encode_rj(result: int, source: int, reason: int) -> bytes:
    """A-ASSOCIATE-RJ (PS3.8 9.3.4): result 1 permanent, 2 transient; source 1-3; reason."""
    for value in (result, source, reason):
        _check_range(value, 0, 0xFF, "an A-ASSOCIATE-RJ field")
    return bytes([0x03, 0, 0, 0, 0, 4, 0, result, source, reason])


# Decoding


def _items(data: bytes, start: int, end: int, where: str) -> list[tuple[int, int, int]]:
    """The items between ``start`` and ``end``: (type, value start, value end)."""
    found: list[tuple[int, int, int]] = []
    unpack = _ITEM.unpack_from
    pos = start
    while pos < end:
        if end - pos < 4:
            raise AssociationPduError(f"{where} ends with {end - pos} bytes that are not an item")
        kind, length = unpack(data, pos)
        pos += 4
        if length > end - pos:
            raise AssociationPduError(
                f"an item of type 0x{kind:02X} in {where} claims {length} bytes; {end - pos} remain"
            )
        if len(found) == MAX_ITEMS:
            raise AssociationPduError(f"{where} holds more than {MAX_ITEMS} items")
        found.append((kind, pos, pos + length))
        pos += length
    return found


def _uid(data: bytes, start: int, end: int, what: str) -> str:
    raw = data[start:end].rstrip(b"\x00 ")
    if len(raw) > _UID_MAX:
        raise AssociationPduError(f"the {what} is {len(raw)} bytes long (at most {_UID_MAX})")
    if not raw.isascii():
        raise AssociationPduError(f"the {what} is not ASCII")
    return raw.decode("ascii")


def _text(raw: bytes) -> str:
    """An AE title or version name: spaces and NULs around it are not significant."""
    return raw.strip(b" \x00").decode("ascii", "replace")


def _decode_pdu(
    data: bytes, name: str, context_type: int
) -> tuple[int, str, str, str, list[tuple[int, int]], _UserInformation]:
    if len(data) < _FIXED_SIZE:
        raise AssociationPduError(f"an {name} of {len(data)} bytes (at least {_FIXED_SIZE})")
    version, called, calling = _FIXED.unpack_from(data)
    application: str | None = None
    contexts: list[tuple[int, int]] = []
    user: _UserInformation | None = None
    for kind, start, end in _items(data, _FIXED_SIZE, len(data), f"the {name}"):
        if kind == context_type:
            contexts.append((start, end))
        elif kind == APPLICATION_CONTEXT_ITEM:
            if application is not None:
                raise AssociationPduError(f"the {name} has two application context items")
            application = _uid(data, start, end, "application context name")
        elif kind == USER_INFORMATION_ITEM:
            if user is not None:
                raise AssociationPduError(f"the {name} has two user information items")
            user = _decode_user(data, start, end)
        # PS3.8 9.3.1: items of unrecognised types are ignored and skipped (as DCMTK does).
    if application is None:
        raise AssociationPduError(f"the {name} has no application context item")
    if not contexts:
        raise AssociationPduError(f"the {name} has no presentation context item")
    if user is None:
        raise AssociationPduError(f"the {name} has no user information item")
    return version, _text(called), _text(calling), application, contexts, user


def _context_id(data: bytes, start: int, end: int) -> int:
    if end - start < 4:
        raise AssociationPduError(f"a presentation context item of {end - start} bytes")
    cid = data[start]
    if not cid & 1:
        raise AssociationPduError(f"presentation context id {cid} (odd, 1-255)")
    return cid


def _check_unique(ids: Iterable[int]) -> None:
    seen: set[int] = set()
    for cid in ids:
        if cid in seen:
            raise AssociationPduError(f"presentation context id {cid} comes twice")
        seen.add(cid)


def _decode_context_rq(data: bytes, start: int, end: int) -> PresentationContextRQ:
    cid = _context_id(data, start, end)
    abstract: str | None = None
    syntaxes: list[str] = []
    where = f"presentation context {cid}"
    for kind, a, b in _items(data, start + 4, end, where):
        if kind == TRANSFER_SYNTAX_ITEM:
            syntaxes.append(_uid(data, a, b, f"transfer syntax of {where}"))
        elif kind == ABSTRACT_SYNTAX_ITEM:
            if abstract is not None:
                raise AssociationPduError(f"{where} has two abstract syntaxes")
            abstract = _uid(data, a, b, f"abstract syntax of {where}")
    if abstract is None:
        raise AssociationPduError(f"{where} has no abstract syntax")
    if not syntaxes:
        raise AssociationPduError(f"{where} has no transfer syntax")
    return PresentationContextRQ(cid, abstract, syntaxes)


def _decode_context_ac(data: bytes, start: int, end: int) -> PresentationContextAC:
    cid = _context_id(data, start, end)
    result = data[start + 2]
    if result > 4:
        raise AssociationPduError(f"presentation context {cid} has result {result} (0-4)")
    where = f"presentation context {cid}"
    try:
        found = [
            _uid(data, a, b, f"transfer syntax of {where}")
            for kind, a, b in _items(data, start + 4, end, where)
            if kind == TRANSFER_SYNTAX_ITEM
        ]
    except AssociationPduError:
        if result == 0:
            raise
        found = []  # PS3.8 Table 9-18: not significant, not tested, unless accepted
    if result == 0:
        if len(found) != 1 or not found[0]:
            raise AssociationPduError(f"accepted {where} does not name one transfer syntax")
        return PresentationContextAC(cid, 0, found[0])
    return PresentationContextAC(cid, result, found[0] if found else "")


def _decode_user(data: bytes, start: int, end: int) -> _UserInformation:
    user = _UserInformation()
    seen: set[int] = set()
    for kind, a, b in _items(data, start, end, "the user information item"):
        if kind in _ONCE:
            if kind in seen:
                raise AssociationPduError(f"two user information sub-items of type 0x{kind:02X}")
            seen.add(kind)
        if kind == MAXIMUM_LENGTH_ITEM:
            if b - a != 4:
                raise AssociationPduError(f"a maximum length sub-item of {b - a} bytes (4)")
            user.max_length = _U32.unpack_from(data, a)[0]
        elif kind == IMPLEMENTATION_CLASS_UID_ITEM:
            user.implementation_class_uid = _uid(data, a, b, "implementation class UID")
        elif kind == ROLE_SELECTION_ITEM:
            if b - a < 4:
                raise AssociationPduError(f"an SCP/SCU role selection sub-item of {b - a} bytes")
            size = _U16.unpack_from(data, a)[0]
            if size + 4 != b - a:
                raise AssociationPduError(
                    f"an SCP/SCU role selection sub-item of {b - a} bytes with a {size}-byte UID"
                )
            uid = _uid(data, a + 2, a + 2 + size, "role selection SOP class UID")
            # PS3.7 D.3.3.4 defines 0 and 1; any other value is read as 1.
            user.roles.append(RoleSelection(uid, data[b - 2] != 0, data[b - 1] != 0))
        elif kind == IMPLEMENTATION_VERSION_NAME_ITEM:
            user.implementation_version_name = _text(data[a:b])
        else:
            # Asynchronous operations, extended negotiation, user identity and sub-items
            # unknown to us: kept as they came (PS3.8 D.2: unrecognised ones are ignored).
            user.other.append((kind, data[a:b]))
    return user


# Encoding


def _check_range(value: int, low: int, high: int, what: str) -> None:
    if not isinstance(value, int) or not low <= value <= high:
        raise AssociationPduError(f"{what} is {value!r} ({low}-{high})")


def _item(kind: int, value: bytes) -> bytes:
    if len(value) > 0xFFFF:
        raise AssociationPduError(f"an item of type 0x{kind:02X} of {len(value)} bytes (65535)")
    return _ITEM.pack(kind, len(value)) + value


def _uid_bytes(uid: str, what: str) -> bytes:
    """A UID as sent in negotiation: ASCII, no padding (PS3.8 Annex F; pynetdicom does so)."""
    try:
        raw = uid.encode("ascii")
    except (UnicodeEncodeError, AttributeError):
        raise AssociationPduError(f"the {what} {uid!r} is not an ASCII string") from None
    if len(raw) > _UID_MAX:
        raise AssociationPduError(f"the {what} is {len(raw)} bytes long (at most {_UID_MAX})")
    return raw


def _ae_bytes(title: str, what: str) -> bytes:
    # Replaced, not refused: an AC echoes the request's titles, which may have been decoded
    # from bytes that are not ASCII.
    try:
        raw = title.encode("ascii", "replace")
    except AttributeError:
        raise AssociationPduError(f"the {what} {title!r} is not a string") from None
    if len(raw) > 16:
        raise AssociationPduError(f"the {what} {title!r} is longer than 16 characters")
    return raw.ljust(16)


def _check_ids(ids: list[int]) -> None:
    if not ids:
        raise AssociationPduError("no presentation context")
    for cid in ids:
        if not isinstance(cid, int) or not 1 <= cid <= 255 or not cid & 1:
            raise AssociationPduError(f"presentation context id {cid!r} (odd, 1-255)")
    _check_unique(ids)


def _context_rq(cx: PresentationContextRQ) -> bytes:
    if not cx.transfer_syntaxes:
        raise AssociationPduError(f"presentation context {cx.context_id} has no transfer syntax")
    parts = [bytes([cx.context_id, 0, 0, 0])]
    parts.append(_item(ABSTRACT_SYNTAX_ITEM, _uid_bytes(cx.abstract_syntax, "abstract syntax")))
    parts += [
        _item(TRANSFER_SYNTAX_ITEM, _uid_bytes(ts, "transfer syntax"))
        for ts in cx.transfer_syntaxes
    ]
    return _item(CONTEXT_RQ_ITEM, b"".join(parts))


def _context_ac(cx: PresentationContextAC) -> bytes:
    _check_range(cx.result, 0, 4, f"the result of presentation context {cx.context_id}")
    if cx.result == 0 and not cx.transfer_syntax:
        raise AssociationPduError(f"accepted presentation context {cx.context_id} has no syntax")
    syntax = _item(TRANSFER_SYNTAX_ITEM, _uid_bytes(cx.transfer_syntax, "transfer syntax"))
    return _item(CONTEXT_AC_ITEM, bytes([cx.context_id, 0, cx.result, 0]) + syntax)


def _user_information(pdu: AssociateRQ | AssociateAC) -> bytes:
    # pynetdicom's order (max length, class UID, version name, roles, then the rest):
    # PS3.8 9.3.2.3 lets sub-items come in any order.
    _check_range(pdu.max_length, 0, 0xFFFFFFFF, "the maximum length")
    parts = [_ITEM.pack(MAXIMUM_LENGTH_ITEM, 4) + _U32.pack(pdu.max_length)]
    if pdu.implementation_class_uid:
        uid = _uid_bytes(pdu.implementation_class_uid, "implementation class UID")
        parts.append(_item(IMPLEMENTATION_CLASS_UID_ITEM, uid))
    if pdu.implementation_version_name:
        name = pdu.implementation_version_name.encode("ascii", "replace")
        if len(name) > 16:
            raise AssociationPduError("the implementation version name is over 16 characters")
        parts.append(_item(IMPLEMENTATION_VERSION_NAME_ITEM, name))
    for role in pdu.roles:
        uid = _uid_bytes(role.sop_class_uid, "role selection SOP class UID")
        value = _U16.pack(len(uid)) + uid + bytes([bool(role.scu_role), bool(role.scp_role)])
        parts.append(_item(ROLE_SELECTION_ITEM, value))
    for kind, value in pdu.other_user_items:
        _check_range(kind, 0, 0xFF, "a user information sub-item type")
        if kind in _INTERPRETED:
            raise AssociationPduError(f"sub-item 0x{kind:02X} belongs in its own field")
        parts.append(_item(kind, bytes(value)))
    return _item(USER_INFORMATION_ITEM, b"".join(parts))


def _encode_pdu(pdu_type: int, pdu: AssociateRQ | AssociateAC, contexts: list[bytes]) -> bytes:
    _check_range(pdu.protocol_version, 0, 0xFFFF, "the protocol version")
    fixed = _FIXED.pack(
        pdu.protocol_version,
        _ae_bytes(pdu.called_ae, "called AE title"),
        _ae_bytes(pdu.calling_ae, "calling AE title"),
    )
    application = _uid_bytes(pdu.application_context, "application context name")
    body = b"".join(
        [
            fixed,
            _item(APPLICATION_CONTEXT_ITEM, application),
            *contexts,
            _user_information(pdu),
        ]
    )
    return _PDU_HEADER.pack(pdu_type, len(body)) + body
