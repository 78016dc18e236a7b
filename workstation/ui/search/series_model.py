"""The series of the selected study: one :class:`~workstation.results.SeriesRow` per line."""

from __future__ import annotations

from enum import Enum
from typing import Any

from PySide6.QtCore import QObject

from workstation.results import SeriesRow, format_date, format_time
from workstation.ui.common.table_model import RowTableModel


class SeriesColumn(Enum):
    NUMBER = "#"
    MODALITY = "Modality"
    DESCRIPTION = "Series description"
    BODY_PART = "Body part"
    DATE = "Series date"
    INSTANCES = "Images"
    LOCAL = "Local"
    SOURCE = "Source"


class SeriesTableModel(RowTableModel[SeriesRow, SeriesColumn]):
    """The series found for one study, with how many images the local store holds of each."""

    columns = tuple(SeriesColumn)
    numeric = frozenset({SeriesColumn.NUMBER, SeriesColumn.INSTANCES, SeriesColumn.LOCAL})
    styled: frozenset[SeriesColumn] = frozenset()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._local: dict[str, int] = {}
        #: The study whose series are shown ("" when none).
        self.study_uid = ""

    def key(self, row: SeriesRow) -> str:
        return row.series_uid

    def show_study(self, study_uid: str) -> None:
        """Empty the table for another study."""
        self.study_uid = study_uid
        self.clear()

    def set_local_counts(self, counts: dict[str, int]) -> None:
        """Instances held per SeriesInstanceUID."""
        self._local = dict(counts)
        self.refresh_column(SeriesColumn.LOCAL)

    def display(self, row: SeriesRow, column: SeriesColumn) -> str:
        match column:
            case SeriesColumn.NUMBER:
                return "" if row.number is None else str(row.number)
            case SeriesColumn.MODALITY:
                return row.modality
            case SeriesColumn.DESCRIPTION:
                return row.description
            case SeriesColumn.BODY_PART:
                return row.body_part
            case SeriesColumn.DATE:
                return f"{format_date(row.series_date)} {format_time(row.series_time)}".strip()
            case SeriesColumn.INSTANCES:
                return "" if row.instance_count is None else str(row.instance_count)
            case SeriesColumn.LOCAL:
                held = self._local.get(row.series_uid, 0)
                return str(held) if held else "—"
            case SeriesColumn.SOURCE:
                return row.source
        return ""

    def sort_key(self, row: SeriesRow, column: SeriesColumn) -> Any:
        match column:
            case SeriesColumn.NUMBER:
                return -1 if row.number is None else row.number
            case SeriesColumn.INSTANCES:
                return -1 if row.instance_count is None else row.instance_count
            case SeriesColumn.LOCAL:
                return self._local.get(row.series_uid, 0)
        return self.display(row, column).casefold()

    def tooltip(self, row: SeriesRow, column: SeriesColumn) -> str | None:
        if column is SeriesColumn.LOCAL:
            held = self._local.get(row.series_uid, 0)
            of = f" of {row.instance_count}" if row.instance_count is not None else ""
            return f"{held}{of} images in the local store"
        return None
