"""The window's Help menu: About (version, what the program is, licences), Keyboard shortcuts
(read from the window's own actions) and Where are my files (store, logs, settings).
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from workstation import resources
from workstation.ui.common.icons import action_icon, app_icon

log = logging.getLogger(__name__)


class HelpMenu(QMenu):
    """Help → Keyboard shortcuts (F1), Where are my files, About; added to ``window``'s menu
    bar, which should have its other menus by then (Help comes last)."""

    def __init__(self, window: QMainWindow, files: FileLocations) -> None:
        super().__init__("&Help", window)
        self._window = window
        self.files = files
        self.shortcuts_action = self._add("Keyboard Shortcuts", "keyboard", self.show_shortcuts)
        self.shortcuts_action.setShortcut(QKeySequence(QKeySequence.StandardKey.HelpContents))
        self.shortcuts_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        window.addAction(self.shortcuts_action)  # F1 works with the menu closed
        self.files_action = self._add("Where Are My Files?", "folder", self.show_files)
        self.addSeparator()
        self.about_action = self._add("About Workstation", "about", self.show_about)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)
        window.menuBar().addMenu(self)

    def _add(self, text: str, icon: str, slot: object) -> QAction:
        action = QAction(action_icon(icon), text, self)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def show_about(self) -> QDialog:
        return _open(AboutDialog(self._window))

    def show_shortcuts(self) -> QDialog:
        return _open(ShortcutsDialog(shortcut_list(self._window), self._window))

    def show_files(self) -> QDialog:
        return _open(FilesDialog(self.files, self._window))


class FileLocations:
    """Where the window keeps things: the store, the logs, the settings file."""

    def __init__(self, store: Path, logs: Path, settings_file: Path) -> None:
        self.store = store
        self.logs = logs
        self.settings_file = settings_file

    def rows(self) -> list[tuple[str, Path, Path, str]]:
        """(label, path shown, folder to open, what is there) for each place."""
        config = self.settings_file.parent
        return [
            ("Local store", self.store, self.store,
             "Every DICOM file retrieved, received or imported, one folder per study."),
            ("Logs", self.logs, self.logs,
             "The crash log, when the program ever ended on a fatal error."),
            ("Settings", self.settings_file, config,
             "Nodes, our AE title, port and store folder. Beside it: window.ini (window "
             "layout) and jobs.sqlite (the retrieve queue)."),
        ]  # fmt: skip


def _open(dialog: QDialog) -> QDialog:
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()  # window-modal, never exec(): the event loop keeps running
    return dialog


def shortcut_list(window: QWidget) -> list[tuple[str, str]]:
    """(action, shortcut) for each of the window's actions that has a shortcut, as the user
    sees it (``Ctrl+R``), in menu order where the actions are in menus."""
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    for action in window.findChildren(QAction):
        if action.isSeparator() or action.menu() is not None:
            continue
        keys = [
            k.toString(QKeySequence.SequenceFormat.NativeText)
            for k in action.shortcuts()
            if not k.isEmpty()
        ]
        text = action.text().replace("&&", "\0").replace("&", "").replace("\0", "&")
        text = text.removesuffix("…").removesuffix("...").strip()
        if not keys or not text or text in seen:
            continue
        seen.add(text)
        rows.append((text, ", ".join(keys)))
    return rows


class AboutDialog(QDialog):
    """The icon, the name and version, what the program is, and the licences."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About Workstation")
        self.setWindowIcon(app_icon())
        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(96, 96))
        icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.version_label = QLabel(
            f"<b style='font-size: 15pt'>Workstation</b><br>Version {resources.version()}"
        )
        self.version_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        paragraphs = "".join(
            f"<p>{html.escape(p)}</p>" for p in resources.about_text().split("\n\n")
        )
        text = QLabel(paragraphs)
        text.setWordWrap(True)
        header = QVBoxLayout()
        header.addWidget(self.version_label)
        header.addWidget(text)
        top = QHBoxLayout()
        top.addWidget(icon)
        top.addLayout(header, 1)
        self.licences = QTextBrowser()
        self.licences.setOpenExternalLinks(True)
        self.licences.setPlainText(resources.licences_text())
        self.licences.setMinimumHeight(220)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        about_qt = buttons.addButton("About Qt", QDialogButtonBox.ButtonRole.HelpRole)
        about_qt.clicked.connect(lambda: QMessageBox.aboutQt(self, "About Qt"))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(QLabel("<b>Licences</b>"))
        layout.addWidget(self.licences, 1)
        layout.addWidget(buttons)
        self.resize(640, 560)


class ShortcutsDialog(QDialog):
    """A two-column table: what each action does, and its keys."""

    def __init__(self, rows: list[tuple[str, str]], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard Shortcuts")
        self.table = QTableWidget(len(rows), 2)
        self.table.setHorizontalHeaderLabels(["Action", "Keys"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        for i, (text, keys) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(text))
            self.table.setItem(i, 1, QTableWidgetItem(keys))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(460, 420)


class FilesDialog(QDialog):
    """The store folder, the log folder and the settings file, each with an Open button."""

    def __init__(self, files: FileLocations, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Where Are My Files?")
        grid = QGridLayout()
        grid.setColumnStretch(1, 1)
        self.open_buttons: dict[str, QPushButton] = {}
        self.path_labels: dict[str, QLabel] = {}
        for row, (label, path, folder, what) in enumerate(files.rows()):
            name = QLabel(f"<b>{html.escape(label)}</b>")
            shown = QLabel(str(path))
            shown.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            shown.setToolTip(what)
            note = QLabel(what)
            note.setWordWrap(True)
            note.setStyleSheet("color: palette(placeholder-text);")
            button = QPushButton(action_icon("folder"), "Open Folder")
            button.setToolTip(f"Open {folder} in the file manager")
            button.clicked.connect(lambda _=False, f=folder: self.open_folder(f))
            grid.addWidget(name, 2 * row, 0)
            grid.addWidget(shown, 2 * row, 1)
            grid.addWidget(button, 2 * row, 2)
            grid.addWidget(note, 2 * row + 1, 1, 1, 2)
            self.open_buttons[label] = button
            self.path_labels[label] = shown
        self.message = QLabel("")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(grid)
        layout.addWidget(self.message)
        layout.addStretch(1)
        layout.addWidget(buttons)
        self.resize(720, 260)
        #: The last folder an Open button asked the desktop to show (for tests).
        self.opened: Path | None = None

    def open_folder(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)  # the log folder may not exist yet
        except OSError as exc:
            self.message.setText(f"Cannot make {folder}: {exc.strerror}")
            return
        self.opened = folder
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.message.setText(f"No file manager could open {folder}; the path is above.")
