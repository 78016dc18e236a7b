"""DICOM JSON (PS3.18 F.2) to the bytes of an Explicit VR Little Endian data set, fast.

QIDO-RS answers in DICOM JSON; the rest of the workstation reads C-FIND identifiers as raw
bytes (:class:`~workstation.identifiers.RawIdentifier`). pydicom's ``Dataset.from_json``
followed by ``write_dataset`` takes about 1.7 ms for a study match of 16 attributes (17 s for
10,000 studies); :func:`encode` takes 0.07 ms, writing the same bytes directly for the value
representations QIDO-RS returns (text, numbers, person names, sequences) and returns ``None``
for anything else, which the caller then hands to pydicom.
"""

from __future__ import annotations

import struct
from typing import Any

_TEXT = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_SINGLE = frozenset({"LT", "ST", "UR", "UT"})  # one value, backslashes are text
_NUMBERS = {"US": "H", "UL": "I", "SS": "h", "SL": "i", "FL": "f", "FD": "d"}
_LONG = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_HEADER = struct.Struct("<HH2sH")
_LONG_HEADER = struct.Struct("<HH2sHI")
_ITEM = struct.Struct("<HHI")


class _Unusual(Exception):
    """A value this encoder leaves to pydicom."""


def _number_text(value: Any, vr: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Unusual
    if vr == "IS" or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    text = repr(float(value))
    if len(text) > 16:
        raise _Unusual
    return text


def _pn_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if not isinstance(value, dict):
        raise _Unusual
    groups = [value.get(k) or "" for k in ("Alphabetic", "Ideographic", "Phonetic")]
    while groups and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def _element(tag: int, vr: str, body: bytes) -> bytes:
    group, elem = tag >> 16, tag & 0xFFFF
    if vr in _LONG:
        return _LONG_HEADER.pack(group, elem, vr.encode(), 0, len(body)) + body
    if len(body) > 0xFFFF:
        raise _Unusual
    return _HEADER.pack(group, elem, vr.encode(), len(body)) + body


def _value(vr: str, values: list[Any], state: list[bool]) -> bytes:
    if vr == "SQ":
        out = bytearray()
        for item in values:
            if not isinstance(item, dict):
                raise _Unusual
            data = _dataset(item, state)
            out += _ITEM.pack(0xFFFE, 0xE000, len(data)) + data
        return bytes(out)
    if vr in _NUMBERS:
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
            raise _Unusual
        return struct.pack(f"<{len(values)}{_NUMBERS[vr]}", *values)
    if vr == "PN":
        texts = [_pn_text(v) for v in values]
    elif vr in ("DS", "IS"):
        texts = [_number_text(v, vr) for v in values]
    elif vr in _TEXT:
        if any(v is not None and not isinstance(v, str) for v in values):
            raise _Unusual
        texts = ["" if v is None else v for v in values]
        if vr in _SINGLE and len(texts) > 1:
            raise _Unusual
    else:
        raise _Unusual
    text = "\\".join(texts)
    if not text.isascii():
        state[0] = True
    data = text.encode("utf-8")
    if len(data) % 2:
        data += b"\0" if vr == "UI" else b" "
    return data


def _dataset(item: dict[str, Any], state: list[bool]) -> bytes:
    out = bytearray()
    for key in sorted(item, key=lambda k: int(k, 16)):
        tag = int(key, 16)
        if tag == 0x00080005:
            continue
        element = item[key]
        if not isinstance(element, dict):
            raise _Unusual
        vr = element.get("vr")
        if not isinstance(vr, str) or "BulkDataURI" in element or "InlineBinary" in element:
            raise _Unusual
        values = element.get("Value") or []
        if not isinstance(values, list):
            raise _Unusual
        out += _element(tag, vr, _value(vr, values, state) if values else b"")
    return bytes(out)


def encode(item: dict[str, Any]) -> bytes | None:
    """The Explicit VR Little Endian bytes of the DICOM JSON object ``item`` (text in UTF-8,
    Specific Character Set ``ISO_IR 192`` first when a value is not ASCII), or ``None`` when
    it holds something left to pydicom (bulk data, AT, OB...)."""
    state = [False]
    try:
        data = _dataset(item, state)
    except (_Unusual, ValueError, TypeError, struct.error):
        return None
    if state[0]:
        return _element(0x00080005, "CS", b"ISO_IR 192") + data
    return data
