"""The association PDU codec against pynetdicom's, and against hostile bytes.

pynetdicom is the independent implementation: the A-ASSOCIATE-RQ/-AC it encodes from random
negotiations (up to 128 contexts, 20 transfer syntaxes each, UIDs of every length to 64, the
optional sub-items) must decode to the same values with ours, and ours must encode the same
bytes. Damaged PDUs (truncated, bit-flipped, random, oversized) raise AssociationPduError only.
"""

from __future__ import annotations

import logging
import random
import string
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pynetdicom.pdu import A_ASSOCIATE_AC as PynAC
from pynetdicom.pdu import A_ASSOCIATE_RJ as PynRJ
from pynetdicom.pdu import A_ASSOCIATE_RQ as PynRQ
from pynetdicom.pdu_items import (
    ApplicationContextItem,
    ImplementationClassUIDSubItem,
    ImplementationVersionNameSubItem,
    MaximumLengthSubItem,
    PresentationContextItemAC,
    PresentationContextItemRQ,
    SCP_SCU_RoleSelectionSubItem,
    UserInformationItem,
)
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    AsynchronousOperationsWindowNegotiation,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
    SCP_SCU_RoleSelectionNegotiation,
    UserIdentityNegotiation,
)
from pynetdicom.presentation import PresentationContext

from workstation.dimse.wire.assoc_pdu import (
    MAX_ITEMS,
    AssociateAC,
    AssociateRQ,
    AssociationPduError,
    PresentationContextAC,
    PresentationContextRQ,
    RoleSelection,
    encode_rj,
)

Pdu = AssociateRQ | AssociateAC


@pytest.fixture(autouse=True)
def _quiet_pynetdicom() -> Iterator[None]:
    """pynetdicom logs a warning for every made-up transfer syntax UID."""
    logger = logging.getLogger("pynetdicom")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


# Random negotiations


def _uid(rng: random.Random, length: int) -> str:
    """A valid UID of exactly ``length`` characters (digits 1-9, so no leading zeros)."""
    chars = [str(rng.randint(1, 9)) for _ in range(length)]
    if length > 2:
        chars[1] = "."
    for pos in range(3, length - 1):
        if chars[pos - 1] != "." and rng.random() < 0.25:
            chars[pos] = "."
    return "".join(chars)


def _uid_any(rng: random.Random) -> str:
    return _uid(rng, rng.choice([1, 2, 3, 17, 18, 63, 64, rng.randint(1, 64)]))


def _ae(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "_-. "
    title = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 16)))
    title = title.strip() or "A"
    return title


def _version(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_uppercase + "_0123") for _ in range(rng.randint(1, 16)))


def _async(rng: random.Random) -> tuple[Any, tuple[int, bytes]]:
    invoked, performed = rng.randint(0, 0xFFFF), rng.randint(0, 0xFFFF)
    item = AsynchronousOperationsWindowNegotiation()
    item.maximum_number_operations_invoked = invoked
    item.maximum_number_operations_performed = performed
    return item, (0x53, struct.pack(">HH", invoked, performed))


def _identity_rq(rng: random.Random) -> tuple[Any, tuple[int, bytes]]:
    kind = rng.choice([1, 2, 3, 4, 5])
    positive = rng.random() < 0.5
    primary = rng.randbytes(rng.randint(1, 300))
    secondary = rng.randbytes(rng.randint(1, 40)) if kind == 2 else b""
    item = UserIdentityNegotiation()
    item.user_identity_type = kind
    item.positive_response_requested = positive
    item.primary_field = primary
    item.secondary_field = secondary
    value = struct.pack(">BBH", kind, positive, len(primary)) + primary
    value += struct.pack(">H", len(secondary)) + secondary
    return item, (0x58, value)


def _identity_ac(rng: random.Random) -> tuple[Any, tuple[int, bytes]]:
    response = rng.randbytes(rng.randint(0, 200))
    item = UserIdentityNegotiation()
    item.server_response = response
    return item, (0x59, struct.pack(">H", len(response)) + response)


def _user_items(rng: random.Random, pdu: Pdu, identity: Callable[..., Any]) -> list[Any]:
    """pynetdicom's user information for ``pdu``, in pynetdicom's order; fills ``pdu``'s."""
    length = MaximumLengthNotification()
    length.maximum_length_received = pdu.max_length
    klass = ImplementationClassUIDNotification()
    klass.implementation_class_uid = pdu.implementation_class_uid
    items: list[Any] = [length, klass]
    if rng.random() < 0.6:
        pdu.implementation_version_name = _version(rng)
        version = ImplementationVersionNameNotification()
        version.implementation_version_name = pdu.implementation_version_name
        items.append(version)
    for _ in range(rng.choice([0, 0, 1, 3, 20])):
        scu, scp = rng.choice([(True, False), (False, True), (True, True)])
        role = RoleSelection(_uid_any(rng), scu, scp)
        pdu.roles.append(role)
        item = SCP_SCU_RoleSelectionNegotiation()
        item.sop_class_uid = role.sop_class_uid
        item.scu_role = scu
        item.scp_role = scp
        items.append(item)
    for make in (_async, identity):
        if rng.random() < 0.4:
            item, raw = make(rng)
            items.append(item)
            pdu.other_user_items.append(raw)
    return items


def _primitive(rng: random.Random, pdu: Pdu) -> A_ASSOCIATE:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = pdu.application_context
    primitive.calling_ae_title = pdu.calling_ae
    primitive.called_ae_title = pdu.called_ae
    return primitive


def random_rq(seed: int) -> tuple[AssociateRQ, bytes]:
    """A random A-ASSOCIATE-RQ and pynetdicom's encoding of it."""
    rng = random.Random(seed)
    rq = AssociateRQ(
        called_ae=_ae(rng),
        calling_ae=_ae(rng),
        max_length=rng.choice([0, 16384, 1 << 20, 0xFFFFFFFF, rng.randint(0, 0xFFFFFFFF)]),
        implementation_class_uid=_uid_any(rng),
    )
    count = rng.choice([1, 2, 5, 128, rng.randint(1, 128)])
    ids = rng.sample(range(1, 256, 2), count)
    for cid in ids:
        syntaxes: list[str] = []
        wanted = rng.choice([1, 20, rng.randint(1, 20)])
        while len(syntaxes) < wanted:
            ts = _uid_any(rng)
            if ts not in syntaxes:
                syntaxes.append(ts)
        rq.contexts.append(PresentationContextRQ(cid, _uid_any(rng), syntaxes))
    primitive = _primitive(rng, rq)
    contexts = []
    for cx in rq.contexts:
        context = PresentationContext()
        context.context_id = cx.context_id
        context.abstract_syntax = cx.abstract_syntax
        context.transfer_syntax = list(cx.transfer_syntaxes)
        contexts.append(context)
    primitive.presentation_context_definition_list = contexts
    primitive.user_information = _user_items(rng, rq, _identity_rq)
    pdu = PynRQ()
    pdu.from_primitive(primitive)
    return rq, pdu.encode()


def random_ac(seed: int) -> tuple[AssociateAC, bytes]:
    """A random A-ASSOCIATE-AC and pynetdicom's encoding of it."""
    rng = random.Random(seed)
    ac = AssociateAC(
        called_ae=_ae(rng),
        calling_ae=_ae(rng),
        max_length=rng.choice([0, 16384, 1 << 20, rng.randint(0, 0xFFFFFFFF)]),
        implementation_class_uid=_uid_any(rng),
    )
    count = rng.choice([1, 2, 5, 128, rng.randint(1, 128)])
    for cid in rng.sample(range(1, 256, 2), count):
        ac.contexts.append(PresentationContextAC(cid, rng.randint(0, 4), _uid_any(rng)))
    primitive = _primitive(rng, ac)
    primitive.result = 0
    primitive.result_source = 1
    results = []
    for cx in ac.contexts:
        context = PresentationContext()
        context.context_id = cx.context_id
        context.result = cx.result
        context.transfer_syntax = [cx.transfer_syntax]
        results.append(context)
    primitive.presentation_context_definition_results_list = results
    primitive.user_information = _user_items(rng, ac, _identity_ac)
    pdu = PynAC()
    pdu.from_primitive(primitive)
    return ac, pdu.encode()


def pynetdicom_view(pdu_bytes: bytes) -> Pdu:
    """What pynetdicom decodes from ``pdu_bytes``, in our dataclasses."""
    pdu: Any = PynRQ() if pdu_bytes[0] == 1 else PynAC()
    pdu.decode(pdu_bytes)
    out: Pdu
    if pdu_bytes[0] == 1:
        out = AssociateRQ(pdu.called_ae_title.strip(), pdu.calling_ae_title.strip())
    else:
        out = AssociateAC(pdu.reserved_aet.strip(), pdu.reserved_aec.strip())
    out.protocol_version = pdu.protocol_version
    for item in pdu.variable_items:
        if isinstance(item, ApplicationContextItem):
            out.application_context = str(item.application_context_name)
        elif isinstance(item, PresentationContextItemRQ):
            assert isinstance(out, AssociateRQ)
            syntaxes = [str(ts) for ts in item.transfer_syntax]
            out.contexts.append(
                PresentationContextRQ(
                    int(item.context_id or 0), str(item.abstract_syntax), syntaxes
                )
            )
        elif isinstance(item, PresentationContextItemAC):
            assert isinstance(out, AssociateAC)
            syntax = str(item.transfer_syntax or "")
            cid, result = int(item.context_id or 0), int(item.result or 0)
            out.contexts.append(PresentationContextAC(cid, result, syntax))
        elif isinstance(item, UserInformationItem):
            for sub in item.user_data:
                if isinstance(sub, MaximumLengthSubItem):
                    out.max_length = int(sub.maximum_length_received or 0)
                elif isinstance(sub, ImplementationClassUIDSubItem):
                    out.implementation_class_uid = str(sub.implementation_class_uid)
                elif isinstance(sub, ImplementationVersionNameSubItem):
                    out.implementation_version_name = str(sub.implementation_version_name)
                elif isinstance(sub, SCP_SCU_RoleSelectionSubItem):
                    role = RoleSelection(str(sub.sop_class_uid), bool(sub.scu), bool(sub.scp))
                    out.roles.append(role)
                else:
                    out.other_user_items.append((sub.item_type, sub.encode()[4:]))
    return out


SEEDS = range(40)


# Agreement with pynetdicom


@pytest.mark.parametrize("seed", SEEDS)
def test_rq_agrees_with_pynetdicom(seed: int) -> None:
    rq, theirs = random_rq(seed)
    assert pynetdicom_view(theirs) == rq  # the generator and pynetdicom agree
    assert AssociateRQ.decode(theirs[6:]) == rq
    assert rq.encode() == theirs
    assert AssociateRQ.decode(memoryview(theirs)[6:]) == rq


@pytest.mark.parametrize("seed", SEEDS)
def test_ac_agrees_with_pynetdicom(seed: int) -> None:
    ac, theirs = random_ac(seed)
    assert pynetdicom_view(theirs) == ac
    assert AssociateAC.decode(theirs[6:]) == ac
    assert ac.encode() == theirs


def test_the_generator_covers_what_it_claims() -> None:
    rqs = [random_rq(seed)[0] for seed in SEEDS]
    acs = [random_ac(seed)[0] for seed in SEEDS]
    uids = [
        ts for rq in rqs for cx in rq.contexts for ts in [cx.abstract_syntax, *cx.transfer_syntaxes]
    ]
    assert {len(u) for u in uids} >= {1, 2, 3, 17, 18, 63, 64}
    assert max(len(rq.contexts) for rq in rqs) == 128
    assert max(len(cx.transfer_syntaxes) for rq in rqs for cx in rq.contexts) == 20
    assert {len(rq.calling_ae) for rq in rqs} >= {1, 16}
    assert {cx.result for ac in acs for cx in ac.contexts} == {0, 1, 2, 3, 4}
    for pdus in (rqs, acs):
        assert any(p.roles for p in pdus) and any(not p.roles for p in pdus)
        assert any(p.implementation_version_name for p in pdus)
        assert any(not p.implementation_version_name for p in pdus)
        kinds = {kind for p in pdus for kind, _ in p.other_user_items}
        assert 0x53 in kinds and kinds & {0x58, 0x59}
        assert any(not p.other_user_items for p in pdus)


def test_what_our_workstation_sends_matches_pynetdicom() -> None:
    """The exact negotiation scu.open_association and negotiation.accept build today."""
    from workstation.implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

    ct, mr, verification = (
        "1.2.840.10008.5.1.4.1.1.2",
        "1.2.840.10008.5.1.4.1.1.4",
        "1.2.840.10008.1.1",
    )
    syntaxes = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
    rq = AssociateRQ(
        "ORTHANC",
        "WORKSTATION",
        contexts=[
            PresentationContextRQ(1, verification, syntaxes),
            PresentationContextRQ(3, ct, syntaxes),
            PresentationContextRQ(5, mr, syntaxes),
        ],
        max_length=1 << 20,
        implementation_class_uid=IMPLEMENTATION_CLASS_UID,
        implementation_version_name=IMPLEMENTATION_VERSION_NAME,
        roles=[RoleSelection(ct, False, True), RoleSelection(mr, False, True)],
    )
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "WORKSTATION"
    primitive.called_ae_title = "ORTHANC"
    contexts = []
    for cx in rq.contexts:
        context = PresentationContext()
        context.context_id = cx.context_id
        context.abstract_syntax = cx.abstract_syntax
        context.transfer_syntax = list(cx.transfer_syntaxes)
        contexts.append(context)
    primitive.presentation_context_definition_list = contexts
    length = MaximumLengthNotification()
    length.maximum_length_received = 1 << 20
    klass = ImplementationClassUIDNotification()
    klass.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    user: list[Any] = [length, klass, version]
    for uid in (ct, mr):
        role = SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = uid
        role.scu_role = False
        role.scp_role = True
        user.append(role)
    primitive.user_information = user
    pdu = PynRQ()
    pdu.from_primitive(primitive)
    assert rq.encode() == pdu.encode()


@pytest.mark.parametrize("seed", range(8))
def test_decode_encode_round_trips(seed: int) -> None:
    rq, _ = random_rq(1000 + seed)
    ac, _ = random_ac(1000 + seed)
    assert AssociateRQ.decode(rq.encode()[6:]) == rq
    assert AssociateAC.decode(ac.encode()[6:]) == ac
    # What pynetdicom cannot build: roles both refused, protocol versions, unknown sub-items.
    ac.roles.append(RoleSelection("1.2.3", False, False))
    ac.other_user_items.append((0x7F, b"\x00\x01future"))
    ac.protocol_version = 3
    assert AssociateAC.decode(ac.encode()[6:]) == ac
    rq.other_user_items.insert(0, (0x57, bytes(range(40))))
    assert AssociateRQ.decode(rq.encode()[6:]) == rq


@pytest.mark.parametrize(
    ("result", "source", "reason"), [(1, 1, 1), (1, 1, 3), (2, 3, 2), (1, 2, 2)]
)
def test_encode_rj_matches_pynetdicom(result: int, source: int, reason: int) -> None:
    rj = PynRJ()
    rj.result, rj.source, rj.reason_diagnostic = result, source, reason
    assert encode_rj(result, source, reason) == rj.encode()


# Choices where the standard leaves room


def _body(pdu: Pdu) -> bytes:
    return pdu.encode()[6:]


def _sample_rq() -> AssociateRQ:
    return AssociateRQ(
        "CALLED",
        "CALLING",
        contexts=[
            PresentationContextRQ(1, "1.2.840.10008.1.1", ["1.2.840.10008.1.2"]),
            PresentationContextRQ(3, "1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1", "1.2"]),
        ],
        max_length=16384,
        implementation_class_uid="1.2.3.4",
        implementation_version_name="X_1",
        roles=[RoleSelection("1.2.840.10008.5.1.4.1.1.2", False, True)],
        other_user_items=[(0x53, b"\x00\x01\x00\x01"), (0x58, b"\x01\x00\x00\x03bob\x00\x00")],
    )


def _sample_ac() -> AssociateAC:
    return AssociateAC(
        "CALLED",
        "CALLING",
        contexts=[
            PresentationContextAC(1, 0, "1.2.840.10008.1.2"),
            PresentationContextAC(3, 3, "1.2.840.10008.1.2.1"),
        ],
        max_length=0,
        implementation_class_uid="1.2.3.4.5",
        roles=[RoleSelection("1.2.840.10008.5.1.4.1.1.2", False, True)],
        other_user_items=[(0x59, b"\x00\x02ok")],
    )


def _item(kind: int, value: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(value)) + value


def _split(body: bytes) -> tuple[bytes, list[bytes]]:
    """The fixed part of a PDU body and its items, each with its header."""
    items, pos = [], 68
    while pos < len(body):
        length = struct.unpack_from(">H", body, pos + 2)[0]
        items.append(body[pos : pos + 4 + length])
        pos += 4 + length
    return body[:68], items


def test_unrecognised_items_are_skipped_as_ps3_8_9_3_1_says() -> None:
    for pdu, cls in ((_sample_rq(), AssociateRQ), (_sample_ac(), AssociateAC)):
        fixed, items = _split(_body(pdu))
        wrong_kind = 0x21 if cls is AssociateRQ else 0x20
        extra = [_item(0x60, b"whatever"), _item(wrong_kind, b"\x01\x00\x00\x00"), _item(0xFF, b"")]
        assert cls.decode(fixed + extra[0] + b"".join(items) + b"".join(extra[1:])) == pdu


def test_unrecognised_presentation_context_sub_items_are_skipped() -> None:
    rq = _sample_rq()
    fixed, items = _split(_body(rq))
    context = items[1]
    padded = _item(0x20, context[4:8] + _item(0x35, b"x") + context[8:] + _item(0x41, b""))
    assert AssociateRQ.decode(fixed + items[0] + padded + b"".join(items[2:])) == rq


def test_unrecognised_user_sub_items_are_kept_in_order() -> None:
    rq = _sample_rq()
    rq.other_user_items.append((0x99, b"new in 2031"))
    assert AssociateRQ.decode(_body(rq)) == rq


def test_uids_are_not_padded_and_padding_is_stripped() -> None:
    rq = AssociateRQ("A", "B", contexts=[PresentationContextRQ(1, "1.2.3", ["1.2.840.10008.1.2"])])
    fixed, items = _split(_body(rq))
    assert items[1] == _item(
        0x20, b"\x01\x00\x00\x00" + _item(0x30, b"1.2.3") + _item(0x40, b"1.2.840.10008.1.2")
    )
    # A peer padding UIDs to even lengths (PS3.5 style) or with spaces is understood.
    padded = _item(
        0x20, b"\x01\x00\x00\x00" + _item(0x30, b"1.2.3\x00") + _item(0x40, b"1.2.840.10008.1.2 ")
    )
    assert AssociateRQ.decode(fixed + items[0] + padded + items[2]) == rq


def test_ae_titles_are_space_padded_and_stripped_and_never_raise() -> None:
    body = bytearray(_body(_sample_rq()))
    assert body[4:36] == b"CALLED          CALLING         "
    body[4:20] = b"  CAL\xffED\x00\x00      "
    body[20:36] = b"\x80" * 16
    rq = AssociateRQ.decode(bytes(body))
    assert rq.called_ae == "CAL\ufffdED"
    assert rq.calling_ae == "\ufffd" * 16
    # Echoed in an AC, the replacement characters go out as '?'.
    ac = _sample_ac()
    ac.called_ae, ac.calling_ae = rq.called_ae, rq.calling_ae
    assert ac.encode()[10:42] == b"CAL?ED          " + b"?" * 16


def test_rejected_contexts_transfer_syntax_is_not_tested() -> None:
    ac = _sample_ac()
    fixed, items = _split(_body(ac))
    garbage = _item(0x21, b"\x03\x00\x03\x00" + b"\x40\x00\xff\xff\xfe")
    decoded = AssociateAC.decode(fixed + items[0] + items[1] + garbage + items[3])
    assert decoded.contexts[1] == PresentationContextAC(3, 3, "")
    accepted = _item(0x21, b"\x03\x00\x00\x00" + b"\x40\x00\xff\xff\xfe")
    with pytest.raises(AssociationPduError):
        AssociateAC.decode(fixed + items[0] + items[1] + accepted + items[3])


def _replace_item(pdu: Pdu, index: int, item: bytes | None) -> bytes:
    fixed, items = _split(_body(pdu))
    if item is None:
        del items[index]
    else:
        items[index] = item
    return fixed + b"".join(items)


def _malformed_requests() -> dict[str, bytes]:
    fixed, (app, ctx1, _, user) = _split(_body(_sample_rq()))

    def context(*subs: bytes, cid: int = 1) -> bytes:
        return _item(0x20, bytes([cid, 0, 0, 0]) + b"".join(subs))

    def rq_with(*subs: bytes) -> bytes:
        return fixed + app + ctx1 + _item(0x50, b"".join(subs))

    abstract, syntax = _item(0x30, b"1.2"), _item(0x40, b"1.2")
    return {
        "control (valid)": fixed + app + ctx1 + user,
        "no application context": fixed + ctx1 + user,
        "no presentation context": fixed + app + user,
        "no user information": fixed + app + ctx1,
        "two application contexts": fixed + app + app + ctx1 + user,
        "two user informations": fixed + app + ctx1 + user + user,
        "duplicate context id": fixed + app + ctx1 + ctx1 + user,
        "even context id": fixed + app + context(abstract, syntax, cid=2) + user,
        "context id 0": fixed + app + context(abstract, syntax, cid=0) + user,
        "no abstract syntax": fixed + app + context(syntax) + user,
        "no transfer syntax": fixed + app + context(abstract) + user,
        "two abstract syntaxes": fixed + app + context(abstract, abstract, syntax) + user,
        "non-ASCII UID": fixed + _item(0x10, "1.2.é".encode()) + ctx1 + user,
        "UID over 64": fixed + _item(0x10, b"1" * 65) + ctx1 + user,
        "short context item": fixed + app + _item(0x20, b"\x01\x00\x00") + user,
        "stray bytes after the items": fixed + app + ctx1 + user + b"\x10\x00",
        "short fixed part": fixed[:67],
        "maximum length of 3 bytes": rq_with(_item(0x51, b"\x00\x00\x01")),
        "two maximum lengths": rq_with(_item(0x51, bytes(4)) * 2),
        "two class UIDs": rq_with(_item(0x52, b"1.2"), _item(0x52, b"1.2")),
        "two version names": rq_with(_item(0x55, b"A"), _item(0x55, b"A")),
        "role with a short UID length": rq_with(_item(0x54, b"\x00\x02abc\x00\x01")),
        "role with a long UID length": rq_with(_item(0x54, b"\x00\x09abc\x00\x01")),
        "role of 3 bytes": rq_with(_item(0x54, b"\x00\x00\x00")),
    }


@pytest.mark.parametrize("name", list(_malformed_requests()))
def test_malformed_requests_are_refused(name: str) -> None:
    data = _malformed_requests()[name]
    if name.startswith("control"):
        AssociateRQ.decode(data)
        return
    with pytest.raises(AssociationPduError):
        AssociateRQ.decode(data)


def test_malformed_accepts_are_refused() -> None:
    ac = _sample_ac()
    for item in (
        _item(0x21, b"\x01\x00\x05\x00" + _item(0x40, b"1.2")),  # result 5
        _item(0x21, b"\x01\x00\x00\x00"),  # accepted without a transfer syntax
        _item(0x21, b"\x01\x00\x00\x00" + _item(0x40, b"1.2") * 2),  # accepted with two
        _item(0x21, b"\x01\x00\x00\x00" + _item(0x40, b"")),  # accepted with an empty one
    ):
        with pytest.raises(AssociationPduError):
            AssociateAC.decode(_replace_item(ac, 1, item))


def test_absent_optional_sub_items_decode_as_defaults() -> None:
    rq = _sample_rq()
    assert AssociateRQ.decode(_replace_item(rq, 3, _item(0x50, b""))) == AssociateRQ(
        "CALLED", "CALLING", contexts=rq.contexts
    )


@pytest.mark.parametrize(
    "change",
    [
        {"called_ae": "X" * 17},
        {"application_context": "1." + "2" * 63},
        {"application_context": "1.2.é"},
        {"implementation_class_uid": "1" * 65},
        {"implementation_version_name": "V" * 17},
        {"max_length": -1},
        {"max_length": 1 << 32},
        {"protocol_version": 1 << 16},
        {"contexts": []},
        {"other_user_items": [(256, b"")]},
        {"other_user_items": [(0x51, bytes(4))]},
        {"other_user_items": [(0x53, bytes(0x10000))]},
        {"roles": [RoleSelection("1.2.é", True, False)]},
    ],
)
def test_encode_refuses_what_cannot_go_on_the_wire(change: dict[str, Any]) -> None:
    rq = _sample_rq()
    for key, value in change.items():
        setattr(rq, key, value)
    with pytest.raises(AssociationPduError):
        rq.encode()


@pytest.mark.parametrize(
    "context",
    [
        PresentationContextRQ(2, "1.2", ["1.2"]),
        PresentationContextRQ(0, "1.2", ["1.2"]),
        PresentationContextRQ(257, "1.2", ["1.2"]),
        PresentationContextRQ(1, "1.2", ["1.2"]),  # a duplicate of the sample's first
        PresentationContextRQ(5, "1.2", []),
        PresentationContextRQ(5, "1.2", ["1.2"] * 0x3000),  # item over 65535 bytes
    ],
)
def test_encode_refuses_bad_contexts(context: PresentationContextRQ) -> None:
    rq = _sample_rq()
    rq.contexts.append(context)
    with pytest.raises(AssociationPduError):
        rq.encode()


def test_encode_refuses_bad_accept_results() -> None:
    for context in (PresentationContextAC(5, 5, "1.2"), PresentationContextAC(5, 0, "")):
        ac = _sample_ac()
        ac.contexts.append(context)
        with pytest.raises(AssociationPduError):
            ac.encode()
    with pytest.raises(AssociationPduError):
        encode_rj(1, 1, 256)


# Hostile input


Codec = type[AssociateRQ] | type[AssociateAC]


def _decode_or_refuse(cls: Codec, data: bytes) -> Pdu | None:
    try:
        return cls.decode(data)
    except AssociationPduError:
        return None


def test_every_truncation_raises_association_pdu_error() -> None:
    bodies: list[tuple[Codec, bytes]] = [
        (AssociateRQ, _body(_sample_rq())),
        (AssociateAC, _body(_sample_ac())),
        (AssociateRQ, random_rq(7)[1][6:]),
        (AssociateAC, random_ac(7)[1][6:]),
    ]
    count = 0
    for cls, body in bodies:
        for end in range(len(body)):
            with pytest.raises(AssociationPduError):
                cls.decode(body[:end])
            count += 1
    assert count > 2000


def test_bit_flips_and_byte_changes_never_raise_anything_else() -> None:
    rng = random.Random(20240611)
    bodies: list[tuple[Codec, bytes]] = [
        (AssociateRQ, _body(_sample_rq())),
        (AssociateAC, _body(_sample_ac())),
        (AssociateRQ, random_rq(3)[1][6:]),
        (AssociateAC, random_ac(4)[1][6:]),
    ]
    decoded = refused = 0
    started = time.perf_counter()
    for trial in range(4000):
        cls, body = bodies[trial % len(bodies)]
        data = bytearray(body)
        for _ in range(rng.choice([1, 1, 2, 4, 16])):
            pos = rng.randrange(len(data))
            if rng.random() < 0.5:
                data[pos] ^= 1 << rng.randrange(8)
            else:
                data[pos] = rng.choice(
                    [0, 0xFF, 0x10, 0x20, 0x21, 0x30, 0x40, 0x50, 0x54, rng.randrange(256)]
                )
        if _decode_or_refuse(cls, bytes(data)) is None:
            refused += 1
        else:
            decoded += 1
    assert decoded and refused
    assert time.perf_counter() - started < 60


def test_random_garbage_never_raises_anything_else() -> None:
    rng = random.Random(7)
    started = time.perf_counter()
    for trial in range(3000):
        cls: Codec = AssociateRQ if trial % 2 else AssociateAC
        if trial % 3 == 0:
            data = rng.randbytes(rng.randint(0, 400))
        else:
            # A plausible fixed part, then random items of random types and lengths.
            parts = [b"\x00\x01\x00\x00" + b"A" * 32 + bytes(32)]
            for _ in range(rng.randint(0, 12)):
                kind = rng.choice(
                    [0x10, 0x20, 0x21, 0x30, 0x40, 0x50, 0x51, 0x54, 0x55, rng.randrange(256)]
                )
                value = rng.randbytes(rng.randint(0, 40))
                length = len(value) if rng.random() < 0.8 else rng.randrange(0x10000)
                parts.append(struct.pack(">BxH", kind, length) + value)
            data = b"".join(parts)
        _decode_or_refuse(cls, data)
    assert time.perf_counter() - started < 60


@pytest.mark.parametrize("where", ["top", "context", "user"])
def test_an_item_length_of_65535_past_the_end_is_refused(where: str) -> None:
    rq = _sample_rq()
    fixed, items = _split(_body(rq))
    liar = struct.pack(">BxH", 0x40, 0xFFFF) + b"1.2"
    if where == "top":
        data = fixed + b"".join(items) + struct.pack(">BxH", 0x50, 0xFFFF) + b"\x51"
    elif where == "context":
        data = (
            fixed
            + items[0]
            + _item(0x20, b"\x01\x00\x00\x00" + _item(0x30, b"1") + liar)
            + items[3]
        )
    else:
        data = fixed + items[0] + items[1] + _item(0x50, struct.pack(">BxH", 0x58, 0xFFFF) + b"xx")
    with pytest.raises(AssociationPduError, match="65535"):
        AssociateRQ.decode(data)


@pytest.mark.parametrize("where", ["top", "context", "user"])
def test_ten_thousand_tiny_items_are_refused_quickly(where: str) -> None:
    rq = _sample_rq()
    fixed, items = _split(_body(rq))
    tiny = _item(0x7E, b"") * 10_000
    if where == "top":
        data = fixed + b"".join(items) + tiny
    elif where == "context":
        data = fixed + items[0] + _item(0x20, b"\x01\x00\x00\x00" + tiny) + items[3]
    else:
        data = fixed + b"".join(items[:3]) + _item(0x50, tiny)
    started = time.perf_counter()
    with pytest.raises(AssociationPduError, match=str(MAX_ITEMS)):
        AssociateRQ.decode(data)
    assert time.perf_counter() - started < 0.5


def test_up_to_the_item_limit_unknown_items_are_accepted() -> None:
    rq = _sample_rq()
    fixed, items = _split(_body(rq))
    spare = MAX_ITEMS - len(items)
    assert AssociateRQ.decode(fixed + b"".join(items) + _item(0x7E, b"") * spare) == rq
    with pytest.raises(AssociationPduError):
        AssociateRQ.decode(fixed + b"".join(items) + _item(0x7E, b"") * (spare + 1))


# Cost


def _best_of(runs: int, call: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(runs):
            call()
        best = min(best, (time.perf_counter() - started) / runs)
    return best * 1e6


def test_timings_against_pynetdicom(capsys: pytest.CaptureFixture[str]) -> None:
    seed = next(s for s in range(1000) if len(random_rq(s)[0].contexts) == 128)
    rq, rq_bytes = random_rq(seed)
    rq.contexts = rq.contexts[:120]
    rq_bytes = rq.encode()
    ac, _ = random_ac(seed)
    ac.other_user_items = []
    ac_primitive = PynAC()
    ac_primitive.decode(ac.encode())
    ac_pdu = ac_primitive.to_primitive()

    def pynetdicom_decode() -> None:
        pdu = PynRQ()
        pdu.decode(rq_bytes)
        pdu.to_primitive()

    def pynetdicom_encode() -> None:
        pdu = PynAC()
        pdu.from_primitive(ac_pdu)
        pdu.encode()

    ours_decode = _best_of(20, lambda: AssociateRQ.decode(rq_bytes[6:]))
    theirs_decode = _best_of(2, pynetdicom_decode)
    ours_encode = _best_of(20, ac.encode)
    theirs_encode = _best_of(2, pynetdicom_encode)
    with capsys.disabled():
        print(
            f"\n  decode RQ, 120 contexts, {sum(len(c.transfer_syntaxes) for c in rq.contexts)} "
            f"transfer syntaxes, {len(rq_bytes)} bytes: ours {ours_decode:.0f} us, "
            f"pynetdicom {theirs_decode:.0f} us"
            f"\n  encode AC, {len(ac.contexts)} contexts: ours {ours_encode:.0f} us, "
            f"pynetdicom {theirs_encode:.0f} us"
        )
    assert ours_decode * 5 < theirs_decode
    assert ours_encode * 5 < theirs_encode


def test_importing_the_codec_loads_neither_pynetdicom_nor_pydicom() -> None:
    code = (
        "import sys, workstation.dimse.wire.assoc_pdu\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'pynetdicom', 'pydicom'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
