"""Retrieving from the window: the queue rows, the store's content, cancel, quit and resume."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from tests.ui_support import WAIT_MS, search
from workstation.demo.archive import DemoArchive
from workstation.dimse.pynetdicom_ae import make_ae
from workstation.jobs import JobState, RetrieveJob
from workstation.results import StudyRow
from workstation.session import Session
from workstation.settings import Settings
from workstation.ui.main_window import MainWindow
from workstation.ui.queue.queue_model import PROGRESS_ROLE, QueueColumn
from workstation.ui.search.study_model import StudyColumn

pytestmark = pytest.mark.gui
pytest_plugins = ["tests.ui_support"]  # its fixtures: demo, session, window...


def only_job(window: MainWindow) -> RetrieveJob:
    jobs = window.queue_view.model.rows
    assert len(jobs) == 1, jobs
    return jobs[0]


def wait_state(qtbot: QtBot, window: MainWindow, *states: JobState) -> RetrieveJob:
    qtbot.waitUntil(
        lambda: bool(window.queue_view.model.rows) and only_job(window).state in states,
        timeout=WAIT_MS,
    )
    return only_job(window)


def local_cell(window: MainWindow, study_uid: str) -> str:
    position = window.study_model.position(study_uid)
    assert position is not None
    column = list(StudyColumn).index(StudyColumn.LOCAL)
    return str(window.study_model.index(position, column).data())


def biggest_smith_study(qtbot: QtBot, window: MainWindow) -> StudyRow:
    search(qtbot, window, "smith")
    row = max(window.study_model.rows, key=lambda r: r.instance_count or 0)
    window.study_view.select_study(row.study_uid)
    return row


def test_retrieve_selected_study_completes_into_the_store(
    qtbot: QtBot, window: MainWindow, session: Session, demo: DemoArchive
) -> None:
    row = biggest_smith_study(qtbot, window)
    qtbot.keyClick(window.study_view.table, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    job = wait_state(qtbot, window, JobState.DONE, JobState.PARTIAL, JobState.FAILED)
    assert job.state is JobState.DONE, job.message
    assert job.study_uid == row.study_uid and job.expected == row.instance_count
    model = window.queue_view.model
    index = model.index(0, list(QueueColumn).index(QueueColumn.PROGRESS))
    assert index.data(PROGRESS_ROLE) == 1.0 and index.data() == "100%"
    count = model.index(0, list(QueueColumn).index(QueueColumn.COUNT)).data()
    assert count == f"{row.instance_count}/{row.instance_count}"
    assert demo.archive is not None
    assert session.store.instance_uids(study_uid=row.study_uid) == demo.archive.sop_instance_uids(
        row.study_uid
    )
    qtbot.waitUntil(lambda: local_cell(window, row.study_uid) == "complete", timeout=WAIT_MS)


def test_double_click_on_series_retrieves_only_that_series(
    qtbot: QtBot, window: MainWindow, session: Session, demo: DemoArchive
) -> None:
    row = biggest_smith_study(qtbot, window)
    qtbot.waitUntil(lambda: window.series_panel.model.rowCount() > 1, timeout=WAIT_MS)
    series = window.series_panel.model.row_at(0)
    window.series_panel.table.selectRow(0)
    window.retrieve_selected()
    job = wait_state(qtbot, window, JobState.DONE, JobState.PARTIAL, JobState.FAILED)
    assert job.state is JobState.DONE, job.message
    assert job.series_uids == (series.series_uid,) and job.expected == series.instance_count
    assert demo.archive is not None
    expected = {
        i.SOPInstanceUID
        for s in demo.archive.study(row.study_uid).series
        if s.SeriesInstanceUID == series.series_uid
        for i in s.instances
    }
    assert session.store.instance_uids(study_uid=row.study_uid) == expected
    qtbot.waitUntil(lambda: local_cell(window, row.study_uid) == "partial", timeout=WAIT_MS)


def test_cancel_a_running_retrieve(
    qtbot: QtBot, window: MainWindow, session: Session, demo: DemoArchive
) -> None:
    row = biggest_smith_study(qtbot, window)
    demo.delay_per_instance = 0.5
    window.retrieve_selected()
    qtbot.waitUntil(
        lambda: (
            bool(window.queue_view.model.rows)
            and (only_job(window).progress or None) is not None
            and only_job(window).progress.received >= 1
        ),  # type: ignore[union-attr]
        timeout=WAIT_MS,
    )
    window.queue_view.table.selectRow(0)
    assert window.queue_view.cancel_button.isEnabled()
    qtbot.mouseClick(window.queue_view.cancel_button, Qt.MouseButton.LeftButton)
    job = wait_state(qtbot, window, JobState.CANCELLED, JobState.DONE, JobState.FAILED)
    assert job.state is JobState.CANCELLED, job.message
    held = session.store.instance_uids(study_uid=row.study_uid)
    assert 1 <= len(held) < (row.instance_count or 0)
    assert window.queue_view.retry_button.isEnabled()
    demo.delay_per_instance = 0.0
    qtbot.mouseClick(window.queue_view.retry_button, Qt.MouseButton.LeftButton)
    job = wait_state(qtbot, window, JobState.DONE, JobState.PARTIAL, JobState.FAILED)
    assert job.state is JobState.DONE, job.message
    assert demo.archive is not None
    assert session.store.instance_uids(study_uid=row.study_uid) == demo.archive.sop_instance_uids(
        row.study_uid
    )


def test_quit_during_a_retrieve_then_resume_in_a_new_window(
    qtbot: QtBot,
    ui_dirs: Path,
    ui_settings: Settings,
    demo: DemoArchive,
    open_session: Callable[[Settings], Session],
    open_window: Callable[[Session], MainWindow],
) -> None:
    first_session = open_session(ui_settings)
    first = open_window(first_session)
    row = biggest_smith_study(qtbot, first)
    demo.delay_per_instance = 0.4
    first.retrieve_selected()
    qtbot.waitUntil(
        lambda: (
            bool(first.queue_view.model.rows)
            and first_session.store.study_completeness(row.study_uid) >= 1
        ),
        timeout=WAIT_MS,
    )
    first.close()
    first_session.close()  # what quitting does: the queue persists the running job
    store = ui_dirs / "store"
    incoming = store / ".incoming"
    assert not incoming.exists() or not list(incoming.iterdir())
    files = list(store.rglob("*.dcm"))
    assert 1 <= len(files) < (row.instance_count or 0)
    for path in files:  # every file there is whole: it parses to the end, pixels included
        ds = dcmread(path)
        assert ds.SOPInstanceUID == path.stem
        assert len(ds.PixelData) == ds.Rows * ds.Columns * 2
    assert demo.archive is not None

    demo.delay_per_instance = 0.0
    second_session = open_session(ui_settings)
    second = open_window(second_session)
    job = wait_state(qtbot, second, JobState.DONE, JobState.PARTIAL, JobState.FAILED)
    assert job.state is JobState.DONE, job.message
    assert job.study_uid == row.study_uid
    assert second_session.store.instance_uids(
        study_uid=row.study_uid
    ) == demo.archive.sop_instance_uids(row.study_uid)


def test_unsolicited_push_updates_the_local_column_and_the_browser(
    qtbot: QtBot,
    ui_settings: Settings,
    open_session: Callable[[Settings], Session],
    open_window: Callable[[Session], MainWindow],
    demo: DemoArchive,
) -> None:
    # Our SCP takes pushes from the configured nodes and the callers allowed by hand only.
    ui_settings.allowed_callers = ["MODALITY"]
    session = open_session(ui_settings)
    window = open_window(session)
    stranger = make_ae("STRANGER")
    stranger.add_requested_context("1.2.840.10008.1.1")
    refused = stranger.associate("127.0.0.1", session.scp.port, ae_title=session.scp.ae_title)
    assert refused.is_rejected
    search(qtbot, window, "smith")
    row = window.study_model.rows[0]
    assert demo.archive is not None
    uids = sorted(demo.archive.sop_instance_uids(row.study_uid))
    failures: list[str] = []

    def push() -> None:  # another modality sends one image of the study on its own
        from pydicom import dcmread
        from pydicom.filebase import DicomBytesIO

        ds = dcmread(DicomBytesIO(demo.part10(uids[0])))
        ae = make_ae("MODALITY")
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        assoc = ae.associate("127.0.0.1", session.scp.port, ae_title=session.scp.ae_title)
        if not assoc.is_established:
            failures.append("association refused")
            return
        status = assoc.send_c_store(ds)
        assoc.release()
        if not status or status.Status != 0:
            failures.append(f"status {status}")

    thread = threading.Thread(target=push)
    thread.start()
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=WAIT_MS)
    assert not failures
    expected = "complete" if len(uids) == 1 else "partial"
    qtbot.waitUntil(lambda: local_cell(window, row.study_uid) == expected, timeout=WAIT_MS)
    assert window.tracker.received == 1
