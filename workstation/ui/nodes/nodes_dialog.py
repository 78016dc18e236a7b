"""Remote nodes and this workstation's own DICOM settings, edited in one dialog.

Every field is checked with the core's constructors (:class:`RemoteNode` through
:class:`~workstation.ui.nodes.node_draft.NodeDraft`, :class:`LocalAE`,
:func:`validate_ae_title`), and their plain-language :class:`InvalidInput` message is shown
under the form as the user types. OK writes the settings with :func:`settings.save`.
Nodes that exist only in this session (the demo archive of ``--demo``) are listed after the
saved ones, marked "built-in", read-only and never saved; Echo works on them too.
C-ECHO (PS3.4 Annex A) runs through the window's :class:`~workstation.ui.common.tasks.TaskRunner`,
so an unreachable host never freezes the window.
"""

from __future__ import annotations

import dataclasses
import logging

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from workstation import settings as settings_module
from workstation.dimse.echo import EchoResult, echo
from workstation.errors import InvalidInput
from workstation.nodes import (
    CHARSETS,
    LocalAE,
    RemoteNode,
    RetrieveMethod,
    charset_label,
    validate_ae_title,
)
from workstation.settings import Settings
from workstation.ui.common.tasks import Task, TaskRunner, describe_error
from workstation.ui.nodes.node_draft import NodeDraft
from workstation.ui.nodes.tls_group import TlsGroup

log = logging.getLogger(__name__)

OK_STYLE = "color: #1b7f2a; font-weight: 600;"
ERROR_STYLE = "color: #c0152f;"
_METHODS = (
    ("C-MOVE", RetrieveMethod.MOVE),
    ("C-GET", RetrieveMethod.GET),
    ("WADO-RS (DICOMweb nodes)", RetrieveMethod.WADO),
)


class NodesDialog(QDialog):
    """Edit remote nodes and local settings; ``exec()`` then :meth:`settings` for the result.

    ``builtin`` holds the session's own nodes (the demo archive): shown, echoed, not edited.
    """

    echo_finished = Signal(str, bool)  # text shown, success

    def __init__(
        self,
        current: Settings,
        tasks: TaskRunner | None = None,
        parent: QWidget | None = None,
        *,
        builtin: dict[str, RemoteNode] | None = None,
    ) -> None:
        super().__init__(parent)
        self._builtin = list((builtin or {}).values())
        self._tasks = tasks if tasks is not None else TaskRunner(self, max_workers=2)
        self._echo_task: Task[EchoResult] | None = None
        self.setWindowTitle("DICOM nodes and settings")
        self._original = current
        self._result = current
        self._drafts: list[NodeDraft] = [NodeDraft.of(n) for n in current.nodes.values()]
        self._loading = False

        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_nodes_tab(), "Remote nodes")
        self.tabs.addTab(self._build_local_tab(current), "This workstation")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.buttons)

        for draft in self._drafts:
            self.node_list.addItem(QListWidgetItem(draft.name))
        for node in self._builtin:  # after the saved nodes: their rows follow the drafts'
            item = QListWidgetItem(f"{node.name} (built-in demo)")
            item.setForeground(Qt.GlobalColor.darkGray)
            item.setToolTip("The demo archive of this session (--demo): not saved, read-only")
            self.node_list.addItem(item)
        self.node_list.currentRowChanged.connect(self._show_draft)
        self.node_list.setCurrentRow(0 if self._drafts or self._builtin else -1)
        self._show_draft(self.node_list.currentRow())
        self.resize(720, 420)

    # -- building ----------------------------------------------------------------------------

    def _build_nodes_tab(self) -> QWidget:
        self.node_list = QListWidget()
        self.node_list.setMinimumWidth(180)
        self.add_button = QPushButton("Add")
        self.remove_button = QPushButton("Remove")
        self.add_button.clicked.connect(self.add_node)
        self.remove_button.clicked.connect(self.remove_node)
        list_buttons = QHBoxLayout()
        list_buttons.addWidget(self.add_button)
        list_buttons.addWidget(self.remove_button)
        left = QVBoxLayout()
        left.addWidget(self.node_list, 1)
        left.addLayout(list_buttons)

        self.name_edit = QLineEdit()
        self.ae_edit = QLineEdit()
        self.ae_edit.setMaxLength(16)
        self.host_edit = QLineEdit()
        self.port_edit = QLineEdit()
        self.port_edit.setMaximumWidth(90)
        self.method_combo = QComboBox()
        for label, method in _METHODS:
            self.method_combo.addItem(label, method)
        self.connect_spin = _seconds(1, 600)
        self.dimse_spin = _seconds(1, 3600)
        self.lanes_spin = QSpinBox()
        self.lanes_spin.setRange(1, 16)
        self.lanes_spin.setMaximumWidth(110)
        self.lanes_spin.setToolTip(
            "Retrieve a study series by series over this many associations at once. Leave 1 "
            "unless the PACS allows several associations from this workstation."
        )
        self.charset_combo = QComboBox()
        for term in CHARSETS:
            self.charset_combo.addItem(charset_label(term), term)
        self.charset_combo.setToolTip(
            "The character set a search with accented or non-Latin text is sent in. UTF-8 "
            "suits most PACS; choose the one the PACS holds its names in if it compares bytes "
            "(ISO_IR 100, Latin-1, for many older European PACS)."
        )
        self.lists_check = QCheckBox("Several UIDs in one retrieve request")
        self.lists_check.setToolTip(
            "A retrieve of several studies asks for them in one request, which most PACS "
            "take. Untick for a PACS that refuses such lists: each study is then asked for on "
            "its own. A refused list is also noticed, and asked again one by one."
        )
        self.node_error = _message_label()
        self.echo_button = QPushButton("Echo")
        self.echo_button.setToolTip("Send a C-ECHO to check the node answers")
        self.echo_result = _message_label()

        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        form.addRow("AE title", self.ae_edit)
        form.addRow("Host", self.host_edit)
        form.addRow("Port", self.port_edit)
        form.addRow("Retrieve with", self.method_combo)
        form.addRow("Connect timeout", self.connect_spin)
        form.addRow("Response timeout", self.dimse_spin)
        form.addRow("Parallel associations", self.lanes_spin)
        form.addRow("Character set", self.charset_combo)
        form.addRow("UID lists", self.lists_check)
        echo_row = QHBoxLayout()
        echo_row.addWidget(self.echo_button)
        echo_row.addWidget(self.echo_result, 1)
        self.form_box = QGroupBox("Node")
        right = QVBoxLayout(self.form_box)
        right.addLayout(form)
        self.tls_group = TlsGroup()
        right.addWidget(self.tls_group)
        right.addWidget(self.node_error)
        right.addStretch(1)
        right.addLayout(echo_row)

        for edit in (self.name_edit, self.ae_edit, self.host_edit, self.port_edit):
            edit.textEdited.connect(self._form_edited)
        self.method_combo.currentIndexChanged.connect(self._form_edited)
        self.connect_spin.valueChanged.connect(self._form_edited)
        self.dimse_spin.valueChanged.connect(self._form_edited)
        self.lanes_spin.valueChanged.connect(self._form_edited)
        self.charset_combo.currentIndexChanged.connect(self._form_edited)
        self.lists_check.toggled.connect(self._form_edited)
        self.tls_group.edited.connect(self._form_edited)
        self.echo_button.clicked.connect(self.run_echo)

        page = QWidget()
        layout = QHBoxLayout(page)
        layout.addLayout(left)
        layout.addWidget(self.form_box, 1)
        return page

    def _build_local_tab(self, current: Settings) -> QWidget:
        self.local_ae_edit = QLineEdit(current.ae_title)
        self.local_ae_edit.setMaxLength(16)
        self.store_port_edit = QLineEdit(str(current.store_port))
        self.store_port_edit.setMaximumWidth(90)
        self.store_dir_edit = QLineEdit(current.store_dir)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse_store_dir)
        folder = QHBoxLayout()
        folder.addWidget(self.store_dir_edit, 1)
        folder.addWidget(browse)
        self.callers_edit = QLineEdit(", ".join(current.allowed_callers))
        self.callers_edit.setPlaceholderText("empty: accept every caller")
        self.local_error = _message_label()
        # Serving the store to other nodes (workstation serve), on its own port.
        self.serve_check = QCheckBox("Serve the local store (Q/R SCP) on port")
        self.serve_check.setChecked(current.serve_enabled)
        self.serve_check.setToolTip(
            "Other workstations and viewers (the saved nodes and the allowed calling AE titles) "
            "may query and retrieve from the local store (C-FIND, C-MOVE to saved nodes, C-GET)"
        )
        self.serve_port_edit = QLineEdit(str(current.serve_port))
        self.serve_port_edit.setMaximumWidth(90)
        serve = QHBoxLayout()
        serve.addWidget(self.serve_check)
        serve.addWidget(self.serve_port_edit)
        serve.addStretch(1)
        for edit in (
            self.local_ae_edit,
            self.store_port_edit,
            self.callers_edit,
            self.serve_port_edit,
        ):
            edit.textEdited.connect(self._local_edited)

        form = QFormLayout()
        form.addRow("Our AE title", self.local_ae_edit)
        form.addRow("Storage port", self.store_port_edit)
        form.addRow("Store folder", folder)
        form.addRow("Allowed calling AE titles", self.callers_edit)
        form.addRow("Serving", serve)
        self.scp_tls_group = TlsGroup(server=True)
        self.scp_tls_group.set_values(
            current.scp_tls,
            current.scp_tls_ca,
            current.scp_tls_cert,
            current.scp_tls_key,
            current.scp_tls_require_client_cert,
        )
        self.scp_tls_group.edited.connect(self._local_edited)
        hint = QLabel(
            "The PACS must know our AE title, this computer's address and the storage port to "
            "send retrieved images (C-MOVE). Separate allowed AE titles with commas."
        )
        hint.setWordWrap(True)
        hint.setStyleSheet("color: #555;")
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addLayout(form)
        layout.addWidget(self.scp_tls_group)
        layout.addWidget(self.local_error)
        layout.addStretch(1)
        layout.addWidget(hint)
        return page

    # -- nodes -------------------------------------------------------------------------------

    def add_node(self) -> None:
        names = {d.name.strip().casefold() for d in self._drafts}
        name, n = "New node", 2
        while name.casefold() in names:
            name, n = f"New node {n}", n + 1
        self._drafts.append(NodeDraft(name=name))
        self.node_list.insertItem(len(self._drafts) - 1, QListWidgetItem(name))
        self.node_list.setCurrentRow(len(self._drafts) - 1)
        self.name_edit.setFocus()
        self.name_edit.selectAll()

    def remove_node(self) -> None:
        row = self.node_list.currentRow()
        if 0 <= row < len(self._drafts):
            del self._drafts[row]
            self.node_list.takeItem(row)
            self._show_draft(self.node_list.currentRow())

    def _builtin_at(self, row: int) -> RemoteNode | None:
        """The built-in node on list row ``row``, if that row shows one."""
        at = row - len(self._drafts)
        return self._builtin[at] if 0 <= at < len(self._builtin) else None

    def _show_draft(self, row: int) -> None:
        draft = self._drafts[row] if 0 <= row < len(self._drafts) else None
        builtin = self._builtin_at(row)
        if builtin is not None:
            draft = NodeDraft.of(builtin)
        self.form_box.setEnabled(draft is not None)
        for field in self._form_fields():
            field.setEnabled(builtin is None)
        self.remove_button.setEnabled(draft is not None and builtin is None)
        self.echo_result.setText("")
        self._loading = True
        try:
            shown = draft or NodeDraft(name="", ae_title="", host="", port="")
            self.name_edit.setText(shown.name)
            self.ae_edit.setText(shown.ae_title)
            self.host_edit.setText(shown.host)
            self.port_edit.setText(shown.port)
            self.method_combo.setCurrentIndex(
                next(i for i, (_, m) in enumerate(_METHODS) if m == shown.retrieve_method)
            )
            self.connect_spin.setValue(shown.connect_timeout)
            self.dimse_spin.setValue(shown.dimse_timeout)
            self.lanes_spin.setValue(shown.retrieve_associations)
            self.charset_combo.setCurrentIndex(max(0, self.charset_combo.findData(shown.charset)))
            self.lists_check.setChecked(shown.uid_lists)
            self.tls_group.set_values(
                shown.tls, shown.tls_ca, shown.tls_cert, shown.tls_key, shown.tls_verify_host
            )
        finally:
            self._loading = False
        self._check_draft(row)

    def _form_edited(self) -> None:
        row = self.node_list.currentRow()
        if self._loading or not 0 <= row < len(self._drafts):
            return
        draft = self._drafts[row]
        draft.name = self.name_edit.text()
        draft.ae_title = self.ae_edit.text()
        draft.host = self.host_edit.text()
        draft.port = self.port_edit.text()
        draft.retrieve_method = RetrieveMethod(self.method_combo.currentData())
        draft.connect_timeout = self.connect_spin.value()
        draft.dimse_timeout = self.dimse_spin.value()
        draft.retrieve_associations = self.lanes_spin.value()
        draft.charset = str(self.charset_combo.currentData())
        draft.uid_lists = self.lists_check.isChecked()
        (
            draft.tls,
            draft.tls_ca,
            draft.tls_cert,
            draft.tls_key,
            draft.tls_verify_host,
        ) = self.tls_group.values()
        item = self.node_list.item(row)
        item.setText(draft.name or "(unnamed)")
        self.echo_result.setText("")
        self._check_draft(row)

    def _form_fields(self) -> list[QWidget]:
        """The form's editable fields (Echo stays usable on a built-in node)."""
        return [
            self.name_edit, self.ae_edit, self.host_edit, self.port_edit, self.method_combo,
            self.connect_spin, self.dimse_spin, self.lanes_spin, self.charset_combo,
            self.lists_check, self.tls_group,
        ]  # fmt: skip

    def _check_draft(self, row: int) -> RemoteNode | None:
        """Validate one draft, show its problem under the form and mark its list item."""
        builtin = self._builtin_at(row)
        if builtin is not None:
            self.node_error.setText(
                "The demo archive built into this session (workstation --demo): it is not "
                "saved and cannot be edited. Add a node for your own PACS."
            )
            self.node_error.setStyleSheet("color: #555;")
            return builtin
        if not 0 <= row < len(self._drafts):
            self.node_error.setText("" if self._drafts else "No remote node yet: press Add.")
            self.node_error.setStyleSheet("color: #555;")
            return None
        try:
            node = self._drafts[row].build()
            self._check_unique(row)
        except InvalidInput as exc:
            self.node_error.setText(_sentence(str(exc)))
            self.node_error.setStyleSheet(ERROR_STYLE)
            self.node_list.item(row).setForeground(Qt.GlobalColor.red)
            return None
        self.node_error.setText("")
        self.node_list.item(row).setData(Qt.ItemDataRole.ForegroundRole, None)
        return node

    def _check_unique(self, row: int) -> None:
        name = self._drafts[row].name.strip().casefold()
        for other, draft in enumerate(self._drafts):
            if other != row and draft.name.strip().casefold() == name:
                raise InvalidInput(f"another node is already called {draft.name.strip()!r}")
        for node in self._builtin:
            if node.name.casefold() == name:
                raise InvalidInput(f"{node.name!r} is the built-in demo node's name")

    # -- echo --------------------------------------------------------------------------------

    def run_echo(self) -> None:
        """C-ECHO the node in the form, calling with our AE title, on a worker thread."""
        node = self._check_draft(self.node_list.currentRow())
        if node is None:
            return
        try:
            calling = validate_ae_title(self.local_ae_edit.text())
        except InvalidInput as exc:
            self._show_echo(f"Our AE title is not valid: {exc}", ok=False)
            return
        self.echo_button.setEnabled(False)
        self.echo_result.setStyleSheet("")
        self.echo_result.setText(f"Echoing {node}…")
        if self._echo_task is not None:
            self._echo_task.detach()  # a newer echo replaces the one still waiting
        self._echo_task = self._tasks.run(
            lambda _context: echo(node, calling_aet=calling),
            title=f"Echo {node}",
            success=self._echo_succeeded,
            failure=self._echo_failed,
        )

    def _echo_succeeded(self, result: EchoResult) -> None:
        self.echo_button.setEnabled(True)
        ms = result.seconds * 1000
        log.info("C-ECHO to %s answered in %.0f ms", result.node, ms)
        self._show_echo(f"✔ Echo OK — {result.node} answered in {ms:.0f} ms", ok=True)

    def _echo_failed(self, exc: BaseException) -> None:
        self.echo_button.setEnabled(True)
        self._show_echo(_sentence(describe_error(exc)), ok=False)

    def _show_echo(self, text: str, *, ok: bool) -> None:
        self.echo_result.setText(text)
        self.echo_result.setStyleSheet(OK_STYLE if ok else ERROR_STYLE)
        self.echo_finished.emit(text, ok)

    # -- local settings and result -----------------------------------------------------------

    def _browse_store_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Store folder", self.store_dir_edit.text())
        if folder:
            self.store_dir_edit.setText(folder)

    def _local_edited(self) -> None:
        try:
            self._local_values()
        except InvalidInput as exc:
            self.local_error.setText(_sentence(str(exc)))
            self.local_error.setStyleSheet(ERROR_STYLE)
        else:
            self.local_error.setText("")

    def _local_values(self) -> dict[str, object]:
        local = LocalAE(self.local_ae_edit.text(), self.store_port_edit.text())  # type: ignore[arg-type]
        callers = [validate_ae_title(t) for t in self.callers_edit.text().split(",") if t.strip()]
        folder = self.store_dir_edit.text().strip()
        if not folder:
            raise InvalidInput("choose a store folder")
        serve_port = LocalAE(local.ae_title, self.serve_port_edit.text()).port  # type: ignore[arg-type]
        if not serve_port:
            raise InvalidInput("give the port to serve the local store on (e.g. 11114)")
        tls, ca, cert, key, require = self.scp_tls_group.values()
        if tls and not (cert and key):
            raise InvalidInput("DICOM TLS for our SCPs needs our certificate and its private key")
        return {
            "scp_tls": tls,
            "scp_tls_cert": cert,
            "scp_tls_key": key,
            "scp_tls_ca": ca,
            "scp_tls_require_client_cert": require,
            "ae_title": local.ae_title,
            "store_port": local.port,
            "store_dir": folder,
            "allowed_callers": callers,
            "serve_enabled": self.serve_check.isChecked(),
            "serve_port": serve_port,
        }

    def build_settings(self) -> Settings:
        """The settings as edited; raises InvalidInput naming the first problem."""
        local = self._local_values()
        nodes: dict[str, RemoteNode] = {}
        for row, draft in enumerate(self._drafts):
            try:
                node = draft.build()
                self._check_unique(row)
            except InvalidInput as exc:
                raise InvalidInput(f"node {draft.name.strip() or row + 1}: {exc}") from None
            nodes[node.name] = node
        return dataclasses.replace(self._original, nodes=nodes, **local)  # type: ignore[arg-type]

    def accept(self) -> None:
        try:
            new = self.build_settings()
        except InvalidInput as exc:
            self._show_problem(str(exc))
            return
        try:
            settings_module.save(new)
        except OSError as exc:
            log.error("cannot save the settings: %s", exc)
            self._show_problem(f"cannot save the settings: {exc}")
            return
        self._result = new
        super().accept()

    def _show_problem(self, text: str) -> None:
        """Bring the first invalid node (or the local settings) into view with its message."""
        for row in range(len(self._drafts)):
            if self._check_draft(row) is None:
                self.tabs.setCurrentIndex(0)
                self.node_list.setCurrentRow(row)
                return
        self._local_edited()
        if not self.local_error.text():
            self.local_error.setText(_sentence(text))
            self.local_error.setStyleSheet(ERROR_STYLE)
        self.tabs.setCurrentIndex(1)

    def settings(self) -> Settings:
        """The saved settings after OK; the settings given at start otherwise."""
        return self._result

    def done(self, result: int) -> None:
        if self._echo_task is not None:
            self._echo_task.detach()
        super().done(result)


def _seconds(low: float, high: float) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setDecimals(0)
    spin.setSuffix(" s")
    spin.setMaximumWidth(110)
    return spin


def _message_label() -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text
