"""View → Audit trail…: who retrieved, sent, exported, imported, deleted or received what.

A dialog over the store's audit trail (:mod:`workstation.audit`): a table (time, user, action,
outcome, node, studies, patient, instances, failed, message), filtered by text, action and a
date range; Export XML… writes what is shown as DICOM audit messages (PS3.15 A.5). The rows
are read in a worker, never on the GUI thread (the filters run as SQL there), and a newer
filter's answer replaces an older one's whatever order they come back in.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QDate,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from workstation.audit import ACTIONS, AuditEvent, AuditFilter, trail_for
from workstation.audit_xml import check_xml, to_xml
from workstation.ui.common.tasks import TaskRunner, describe_error

#: Rows shown at most (the newest); the filters narrow further in SQL.
MAX_ROWS = 20_000

_COLUMNS = ("Time", "User", "Action", "Outcome", "Node", "Study", "Patient", "Instances",
            "Failed", "Message")  # fmt: skip


class AuditModel(QAbstractTableModel):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.events: list[AuditEvent] = []

    def set_events(self, events: list[AuditEvent]) -> None:
        self.beginResetModel()
        self.events = events
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.events)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(_COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return _COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if not index.isValid():
            return None
        event = self.events[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return _cell(event, column)
        if role == Qt.ItemDataRole.ToolTipRole and column in (5, 6, 9):
            if column == 5:
                return "\n".join(event.study_uids)
            if column == 6:
                return "\n".join(f"{pid}  {name}" for pid, name in event.patients)
            return event.message
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (7, 8):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def _cell(event: AuditEvent, column: int) -> str:
    if column == 0:
        return f"{event.time.astimezone():%Y-%m-%d %H:%M:%S}"
    if column == 5:
        more = f" (+{len(event.study_uids) - 1})" if len(event.study_uids) > 1 else ""
        return (event.study_uids[0] + more) if event.study_uids else ""
    if column == 6:
        names = [name.replace("^", " ").strip() or pid for pid, name in event.patients]
        return ", ".join(names[:2]) + (" …" if len(names) > 2 else "")
    values = {
        1: event.user,
        2: event.action,
        3: event.outcome,
        4: event.node or event.detail,
        7: str(event.instances),
        8: str(event.failed),
        9: event.message,
    }
    return values.get(column, "")


class AuditDialog(QDialog):
    """The audit trail of the store folder ``store_root``."""

    def __init__(
        self, store_root: str | Path, runner: TaskRunner, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Audit trail")
        self.trail = trail_for(store_root)
        self.runner = runner
        self._generation = 0
        self.loaded = 0  # answers received (tests wait on it)

        self.text = QLineEdit()
        self.text.setPlaceholderText("Filter: node, study UID, patient, user, message…")
        self.text.setClearButtonEnabled(True)
        self.action = QComboBox()
        self.action.addItem("All actions", "")
        for action in ACTIONS:
            self.action.addItem(action.capitalize(), action)
        self.use_dates = QCheckBox("From")
        today = QDate.currentDate()
        self.since = QDateEdit(today.addDays(-30))
        self.until = QDateEdit(today)
        for edit in (self.since, self.until):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd")
            edit.setEnabled(False)
        self.refresh_button = QPushButton("Refresh")
        self.export_button = QPushButton("Export XML…")
        self.status = QLabel("Loading…")

        filters = QHBoxLayout()
        filters.addWidget(self.text, 3)
        filters.addWidget(self.action)
        filters.addWidget(self.use_dates)
        filters.addWidget(self.since)
        filters.addWidget(QLabel("to"))
        filters.addWidget(self.until)
        filters.addWidget(self.refresh_button)

        self.model = AuditModel(self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setAlternatingRowColors(True)

        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.export_button)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        bottom.addWidget(close)

        layout = QVBoxLayout(self)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addLayout(bottom)
        self.resize(1100, 600)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self.reload)
        self.text.textChanged.connect(self._debounce.start)
        self.action.currentIndexChanged.connect(self.reload)
        self.use_dates.toggled.connect(self._dates_toggled)
        self.since.dateChanged.connect(self._debounce.start)
        self.until.dateChanged.connect(self._debounce.start)
        self.refresh_button.clicked.connect(self.reload)
        self.export_button.clicked.connect(self._choose_export)
        self.reload()

    # -- loading -------------------------------------------------------------------------------

    def filters(self) -> AuditFilter:
        since = until = None
        if self.use_dates.isChecked():
            since = _date(self.since.date())
            until = _date(self.until.date())
        return AuditFilter(
            since=since,
            until=until,
            action=self.action.currentData() or None,
            text=self.text.text().strip() or None,
            limit=MAX_ROWS,
        )

    def reload(self) -> None:
        self._debounce.stop()
        self._generation += 1
        generation, filters, trail = self._generation, self.filters(), self.trail
        self.status.setText("Loading…")
        self.runner.run(
            lambda _context: trail.query(filters),
            title="Audit trail",
            success=lambda events: self._loaded(generation, events),
            failure=lambda exc: self._failed(generation, exc),
        )

    def _loaded(self, generation: int, events: list[AuditEvent]) -> None:
        if generation != self._generation:
            return  # an older filter's answer
        self.model.set_events(events)
        self.table.resizeColumnsToContents()
        more = " (the newest; narrow the filter)" if len(events) >= MAX_ROWS else ""
        self.status.setText(f"{len(events)} event{'s' if len(events) != 1 else ''}{more}")
        self.loaded += 1

    def _failed(self, generation: int, exc: BaseException) -> None:
        if generation == self._generation:
            self.status.setText(f"Cannot read the audit trail: {describe_error(exc)}")
            self.loaded += 1

    def _dates_toggled(self, on: bool) -> None:
        self.since.setEnabled(on)
        self.until.setEnabled(on)
        self.reload()

    # -- export --------------------------------------------------------------------------------

    def _choose_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export the audit trail", "audit.xml", "DICOM audit messages (*.xml)"
        )
        if path:
            self.export_xml(Path(path))

    def export_xml(self, path: Path) -> None:
        """Write the events shown as DICOM audit messages to ``path`` (in a worker)."""
        events = list(self.model.events)

        def work(_context: object) -> int:
            data = to_xml(events)
            problems = check_xml(data)
            if problems:  # pragma: no cover - to_xml writes what check_xml accepts
                raise ValueError(problems[0])
            path.write_bytes(data)
            return len(events)

        self.runner.run(
            work,
            title="Export the audit trail",
            success=lambda n: self.status.setText(f"Exported {n} event(s) to {path}"),
            failure=lambda exc: self.status.setText(f"Export failed: {describe_error(exc)}"),
        )


def _date(value: QDate) -> date:
    return date(value.year(), value.month(), value.day())
