"""The base of the window's table models: frozen rows, columns from an Enum, keyed upserts.

Each subclass says how a row is keyed and how each column is shown and sorted; this class does
the Qt bookkeeping: rows appended in one beginInsertRows/endInsertRows per batch, rows that
already exist (same key) replaced in place with one dataChanged, removals, and the sorting: the
model sorts itself, a new batch merged into the sorted rows in one layout change.

Painting must stay cheap on the GUI thread even while worker threads hold the GIL: every call
Qt makes into Python has to take the GIL first, and with a busy worker each take can wait up to
the switch interval. So each row's texts and sort keys are computed once, when it is added (in
the worker, for rows prepared with :meth:`RowTableModel.make_cells`), and a cell is painted
with two Python calls (:meth:`~RowTableModel.index` and :meth:`~RowTableModel.multiData`)
instead of about ten (``rowCount``, ``columnCount``, ``flags`` and one ``data`` per role).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from enum import Enum
from operator import itemgetter
from typing import Any, Generic, TypeVar, cast

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QModelRoleData,
    QModelRoleDataSpan,
    QObject,
    QPersistentModelIndex,
    Qt,
)

from workstation.ui.common.thread_guard import check_gui_thread

#: Role with a value that sorts the column correctly (numbers as numbers, dates as YYYYMMDD).
SORT_ROLE = Qt.ItemDataRole.UserRole
#: Role with the row's frozen dataclass itself.
ROW_ROLE = Qt.ItemDataRole.UserRole + 1

R = TypeVar("R")
C = TypeVar("C", bound=Enum)
AnyIndex = QModelIndex | QPersistentModelIndex
#: A row's display texts and sort keys, one per column.
Cells = tuple[list[str], list[Any]]

_ROOT = QModelIndex()
_DISPLAY = Qt.ItemDataRole.DisplayRole
_ALIGN = Qt.ItemDataRole.TextAlignmentRole
_TOOLTIP = Qt.ItemDataRole.ToolTipRole
_DISPLAY_ROLE = int(_DISPLAY.value)
_ALIGN_ROLE = int(_ALIGN.value)
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
_UNUSED_ROLE_NUMBERS = frozenset(int(role.value) for role in _UNUSED_ROLES)
#: Roles a delegate paints with that only :attr:`RowTableModel.styled` columns answer.
_STYLE_ROLE_NUMBERS = frozenset(
    int(role.value) for role in (Qt.ItemDataRole.FontRole, Qt.ItemDataRole.ForegroundRole)
)
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
_LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter


class RowTableModel(QAbstractTableModel, Generic[R, C]):
    """A flat table of frozen rows. Subclasses set ``columns`` and implement the hooks."""

    columns: Sequence[C] = ()
    #: Columns shown right-aligned (counts, sizes).
    numeric: frozenset[C] = frozenset()
    #: Columns whose :meth:`extra_data` gives a font or colour; None: every column.
    styled: frozenset[C] | None = None

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._rows: list[R] = []
        self._keys: list[str] = []
        self._positions: dict[str, int] = {}
        self._cells: list[Cells] = []
        self._ncols = len(self.columns)
        self._sort: tuple[int, bool] | None = None  # (column, descending)
        #: While sorted: the sort column's key of each row, in row order (a new batch is
        #: merged into it); empty when unknown.
        self._order: list[Any] = []
        self._align = tuple(
            int((_RIGHT if c in self.numeric else _LEFT).value) for c in self.columns
        )
        self._styled = frozenset(
            i for i, c in enumerate(self.columns) if self.styled is None or c in self.styled
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

    def prepared(self, row: R, cells: Cells) -> Cells:
        """Cells a worker made with :meth:`make_cells`, brought up to date on the GUI thread:
        a subclass whose cells depend on its own state (not only on the row) redoes them."""
        return cells

    # -- rows ----------------------------------------------------------------------------------

    @property
    def rows(self) -> list[R]:
        return list(self._rows)

    def row_at(self, position: int) -> R:
        return self._rows[position]

    def position(self, key: str) -> int | None:
        return self._positions.get(key)

    def cell_text(self, position: int, column: int) -> str:
        """The display text of one cell (no Qt call, no index)."""
        return self._cells[position][0][column]

    def make_cells(self, row: R) -> Cells:
        """The display texts and sort keys of ``row``.

        Any thread may call this when the subclass's hooks read no Qt object (the study search
        prepares its rows in the worker); see :meth:`prepared`.
        """
        return (
            [self.display(row, c) for c in self.columns],
            [self.sort_key(row, c) for c in self.columns],
        )

    def upsert(self, rows: Iterable[R]) -> int:
        """Merge rows with a known key in place; append the others in one batch. Returns added."""
        return self.upsert_prepared((row, None) for row in rows)

    def upsert_prepared(self, items: Iterable[tuple[R, Cells | None]]) -> int:
        """Like :meth:`upsert`, for rows whose cells :meth:`make_cells` already computed."""
        check_gui_thread(f"{type(self).__name__}.upsert")
        fresh: list[R] = []
        fresh_cells: list[Cells | None] = []
        fresh_pos: dict[str, int] = {}
        changed: list[int] = []
        for row, cells in items:
            key = self.key(row)
            position = self._positions.get(key)
            if position is not None:
                merged = self.merge(self._rows[position], row)
                self._rows[position] = merged
                self._cells[position] = self.make_cells(merged)
                changed.append(position)
            elif (index := fresh_pos.get(key)) is not None:
                fresh[index] = self.merge(fresh[index], row)
                fresh_cells[index] = None
            else:
                fresh_pos[key] = len(fresh)
                fresh.append(row)
                fresh_cells.append(cells)
        in_order = self._in_order(changed)
        if changed:
            self._changed(min(changed), max(changed))
        first = len(self._rows)
        if fresh:
            ready = [
                self.make_cells(row) if cells is None else self.prepared(row, cells)
                for row, cells in zip(fresh, fresh_cells, strict=True)
            ]
            self.beginInsertRows(_ROOT, first, first + len(fresh) - 1)
            self._rows.extend(fresh)
            self._keys.extend(fresh_pos)  # in insertion order, as ``fresh``
            self._cells.extend(ready)
            self._positions.update(zip(fresh_pos, range(first, first + len(fresh)), strict=True))
            self.endInsertRows()
        if not in_order:
            self._resort()
        elif fresh:
            self._merge_from(first)
        return len(fresh)

    # -- sorting (in the model: a QSortFilterProxyModel costs a Python data() call per
    #    comparison, which made every batch of a large search stall the GUI thread) ---------

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort by ``column`` (-1: keep arrival order); new rows are kept in that order."""
        check_gui_thread(f"{type(self).__name__}.sort")
        if not 0 <= column < self._ncols:
            self._sort = None
            return
        self._sort = (column, order == Qt.SortOrder.DescendingOrder)
        self._resort()

    def _resort(self) -> None:
        """Put every row back in order (stable: equal keys keep their arrival order).

        Only C-level list work (map, sorted with a C key function, itemgetter, dict(zip)), no
        Python code per row; a batch of new rows is merged instead (:meth:`_merge_from`).
        """
        self._order = []
        count = len(self._rows)
        if self._sort is None:
            return
        column, descending = self._sort
        keys = list(map(itemgetter(column), map(itemgetter(1), self._cells)))
        if count < 2:
            self._order = keys
            return
        order = sorted(range(count), key=keys.__getitem__, reverse=descending)
        if order == list(range(count)):
            self._order = keys
            return
        self._order = list(itemgetter(*order)(keys))
        moved_to: list[int] | None = None

        def new_position(old: int) -> int:
            nonlocal moved_to
            if moved_to is None:  # the inverse permutation, when a persistent index asks
                moved_to = sorted(range(count), key=order.__getitem__)
            return moved_to[old]

        self._permute(order, new_position)

    def _merge_from(self, first: int) -> None:
        """Merge the rows from ``first`` on, just appended, into the sorted ones before them.

        The batch is sorted alone and each of its rows placed by bisection among the sorted
        keys (after their equals: arrival order), so a flush costs the batch's sort and a copy
        of the lists, not a sort of the whole table.
        """
        count = len(self._rows)
        if self._sort is None or len(self._order) != first:
            self._resort()
            return
        column, descending = self._sort
        tail = [cells[1][column] for cells in self._cells[first:]]
        batch = sorted(range(count - first), key=tail.__getitem__, reverse=descending)
        prefix = self._order
        if descending:
            ascending = prefix[::-1]
            at = [first - bisect_left(ascending, tail[j]) for j in batch]
        else:
            at = [bisect_right(prefix, tail[j]) for j in batch]
        self._order = prefix + tail
        if at[0] == first and batch == list(range(count - first)):
            return  # the batch belongs after every row, in the order it came: nothing moves
        order: list[int] = []
        done = 0
        for place, j in zip(at, batch, strict=True):
            if place > done:
                order.extend(range(done, place))
                done = place
            order.append(first + j)
        order.extend(range(done, first))
        self._order = list(itemgetter(*order)(self._order))
        rank = {first + j: k for k, j in enumerate(batch)}

        def new_position(old: int) -> int:
            if old >= first:
                k = rank[old]
                return at[k] + k
            return old + bisect_right(at, old)

        self._permute(order, new_position)

    def _permute(self, order: list[int], new_position: Callable[[int], int]) -> None:
        """Rearrange the rows so that row ``i`` is the old row ``order[i]``, in one layout
        change; ``new_position(old)`` moves the persistent indexes (the selection)."""
        self.layoutAboutToBeChanged.emit()
        before = self.persistentIndexList()
        pick = itemgetter(*order)
        self._rows = list(pick(self._rows))
        self._cells = list(pick(self._cells))
        self._keys = list(pick(self._keys))
        self._positions = dict(zip(self._keys, range(len(self._keys)), strict=True))
        if before:
            after = [self.index(new_position(i.row()), i.column()) for i in before]
            self.changePersistentIndexList(before, after)
        self.layoutChanged.emit()

    def _in_order(self, changed: list[int]) -> bool:
        """Whether the rows are still in order after the rows at ``changed`` were merged in
        place: they are while those rows kept their sort keys."""
        if self._sort is None or len(self._order) != len(self._rows):
            return self._sort is None
        column = self._sort[0]
        for position in changed:
            key = self._cells[position][1][column]
            if key != self._order[position]:
                return False
        return True

    def remove_keys(self, keys: Iterable[str]) -> None:
        """Remove the rows with these keys (one beginRemoveRows per row, from the bottom)."""
        check_gui_thread(f"{type(self).__name__}.remove_keys")
        positions = sorted((self._positions[k] for k in keys if k in self._positions), reverse=True)
        ordered = len(self._order) == len(self._rows)
        for position in positions:
            self.beginRemoveRows(_ROOT, position, position)
            del self._rows[position]
            del self._cells[position]
            del self._keys[position]
            if ordered:
                del self._order[position]
            self.endRemoveRows()
        if positions:
            self._positions = dict(zip(self._keys, range(len(self._keys)), strict=True))

    def clear(self) -> None:
        check_gui_thread(f"{type(self).__name__}.clear")
        self.beginResetModel()
        self._rows = []
        self._keys = []
        self._positions = {}
        self._cells = []
        self._order = []
        self.endResetModel()

    def refresh_column(self, column: C, keys: Iterable[str] | None = None) -> None:
        """Recompute one column of the rows with ``keys`` (every row when None) and repaint."""
        check_gui_thread(f"{type(self).__name__}.refresh_column")
        col = list(self.columns).index(column)
        if keys is None:
            positions = list(range(len(self._rows)))
        else:
            positions = sorted({p for k in keys if (p := self._positions.get(k)) is not None})
        for position in positions:
            row, cells = self._rows[position], self._cells[position]
            cells[0][col] = self.display(row, column)
            cells[1][col] = self.sort_key(row, column)
        if positions:
            first, last = positions[0], positions[-1]
            self.dataChanged.emit(self.index(first, col), self.index(last, col))
            if self._sort is not None and self._sort[0] == col:
                self._resort()

    def _changed(self, first: int, last: int) -> None:
        self.dataChanged.emit(self.index(first, 0), self.index(last, len(self.columns) - 1))

    # -- QAbstractTableModel -------------------------------------------------------------------

    def rowCount(self, parent: AnyIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = _ROOT) -> int:
        return 0 if parent.isValid() else self._ncols

    def index(self, row: int, column: int, parent: AnyIndex = _ROOT) -> QModelIndex:
        # The base class asks rowCount() and columnCount(): two calls into Python per cell.
        if parent.isValid() or not (0 <= row < len(self._rows) and 0 <= column < self._ncols):
            return QModelIndex()
        return self.createIndex(row, column)

    def data(self, index: AnyIndex, role: int = _DISPLAY) -> Any:
        position = index.row()
        col = index.column()
        if not 0 <= position < len(self._rows) or not 0 <= col < self._ncols:
            return None  # also covers an invalid index (row -1)
        if role == _DISPLAY:
            return self._cells[position][0][col]
        if role == SORT_ROLE:
            return self._cells[position][1][col]
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

    def multiData(self, index: AnyIndex, roleDataSpan: QModelRoleDataSpan | QModelRoleData) -> None:
        """Every role a delegate paints with, in one call (Qt 6 asks for seven at once)."""
        position = index.row()
        col = index.column()
        if not 0 <= position < len(self._rows) or not 0 <= col < self._ncols:
            return
        span: Iterable[QModelRoleData] = (
            cast("Iterable[QModelRoleData]", roleDataSpan)  # iterable, the stubs do not say so
            if isinstance(roleDataSpan, QModelRoleDataSpan)
            else [roleDataSpan]
        )
        plain = col not in self._styled
        for item in span:
            role = item.role()
            if role == _DISPLAY_ROLE:
                item.setData(self._cells[position][0][col])
            elif role == _ALIGN_ROLE:
                item.setData(self._align[col])
            elif role in _UNUSED_ROLE_NUMBERS or (plain and role in _STYLE_ROLE_NUMBERS):
                item.clearData()  # Qt reuses the span from cell to cell: never leave a value
            else:
                value = self.data(index, role)
                if value is None:
                    item.clearData()
                else:
                    item.setData(value)

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
