"""The validating walk over a data set's bytes, and the store's read_header built on it.

``read_header`` must give exactly the record that the pydicom-based reader it replaced gives
(kept below as :func:`read_header_pydicom`, the reference) for every well-formed file, in every
encoding, and refuse malformed files with :class:`InvalidInput`, never another exception.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import random
import struct
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    CTImageStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)
from pydicom.valuerep import PN_DELIMS, TEXT_VR_DELIMS

from workstation.demo import Archive
from workstation.errors import InvalidInput
from workstation.store import InstanceRecord, read_header
from workstation.store.header import _INT_FIELDS, _TEXT_FIELDS, _UID_FIELDS, HEADER_TAGS
from workstation.store.layout import validate_uid
from workstation.store.walk import (
    MAX_DEPTH,
    MalformedDataset,
    inflate,
    read_part10,
    walk_dataset,
)

# Odd character sets make pydicom warn (from both readers): expected here.
pytestmark = pytest.mark.filterwarnings(r"ignore:.*(encoding|Specific Character Set).*:UserWarning")

STUDY = "1.2.826.0.1.3680043.10.99.7"
SERIES = STUDY + ".1"
SOP = SERIES + ".1"
CT = str(CTImageStorage)

# -- the reference: read_header as it was, on pydicom's dcmread (verbatim but for names) -----

_CHARSET = 0x00080005


def read_header_pydicom(source: bytes | str | os.PathLike[str]) -> InstanceRecord:
    try:
        ds = dcmread(
            BytesIO(source) if isinstance(source, bytes) else os.fspath(source),
            stop_before_pixels=True,
            specific_tags=HEADER_TAGS,
        )
        encodings = _ref_encodings(ds)
    except OSError:
        raise
    except Exception as exc:  # pydicom raises many types for damaged data
        raise InvalidInput(f"not a readable DICOM Part-10 file: {exc}") from exc

    uid = {f: validate_uid(_ref_uid(ds, tag), kw) for f, (kw, tag) in _UID_FIELDS.items()}
    ts = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta is not None else None
    text = {f: _ref_text(ds, kw, tag, encodings) for f, (kw, tag) in _TEXT_FIELDS.items()}
    number = {f: _ref_int(ds, tag) for f, (_, tag) in _INT_FIELDS.items()}
    return InstanceRecord(
        sop_instance_uid=uid["sop_instance_uid"],
        sop_class_uid=uid["sop_class_uid"],
        study_uid=uid["study_uid"],
        series_uid=uid["series_uid"],
        transfer_syntax_uid=validate_uid(_ref_plain(ts), "Transfer Syntax UID"),
        patient_id=text["patient_id"],
        patient_name=text["patient_name"],
        patient_birth_date=text["patient_birth_date"],
        patient_sex=text["patient_sex"],
        study_date=text["study_date"],
        study_time=text["study_time"],
        accession_number=text["accession_number"],
        study_description=text["study_description"],
        referring_physician_name=text["referring_physician_name"],
        modality=text["modality"],
        series_number=number["series_number"],
        series_description=text["series_description"],
        body_part_examined=text["body_part_examined"],
        instance_number=number["instance_number"],
    )


def _ref_encodings(ds: Dataset) -> list[str] | None:
    elem = ds.get_item(_CHARSET)
    if elem is None or not elem.value:
        return None
    value = ds[_CHARSET].value
    names = [value] if isinstance(value, str) else list(value)
    return convert_encodings([str(n) for n in names])


def _ref_raw(ds: Dataset, tag: int) -> object:
    elem = ds.get_item(tag)
    return None if elem is None else elem.value


def _ref_uid(ds: Dataset, tag: int) -> str:
    value = _ref_raw(ds, tag)
    if value is None:
        raise InvalidInput(f"the instance has no {keyword_for_tag(tag)}")
    text = _ref_plain(value)
    if "\\" in text:
        raise InvalidInput(f"the instance has several values in {keyword_for_tag(tag)}")
    return text


def _ref_plain(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, MultiValue | list):
        value = "\\".join(str(v) for v in value)
    return str(value).rstrip("\x00 ")


def _ref_text(ds: Dataset, keyword: str, tag: int, encodings: list[str] | None) -> str:
    value = _ref_raw(ds, tag)
    if value is None:
        return ""
    try:
        if isinstance(value, bytes):
            raw = value
            if encodings is None:
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError:
                    value = raw.decode("latin-1")
            elif keyword.endswith("Name"):
                parts = value.split(b"=")
                value = "=".join(decode_bytes(p, encodings, PN_DELIMS) for p in parts)
            else:
                value = decode_bytes(value, encodings, TEXT_VR_DELIMS)
    except Exception:
        return ""
    return _ref_plain(value).strip()


def _ref_int(ds: Dataset, tag: int) -> int | None:
    value = _ref_raw(ds, tag)
    if value is None:
        return None
    text = _ref_plain(value).split("\\")[0].strip()
    try:
        return int(text)
    except ValueError:
        try:
            return int(float(text))
        except (ValueError, OverflowError):
            return None


def assert_same_as_pydicom(data: bytes, tmp_path: Path | None = None) -> InstanceRecord:
    """read_header(bytes) == the reference, and == read_header(path) when a folder is given."""
    record = read_header(data)
    assert record == read_header_pydicom(data)
    if tmp_path is not None:
        path = tmp_path / "instance.dcm"
        path.write_bytes(data)
        assert read_header(path) == record
    return record


# -- pydicom-written data sets ---------------------------------------------------------------

SYNTAXES = {
    "implicit": ImplicitVRLittleEndian,
    "explicit": ExplicitVRLittleEndian,
    "big-endian": ExplicitVRBigEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "jpeg": JPEGBaseline8Bit,
}

#: Specific Character Set -> (PatientName, StudyDescription) in it; None: no charset, raw UTF-8.
CHARSETS: dict[str, tuple[str | list[str] | None, str, str]] = {
    "latin1": ("ISO_IR 100", "Müller^Jürgen", "Schädel nativ"),
    "utf8": ("ISO_IR 192", "Иванов^Иван=山田^太郎", "Thorax ÆØÅ ⌀ 5 mm"),
    "japanese": (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう", "胸部"),
    "chinese": ("GB18030", "Wang^XiaoDong=王^小東", "胸部CT平扫"),
    "none-utf8": (None, "Dvořák^Antonín", "Hlava"),
}


def _every_vr(ds: Dataset) -> None:
    """A private block with one element of every VR (and some standard ones)."""
    block = ds.private_block(0x0009, "WS WALK TEST", create=True)
    values: list[tuple[str, object]] = [
        ("AE", "STORESCP"),
        ("AS", "042Y"),
        ("AT", 0x00100010),
        ("CS", "ABC\\DEF"),
        ("DA", "20240101"),
        ("DS", "1.5"),
        ("DT", "20240101120000"),
        ("FL", 1.5),
        ("FD", 2.5),
        ("IS", "42"),
        ("LO", "long"),
        ("LT", "long text"),
        ("OB", b"\x01\x02\x03"),
        ("OD", b"\x00" * 8),
        ("OF", b"\x00" * 4),
        ("OL", b"\x00" * 4),
        ("OV", b"\x00" * 8),
        ("OW", b"\x00\x01"),
        ("PN", "Doe^Jane"),
        ("SH", "short"),
        ("SL", -1),
        ("SS", -2),
        ("ST", "short text"),
        ("SV", -3),
        ("TM", "120000.5"),
        ("UC", "unlimited characters"),
        ("UI", "1.2.3.4"),
        ("UL", 7),
        ("UN", b"\x01\x02\x03"),
        ("UR", "http://example.com/x"),
        ("US", 5),
        ("UT", "unlimited text"),
        ("UV", 9),
    ]
    for offset, (vr, value) in enumerate(values, start=1):
        block.add_new(offset, vr, value)
    inner = Dataset()
    inner.add_new(0x00090010, "LO", "WS WALK TEST")
    inner.add_new(0x00091001, "LO", "in a private sequence")
    block.add_new(0x60, "SQ", [inner, Dataset()])


def _code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def rich_dataset(
    charset: str, syntax: str, *, seq_undefined: bool, item_undefined: bool
) -> Dataset:
    """A CT-like instance with every VR, sequences nested three deep, private tags, a group
    length, the given character set, and pixel data fit for the transfer syntax."""
    declared, name, description = CHARSETS[charset]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(SOP)
    ds.file_meta.TransferSyntaxUID = SYNTAXES[syntax]
    ds.add_new(0x00080000, "UL", 1234)  # a (retired) group length, wrong on purpose
    if declared is not None:
        ds.SpecificCharacterSet = declared
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = SOP
    ds.StudyDate = "20240315"
    ds.StudyTime = "101500.123"
    ds.AccessionNumber = "ACC-7"
    ds.Modality = "CT"
    ds.ReferringPhysicianName = "Weber^Klaus^^Dr."
    ds.StudyDescription = description
    ds.SeriesDescription = "Axial 1mm"
    ds.ReferencedStudySequence = []  # an empty sequence
    image = Dataset()
    image.ReferencedSOPClassUID = CT
    image.ReferencedSOPInstanceUID = SOP + ".9"
    image.PurposeOfReferenceCodeSequence = [_code("121311", "Localizer")]  # third level
    series = Dataset()
    series.SeriesInstanceUID = SERIES + ".9"
    series.ReferencedImageSequence = [image, Dataset()]
    ds.ReferencedSeriesSequence = [series]
    if declared is None:
        ds.add_new(0x00100010, "PN", name.encode())  # undeclared UTF-8, as some senders do
        ds.add_new(0x00081030, "LO", description.encode())
    else:
        ds.PatientName = name
    _every_vr(ds)
    ds.PatientID = "PID-7"
    ds.PatientBirthDate = "19650412"
    ds.PatientSex = "F"
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = SERIES
    ds.SeriesNumber = "3"
    ds.InstanceNumber = "12"
    ds.add_new(0x00290010, "LO", "WS OTHER")
    ds.add_new(0x00291010, "OB", b"\x00" * 9)  # odd length
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    if syntax == "jpeg":
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        fragments = [b"\xff\xd8" + bytes(range(40)) + b"\xff\xd9", b"\xff\xd8\x00\x01\xff\xd9"]
        ds.PixelData = encapsulate(fragments)
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = bytes(range(128))
        ds["PixelData"].VR = "OW"
    ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 6)  # trailing padding
    _set_lengths(ds, seq_undefined, item_undefined)
    return ds


def _set_lengths(ds: Dataset, seq_undefined: bool, item_undefined: bool) -> None:
    for elem in ds:
        if elem.VR == "SQ":
            elem.is_undefined_length = seq_undefined
            for item in elem.value:
                item.is_undefined_length_sequence_item = item_undefined
                _set_lengths(item, not seq_undefined, item_undefined)  # mix them inside


def encode(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.mark.parametrize("syntax", list(SYNTAXES))
@pytest.mark.parametrize("charset", list(CHARSETS))
@pytest.mark.parametrize("lengths", ["undefined", "defined", "mixed"])
def test_read_header_equals_pydicom_for_rich_data_sets(
    syntax: str, charset: str, lengths: str, tmp_path: Path
) -> None:
    ds = rich_dataset(
        charset,
        syntax,
        seq_undefined=lengths != "defined",
        item_undefined=lengths == "undefined",
    )
    data = encode(ds)
    record = assert_same_as_pydicom(data, tmp_path)
    assert record.transfer_syntax_uid == SYNTAXES[syntax]
    assert (record.study_uid, record.series_uid, record.sop_instance_uid) == (STUDY, SERIES, SOP)
    assert (record.series_number, record.instance_number) == (3, 12)
    _, name, description = CHARSETS[charset]
    assert (record.patient_name, record.study_description) == (name, description)
    # the walk went through all of it: every top-level element is visited, in order
    syntax_uid, offset, _ = read_part10(data)
    assert syntax_uid == SYNTAXES[syntax]
    everything = frozenset(int(tag) for tag in dcmread(BytesIO(data)).keys())  # noqa: SIM118
    assert 0x00081115 in everything and 0x7FE00010 in everything
    if syntax == "deflated":
        body = inflate(data[offset:])
        values = walk_dataset(body, 0, len(body), implicit_vr=False, wanted=everything)
    else:
        values = walk_dataset(
            data,
            offset,
            len(data),
            implicit_vr=syntax == "implicit",
            little_endian=syntax != "big-endian",
            wanted=everything,
        )
    assert list(values) == sorted(everything)


def test_read_header_equals_pydicom_for_the_demo_archive(archive_files: list[Path]) -> None:
    for path in archive_files:
        data = path.read_bytes()
        record = read_header(path)
        assert record == read_header_pydicom(path) == read_header(data), path


@pytest.mark.parametrize("syntax", ["implicit", "big-endian", "deflated"])
def test_read_header_equals_pydicom_for_the_archive_in_other_syntaxes(
    archive: Archive, syntax: str
) -> None:
    for ref in archive.all_instances()[::9]:
        ds = archive.dataset(ref)
        ds.file_meta.TransferSyntaxUID = SYNTAXES[syntax]
        assert_same_as_pydicom(encode(ds))


# -- a test encoder: every structure spelled out ---------------------------------------------

UNDEFINED = 0xFFFFFFFF
LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


@dataclass
class Item:
    elements: list[Element]
    undefined: bool = False
    length: int | None = None  # a lie, when given


@dataclass
class Seq:
    items: list[Item]
    undefined: bool = False
    delimited: bool = True  # write the delimiter of an undefined length
    length: int | None = None


@dataclass
class Frags:
    fragments: list[bytes] = field(default_factory=lambda: [b"", b"\xff\xd8\x01\x02\xff\xd9"])
    delimited: bool = True


Element = tuple[int, str, "bytes | Seq | Frags"]


def enc(elements: Sequence[Element], *, implicit: bool = False, little: bool = True) -> bytes:
    """Encode ``elements`` exactly as given (no sorting, no padding)."""
    return b"".join(enc_element(e, implicit=implicit, little=little) for e in elements)


def enc_element(element: Element, *, implicit: bool, little: bool) -> bytes:
    tag, vr, value = element
    order = "<" if little else ">"
    if isinstance(value, Seq):
        inner_implicit, inner_little = (True, True) if vr == "UN" else (implicit, little)
        body = enc_items(value, implicit=inner_implicit, little=inner_little)
        length = UNDEFINED if value.undefined else len(body)
        if value.length is not None:
            length = value.length
    elif isinstance(value, Frags):
        body = b"".join(
            struct.pack(order + "HHI", 0xFFFE, 0xE000, len(f)) + f for f in value.fragments
        )
        if value.delimited:
            body += struct.pack(order + "HHI", 0xFFFE, 0xE0DD, 0)
        length = UNDEFINED
    else:
        body, length = value, len(value)
    group, elem = tag >> 16, tag & 0xFFFF
    if implicit:
        head = struct.pack(order + "HHI", group, elem, length)
    elif vr in LONG_VRS:
        head = struct.pack(order + "HH2s2xI", group, elem, vr.encode(), length)
    else:
        head = struct.pack(order + "HH2sH", group, elem, vr.encode(), length)
    return head + body


def enc_items(seq: Seq, *, implicit: bool, little: bool) -> bytes:
    order = "<" if little else ">"
    out = b""
    for item in seq.items:
        body = enc(item.elements, implicit=implicit, little=little)
        length = UNDEFINED if item.undefined else len(body)
        if item.length is not None:
            length = item.length
        out += struct.pack(order + "HHI", 0xFFFE, 0xE000, length) + body
        if item.undefined:
            out += struct.pack(order + "HHI", 0xFFFE, 0xE00D, 0)
    if seq.undefined and seq.delimited:
        out += struct.pack(order + "HHI", 0xFFFE, 0xE0DD, 0)
    return out


def meta(syntax: str, *, group_length: int | None = -1) -> bytes:
    def element(tag: int, vr: str, value: bytes) -> bytes:
        if len(value) % 2:
            value += b"\0"
        return enc_element((tag, vr, value), implicit=False, little=True)

    body = b"".join(
        [
            element(0x00020001, "OB", b"\x00\x01"),
            element(0x00020002, "UI", CT.encode()),
            element(0x00020003, "UI", SOP.encode()),
            element(0x00020010, "UI", syntax.encode()),
            element(0x00020012, "UI", b"1.2.826.0.1.3680043.10.99.0"),
        ]
    )
    if group_length is None:
        return body
    length = len(body) if group_length == -1 else group_length
    return element(0x00020000, "UL", struct.pack("<I", length)) + body


def part10(
    dataset: bytes, syntax: str = ExplicitVRLittleEndian, **meta_options: int | None
) -> bytes:
    return b"\0" * 128 + b"DICM" + meta(syntax, **meta_options) + dataset


def ui(value: str) -> bytes:
    raw = value.encode()
    return raw + b"\0" * (len(raw) % 2)


def required(*, sop: str = SOP) -> list[Element]:
    """The four UIDs the store needs; a data set is these plus what a test puts between."""
    return [
        (0x00080016, "UI", ui(CT)),
        (0x00080018, "UI", ui(sop)),
        (0x0020000D, "UI", ui(STUDY)),
        (0x0020000E, "UI", ui(SERIES)),
    ]


def sorted_elements(*groups: Sequence[Element]) -> list[Element]:
    return sorted((e for g in groups for e in g), key=lambda e: e[0])


def small_instance(
    *, seq_undefined: bool, item_undefined: bool, encapsulated: bool = False
) -> list[Element]:
    """About 2 kB: UIDs, names, sequences before and after the UIDs, private tags, pixels."""

    def seq(*items: Sequence[Element]) -> Seq:
        return Seq([Item(list(i), undefined=item_undefined) for i in items], seq_undefined)

    code: list[Element] = [
        (0x00080100, "SH", b"121311"),
        (0x00080102, "SH", b"DCM "),
        (0x00080104, "LO", b"Localizer "),
    ]
    reference: list[Element] = [
        (0x00081150, "UI", ui(CT)),
        (0x00081155, "UI", ui(SOP + ".9")),
        (0x0040A170, "SQ", seq(code)),
    ]
    pixels: bytes | Frags = (
        Frags([b"", bytes(range(200)) * 5]) if encapsulated else bytes(range(256)) * 4
    )
    return sorted_elements(
        required(),
        [
            (0x00080005, "CS", b"ISO_IR 192"),
            (0x00080020, "DA", b"20240315"),
            (0x00080060, "CS", b"CT"),
            (0x00081030, "LO", "Schädel".encode()),
            (0x00081110, "SQ", Seq([], seq_undefined)),
            (0x00081115, "SQ", seq([(0x00081140, "SQ", seq(reference, []))])),
            (0x00100010, "PN", "Müller^Jürgen".encode()),
            (0x00100020, "LO", b"PID-1 "),
            (0x00200011, "IS", b"3 "),
            (0x00200013, "IS", b"12"),
            (0x00280010, "US", b"\x00\x02"),
            (0x00290010, "LO", b"WS PRIVATE"),
            (0x00291010, "SQ", seq([(0x00291001, "LO", b"private ")])),
            (0x00400275, "SQ", seq([(0x00400008, "SQ", seq(code, code))], [])),
            (0x7FE00010, "OB" if encapsulated else "OW", pixels),
        ],
    )


VARIANTS: dict[str, tuple[str, bool, bool, bool, bool]] = {
    # name: transfer syntax, implicit, little endian, undefined sequences, undefined items
    "implicit-undefined": (ImplicitVRLittleEndian, True, True, True, True),
    "implicit-defined": (ImplicitVRLittleEndian, True, True, False, False),
    "explicit-undefined": (ExplicitVRLittleEndian, False, True, True, True),
    "explicit-defined": (ExplicitVRLittleEndian, False, True, False, False),
    "explicit-mixed": (ExplicitVRLittleEndian, False, True, True, False),
    "big-endian": (ExplicitVRBigEndian, False, False, False, True),
    "encapsulated": (JPEGBaseline8Bit, False, True, True, True),
}


def variant(name: str) -> tuple[bytes, list[int], int]:
    """The Part-10 bytes of a small instance, the offsets of its top-level element
    boundaries, and the offset where the last required UID ends."""
    syntax, implicit, little, seq_undefined, item_undefined = VARIANTS[name]
    elements = small_instance(
        seq_undefined=seq_undefined,
        item_undefined=item_undefined,
        encapsulated=name == "encapsulated",
    )
    head = part10(b"", syntax)
    boundaries = [len(head)]
    for element in elements:
        boundaries.append(
            boundaries[-1] + len(enc_element(element, implicit=implicit, little=little))
        )
    last_uid = next(i for i, e in enumerate(elements) if e[0] == 0x0020000E)
    data = head + enc(elements, implicit=implicit, little=little)
    assert len(data) == boundaries[-1]
    return data, boundaries, boundaries[last_uid + 1]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_read_header_equals_pydicom_for_hand_encoded_structures(name: str, tmp_path: Path) -> None:
    data, _, _ = variant(name)
    record = assert_same_as_pydicom(data, tmp_path)
    assert (record.patient_name, record.study_description) == ("Müller^Jürgen", "Schädel")
    assert (record.series_number, record.instance_number) == (3, 12)
    full = dcmread(BytesIO(data))  # pydicom reads the whole structure the same way
    assert full.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID == (
        SOP + ".9"
    )


@pytest.mark.parametrize(
    "charset",
    [
        b"ISO_IR 100",
        b"ISO_IR 100 ",
        b"ISO_IR 100\0",
        b"ISO-IR 100",  # a common misspelling pydicom corrects
        b"  ",  # only padding: as if absent
        b"\0\0",
        b"\\",
        b" ISO_IR 100",
        b"ISO_IR 100\\",
        b"\\ISO 2022 IR 100",
        b"ISO 2022 IR 6\\ISO 2022 IR 100",
        b"ISO_IR 192\\ISO_IR 100",  # a stand-alone charset first: the rest is ignored
        b"WHATEVER",
        b"",
    ],
)
def test_odd_character_sets_decode_as_pydicom_decodes_them(charset: bytes) -> None:
    elements = sorted_elements(
        required(),
        [
            (0x00080005, "CS", charset),
            (0x00100010, "PN", "Müller^Jürgen".encode("latin-1")),
            (0x00081030, "LO", "Schädel".encode()),
        ],
    )
    for implicit in (False, True):
        syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        assert_same_as_pydicom(part10(enc(elements, implicit=implicit), syntax))


def test_empty_and_odd_values_read_as_pydicom_reads_them() -> None:
    elements = sorted_elements(
        required(),
        [
            (0x00080020, "DA", b""),
            (0x00080060, "CS", b"MR "),
            (0x00081030, "LO", b"odd"),  # odd length: the next element follows at once
            (0x0008103E, "LO", b"  padded  \0"),
            (0x00100010, "PN", b"Doe^John\\Roe^Richard"),
            (0x00100020, "LO", b"A\\B"),
            (0x00200011, "IS", b""),
            (0x00200013, "IS", b" 7.0\\8 "),
        ],
    )
    for implicit in (False, True):
        syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        record = assert_same_as_pydicom(part10(enc(elements, implicit=implicit), syntax))
        assert (record.series_number, record.instance_number, record.modality) == (None, 7, "MR")


def test_unknown_transfer_syntaxes_are_read_as_explicit_little_endian() -> None:
    data = part10(enc(sorted_elements(required(), [(0x00100020, "LO", b"P1")])), "1.2.3.4.5")
    record = assert_same_as_pydicom(data)
    assert (record.transfer_syntax_uid, record.patient_id) == ("1.2.3.4.5", "P1")


def test_the_file_meta_group_length_is_not_trusted() -> None:
    body = enc(sorted_elements(required(), [(0x00100020, "LO", b"P1")]))
    for group_length in (None, 0, 3, 9999):
        assert_same_as_pydicom(part10(body, group_length=group_length))


def test_read_header_accepts_any_bytes_like(tmp_path: Path) -> None:
    data, _, _ = variant("explicit-undefined")
    expected = read_header(data)
    assert read_header(bytearray(data)) == expected
    assert read_header(memoryview(data)) == expected
    path = tmp_path / "x.dcm"
    path.write_bytes(data)
    assert read_header(str(path)) == expected


# -- walk_dataset itself ---------------------------------------------------------------------


def walk(
    elements: Sequence[Element], *, implicit: bool = False, little: bool = True, **kw: object
) -> dict[int, bytes]:
    data = enc(elements, implicit=implicit, little=little)
    return walk_dataset(data, 0, len(data), implicit_vr=implicit, little_endian=little, **kw)  # type: ignore[arg-type]


def refused(elements: Sequence[Element], *, implicit: bool = False, little: bool = True) -> str:
    with pytest.raises(MalformedDataset) as caught:
        walk(elements, implicit=implicit, little=little)
    return str(caught.value)


def test_walk_returns_the_raw_top_level_values_asked_for() -> None:
    nested = Seq([Item([(0x00100020, "LO", b"nested")])], undefined=True)
    elements: list[Element] = [
        (0x00080000, "UL", b"\x04\x00\x00\x00"),  # a group length element
        (0x00081115, "SQ", nested),
        (0x00090010, "LO", b"PRIVATE "),
        (0x00091001, "UN", b"\x01\x02\x03"),  # odd length
        (0x00100020, "LO", b"top "),
        (0x00100030, "DA", b""),
    ]
    wanted = frozenset({0x00100020, 0x00091001, 0x00100030, 0x00081115, 0x00200000})
    for implicit in (False, True):
        values = walk(elements, implicit=implicit, wanted=wanted)
        seq_value = enc_items(nested, implicit=implicit, little=True)[:-8]  # without delimiter
        assert values == {
            0x00081115: seq_value,
            0x00091001: b"\x01\x02\x03",
            0x00100020: b"top ",
            0x00100030: b"",
        }
    assert walk(elements, implicit=False) == {}


def test_walk_goes_through_every_structure() -> None:
    deep: Seq = Seq([Item([(0x00100020, "LO", b"leaf")])])
    for level in range(3):  # defined and undefined lengths alternate, three deep and more
        deep = Seq(
            [Item([(0x00081140, "SQ", deep)], undefined=level % 2 == 0)], undefined=level % 2 == 1
        )
    elements: list[Element] = [
        (0x00081110, "SQ", Seq([])),  # empty, defined length
        (0x00081111, "SQ", Seq([], undefined=True)),  # empty, undefined length
        (0x00081115, "SQ", deep),
        (
            0x00081120,
            "SQ",
            Seq([Item([]), Item([], undefined=True)], undefined=True),
        ),  # empty items
        (0x00091010, "SQ", Seq([Item([(0x00091001, "UT", b"x" * 5)])], undefined=True)),
        (0x00100010, "PN", b"Doe"),
        (
            0x00189999,
            "UN",
            Seq([Item([(0x00100020, "LO", b"un!")], undefined=True)], undefined=True),
        ),
        (0x7FE00010, "OB", Frags([b"", b"\x01" * 11, b""])),
    ]
    for little in (True, False):
        assert walk(elements, little=little, wanted=frozenset({0x00100010})) == {0x00100010: b"Doe"}
    implicit = [e for e in elements if e[1] != "UN"]
    assert walk(implicit, implicit=True, wanted=frozenset({0x00100010})) == {0x00100010: b"Doe"}


def test_walk_checks_defined_length_sequences_in_implicit_vr_by_the_dictionary() -> None:
    bad_item = Seq([Item([(0x00100020, "LO", b"x")], length=99)])
    message = refused(
        [(0x00081115, "SQ", bad_item), (0x00100010, "PN", b"Doe^John" * 20)], implicit=True
    )
    assert "past the end (byte 25) of its enclosing sequence (0008,1115) at byte 0" in message
    # a private tag is not known to be a sequence: its value is skipped unread
    assert walk([(0x00091010, "SQ", bad_item), (0x00100010, "PN", b"x" * 200)], implicit=True) == {}


def test_walk_reads_buffers_of_every_kind_and_only_between_start_and_end(tmp_path: Path) -> None:
    data = enc([(0x00100010, "PN", b"Doe"), (0x00100020, "LO", b"P1")])
    padded = b"\xff" * 5 + data + b"\xff" * 7
    wanted = frozenset({0x00100010, 0x00100020})
    expected = {0x00100010: b"Doe", 0x00100020: b"P1"}
    for buf in (padded, bytearray(padded), memoryview(padded)):
        assert walk_dataset(buf, 5, 5 + len(data), implicit_vr=False, wanted=wanted) == expected
    path = tmp_path / "buf"
    path.write_bytes(padded)
    with path.open("rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        values = walk_dataset(mapped, 5, 5 + len(data), implicit_vr=False, wanted=wanted)
    assert values == expected and all(type(v) is bytes for v in values.values())
    with pytest.raises(
        MalformedDataset, match=r"element \(0010,0020\) at byte 16 claims 2 bytes, 1 remain"
    ):
        walk_dataset(padded, 5, 5 + len(data) - 1, implicit_vr=False)
    with pytest.raises(ValueError, match="cannot walk"):
        walk_dataset(data, 0, len(data) + 1, implicit_vr=False)


def test_walk_handles_deep_nesting_up_to_the_limit_and_refuses_beyond() -> None:
    def nested(depth: int, implicit: bool) -> bytes:
        data = enc([(0x00100020, "LO", b"leaf")], implicit=implicit)
        if implicit:
            head = struct.pack("<HHI", 0x0008, 0x1115, UNDEFINED)
        else:
            head = struct.pack("<HH2s2xI", 0x0008, 0x1115, b"SQ", UNDEFINED)
        item = struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED)
        close = struct.pack("<HHIHHI", 0xFFFE, 0xE00D, 0, 0xFFFE, 0xE0DD, 0)
        return (head + item) * depth + data + close * depth

    for implicit in (False, True):
        data = nested(MAX_DEPTH, implicit)
        assert walk_dataset(data, 0, len(data), implicit_vr=implicit) == {}
        for depth in (MAX_DEPTH + 1, 50_000):  # refused, and no RecursionError
            data = nested(depth, implicit)
            with pytest.raises(MalformedDataset, match=f"nested more than {MAX_DEPTH} deep"):
                walk_dataset(data, 0, len(data), implicit_vr=implicit)


# -- malformed data: refused, with what and where --------------------------------------------


def test_a_length_running_past_the_end_is_refused() -> None:
    pixels = b"\x00" * 4096
    data = part10(enc(sorted_elements(required(), [(0x7FE00010, "OW", pixels)])))
    cut = data[:-1000]
    position = len(data) - len(pixels) - 12
    with pytest.raises(InvalidInput) as caught:
        read_header(cut)
    assert str(caught.value) == (
        f"the data set is truncated: element (7FE0,0010) at byte {position} claims 4096 bytes, "
        "3096 remain"
    )
    assert read_header_pydicom(cut).sop_instance_uid == SOP  # what the old reader let through


@pytest.mark.parametrize("implicit", [False, True])
def test_a_length_of_0xfffffff0_is_refused(implicit: bool) -> None:
    body = enc(required(), implicit=implicit)
    if implicit:
        liar = struct.pack("<HHI", 0x0040, 0xA160, 0xFFFFFFF0) + b"P1"
    else:
        liar = struct.pack("<HH2s2xI", 0x0040, 0xA160, b"UT", 0xFFFFFFF0) + b"P1"
    syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    with pytest.raises(
        InvalidInput, match=r"element \(0040,A160\) at byte \d+ claims 4294967280 bytes, 2 remain"
    ):
        read_header(part10(body + liar, syntax))


def test_an_item_longer_than_its_sequence_is_refused() -> None:
    item = Item([(0x00100020, "LO", b"P1")], length=100)
    elements: list[Element] = [(0x00400275, "SQ", Seq([item])), (0x00400280, "ST", b"x" * 200)]
    for implicit in (False, True):
        message = refused(elements, implicit=implicit)
        assert "an item of sequence (0040,0275) at byte" in message
        assert "of its enclosing sequence (0040,0275) at byte 0" in message
    long_element = Item([(0x00100020, "LO", b"P1" * 10)], length=8)  # element past its item
    message = refused([(0x00400275, "SQ", Seq([long_element], undefined=True))])
    assert "of its enclosing item at byte 12 of sequence (0040,0275)" in message


def test_an_unclosed_undefined_length_is_refused() -> None:
    unclosed = Seq(
        [Item([(0x00100020, "LO", b"P1")], undefined=True)], undefined=True, delimited=False
    )
    for implicit in (False, True):
        message = refused([(0x00400275, "SQ", unclosed)], implicit=implicit)
        assert message == (
            "the data set is truncated: sequence (0040,0275) at byte 0 has an undefined length "
            "and is not closed by a sequence delimiter (FFFE,E0DD) before the end of the data"
        )
        message = refused(
            [(0x00400275, "SQ", unclosed), (0x00400280, "ST", b"more")], implicit=implicit
        )
        assert "element (0040,0280) at byte" in message
        assert (
            "where an item of undefined-length sequence (0040,0275) (at byte 0) was expected"
            in message
        )
    open_item = struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED) + enc([(0x00100020, "LO", b"P1")])
    data = struct.pack("<HH2s2xI", 0x0040, 0x0275, b"SQ", UNDEFINED) + open_item
    with pytest.raises(
        MalformedDataset,
        match=r"the item at byte 12 of sequence .* not closed by an item delimiter",
    ):
        walk_dataset(data, 0, len(data), implicit_vr=False)
    inside = Seq([Item([(0x00081115, "SQ", unclosed)])])  # unclosed inside a defined length
    message = refused([(0x00400275, "SQ", inside), (0x00400280, "ST", b"x" * 40)])
    assert "before the end of its enclosing item at byte 12 of sequence (0040,0275)" in message
    pixels = Frags(delimited=False)
    assert (
        "encapsulated pixel data (7FE0,0010) at byte 0 has an undefined length and is not closed"
        in refused([(0x7FE00010, "OB", pixels)])
    )


def test_items_and_elements_out_of_place_are_refused() -> None:
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0)
    with pytest.raises(
        MalformedDataset, match=r"an item tag \(FFFE,E000\) at byte 0 where a data element"
    ):
        walk_dataset(item, 0, len(item), implicit_vr=False)
    delimiter = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    with pytest.raises(MalformedDataset, match=r"item delimiter .* at byte 0 outside any item"):
        walk_dataset(delimiter, 0, 8, implicit_vr=True)
    not_an_item = struct.pack("<HH2s2xI", 0x0040, 0x0275, b"SQ", 10) + enc(
        [(0x00100020, "LO", b"P1")]
    )
    with pytest.raises(
        MalformedDataset, match=r"element \(0010,0020\) at byte 12 where an item of defined-length"
    ):
        walk_dataset(not_an_item, 0, len(not_an_item), implicit_vr=False)
    seq_end_in_defined = Seq([Item([])], length=16)
    data = enc([(0x00400275, "SQ", seq_end_in_defined)]) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    with pytest.raises(
        MalformedDataset, match=r"sequence delimiter .* where an item of defined-length"
    ):
        walk_dataset(data, 0, len(data), implicit_vr=False)
    item_end_in_defined = Item([(0x00100020, "LO", b"P1")], length=18)
    data = enc([(0x00400275, "SQ", Seq([item_end_in_defined], length=26))]) + struct.pack(
        "<HHI", 0xFFFE, 0xE00D, 0
    )
    with pytest.raises(
        MalformedDataset, match=r"item delimiter .* inside the item at byte 12 .* defined length"
    ):
        walk_dataset(data, 0, len(data), implicit_vr=False)
    fragment = struct.pack("<HHI", 0xFFFE, 0xE000, UNDEFINED)
    data = struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OB", UNDEFINED) + fragment
    with pytest.raises(MalformedDataset, match=r"fragment at byte 12 .* has an undefined length"):
        walk_dataset(data, 0, len(data), implicit_vr=False)


def test_undefined_lengths_where_no_undefined_length_may_be_are_refused() -> None:
    for vr, tag in (("UT", 0x00100020), ("OB", 0x00091001), ("OW", 0x7FE00008)):
        data = struct.pack("<HH2s2xI", tag >> 16, tag & 0xFFFF, vr.encode(), UNDEFINED)
        data += struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        with pytest.raises(
            MalformedDataset, match=f"has an undefined length, which VR {vr} cannot have"
        ):
            walk_dataset(data, 0, len(data), implicit_vr=False)


def test_unknown_vrs_and_implicit_data_labelled_explicit_are_refused() -> None:
    data = struct.pack("<HH2sH", 0x0010, 0x0010, b"XY", 2) + b"ab"
    with pytest.raises(MalformedDataset, match=r"unknown VR b'XY'"):
        walk_dataset(data, 0, len(data), implicit_vr=False)
    implicit = part10(enc(required(), implicit=True), ExplicitVRLittleEndian)
    with pytest.raises(InvalidInput, match=r"element \(0008,0016\) at byte \d+ has an unknown VR"):
        read_header(implicit)


def test_top_level_tags_must_ascend() -> None:
    elements = sorted_elements(required())
    swapped = [elements[1], elements[0], *elements[2:]]
    with pytest.raises(InvalidInput, match=r"\(0008,0016\) at byte \d+ follows \(0008,0018\)"):
        read_header(part10(enc(swapped)))
    twice = [*elements, elements[-1]]
    with pytest.raises(InvalidInput, match=r"\(0020,000E\) at byte \d+ follows \(0020,000E\)"):
        read_header(part10(enc(twice)))
    inside = [
        (0x00400275, "SQ", Seq([Item([(0x00100020, "LO", b"P1"), (0x00100010, "PN", b"x")])]))
    ]
    assert walk(inside) == {}  # the order inside items is not checked


def test_stray_bytes_after_a_valid_data_set_are_refused() -> None:
    data, _, _ = variant("explicit-undefined")
    with pytest.raises(InvalidInput) as caught:
        read_header(data + b"abc")
    assert str(caught.value) == (
        "the data set is truncated or has trailing garbage: the 3 byte(s) at byte "
        f"{len(data)} are too few for an element header (8 bytes)"
    )
    assert read_header_pydicom(data + b"abc") == read_header(data)  # the old reader took them
    with pytest.raises(InvalidInput, match=r"\(0000,0000\) at byte \d+ follows \(7FE0,0010\)"):
        read_header(data + b"\0" * 8)


def test_file_meta_problems_are_refused() -> None:
    body = enc(required())
    with pytest.raises(InvalidInput, match="no 'DICM'"):
        read_header(body)
    with pytest.raises(InvalidInput, match="no 'DICM'"):
        read_header(b"\0" * 128 + b"DICX" + meta(ExplicitVRLittleEndian) + body)
    no_syntax = b"\0" * 128 + b"DICM" + enc([(0x00020002, "UI", ui(CT))]) + body
    with pytest.raises(InvalidInput, match=r"no Transfer Syntax UID \(0002,0010\)"):
        read_header(no_syntax)
    head = meta(ExplicitVRLittleEndian)
    cut = b"\0" * 128 + b"DICM" + head[:-5]
    with pytest.raises(
        InvalidInput, match=r"^in the File Meta Information: the data set is truncated"
    ):
        read_header(cut)
    implicit_meta = (
        b"\0" * 128 + b"DICM" + enc([(0x00020010, "UI", ui(ExplicitVRLittleEndian))], implicit=True)
    )
    with pytest.raises(InvalidInput, match=r"in the File Meta Information: .* unknown VR"):
        read_header(implicit_meta + body)


def deflated(elements: Sequence[Element]) -> tuple[bytes, bytes]:
    """(file meta part, deflate stream) of a deflated data set."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = compressor.compress(enc(elements)) + compressor.flush()
    return part10(b"", DeflatedExplicitVRLittleEndian), stream


def test_deflated_data_sets_must_inflate_completely() -> None:
    elements = sorted_elements(
        required(), [(0x00100020, "LO", b"P1"), (0x7FE00010, "OW", b"\0" * 512)]
    )
    head, stream = deflated(elements)
    assert read_header(head + stream).patient_id == "P1"
    assert read_header(head + stream + b"\0").patient_id == "P1"  # pydicom pads to even
    for cut in range(len(stream)):
        with pytest.raises(InvalidInput, match="deflate"):
            read_header(head + stream[:cut])
    with pytest.raises(InvalidInput, match="2 stray byte"):
        read_header(head + stream + b"\0\0")
    damaged = bytearray(stream)
    damaged[0] ^= 0xFF
    with pytest.raises(InvalidInput, match=r"deflate|inflated"):
        read_header(head + bytes(damaged))
    lying = sorted_elements(required(), [(0x7FE00010, "OW", b"\0" * 512)])
    data = enc(lying)[:-100]
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = compressor.compress(data) + compressor.flush()
    with pytest.raises(
        InvalidInput, match=r"claims 512 bytes, 412 remain \(bytes counted in the inflated"
    ):
        read_header(head + stream)
    with pytest.raises(MalformedDataset, match="inflates to more than 1000 bytes"):
        inflate(zlib.compress(b"\0" * 5000)[2:-4], limit=1000)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_truncation_inside_an_element_or_a_sequence_is_refused(name: str) -> None:
    """Cut the file at every length. A cut exactly between two top-level elements leaves a
    valid shorter data set, which no walk can tell from a whole one: it is accepted when the
    UIDs are all before it (and reads as pydicom reads it), refused otherwise. Every other cut
    falls inside an element, a sequence or an item, and is refused as truncated."""
    data, boundaries, uids_end = variant(name)
    assert 1500 < len(data) < 2500
    dataset_start = boundaries[0]
    accepted = []
    for length in range(len(data)):
        cut = data[:length]
        if length in boundaries and length >= uids_end:
            assert read_header(cut) == read_header_pydicom(cut), length
            accepted.append(length)
            continue
        with pytest.raises(InvalidInput) as caught:
            read_header(cut)
        if length > dataset_start and length not in boundaries:
            assert "truncated" in str(caught.value), (length, str(caught.value))
    assert accepted == [b for b in boundaries[:-1] if b >= uids_end]


def mutations(data: bytes, rng: random.Random) -> Iterator[bytes]:
    for _ in range(400):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(132, len(mutated))
            kind = rng.random()
            if kind < 0.6:
                mutated[position] = rng.randrange(256)
            elif kind < 0.8:
                del mutated[position : position + rng.randint(1, 8)]
            else:
                mutated[position:position] = rng.randbytes(rng.randint(1, 8))
        yield bytes(mutated)


def test_garbage_gives_invalid_input_or_a_record_never_another_error() -> None:
    rng = random.Random(20240315)
    samples: list[bytes] = [rng.randbytes(rng.randrange(0, 3000)) for _ in range(200)]
    samples += [b"\0" * 128 + b"DICM" + rng.randbytes(rng.randrange(0, 3000)) for _ in range(200)]
    head = part10(b"", ExplicitVRLittleEndian)
    samples += [head + rng.randbytes(rng.randrange(0, 3000)) for _ in range(200)]
    for name in VARIANTS:
        samples += list(mutations(variant(name)[0], rng))
    outcomes = {"record": 0, "refused": 0}
    for sample in samples:
        try:
            record = read_header(sample)
        except InvalidInput:
            outcomes["refused"] += 1
        else:
            assert isinstance(record, InstanceRecord)
            outcomes["record"] += 1
    print(outcomes)
    assert outcomes["refused"] > len(samples) // 2
    for implicit in (False, True):
        for _ in range(300):
            garbage = rng.randbytes(rng.randrange(0, 600))
            with contextlib.suppress(MalformedDataset):
                walk_dataset(
                    garbage, 0, len(garbage), implicit_vr=implicit, wanted=frozenset({0x00100010})
                )


# -- paths -----------------------------------------------------------------------------------


def test_read_header_of_paths(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(InvalidInput, match="empty"):
        read_header(empty)
    with pytest.raises(FileNotFoundError):
        read_header(tmp_path / "missing.dcm")
    with pytest.raises(OSError):
        read_header(tmp_path)
    data, _, _ = variant("explicit-defined")
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(data[:-10])
    with pytest.raises(InvalidInput, match="truncated"):
        read_header(truncated)


@pytest.mark.skipif(sys.platform != "linux", reason="counts page faults with getrusage")
def test_pixel_data_is_skipped_not_read(tmp_path: Path) -> None:
    """A 1 GiB sparse file: reading its header touches a handful of pages, not 262144."""
    import resource

    size = 1 << 30
    head = part10(enc(sorted_elements(required(), [(0x00100020, "LO", b"P1")])))
    head += struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OW", size)
    path = tmp_path / "huge.dcm"
    with path.open("wb") as file:
        file.write(head)
        file.truncate(len(head) + size)
    read_header(path)  # warm up imports and caches
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    record = read_header(path)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert record.patient_id == "P1"
    print(f"{faults} page faults")
    assert faults < 200, faults


def test_read_header_never_calls_dcmread(monkeypatch: pytest.MonkeyPatch) -> None:
    import pydicom.filereader

    from workstation.store import header

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("read_header must not use pydicom's reader")

    assert "dcmread" not in vars(header)
    monkeypatch.setattr(pydicom.filereader, "read_partial", forbidden)
    monkeypatch.setattr(pydicom.filereader, "read_dataset", forbidden)
    data, _, _ = variant("implicit-defined")
    assert read_header(data).sop_instance_uid == SOP
