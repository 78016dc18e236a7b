"""Query results as frozen rows: what the window's tables show, built from C-FIND identifiers.

A :class:`StudyRow` is one STUDY-level match (PS3.4 C.6.2.1.2), a :class:`SeriesRow` one
SERIES-level match (C.6.2.1.3). Both are plain values with no Qt, so the CLI, scripts and tests
can use them too. The same study found on two nodes is one row with both names in
``sources`` (:meth:`StudyRow.merged`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cache
from typing import Any

from pydicom import config
from pydicom.charset import decode_bytes, default_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import TEXT_VR_DELIMS

from workstation.text import format_date, format_person_name, format_time


class _Reader:
    """Reads the values of one C-FIND identifier as plain text and numbers.

    An identifier arrives as raw elements, and pydicom converts each on first access through
    its hooks, VR validation and character-set look-ups: ~0.35 ms per study row, in the worker
    that then holds the GIL the window needs for painting. The elements a row reads have a
    handful of VRs, so their raw bytes are decoded here exactly as pydicom's converters would
    (same splitting, padding and character sets, without the validation warnings): ~0.1 ms a
    row. Anything unusual (an explicit VR other than the dictionary's, an element already
    converted, a name with several groups, a number pydicom would parse differently) takes
    pydicom's own path.
    """

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self._codecs: list[str] | None = None

    def text(self, keyword: str) -> str:
        """The value of ``keyword`` as one line of text; ``""`` when absent or empty."""
        fast = self._raw_text(keyword)
        if fast is not None:
            return fast
        value: Any = self.ds.get(keyword)
        if value is None:
            return ""
        if isinstance(value, list | tuple | MultiValue):
            return "\\".join(str(v) for v in value)
        return str(value).strip()

    def number(self, keyword: str) -> int | None:
        """An IS value as ``int``; ``None`` when absent, empty or not a number."""
        fast = self._raw_int(keyword)
        if fast is not None:
            return fast[0]
        value: Any = self.ds.get(keyword)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    def _codecs_of_text(self) -> list[str]:
        if self._codecs is None:
            encodings = self.ds._character_set  # what pydicom decodes this dataset's text with
            self._codecs = [encodings] if isinstance(encodings, str) else list(encodings)
        return self._codecs

    def _raw(self, keyword: str) -> tuple[str, bytes | None] | None:
        """(VR, raw bytes; None when absent) of an element not converted yet, else None."""
        tag, vr = _tag_and_vr(keyword)
        elem = self.ds.get_item(tag)
        if elem is None:
            return vr, None
        raw = elem.value if isinstance(elem, RawDataElement) and elem.VR in (None, vr) else None
        return (vr, raw) if isinstance(raw, bytes) else None

    def _raw_text(self, keyword: str) -> str | None:
        found = self._raw(keyword)
        if found is None:
            return None
        vr, raw = found
        if not raw:
            return ""
        try:
            if vr in _TEXT_VRS:
                text = decode_bytes(raw, self._codecs_of_text(), TEXT_VR_DELIMS)
                values = [v.rstrip("\x00 ") for v in text.split("\\")]
            elif vr == "PN":
                text = decode_bytes(raw.rstrip(b"\x00 "), self._codecs_of_text(), TEXT_VR_DELIMS)
                if "=" in text:
                    return None  # several name groups: PersonName's own rules
                values = text.split("\\")
            elif vr in _STRING_VRS or (vr in _DATE_VRS and not config.datetime_conversion):
                text = raw.decode(default_encoding)
                if vr == "UI":
                    text = text.rstrip("\x00 ")
                values = text.rstrip(" \x00").split("\\")
            else:
                return None
        except Exception:  # let pydicom decide (and warn) about damaged values
            return None
        return values[0].strip() if len(values) == 1 else "\\".join(values)

    def _raw_int(self, keyword: str) -> tuple[int | None] | None:
        found = self._raw(keyword)
        if found is None or found[0] != "IS":
            return None
        if found[1] is None:
            return (None,)
        text = found[1].decode(default_encoding).rstrip(" \x00")
        if not text or "\\" in text:
            return (None,)  # empty, or several values: no single count
        digits = text.strip().removeprefix("+").removeprefix("-")
        if not (digits.isascii() and digits.isdigit()):
            return None
        return (int(text),)


_TEXT_VRS = frozenset({"LO", "SH", "UC"})
_STRING_VRS = frozenset({"AE", "AS", "CS", "UI"})
_DATE_VRS = frozenset({"DA", "TM"})


@cache
def _tag_and_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    return tag, dictionary_VR(tag)


_FILLABLE = (
    "patient_name", "patient_id", "birth_date", "sex", "study_date", "study_time", "accession",
    "modalities", "description", "referring_physician", "study_id",
)  # fmt: skip


class LocalPresence(StrEnum):
    """How much of a study the local store already holds."""

    COMPLETE = "complete"
    PARTIAL = "partial"
    ABSENT = "—"

    @classmethod
    def of(cls, local_count: int, expected: int | None) -> LocalPresence:
        """From the store's instance count and the PACS's NumberOfStudyRelatedInstances.

        Without an expected count, anything held counts as complete: we cannot tell more.
        """
        if local_count <= 0:
            return cls.ABSENT
        if expected is None or local_count >= expected:
            return cls.COMPLETE
        return cls.PARTIAL


@dataclass(frozen=True)
class StudyRow:
    """One study as the PACS described it, with the node(s) that hold it."""

    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    sex: str = ""
    study_date: str = ""
    study_time: str = ""
    accession: str = ""
    modalities: tuple[str, ...] = ()
    description: str = ""
    referring_physician: str = ""
    study_id: str = ""
    institution: str = ""
    series_count: int | None = None
    instance_count: int | None = None
    sources: tuple[str, ...] = ()

    @classmethod
    def from_dataset(cls, ds: Dataset, source: str) -> StudyRow:
        """A row from a STUDY-level C-FIND identifier returned by node ``source``."""
        read = _Reader(ds)
        modalities = tuple(m for m in read.text("ModalitiesInStudy").split("\\") if m)
        return cls(
            study_uid=read.text("StudyInstanceUID"),
            patient_name=read.text("PatientName"),
            patient_id=read.text("PatientID"),
            birth_date=read.text("PatientBirthDate"),
            sex=read.text("PatientSex"),
            study_date=read.text("StudyDate"),
            study_time=read.text("StudyTime"),
            accession=read.text("AccessionNumber"),
            modalities=modalities,
            description=read.text("StudyDescription"),
            referring_physician=read.text("ReferringPhysicianName"),
            study_id=read.text("StudyID"),
            institution=read.text("InstitutionName"),
            series_count=read.number("NumberOfStudyRelatedSeries"),
            instance_count=read.number("NumberOfStudyRelatedInstances"),
            sources=(source,),
        )

    def merged(self, other: StudyRow) -> StudyRow:
        """This row with ``other``'s sources added and its values filling our empty ones.

        Counts take the larger value: a node that holds more of the study is the better source.
        """
        if other.study_uid != self.study_uid:
            raise ValueError("only rows of the same study can be merged")
        sources = self.sources + tuple(s for s in other.sources if s not in self.sources)
        filled = {
            name: getattr(other, name)
            for name in [
                "patient_name",
                "patient_id",
                "birth_date",
                "sex",
                "study_date",
                "study_time",
                "accession",
                "modalities",
                "description",
                "referring_physician",
                "study_id",
                "institution",
            ]
            if not getattr(self, name) and getattr(other, name)
        }
        return replace(
            self,
            sources=sources,
            series_count=_larger(self.series_count, other.series_count),
            instance_count=_larger(self.instance_count, other.instance_count),
            **filled,
        )

    @property
    def label(self) -> str:
        """A short human label for queues and logs: patient, date, description."""
        parts = [
            format_person_name(self.patient_name) or self.patient_id,
            format_date(self.study_date),
            self.description,
        ]
        return " · ".join(p for p in parts if p) or self.study_uid


@dataclass(frozen=True)
class SeriesRow:
    """One series of a study as the PACS described it."""

    study_uid: str
    series_uid: str
    modality: str = ""
    number: int | None = None
    description: str = ""
    body_part: str = ""
    series_date: str = ""
    series_time: str = ""
    instance_count: int | None = None
    source: str = ""

    @classmethod
    def from_dataset(cls, ds: Dataset, source: str) -> SeriesRow:
        """A row from a SERIES-level C-FIND identifier returned by node ``source``."""
        read = _Reader(ds)
        return cls(
            study_uid=read.text("StudyInstanceUID"),
            series_uid=read.text("SeriesInstanceUID"),
            modality=read.text("Modality"),
            number=read.number("SeriesNumber"),
            description=read.text("SeriesDescription"),
            body_part=read.text("BodyPartExamined"),
            series_date=read.text("SeriesDate"),
            series_time=read.text("SeriesTime"),
            instance_count=read.number("NumberOfSeriesRelatedInstances"),
            source=source,
        )


def _larger(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


__all__ = [
    "LocalPresence",
    "SeriesRow",
    "StudyRow",
    "format_date",
    "format_person_name",
    "format_time",
]
