"""Settings as a user changes them in the Nodes dialog: our AE title and port apply at once
(no restart), a port that cannot be had leaves the old one listening with a clear message,
the demo archive is listed as a built-in node, and a refused echo reads as one line of ours."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from tests.servers import free_port, port_open
from tests.ui_support import WAIT_MS, make_settings, search
from workstation import settings as settings_module
from workstation.demo.archive import DemoArchive
from workstation.dimse.echo import echo
from workstation.errors import AssociationRejected
from workstation.jobs import JobState
from workstation.nodes import RemoteNode
from workstation.session import Session
from workstation.ui.main_window import MainWindow
from workstation.ui.nodes.nodes_dialog import NodesDialog

pytestmark = pytest.mark.gui
pytest_plugins = ["tests.ui_support"]


def in_nodes_dialog(window: MainWindow, act: Callable[[NodesDialog], None]) -> None:
    """Nodes… from the menu; ``act(dialog)`` runs while the dialog is open (it ends it)."""

    def run() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, NodesDialog):
            QTimer.singleShot(10, run)
            return
        act(dialog)

    QTimer.singleShot(0, run)
    window.nodes_action.trigger()


def set_local(dialog: NodesDialog, ae_title: str, port: int) -> None:
    """On the "This workstation" tab, type our AE title and storage port, then OK."""
    dialog.tabs.setCurrentIndex(1)
    dialog.local_ae_edit.setText(ae_title)
    dialog.store_port_edit.setText(str(port))
    dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()


def echo_as(caller: str, ae_title: str, port: int) -> None:
    echo(RemoteNode(ae_title, "127.0.0.1", port, connect_timeout=3), calling_aet=caller)


def test_a_new_ae_title_and_port_apply_without_a_restart(
    qtbot: QtBot, window: MainWindow, session: Session, demo: DemoArchive
) -> None:
    old_port = session.scp.port
    new_port = free_port()
    in_nodes_dialog(window, lambda dialog: set_local(dialog, "READING1", new_port))
    qtbot.waitUntil(
        lambda: window.scp_label.text() == f"READING1@{new_port} listening", timeout=WAIT_MS
    )
    assert "#1b7f3b" in window.scp_label.styleSheet()  # green: listening
    assert not port_open(old_port)
    echo_as("DEMO", "READING1", new_port)  # a saved node may call us on the new port
    with pytest.raises(AssociationRejected):
        echo_as("STRANGER", "READING1", new_port)  # and still only the saved nodes
    assert session.scp.ae_title == session.queue.calling_aet == "READING1"
    assert settings_module.load().ae_title == "READING1"

    # The PACS administrator changes our entry; a retrieve then arrives on the new port.
    demo.add_destination("READING1", "127.0.0.1", new_port)
    search(qtbot, window, "smith")
    window.study_view.select_study(window.study_model.rows[0].study_uid)
    window.retrieve_selected()
    model = window.queue_view.model
    qtbot.waitUntil(lambda: bool(model.rows) and model.rows[0].is_finished, timeout=WAIT_MS)
    assert model.rows[0].state is JobState.DONE, model.rows[0].message


def test_a_node_added_may_store_to_us_at_once(
    qtbot: QtBot, window: MainWindow, session: Session
) -> None:
    port = session.scp.port
    with pytest.raises(AssociationRejected):
        echo_as("MODALITY", "WORKSTATION", port)  # not a saved node: refused

    def add(dialog: NodesDialog) -> None:
        dialog.add_button.click()
        for edit, text in ((dialog.name_edit, "CT1"), (dialog.ae_edit, "MODALITY")):
            edit.setText(text)
            edit.textEdited.emit(text)
        dialog.buttons.button(dialog.buttons.StandardButton.Ok).click()

    in_nodes_dialog(window, add)
    message = f"Storage SCP WORKSTATION@{port} listening"
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() == message, timeout=WAIT_MS)
    echo_as("MODALITY", "WORKSTATION", port)  # the same listener, no restart
    assert session.scp.port == port and port_open(port)


def test_a_port_in_use_keeps_the_old_scp_and_says_why(
    qtbot: QtBot, window: MainWindow, session: Session
) -> None:
    old_port = session.scp.port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        in_nodes_dialog(window, lambda dialog: set_local(dialog, "WORKSTATION", busy))
        assert "moving to" in window.scp_label.text()  # the GUI did not wait for the SCP
        qtbot.waitUntil(
            lambda: isinstance(window.findChild(QMessageBox), QMessageBox), timeout=WAIT_MS
        )
    box = window.findChild(QMessageBox)
    assert box is not None and box.windowTitle() == "Storage SCP settings"
    assert f"cannot listen on port {busy}: it is in use" in box.text().lower()
    assert f"It stays WORKSTATION@{old_port} listening" in box.text()
    assert window.scp_label.text() == f"WORKSTATION@{old_port} listening"
    assert f"port {busy}" in window.statusBar().currentMessage()
    echo_as("DEMO", "WORKSTATION", old_port)  # still serving where it was


def test_the_demo_node_is_listed_as_built_in(
    qtbot: QtBot, ui_dirs: Path, open_window: Callable[[Session], MainWindow]
) -> None:
    session = Session.open(demo=True, settings=make_settings(ui_dirs, {}))
    try:
        window = open_window(session)
        qtbot.waitUntil(lambda: "DEMO" in session.nodes, timeout=WAIT_MS)
        seen: dict[str, object] = {}

        def look(dialog: NodesDialog) -> None:
            items = [dialog.node_list.item(i).text() for i in range(dialog.node_list.count())]
            seen["items"] = items
            dialog.node_list.setCurrentRow(items.index("DEMO (built-in demo)"))
            seen["read_only"] = not dialog.ae_edit.isEnabled() and not dialog.port_edit.isEnabled()
            seen["removable"] = dialog.remove_button.isEnabled()
            seen["note"] = dialog.node_error.text()
            dialog.echo_button.click()  # Echo works on it
            qtbot.waitUntil(lambda: "Echoing" not in dialog.echo_result.text(), timeout=WAIT_MS)
            seen["echo"] = dialog.echo_result.text()
            dialog.add_button.click()  # a node of one's own may not take its name
            dialog.name_edit.setText("demo")
            dialog.name_edit.textEdited.emit("demo")
            seen["clash"] = dialog.node_error.text()
            dialog.reject()

        in_nodes_dialog(window, look)
        assert seen["items"] == ["DEMO (built-in demo)"]
        assert seen["read_only"] and not seen["removable"]
        assert "not saved" in str(seen["note"])
        assert str(seen["echo"]).startswith("✔ Echo OK"), seen["echo"]
        assert "built-in demo" in str(seen["clash"])

        in_nodes_dialog(window, lambda d: d.buttons.button(d.buttons.StandardButton.Ok).click())
        assert settings_module.load().nodes == {}  # the demo is never saved
        assert "DEMO" in session.nodes
    finally:
        window.close()
        session.close()


def test_a_refused_echo_is_one_line_of_ours_in_the_log(
    qtbot: QtBot,
    open_nodes_window: Callable[[dict[str, RemoteNode]], MainWindow],
    make_orthanc: Callable[..., object],
) -> None:
    orthanc = make_orthanc()
    wrong = orthanc.node.with_options(name="PACS", ae_title="NOTORTHANC")  # type: ignore[attr-defined]
    window = open_nodes_window({"PACS": wrong})
    window.log_dock.show()
    window.echo_action.trigger()
    qtbot.waitUntil(lambda: "rejected" in window.statusBar().currentMessage(), timeout=WAIT_MS)
    window.log_pane.flush()
    lines = [line for line in window.log_pane.text().splitlines() if "C-ECHO" in line]
    assert len(lines) == 1 and "WARNING" in lines[0], lines
    assert "correct the AE title" in lines[0]
    everything = window.log_pane.text()
    assert "pynetdicom" not in everything and " ERROR " not in everything, everything
