"""What the Local store tab does with the selection: open, view, send, export, its menus.

:class:`StoreActions` is the base of
:class:`~workstation.ui.local_store.store_browser.StoreBrowser`: the browser lists and selects
(reading the index in workers), this class acts on what is selected. Nothing here reads the
index.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from PySide6.QtCore import QPoint, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMenu, QMessageBox, QTableView, QWidget

from workstation.errors import InvalidInput
from workstation.store import LocalStore, SeriesEntry, StudyEntry
from workstation.store.layout import resolve_in_root, series_path, study_path
from workstation.ui.common.tasks import TaskRunner, describe_error
from workstation.ui.local_store.store_model import (
    images_text,
    series_deletion_question,
    study_deletion_question,
)
from workstation.ui.viewer import ViewerWindow
from workstation.ui.viewer.external import launch, viewer_commands

log = logging.getLogger(__name__)


class StoreActions(QWidget):
    """The actions on the selected study or series (see the module doc).

    ``message`` carries one line for the status bar (what was deleted, what failed).
    """

    message = Signal(str)
    #: "Send to ▸ node": (node name, study UID, series UID or "" for the whole study).
    send_requested = Signal(str, str, str)
    #: "Export…": (study UID, series UID or "" for the whole study, what it is in words).
    export_requested = Signal(str, str, str)

    _store: LocalStore
    _busy: bool
    _send_targets: Callable[[], Sequence[str]]
    _external_viewers: Callable[[], object]
    series_view: QTableView

    _tasks: TaskRunner

    def selected_study(self) -> StudyEntry | None:
        raise NotImplementedError

    def refresh(self) -> None:
        raise NotImplementedError

    def _update_actions(self) -> None:
        raise NotImplementedError

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

    def selected_series(self) -> SeriesEntry | None:
        raise NotImplementedError

    def open_containing_folder(self) -> bool:
        """Open the selected series' folder (else the study's) in the desktop file manager."""
        folder = self._selected_folder()
        if folder is None:
            return False
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.message.emit(f"Cannot open {folder}: no file manager is available")
            return False
        return True

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

    def _delete(self, action: Callable[[], int], what: str, study: StudyEntry | None) -> None:
        kind = what.split()[0]
        self._busy = True
        self._update_actions()
        self.message.emit(f"Deleting {what}…")

        def finished(text: str, count: int | None = None) -> None:
            self._busy = False
            self._update_actions()
            if count is not None:  # no description here: the log holds no patient data at INFO
                log.info("deleted a %s of %d instances from the local store", kind, count)
            self.message.emit(text)
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


def confirm_delete(parent: QWidget, title: str, text: str) -> bool:
    """Ask before deleting; the default button is Cancel."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=parent)
    box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
    box.button(QMessageBox.StandardButton.Yes).setText("Delete")
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    return box.exec() == QMessageBox.StandardButton.Yes
