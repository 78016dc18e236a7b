"""DIMSE command sets (PS3.7 sections 9/10, Annex E) encoded and decoded with precompiled structs.

A command set is a flat run of group-0000 elements, always Implicit VR Little Endian, in
ascending tag order behind a (0000,0000) CommandGroupLength. Building one through a pydicom
Dataset costs far more than the message it frames, which shows when thousands of C-STORE
requests arrive in a retrieve, so this module does it with ``struct`` and a tag -> VR table.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from functools import partial


class CommandError(ValueError):
    """A malformed command set, or fields that cannot be encoded as one (message says what)."""


# Tags (all in group 0000, so the tag is the element number)
COMMAND_GROUP_LENGTH = 0x00000000
AFFECTED_SOP_CLASS_UID = 0x00000002
REQUESTED_SOP_CLASS_UID = 0x00000003
COMMAND_FIELD = 0x00000100
MESSAGE_ID = 0x00000110
MESSAGE_ID_BEING_RESPONDED_TO = 0x00000120
MOVE_DESTINATION = 0x00000600
PRIORITY = 0x00000700
COMMAND_DATA_SET_TYPE = 0x00000800
STATUS = 0x00000900
OFFENDING_ELEMENT = 0x00000901
ERROR_COMMENT = 0x00000902
ERROR_ID = 0x00000903
AFFECTED_SOP_INSTANCE_UID = 0x00001000
REQUESTED_SOP_INSTANCE_UID = 0x00001001
EVENT_TYPE_ID = 0x00001002
ATTRIBUTE_IDENTIFIER_LIST = 0x00001005
ACTION_TYPE_ID = 0x00001008
NUMBER_OF_REMAINING_SUBOPERATIONS = 0x00001020
NUMBER_OF_COMPLETED_SUBOPERATIONS = 0x00001021
NUMBER_OF_FAILED_SUBOPERATIONS = 0x00001022
NUMBER_OF_WARNING_SUBOPERATIONS = 0x00001023
MOVE_ORIGINATOR_AE_TITLE = 0x00001030
MOVE_ORIGINATOR_MESSAGE_ID = 0x00001031

# CommandField values
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_GET_RQ, C_GET_RSP = 0x0010, 0x8010
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
C_CANCEL_RQ = 0x0FFF
N_EVENT_REPORT_RQ, N_EVENT_REPORT_RSP = 0x0100, 0x8100
N_GET_RQ, N_GET_RSP = 0x0110, 0x8110
N_SET_RQ, N_SET_RSP = 0x0120, 0x8120
N_ACTION_RQ, N_ACTION_RSP = 0x0130, 0x8130
N_CREATE_RQ, N_CREATE_RSP = 0x0140, 0x8140
N_DELETE_RQ, N_DELETE_RSP = 0x0150, 0x8150

NO_DATA_SET = 0x0101  # CommandDataSetType: no data set follows
DATA_SET = 0x0001  # what pynetdicom (and most peers) send when one does
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

# VR kinds; strings differ only in padding and in what decoding strips
_US, _UL, _AT, _UI, _AE, _LO, _SH = range(7)
# Also known, retired ACR-NEMA elements: 0010 CommandRecognitionCode, 5010 MessageSetID and
# 5020 EndMessageID (SH); 0200 Initiator, 0300 Receiver, 0400 FindLocation (AE); 0850
# NumberOfMatches, 0860 ResponseSequenceNumber (US). Others (LT, IS) decode as raw bytes.
_KINDS: dict[int, int] = {COMMAND_GROUP_LENGTH: _UL, ERROR_COMMENT: _LO}
_KINDS |= dict.fromkeys((OFFENDING_ELEMENT, ATTRIBUTE_IDENTIFIER_LIST), _AT)
_KINDS |= dict.fromkeys((0x0010, 0x5010, 0x5020), _SH)
_KINDS |= dict.fromkeys(
    (AFFECTED_SOP_CLASS_UID, REQUESTED_SOP_CLASS_UID, AFFECTED_SOP_INSTANCE_UID,
     REQUESTED_SOP_INSTANCE_UID), _UI,
)  # fmt: skip
_KINDS |= dict.fromkeys((0x0200, 0x0300, 0x0400, MOVE_DESTINATION, MOVE_ORIGINATOR_AE_TITLE), _AE)
_KINDS |= dict.fromkeys(
    (COMMAND_FIELD, MESSAGE_ID, MESSAGE_ID_BEING_RESPONDED_TO, PRIORITY, COMMAND_DATA_SET_TYPE,
     0x0850, 0x0860, STATUS, ERROR_ID, EVENT_TYPE_ID, ACTION_TYPE_ID, MOVE_ORIGINATOR_MESSAGE_ID,
     NUMBER_OF_REMAINING_SUBOPERATIONS, NUMBER_OF_COMPLETED_SUBOPERATIONS,
     NUMBER_OF_FAILED_SUBOPERATIONS, NUMBER_OF_WARNING_SUBOPERATIONS), _US,
)  # fmt: skip

_HEADER = struct.Struct("<HHI")  # group, element, value length
_US_ELEMENT = struct.Struct("<HHIH")
_UL_ELEMENT = struct.Struct("<HHII")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_PAD = {_UI: b"\x00", _AE: b" ", _LO: b" ", _SH: b" "}


def decode_command(data: bytes | bytearray | memoryview) -> dict[int, object]:
    """Decode an encoded command set to ``{tag: value}``, leaving out CommandGroupLength.

    Values: ``int`` for US/UL; ``str`` for UI/AE/LO/SH with padding stripped (trailing NULs and
    spaces for UI, surrounding spaces for AE/SH, trailing spaces for LO); a tuple of tags for AT;
    raw ``bytes`` for tags this module does not know. Raises CommandError if the data is not a
    well-formed command set (see the checks below) or lacks CommandField.
    """
    buf = data if type(data) is bytes else bytes(data)
    end_of_data = len(buf)
    if end_of_data < 12:
        raise CommandError(f"command set of {end_of_data} bytes is too short for its group length")
    group, tag, length, group_length = _UL_ELEMENT.unpack_from(buf)
    if group or tag or length != 4:
        raise CommandError("command set does not start with (0000,0000) CommandGroupLength UL")
    if group_length != end_of_data - 12:
        raise CommandError(
            f"CommandGroupLength is {group_length} but {end_of_data - 12} bytes follow it"
        )
    result: dict[int, object] = {}
    header, kinds, previous, pos = _HEADER.unpack_from, _KINDS, 0, 12
    while pos < end_of_data:
        if pos + 8 > end_of_data:
            raise CommandError(f"truncated element header at offset {pos}")
        group, tag, length = header(buf, pos)
        if group:
            raise CommandError(f"element ({group:04X},{tag:04X}) is outside group 0000")
        if tag <= previous:
            raise CommandError(f"element (0000,{tag:04X}) out of order after (0000,{previous:04X})")
        previous = tag
        pos += 8
        end = pos + length
        if end > end_of_data:
            raise CommandError(
                f"element (0000,{tag:04X}) of {length} bytes runs past the end of the data"
            )
        kind = kinds.get(tag)
        if kind == _US:
            if length != 2:
                raise CommandError(f"US element (0000,{tag:04X}) has length {length}, not 2")
            result[tag] = _U16.unpack_from(buf, pos)[0]
        elif kind == _UI:
            result[tag] = buf[pos:end].decode("latin-1").rstrip("\x00 ")
        elif kind in (_AE, _SH):
            result[tag] = buf[pos:end].decode("latin-1").strip(" ")
        elif kind == _LO:
            result[tag] = buf[pos:end].decode("latin-1").rstrip(" ")
        elif kind == _UL:
            if length != 4:
                raise CommandError(f"UL element (0000,{tag:04X}) has length {length}, not 4")
            result[tag] = _U32.unpack_from(buf, pos)[0]
        elif kind == _AT:
            if length % 4:
                raise CommandError(f"AT element (0000,{tag:04X}) has length {length}")
            words = struct.unpack_from(f"<{length // 2}H", buf, pos)
            result[tag] = tuple((words[i] << 16) | words[i + 1] for i in range(0, len(words), 2))
        else:
            result[tag] = buf[pos:end]
        pos = end
    if COMMAND_FIELD not in result:
        raise CommandError("command set has no CommandField (0000,0100)")
    return result


def encode_command(fields: Mapping[int, object]) -> bytes:
    """Encode ``{tag: value}`` as a command set, CommandGroupLength first, then tags ascending.

    ``None`` values are left out, and so is any CommandGroupLength given (it is computed). AT
    values are an int tag or a sequence of them. Raises CommandError for a tag this module does
    not know, a value of the wrong type, or an integer out of range for its VR.
    """
    try:
        tags = sorted(fields)
    except TypeError:
        raise CommandError(f"command tags must be ints: {list(fields)!r}") from None
    parts: list[bytes] = []
    append, kinds, pack_us, pack_header = parts.append, _KINDS, _US_ELEMENT.pack, _HEADER.pack
    for tag in tags:
        value = fields[tag]
        if value is None or tag == COMMAND_GROUP_LENGTH:
            continue
        kind = kinds.get(tag)
        if kind == _US and type(value) is int and 0 <= value <= 0xFFFF:
            append(pack_us(0, tag, 2, value))
        elif type(value) is str and kind is not None and kind >= _UI and type(tag) is int:
            try:
                raw = value.encode("latin-1")
            except UnicodeEncodeError:
                raise CommandError(f"(0000,{tag:04X}) is not Latin-1: {value!r}") from None
            if len(raw) & 1:
                raw += _PAD[kind]
            append(pack_header(0, tag, len(raw)))
            append(raw)
        else:
            append(_encode_other(tag, kind, value))
    body = b"".join(parts)
    return _UL_ELEMENT.pack(0, 0, 4, len(body)) + body


def _encode_other(tag: object, kind: int | None, value: object) -> bytes:
    """The slow path of encode_command: UL and AT values, int subclasses, and errors."""
    if kind is None or not isinstance(tag, int) or isinstance(tag, bool):
        raise CommandError(f"unknown command element {tag!r}")
    if kind == _AT:
        return _encode_at(tag, value)
    if kind >= _UI:
        if isinstance(value, str):  # a str subclass (pydicom's UID, a StrEnum): as plain str
            return encode_command({tag: str(value)})[12:]
        raise CommandError(f"(0000,{tag:04X}) needs a str, not {value!r}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise CommandError(f"(0000,{tag:04X}) needs an int, not {value!r}")
    packer = _US_ELEMENT if kind == _US else _UL_ELEMENT
    try:
        return packer.pack(0, tag, packer.size - 8, value)
    except struct.error:
        raise CommandError(f"(0000,{tag:04X}) = {value!r} is out of range") from None


def _encode_at(tag: int, value: object) -> bytes:
    items = (value,) if isinstance(value, int) else value
    if not isinstance(items, tuple | list):
        raise CommandError(f"(0000,{tag:04X}) needs a tag or a list of tags, not {value!r}")
    words: list[int] = []
    for item in items:
        if not isinstance(item, int) or isinstance(item, bool) or not 0 <= item <= 0xFFFFFFFF:
            raise CommandError(f"(0000,{tag:04X}) has a value that is not a tag: {item!r}")
        words += (item >> 16, item & 0xFFFF)
    return _HEADER.pack(0, tag, 2 * len(words)) + struct.pack(f"<{len(words)}H", *words)


def is_data_set_present(command: Mapping[int, object]) -> bool:
    """Whether a data set follows the command (CommandDataSetType other than 0x0101)."""
    return command.get(COMMAND_DATA_SET_TYPE, NO_DATA_SET) != NO_DATA_SET


# Builders: the elements of each message as PS3.7 section 9.3 lists them (and pynetdicom sends).


def c_echo_rq(message_id: int, sop_class_uid: str = VERIFICATION_SOP_CLASS) -> bytes:
    return encode_command(
        {
            AFFECTED_SOP_CLASS_UID: sop_class_uid,
            COMMAND_FIELD: C_ECHO_RQ,
            MESSAGE_ID: message_id,
            COMMAND_DATA_SET_TYPE: NO_DATA_SET,
        }
    )


def c_echo_rsp(
    responding_to: int,
    status: int = 0,
    sop_class_uid: str | None = VERIFICATION_SOP_CLASS,
    error_comment: str | None = None,
) -> bytes:
    return encode_command(
        {
            AFFECTED_SOP_CLASS_UID: sop_class_uid,
            COMMAND_FIELD: C_ECHO_RSP,
            MESSAGE_ID_BEING_RESPONDED_TO: responding_to,
            COMMAND_DATA_SET_TYPE: NO_DATA_SET,
            STATUS: status,
            ERROR_COMMENT: error_comment,
        }
    )


def c_store_rq(
    message_id: int,
    sop_class_uid: str,
    sop_instance_uid: str,
    priority: int = 0,
    move_originator_aet: str | None = None,
    move_originator_message_id: int | None = None,
) -> bytes:
    return encode_command(
        {
            AFFECTED_SOP_CLASS_UID: sop_class_uid,
            COMMAND_FIELD: C_STORE_RQ,
            MESSAGE_ID: message_id,
            PRIORITY: priority,
            COMMAND_DATA_SET_TYPE: DATA_SET,
            AFFECTED_SOP_INSTANCE_UID: sop_instance_uid,
            MOVE_ORIGINATOR_AE_TITLE: move_originator_aet,
            MOVE_ORIGINATOR_MESSAGE_ID: move_originator_message_id,
        }
    )


def c_store_rsp(
    responding_to: int,
    sop_class_uid: str | None,
    sop_instance_uid: str | None,
    status: int,
    error_comment: str | None = None,
    *,
    offending_element: Iterable[int] | None = None,
) -> bytes:
    return encode_command(
        {
            AFFECTED_SOP_CLASS_UID: sop_class_uid,
            COMMAND_FIELD: C_STORE_RSP,
            MESSAGE_ID_BEING_RESPONDED_TO: responding_to,
            COMMAND_DATA_SET_TYPE: NO_DATA_SET,
            STATUS: status,
            AFFECTED_SOP_INSTANCE_UID: sop_instance_uid,
            OFFENDING_ELEMENT: _tags(offending_element),
            ERROR_COMMENT: error_comment,
        }
    )


def _tags(tags: Iterable[int] | None) -> tuple[int, ...] | None:
    return None if tags is None else tuple(tags)


def _request(
    command_field: int,
    message_id: int,
    sop_class_uid: str,
    priority: int,
    move_destination: str | None = None,
) -> bytes:
    return encode_command(
        {
            AFFECTED_SOP_CLASS_UID: sop_class_uid,
            COMMAND_FIELD: command_field,
            MESSAGE_ID: message_id,
            PRIORITY: priority,
            COMMAND_DATA_SET_TYPE: DATA_SET,
            MOVE_DESTINATION: move_destination,
        }
    )


def c_find_rq(message_id: int, sop_class_uid: str, priority: int = 0) -> bytes:
    return _request(C_FIND_RQ, message_id, sop_class_uid, priority)


def c_get_rq(message_id: int, sop_class_uid: str, priority: int = 0) -> bytes:
    return _request(C_GET_RQ, message_id, sop_class_uid, priority)


def c_move_rq(
    message_id: int, sop_class_uid: str, move_destination: str, priority: int = 0
) -> bytes:
    return _request(C_MOVE_RQ, message_id, sop_class_uid, priority, move_destination)


def c_cancel_rq(responding_to: int) -> bytes:
    return encode_command(
        {
            COMMAND_FIELD: C_CANCEL_RQ,
            MESSAGE_ID_BEING_RESPONDED_TO: responding_to,
            COMMAND_DATA_SET_TYPE: NO_DATA_SET,
        }
    )


def c_find_rsp(
    responding_to: int,
    sop_class_uid: str | None,
    status: int,
    *,
    data_set: bool | None = None,
    error_comment: str | None = None,
    offending_element: Iterable[int] | None = None,
) -> bytes:
    """A C-FIND-RSP; ``data_set=None`` means an identifier follows iff status is Pending."""
    if data_set is None:
        data_set = status in (0xFF00, 0xFF01)
    return encode_command(
        {
            AFFECTED_SOP_CLASS_UID: sop_class_uid,
            COMMAND_FIELD: C_FIND_RSP,
            MESSAGE_ID_BEING_RESPONDED_TO: responding_to,
            COMMAND_DATA_SET_TYPE: DATA_SET if data_set else NO_DATA_SET,
            STATUS: status,
            OFFENDING_ELEMENT: _tags(offending_element),
            ERROR_COMMENT: error_comment,
        }
    )


def _retrieve_rsp(
    command_field: int,
    responding_to: int,
    sop_class_uid: str | None,
    status: int,
    remaining: int | None = None,
    completed: int | None = None,
    failed: int | None = None,
    warning: int | None = None,
    *,
    data_set: bool = False,
    error_comment: str | None = None,
    offending_element: Iterable[int] | None = None,
) -> bytes:
    return encode_command(
        {
            AFFECTED_SOP_CLASS_UID: sop_class_uid,
            COMMAND_FIELD: command_field,
            MESSAGE_ID_BEING_RESPONDED_TO: responding_to,
            COMMAND_DATA_SET_TYPE: DATA_SET if data_set else NO_DATA_SET,
            STATUS: status,
            NUMBER_OF_REMAINING_SUBOPERATIONS: remaining,
            NUMBER_OF_COMPLETED_SUBOPERATIONS: completed,
            NUMBER_OF_FAILED_SUBOPERATIONS: failed,
            NUMBER_OF_WARNING_SUBOPERATIONS: warning,
            OFFENDING_ELEMENT: _tags(offending_element),
            ERROR_COMMENT: error_comment,
        }
    )


# c_get_rsp / c_move_rsp(responding_to, sop_class_uid, status, remaining=None, completed=None,
#     failed=None, warning=None, *, data_set=False, error_comment=None, offending_element=None):
# ``data_set`` says whether an identifier (Failed SOP Instance UID List) follows.
c_get_rsp = partial(_retrieve_rsp, C_GET_RSP)
c_move_rsp = partial(_retrieve_rsp, C_MOVE_RSP)
