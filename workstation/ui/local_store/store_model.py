"""Table models of the local store browser: patients, studies and series of the index.

Each model holds the frozen entries of :mod:`workstation.store.records`, names its columns
with an Enum and builds on the window's :class:`~workstation.ui.common.table_model.RowTableModel`.
:meth:`EntryTableModel.set_entries` updates rows in place by key (removing and adding only
what changed), so a refresh while images arrive keeps the user's selection and scroll position.
The browser's filter runs in SQL (:mod:`workstation.store.queries`), not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from typing import Any, TypeVar

from workstation.store.records import PatientEntry, SeriesEntry, StudyEntry
from workstation.text import fold as fold_text
from workstation.text import format_date, format_person_name, format_sex, format_time
from workstation.ui.common.table_model import ROW_ROLE, SORT_ROLE, RowTableModel

__all__ = [
    "ROW_ROLE",
    "SORT_ROLE",
    "EntryTableModel",
    "LocalSeriesTableModel",
    "LocalStudyTableModel",
    "PatientTableModel",
    "fold_text",
]

E = TypeVar("E")
C = TypeVar("C", bound=Enum)


class EntryTableModel(RowTableModel[E, C]):
    """A read-only table of store entries that :meth:`set_entries` keeps in step with the index.

    The base class sorts the rows itself when the view asks; text sorts accent- and
    case-insensitively, numbers as numbers.
    """

    styled: frozenset[C] | None = frozenset()  # no fonts or colours

    def sort_key(self, row: E, column: C) -> Any:
        if column in self.numeric:
            text = self.display(row, column)
            return int(text) if text.isdigit() else -1
        return fold_text(self.display(row, column))

    def entry(self, position: int) -> E | None:
        return self._rows[position] if 0 <= position < len(self._rows) else None

    def set_entries(self, entries: Iterable[E]) -> None:
        """Show exactly ``entries``: vanished keys removed, known keys updated in place (so
        selections survive), new keys appended."""
        new = list(entries)
        wanted = {self.key(e) for e in new}
        self.remove_keys([k for k in (self.key(r) for r in self._rows) if k not in wanted])
        current = {self.key(r): r for r in self._rows}
        changed = [e for e in new if current.get(self.key(e)) != e]
        if changed:
            self.upsert(changed)


class PatientColumn(Enum):
    NAME = "Patient name"
    PATIENT_ID = "Patient ID"
    BIRTH_DATE = "Birth date"
    SEX = "Sex"


class PatientTableModel(EntryTableModel[PatientEntry, PatientColumn]):
    columns = tuple(PatientColumn)

    def key(self, row: PatientEntry) -> str:
        return str(row.key)

    def display(self, row: PatientEntry, column: PatientColumn) -> str:
        match column:
            case PatientColumn.NAME:
                return format_person_name(row.patient_name) or "(no name)"
            case PatientColumn.PATIENT_ID:
                return row.patient_id
            case PatientColumn.BIRTH_DATE:
                return format_date(row.birth_date)
            case PatientColumn.SEX:
                return format_sex(row.sex)

    def tooltip(self, row: PatientEntry, column: PatientColumn) -> str | None:
        studies = f"{row.study_count} stud{'ies' if row.study_count != 1 else 'y'} stored"
        return f"{format_person_name(row.patient_name)}\nID {row.patient_id}\n{studies}"


class LocalStudyColumn(Enum):
    DATE = "Date"
    DESCRIPTION = "Study description"
    MODALITIES = "Modality"
    ACCESSION = "Accession"
    IMAGES = "Images"


class LocalStudyTableModel(EntryTableModel[StudyEntry, LocalStudyColumn]):
    columns = tuple(LocalStudyColumn)
    numeric = frozenset({LocalStudyColumn.IMAGES})

    def key(self, row: StudyEntry) -> str:
        return row.study_uid

    def display(self, row: StudyEntry, column: LocalStudyColumn) -> str:
        match column:
            case LocalStudyColumn.DATE:
                when = f"{format_date(row.study_date)} {format_time(row.study_time)}"
                return when.strip()
            case LocalStudyColumn.DESCRIPTION:
                return row.study_description
            case LocalStudyColumn.MODALITIES:
                return ", ".join(row.modalities)
            case LocalStudyColumn.ACCESSION:
                return row.accession_number
            case LocalStudyColumn.IMAGES:
                return str(row.instance_count)

    def tooltip(self, row: StudyEntry, column: LocalStudyColumn) -> str | None:
        lines = [row.study_description or "(no description)"]
        if row.referring_physician_name:
            lines.append(f"Referring: {format_person_name(row.referring_physician_name)}")
        lines.append(f"{row.series_count} series, {row.instance_count} images stored")
        lines.append(f"Study UID {row.study_uid}")
        return "\n".join(lines)


class LocalSeriesColumn(Enum):
    NUMBER = "#"
    MODALITY = "Modality"
    DESCRIPTION = "Series description"
    BODY_PART = "Body part"
    IMAGES = "Images"


class LocalSeriesTableModel(EntryTableModel[SeriesEntry, LocalSeriesColumn]):
    columns = tuple(LocalSeriesColumn)
    numeric = frozenset({LocalSeriesColumn.NUMBER, LocalSeriesColumn.IMAGES})

    def key(self, row: SeriesEntry) -> str:
        return row.series_uid

    def display(self, row: SeriesEntry, column: LocalSeriesColumn) -> str:
        match column:
            case LocalSeriesColumn.NUMBER:
                return "" if row.series_number is None else str(row.series_number)
            case LocalSeriesColumn.MODALITY:
                return row.modality
            case LocalSeriesColumn.DESCRIPTION:
                return row.series_description
            case LocalSeriesColumn.BODY_PART:
                return row.body_part_examined
            case LocalSeriesColumn.IMAGES:
                return str(row.instance_count)

    def tooltip(self, row: SeriesEntry, column: LocalSeriesColumn) -> str | None:
        return f"{row.series_description or '(no description)'}\nSeries UID {row.series_uid}"


# -- the words of the browser's confirmations ------------------------------------------------


def images_text(count: int) -> str:
    return f"{count} image{'s' * (count != 1)}"


def patient_label(name: str, patient_id: str) -> str:
    shown = format_person_name(name) or "an unnamed patient"
    return f"{shown} (ID {patient_id})" if patient_id else shown


def study_deletion_question(study: StudyEntry) -> str:
    """What the confirmation says before a study is deleted: what, whose, how many images."""
    what = study.study_description or "(no description)"
    when = format_date(study.study_date) or "unknown date"
    return (
        f"Delete the study “{what}” of {when} for "
        f"{patient_label(study.patient_name, study.patient_id)}?\n\n"
        f"{study.series_count} series, {images_text(study.instance_count)} will be removed from "
        "the local store. This cannot be undone."
    )


def series_deletion_question(series: SeriesEntry, study: StudyEntry | None) -> str:
    number = f"#{series.series_number} " if series.series_number is not None else ""
    what = series.series_description or series.modality or "(no description)"
    owner = ""
    if study is not None:
        owner = (
            f" of the study “{study.study_description}” for "
            f"{patient_label(study.patient_name, study.patient_id)}"
        )
    return (
        f"Delete the series {number}“{what}”{owner}?\n\n{images_text(series.instance_count)} "
        "will be removed from the local store. This cannot be undone."
    )
