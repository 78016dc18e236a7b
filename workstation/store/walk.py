"""A validating walk over the bytes of a DICOM data set, without decoding any value.

:func:`walk_dataset` visits every element of an encoded data set to its very end - into every
sequence and item, over the fragments of encapsulated pixel data - and checks that the
structure holds together: every element header is whole, every defined length stays inside
the data and inside its enclosing item or sequence, every undefined length is closed by its
delimiter, items appear only inside sequences, and the top-level tags ascend. Values are never
converted and are skipped by their length, so pixel data costs one element header whatever its
size (on a memory-mapped file its pages are never touched). It returns the raw bytes of the
top-level elements the caller asks for.

:func:`read_part10` checks the preamble and ``DICM`` and walks the File Meta Information;
:func:`walk_part10` does that and walks the data set in the encoding its transfer syntax
names, inflating a deflated data set first.

What a walk cannot see: a data set cut exactly between two top-level elements is a valid,
shorter data set (the data has no overall length to compare with); the caller must check that
the attributes it needs are present. Nor does it check values (a UID made of letters, a date
that is no date) or the order of tags inside items.

Encodings (PS3.5 7.1, A.1-A.5):

- Implicit VR Little Endian: an undefined length marks a sequence, except on (7FE0,0010) where
  it marks encapsulated pixel data. A defined length is walked into as a sequence when the
  tag's dictionary VR is SQ; other elements (private ones included) are skipped by length.
- Explicit VR, little or big endian: OB OD OF OL OV OW SQ SV UC UN UR UT UV have a 4-byte
  length after 2 reserved bytes, the other VRs a 2-byte length. An unknown VR is refused (its
  length field cannot be known), which also refuses data that is implicit VR in fact. Only SQ,
  UN, and OB/OW on (7FE0,0010) may have an undefined length; UN of undefined length is a
  sequence encoded in Implicit VR Little Endian whatever the outer encoding (PS3.5 6.2.2).
- Items and delimiters (group FFFE) have no VR, a 4-byte length, and the data set's byte
  order. Delimiters should have a length of 0; another length is ignored, as pydicom does.
  Items of encapsulated pixel data must have a defined length.
- Odd lengths are accepted (the standard wants even ones, some senders do not care): the
  next element starts where the length says.
- Transfer syntaxes (:func:`dataset_encoding`): Implicit VR Little Endian, Explicit VR Big
  Endian, the deflated ones (inflated, then Explicit VR Little Endian), and every other UID -
  the encapsulated syntaxes and UIDs unknown here alike - Explicit VR Little Endian, which is
  what PS3.5 requires of any syntax that is not one of the former.
- The File Meta Information is Explicit VR Little Endian, always; an implicit VR one is
  refused.
"""

from __future__ import annotations

import mmap
import zlib
from struct import Struct
from typing import TypeAlias

from pydicom.datadict import DicomDictionary

__all__ = [
    "DEFLATED_SYNTAXES",
    "EXPLICIT_VR_BIG_ENDIAN",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "MAX_DEPTH",
    "MAX_INFLATED_SIZE",
    "MalformedDataset",
    "dataset_encoding",
    "inflate",
    "read_part10",
    "walk_dataset",
    "walk_part10",
]

Buffer: TypeAlias = bytes | bytearray | memoryview | mmap.mmap


class MalformedDataset(ValueError):
    """The bytes are not a well-formed data set; the message says what and at which byte."""


IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
#: Deflated Explicit VR Little Endian and the two JPIP Referenced Deflate syntaxes (PS3.5 A.5,
#: A.6): the data set after the File Meta Information is a raw deflate stream.
DEFLATED_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205"}
)

#: Deepest nesting of sequences accepted; deeper data is refused rather than recursed into.
MAX_DEPTH = 128
#: Largest inflated data set accepted from a deflated transfer syntax (a deflate bomb guard).
MAX_INFLATED_SIZE = 1 << 30

_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_META_TRANSFER_SYNTAX = 0x00020010

#: VRs with 2 reserved bytes and a 4-byte length in explicit VR; the others have 2 bytes.
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_SHORT_VRS = frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT"}
    | {b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
_PIXEL_VRS = frozenset({b"OB", b"OW"})
#: Standard tags whose VR is SQ: in implicit VR, a defined length on one of these is a sequence.
_SQ_TAGS = frozenset(tag for tag, entry in DicomDictionary.items() if entry[0] == "SQ")

_U16_LE = Struct("<H")


class _Codec:
    """The byte layout of one encoding: structs for element and item headers."""

    __slots__ = ("explicit", "head", "name", "tag_length", "u32")

    def __init__(self, name: str, *, implicit: bool, little: bool) -> None:
        order = "<" if little else ">"
        self.name = name
        self.explicit = not implicit
        self.head = Struct(order + "HH2sH")  # tag, VR, 2-byte length (explicit VR)
        self.tag_length = Struct(order + "HHI")  # tag, 4-byte length (implicit VR, items)
        self.u32 = Struct(order + "I")


_IMPLICIT_LE = _Codec("implicit VR little endian", implicit=True, little=True)
_EXPLICIT_LE = _Codec("explicit VR little endian", implicit=False, little=True)
_EXPLICIT_BE = _Codec("explicit VR big endian", implicit=False, little=False)


def _t(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


#: The container a walk must stay inside: ``None`` for the whole data, else
#: ``("sequence", its position, its tag)`` or ``("item", its position, its sequence's tag)``;
#: text is only made of it for an error message.
Scope: TypeAlias = tuple[str, int, int] | None


def _scope(scope: Scope) -> str:
    assert scope is not None
    kind, pos, tag = scope
    if kind == "item":
        return f"item at byte {pos} of sequence {_t(tag)}"
    return f"sequence {_t(tag)} at byte {pos}"


def _beyond(what: str, pos: int, start: int, need: int, end: int, scope: Scope) -> MalformedDataset:
    """``what`` at ``pos``, its value at ``start``, claims ``need`` bytes; its container ends
    at ``end``."""
    if scope is None:
        return MalformedDataset(
            f"the data set is truncated: {what} at byte {pos} claims {need} bytes, "
            f"{max(end - start, 0)} remain"
        )
    return MalformedDataset(
        f"{what} at byte {pos} claims {need} bytes, past the end (byte {end}) of its enclosing "
        f"{_scope(scope)}"
    )


def _short_header(what: str, pos: int, need: int, end: int, scope: Scope) -> MalformedDataset:
    if scope is None:
        return MalformedDataset(
            f"the data set is truncated: {what} at byte {pos} needs {need} bytes, "
            f"{end - pos} remain"
        )
    return MalformedDataset(
        f"{what} at byte {pos} needs {need} bytes, past the end (byte {end}) of its enclosing "
        f"{_scope(scope)}"
    )


def _unclosed(subject: str, delimiter: str, scope: Scope) -> MalformedDataset:
    if scope is None:
        return MalformedDataset(
            f"the data set is truncated: {subject} has an undefined length and is not closed "
            f"by {delimiter} before the end of the data"
        )
    return MalformedDataset(
        f"{subject} has an undefined length and is not closed by {delimiter} before the end "
        f"of its enclosing {_scope(scope)}"
    )


def _element(
    buf: Buffer, pos: int, end: int, c: _Codec, depth: int, scope: Scope
) -> tuple[int, int, int, int]:
    """Walk the element at ``pos``: ``(tag, value start, value end, next position)``.

    An item delimiter is returned as such (its container decides); any other group FFFE tag
    is refused. ``scope`` is the container that ends at ``end``; ``depth`` counts the
    sequences around the element (0: top level).
    """
    if end - pos < 8:
        if depth == 0:
            raise MalformedDataset(
                f"the data set is truncated or has trailing garbage: the {end - pos} byte(s) "
                f"at byte {pos} are too few for an element header (8 bytes)"
            )
        raise _short_header("an element header", pos, 8, end, scope)
    if c.explicit:
        group, elem, vr, length = c.head.unpack_from(buf, pos)
        tag = group << 16 | elem
        if vr in _SHORT_VRS and group != 0xFFFE:
            start = pos + 8
            stop = start + length
            if stop > end:
                raise _beyond(f"element {_t(tag)}", pos, start, length, end, scope)
            return tag, start, stop, stop
        if group == 0xFFFE:
            return _delimiter(tag, pos)
        if vr not in _LONG_VRS:
            raise MalformedDataset(
                f"element {_t(tag)} at byte {pos} has an unknown VR {vr!r}: the data set is not "
                f"{c.name} as its transfer syntax says, or is damaged"
            )
        if end - pos < 12:
            raise _short_header(f"the header of element {_t(tag)}", pos, 12, end, scope)
        (length,) = c.u32.unpack_from(buf, pos + 8)
        start = pos + 12
        if length == _UNDEFINED:
            if vr == b"SQ":
                after = _sequence(buf, start, end, c, depth, tag, pos, _UNDEFINED, scope)
            elif vr == b"UN" and tag != _PIXEL_DATA:  # PS3.5 6.2.2: implicit VR LE inside
                after = _sequence(buf, start, end, _IMPLICIT_LE, depth, tag, pos, _UNDEFINED, scope)
            elif tag == _PIXEL_DATA and (vr in _PIXEL_VRS or vr == b"UN"):
                fragments = _IMPLICIT_LE if vr == b"UN" else c
                after = _fragments(buf, start, end, fragments, pos, scope)
            else:
                raise MalformedDataset(
                    f"element {_t(tag)} at byte {pos} has an undefined length, which VR "
                    f"{vr.decode()} cannot have"
                )
            return tag, start, after - 8, after
        stop = start + length
        if stop > end:
            raise _beyond(f"element {_t(tag)}", pos, start, length, end, scope)
        if vr == b"SQ":
            _sequence(buf, start, stop, c, depth, tag, pos, length, scope)
        return tag, start, stop, stop
    group, elem, length = c.tag_length.unpack_from(buf, pos)
    tag = group << 16 | elem
    start = pos + 8
    if group == 0xFFFE:
        return _delimiter(tag, pos)
    if length == _UNDEFINED:
        if tag == _PIXEL_DATA:
            after = _fragments(buf, start, end, c, pos, scope)
        else:
            after = _sequence(buf, start, end, c, depth, tag, pos, _UNDEFINED, scope)
        return tag, start, after - 8, after
    stop = start + length
    if stop > end:
        raise _beyond(f"element {_t(tag)}", pos, start, length, end, scope)
    if tag in _SQ_TAGS:
        _sequence(buf, start, stop, c, depth, tag, pos, length, scope)
    return tag, start, stop, stop


def _delimiter(tag: int, pos: int) -> tuple[int, int, int, int]:
    if tag == _ITEM_END:
        return tag, pos + 8, pos + 8, pos + 8
    raise MalformedDataset(f"{_describe(tag)} at byte {pos} where a data element was expected")


def _describe(tag: int) -> str:
    if tag == _ITEM:
        return "an item tag (FFFE,E000)"
    if tag == _ITEM_END:
        return "an item delimiter (FFFE,E00D)"
    if tag == _SEQ_END:
        return "a sequence delimiter (FFFE,E0DD)"
    if tag >> 16 == 0xFFFE:
        return f"the tag {_t(tag)} (group FFFE holds only items and delimiters)"
    return f"element {_t(tag)}"


def _sequence(
    buf: Buffer,
    pos: int,
    end: int,
    c: _Codec,
    depth: int,
    seq_tag: int,
    seq_pos: int,
    length: int,
    scope: Scope,
) -> int:
    """Walk the items of a sequence whose value starts at ``pos``; the position after it.

    For a defined ``length`` the value is ``pos:pos + length`` (already checked against the
    container) and the position returned is its end; for an undefined one the sequence runs
    to its delimiter, which must come before ``end``.
    """
    depth += 1
    if depth > MAX_DEPTH:
        raise MalformedDataset(
            f"sequence {_t(seq_tag)} at byte {seq_pos} is nested more than {MAX_DEPTH} deep"
        )
    undefined = length == _UNDEFINED
    if not undefined:
        end = pos + length
        scope = ("sequence", seq_pos, seq_tag)
    unpack = c.tag_length.unpack_from
    while pos < end:
        if end - pos < 8:
            raise _short_header(f"an item header of sequence {_t(seq_tag)}", pos, 8, end, scope)
        group, elem, item_length = unpack(buf, pos)
        tag = group << 16 | elem
        start = pos + 8
        if tag == _ITEM:
            if item_length == _UNDEFINED:
                pos = _item(buf, start, end, c, depth, pos, seq_tag, True, scope)
                continue
            stop = start + item_length
            if stop > end:
                raise _beyond(
                    f"an item of sequence {_t(seq_tag)}", pos, start, item_length, end, scope
                )
            _item(buf, start, stop, c, depth, pos, seq_tag, False, scope)
            pos = stop
        elif tag == _SEQ_END and undefined:
            return start
        else:
            raise MalformedDataset(
                f"{_describe(tag)} at byte {pos} where an item of "
                f"{'undefined' if undefined else 'defined'}-length sequence {_t(seq_tag)} "
                f"(at byte {seq_pos}) was expected"
            )
    if undefined:
        raise _unclosed(
            f"sequence {_t(seq_tag)} at byte {seq_pos}", "a sequence delimiter (FFFE,E0DD)", scope
        )
    return pos


def _item(
    buf: Buffer,
    pos: int,
    end: int,
    c: _Codec,
    depth: int,
    item_pos: int,
    seq_tag: int,
    undefined: bool,
    scope: Scope,
) -> int:
    """Walk the data set of the item at ``item_pos``; the position after the item.

    An item of defined length fills exactly ``pos:end`` (``scope`` is then ignored); one of
    undefined length ends at its delimiter, which must come before ``end``, the end of
    ``scope``.
    """
    inner: Scope = scope if undefined else ("item", item_pos, seq_tag)
    while pos < end:
        tag, _, _, after = _element(buf, pos, end, c, depth, inner)
        if tag == _ITEM_END:
            if undefined:
                return after
            raise MalformedDataset(
                f"an item delimiter (FFFE,E00D) at byte {pos} inside the {_scope(inner)}, "
                f"which has a defined length"
            )
        pos = after
    if undefined:
        raise _unclosed(
            f"the item at byte {item_pos} of sequence {_t(seq_tag)}",
            "an item delimiter (FFFE,E00D)",
            scope,
        )
    return pos


def _fragments(buf: Buffer, pos: int, end: int, c: _Codec, pixel_pos: int, scope: Scope) -> int:
    """Skip the items of encapsulated pixel data (offset table, fragments) to its delimiter."""
    what = f"the encapsulated pixel data (7FE0,0010) at byte {pixel_pos}"
    unpack = c.tag_length.unpack_from
    while end - pos >= 8:
        group, elem, length = unpack(buf, pos)
        tag = group << 16 | elem
        if tag == _SEQ_END:
            return pos + 8
        if tag != _ITEM:
            raise MalformedDataset(
                f"{_describe(tag)} at byte {pos} where a fragment of {what} was expected"
            )
        if length == _UNDEFINED:
            raise MalformedDataset(f"the fragment at byte {pos} of {what} has an undefined length")
        if pos + 8 + length > end:
            raise _beyond(f"a fragment of {what}", pos, pos + 8, length, end, scope)
        pos += 8 + length
    if pos < end:
        raise _short_header(f"an item header of {what}", pos, 8, end, scope)
    raise _unclosed(what, "a sequence delimiter (FFFE,E0DD)", scope)


def walk_dataset(
    buf: Buffer,
    start: int,
    end: int,
    *,
    implicit_vr: bool,
    little_endian: bool = True,
    wanted: frozenset[int] = frozenset(),
) -> dict[int, bytes]:
    """Walk every element of the data set in ``buf[start:end]`` to its very end.

    ``buf`` is bytes, a bytearray, a memoryview or an mmap; values are not converted and
    pixel data is skipped by its length. Returns the raw values of the *top-level* elements
    whose tag is in ``wanted`` (for an undefined length: the bytes before its delimiter).
    Byte offsets in messages count from the start of ``buf``.

    Raises :class:`MalformedDataset` when an element header is cut off; a defined length runs
    past ``end`` or past the end of its enclosing item or sequence of defined length; an
    undefined-length sequence, item or encapsulated pixel data is not closed by its delimiter
    before the end; an item tag is found where an element is expected or vice versa; a VR
    that cannot have an undefined length has one (or, in explicit VR, a VR is unknown);
    top-level tags do not ascend; trailing bytes are shorter than an element header.
    Implicit VR is little endian only (``little_endian`` is then ignored).
    """
    if not 0 <= start <= end <= len(buf):
        raise ValueError(f"cannot walk bytes {start}:{end} of a buffer of {len(buf)} bytes")
    c = _IMPLICIT_LE if implicit_vr else (_EXPLICIT_LE if little_endian else _EXPLICIT_BE)
    values: dict[int, bytes] = {}
    previous = -1
    previous_pos = start
    pos = start
    # The common elements (explicit VR with a 2-byte length; implicit VR, defined length, not
    # a sequence) are handled inline; the rest, and anything wrong, goes through _element.
    explicit = c.explicit
    head = c.head.unpack_from
    tag_length = c.tag_length.unpack_from
    short_vrs = _SHORT_VRS
    sq_tags = _SQ_TAGS
    while pos < end:
        if end - pos >= 8:
            if explicit:
                group, elem, vr, length = head(buf, pos)
                simple = vr in short_vrs and group != 0xFFFE
            else:
                group, elem, length = tag_length(buf, pos)
                simple = group != 0xFFFE and length != _UNDEFINED
            tag = group << 16 | elem
            stop = pos + 8 + length
            if tag <= previous:  # before anything else: garbage shows here first
                raise MalformedDataset(
                    f"element {_t(tag)} at byte {pos} follows {_t(previous)} (at byte "
                    f"{previous_pos}): top-level tags must ascend"
                )
            if simple and stop <= end and (explicit or tag not in sq_tags):
                if tag in wanted:
                    values[tag] = bytes(buf[pos + 8 : stop])
                previous, previous_pos, pos = tag, pos, stop
                continue
        tag, value_start, value_end, after = _element(buf, pos, end, c, 0, None)
        if tag == _ITEM_END:
            raise MalformedDataset(f"an item delimiter (FFFE,E00D) at byte {pos} outside any item")
        if tag in wanted:
            values[tag] = bytes(buf[value_start:value_end])
        previous, previous_pos, pos = tag, pos, after
    return values


def dataset_encoding(transfer_syntax: str) -> tuple[bool, bool, bool]:
    """``(implicit VR, little endian, deflated)`` of the data set under ``transfer_syntax``.

    Any syntax but Implicit VR Little Endian, Explicit VR Big Endian and the deflated ones -
    the encapsulated (compressed) syntaxes, and UIDs this code does not know - is Explicit VR
    Little Endian, as PS3.5 10 and A.4 require of every other transfer syntax.
    """
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        return True, True, False
    if transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
        return False, False, False
    return False, True, transfer_syntax in DEFLATED_SYNTAXES


def read_part10(buf: Buffer) -> tuple[str, int, dict[int, bytes]]:
    """Check the preamble and ``DICM`` and walk the File Meta Information (group 0002).

    Returns the transfer syntax UID (trailing NULs and spaces removed), the offset where the
    data set begins, and the raw values of every File Meta element. The meta group is
    explicit VR little endian and is validated like a data set; its group length (0002,0000)
    is not trusted (it may be absent or wrong): the group ends at the first tag of another
    group. Raises :class:`MalformedDataset`, also when there is no Transfer Syntax UID.
    """
    end = len(buf)
    if end < 132 or buf[128:132] != b"DICM":
        raise MalformedDataset("not a DICOM Part-10 file: no 'DICM' after a 128-byte preamble")
    meta: dict[int, bytes] = {}
    previous = -1
    pos = 132
    try:
        while end - pos >= 2 and _U16_LE.unpack_from(buf, pos)[0] == 0x0002:
            tag, value_start, value_end, after = _element(buf, pos, end, _EXPLICIT_LE, 0, None)
            if tag <= previous:
                raise MalformedDataset(
                    f"element {_t(tag)} at byte {pos} follows {_t(previous)}: tags must ascend"
                )
            meta[tag] = bytes(buf[value_start:value_end])
            previous, pos = tag, after
    except MalformedDataset as exc:
        raise MalformedDataset(f"in the File Meta Information: {exc}") from None
    raw = meta.get(_META_TRANSFER_SYNTAX)
    if raw is None:
        raise MalformedDataset("the File Meta Information has no Transfer Syntax UID (0002,0010)")
    return raw.decode("latin-1").rstrip("\x00 "), pos, meta


def inflate(data: Buffer, limit: int = MAX_INFLATED_SIZE) -> bytes:
    """Inflate a raw deflate stream (PS3.5 A.5); at most one trailing NUL may follow it."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise MalformedDataset(f"the deflated data set is damaged: {exc}") from None
    if len(out) > limit:
        raise MalformedDataset(f"the deflated data set inflates to more than {limit} bytes")
    if not inflater.eof:
        raise MalformedDataset(
            "the deflated data set is truncated: its deflate stream does not end"
        )
    rest = inflater.unused_data
    if rest and rest != b"\x00":
        raise MalformedDataset(f"{len(rest)} stray byte(s) after the end of the deflated data set")
    return out


def walk_part10(buf: Buffer, wanted: frozenset[int] = frozenset()) -> tuple[str, dict[int, bytes]]:
    """Walk a whole Part-10 file: File Meta Information, then the data set to its end.

    Returns the transfer syntax UID and the raw values of the ``wanted`` top-level data set
    elements. A deflated data set is inflated first (error offsets then count in the inflated
    data set). Raises :class:`MalformedDataset`.
    """
    syntax, offset, _ = read_part10(buf)
    implicit, little, deflated = dataset_encoding(syntax)
    if not deflated:
        values = walk_dataset(
            buf, offset, len(buf), implicit_vr=implicit, little_endian=little, wanted=wanted
        )
        return syntax, values
    data = inflate(buf[offset:])
    try:
        return syntax, walk_dataset(data, 0, len(data), implicit_vr=False, wanted=wanted)
    except MalformedDataset as exc:
        raise MalformedDataset(f"{exc} (bytes counted in the inflated data set)") from None
