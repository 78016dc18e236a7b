"""Fits a table's columns to the rows on screen, once the rows arrive, never against the user.

``ResizeToContents`` measures every row at every change, and even ``sizeHintForColumn`` asks
the model for every role of up to a thousand rows (all of them while the view is hidden): with
a page of 200 patients that was 100 ms of the GUI thread after each keystroke of the filter. A
:class:`ColumnFit` widens the columns whose text is cut, measuring with the view's font the
display text of the rows on screen only, after rows were inserted, the model reset or the list
scrolled (coalesced into one fit per turn of the event loop), and not at all while the view is
hidden: it fits when shown. Columns never narrow, and once the user resizes a column the
widths are theirs.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtWidgets import QHeaderView, QStyle, QTableView

#: The widest a column grows to fit its content (pixels).
MAX_FIT_WIDTH = 320
#: Room around the text: the delegate's margins and a little air.
_PADDING = 8


class ColumnFit(QObject):
    """Keeps ``view``'s columns wide enough for the rows on screen (see the module doc)."""

    def __init__(self, view: QTableView, stretch: int) -> None:
        super().__init__(view)
        self._view = view
        self._stretch = stretch
        self._fitting = False
        self._owed = False  # rows changed while the view was hidden
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
        view.verticalScrollBar().valueChanged.connect(self._later)
        view.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._view and event.type() == QEvent.Type.Show and self._owed:
            self._later()
        return False

    def _resized(self, column: int, *_: object) -> None:
        header = self._view.horizontalHeader()
        if column != self._stretch and not self._fitting and header.underMouse():
            self.user_resized = True  # a drag of the header: the widths are the user's now

    def _later(self, *_: object) -> None:
        if not self.user_resized and not self._timer.isActive():
            self._timer.start()

    def fit(self) -> None:
        """Widen the columns whose text on screen is cut (up to :data:`MAX_FIT_WIDTH`)."""
        view = self._view
        if self.user_resized:
            return
        if not view.isVisible():
            self._owed = True
            return
        self._owed = False
        model = view.model()
        count = model.rowCount()
        first = max(0, view.rowAt(0))
        last = view.rowAt(max(0, view.viewport().height() - 1))
        rows = range(first, (count - 1 if last < 0 else last) + 1)
        metrics = view.fontMetrics()
        margin = view.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, view)
        padding = 2 * (margin + 1) + _PADDING + (1 if view.showGrid() else 0)
        header = view.horizontalHeader()
        display = Qt.ItemDataRole.DisplayRole
        self._fitting = True
        try:
            for column in range(model.columnCount()):
                if column == self._stretch or view.isColumnHidden(column):
                    continue
                texts = (model.data(model.index(row, column), display) for row in rows)
                widest = max((metrics.horizontalAdvance(str(t or "")) for t in texts), default=0)
                wanted = min(MAX_FIT_WIDTH, max(widest + padding, header.sectionSizeHint(column)))
                if wanted > view.columnWidth(column):
                    view.setColumnWidth(column, wanted)
        finally:
            self._fitting = False
