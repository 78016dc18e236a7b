"""The study results table: one :class:`~workstation.results.StudyRow` per line.

Rows arrive in batches from the search (see :mod:`workstation.ui.search.study_search`), their
cells made in the C-FIND helper process (:mod:`.study_cells`, which holds the columns); the same
StudyInstanceUID from a second node merges into the existing line, listing both sources. The
"Local" column compares the local store's instance count with NumberOfStudyRelatedInstances.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor, QFont

from workstation.results import LocalPresence, StudyRow
from workstation.ui.common.table_model import Cells, RowTableModel
from workstation.ui.common.thread_guard import check_gui_thread
from workstation.ui.search import study_cells
from workstation.ui.search.study_cells import StudyColumn

__all__ = ["StudyColumn", "StudyTableModel"]

_LOCAL_COLUMN = list(StudyColumn).index(StudyColumn.LOCAL)
_COMPLETE = QColor(0x1B, 0x7F, 0x3B)
_PARTIAL = QColor(0xB3, 0x6B, 0x00)


class StudyTableModel(RowTableModel[StudyRow, StudyColumn]):
    """The studies found, merged across nodes, with what the local store holds of each."""

    columns = tuple(StudyColumn)
    numeric = frozenset({StudyColumn.SERIES, StudyColumn.INSTANCES})
    styled = frozenset({StudyColumn.PATIENT_NAME, StudyColumn.LOCAL})

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._local: dict[str, int] = {}
        self._bold = QFont()
        self._bold.setBold(True)

    def key(self, row: StudyRow) -> str:
        return row.study_uid

    def merge(self, old: StudyRow, new: StudyRow) -> StudyRow:
        return old.merged(new)

    # -- the local store -------------------------------------------------------------------------

    def local_count(self, study_uid: str) -> int:
        return self._local.get(study_uid, 0)

    def presence(self, row: StudyRow) -> LocalPresence:
        return LocalPresence.of(self.local_count(row.study_uid), row.instance_count)

    def prepared(self, row: StudyRow, cells: Cells) -> Cells:
        """Redo the Local column of a row prepared elsewhere (by :class:`.StudyCells`, which
        knows nothing of the store) when the store holds some of the study."""
        if row.study_uid in self._local:
            col = _LOCAL_COLUMN
            cells[0][col] = self.display(row, StudyColumn.LOCAL)
            cells[1][col] = self.sort_key(row, StudyColumn.LOCAL)
        return cells

    def set_local_counts(self, counts: dict[str, int], *, replace_all: bool = False) -> None:
        """Update how many instances of each study the store holds; repaint the Local column."""
        check_gui_thread("StudyTableModel.set_local_counts")
        changed = [uid for uid, n in counts.items() if self._local.get(uid, 0) != n]
        if replace_all:
            changed += [uid for uid in self._local if uid not in counts]
            self._local = dict(counts)
        else:
            self._local.update(counts)
        if changed:
            self.refresh_column(StudyColumn.LOCAL, changed)

    # -- cells -----------------------------------------------------------------------------------

    def display(self, row: StudyRow, column: StudyColumn) -> str:
        return study_cells.display(row, column, self.local_count(row.study_uid))

    def sort_key(self, row: StudyRow, column: StudyColumn) -> Any:
        return study_cells.sort_key(row, column, self.local_count(row.study_uid))

    def make_cells(self, row: StudyRow) -> Cells:
        return study_cells.study_cells(row, self.local_count(row.study_uid))

    def tooltip(self, row: StudyRow, column: StudyColumn) -> str | None:
        match column:
            case StudyColumn.LOCAL:
                held = self.local_count(row.study_uid)
                of = f" of {row.instance_count}" if row.instance_count is not None else ""
                return f"{held}{of} images in the local store"
            case StudyColumn.SOURCES:
                return "Found on: " + ", ".join(row.sources)
            case StudyColumn.PATIENT_NAME:
                return row.patient_name.replace("^", " ")
            case StudyColumn.DESCRIPTION | StudyColumn.REFERRING:
                return self.display(row, column) or None
        return None

    def extra_data(self, row: StudyRow, column: StudyColumn, role: int) -> Any:
        if column is StudyColumn.LOCAL and role == Qt.ItemDataRole.ForegroundRole:
            presence = self.presence(row)
            if presence is LocalPresence.COMPLETE:
                return _COMPLETE
            if presence is LocalPresence.PARTIAL:
                return _PARTIAL
        if column is StudyColumn.PATIENT_NAME and role == Qt.ItemDataRole.FontRole:
            return self._bold
        return None
