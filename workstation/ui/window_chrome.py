"""The main window's frame: menus, toolbar, log dock and status bar around the panes.

:class:`WindowChrome` is the base of :class:`~workstation.ui.main_window.MainWindow`: the main
window builds the panes and wires them; this class builds what surrounds them, whose actions
call the main window's slots (declared below, defined there), and shows failures and the
storage SCP's state in the status bar.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QMessageBox, QToolBar

from workstation.session import Session
from workstation.ui.common.icons import decorate_actions
from workstation.ui.common.log_pane import LogPane, install_log_handler
from workstation.ui.help_menu import FileLocations, HelpMenu
from workstation.ui.local_store.import_export import ImportExport
from workstation.ui.local_store.store_browser import StoreBrowser
from workstation.ui.local_store.store_check import StoreCheckStatus
from workstation.ui.search.query_panel import QueryPanel

_OK = "color: #1b7f3b;"
_BAD = "color: #c0152f; font-weight: 600;"


class WindowChrome(QMainWindow):
    """Menus, toolbar, log dock and status bar of the main window (see the module doc)."""

    session: Session
    query_panel: QueryPanel
    import_export: ImportExport
    store_browser: StoreBrowser

    # The main window's slots that the actions call.
    def stop(self) -> None:
        raise NotImplementedError

    def retrieve_selected(self) -> None:
        raise NotImplementedError

    def clear_search(self) -> None:
        raise NotImplementedError

    def manage_nodes(self) -> None:
        raise NotImplementedError

    def verify_nodes(self) -> None:
        raise NotImplementedError

    def request_quit(self) -> None:
        raise NotImplementedError

    def show_audit_trail(self) -> None:
        raise NotImplementedError

    def _build_log_dock(self) -> None:
        self.log_pane = LogPane()
        self._log_handler = install_log_handler(self.log_pane)
        self.log_dock = QDockWidget("Log", self)
        self.log_dock.setObjectName("logDock")
        self.log_dock.setWidget(self.log_pane)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.log_dock)
        self.log_dock.hide()

    def _action(
        self,
        text: str,
        slot: Any,
        shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_actions(self) -> None:
        self.find_action = self._action("Find", self.query_panel.focus_search, "Ctrl+F")
        self.search_action = self._action("Search", self.query_panel.request_search)
        self.stop_action = self._action("Stop", self.stop, "Esc")
        self.retrieve_action = self._action("Retrieve", self.retrieve_selected, "Ctrl+R")
        self.clear_action = self._action("Clear search", self.clear_search, "Ctrl+L")
        self.nodes_action = self._action("Nodes…", self.manage_nodes)
        self.echo_action = self._action("Verify nodes (C-ECHO)", self.verify_nodes)
        self.quit_action = self._action("Quit", self.request_quit, QKeySequence.StandardKey.Quit)
        self.find_action.setToolTip("Put the cursor in the patient name (Ctrl+F)")
        self.retrieve_action.setToolTip("Retrieve the selected studies or series (Ctrl+R)")
        self.stop_action.setToolTip("Stop the search (Esc)")
        self.stop_action.setEnabled(False)
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.import_folder_action = file_menu.addAction(
            "Import Folder, CD or USB Stick…", self.import_export.choose_folder
        )
        self.import_files_action = file_menu.addAction(
            "Import Files, ZIP or DICOMDIR…", self.import_export.choose_files
        )
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        search_menu = menu.addMenu("&Search")
        for action in (self.find_action, self.search_action, self.stop_action, self.clear_action):
            search_menu.addAction(action)
        search_menu.addSeparator()
        search_menu.addAction(self.retrieve_action)
        node_menu = menu.addMenu("&Nodes")
        node_menu.addAction(self.nodes_action)
        node_menu.addAction(self.echo_action)
        view_menu = menu.addMenu("&View")
        view_menu.addAction(self.log_dock.toggleViewAction())
        self.audit_action = view_menu.addAction("Audit trail…", self.show_audit_trail)
        toolbar = QToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for action in (self.retrieve_action, self.stop_action, self.clear_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        toolbar.addAction(self.nodes_action)
        toolbar.addAction(self.echo_action)
        toolbar.addSeparator()
        toolbar.addAction(self.log_dock.toggleViewAction())
        self.addToolBar(toolbar)

    def _build_help(self) -> None:
        """The Help menu (last in the menu bar), and icons on the actions that call for one."""
        from workstation.settings import settings_path
        from workstation.ui.app import log_dir  # app imports this module

        files = FileLocations(self.session.store.root, log_dir(), settings_path())
        self.help_menu = HelpMenu(self, files)
        decorate_actions(self)

    def _build_status_bar(self) -> None:
        self.status_label = QLabel("Ready")
        self.scp_label = QLabel(self.session.scp_status)
        self.scp_label.setStyleSheet(_OK if self.session.scp.running else _BAD)
        self.scp_label.setToolTip(
            "Our storage SCP: where C-MOVE retrieves and pushes from other systems arrive"
        )
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.scp_label)
        # A full check of the store after a power cut runs meanwhile: its progress, then what
        # it repaired (the browser then shows the repaired index).
        self.check_label = StoreCheckStatus(self.session.store)
        self.check_label.finished.connect(self.store_browser.refresh)
        self.statusBar().addPermanentWidget(self.check_label)
        if self.session.settings.serve_enabled:  # Nodes → Local AE → Serve the local store
            self.serve_label = QLabel(self.session.serve_status)
            self.serve_label.setStyleSheet(_OK if self.session.serve is not None else _BAD)
            self.serve_label.setToolTip(
                "Our Q/R SCP: other workstations and viewers query and retrieve the local store"
            )
            self.statusBar().addPermanentWidget(self.serve_label)

    def _show_scp_status(self) -> None:
        self.scp_label.setText(self.session.scp_status)
        self.scp_label.setStyleSheet(_OK if self.session.scp.running else _BAD)

    def _task_failed(self, title: str, message: str) -> None:
        self.statusBar().showMessage(f"{title}: {message}", 15000)
        box = QMessageBox(QMessageBox.Icon.Warning, title, message, parent=self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()  # never exec(): a modal loop would block nothing, but tests could hang
