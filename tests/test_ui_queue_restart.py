"""The queue as a user sees it across a restart, and how its rows read: counters, speed, colours.

A finished retrieve must read the same after the workstation starts again (Images, Progress,
Speed and Details agree), a finished job's Speed reads like a running one's, and a selected
Failed row still says it failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from pytestqt.qtbot import QtBot

from tests.ui_support import WAIT_MS, search
from workstation.demo.archive import DemoArchive
from workstation.jobs import JobState, RetrieveJob
from workstation.nodes import RemoteNode
from workstation.session import Session
from workstation.settings import Settings
from workstation.ui.main_window import MainWindow
from workstation.ui.queue.queue_model import PROGRESS_ROLE, QueueColumn

pytestmark = pytest.mark.gui
pytest_plugins = ["tests.ui_support"]

#: "40 img/s · 2.1 MB/s": what the Speed column says while a job runs and once it ended.
SPEED = re.compile(r"^\d+ img/s · \d+(?:\.\d)? (?:kB|MB|GB)/s$")


def cells(window: MainWindow, row: int = 0) -> dict[QueueColumn, str]:
    model = window.queue_view.model
    return {c: str(model.index(row, i).data() or "") for i, c in enumerate(QueueColumn)}


def wait_finished(qtbot: QtBot, window: MainWindow, count: int = 1) -> list[RetrieveJob]:
    model = window.queue_view.model
    qtbot.waitUntil(
        lambda: len(model.rows) == count and all(j.is_finished for j in model.rows),
        timeout=WAIT_MS,
    )
    return window.queue_view.model.rows


def test_a_finished_retrieve_reads_the_same_after_a_restart(
    qtbot: QtBot,
    ui_settings: Settings,
    demo: DemoArchive,
    open_session: Callable[[Settings], Session],
    open_window: Callable[[Session], MainWindow],
) -> None:
    first_session = open_session(ui_settings)
    first = open_window(first_session)
    search(qtbot, first, "smith")
    row = max(first.study_model.rows, key=lambda r: r.instance_count or 0)
    first.study_view.select_study(row.study_uid)
    first.series_panel.table.clearSelection()
    first.retrieve_selected()
    (job,) = wait_finished(qtbot, first)
    assert job.state is JobState.DONE, job.message
    before = cells(first)
    count = row.instance_count
    assert before[QueueColumn.COUNT] == f"{count}/{count}"
    assert f"{count}" in before[QueueColumn.MESSAGE]
    assert SPEED.match(before[QueueColumn.SPEED]), before[QueueColumn.SPEED]
    first.close()
    first_session.close()

    second = open_window(open_session(ui_settings))
    qtbot.waitUntil(lambda: len(second.queue_view.model.rows) == 1, timeout=WAIT_MS)
    after = cells(second)
    assert after == before  # Images, Progress, Speed and Details as they were
    progress = second.queue_view.model.index(0, list(QueueColumn).index(QueueColumn.PROGRESS))
    assert progress.data(PROGRESS_ROLE) == 1.0
    assert second.queue_view.summary.text() == "idle"


def test_a_finished_jobs_speed_is_its_average_and_the_tooltip_tells_how_long(
    qtbot: QtBot, window: MainWindow, demo: DemoArchive
) -> None:
    search(qtbot, window, "smith")
    row = max(window.study_model.rows, key=lambda r: r.instance_count or 0)
    window.study_view.select_study(row.study_uid)
    demo.delay_per_instance = 0.05
    window.retrieve_selected()
    model = window.queue_view.model
    speed = list(QueueColumn).index(QueueColumn.SPEED)
    running: list[str] = []

    def seen_running() -> bool:
        job = model.rows[0] if model.rows else None
        if job is not None and job.state is JobState.RUNNING and job.progress is not None:
            text = str(model.index(0, speed).data() or "")
            if job.progress.received:
                running.append(text)
        return bool(running)

    qtbot.waitUntil(seen_running, timeout=WAIT_MS)
    assert SPEED.match(running[-1]), running[-1]
    (job,) = wait_finished(qtbot, window)
    assert job.state is JobState.DONE and job.progress is not None
    text = str(model.index(0, speed).data())
    assert SPEED.match(text), text  # the same form as while it ran
    rate = job.progress.received / job.progress.elapsed
    assert text.startswith(f"{rate:.0f} img/s")
    tip = str(model.index(0, speed).data(Qt.ItemDataRole.ToolTipRole))
    assert f"{job.progress.received} images" in tip and f"{job.progress.elapsed:.1f} s" in tip


def _cell_colours(window: MainWindow, row: int, column: QueueColumn) -> list[QColor]:
    """Every pixel of a queue cell, as painted on screen."""
    table = window.queue_view.table
    index = window.queue_view.model.index(row, list(QueueColumn).index(column))
    image = table.viewport().grab(table.visualRect(index)).toImage()
    return [image.pixelColor(x, y) for x in range(image.width()) for y in range(image.height())]


def _red(colour: QColor) -> bool:
    return colour.red() > 150 and colour.green() < 90 and colour.blue() < 90


def test_a_selected_failed_job_still_shows_it_failed(
    qtbot: QtBot, open_nodes_window: Callable[[dict[str, RemoteNode]], MainWindow]
) -> None:
    from servers import free_port

    dead = RemoteNode("NOBODY", "127.0.0.1", free_port(), name="NOBODY", connect_timeout=2)
    window = open_nodes_window({"NOBODY": dead})
    window.session.queue.submit(dead, study_uid="1.2.3.4", label="Nobody, Home")
    (job,) = wait_finished(qtbot, window)
    assert job.state is JobState.FAILED
    assert cells(window)[QueueColumn.STATE] == "Failed"
    assert any(map(_red, _cell_colours(window, 0, QueueColumn.STATE)))  # red, unselected
    view = window.queue_view
    unselected = set(c.rgb() for c in _cell_colours(window, 0, QueueColumn.NODE))
    view.table.selectRow(0)
    qtbot.waitUntil(lambda: view.retry_button.isEnabled())
    view.table.viewport().repaint()
    # The row is highlighted (its other cells changed colour), and Failed is still red.
    selected = set(c.rgb() for c in _cell_colours(window, 0, QueueColumn.NODE))
    assert selected != unselected
    assert any(map(_red, _cell_colours(window, 0, QueueColumn.STATE)))
