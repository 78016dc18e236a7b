"""The base of the window's table models: frozen rows, columns from an Enum, keyed upserts.

Each subclass says how a row is keyed and how each column is shown and sorted; this class does
the Qt bookkeeping: rows appended in one beginInsertRows/endInsertRows per batch, rows that
already exist (same key) replaced in place with a dataChanged, removals, and a sort key in
:data:`SORT_ROLE` for a QSortFilterProxyModel.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import Any, Generic, TypeVar

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
)

#: Role with a value that sorts the column correctly (numbers as numbers, dates as YYYYMMDD).
SORT_ROLE = Qt.ItemDataRole.UserRole
#: Role with the row's frozen dataclass itself.
ROW_ROLE = Qt.ItemDataRole.UserRole + 1

R = TypeVar("R")
C = TypeVar("C", bound=Enum)
AnyIndex = QModelIndex | QPersistentModelIndex

_ROOT = QModelIndex()
_DISPLAY = Qt.ItemDataRole.DisplayRole
_ALIGN = Qt.ItemDataRole.TextAlignmentRole
_TOOLTIP = Qt.ItemDataRole.ToolTipRole
#: Roles no table here uses: answered without any work (views ask for them on every paint).
_UNUSED_ROLES = frozenset(
    {
        Qt.ItemDataRole.DecorationRole,
        Qt.ItemDataRole.CheckStateRole,
        Qt.ItemDataRole.SizeHintRole,
        Qt.ItemDataRole.BackgroundRole,
        Qt.ItemDataRole.EditRole,
        Qt.ItemDataRole.StatusTipRole,
        Qt.ItemDataRole.WhatsThisRole,
        Qt.ItemDataRole.AccessibleTextRole,
        Qt.ItemDataRole.AccessibleDescriptionRole,
    }
)
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter


class RowTableModel(QAbstractTableModel, Generic[R, C]):
    """A flat table of frozen rows. Subclasses set ``columns`` and implement the hooks."""

    columns: Sequence[C] = ()
    #: Columns shown right-aligned (counts, sizes).
    numeric: frozenset[C] = frozenset()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[R] = []
        self._positions: dict[str, int] = {}
        # Per row, computed on first use: (display texts, sort keys), one per column. Views
        # call data() thousands of times a second; each call must be a lookup, not formatting.
        self._cells: list[tuple[list[str], list[Any]] | None] = []
        self._ncols = len(self.columns)
        self._sort: tuple[int, bool] | None = None  # (column, descending)
        self._align = tuple(
            int((_RIGHT if c in self.numeric else _LEFT).value) for c in self.columns
        )

    # -- hooks ---------------------------------------------------------------------------------

    def key(self, row: R) -> str:
        """The identity of a row: a new row with the same key replaces (or merges into) it."""
        raise NotImplementedError

    def display(self, row: R, column: C) -> str:
        raise NotImplementedError

    def sort_key(self, row: R, column: C) -> Any:
        return self.display(row, column).casefold()

    def tooltip(self, row: R, column: C) -> str | None:
        return None

    def merge(self, old: R, new: R) -> R:
        """The row to keep when ``new`` has the key of ``old``; by default the newer one."""
        return new

    def extra_data(self, row: R, column: C, role: int) -> Any:
        """Other roles (colours, fonts) for subclasses; ``None`` when not handled."""
        return None

    # -- rows ----------------------------------------------------------------------------------

    @property
    def rows(self) -> list[R]:
        return list(self._rows)

    def row_at(self, position: int) -> R:
        return self._rows[position]

    def position(self, key: str) -> int | None:
        return self._positions.get(key)

    def upsert(self, rows: Iterable[R]) -> int:
        """Merge rows with a known key in place; append the others in one batch. Returns added."""
        fresh: list[R] = []
        fresh_pos: dict[str, int] = {}
        changed: list[int] = []
        for row in rows:
            key = self.key(row)
            if key in self._positions:
                position = self._positions[key]
                self._rows[position] = self.merge(self._rows[position], row)
                self._cells[position] = None
                changed.append(position)
            elif key in fresh_pos:
                fresh[fresh_pos[key]] = self.merge(fresh[fresh_pos[key]], row)
            else:
                fresh_pos[key] = len(fresh)
                fresh.append(row)
        if changed:
            self._changed(min(changed), max(changed))
        if fresh:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
            for offset, row in enumerate(fresh):
                self._positions[self.key(row)] = first + offset
            self._rows.extend(fresh)
            self._cells.extend([None] * len(fresh))
            self.endInsertRows()
        if changed or fresh:
            self._resort()
        return len(fresh)

    # -- sorting (in the model: a QSortFilterProxyModel costs a Python data() call per
    #    comparison, which made every batch of a large search stall the GUI thread) ---------

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by ``column`` (-1: keep arrival order); new rows are kept in that order."""
        if not 0 <= column < self._ncols:
            self._sort = None
            return
        self._sort = (column, order == Qt.SortOrder.DescendingOrder)
        self._resort()

    def _resort(self) -> None:
        if self._sort is None or len(self._rows) < 2:
            return
        column, descending = self._sort
        keys = [self._cell_values(i)[1][column] for i in range(len(self._rows))]
        order = sorted(range(len(keys)), key=keys.__getitem__, reverse=descending)
        if order == sorted(order):
            return
        self.layoutAboutToBeChanged.emit()
        moved_to = [0] * len(order)
        for new, old in enumerate(order):
            moved_to[old] = new
        self._rows = [self._rows[i] for i in order]
        self._cells = [self._cells[i] for i in order]
        self._positions = {self.key(row): i for i, row in enumerate(self._rows)}
        before = self.persistentIndexList()
        after = [self.index(moved_to[i.row()], i.column()) for i in before]
        self.changePersistentIndexList(before, after)
        self.layoutChanged.emit()

    def remove_keys(self, keys: Iterable[str]) -> None:
        """Remove the rows with these keys (one beginRemoveRows per row, from the bottom)."""
        positions = sorted((self._positions[k] for k in keys if k in self._positions), reverse=True)
        for position in positions:
            self.beginRemoveRows(QModelIndex(), position, position)
            del self._rows[position]
            del self._cells[position]
            self.endRemoveRows()
        if positions:
            self._positions = {self.key(row): i for i, row in enumerate(self._rows)}

    def clear(self) -> None:
        self.beginResetModel()
        self._rows = []
        self._positions = {}
        self._cells = []
        self.endResetModel()

    def refresh_column(self, column: C, keys: Iterable[str] | None = None) -> None:
        """Recompute one column of the rows with ``keys`` (every row when None) and repaint."""
        col = list(self.columns).index(column)
        if keys is None:
            positions = list(range(len(self._rows)))
        else:
            positions = sorted({p for k in keys if (p := self._positions.get(k)) is not None})
        for position in positions:
            cells = self._cells[position]
            if cells is not None:
                row = self._rows[position]
                cells[0][col] = self.display(row, column)
                cells[1][col] = self.sort_key(row, column)
        if positions:
            first, last = positions[0], positions[-1]
            self.dataChanged.emit(self.index(first, col), self.index(last, col))
            if self._sort is not None and self._sort[0] == col:
                self._resort()

    def _cell_values(self, position: int) -> tuple[list[str], list[Any]]:
        cells = self._cells[position]
        if cells is None:
            row = self._rows[position]
            cells = (
                [self.display(row, c) for c in self.columns],
                [self.sort_key(row, c) for c in self.columns],
            )
            self._cells[position] = cells
        return cells

    def _changed(self, first: int, last: int) -> None:
        self.dataChanged.emit(self.index(first, 0), self.index(last, len(self.columns) - 1))

    # -- QAbstractTableModel -------------------------------------------------------------------

    def rowCount(self, parent: AnyIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = _ROOT) -> int:
        return 0 if parent.isValid() else self._ncols

    def data(self, index: AnyIndex, role: int = _DISPLAY) -> Any:
        position = index.row()
        col = index.column()
        if not 0 <= position < len(self._rows) or not 0 <= col < self._ncols:
            return None  # also covers an invalid index (row -1)
        if role == _DISPLAY:
            return self._cell_values(position)[0][col]
        if role == SORT_ROLE:
            return self._cell_values(position)[1][col]
        if role == _ALIGN:
            return self._align[col]
        if role in _UNUSED_ROLES:
            return None
        row = self._rows[position]
        if role == ROW_ROLE:
            return row
        if role == _TOOLTIP:
            return self.tooltip(row, self.columns[col])
        return self.extra_data(row, self.columns[col], role)

    def headerData(
        self,
        section: int,
        orientation: Qt.Orientation,
        role: int = Qt.ItemDataRole.DisplayRole,
    ) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.columns):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return str(self.columns[section].value)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            column = self.columns[section]
            return int((_RIGHT if column in self.numeric else _LEFT).value)
        return None

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
