"""The Part-10 header of the files we write: preamble, ``DICM`` and the File Meta Information.

Written with ``struct`` (PS3.10 7.1, Explicit VR Little Endian), so that receiving an instance
never builds a pydicom FileMetaDataset. The Implementation Class UID and Version Name are the
workstation's own, and SourceApplicationEntityTitle names the AE that sent the instance.
"""

from __future__ import annotations

import struct

from workstation.implementation import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

_SHORT = struct.Struct("<HH2sH")
_PREAMBLE = bytes(128) + b"DICM"
_VERSION = struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01"


def _element(element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    if len(value) % 2:
        value += pad
    return _SHORT.pack(0x0002, element, vr, len(value)) + value


def _fixed_tail() -> bytes:
    return _element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii"), b"\0") + _element(
        0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.encode("ascii"), b" "
    )


_TAIL = _fixed_tail()


def file_meta(
    sop_class_uid: str, sop_instance_uid: str, transfer_syntax_uid: str, source_aet: str = ""
) -> bytes:
    """Preamble, ``DICM`` and group 0002 for an instance; the data set follows it as received.

    The UIDs must be ASCII (callers pass UIDs taken from a command set or a file); a source AE
    title that is not printable ASCII is left out.
    """
    body = (
        _VERSION
        + _element(0x0002, b"UI", sop_class_uid.encode("ascii"), b"\0")
        + _element(0x0003, b"UI", sop_instance_uid.encode("ascii"), b"\0")
        + _element(0x0010, b"UI", transfer_syntax_uid.encode("ascii"), b"\0")
        + _TAIL
    )
    aet = source_aet.strip()
    if aet and aet.isascii() and aet.isprintable() and "\\" not in aet and len(aet) <= 16:
        body += _element(0x0016, b"AE", aet.encode("ascii"), b" ")
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return _PREAMBLE + group_length + body
