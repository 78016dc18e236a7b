"""Fits a table's columns to the rows on screen, once the rows arrive, never against the user.

``ResizeToContents`` measures every row at every change, which at tens of thousands of rows and
a refresh every 400 ms costs the GUI thread more than the refresh itself. A
:class:`ColumnFit` widens the columns whose content is cut, measuring the rows on screen
(QTableView measures the visible rows), after rows were inserted or the model reset (coalesced
into one fit per turn of the event loop). Columns never narrow, and once the user resizes a
column the widths are theirs.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QHeaderView, QTableView

#: The widest a column grows to fit its content (pixels).
MAX_FIT_WIDTH = 320


class ColumnFit(QObject):
    """Keeps ``view``'s columns wide enough for the rows on screen (see the module doc)."""

    def __init__(self, view: QTableView, stretch: int) -> None:
        super().__init__(view)
        self._view = view
        self._stretch = stretch
        self._fitting = False
        self.user_resized = False
        header = view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
        header.sectionResized.connect(self._resized)
        self._timer = QTimer(self, singleShot=True, interval=0)
        self._timer.timeout.connect(self.fit)
        model = view.model()
        model.rowsInserted.connect(self._later)
        model.modelReset.connect(self._later)

    def _resized(self, column: int, *_: object) -> None:
        header = self._view.horizontalHeader()
        if column != self._stretch and not self._fitting and header.underMouse():
            self.user_resized = True  # a drag of the header: the widths are the user's now

    def _later(self, *_: object) -> None:
        if not self.user_resized and not self._timer.isActive():
            self._timer.start()

    def fit(self) -> None:
        """Widen the columns whose content on screen is cut (up to :data:`MAX_FIT_WIDTH`)."""
        if self.user_resized:
            return
        view = self._view
        self._fitting = True
        try:
            for column in range(view.model().columnCount()):
                if column == self._stretch or view.isColumnHidden(column):
                    continue
                wanted = min(MAX_FIT_WIDTH, max(view.sizeHintForColumn(column), 0) + 8)
                header_width = view.horizontalHeader().sectionSizeHint(column)
                wanted = max(wanted, min(MAX_FIT_WIDTH, header_width))
                if wanted > view.columnWidth(column):
                    view.setColumnWidth(column, wanted)
        finally:
            self._fitting = False
