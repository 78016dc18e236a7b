"""The local store browser: patients → studies → series from the index, with a preview.

The browser is a view over SQL: the patient list
(:class:`~workstation.ui.local_store.store_pages.PatientPages`) is fetched a page at a time and
filtered in SQL, the studies and series of the selection are read when it changes, and every
query runs in a worker through :class:`~workstation.ui.local_store.store_reader.StoreReader`;
the GUI thread only swaps results in, so the window stays responsive with a million instances
in the store. New instances arrive through :meth:`StoreBrowser.notify_stored`, which coalesces
them into at most one refresh every :data:`REFRESH_INTERVAL_MS`, and none while the browser is
hidden (another tab): it catches up when shown. A refresh reads only the patients of the
studies that changed, and the studies and series of the selection when they are among them.
Deletions remove files, so they run through the window's
:class:`~workstation.ui.common.tasks.TaskRunner` too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QItemSelection,
    Qt,
    QTimer,
)
from PySide6.QtGui import QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from workstation.store import LocalStore, PatientEntry, SeriesEntry, StoredInstance, StudyEntry
from workstation.store.layout import resolve_in_root
from workstation.store.records import StoreCount
from workstation.text import fold
from workstation.ui.common.column_fit import ColumnFit
from workstation.ui.common.table_view import TableView
from workstation.ui.common.tasks import TaskContext, TaskRunner, describe_error
from workstation.ui.local_store.store_actions import StoreActions
from workstation.ui.local_store.store_model import (
    EntryTableModel,
    LocalSeriesTableModel,
    LocalStudyTableModel,
)
from workstation.ui.local_store.store_pages import PatientPages
from workstation.ui.local_store.store_reader import Changes, LocatedStudy, StoreReader
from workstation.ui.viewer.preview import NO_IMAGE, PreviewWidget
from workstation.ui.viewer.thumbnails import SeriesStrip

log = logging.getLogger(__name__)

REFRESH_INTERVAL_MS = 400
FILTER_DELAY_MS = 30  # the queries run in workers: a short pause between keystrokes is enough
#: While a filter is on, the summary's count (a scan of the studies) is redone at most this
#: often as images arrive.
FILTERED_COUNT_INTERVAL_MS = 2000
EMPTY_STORE = "The local store is empty.\n\nStudies you retrieve or import appear here."
_STUDIES, _SERIES = 1, 2  # levels below the patient list


@dataclass(frozen=True)
class _Target:
    """A study (and series) :meth:`StoreBrowser.select_study` is on its way to."""

    study_uid: str
    series_uid: str | None
    patient_key: int | None = None


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
    view.configure(  # the models sort themselves (the index orders the patients)
        model,
        sort=(sort, order) if sort >= 0 else None,
        selection=QAbstractItemView.SelectionMode.SingleSelection,
        row_height=view.fontMetrics().height() + 8,
    )
    view.setShowGrid(False)
    view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
    header = view.horizontalHeader()
    header.setHighlightSections(False)
    header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    ColumnFit(view, stretch)  # owned by the view
    return view


class StoreBrowser(StoreActions):
    """Browse, preview, open and delete what the local store holds.

    ``message`` carries one line for the status bar (what was deleted, what failed).
    """

    def __init__(
        self, store: LocalStore, tasks: TaskRunner | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._store = store
        self._tasks = tasks if tasks is not None else TaskRunner(self, max_workers=2)
        self._reader = StoreReader(store.index)
        self._filter = ""  # the filter box's text that the lists show
        self._stale = False  # instances arrived since the last refresh
        self._previewed: tuple[str, int] | bool | None = None
        self._busy = False
        self._target: _Target | None = None
        self._generation = {_STUDIES: 0, _SERIES: 0}
        self._queries = 0  # the browser's own queries in flight (studies, series, counts…)
        self._counting = False
        self._count_again = False
        self._send_targets: Callable[[], Sequence[str]] = list  # node names for "Send to"
        self._external_viewers: Callable[[], object] = dict  # the external_viewers setting

        self.patients = PatientPages(self._reader, self._tasks, self)
        self.studies = LocalStudyTableModel(self)
        self.series = LocalSeriesTableModel(self)
        ascending, descending = Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder
        self.patient_view = _table(self.patients, 0, -1, ascending)  # by name, in SQL
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
        self._count_timer = QTimer(self, singleShot=True, interval=0)
        self._count_timer.timeout.connect(self._count)
        self.filter_edit.textChanged.connect(self._filter_timer.start)
        self.patients.failed.connect(self._failed)
        self._top_key: str | None = None  # the patient at the top of a scrolled list
        self._shown_key: int | None = None  # the patient whose studies are shown
        for before in (self.patients.rowsAboutToBeInserted, self.patients.rowsAboutToBeRemoved):
            before.connect(self._note_top)
        for after in (self.patients.rowsInserted, self.patients.rowsRemoved):
            after.connect(self._keep_top)
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
        self._update_actions()
        # The first page is read in a worker now, so that the tab shows it at once.
        self.patients.set_query("", done=self._patients_shown)
        self._count_timer.start()

    # -- public API --------------------------------------------------------------------------

    @property
    def loading(self) -> bool:
        """Whether a query of the browser is still running (the lists will change)."""
        return self.patients.loading or self._queries > 0 or self._target is not None

    def notify_stored(self, records: Sequence[StoredInstance]) -> None:
        """New instances were indexed; call on the GUI thread. Refreshes are throttled, and
        wait until the browser is shown."""
        self._stale = self._stale or bool(records)
        if records and self.isVisible() and not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale and not self._refresh_timer.isActive():
            self._refresh_timer.start(0)

    def refresh(self) -> None:
        """Bring the lists up to date in the background, keeping the selection and the scroll
        position: the patients that the index's change log names, then the selection's
        studies and series when they are among them."""
        self._refresh_timer.stop()
        self._stale = False
        self.patients.refresh(done=self._changed)
        interval = FILTERED_COUNT_INTERVAL_MS if self._filtering else 0
        if not self._count_timer.isActive():
            self._count_timer.start(interval)

    @property
    def _filtering(self) -> bool:
        """Whether the filter holds a word (blank text shows everything, as in SQL)."""
        return bool(fold(self._filter).split())

    def set_filter_text(self, text: str) -> None:
        self.filter_edit.setText(text)
        self._apply_filter()

    def selected_patient(self) -> PatientEntry | None:
        entry: PatientEntry | None = _selected(self.patient_view)
        return entry

    def selected_study(self) -> StudyEntry | None:
        entry: StudyEntry | None = _selected(self.study_view)
        return entry

    def selected_series(self) -> SeriesEntry | None:
        entry: SeriesEntry | None = _selected(self.series_view)
        return entry

    def select_study(self, study_uid: str, series_uid: str | None = None) -> None:
        """Select a study (and a series of it) once the index has answered, clearing a filter
        that hides it and fetching the patient list down to its patient; nothing happens for
        a study the store does not hold."""
        self._target = _Target(study_uid, series_uid)
        reader, text = self._reader, self._filter
        self._query(lambda _c: reader.locate(study_uid, text), self._located, "Local store: find")

    # -- queries -----------------------------------------------------------------------------

    def _query(
        self,
        work: Callable[[TaskContext], Any],
        apply: Callable[[Any], None],
        title: str,
        level: int | None = None,
    ) -> None:
        """Run ``work`` in a worker, then ``apply`` its result here, unless a newer query of
        the same ``level`` was asked meanwhile."""
        generation = None
        if level is not None:
            self._generation[level] += 1
            generation = self._generation[level]
        self._queries += 1

        def landed() -> bool:
            self._queries -= 1
            return level is None or self._generation[level] == generation

        def success(result: Any) -> None:
            if landed():
                apply(result)

        def failure(exc: BaseException) -> None:
            if landed():
                self._failed(describe_error(exc))

        self._tasks.run(work, title=title, success=success, failure=failure)

    def _failed(self, text: str) -> None:
        """A query failed: the store closed or its disk failed."""
        log.warning("cannot read the store index: %s", text)
        self._target = None
        self.message.emit(f"Cannot read the local store: {text}")

    def _apply_filter(self) -> None:
        self._filter_timer.stop()
        text = self.filter_edit.text()
        if text != self._filter:
            self._filter = text
            self.patients.set_query(text, done=self._patients_shown)
            self._count_timer.start(0)

    def _patients_shown(self) -> None:
        """A new filter's first page is shown: its studies, for the patient selected."""
        self._reload_selection(True)

    def _reload_selection(self, series_too: bool) -> None:
        if self.selected_patient() is None:
            self._choose_patient()
        else:
            self._load_studies(series_too=series_too)
        self._update_preview()

    def _changed(self, changes: Changes | None) -> None:
        """The patients that changed are up to date (None: all were read again); now the
        selection's studies and series, when they changed."""
        patient = self.selected_patient()
        if changes is None:
            self._reload_selection(True)
        elif patient is None:
            self._choose_patient()
        elif patient.key in changes.patient_keys:
            study = self.selected_study()
            self._load_studies(series_too=study is None or study.study_uid in changes.study_uids)

    def _count(self) -> None:
        """Count in a worker what the filter shows, for the summary line (one at a time)."""
        if self._counting:
            self._count_again = True
            return
        self._counting = True
        reader, filter_text = self._reader, self._filter

        def counted(counts: StoreCount) -> None:
            self._counting = False
            if filter_text == self._filter:
                self._show_summary(counts.patients, counts.studies)
            if self._count_again:
                self._count_again = False
                self._count_timer.start(0)

        def work(_context: TaskContext) -> StoreCount:
            return reader.counts(filter_text)

        def failed(exc: BaseException) -> None:
            self._counting = False
            self._failed(describe_error(exc))

        self._queries += 1
        self._tasks.run(
            work,
            title="Local store: count",
            success=lambda c: self._settle(counted, c),
            failure=lambda e: self._settle(failed, e),
        )

    def _settle(self, apply: Callable[[Any], None], value: Any) -> None:
        self._queries -= 1
        apply(value)

    def _show_summary(self, patients: int, studies: int) -> None:
        if patients:
            plural = "patients" if patients != 1 else "patient"
            text = f"{patients} {plural} · {studies} stud{'ies' if studies != 1 else 'y'}"
        else:
            text = "No match" if self._filtering else "The local store is empty"
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

    def _note_top(self, *_args: object) -> None:
        row = self.patient_view.rowAt(0)
        self._top_key = self.patients.key(self.patients.row_at(row)) if row > 0 else None

    def _keep_top(self, *_args: object) -> None:
        """Rows came or went above the patient at the top: keep it there (the user scrolled
        to it; a refresh should not move the list under their eyes)."""
        key, self._top_key = self._top_key, None
        position = self.patients.position(key) if key is not None else None
        if position is not None and position != self.patient_view.rowAt(0):
            top = QAbstractItemView.ScrollHint.PositionAtTop
            self.patient_view.scrollTo(self.patients.index(position, 0), top)

    # -- the selection, level by level -------------------------------------------------------

    def _selection_changed(self, level: int, *_selections: QItemSelection) -> None:
        if level == 1:
            self._load_studies(series_too=True)
        elif level == 2:
            self._load_series()
        else:
            self._update_preview()
            self._update_actions()

    def _choose_patient(self) -> None:
        """Select the target's patient when fetched, else the patient whose studies were
        shown (a new filter that still lists them), else the first patient listed."""
        target = self._target
        for key in (target.patient_key if target is not None else None, self._shown_key):
            position = self.patients.position(str(key)) if key is not None else None
            if position is not None:
                _select_row(self.patient_view, position)
                return
        if self.patients.rowCount() > 0:
            if self.selected_patient() is None:
                _select_row(self.patient_view, 0)
        else:
            self._load_studies(series_too=True)  # nobody listed: clear the studies and series

    def _load_studies(self, series_too: bool) -> None:
        patient = self.selected_patient()
        self._shown_key = patient.key if patient is not None else None
        self._studies_of(patient, series_too)

    def _studies_of(self, patient: PatientEntry | None, series_too: bool) -> None:
        if patient is None:
            self._generation[_STUDIES] += 1  # an answer on its way is for another patient
            self.studies.set_entries([])
            self._load_series()
            return
        reader, text, key = self._reader, self._filter, patient.key

        def show(studies: list[StudyEntry]) -> None:
            before = self.selected_study()
            self.studies.set_entries(studies)
            target, load_series = self._target, series_too
            if target is not None and self.studies.position(target.study_uid) is not None:
                if before is None or before.study_uid != target.study_uid:
                    _select(self.study_view, self.studies, target.study_uid)
                    return
                load_series = True
            elif target is not None:
                self._target = None  # not one of this patient's studies (any more)
            if self.selected_study() is None:
                if studies:
                    _select_row(self.study_view, 0)  # the selection loads its series
                else:
                    self._load_series()
            elif load_series or before is None:
                self._load_series()
            self._update_actions()

        self._query(lambda _c: reader.studies(key, text), show, "Local store: studies", _STUDIES)

    def _load_series(self) -> None:
        study = self.selected_study()
        if study is None:
            self._generation[_SERIES] += 1
            self.series.set_entries([])
            self.thumbnails.set_series(self._store, [])
            self._update_preview()
            self._update_actions()
            return
        reader, study_uid = self._reader, study.study_uid

        def show(series: list[SeriesEntry]) -> None:
            self.series.set_entries(series)
            self.thumbnails.set_series(self._store, series)
            target = self._target
            if target is not None and target.study_uid == study_uid:
                self._target = None
                if target.series_uid is not None:
                    _select(self.series_view, self.series, target.series_uid)
            if self.selected_series() is None and series:
                _select_row(self.series_view, 0)
            self._update_preview()
            self._update_actions()

        self._query(lambda _c: reader.series(study_uid), show, "Local store: series", _SERIES)

    def _located(self, found: LocatedStudy | None) -> None:
        """:meth:`select_study`'s answer: clear a filter that hides the study, fetch the list
        down to its patient, select it; the studies and series follow (see _load_*)."""
        target = self._target
        if target is None or found is None or found.study.study_uid != target.study_uid:
            if found is None:
                self._target = None
            return
        self._target = _Target(target.study_uid, target.series_uid, found.study.patient_key)
        if found.position is None:
            if not self._filtering:
                self._target = None  # gone meanwhile
                return
            self._filter = ""
            self.filter_edit.setText("")
            self.patients.set_query("", done=partial(self._relocate, target))
            self._count_timer.start(0)
            return
        self.patients.fetch_through(found.position, done=partial(self._reach, found))

    def _relocate(self, target: _Target) -> None:
        if self._target is not None and self._target.study_uid == target.study_uid:
            self.select_study(target.study_uid, target.series_uid)

    def _reach(self, found: LocatedStudy) -> None:
        key = found.study.patient_key
        if found.patient is not None:
            self.patients.show_entry(found.patient)  # a refresh may not have brought it yet
        position = self.patients.position(str(key))
        if position is None:
            self._target = None
            return
        selected = self.selected_patient()
        if selected is not None and selected.key == key:
            self._load_studies(series_too=True)  # the answer selects the target study
        else:
            _select_row(self.patient_view, position)

    def _update_preview(self) -> None:
        series = self.selected_series()
        empty = self.patients.rowCount() == 0 and not self._filtering and not self.patients.loading
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

    # -- actions -----------------------------------------------------------------------------


def _selected(view: QTableView) -> Any:
    """The entry of the selected row (one row at most: single selection of whole rows). The
    selection's range, not ``selectedRows()``, which asks the model for every cell of it."""
    selection = view.selectionModel().selection()
    if selection.isEmpty():
        return None
    model = view.model()
    assert isinstance(model, EntryTableModel)
    return model.entry(selection.first().top())


def _select(view: QTableView, model: EntryTableModel[Any, Any], key: str) -> None:
    """Select the row with ``key`` (nothing happens when there is none)."""
    position = model.position(key)
    if position is not None:
        view.selectRow(position)
        view.scrollTo(model.index(position, 0))


def _select_row(view: QTableView, position: int) -> None:
    view.selectRow(position)
    view.scrollTo(view.model().index(position, 0))
