"""Table and header views whose painting runs inside one Python call, so it keeps the GIL.

A view paints by asking its model for every visible cell; for the window's Python models
(:class:`~workstation.ui.common.table_model.RowTableModel`) that is two calls into Python per cell,
and eleven per header section. Each call Qt makes from C++ into Python must first take the
GIL, and while a worker thread is busy (decoding C-FIND responses, receiving C-STOREs) each
take can wait for the interpreter's switch interval. Measured offscreen with two busy Python
threads: one repaint of a 13-column table took 1.3 s instead of 8 ms, and one repaint of its
header 200 ms instead of 2 ms. Entered from Python, the same paint holds the GIL from start to
end: 44 ms and 3 ms (the busy threads still get their turn whenever Python code runs).
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, Qt
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget


class HeaderView(QHeaderView):
    """A QHeaderView painted from Python (see the module docstring)."""

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)


class TableView(QTableView):
    """A QTableView painted from Python, with a :class:`HeaderView` on top."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        header = HeaderView(Qt.Orientation.Horizontal, self)
        header.setSectionsClickable(True)  # as QTableView sets up its own header
        header.setHighlightSections(True)
        self.setHorizontalHeader(header)

    def configure(
        self,
        model: QAbstractItemModel,
        *,
        sort: tuple[int, Qt.SortOrder] | None = None,
        selection: QAbstractItemView.SelectionMode = (
            QAbstractItemView.SelectionMode.ExtendedSelection
        ),
        row_height: int = 22,
    ) -> None:
        """Show ``model`` the way every table of the window does.

        Read-only rows selected whole (``selection`` says how many), alternating colours, one
        line per row of ``row_height`` pixels, no row numbers. ``sort`` (column, order) turns
        on sorting by a header click and sorts now; the window's models sort themselves.
        """
        self.setModel(model)
        if sort is not None:
            self.setSortingEnabled(True)
            self.sortByColumn(*sort)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(selection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(row_height)

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
