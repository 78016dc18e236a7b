"""The window's import (File → Import…, dropping files and folders) and export (the Local
store tab's Export…), each run in a worker through :class:`~workstation.ui.common.tasks.TaskRunner`.

Progress goes to the status bar (``message``, at most ten times a second through the task
runner's hand-off); the summary goes to the status bar, the log (counts only, never names)
and a message box at the end. New instances reach the Local store tab through the store's
listener as for any arrival; the tab is refreshed once more when an import ends.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from workstation.export import ExportCancelled, ExportProgress, ExportReport, export_instances
from workstation.store import LocalStore
from workstation.store.importer import ImportProgress, ImportReport, import_paths
from workstation.ui.common.tasks import TaskContext, TaskRunner, describe_error

log = logging.getLogger(__name__)


def _show(parent: QWidget | None, icon: QMessageBox.Icon, title: str, text: str) -> QMessageBox:
    box = QMessageBox(icon, title, text, parent=parent)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()  # never exec() inside a task callback
    return box


class ImportExport(QObject):
    """Runs imports and exports for the window; one import and one export at a time."""

    #: One line for the status bar (progress, summary).
    message = Signal(str)
    #: An import finished (its report): the window refreshes the Local store tab.
    imported = Signal(object)
    #: An export finished (its report).
    exported = Signal(object)

    def __init__(self, store: LocalStore, runner: TaskRunner, parent: QWidget) -> None:
        super().__init__(parent)
        self._store = store
        self._runner = runner
        self._parent = parent
        self.importing = False
        self.exporting = False
        #: The last message box shown (tests read it).
        self.last_box: QMessageBox | None = None

    # -- import ------------------------------------------------------------------------------

    def choose_folder(self) -> None:
        """File → Import folder…: a folder, CD or USB stick (a DICOMDIR at its top is used)."""
        folder = QFileDialog.getExistingDirectory(
            self._parent, "Import a folder, CD or USB stick into the local store"
        )
        if folder:
            self.start_import([folder])

    def choose_files(self) -> None:
        """File → Import files…: DICOM files, ZIP files or a DICOMDIR."""
        files, _ = QFileDialog.getOpenFileNames(
            self._parent,
            "Import DICOM files, ZIP files or a DICOMDIR into the local store",
            "",
            "DICOM, ZIP and DICOMDIR files (*);;ZIP files (*.zip);;DICOMDIR (DICOMDIR)",
        )
        if files:
            self.start_import(files)

    def start_import(self, paths: Sequence[str | Path]) -> bool:
        """Import ``paths`` in the background; False when an import is already running."""
        if self.importing:
            self.message.emit("An import is running: wait for it to finish")
            return False
        if not paths:
            return False
        self.importing = True
        chosen = [str(p) for p in paths]
        store = self._store
        self.message.emit("Importing…")

        def work(context: TaskContext) -> ImportReport:
            report = import_paths(store, chosen, progress=context.report, cancel=context.cancel)
            store.flush()  # indexed before the Local store tab reads it
            return report

        self._runner.run(
            work,
            title="Import",
            success=self._import_done,
            failure=self._import_failed,
            progress=self._import_progress,
        )
        return True

    def _import_progress(self, progress: ImportProgress) -> None:
        self.message.emit(
            f"Importing… {progress.done}/{progress.total} files ({progress.fraction:.0%})"
        )

    def _import_done(self, report: ImportReport) -> None:
        self.importing = False
        summary = report.summary()
        self.message.emit(f"Import: {summary}")
        self.imported.emit(report)
        text = summary[0].upper() + summary[1:] + "."
        if report.failures:
            listed = "\n".join(f"• {name}: {reason}" for name, reason in report.failures[:10])
            more = report.failed - min(len(report.failures), 10)
            text += "\n\nFailed:\n" + listed + (f"\n… and {more} more" if more > 0 else "")
        if report.conflicts:
            text += (
                "\n\nThe stored versions were kept; the differing copies are in "
                f"{self._store.conflicts_folder}."
            )
        icon = QMessageBox.Icon.Warning if report.failed else QMessageBox.Icon.Information
        self.last_box = _show(self._parent, icon, "Import finished", text)

    def _import_failed(self, exc: BaseException) -> None:
        self.importing = False
        text = f"Import failed: {describe_error(exc)}"
        self.message.emit(text)
        self.last_box = _show(self._parent, QMessageBox.Icon.Critical, "Import failed", text)

    # -- export ------------------------------------------------------------------------------

    def ask_export(self, study_uid: str, series_uid: str = "", label: str = "") -> None:
        """The Export… dialog for a study (or one of its series); then export in the background."""
        if self.exporting:
            self.message.emit("An export is running: wait for it to finish")
            return
        dialog = ExportDialog(label or ((series_uid and "series") or "study"), self._parent)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        self.start_export(
            dialog.destination(),
            studies=[study_uid] if not series_uid else [],
            series=[series_uid] if series_uid else [],
            zip=dialog.zip_box.isChecked(),
            deidentify=dialog.deidentify_box.isChecked(),
            dicomdir=dialog.dicomdir_box.isChecked(),
        )

    def start_export(
        self,
        destination: str | Path,
        *,
        studies: Sequence[str] = (),
        series: Sequence[str] = (),
        zip: bool = False,
        deidentify: bool = False,
        dicomdir: bool = False,
    ) -> bool:
        if self.exporting:
            self.message.emit("An export is running: wait for it to finish")
            return False
        self.exporting = True
        store = self._store
        self.message.emit("Exporting…")

        def work(context: TaskContext) -> ExportReport:
            return export_instances(
                store,
                destination,
                studies=studies,
                series=series,
                zip=zip,
                deidentify=deidentify,
                dicomdir=dicomdir,
                overwrite=zip,  # the file dialog asked before replacing a file
                progress=context.report,
                cancel=context.cancel,
            )

        self._runner.run(
            work,
            title="Export",
            success=self._export_done,
            failure=self._export_failed,
            progress=self._export_progress,
        )
        return True

    def _export_progress(self, progress: ExportProgress) -> None:
        self.message.emit(
            f"Exporting… {progress.done}/{progress.total} files ({progress.fraction:.0%})"
        )

    def _export_done(self, report: ExportReport) -> None:
        self.exporting = False
        summary = report.summary()
        self.message.emit(summary[0].upper() + summary[1:])
        self.exported.emit(report)
        icon = QMessageBox.Icon.Warning if report.burned_in else QMessageBox.Icon.Information
        self.last_box = _show(
            self._parent, icon, "Export finished", summary[0].upper() + summary[1:] + "."
        )

    def _export_failed(self, exc: BaseException) -> None:
        self.exporting = False
        if isinstance(exc, ExportCancelled):
            self.message.emit("Export cancelled; nothing was written")
            return
        text = f"Export failed: {describe_error(exc)}"
        self.message.emit(text)
        self.last_box = _show(self._parent, QMessageBox.Icon.Critical, "Export failed", text)


class ExportDialog(QDialog):
    """Where and how to export: a folder or a ZIP file, de-identified, as a DICOMDIR."""

    def __init__(self, what: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.folder_button = QRadioButton("To a new folder")
        self.zip_box = QRadioButton("To a ZIP file")
        self.folder_button.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.folder_button)
        group.addButton(self.zip_box)
        self.deidentify_box = QCheckBox(
            "De-identify (remove names, IDs, dates, institution…; new UIDs)"
        )
        self.deidentify_box.setToolTip(
            "PS3.15 Annex E Basic Application Level Confidentiality Profile (a documented "
            "subset). Text burned into the pixels is not removed."
        )
        self.dicomdir_box = QCheckBox("As a DICOMDIR media set (for a CD or USB stick)")
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("Destination")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(f"Export the {what}:"))
        layout.addWidget(self.folder_button)
        layout.addWidget(self.zip_box)
        layout.addLayout(row)
        layout.addWidget(self.deidentify_box)
        layout.addWidget(self.dicomdir_box)
        layout.addWidget(self.buttons)
        self.path_edit.textChanged.connect(self._update)
        self.zip_box.toggled.connect(self._update)
        self._update()

    def _update(self, *_: Any) -> None:
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(bool(self.path_edit.text().strip()))

    def _browse(self) -> None:
        if self.zip_box.isChecked():
            path, _ = QFileDialog.getSaveFileName(self, "Export to a ZIP file", "", "ZIP (*.zip)")
            if path and not path.lower().endswith(".zip"):
                path += ".zip"
        else:
            path = QFileDialog.getExistingDirectory(self, "Export into a folder")
        if path:
            self.path_edit.setText(path)

    def destination(self) -> Path:
        """The chosen path; a folder that is not empty gets a new ``DICOM export …`` folder."""
        path = Path(self.path_edit.text().strip()).expanduser()
        if self.zip_box.isChecked():
            return path if path.suffix.lower() == ".zip" else path.with_name(path.name + ".zip")
        if path.is_dir() and any(path.iterdir()):
            return path / datetime.now().strftime("DICOM export %Y-%m-%d %H%M%S")
        return path
