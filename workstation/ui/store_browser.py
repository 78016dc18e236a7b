"""The local store browser: patients → studies → series from the index, with a preview.

Reads are SQLite queries on the GUI thread: a few milliseconds for ten thousand studies, as
the filter keeps every study in a :class:`~workstation.ui.store_model.StudyCache` that only
re-reads studies that changed. The preview's instance list (a thousand rows for a big series)
is read in a worker. Deletions remove files, so they run through the window's
:class:`~workstation.ui.tasks.TaskRunner`. New instances arrive through
:meth:`StoreBrowser.notify_stored`, which coalesces them into at most one refresh every
:data:`REFRESH_INTERVAL_MS`, and none while the browser is hidden (another tab): it catches up
when shown.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QItemSelection,
    QPoint,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import QDesktopServices, QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from workstation.errors import InvalidInput, WorkstationError
from workstation.store import LocalStore, PatientEntry, SeriesEntry, StoredInstance, StudyEntry
from workstation.store.layout import resolve_in_root, series_path, study_path
from workstation.ui.preview import NO_IMAGE, PreviewWidget
from workstation.ui.store_model import (
    ROW_ROLE,
    EntryTableModel,
    PatientTableModel,
    SeriesTableModel,
    StoreFilter,
    StudyCache,
    StudyTableModel,
    images_text,
    series_deletion_question,
    study_deletion_question,
)
from workstation.ui.table_view import TableView
from workstation.ui.tasks import TaskRunner, describe_error
from workstation.ui.viewer import ViewerWindow
from workstation.ui.viewer.external import launch, viewer_commands
from workstation.ui.viewer.thumbnails import SeriesStrip

log = logging.getLogger(__name__)

REFRESH_INTERVAL_MS = 400
FILTER_DELAY_MS = 150
EMPTY_STORE = "The local store is empty.\n\nStudies you retrieve or import appear here."
_PATIENTS = 0  # levels of _cascade: patients, studies, series, preview


def _pane(title: str, view: QWidget) -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    label = QLabel(title)
    label.setStyleSheet("font-weight: 600; padding: 2px 2px;")
    layout.addWidget(label)
    layout.addWidget(view, 1)
    return box


def _table(
    model: EntryTableModel[Any, Any], stretch: int, sort: int, order: Qt.SortOrder
) -> QTableView:
    view = TableView()
    view.setModel(model)  # the model sorts itself: a proxy would call data() per comparison
    view.setSortingEnabled(True)
    view.sortByColumn(sort, order)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setAlternatingRowColors(True)
    view.setShowGrid(False)
    view.setWordWrap(False)
    view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    view.verticalHeader().hide()
    view.verticalHeader().setDefaultSectionSize(view.fontMetrics().height() + 8)
    header = view.horizontalHeader()
    header.setHighlightSections(False)
    header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    return view


class StoreBrowser(QWidget):
    """Browse, preview, open and delete what the local store holds.

    ``message`` carries one line for the status bar (what was deleted, what failed).
    """

    message = Signal(str)
    #: "Send to ▸ node": (node name, study UID, series UID or "" for the whole study).
    send_requested = Signal(str, str, str)
    #: "Export…": (study UID, series UID or "" for the whole study, what it is in words).
    export_requested = Signal(str, str, str)

    def __init__(
        self, store: LocalStore, tasks: TaskRunner | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._store = store
        self._tasks = tasks if tasks is not None else TaskRunner(self, max_workers=1)
        self._filter = StoreFilter()
        self._study_cache = StudyCache()
        self._stale_studies: set[str] = set()
        self._previewed: tuple[str, int] | bool | None = None
        self._busy = False
        self._cascading = False
        self._send_targets: Callable[[], Sequence[str]] = list  # node names for "Send to"
        self._external_viewers: Callable[[], object] = dict  # the external_viewers setting

        self.patients = PatientTableModel(self)
        self.studies = StudyTableModel(self)
        self.series = SeriesTableModel(self)
        ascending, descending = Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder
        self.patient_view = _table(self.patients, 0, 0, ascending)
        self.study_view = _table(self.studies, 1, 0, descending)
        self.series_view = _table(self.series, 2, 0, ascending)
        self.preview = PreviewWidget(self)
        self.thumbnails = SeriesStrip(self)  # the study's series; double-click opens the viewer

        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter: patient name, ID, accession, description…")
        self.filter_edit.setClearButtonEnabled(True)
        self.summary = QLabel()
        self.summary.setStyleSheet("color: #555;")
        self.open_button = QPushButton("Open folder")
        self.open_button.setToolTip("Open the folder of the selected series in the file manager")
        self.delete_study_button = QPushButton("Delete study…")
        self.delete_series_button = QPushButton("Delete series…")

        bar = QHBoxLayout()
        bar.addWidget(self.filter_edit, 1)
        bar.addWidget(self.summary)
        bar.addSpacing(12)
        for button in (self.open_button, self.delete_study_button, self.delete_series_button):
            bar.addWidget(button)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(_pane("Series", self.series_view))
        preview_area = QWidget()
        preview_layout = QVBoxLayout(preview_area)
        preview_layout.setContentsMargins(0, 0, 0, 0)
        preview_layout.addWidget(self.thumbnails)
        preview_layout.addWidget(self.preview, 1)
        right.addWidget(_pane("Preview", preview_area))
        right.setSizes([180, 420])
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(_pane("Patients", self.patient_view))
        self.splitter.addWidget(_pane("Studies", self.study_view))
        self.splitter.addWidget(right)
        self.splitter.setSizes([370, 510, 400])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(bar)
        layout.addWidget(self.splitter, 1)

        self._refresh_timer = QTimer(self, singleShot=True, interval=REFRESH_INTERVAL_MS)
        self._refresh_timer.timeout.connect(self.refresh)
        self._filter_timer = QTimer(self, singleShot=True, interval=FILTER_DELAY_MS)
        self._filter_timer.timeout.connect(self._apply_filter)
        self.filter_edit.textChanged.connect(self._filter_timer.start)
        for level, view in enumerate((self.patient_view, self.study_view, self.series_view), 1):
            view.selectionModel().selectionChanged.connect(partial(self._selection_changed, level))
        self.open_button.clicked.connect(self.open_containing_folder)
        self.series_view.doubleClicked.connect(lambda _index: self.open_viewer())
        self.thumbnails.series_chosen.connect(
            lambda uid: _select(self.series_view, self.series, uid)
        )
        self.thumbnails.series_opened.connect(self.open_viewer)
        self.delete_study_button.clicked.connect(self.delete_selected_study)
        self.delete_series_button.clicked.connect(self.delete_selected_series)
        for view, label, action in (
            (self.study_view, "Delete study…", self.delete_selected_study),
            (self.series_view, "Delete series…", self.delete_selected_series),
        ):
            view.customContextMenuRequested.connect(
                partial(self._context_menu, view, label, action)
            )
            shortcut = QShortcut(QKeySequence.StandardKey.Delete, view)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(action)
        self.refresh()

    # -- public API --------------------------------------------------------------------------

    def notify_stored(self, records: Sequence[StoredInstance]) -> None:
        """New instances were indexed; call on the GUI thread. Refreshes are throttled, and
        wait until the browser is shown (each one reads the index on the GUI thread)."""
        self._stale_studies.update(r.study_uid for r in records)
        if records and self.isVisible() and not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale_studies and not self._refresh_timer.isActive():
            self._refresh_timer.start(0)

    def refresh(self) -> None:
        """Reload the three lists from the index, keeping the selection where it still exists."""
        self._refresh_timer.stop()
        try:
            self._study_cache.update(self._store.index, self._stale_studies)
            self._stale_studies.clear()
            self._cascade(_PATIENTS)
        except (WorkstationError, sqlite3.Error) as exc:  # the store closed or its disk failed
            log.warning("cannot read the store index: %s", exc)
            self.message.emit(f"Cannot read the local store: {exc}")

    def set_filter_text(self, text: str) -> None:
        self.filter_edit.setText(text)
        self._apply_filter()

    def selected_patient(self) -> PatientEntry | None:
        return _selected(self.patient_view)

    def selected_study(self) -> StudyEntry | None:
        return _selected(self.study_view)

    def selected_series(self) -> SeriesEntry | None:
        return _selected(self.series_view)

    def select_study(self, study_uid: str, series_uid: str | None = None) -> bool:
        """Select a study (and a series of it), clearing a filter that hides it."""
        study = self._store.index.study(study_uid)
        if study is None:
            return False
        if self._filter and not self._filter.matches_study(study):
            self.set_filter_text("")
        _select(self.patient_view, self.patients, str(study.patient_key))
        _select(self.study_view, self.studies, study_uid)
        if series_uid is not None:
            _select(self.series_view, self.series, series_uid)
        return True

    def open_containing_folder(self) -> bool:
        """Open the selected series' folder (else the study's) in the desktop file manager."""
        folder = self._selected_folder()
        if folder is None:
            return False
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.message.emit(f"Cannot open {folder}: no file manager is available")
            return False
        return True

    def delete_selected_study(self) -> None:
        """Ask, then delete the selected study's files and index rows in the background."""
        study = self.selected_study()
        if study is not None and not self._busy:
            question = study_deletion_question(study)
            if confirm_delete(self, "Delete study", question):
                what = f"study “{study.study_description or study.study_uid}”"
                self._delete(partial(self._store.delete_study, study.study_uid), what, study)

    def delete_selected_series(self) -> None:
        """Ask, then delete the selected series' files and index rows in the background."""
        series, study = self.selected_series(), self.selected_study()
        if series is not None and not self._busy:
            question = series_deletion_question(series, study)
            if confirm_delete(self, "Delete series", question):
                what = f"series “{series.series_description or series.series_uid}”"
                self._delete(partial(self._store.delete_series, series.series_uid), what, study)

    # -- loading -----------------------------------------------------------------------------

    def _load_patients(self) -> None:
        index = self._store.index
        patients = index.patients()
        studies = sum(p.study_count for p in patients)
        if self._filter:
            matching = self._study_cache.matching(index, self._filter)
            found = Counter(s.patient_key for s in matching)
            patients = [p for p in patients if p.key in found or self._filter.matches_patient(p)]
            studies = sum(
                p.study_count if self._filter.matches_patient(p) else found[p.key] for p in patients
            )
        self.patients.set_entries(patients)
        if self.selected_patient() is None and patients:
            _select_first(self.patient_view)
        if patients:
            plural = "patients" if len(patients) != 1 else "patient"
            text = f"{len(patients)} {plural} · {studies} stud{'ies' if studies != 1 else 'y'}"
        else:
            text = "No match" if self._filter else "The local store is empty"
        conflicts = self._store.conflict_count()
        if conflicts:
            text += (
                f" · {conflicts} differing cop{'ies' if conflicts != 1 else 'y'} of stored "
                "images set aside"
            )
            self.summary.setToolTip(
                "Instances that arrived again with other content: the stored versions were "
                f"kept, the new ones are in {self._store.conflicts_folder}"
            )
        self.summary.setText(text)

    def _load_studies(self) -> None:
        patient = self.selected_patient()
        studies: list[StudyEntry] = []
        if patient is not None:
            studies = self._store.index.studies(patient_key=patient.key)
            if self._filter and not self._filter.matches_patient(patient):
                studies = [s for s in studies if self._filter.matches_study(s)]
        self.studies.set_entries(studies)
        if self.selected_study() is None and studies:
            _select_first(self.study_view)

    def _load_series(self) -> None:
        study = self.selected_study()
        series = self._store.index.series(study.study_uid) if study is not None else []
        self.series.set_entries(series)
        self.thumbnails.set_series(self._store, series)
        if self.selected_series() is None and series:
            _select_first(self.series_view)

    def _update_preview(self) -> None:
        series = self.selected_series()
        empty = self.patients.rowCount() == 0 and not self._filter
        wanted = (series.series_uid, series.instance_count) if series is not None else empty
        if wanted == self._previewed:
            return
        self._previewed = wanted
        if series is None:
            self.preview.clear(EMPTY_STORE if empty else NO_IMAGE)
            return
        self.thumbnails.select_series(series.series_uid)
        index, root, series_uid = self._store.index, self._store.root, series.series_uid

        def middle_image(_context: object) -> tuple[Path | None, str]:
            instances = index.instances(series_uid=series_uid)
            if not instances:
                return None, ""
            middle = len(instances) // 2
            path = resolve_in_root(root, instances[middle].path)  # InvalidInput: failure
            return path, f"Image {middle + 1} of {len(instances)}"

        def show(found: tuple[Path | None, str]) -> None:
            if self._previewed == wanted:
                self.preview.show_file(found[0], caption=found[1])

        def failed(exc: BaseException) -> None:
            if self._previewed == wanted:
                self.preview.clear(describe_error(exc))

        self._tasks.run(middle_image, title="Preview", success=show, failure=failed)

    def _update_actions(self) -> None:
        has_study = self.selected_study() is not None
        self.open_button.setEnabled(has_study)
        self.delete_study_button.setEnabled(has_study and not self._busy)
        self.delete_series_button.setEnabled(self.selected_series() is not None and not self._busy)

    # -- selection ---------------------------------------------------------------------------

    def _selection_changed(self, level: int, *_selections: QItemSelection) -> None:
        self._cascade(level)

    def _cascade(self, level: int) -> None:
        """Reload every list below ``level`` for the current selection, then the preview.

        Loaders select a first row when nothing is selected, which re-enters through the
        selection signals; those nested calls are skipped because this call goes on to load
        the levels below anyway.
        """
        if self._cascading:
            return
        self._cascading = True
        try:
            loaders = (self._load_patients, self._load_studies, self._load_series)
            for load in loaders[level:]:  # a series selection reloads nothing, only the preview
                load()
            self._update_preview()
            self._update_actions()
        finally:
            self._cascading = False

    def _apply_filter(self) -> None:
        self._filter_timer.stop()
        text = self.filter_edit.text()
        if text != self._filter.text:
            self._filter = StoreFilter(text)
            if not self._filter:
                self._study_cache.clear()  # read afresh when a filter is typed again
            self.refresh()

    # -- actions -----------------------------------------------------------------------------

    def _selected_folder(self) -> Path | None:
        study, series = self.selected_study(), self.selected_series()
        if study is None:
            return None
        try:
            if series is not None:
                folder = resolve_in_root(
                    self._store.root, series_path(study.study_uid, series.series_uid)
                )
                if folder.is_dir():
                    return folder
            return resolve_in_root(self._store.root, study_path(study.study_uid))
        except InvalidInput as exc:
            self.message.emit(str(exc))
            return None

    def _delete(self, action: Callable[[], int], what: str, study: StudyEntry | None) -> None:
        kind = what.split()[0]
        self._busy = True
        self._update_actions()
        self.message.emit(f"Deleting {what}…")

        def finished(text: str, count: int | None = None) -> None:
            self._busy = False
            if count is not None:  # no description here: the log holds no patient data at INFO
                log.info("deleted a %s of %d instances from the local store", kind, count)
            self.message.emit(text)
            if study is not None:
                self._stale_studies.add(study.study_uid)
            self.refresh()

        def failed(exc: BaseException) -> None:
            text = f"Could not delete {what}: {describe_error(exc)}"
            finished(text)
            box = QMessageBox(QMessageBox.Icon.Critical, "Delete failed", text, parent=self)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.open()  # not exec(): no nested event loop inside a task callback

        self._tasks.run(
            lambda _context: action(),
            title=f"Delete {what}",
            success=lambda count: finished(f"Deleted {what} ({images_text(count)})", count),
            failure=failed,
        )

    def set_send_targets(self, names: Callable[[], Sequence[str]]) -> None:
        """Where the node names of the "Send to" menus come from (read when a menu opens)."""
        self._send_targets = names

    def export_selected(self, *, series: bool = False) -> None:
        """Ask (``export_requested``) to export the selected study, or its selected series."""
        study = self.selected_study()
        chosen = self.selected_series() if series else None
        if study is None or (series and chosen is None):
            return
        what = f"series “{chosen.series_description}”" if chosen else "study"
        self.export_requested.emit(study.study_uid, chosen.series_uid if chosen else "", what)

    def send_selected(self, node_name: str, *, series: bool = False) -> None:
        """Ask (``send_requested``) to send the selected study, or its selected series."""
        study = self.selected_study()
        chosen = self.selected_series() if series else None
        if study is None or (series and chosen is None):
            return
        self.send_requested.emit(node_name, study.study_uid, chosen.series_uid if chosen else "")

    def open_viewer(self, series_uid: str | None = None) -> ViewerWindow | None:
        """Open the viewer on ``series_uid`` (default: the selected series) of the selected
        study; returns the viewer window (None when nothing is selected)."""
        study = self.selected_study()
        chosen = series_uid or (s.series_uid if (s := self.selected_series()) else None)
        if study is None:
            return None
        return self.open_study_viewer(study.study_uid, chosen)

    def open_study_viewer(self, study_uid: str, series_uid: str | None = None) -> ViewerWindow:
        """Open the viewer on a stored study, at ``series_uid`` or its first series."""
        viewer = ViewerWindow(self._store, study_uid, series_uid, parent=self)
        viewer.show()
        viewer.raise_()
        viewer.activateWindow()
        return viewer

    def set_external_viewers(self, viewers: Callable[[], object]) -> None:
        """Where "Open with" finds the ``external_viewers`` setting (read when a menu opens)."""
        self._external_viewers = viewers

    def open_with(self, name: str, *, series: bool = True) -> str:
        """Start the external viewer ``name`` on the selected series' folder (``series``) or
        the selected study's; returns the status line (also sent on ``message``)."""
        command = viewer_commands(self._external_viewers()).get(name)
        study = self.selected_study()
        folder = self._selected_folder()
        if not series and study is not None and folder is not None:
            folder = resolve_in_root(self._store.root, study_path(study.study_uid))
        if command is None or folder is None:
            return ""
        text = launch(name, command, folder)
        self.message.emit(text)
        return text

    def context_menu(self, view: QTableView, label: str, delete: Callable[[], None]) -> QMenu:
        """The right-click menu of the study or series list."""
        menu = QMenu(self)
        series = view is self.series_view
        menu.addAction("View", lambda: self.open_viewer())
        open_with = menu.addMenu("Open with")
        for name in viewer_commands(self._external_viewers()):
            open_with.addAction(name, partial(self.open_with, name, series=series))
        if open_with.isEmpty():
            open_with.addAction(
                "No viewer: add one under external_viewers in the settings file"
            ).setEnabled(False)
        menu.addAction("Open containing folder", self.open_containing_folder)
        send_menu = menu.addMenu("Send to")
        for name in self._send_targets():
            send_menu.addAction(name, partial(self.send_selected, name, series=series))
        if send_menu.isEmpty():
            send_menu.addAction("No nodes: add one in Nodes…").setEnabled(False)
        menu.addAction("Export…", partial(self.export_selected, series=series))
        menu.addSeparator()
        menu.addAction(label, delete).setEnabled(not self._busy)
        return menu

    def _context_menu(
        self, view: QTableView, label: str, delete: Callable[[], None], pos: QPoint
    ) -> None:
        if not view.indexAt(pos).isValid():
            return
        menu = self.context_menu(view, label, delete)
        menu.exec(view.viewport().mapToGlobal(pos))
        menu.deleteLater()


def confirm_delete(parent: QWidget, title: str, text: str) -> bool:
    """Ask before deleting; the default button is Cancel."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=parent)
    box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
    box.button(QMessageBox.StandardButton.Yes).setText("Delete")
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    return box.exec() == QMessageBox.StandardButton.Yes


def _selected(view: QTableView) -> Any:
    rows = view.selectionModel().selectedRows()
    return rows[0].data(ROW_ROLE) if rows else None


def _select(view: QTableView, model: EntryTableModel[Any, Any], key: str) -> None:
    """Select the row with ``key`` (nothing happens when there is none)."""
    position = model.position(key)
    if position is not None:
        view.selectRow(position)
        view.scrollTo(model.index(position, 0))


def _select_first(view: QTableView) -> None:
    if view.model().rowCount() > 0:
        view.selectRow(0)
        view.scrollToTop()
