"""The real window against a real Q/R SCP (the demo archive): search, series, shortcuts, state.

Expected results are computed from the generator's Archive, never from what the SCP said.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

import workstation as ws
from tests.ui_support import WAIT_MS, demo_node, make_settings, search
from workstation.demo import Archive
from workstation.demo.archive import DemoArchive, demo_archive
from workstation.nodes import RemoteNode
from workstation.query import matches_pattern
from workstation.search import DatePreset
from workstation.session import Session
from workstation.settings import Settings
from workstation.ui.main_window import MainWindow
from workstation.ui.search.study_model import StudyColumn

pytestmark = pytest.mark.gui
pytest_plugins = ["tests.ui_support"]  # its fixtures: demo, session, window...


def expected_uids(archive: DemoArchive, pattern: str) -> set[str]:
    assert archive.archive is not None
    return {
        s.StudyInstanceUID
        for s in archive.archive.studies
        if matches_pattern(s.PatientName, pattern)
    }


def shown_uids(window: MainWindow) -> set[str]:
    return {row.study_uid for row in window.study_model.rows}


@pytest.mark.parametrize("typed", ["smith", "SMITH", "müller", "muller", "иван", "dvorak"])
def test_typing_a_name_and_enter_lists_exactly_the_matching_studies(
    qtbot: QtBot, window: MainWindow, demo: DemoArchive, typed: str
) -> None:
    search(qtbot, window, typed)
    expected = expected_uids(demo, typed + "*")
    assert expected, "the generator should hold patients for this name"
    assert shown_uids(window) == expected
    assert window.study_model.rowCount() == len(expected)
    counter = window.study_view.counter.text()
    assert counter.startswith(f"{len(expected)} studies in ") and "searching" not in counter


def test_rows_show_the_archive_values(qtbot: QtBot, window: MainWindow, demo: DemoArchive) -> None:
    search(qtbot, window, "smith^jane")
    assert demo.archive is not None
    [study] = [s for s in demo.archive.studies if s.PatientName == "SMITH^JANE"][:1]
    position = window.study_model.position(study.StudyInstanceUID)
    assert position is not None
    model = window.study_model

    def cell(column: StudyColumn) -> str:
        return str(model.index(position, list(StudyColumn).index(column)).data())

    assert cell(StudyColumn.PATIENT_NAME) == "SMITH, JANE"
    assert cell(StudyColumn.PATIENT_ID) == study.PatientID
    assert cell(StudyColumn.ACCESSION) == study.AccessionNumber
    assert cell(StudyColumn.INSTANCES) == str(study.number_of_instances)
    assert cell(StudyColumn.MODALITIES) == "/".join(study.modalities)
    assert cell(StudyColumn.SOURCES) == "DEMO"
    assert cell(StudyColumn.LOCAL) == "—"


def test_modalities_and_date_preset_narrow_the_search(
    qtbot: QtBot, window: MainWindow, demo: DemoArchive
) -> None:
    assert demo.archive is not None
    panel = window.query_panel
    panel.modality_boxes["CT"].setChecked(True)
    panel.modality_boxes["MR"].setChecked(True)
    search(qtbot, window)
    expected = {
        s.StudyInstanceUID for s in demo.archive.studies if {"CT", "MR"} & set(s.modalities)
    }
    assert shown_uids(window) == expected
    panel.clear()
    panel.set_preset(DatePreset.TODAY)
    search(qtbot, window)
    today = dt.date.today().strftime("%Y%m%d")
    assert shown_uids(window) == {
        s.StudyInstanceUID for s in demo.archive.studies if s.StudyDate == today
    }


def test_blank_search_asks_first(qtbot: QtBot, window: MainWindow, demo: DemoArchive) -> None:
    asked: list[bool] = []
    window.query_panel.confirm_blank_search = lambda: asked.append(True) or False  # type: ignore[method-assign]
    window.query_panel.request_search()
    assert asked == [True] and not window.search.running
    assert window.study_model.rowCount() == 0
    window.query_panel.confirm_blank_search = lambda: True  # type: ignore[method-assign]
    search(qtbot, window)
    assert demo.archive is not None
    assert window.study_model.rowCount() == len(demo.archive.studies)


def test_two_nodes_merge_the_same_study_and_a_dead_node_is_reported(
    qtbot: QtBot,
    ui_dirs: Path,
    demo: DemoArchive,
    open_session: Callable[[Settings], Session],
    open_window: Callable[[Session], MainWindow],
) -> None:
    from servers import free_port

    twin = demo_archive(seed=1).start()  # same UIDs: the same studies on a second PACS
    try:
        dead = demo_node(demo, "DOWN").with_options(port=free_port(), connect_timeout=2.0)
        nodes = {"A": demo_node(demo, "A"), "B": demo_node(twin, "B"), "DOWN": dead}
        window = open_window(open_session(make_settings(ui_dirs, nodes)))
        window.query_panel.select_nodes(["A", "B", "DOWN"])
        search(qtbot, window, "smith")
        expected = expected_uids(demo, "smith*")
        assert shown_uids(window) == expected
        assert all(sorted(row.sources) == ["A", "B"] for row in window.study_model.rows)
        assert "DOWN failed" in window.study_view.counter.text()
    finally:
        twin.stop()


def test_selecting_a_study_lists_its_series(
    qtbot: QtBot, window: MainWindow, demo: DemoArchive
) -> None:
    search(qtbot, window, "smith")
    row = window.study_model.rows[0]
    assert demo.archive is not None
    study = demo.archive.study(row.study_uid)
    with qtbot.waitSignal(window.series_panel.loaded, timeout=WAIT_MS):
        window.study_view.select_study(row.study_uid)
    series = window.series_panel.model.rows
    assert {s.series_uid for s in series} == {s.SeriesInstanceUID for s in study.series}
    counts = {s.series_uid: s.instance_count for s in series}
    assert counts == {s.SeriesInstanceUID: len(s.instances) for s in study.series}


def test_stop_ends_a_slow_search(qtbot: QtBot, window: MainWindow, demo: DemoArchive) -> None:
    demo.delay_per_match = 0.3
    window.query_panel.request_search()  # blank: every study, one every 0.3 s
    qtbot.waitUntil(lambda: window.study_model.rowCount() >= 1, timeout=WAIT_MS)
    with qtbot.waitSignal(window.search.finished, timeout=WAIT_MS):
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert demo.archive is not None
    assert window.study_model.rowCount() < len(demo.archive.studies)
    assert "stopped" in window.study_view.counter.text()


def test_shortcuts_focus_and_clear(qtbot: QtBot, window: MainWindow) -> None:
    panel = window.query_panel
    panel.patient_name.setText("smith")
    panel.modality_boxes["CT"].setChecked(True)
    window.study_view.table.setFocus()
    qtbot.keyClick(window.study_view.table, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert panel.patient_name.text() == "" and not panel.modality_boxes["CT"].isChecked()
    window.study_view.table.setFocus()
    qtbot.keyClick(window.study_view.table, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: panel.patient_name.hasFocus())


def test_window_layout_is_restored(
    qtbot: QtBot,
    session: Session,
    open_window: Callable[[Session], MainWindow],
    ui_dirs: Path,
) -> None:
    first = open_window(session)
    first.resize(900, 640)  # the offscreen screen is small: Qt may fit the window to it
    first.study_view.table.setColumnWidth(0, 333)
    first.main_splitter.setSizes([300, 250])
    size, sizes = first.size(), first.main_splitter.sizes()
    first.close()
    assert (ui_dirs / "config" / "window.ini").is_file()
    second = open_window(session)
    assert second.study_view.table.columnWidth(0) == 333
    assert second.size().height() == size.height()  # the width is fitted to the small screen
    assert second.main_splitter.sizes() == sizes


# -- real PACS: accents, modalities, character sets -----------------------------------------


def _window_on(
    node: RemoteNode,
    ui_dirs: Path,
    open_session: Callable[[Settings], Session],
    open_window: Callable[[Session], MainWindow],
) -> MainWindow:
    window = open_window(open_session(make_settings(ui_dirs, {node.label: node})))
    window.query_panel.select_nodes([node.label])
    return window


def test_muller_finds_mueller_on_orthanc(
    qtbot: QtBot,
    orthanc,  # type: ignore[no-untyped-def]
    archive: Archive,
    ui_dirs: Path,
    open_session: Callable[[Settings], Session],
    open_window: Callable[[Session], MainWindow],
) -> None:
    """Orthanc does not fold accents (``muller*`` finds nothing there); the window asks for
    ``M*LL*`` and refines on its side, so exactly the Müllers are listed."""
    assert not list(ws.find(orthanc.node, ws.Query.study(PatientName="muller*")))
    window = _window_on(orthanc.node, ui_dirs, open_session, open_window)
    search(qtbot, window, "muller")
    want = {s.StudyInstanceUID for s in archive.studies if s.PatientName.startswith("Müller")}
    assert want and shown_uids(window) == want
    search(qtbot, window, "dvorak")
    assert {row.patient_name for row in window.study_model.rows} == {"Dvořák^Antonín"}


def test_modalities_on_dcmqrscp_which_ignores_them(
    qtbot: QtBot,
    dcmqrscp,  # type: ignore[no-untyped-def]
    archive: Archive,
    ui_dirs: Path,
    open_session: Callable[[Settings], Session],
    open_window: Callable[[Session], MainWindow],
) -> None:
    """dcmqrscp answers every study to ModalitiesInStudy=CT, without the key: the refine asks
    each study's series, and only the CT studies are listed."""
    window = _window_on(dcmqrscp.node, ui_dirs, open_session, open_window)
    window.query_panel.modality_boxes["CT"].setChecked(True)
    search(qtbot, window)
    want = {s.StudyInstanceUID for s in archive.studies if "CT" in s.modalities}
    assert 0 < len(want) < len(archive.studies)
    assert shown_uids(window) == want


def test_a_non_ascii_search_that_finds_nothing_names_the_character_set(
    qtbot: QtBot, window: MainWindow
) -> None:
    search(qtbot, window, "жуков")
    assert window.study_model.rowCount() == 0
    status = window.study_view.counter.text()
    assert "no match; the query was sent as ISO_IR 192 (UTF-8)" in status
    assert "if DEMO holds Latin-1 names, set its character set to ISO_IR 100" in status
    search(qtbot, window, "nobody")  # ASCII: the character set does not matter
    assert "character set" not in window.study_view.counter.text()
