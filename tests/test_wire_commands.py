"""The struct-based DIMSE command set codec, checked against pynetdicom's own encoding."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from io import BytesIO
from typing import Any

import pytest
from pydicom.datadict import keyword_for_tag
from pynetdicom import dimse_messages, dimse_primitives
from pynetdicom.dsutils import encode

from workstation.dimse.wire import commands as wc
from workstation.dimse.wire.commands import CommandError, decode_command, encode_command

CT = "1.2.840.10008.5.1.4.1.1.2"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
SOP_CLASS = {"ECHO": "1.2.840.10008.1.1", "FIND": STUDY_ROOT_FIND, "GET": STUDY_ROOT_GET}
SOP_CLASS |= {"MOVE": STUDY_ROOT_MOVE, "STORE": CT}

# message -> (pynetdicom message class, primitive class, the primitive's data set attribute)
MESSAGES: dict[str, tuple[Any, Any, str | None]] = {
    "C-ECHO-RQ": (dimse_messages.C_ECHO_RQ, dimse_primitives.C_ECHO, None),
    "C-ECHO-RSP": (dimse_messages.C_ECHO_RSP, dimse_primitives.C_ECHO, None),
    "C-STORE-RQ": (dimse_messages.C_STORE_RQ, dimse_primitives.C_STORE, "DataSet"),
    "C-STORE-RSP": (dimse_messages.C_STORE_RSP, dimse_primitives.C_STORE, None),
    "C-FIND-RQ": (dimse_messages.C_FIND_RQ, dimse_primitives.C_FIND, "Identifier"),
    "C-FIND-RSP": (dimse_messages.C_FIND_RSP, dimse_primitives.C_FIND, "Identifier"),
    "C-GET-RQ": (dimse_messages.C_GET_RQ, dimse_primitives.C_GET, "Identifier"),
    "C-GET-RSP": (dimse_messages.C_GET_RSP, dimse_primitives.C_GET, "Identifier"),
    "C-MOVE-RQ": (dimse_messages.C_MOVE_RQ, dimse_primitives.C_MOVE, "Identifier"),
    "C-MOVE-RSP": (dimse_messages.C_MOVE_RSP, dimse_primitives.C_MOVE, "Identifier"),
    "C-CANCEL-RQ": (dimse_messages.C_CANCEL_RQ, dimse_primitives.C_CANCEL, None),
}
FIELD = {
    "C-ECHO-RQ": wc.C_ECHO_RQ,
    "C-ECHO-RSP": wc.C_ECHO_RSP,
    "C-STORE-RQ": wc.C_STORE_RQ,
    "C-STORE-RSP": wc.C_STORE_RSP,
    "C-FIND-RQ": wc.C_FIND_RQ,
    "C-FIND-RSP": wc.C_FIND_RSP,
    "C-GET-RQ": wc.C_GET_RQ,
    "C-GET-RSP": wc.C_GET_RSP,
    "C-MOVE-RQ": wc.C_MOVE_RQ,
    "C-MOVE-RSP": wc.C_MOVE_RSP,
    "C-CANCEL-RQ": wc.C_CANCEL_RQ,
}


def reference(message: str, fields: dict[int, Any]) -> bytes:
    """pynetdicom's encoded command set for ``fields`` (CommandField/DataSetType implied)."""
    message_class, primitive_class, data_set_attribute = MESSAGES[message]
    primitive = primitive_class()
    for tag, value in fields.items():
        if tag not in (wc.COMMAND_FIELD, wc.COMMAND_DATA_SET_TYPE) and value is not None:
            setattr(primitive, keyword_for_tag(tag), list(value) if type(value) is tuple else value)
    if data_set_attribute and fields[wc.COMMAND_DATA_SET_TYPE] != wc.NO_DATA_SET:
        setattr(primitive, data_set_attribute, BytesIO(b"\x00\x00"))
    msg = message_class()
    msg.primitive_to_message(primitive)
    return bytes(encode(msg.command_set, True, True))


def build(message: str, f: dict[int, Any]) -> bytes:
    """Our builder for ``message`` called with the values in ``f``."""
    get = f.get
    present = get(wc.COMMAND_DATA_SET_TYPE) != wc.NO_DATA_SET
    cuid, status, comment = get(wc.AFFECTED_SOP_CLASS_UID), get(wc.STATUS), get(wc.ERROR_COMMENT)
    mid, rt, prio = get(wc.MESSAGE_ID), get(wc.MESSAGE_ID_BEING_RESPONDED_TO), get(wc.PRIORITY)
    offending = get(wc.OFFENDING_ELEMENT)
    counters = [get(t) for t in range(wc.NUMBER_OF_REMAINING_SUBOPERATIONS, 0x1024)]
    builders: dict[str, Callable[[], bytes]] = {
        "C-ECHO-RQ": lambda: wc.c_echo_rq(mid, cuid),
        "C-ECHO-RSP": lambda: wc.c_echo_rsp(rt, status, cuid, comment),
        "C-STORE-RQ": lambda: wc.c_store_rq(
            mid,
            cuid,
            get(wc.AFFECTED_SOP_INSTANCE_UID),
            prio,
            get(wc.MOVE_ORIGINATOR_AE_TITLE),
            get(wc.MOVE_ORIGINATOR_MESSAGE_ID),
        ),
        "C-STORE-RSP": lambda: wc.c_store_rsp(
            rt,
            cuid,
            get(wc.AFFECTED_SOP_INSTANCE_UID),
            status,
            comment,
            offending_element=offending,
        ),
        "C-FIND-RQ": lambda: wc.c_find_rq(mid, cuid, prio),
        "C-FIND-RSP": lambda: wc.c_find_rsp(
            rt, cuid, status, data_set=present, error_comment=comment, offending_element=offending
        ),
        "C-GET-RQ": lambda: wc.c_get_rq(mid, cuid, prio),
        "C-GET-RSP": lambda: wc.c_get_rsp(
            rt,
            cuid,
            status,
            *counters,
            data_set=present,
            error_comment=comment,
            offending_element=offending,
        ),
        "C-MOVE-RQ": lambda: wc.c_move_rq(mid, cuid, get(wc.MOVE_DESTINATION), prio),
        "C-MOVE-RSP": lambda: wc.c_move_rsp(
            rt,
            cuid,
            status,
            *counters,
            data_set=present,
            error_comment=comment,
            offending_element=offending,
        ),
        "C-CANCEL-RQ": lambda: wc.c_cancel_rq(rt),
    }
    return builders[message]()


def uid(rng: random.Random, length: int) -> str:
    """A UID of exactly ``length`` characters (digits and dots, components without leading 0)."""
    text = ""
    while len(text) < length:
        component = "0" if rng.random() < 0.1 else str(rng.randrange(1, 10 ** rng.randint(1, 12)))
        text += ("." if text else "") + component
    text = text[:length]
    return text[:-2] + "11" if text.endswith(".") else text


AE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
LO_CHARS = AE_CHARS + "abcdefghijklmnopqrstuvwxyz .,:;()'!?/"


def ae(rng: random.Random, length: int) -> str:
    if length < 3:
        return "".join(rng.choices(AE_CHARS, k=length))
    return rng.choice(AE_CHARS) + "".join(rng.choices(AE_CHARS + " ", k=length - 2)) + "Z"


def random_fields(message: str, rng: random.Random) -> dict[int, Any]:
    """Random values for every element ``message`` may carry (optional ones sometimes None)."""

    def maybe(value: Any) -> Any:
        return value if rng.random() < 0.6 else None

    def u16() -> int:
        return rng.choice([0, 1, 0xFFFF, rng.randrange(0x10000)])

    status = rng.choice([0x0000, 0xFF00, 0xFF01, 0xFE00, 0xB000, 0xA700, 0xC000, u16()])
    comment = "E" + "".join(rng.choices(LO_CHARS, k=rng.randint(0, 63))).rstrip()
    offending = tuple(rng.randrange(0x100000000) for _ in range(rng.randint(1, 3)))
    request, rq = message.endswith("-RQ"), {}
    f: dict[int, Any] = {wc.COMMAND_FIELD: FIELD[message]}
    if message != "C-CANCEL-RQ":
        cuid = uid(rng, rng.randint(1, 64))
        f[wc.AFFECTED_SOP_CLASS_UID] = cuid if request else maybe(cuid)
    if request and message != "C-CANCEL-RQ":
        f[wc.MESSAGE_ID] = u16()
    else:
        f[wc.MESSAGE_ID_BEING_RESPONDED_TO] = u16()
    if message in ("C-STORE-RQ", "C-FIND-RQ", "C-GET-RQ", "C-MOVE-RQ"):
        f[wc.PRIORITY] = rng.choice([0, 1, 2])
    if not request:
        f[wc.STATUS] = status
    if message == "C-STORE-RQ":
        f[wc.AFFECTED_SOP_INSTANCE_UID] = uid(rng, rng.randint(1, 64))
        if rng.random() < 0.6:
            f[wc.MOVE_ORIGINATOR_AE_TITLE] = ae(rng, rng.randint(1, 16))
            f[wc.MOVE_ORIGINATOR_MESSAGE_ID] = u16()
        rq[wc.COMMAND_DATA_SET_TYPE] = wc.DATA_SET
    elif message == "C-STORE-RSP":
        f[wc.AFFECTED_SOP_INSTANCE_UID] = maybe(uid(rng, rng.randint(1, 64)))
    elif message == "C-MOVE-RQ":
        f[wc.MOVE_DESTINATION] = ae(rng, rng.randint(1, 16))
    if message in ("C-GET-RSP", "C-MOVE-RSP"):
        for tag in range(wc.NUMBER_OF_REMAINING_SUBOPERATIONS, 0x1024):
            f[tag] = maybe(u16())
    if message in ("C-STORE-RSP", "C-FIND-RSP", "C-GET-RSP", "C-MOVE-RSP"):
        f[wc.OFFENDING_ELEMENT] = maybe(offending)
    if not request:
        f[wc.ERROR_COMMENT] = maybe(comment)
    if message in ("C-FIND-RQ", "C-GET-RQ", "C-MOVE-RQ"):
        rq[wc.COMMAND_DATA_SET_TYPE] = wc.DATA_SET
    elif message in ("C-FIND-RSP", "C-GET-RSP", "C-MOVE-RSP"):
        rq[wc.COMMAND_DATA_SET_TYPE] = rng.choice([wc.DATA_SET, wc.NO_DATA_SET])
    f[wc.COMMAND_DATA_SET_TYPE] = rq.get(wc.COMMAND_DATA_SET_TYPE, wc.NO_DATA_SET)
    return f


def without_none(fields: dict[int, Any]) -> dict[int, Any]:
    return {tag: value for tag, value in fields.items() if value is not None}


# -- against pynetdicom ---------------------------------------------------------------------------


@pytest.mark.parametrize("message", list(MESSAGES))
def test_builders_are_byte_identical_to_pynetdicom_for_random_values(message: str) -> None:
    rng = random.Random(f"pynetdicom {message}")
    for _ in range(60):
        fields = random_fields(message, rng)
        expected = reference(message, fields)
        assert encode_command(fields) == expected
        assert build(message, fields) == expected
        assert decode_command(expected) == without_none(fields)


@pytest.mark.parametrize("length", range(1, 17))
def test_ae_titles_of_every_length_match_pynetdicom(length: int) -> None:
    title = "MOVE_SCU_ABCDEFGH"[:length]
    f = {
        wc.AFFECTED_SOP_CLASS_UID: CT,
        wc.COMMAND_FIELD: wc.C_STORE_RQ,
        wc.MESSAGE_ID: 9,
        wc.PRIORITY: 2,
        wc.COMMAND_DATA_SET_TYPE: wc.DATA_SET,
        wc.AFFECTED_SOP_INSTANCE_UID: "1.2.3.4",
        wc.MOVE_ORIGINATOR_AE_TITLE: title,
        wc.MOVE_ORIGINATOR_MESSAGE_ID: 77,
    }
    expected = reference("C-STORE-RQ", f)
    assert wc.c_store_rq(9, CT, "1.2.3.4", 2, title, 77) == expected
    assert decode_command(expected)[wc.MOVE_ORIGINATOR_AE_TITLE] == title
    move = wc.c_move_rq(3, STUDY_ROOT_MOVE, title)
    assert decode_command(move)[wc.MOVE_DESTINATION] == title
    assert len(move) % 2 == 0


@pytest.mark.parametrize("instance", ["1.2.3", "1.2.34", "1" * 63, "1" * 64])
def test_odd_and_even_uids_are_padded_like_pynetdicom(instance: str) -> None:
    f = {
        wc.AFFECTED_SOP_CLASS_UID: CT,
        wc.COMMAND_FIELD: wc.C_STORE_RSP,
        wc.MESSAGE_ID_BEING_RESPONDED_TO: 1,
        wc.COMMAND_DATA_SET_TYPE: wc.NO_DATA_SET,
        wc.STATUS: 0,
        wc.AFFECTED_SOP_INSTANCE_UID: instance,
    }
    data = wc.c_store_rsp(1, CT, instance, 0)
    assert data == reference("C-STORE-RSP", f)
    padded = instance.encode() + b"\x00" * (len(instance) % 2)
    assert data.endswith(struct.pack("<HHI", 0, 0x1000, len(padded)) + padded)


def test_fixed_examples_match_pynetdicom_and_decode_to_the_right_values() -> None:
    cases: list[tuple[str, bytes, dict[int, Any]]] = [
        ("C-ECHO-RQ", wc.c_echo_rq(1), {wc.MESSAGE_ID: 1}),
        ("C-ECHO-RSP", wc.c_echo_rsp(1), {wc.MESSAGE_ID_BEING_RESPONDED_TO: 1, wc.STATUS: 0}),
        ("C-FIND-RQ", wc.c_find_rq(5, STUDY_ROOT_FIND), {wc.MESSAGE_ID: 5, wc.PRIORITY: 0}),
        ("C-GET-RQ", wc.c_get_rq(6, STUDY_ROOT_GET, 1), {wc.MESSAGE_ID: 6, wc.PRIORITY: 1}),
        ("C-CANCEL-RQ", wc.c_cancel_rq(5), {wc.MESSAGE_ID_BEING_RESPONDED_TO: 5}),
        (
            "C-MOVE-RQ",
            wc.c_move_rq(65535, STUDY_ROOT_MOVE, "STORE_SCP", 2),
            {wc.MESSAGE_ID: 65535, wc.PRIORITY: 2, wc.MOVE_DESTINATION: "STORE_SCP"},
        ),
        (
            "C-STORE-RSP",
            wc.c_store_rsp(3, CT, "1.2.3", 0xA700, "Out of resources", offending_element=[0x10]),
            {
                wc.MESSAGE_ID_BEING_RESPONDED_TO: 3,
                wc.STATUS: 0xA700,
                wc.AFFECTED_SOP_INSTANCE_UID: "1.2.3",
                wc.ERROR_COMMENT: "Out of resources",
                wc.OFFENDING_ELEMENT: (0x10,),
            },
        ),
        (
            "C-FIND-RSP",
            wc.c_find_rsp(5, STUDY_ROOT_FIND, 0xFF00),
            {wc.MESSAGE_ID_BEING_RESPONDED_TO: 5, wc.STATUS: 0xFF00},
        ),
        (
            "C-MOVE-RSP",
            wc.c_move_rsp(7, STUDY_ROOT_MOVE, 0xFF00, 10, 2, 0, 1),
            {
                wc.MESSAGE_ID_BEING_RESPONDED_TO: 7,
                wc.STATUS: 0xFF00,
                wc.NUMBER_OF_REMAINING_SUBOPERATIONS: 10,
                wc.NUMBER_OF_COMPLETED_SUBOPERATIONS: 2,
                wc.NUMBER_OF_FAILED_SUBOPERATIONS: 0,
                wc.NUMBER_OF_WARNING_SUBOPERATIONS: 1,
            },
        ),
        (
            "C-GET-RSP",
            wc.c_get_rsp(8, STUDY_ROOT_GET, 0xB000, None, 4, 1, 0, data_set=True),
            {
                wc.MESSAGE_ID_BEING_RESPONDED_TO: 8,
                wc.STATUS: 0xB000,
                wc.NUMBER_OF_COMPLETED_SUBOPERATIONS: 4,
                wc.NUMBER_OF_FAILED_SUBOPERATIONS: 1,
                wc.NUMBER_OF_WARNING_SUBOPERATIONS: 0,
            },
        ),
    ]
    for message, ours, values in cases:
        theirs = reference(message, values | _implied(message))
        assert ours == theirs, message
        decoded = decode_command(theirs)
        assert decoded[wc.COMMAND_FIELD] == FIELD[message]
        assert decoded.items() >= values.items(), message
        if message != "C-CANCEL-RQ":
            assert decoded[wc.AFFECTED_SOP_CLASS_UID] == SOP_CLASS[message.split("-")[1]]
    assert wc.is_data_set_present(decode_command(wc.c_find_rsp(5, STUDY_ROOT_FIND, 0xFF01)))
    assert not wc.is_data_set_present(decode_command(wc.c_find_rsp(5, STUDY_ROOT_FIND, 0)))
    assert wc.is_data_set_present(decode_command(wc.c_store_rq(1, CT, "1.2")))
    assert not wc.is_data_set_present(decode_command(wc.c_store_rsp(1, CT, "1.2", 0)))


def _implied(message: str) -> dict[int, Any]:
    """The SOP class and data set type pynetdicom needs for the fixed examples above."""
    service = message.split("-")[1]
    with_data = message in ("C-FIND-RQ", "C-GET-RQ", "C-MOVE-RQ", "C-GET-RSP", "C-FIND-RSP")
    implied: dict[int, Any] = {
        wc.COMMAND_DATA_SET_TYPE: wc.DATA_SET if with_data else wc.NO_DATA_SET
    }
    if service in SOP_CLASS:
        implied[wc.AFFECTED_SOP_CLASS_UID] = SOP_CLASS[service]
    return implied


# -- round trips ----------------------------------------------------------------------------------


def test_seeded_random_round_trip() -> None:
    rng = random.Random(20240607)
    for _ in range(2000):
        message = rng.choice(list(MESSAGES))
        fields = random_fields(message, rng)
        if wc.AFFECTED_SOP_CLASS_UID in fields and rng.random() < 0.3:  # any digits and dots
            length = rng.randint(1, 64)
            fields[wc.AFFECTED_SOP_CLASS_UID] = "".join(rng.choices("0123456789.", k=length))
        data = encode_command(fields)
        assert len(data) % 2 == 0
        assert struct.unpack_from("<I", data, 8)[0] == len(data) - 12
        assert decode_command(data) == without_none(fields)
        assert decode_command(memoryview(data)) == decode_command(bytearray(data))


def test_decode_strips_padding_and_keeps_unknown_elements_raw() -> None:
    body = [
        element(wc.AFFECTED_SOP_CLASS_UID, b"1.2 \x00"),
        element(wc.COMMAND_FIELD, struct.pack("<H", wc.C_STORE_RQ)),
        element(wc.STATUS, struct.pack("<H", 0xC000)),
        element(wc.OFFENDING_ELEMENT, struct.pack("<4H", 0x0010, 0x0020, 0x7FE0, 0x0010)),
        element(wc.ERROR_COMMENT, b"  two  spaces  "),
        element(wc.MOVE_ORIGINATOR_AE_TITLE, b" AE TITLE "),
        element(0x5170, b"1 "),  # Copies (IS, retired): not known here
    ]
    decoded = decode_command(command_set(*body))
    assert decoded == {
        wc.AFFECTED_SOP_CLASS_UID: "1.2",
        wc.COMMAND_FIELD: wc.C_STORE_RQ,
        wc.STATUS: 0xC000,
        wc.OFFENDING_ELEMENT: (0x00100020, 0x7FE00010),
        wc.ERROR_COMMENT: "  two  spaces",
        wc.MOVE_ORIGINATOR_AE_TITLE: "AE TITLE",
        0x5170: b"1 ",
    }


# -- malformed input ------------------------------------------------------------------------------


def element(tag: int, value: bytes, length: int | None = None) -> bytes:
    group, elem = divmod(tag, 0x10000)
    return struct.pack("<HHI", group, elem, len(value) if length is None else length) + value


def command_set(*elements: bytes, group_length: int | None = None) -> bytes:
    body = b"".join(elements)
    return element(0, struct.pack("<I", len(body) if group_length is None else group_length)) + body


def split(data: bytes) -> list[bytes]:
    """The elements of a well-formed command set after the group length, as raw bytes."""
    out, pos = [], 12
    while pos < len(data):
        length = struct.unpack_from("<I", data, pos + 4)[0]
        out.append(data[pos : pos + 8 + length])
        pos += 8 + length
    return out


SAMPLES = [
    wc.c_store_rq(1, CT, "1.2.826.0.1.3680043.2.1125.1", 0, "MOVESCU", 2),
    wc.c_store_rsp(1, CT, "1.2.3", 0xC000, "odd", offending_element=(0x00100010,)),
    wc.c_move_rsp(2, STUDY_ROOT_MOVE, 0xFF00, 3, 4, 5, 6),
    wc.c_echo_rq(7),
    wc.c_cancel_rq(7),
]


def raises_command_error(data: bytes | bytearray) -> str:
    with pytest.raises(CommandError) as info:
        decode_command(data)
    return str(info.value)


@pytest.mark.parametrize("data", SAMPLES)
def test_every_truncation_raises_command_error(data: bytes) -> None:
    for cut in range(len(data)):
        raises_command_error(data[:cut])


@pytest.mark.parametrize("data", SAMPLES)
def test_truncation_inside_an_element_raises_even_with_a_matching_group_length(data: bytes) -> None:
    boundaries, pos = set(), 12
    for raw in split(data):
        pos += len(raw)
        boundaries.add(pos)
    for cut in range(13, len(data)):
        if cut in boundaries:
            continue
        truncated = bytearray(data[:cut])
        struct.pack_into("<I", truncated, 8, cut - 12)
        message = raises_command_error(truncated)
        assert "truncated" in message or "past the end" in message


def test_length_field_larger_than_the_data() -> None:
    elements = split(SAMPLES[0])
    last = elements[-1]
    grown = last[:4] + struct.pack("<I", len(last) - 8 + 2) + last[8:]
    assert "past the end" in raises_command_error(command_set(*elements[:-1], grown))
    huge = last[:4] + b"\xff\xff\xff\xff" + last[8:]
    assert "past the end" in raises_command_error(command_set(*elements[:-1], huge))
    raises_command_error(command_set(*elements, group_length=len(b"".join(elements)) + 2))


def test_tags_out_of_order_or_repeated() -> None:
    elements = split(SAMPLES[1])
    for i in range(len(elements) - 1):
        swapped = [*elements[:i], elements[i + 1], elements[i], *elements[i + 2 :]]
        assert "out of order" in raises_command_error(command_set(*swapped))
    repeated = [*elements[:2], elements[1], *elements[2:]]
    assert "out of order" in raises_command_error(command_set(*repeated))
    group_length_again = [element(0, struct.pack("<I", 0)), *elements]
    assert "out of order" in raises_command_error(command_set(*group_length_again))


def test_elements_outside_group_0000() -> None:
    elements = split(SAMPLES[0])
    for tag in (0x00080016, 0x00020000, 0xFFFEE000, 0x00010000):
        extra = element(tag, b"1.2\x00")
        assert "outside group 0000" in raises_command_error(command_set(*elements, extra))
        assert "outside group 0000" in raises_command_error(command_set(extra, *elements))


def test_wrong_group_length() -> None:
    data = SAMPLES[2]
    body_length = len(data) - 12
    for wrong in (0, body_length - 2, body_length - 1, body_length + 1, body_length + 2, 2**32 - 1):
        bad = bytearray(data)
        struct.pack_into("<I", bad, 8, wrong)
        assert "CommandGroupLength" in raises_command_error(bad)
    raises_command_error(data[12:])  # no group length at all
    raises_command_error(element(0, b"\x00\x00") + data[12:])  # group length of 2 bytes
    raises_command_error(element(0, struct.pack("<Q", body_length)) + data[12:])


def test_integers_of_the_wrong_length_and_a_missing_command_field() -> None:
    field = struct.pack("<H", wc.C_ECHO_RQ)
    assert "length 4, not 2" in raises_command_error(command_set(element(0x100, field + field)))
    assert "length 1, not 2" in raises_command_error(command_set(element(0x100, b"\x30")))
    assert "length 0, not 2" in raises_command_error(command_set(element(0x100, b"")))
    bad_at = [element(0x100, field), element(wc.OFFENDING_ELEMENT, b"\x10\x00")]
    assert "AT element" in raises_command_error(command_set(*bad_at))
    assert "CommandField" in raises_command_error(command_set(element(0x110, b"\x01\x00")))
    assert "CommandField" in raises_command_error(command_set())
    assert decode_command(command_set(element(0x100, field))) == {wc.COMMAND_FIELD: 0x30}


def test_seeded_garbage_raises_command_error_only() -> None:
    rng = random.Random(1234)
    for _ in range(3000):
        garbage = rng.randbytes(rng.randint(0, 120))
        raises_command_error(garbage)
        with_header = command_set(garbage)  # plausible group length, garbage elements
        try:
            decoded = decode_command(with_header)
        except CommandError:
            continue
        assert wc.COMMAND_FIELD in decoded  # rare, but then it really is a command set


def test_seeded_bit_flips_never_raise_anything_but_command_error() -> None:
    rng = random.Random(99)
    decoded_ok = 0
    for _ in range(3000):
        data = bytearray(rng.choice(SAMPLES))
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        try:
            decoded = decode_command(data)
        except CommandError:
            continue
        decoded_ok += 1
        for value in decoded.values():
            assert isinstance(value, int | str | bytes | tuple)
    assert 0 < decoded_ok < 3000  # flips in values decode; flips in structure do not


# -- encoding errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {0x00080016: "1.2"},  # not group 0000
        {0x0005: 1},  # unknown tag in group 0000
        {"CommandField": 1},  # not an int tag
        {wc.COMMAND_FIELD: 1, "MessageID": 2},
        {1.5: 1},
        {wc.COMMAND_FIELD: "1"},
        {wc.COMMAND_FIELD: 1.0},
        {wc.COMMAND_FIELD: True},
        {wc.COMMAND_FIELD: -1},
        {wc.COMMAND_FIELD: 0x10000},
        {wc.AFFECTED_SOP_CLASS_UID: 1},
        {wc.AFFECTED_SOP_CLASS_UID: b"1.2"},
        {wc.ERROR_COMMENT: "snowman \u2603"},
        {wc.OFFENDING_ELEMENT: "00100010"},
        {wc.OFFENDING_ELEMENT: [0x100000000]},
        {wc.OFFENDING_ELEMENT: [0x00100010, None]},
    ],
)
def test_encode_rejects_unknown_tags_and_wrong_types(fields: dict[Any, Any]) -> None:
    with pytest.raises(CommandError):
        encode_command(fields)


def test_encode_leaves_out_none_and_recomputes_the_group_length() -> None:
    fields = {wc.COMMAND_GROUP_LENGTH: 999, wc.COMMAND_FIELD: 0x30, wc.ERROR_COMMENT: None}
    assert encode_command(fields) == command_set(element(0x100, b"\x30\x00"))
    assert decode_command(encode_command({wc.COMMAND_FIELD: 1, wc.OFFENDING_ELEMENT: 5})) == {
        wc.COMMAND_FIELD: 1,
        wc.OFFENDING_ELEMENT: (5,),
    }
