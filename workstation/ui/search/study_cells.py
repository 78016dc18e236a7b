"""The study table's columns and cells, in plain Python, for the C-FIND helper process.

A large search's rows are refined and turned into table cells (display texts and sort keys)
where the C-FIND runs, in :mod:`workstation.dimse.find_helper`'s process, not in the window's:
about 50 µs of Python per row, 0.5 s for 10,000 studies, that would otherwise hold the window's
GIL while its table paints. :class:`StudyCells` is the callable the search hands to the helper
(pickled by reference: this module imports no Qt, so the helper loads none);
:class:`~workstation.ui.search.study_model.StudyTableModel` shows the same cells, and redoes
the Local column on the GUI thread when the store holds some of the study.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from workstation.results import (
    LocalPresence,
    StudyRow,
    format_date,
    format_person_name,
    format_time,
)
from workstation.search import SearchCriteria

if TYPE_CHECKING:
    from workstation.ui.common.table_model import Cells


class StudyColumn(Enum):
    PATIENT_NAME = "Patient name"
    PATIENT_ID = "Patient ID"
    BIRTH_DATE = "Birth date"
    SEX = "Sex"
    STUDY_DATE = "Study date"
    MODALITIES = "Modality"
    DESCRIPTION = "Study description"
    ACCESSION = "Accession"
    REFERRING = "Referring physician"
    SERIES = "Series"
    INSTANCES = "Images"
    SOURCES = "Source"
    LOCAL = "Local"


COLUMNS = tuple(StudyColumn)


def display(row: StudyRow, column: StudyColumn, local: int = 0) -> str:
    """The text of one cell; ``local``: the instances of the study the store holds."""
    match column:
        case StudyColumn.PATIENT_NAME:
            return format_person_name(row.patient_name)
        case StudyColumn.PATIENT_ID:
            return row.patient_id
        case StudyColumn.BIRTH_DATE:
            return format_date(row.birth_date)
        case StudyColumn.SEX:
            return row.sex
        case StudyColumn.STUDY_DATE:
            return f"{format_date(row.study_date)} {format_time(row.study_time)}".strip()
        case StudyColumn.MODALITIES:
            return "/".join(row.modalities)
        case StudyColumn.DESCRIPTION:
            return row.description
        case StudyColumn.ACCESSION:
            return row.accession
        case StudyColumn.REFERRING:
            return format_person_name(row.referring_physician)
        case StudyColumn.SERIES:
            return "" if row.series_count is None else str(row.series_count)
        case StudyColumn.INSTANCES:
            return "" if row.instance_count is None else str(row.instance_count)
        case StudyColumn.SOURCES:
            return ", ".join(row.sources)
        case StudyColumn.LOCAL:
            return str(LocalPresence.of(local, row.instance_count))
    return ""


def sort_key(row: StudyRow, column: StudyColumn, local: int = 0) -> Any:
    """What one cell sorts by: numbers as numbers, dates as YYYYMMDDHHMMSS, text folded."""
    match column:
        case StudyColumn.SERIES:
            return -1 if row.series_count is None else row.series_count
        case StudyColumn.INSTANCES:
            return -1 if row.instance_count is None else row.instance_count
        case StudyColumn.STUDY_DATE:
            return f"{row.study_date}{row.study_time}"
        case StudyColumn.BIRTH_DATE:
            return row.birth_date
        case StudyColumn.LOCAL:
            return local
    return display(row, column, local).casefold()


def study_cells(row: StudyRow, local: int = 0) -> Cells:
    """Every column's text and sort key, for a study of which the store holds ``local``."""
    texts = [display(row, column, local) for column in COLUMNS]
    return texts, [sort_key(row, column, local) for column in COLUMNS]


@dataclass(frozen=True)
class StudyCells:
    """The search's work on each match, done in the C-FIND helper process.

    Called with a match, it gives the row and its cells (as if the store held none of it),
    or the row and None when the client-side refine of ``criteria`` drops it (what was typed
    does not really match) or it has no Study Instance UID.
    """

    criteria: SearchCriteria

    def __call__(self, row: StudyRow) -> tuple[StudyRow, Cells | None]:
        if not row.study_uid or not self.criteria.accepts(row):
            return row, None
        return row, study_cells(row)
