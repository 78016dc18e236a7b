"""The study results pane: a sortable table over :class:`StudyTableModel` with its counter."""

from __future__ import annotations

from PySide6.QtCore import QItemSelection, QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QFontMetrics, QGuiApplication
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QMenu,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from workstation.results import StudyRow
from workstation.ui.common.table_view import TableView
from workstation.ui.search.study_model import StudyColumn, StudyTableModel

_WIDTHS = {
    StudyColumn.PATIENT_NAME: 190,
    StudyColumn.PATIENT_ID: 100,
    StudyColumn.BIRTH_DATE: 86,
    StudyColumn.SEX: 36,
    StudyColumn.STUDY_DATE: 122,
    StudyColumn.MODALITIES: 70,
    StudyColumn.DESCRIPTION: 170,
    StudyColumn.ACCESSION: 80,
    StudyColumn.REFERRING: 140,
    StudyColumn.SERIES: 50,
    StudyColumn.INSTANCES: 56,
    StudyColumn.SOURCES: 80,
    StudyColumn.LOCAL: 70,
}
#: The widest a column grows to fit its content on the first results (pixels).
MAX_FIT_WIDTH = 280
#: The first results measured for that: a sample, not the thousand rows a size hint reads.
FIT_SAMPLE = 100
#: Milliseconds a study must stay selected before its series are fetched (arrow-key browsing).
SERIES_DELAY_MS = 150


class StudyView(QWidget):
    """Results table; the current study (after a short pause) and retrieve requests."""

    #: The study whose series to show (None when the selection is empty).
    current_study_changed = Signal(object)
    retrieve_requested = Signal()

    def __init__(self, model: StudyTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.counter = QLabel("Type a name, ID or date and press Enter.")
        self.counter.setObjectName("searchCounter")
        self.table = TableView()
        self.table.setObjectName("studyTable")
        self.table.configure(  # the model sorts itself (see RowTableModel.sort)
            model,
            sort=(list(StudyColumn).index(StudyColumn.STUDY_DATE), Qt.SortOrder.DescendingOrder),
        )
        # Accession numbers and IDs differ at their end: cut long values in the middle.
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        header.setHighlightSections(False)
        header.setSectionsMovable(True)
        for column, width in _WIDTHS.items():
            self.table.setColumnWidth(list(StudyColumn).index(column), width)
        header.setSectionResizeMode(
            list(StudyColumn).index(StudyColumn.DESCRIPTION), QHeaderView.ResizeMode.Stretch
        )
        self._fitted = False
        self._fitting = False
        header.sectionResized.connect(self._user_resized)
        model.rowsInserted.connect(self._fit_columns_once)
        self.table.doubleClicked.connect(lambda _index: self.retrieve_requested.emit())
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._menu)
        self._pending = QTimer(self)
        self._pending.setSingleShot(True)
        self._pending.setInterval(SERIES_DELAY_MS)
        self._pending.timeout.connect(self._emit_current)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 2)
        layout.addWidget(self.counter)
        layout.addWidget(self.table)

    def _user_resized(self, *_: object) -> None:
        if not self._fitting and self.table.isVisible():
            self._fitted = True  # the user chose widths: keep them for this session

    def _fit_columns_once(self, *_: object) -> None:
        """On the first results, widen the columns whose content is cut (up to
        ``MAX_FIT_WIDTH``); never narrower than they are: the user's widths stay.

        Measures the display text of the first :data:`FIT_SAMPLE` rows with the cell's font:
        ``sizeHintForColumn`` asks the delegate about up to a thousand rows, which held the
        GUI thread for tens of milliseconds when the first batch of a large search came."""
        if self._fitted:
            return
        self._fitted = True
        self._fitting = True
        try:
            stretch = list(StudyColumn).index(StudyColumn.DESCRIPTION)
            model, table = self.model, self.table
            rows = range(min(FIT_SAMPLE, model.rowCount()))
            margin = table.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, table)
            padding = 2 * (margin + 1) + 8 + (1 if table.showGrid() else 0)
            for column in range(model.columnCount()):
                if column == stretch or table.isColumnHidden(column) or not rows:
                    continue
                font = model.data(model.index(0, column), Qt.ItemDataRole.FontRole)
                metrics = QFontMetrics(font) if isinstance(font, QFont) else table.fontMetrics()
                texts = (model.cell_text(row, column) for row in rows)
                widest = max(metrics.horizontalAdvance(text) for text in texts)
                wanted = min(MAX_FIT_WIDTH, widest + padding)
                if wanted > self.table.columnWidth(column):
                    self.table.setColumnWidth(column, wanted)
        finally:
            self._fitting = False

    def selected_rows(self) -> list[StudyRow]:
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        return [self.model.row_at(r) for r in sorted(rows)]

    def current_row(self) -> StudyRow | None:
        rows = self.selected_rows()
        return rows[0] if len(rows) == 1 else None

    def select_first(self) -> None:
        if self.model.rowCount():
            self.table.selectRow(0)

    def select_study(self, study_uid: str) -> bool:
        position = self.model.position(study_uid)
        if position is None:
            return False
        self.table.selectRow(position)
        self.table.scrollTo(self.model.index(position, 0))
        return True

    def _selection_changed(self, _new: QItemSelection, _old: QItemSelection) -> None:
        self._pending.start()

    def _emit_current(self) -> None:
        self.current_study_changed.emit(self.current_row())

    def _menu(self, pos: QPoint) -> None:
        rows = self.selected_rows()
        if not rows:
            return
        menu = QMenu(self)
        noun = "study" if len(rows) == 1 else f"{len(rows)} studies"
        menu.addAction(f"Retrieve {noun}", self.retrieve_requested.emit)
        menu.addSeparator()
        menu.addAction(
            "Copy Study Instance UID",
            lambda: QGuiApplication.clipboard().setText("\n".join(r.study_uid for r in rows)),
        )
        menu.addAction(
            "Copy patient ID",
            lambda: QGuiApplication.clipboard().setText("\n".join(r.patient_id for r in rows)),
        )
        menu.exec(self.table.viewport().mapToGlobal(pos))
