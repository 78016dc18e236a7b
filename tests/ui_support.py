"""Fixtures shared by the window tests: a demo PACS, a session on temporary folders, a window.

Loaded by the window tests (``pytest_plugins = ["tests.ui_support"]``, ``from tests.ui_support
import ...``) rather than by conftest.py, which belongs to the whole suite. Not named ``test_*``:
it is a plugin, not a test module.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from workstation.demo.archive import DemoArchive, demo_archive
from workstation.nodes import RemoteNode, RetrieveMethod
from workstation.session import Session
from workstation.settings import Settings
from workstation.ui.main_window import MainWindow

WAIT_MS = 20_000


@pytest.fixture
def ui_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private config folder and store folder for this test."""
    monkeypatch.setenv("WORKSTATION_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WORKSTATION_STORE_DIR", str(tmp_path / "store"))
    return tmp_path


@pytest.fixture
def demo() -> Iterator[DemoArchive]:
    """The demo archive (seed 1, with studies of today and yesterday) on a loopback port."""
    archive = demo_archive(seed=1).start()
    try:
        yield archive
    finally:
        archive.stop()


def demo_node(archive: DemoArchive, name: str = "DEMO") -> RemoteNode:
    return archive.node.with_options(name=name, retrieve_method=RetrieveMethod.MOVE)


def make_settings(ui_dirs: Path, nodes: dict[str, RemoteNode]) -> Settings:
    from servers import free_port

    return Settings(
        store_port=free_port(),
        store_bind="127.0.0.1",
        store_dir=str(ui_dirs / "store"),
        nodes=nodes,
        retrieve_idle_timeout=10.0,
    )


@pytest.fixture
def ui_settings(ui_dirs: Path, demo: DemoArchive) -> Settings:
    return make_settings(ui_dirs, {"DEMO": demo_node(demo)})


@pytest.fixture
def open_session(demo: DemoArchive) -> Iterator[Callable[[Settings], Session]]:
    """``open_session(settings)``: a Session whose SCP the demo archive knows; all closed."""
    sessions: list[Session] = []

    def open_(settings: Settings) -> Session:
        session = Session.open(settings=settings)
        demo.add_destination(session.scp.ae_title, "127.0.0.1", session.scp.port)
        sessions.append(session)
        return session

    try:
        yield open_
    finally:
        for session in sessions:
            session.close()


@pytest.fixture
def open_window(qtbot: QtBot) -> Iterator[Callable[[Session], MainWindow]]:
    """``open_window(session)``: a shown MainWindow; closed (before its session) at the end."""
    windows: list[MainWindow] = []

    def open_(session: Session) -> MainWindow:
        window = MainWindow(session)
        qtbot.addWidget(window)
        window.query_panel.confirm_blank_search = lambda: True  # type: ignore[method-assign]
        window.show()
        qtbot.waitExposed(window)
        windows.append(window)
        return window

    try:
        yield open_
    finally:
        for window in windows:
            window.close()


@pytest.fixture
def session(ui_settings: Settings, open_session: Callable[[Settings], Session]) -> Session:
    return open_session(ui_settings)


@pytest.fixture
def window(session: Session, open_window: Callable[[Session], MainWindow]) -> MainWindow:
    return open_window(session)


def search(qtbot: QtBot, window: MainWindow, name: str = "", **fields: str) -> None:
    """Type into the search form and press Enter; wait until every node answered."""
    panel = window.query_panel
    panel.patient_name.setText(name)
    for attribute, value in fields.items():
        getattr(panel, attribute).setText(value)
    with qtbot.waitSignal(window.search.finished, timeout=WAIT_MS):
        panel.patient_name.setFocus()
        qtbot.keyClick(panel.patient_name, "\r")
    qtbot.waitUntil(lambda: window.study_model.rowCount() == len(window.study_model.rows))


@pytest.fixture
def open_nodes_window(
    ui_dirs: Path, open_window: Callable[[Session], MainWindow]
) -> Iterator[Callable[[dict[str, RemoteNode]], MainWindow]]:
    """``open_nodes_window(nodes)``: a window on a session of its own knowing ``nodes`` (a real
    PACS, no demo archive), every node ticked; the window is closed before its session."""
    opened: list[tuple[MainWindow, Session]] = []

    def open_(nodes: dict[str, RemoteNode]) -> MainWindow:
        session = Session.open(settings=make_settings(ui_dirs, nodes))
        window = open_window(session)
        window.query_panel.select_nodes(list(nodes))
        opened.append((window, session))
        return window

    try:
        yield open_
    finally:
        for window, session in opened:
            window.close()
            session.close()
