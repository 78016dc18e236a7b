"""Query results as frozen rows: what the window's tables show, built from C-FIND identifiers.

A :class:`StudyRow` is one STUDY-level match (PS3.4 C.6.2.1.2), a :class:`SeriesRow` one
SERIES-level match (C.6.2.1.3). Both are plain values with no Qt, so the CLI, scripts and tests
can use them too. The same study found on two nodes is one row with both names in
``sources`` (:meth:`StudyRow.merged`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue


def _text(ds: Dataset, keyword: str) -> str:
    """The value of ``keyword`` as one line of text; ``""`` when absent or empty."""
    value: Any = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    """An IS/US value as ``int``; ``None`` when absent, empty or not a number."""
    value: Any = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def format_person_name(value: str) -> str:
    """``Family^Given^Middle^Prefix^Suffix`` as ``Family, Given Middle`` (PS3.5 6.2).

    Of the alphabetic, ideographic and phonetic groups (``=``), the first non-empty one is shown,
    followed by the ideographic one in parentheses when both exist.
    """
    groups = [g for g in value.split("=")]

    def one(group: str) -> str:
        parts = [p.strip() for p in group.split("^")]
        family = parts[0] if parts else ""
        rest = " ".join(p for p in parts[1:3] if p)
        prefix = parts[3] if len(parts) > 3 else ""
        suffix = parts[4] if len(parts) > 4 else ""
        name = f"{family}, {rest}" if family and rest else family or rest
        name = f"{prefix} {name}".strip() if prefix else name
        return f"{name}, {suffix}" if suffix else name

    shown = [one(g) for g in groups if g.strip()]
    if not shown:
        return ""
    if len(groups) > 1 and groups[0].strip() and len(shown) > 1:
        return f"{shown[0]} ({shown[1]})"
    return shown[0]


def format_date(value: str) -> str:
    """DA ``YYYYMMDD`` as ``YYYY-MM-DD`` (unambiguous in every locale); other text unchanged."""
    text = value.strip().replace(".", "")
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return value.strip()


def format_time(value: str) -> str:
    """TM ``HHMMSS.frac`` as ``HH:MM``; other text unchanged."""
    text = value.strip().replace(":", "")
    if len(text) >= 4 and text[:4].isdigit():
        return f"{text[:2]}:{text[2:4]}"
    return value.strip()


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
    series_count: int | None = None
    instance_count: int | None = None
    sources: tuple[str, ...] = ()

    @classmethod
    def from_dataset(cls, ds: Dataset, source: str) -> StudyRow:
        """A row from a STUDY-level C-FIND identifier returned by node ``source``."""
        modalities = tuple(m for m in _text(ds, "ModalitiesInStudy").split("\\") if m)
        return cls(
            study_uid=_text(ds, "StudyInstanceUID"),
            patient_name=_text(ds, "PatientName"),
            patient_id=_text(ds, "PatientID"),
            birth_date=_text(ds, "PatientBirthDate"),
            sex=_text(ds, "PatientSex"),
            study_date=_text(ds, "StudyDate"),
            study_time=_text(ds, "StudyTime"),
            accession=_text(ds, "AccessionNumber"),
            modalities=modalities,
            description=_text(ds, "StudyDescription"),
            referring_physician=_text(ds, "ReferringPhysicianName"),
            study_id=_text(ds, "StudyID"),
            series_count=_int(ds, "NumberOfStudyRelatedSeries"),
            instance_count=_int(ds, "NumberOfStudyRelatedInstances"),
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
        return cls(
            study_uid=_text(ds, "StudyInstanceUID"),
            series_uid=_text(ds, "SeriesInstanceUID"),
            modality=_text(ds, "Modality"),
            number=_int(ds, "SeriesNumber"),
            description=_text(ds, "SeriesDescription"),
            body_part=_text(ds, "BodyPartExamined"),
            series_date=_text(ds, "SeriesDate"),
            series_time=_text(ds, "SeriesTime"),
            instance_count=_int(ds, "NumberOfSeriesRelatedInstances"),
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
