"""The series of the selected study, fetched with a SERIES-level C-FIND in the background."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from workstation.dimse.find import find
from workstation.nodes import RemoteNode
from workstation.query import Query
from workstation.results import SeriesRow
from workstation.store import LocalStore
from workstation.ui.common.table_view import TableView
from workstation.ui.common.tasks import Task, TaskContext, TaskRunner, describe_error
from workstation.ui.search.series_model import SeriesColumn, SeriesTableModel

log = logging.getLogger(__name__)

_WIDTHS = {
    SeriesColumn.NUMBER: 50,
    SeriesColumn.MODALITY: 70,
    SeriesColumn.DESCRIPTION: 260,
    SeriesColumn.BODY_PART: 100,
    SeriesColumn.DATE: 130,
    SeriesColumn.INSTANCES: 70,
    SeriesColumn.LOCAL: 60,
}


class SeriesPanel(QWidget):
    """A series table for one study at a time; the newest request wins."""

    #: Series rows were loaded for the study (its UID).
    loaded = Signal(str)
    #: The user double-clicked a series: retrieve it.
    retrieve_requested = Signal()

    def __init__(
        self,
        runner: TaskRunner,
        store: LocalStore,
        calling_aet: str,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.runner = runner
        self.store = store
        self.calling_aet = calling_aet
        self.model = SeriesTableModel(self)
        self.title = QLabel("Series: select a study")
        self.table = TableView()
        self.table.setObjectName("seriesTable")
        self.table.configure(self.model, sort=(0, Qt.SortOrder.AscendingOrder))
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for column, width in _WIDTHS.items():
            self.table.setColumnWidth(list(SeriesColumn).index(column), width)
        self.table.doubleClicked.connect(lambda _index: self.retrieve_requested.emit())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addWidget(self.title)
        layout.addWidget(self.table)
        self._task: Task[list[SeriesRow]] | None = None
        self._label = ""

    @property
    def study_uid(self) -> str:
        return self.model.study_uid

    def show_study(self, study_uid: str, label: str, node: RemoteNode | None) -> None:
        """Show the series of ``study_uid`` as ``node`` holds them (None: just clear)."""
        if self._task is not None:
            self._task.detach()
            self._task = None
        self.model.show_study(study_uid)
        self._label = label
        if node is None or not study_uid:
            self.title.setText("Series: select a study")
            return
        self.title.setText(f"Series of {label} — asking {node.label}…")
        query = Query.series(StudyInstanceUID=study_uid)
        aet = self.calling_aet

        def work(context: TaskContext) -> list[SeriesRow]:
            results = find(node, query, calling_aet=aet, cancel=context.cancel)
            return [SeriesRow.from_dataset(ds, node.label) for ds in results]

        self._task = self.runner.run(
            work,
            title=f"Series of a study on {node.label}",
            success=lambda rows: self._show(study_uid, rows),
            failure=lambda exc: self._failed(study_uid, node, exc),
        )

    def _show(self, study_uid: str, rows: list[SeriesRow]) -> None:
        if study_uid != self.model.study_uid:
            return
        self._task = None
        self.model.upsert(r for r in rows if r.series_uid)
        self.title.setText(f"Series of {self._label} — {len(rows)} series")
        self.refresh_local()
        self.loaded.emit(study_uid)

    def _failed(self, study_uid: str, node: RemoteNode, exc: BaseException) -> None:
        if study_uid != self.model.study_uid:
            return
        self._task = None
        self.title.setText(f"Series of {self._label} — {node.label} failed: {describe_error(exc)}")

    def refresh_local(self) -> None:
        """Count, in a worker, how many images of each shown series the store holds."""
        study_uid = self.model.study_uid
        if not study_uid:
            return
        index = self.store.index
        self.runner.run(
            lambda _c: {s.series_uid: s.instance_count for s in index.series(study_uid)},
            title="Local store lookup",
            success=lambda counts: self._set_local(study_uid, counts),
        )

    def _set_local(self, study_uid: str, counts: dict[str, int]) -> None:
        if study_uid == self.model.study_uid:
            self.model.set_local_counts(counts)

    def selected_series(self) -> list[SeriesRow]:
        rows = {index.row() for index in self.table.selectionModel().selectedRows()}
        return [self.model.row_at(r) for r in sorted(rows)]
