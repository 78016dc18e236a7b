"""Quick searches, stops, series selections and retrieves against a real Orthanc, in a storm.

The window once died with a general protection fault in libQt6Core, without a Python stack,
after three quick name searches (``müller``, ``muller``, ``müller`` + Enter). That kind of
crash comes from a Qt object touched or freed on a worker thread while the GUI thread uses
it. This drives the window the way an impatient user does and checks that it ends consistent:
the last search's exact studies shown once each, its series listed, every retrieve done, no
worker left running or waiting, no GUI-thread check failed (``WORKSTATION_CHECK_THREADS``, on
in the suite) and no Qt warning about threads, timers or objects. Garbage collection runs on
the GUI thread, as in the application, with low thresholds so that it runs often.

Also here: the crash log that would have kept that stack (:func:`.app.enable_crash_log`).
"""

from __future__ import annotations

import dataclasses
import gc
import random
import re
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from tests.servers import LOOPBACK, OrthancServer
from tests.ui_support import WAIT_MS
from workstation.demo import Archive
from workstation.jobs import JobState
from workstation.nodes import RemoteNode
from workstation.ui.common import thread_guard
from workstation.ui.common.thread_guard import GuiThreadCollector
from workstation.ui.main_window import MainWindow
from workstation.ui.search.study_model import StudyTableModel

pytestmark = pytest.mark.gui
pytest_plugins = ["tests.ui_support"]  # its fixtures: ui_dirs, open_nodes_window...

ROUNDS = 30
#: Typed in turn: accented and plain spellings of the same name, other names, a full name.
NAMES = ["müller", "muller", "müller", "MÜLLER", "smith", "dvořák", "doe", "Müller^Jürgen", "sm"]
#: Qt's words when an object is used, timed or deleted on the wrong thread.
THREAD_TROUBLE = re.compile(
    r"thread|QObject|QTimer|QBasicTimer|QSocketNotifier|destroyed|deleted", re.IGNORECASE
)


def folded(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.replace("^", " "))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


@pytest.fixture
def few_studies(archive: Archive) -> Archive:
    """A few studies of the archive: both Müllers, two Smiths, a Dvořák and the Does."""
    picked = []
    for family, count in (("muller", 2), ("smith", 2), ("dvorak", 1), ("doe", 3)):
        picked += [s for s in archive.studies if folded(s.PatientName).startswith(family)][:count]
    return dataclasses.replace(archive, studies=tuple(picked))


@pytest.fixture
def small_orthanc(
    make_orthanc: Callable[..., OrthancServer], few_studies: Archive, tmp_path: Path
) -> OrthancServer:
    return make_orthanc(few_studies.write(tmp_path / "files"))


@pytest.fixture
def gc_on_the_gui_thread(qapp: object) -> Iterator[GuiThreadCollector]:
    """As in the application; collecting often (low thresholds) to shake out what it frees."""
    thresholds = gc.get_threshold()
    gc.set_threshold(200, 5, 5)
    collector = GuiThreadCollector(interval_ms=20)
    try:
        yield collector
    finally:
        collector.close()
        gc.set_threshold(*thresholds)


def test_a_storm_of_searches_stops_selections_and_retrieves_leaves_the_window_consistent(
    qtbot: QtBot,
    qtlog: object,
    open_nodes_window: Callable[[dict[str, RemoteNode]], MainWindow],
    small_orthanc: OrthancServer,
    few_studies: Archive,
    gc_on_the_gui_thread: GuiThreadCollector,
) -> None:
    window = open_nodes_window({"Orthanc": small_orthanc.node})
    session = window.session
    small_orthanc.add_modality(session.scp.ae_title, LOOPBACK, session.scp.port)
    del thread_guard.violations[:]
    panel = window.query_panel
    rng = random.Random(9)
    retrieves = 0

    def enter(name: str, times: int = 1) -> None:
        panel.patient_name.setText(name)
        panel.patient_name.setFocus()
        for _ in range(times):
            qtbot.keyClick(panel.patient_name, Qt.Key.Key_Return)

    for round_ in range(ROUNDS):
        name = NAMES[round_ % len(NAMES)]
        enter(name, times=2 if round_ % 4 == 3 else 1)
        if name in ("müller", "smith") and round_ % 3 == 0 and retrieves < 3:
            # Retrieve one of the studies shown, as soon as one is (rounds 0, 9 and 18).
            qtbot.waitUntil(lambda: window.study_model.rowCount() > 0, timeout=WAIT_MS)
            window.study_view.select_study(rng.choice(window.study_model.rows).study_uid)
            qtbot.keyClick(window, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
            retrieves += 1
            continue
        qtbot.wait(rng.randint(0, 50))
        studies = window.study_model.rows
        series = window.series_panel.model.rows
        roll = rng.random()
        if roll < 0.25:
            qtbot.keyClick(window, Qt.Key.Key_Escape)  # Stop
        elif roll < 0.55 and studies:
            window.study_view.select_study(rng.choice(studies).study_uid)
        elif roll < 0.75 and series:
            window.series_panel.table.selectRow(rng.randrange(len(series)))

    # The last search: müller and Enter, twice in a row, as in the crash.
    with qtbot.waitSignal(window.search.finished, timeout=WAIT_MS):
        enter("müller", times=2)
    jobs = window.queue_view.model

    def settled() -> bool:
        current = window.study_view.current_row()
        return (
            window.runner.running == 0
            and current is not None
            and window.series_panel.study_uid == current.study_uid
            and window.series_panel.model.rowCount() > 0
            and all(job.is_finished for job in jobs.rows)
        )

    qtbot.waitUntil(settled, timeout=WAIT_MS)

    # The last search's exact results, once each, and a coherent status.
    assert few_studies.studies
    expected = {
        s.StudyInstanceUID
        for s in few_studies.studies
        if folded(s.PatientName).startswith("muller")
    }
    rows = window.study_model.rows
    assert len(expected) == 2
    assert {row.study_uid for row in rows} == expected
    assert window.study_model.rowCount() == len(rows) == len(expected)
    counter = window.study_view.counter.text()
    assert counter.startswith("2 studies in ") and "…" not in counter, counter
    assert "stopped" not in counter and "failed" not in counter
    assert window.status_label.text() == counter
    assert window.failure_banner.isHidden() and not window.search.failures()
    assert not window.search.running and not window.stop_action.isEnabled()

    # The series shown are the selected study's.
    current = window.study_view.current_row()
    assert current is not None
    study = few_studies.study(current.study_uid)
    series = window.series_panel.model.rows
    assert {s.series_uid for s in series} == {s.SeriesInstanceUID for s in study.series}

    # Nothing left running or waiting.
    assert window.search.buffer.pending == 0
    assert window.search.finder._queues == {}  # no worker waits for the C-FIND helper
    assert window.runner.running == 0
    assert retrieves and jobs.rows and all(job.state is JobState.DONE for job in jobs.rows)

    # Every GUI-side method ran on the GUI thread; Qt saw nothing cross threads.
    assert thread_guard.checks_enabled()
    assert thread_guard.violations == []
    troubles = [r.message for r in qtlog.records if THREAD_TROUBLE.search(r.message)]  # type: ignore[attr-defined]
    assert troubles == []
    assert gc_on_the_gui_thread.collections[0] > 0  # garbage was collected, on this thread


def test_a_model_updated_from_a_worker_thread_fails_loudly(qapp: object) -> None:
    model = StudyTableModel()
    errors: list[str] = []

    def work() -> None:
        try:
            model.clear()
        except thread_guard.ThreadAffinityError as exc:
            errors.append(str(exc))

    worker = threading.Thread(target=work, name="worker")
    worker.start()
    worker.join()
    assert errors == ["StudyTableModel.clear ran on thread 'worker', not the GUI thread"]
    assert thread_guard.violations[-1] == errors[0]
    thread_guard.violations.remove(errors[0])
    model.clear()  # on the GUI thread: fine


def test_a_fatal_error_leaves_every_python_stack_in_the_crash_log_and_on_stderr(
    tmp_path: Path,
) -> None:
    code = (
        "import faulthandler, pathlib, sys\n"
        "from workstation.ui.app import enable_crash_log\n"
        "print(enable_crash_log(pathlib.Path(sys.argv[1])), flush=True)\n"
        "faulthandler._sigsegv()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "logs")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    log = tmp_path / "logs" / "crash.log"
    assert result.stdout.strip() == str(log)
    for text in (result.stderr, log.read_text()):
        assert "Fatal Python error: Segmentation fault" in text
        assert 'File "<string>", line 4' in text  # the Python stack of the crash
    assert "ended on a fatal error" in log.read_text()
