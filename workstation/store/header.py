"""Read the attributes the index needs from a Part-10 file, without touching the pixel data.

:func:`read_header` runs ``dcmread(stop_before_pixels=True, specific_tags=...)``: pydicom skips
over every element it is not asked for and stops at the pixel data, so the cost does not grow
with the image size: about 0.35-0.6 ms for a CT header on the development VM, less than the
two fsyncs of a durable write (~3 ms there). It is therefore called once, on the thread that
stores the instance: the same parse yields the UIDs the file path needs and the attributes the
index needs, and the index's writer thread only runs SQL. Parsing only the UIDs there and the
rest on the writer thread would cut ~0.15 ms from the storing thread but cost ~0.4 ms more CPU
per instance in total, and under the GIL total CPU is what limits several associations.

Text is decoded with the instance's Specific Character Set. Without one, bytes are read as
UTF-8 when they are valid UTF-8 and as ISO 8859-1 otherwise, which is what senders that omit
the attribute mean in practice.
"""

from __future__ import annotations

import logging
import os
from io import BytesIO

from pydicom import dcmread
from pydicom.charset import convert_encodings, decode_bytes
from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.valuerep import PN_DELIMS, TEXT_VR_DELIMS

from workstation.errors import InvalidInput
from workstation.store.layout import validate_uid
from workstation.store.records import InstanceRecord

log = logging.getLogger(__name__)


def _fields(**keywords: str) -> dict[str, tuple[str, int]]:
    """Record field -> (DICOM keyword, tag as int)."""
    return {field: (kw, int(Tag(kw))) for field, kw in keywords.items()}


_TEXT_FIELDS = _fields(
    patient_id="PatientID",
    patient_name="PatientName",
    patient_birth_date="PatientBirthDate",
    patient_sex="PatientSex",
    study_date="StudyDate",
    study_time="StudyTime",
    accession_number="AccessionNumber",
    study_description="StudyDescription",
    referring_physician_name="ReferringPhysicianName",
    modality="Modality",
    series_description="SeriesDescription",
    body_part_examined="BodyPartExamined",
)
_INT_FIELDS = _fields(series_number="SeriesNumber", instance_number="InstanceNumber")
_UID_FIELDS = _fields(
    sop_instance_uid="SOPInstanceUID",
    sop_class_uid="SOPClassUID",
    study_uid="StudyInstanceUID",
    series_uid="SeriesInstanceUID",
)
_CHARSET = 0x00080005
HEADER_TAGS: list[BaseTag | int] = [
    _CHARSET,
    *(tag for fields in (_TEXT_FIELDS, _INT_FIELDS, _UID_FIELDS) for _, tag in fields.values()),
]


def read_header(source: bytes | str | os.PathLike[str]) -> InstanceRecord:
    """Parse a Part-10 file (its bytes or its path) into an :class:`InstanceRecord`.

    The location fields (``path``, ``size``, ``source_aet``, ``received_at``) are left empty.
    Raises :class:`InvalidInput` when the data is not a Part-10 file (no preamble and ``DICM``),
    cannot be parsed, or lacks a valid SOP Class, SOP Instance, Study or Series Instance UID or
    Transfer Syntax UID; raises :class:`OSError` when a path cannot be read.
    """
    try:
        ds = dcmread(
            BytesIO(source) if isinstance(source, bytes) else os.fspath(source),
            stop_before_pixels=True,
            specific_tags=HEADER_TAGS,
        )
        encodings = _encodings(ds)
    except OSError:
        raise
    except Exception as exc:  # pydicom raises many types for damaged data
        raise InvalidInput(f"not a readable DICOM Part-10 file: {exc}") from exc

    uid = {field: validate_uid(_uid(ds, tag), kw) for field, (kw, tag) in _UID_FIELDS.items()}
    ts = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta is not None else None
    text = {field: _text(ds, kw, tag, encodings) for field, (kw, tag) in _TEXT_FIELDS.items()}
    number = {field: _int(ds, tag) for field, (_, tag) in _INT_FIELDS.items()}
    return InstanceRecord(
        sop_instance_uid=uid["sop_instance_uid"],
        sop_class_uid=uid["sop_class_uid"],
        study_uid=uid["study_uid"],
        series_uid=uid["series_uid"],
        transfer_syntax_uid=validate_uid(_plain(ts), "Transfer Syntax UID"),
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


def _encodings(ds: Dataset) -> list[str] | None:
    """Python codecs of the declared Specific Character Set; ``None`` when it is absent."""
    elem = ds.get_item(_CHARSET)
    if elem is None or not elem.value:
        return None
    value = ds[_CHARSET].value
    names = [value] if isinstance(value, str) else list(value)
    return convert_encodings([str(n) for n in names])


def _raw(ds: Dataset, tag: int) -> object:
    """The element's value as read (bytes for a raw element), or ``None`` when absent."""
    elem = ds.get_item(tag)
    return None if elem is None else elem.value


def _uid(ds: Dataset, tag: int) -> str:
    value = _raw(ds, tag)
    if value is None:
        raise InvalidInput(f"the instance has no {keyword_for_tag(tag)}")
    text = _plain(value)
    if "\\" in text:
        raise InvalidInput(f"the instance has several values in {keyword_for_tag(tag)}")
    return text


def _plain(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, MultiValue | list):
        value = "\\".join(str(v) for v in value)
    return str(value).rstrip("\x00 ")


def _text(ds: Dataset, keyword: str, tag: int, encodings: list[str] | None) -> str:
    """The decoded value of a text element; ``""`` when absent or undecodable."""
    value = _raw(ds, tag)
    if value is None:
        return ""
    try:
        if isinstance(value, bytes):
            if encodings is None:
                value = _guess_decode(value)
            elif keyword.endswith("Name"):  # PN: up to three groups, each may switch charset
                parts = value.split(b"=")
                value = "=".join(decode_bytes(p, encodings, PN_DELIMS) for p in parts)
            else:
                value = decode_bytes(value, encodings, TEXT_VR_DELIMS)
    except Exception as exc:  # a damaged value must not lose the instance
        log.warning("cannot decode %s (%s); indexing it as empty", keyword, type(exc).__name__)
        return ""
    return _plain(value).strip()


def _guess_decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _int(ds: Dataset, tag: int) -> int | None:
    value = _raw(ds, tag)
    if value is None:
        return None
    text = _plain(value).split("\\")[0].strip()
    try:
        return int(text)
    except ValueError:
        try:
            return int(float(text))
        except (ValueError, OverflowError):
            return None
