"""The main window: search on top, results and series in the middle, the retrieve queue below.

Wiring only: each pane is its own class (see the imports), and the base class
:class:`~workstation.ui.window_chrome.WindowChrome` builds the menus, toolbar, log dock and
status bar; every blocking call goes through :class:`~workstation.ui.common.tasks.TaskRunner` or
the retrieve queue's threads.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import shiboken6
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from workstation.dimse.echo import echo
from workstation.jobs.submit import QueuePlan, plan_series, plan_studies
from workstation.nodes import RemoteNode
from workstation.results import LocalPresence, StudyRow
from workstation.search import SearchCriteria
from workstation.session import Session
from workstation.settings import Settings
from workstation.ui.common.icons import app_icon
from workstation.ui.common.tasks import TaskRunner
from workstation.ui.common.window_state import WindowState
from workstation.ui.local_store.import_export import ImportExport
from workstation.ui.local_store.store_browser import StoreBrowser
from workstation.ui.nodes.nodes_dialog import NodesDialog
from workstation.ui.queue.queue_view import QueueView
from workstation.ui.search.failure_banner import FailureBanner
from workstation.ui.search.local_tracker import LocalTracker
from workstation.ui.search.query_panel import QueryPanel
from workstation.ui.search.series_panel import SeriesPanel
from workstation.ui.search.study_model import StudyTableModel
from workstation.ui.search.study_search import StudySearch
from workstation.ui.search.study_view import StudyView
from workstation.ui.window_chrome import WindowChrome

log = logging.getLogger(__name__)

#: When the C-FIND helper process starts, after the window (ms).
FIND_HELPER_DELAY_MS = 3000


class MainWindow(WindowChrome):
    """Query/Retrieve window over a :class:`Session` (which the caller opens and closes)."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setWindowTitle("DICOM Query/Retrieve")
        self.setWindowIcon(app_icon())
        self.runner = TaskRunner(self)
        self.runner.failed.connect(self._task_failed)
        self._series_focus = False
        self._closed = False

        self.study_model = StudyTableModel(self)
        # Owned by the window (not by Python): deleted with it, on the GUI thread.
        self.search = StudySearch(
            self.study_model, self.runner, lambda: session.settings.ae_title, self
        )
        self.query_panel = QueryPanel()
        self.failure_banner = FailureBanner()
        self.study_view = StudyView(self.study_model)
        self.series_panel = SeriesPanel(self.runner, session.store, session.settings.ae_title)
        self.queue_view = QueueView(session.queue, self.runner)
        self.store_browser = StoreBrowser(session.store, self.runner)
        self.import_export = ImportExport(session.store, self.runner, self)
        self.setAcceptDrops(True)  # files and folders dropped on the window are imported
        self.store_browser.set_send_targets(lambda: sorted(session.nodes))
        self.store_browser.set_external_viewers(lambda: self.session.settings.external_viewers)
        self.tracker = LocalTracker(session.store, self.study_model, self.runner, self)
        self._build_layout()
        self._build_log_dock()
        self._build_actions()
        self._build_help()
        self._build_status_bar()
        self._connect()

        self.query_panel.set_nodes(sorted(session.nodes))
        session.queue.add_listener(self.queue_view.on_change)
        self.queue_view.load(session.queue.jobs())
        session.resume_jobs()
        self.resize(1360, 860)
        self._state = WindowState()
        self._state.restore(self, self._splitters(), self._headers())
        if session.demo_requested and session.demo is None:
            self.statusBar().showMessage("Starting the demo archive…")
            self.runner.run(
                lambda _c: session.start_demo(), title="Demo archive", success=self._demo_ready
            )
        # The C-FIND helper's imports take ~0.5 s of a CPU: started once the window is up (a
        # search before then starts it itself).
        finder = self.search.finder
        helper = QTimer(self, singleShot=True, interval=FIND_HELPER_DELAY_MS)
        helper.timeout.connect(lambda: self.runner.run(lambda _c: finder.start(), title="Search"))
        helper.start()

    # -- construction --------------------------------------------------------------------------

    def _build_layout(self) -> None:
        self.results_splitter = QSplitter(Qt.Orientation.Vertical)
        self.results_splitter.addWidget(self.study_view)
        self.results_splitter.addWidget(self.series_panel)
        self.results_splitter.setStretchFactor(0, 3)
        self.results_splitter.setStretchFactor(1, 1)
        self.results_splitter.setChildrenCollapsible(False)
        qr_page = QWidget()
        qr_layout = QVBoxLayout(qr_page)
        qr_layout.setContentsMargins(0, 0, 0, 0)
        qr_layout.setSpacing(0)
        qr_layout.addWidget(self.query_panel)
        banner_row = QHBoxLayout()  # the banner lines up with the results table below it
        banner_row.setContentsMargins(6, 4, 6, 2)
        banner_row.addWidget(self.failure_banner)
        qr_layout.addLayout(banner_row)
        qr_layout.addWidget(self.results_splitter, 1)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(qr_page, "Query / Retrieve")
        self.tabs.addTab(self.store_browser, "Local store")
        self.main_splitter = QSplitter(Qt.Orientation.Vertical)
        self.main_splitter.addWidget(self.tabs)
        self.main_splitter.addWidget(self.queue_view)
        self.main_splitter.setStretchFactor(0, 4)
        self.main_splitter.setStretchFactor(1, 1)
        self.main_splitter.setChildrenCollapsible(False)
        self.main_splitter.setSizes([620, 200])
        self.results_splitter.setSizes([420, 170])
        self.setCentralWidget(self.main_splitter)

    def _connect(self) -> None:
        panel = self.query_panel
        panel.search_requested.connect(self.start_search)
        panel.stop_requested.connect(self.stop)
        panel.manage_nodes_requested.connect(self.manage_nodes)
        self.search.status_changed.connect(self._search_status)
        self.search.started.connect(lambda: self._set_searching(True))
        self.search.finished.connect(self._search_finished)
        self.search.started.connect(self.failure_banner.clear)
        self.search.node_failed.connect(self._node_failed)
        self.failure_banner.retry_requested.connect(self.retry_failed)
        self.search.rows_added.connect(self.tracker.recount)
        self.study_view.current_study_changed.connect(self._show_series)
        self.study_view.retrieve_requested.connect(self.retrieve_studies)
        self.study_view.table.selectionModel().selectionChanged.connect(self._study_selected)
        self.series_panel.retrieve_requested.connect(self.retrieve_series)
        self.series_panel.table.selectionModel().selectionChanged.connect(self._series_selected)
        self.tracker.stored.connect(self._stored)
        self.queue_view.job_finished.connect(lambda uid: self.tracker.recount([uid]))
        self.queue_view.open_requested.connect(self.show_in_store)
        self.queue_view.open_requested.connect(self.store_browser.open_study_viewer)
        self.store_browser.message.connect(self.statusBar().showMessage)
        self.import_export.message.connect(self.statusBar().showMessage)
        self.import_export.imported.connect(self._imported)
        self.store_browser.export_requested.connect(self.import_export.ask_export)
        self.store_browser.send_requested.connect(self.send_from_store)

    def _splitters(self) -> dict[str, QSplitter]:
        return {"main": self.main_splitter, "results": self.results_splitter}

    def _headers(self) -> dict[str, Any]:
        return {
            "studies": self.study_view.table.horizontalHeader(),
            "series": self.series_panel.table.horizontalHeader(),
            "queue": self.queue_view.table.horizontalHeader(),
        }

    # -- search --------------------------------------------------------------------------------

    def start_search(self, criteria: SearchCriteria) -> None:
        nodes = [n for name in self.query_panel.selected_nodes() if (n := self.session.node(name))]
        if not nodes:
            self.statusBar().showMessage("Tick a node to search", 5000)
            return
        self.series_panel.show_study("", "", None)
        self.tabs.setCurrentIndex(0)
        self.search.start(criteria, nodes)

    def stop(self) -> None:
        self.search.stop()

    def retry_failed(self) -> None:
        """The banner's Retry: ask the nodes that failed again, with their current settings."""
        if not self.search.retry_failed(self.session.node):
            self.statusBar().showMessage("Nothing to retry while the search runs", 5000)

    def clear_search(self) -> None:
        self.search.stop(quiet=True)
        self.query_panel.clear()

    def _set_searching(self, searching: bool) -> None:
        self.query_panel.set_searching(searching)
        self.stop_action.setEnabled(searching)
        self.failure_banner.set_retry_enabled(not searching)

    def _node_failed(self, _name: str, _message: str) -> None:
        """Show a failed node at once, while the other nodes still answer."""
        self.failure_banner.show_failures(self.search.failures())

    def _search_status(self, text: str) -> None:
        self.study_view.counter.setText(text)
        self.status_label.setText(text)

    def _search_finished(self, _text: str) -> None:
        self._set_searching(False)
        self.failure_banner.show_failures(self.search.failures())
        if self.study_view.table.selectionModel().hasSelection() is False:
            self.study_view.select_first()

    def _show_series(self, row: StudyRow | None) -> None:
        if row is None:
            self.series_panel.show_study("", "", None)
            return
        if row.study_uid == self.series_panel.study_uid:
            return
        node = next((n for s in row.sources if (n := self.session.node(s))), None)
        self.series_panel.show_study(row.study_uid, row.label, node)

    # -- retrieve ------------------------------------------------------------------------------

    def _study_selected(self, *_: Any) -> None:
        self._series_focus = False

    def _series_selected(self, *_: Any) -> None:
        self._series_focus = self.series_panel.table.selectionModel().hasSelection()

    def retrieve_selected(self) -> None:
        """Ctrl+R: the selected series when they were chosen last, else the selected studies."""
        if self._series_focus and self.series_panel.selected_series():
            self.retrieve_series()
        else:
            self.retrieve_studies()

    def retrieve_studies(self) -> None:
        rows = self.study_view.selected_rows()
        if not rows:
            self.statusBar().showMessage("Select one or more studies to retrieve", 5000)
            return
        model = self.study_model
        complete = {r.study_uid for r in rows if model.presence(r) is LocalPresence.COMPLETE}
        self._submit(plan_studies(rows, self.session.nodes, self.queue_view.model.rows, complete))

    def retrieve_series(self) -> None:
        study = self.study_view.current_row()
        series = self.series_panel.selected_series()
        if study is None or not series or study.study_uid != self.series_panel.study_uid:
            self.retrieve_studies()
            return
        self._submit(plan_series(study, series, self.session.nodes, self.queue_view.model.rows))

    def _submit(self, plan: QueuePlan) -> None:
        queue = self.session.queue
        for reason in plan.skipped:
            log.info("not queued: %s", reason.split(": ")[-1])
        if plan.skipped:
            self.statusBar().showMessage("Not queued: " + "; ".join(plan.skipped), 8000)
        if not plan.submissions:
            return
        subs = plan.submissions

        def work(_context: object) -> int:
            for s in subs:
                queue.submit(
                    s.node,
                    study_uid=s.study_uid,
                    series_uids=s.series_uids,
                    label=s.label,
                    expected=s.expected,
                )
            return len(subs)

        self.runner.run(
            work,
            title="Queue retrieve",
            success=lambda n: self.statusBar().showMessage(
                f"Queued {n} retrieve{'s' if n != 1 else ''}", 5000
            ),
        )

    # -- the local store -----------------------------------------------------------------------

    def _stored(self, stored: list[Any]) -> None:
        self.store_browser.notify_stored(stored)
        if any(s.study_uid == self.series_panel.study_uid for s in stored):
            self.series_panel.refresh_local()

    def _imported(self, report: Any) -> None:
        """An import ended: show the Local store tab, refreshed, when it brought something."""
        self.store_browser.refresh()
        if report.stored:
            self.tabs.setCurrentWidget(self.store_browser)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Files and folders from the file manager may be dropped to import them."""
        urls = event.mimeData().urls() if event.mimeData().hasUrls() else []
        if urls and all(url.isLocalFile() for url in urls):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.import_export.start_import(paths)

    def show_in_store(self, study_uid: str) -> None:
        self.tabs.setCurrentWidget(self.store_browser)
        self.store_browser.refresh()
        self.store_browser.select_study(study_uid)

    def send_from_store(self, node_name: str, study_uid: str, series_uid: str = "") -> None:
        """Queue a send of a study (or one of its series) of the local store to a node: the
        queue pane shows its progress, Cancel, Retry and the instances not sent."""
        node = self.session.node(node_name)
        if node is None:
            self.statusBar().showMessage(f"No node named {node_name}", 5000)
            return
        queue = self.session.queue
        series = (series_uid,) if series_uid else ()

        def work(_context: object) -> str:  # reads the store's index: not on the GUI thread
            queue.submit_send(node, study_uid=study_uid, series_uids=series)
            return f"Queued a send of the {'series' if series else 'study'} to {node.label}"

        self.runner.run(
            work,
            title=f"Send to {node.label}",
            success=lambda text: self.statusBar().showMessage(text, 5000),
        )

    def show_audit_trail(self) -> None:
        """View → Audit trail…: the store's retrieves, sends, exports, imports, deletions."""
        from workstation.ui.audit.audit_view import AuditDialog

        dialog = getattr(self, "audit_dialog", None)
        if dialog is None:
            dialog = self.audit_dialog = AuditDialog(self.session.store.root, self.runner, self)
        else:
            dialog.reload()
        dialog.show()
        dialog.raise_()

    # -- nodes ---------------------------------------------------------------------------------

    def _demo_ready(self, node: Any) -> None:
        self.query_panel.set_nodes(sorted(self.session.nodes), selected=[node.name])
        self.statusBar().showMessage(
            f"Demo archive ready as node {node.name}: type a name (try 'smith') and press Enter",
            15000,
        )

    def manage_nodes(self) -> None:
        dialog = NodesDialog(
            self.session.settings, self.runner, self, builtin=self.session.session_nodes
        )
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.apply_settings(dialog.settings())

    def apply_settings(self, new: Settings) -> None:
        """Use saved settings at once: nodes, our AE title, and the storage SCP's port,
        callers and TLS (moved in a worker); the store folder and serving need a restart."""
        old = self.session.settings
        self.session.settings = new
        self.series_panel.calling_aet = new.ae_title
        self.query_panel.set_nodes(sorted(self.session.nodes))
        scp = (new.local_ae, new.scp_tls_config, new.serve_callers)
        if scp != (old.local_ae, old.scp_tls_config, old.serve_callers):
            self._move_scp(old, new)
        serving = (new.serve_enabled, new.serve_port) != (old.serve_enabled, old.serve_port)
        serving |= new.serve_enabled and new.ae_title != old.ae_title
        if new.store_dir != old.store_dir or serving:
            QMessageBox.information(
                self, "Restart needed", "The new store folder and serving settings apply at "
                "the next start of the workstation.",
            )  # fmt: skip

    def _move_scp(self, old: Settings, new: Settings) -> None:
        """Restart the storage SCP with the new settings in a worker (never on the GUI
        thread); on a failure it keeps listening as before, and a message says why."""
        self.scp_label.setText(f"Storage SCP: moving to {new.ae_title}@{new.store_port}…")
        self.scp_label.setStyleSheet("")
        session = self.session

        def moved(status: str) -> None:
            self._show_scp_status()
            self.statusBar().showMessage(f"Storage SCP {status}", 8000)

        def failed(exc: BaseException) -> None:
            self._show_scp_status()
            still = session.scp.running
            now = f"It stays {session.scp_status}." if still else "It is not listening."
            self._task_failed("Storage SCP settings", f"{_sentence(str(exc))}. {now}")

        self.runner.run(
            lambda _c: session.apply_local_ae(old, new),
            title="Storage SCP settings",
            success=moved,
            failure=failed,
        )

    def verify_nodes(self) -> None:
        names = self.query_panel.selected_nodes()
        aet = self.session.settings.ae_title
        for name in names:
            node = self.session.node(name)
            if node is not None:
                self.runner.run(
                    partial(_echo_text, node, aet),
                    title=f"C-ECHO to {name}",
                    success=self._show_echo,
                )
        if not names:
            self.statusBar().showMessage("Tick the nodes to verify in the node menu", 5000)

    def _show_echo(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    # -- shutdown ------------------------------------------------------------------------------

    def request_quit(self) -> None:
        """Quit (Ctrl+Q), after asking when retrieves are still running or queued."""
        if self._may_quit():
            self._quit_confirmed = True
            self.close()

    def _may_quit(self) -> bool:
        unfinished = sum(1 for job in self.session.queue.jobs() if not job.state.finished)
        return not unfinished or self.confirm_quit(unfinished)

    def confirm_quit(self, unfinished: int) -> bool:
        """Ask before quitting with ``unfinished`` jobs (tests replace this)."""
        jobs = "1 job is" if unfinished == 1 else f"{unfinished} jobs are"
        answer = QMessageBox.question(
            self,
            "Quit?",
            f"{jobs} still running or waiting in the queue.\n\nQuit anyway? They stop now "
            "and go on, fetching only what is missing, when the workstation starts again.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:
        # The window manager's close button asks like Ctrl+Q; close() from code does not.
        if (
            not self._closed
            and event.spontaneous()
            and not getattr(self, "_quit_confirmed", False)
            and not self._may_quit()
        ):
            event.ignore()
            return
        if not self._closed:
            self._closed = True
            self._state.save(self, self._splitters(), self._headers())
            self.session.queue.remove_listener(self.queue_view.on_change)
            self.search.close()
            self.tracker.close()
            self.queue_view.close_view()
            self.runner.shutdown()
            logging.getLogger().removeHandler(self._log_handler)
            self.check_label.stop()
            # The browser reads the store on timers of its own; the store closes after us.
            browser = self.store_browser
            browser.setParent(None)
            shiboken6.delete(browser)
        super().closeEvent(event)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _echo_text(node: RemoteNode, calling_aet: str, _context: object) -> str:
    """A C-ECHO (in a worker), as one line for the status bar."""
    return str(echo(node, calling_aet=calling_aet))
