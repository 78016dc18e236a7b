"""What the Local store tab's speed-ups must not change (issue 12): a new filter shows exactly
its patients and keeps the one selected when it is still listed, columns fit the rows on
screen, the window opens the store without freezing and shows a background check. Correctness
only: the timings are tests/benchmarks/bench_store.py's."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QProgressDialog

from tests.test_ui_browser import rows_of, settle
from tests.test_ui_store_pages import PEOPLE, store_person
from tests.ui_support import make_settings
from workstation.session import Session
from workstation.store import LocalStore
from workstation.ui import app
from workstation.ui.common import thread_guard
from workstation.ui.common.tasks import gui_loop
from workstation.ui.local_store.store_browser import StoreBrowser
from workstation.ui.main_window import MainWindow

pytestmark = pytest.mark.gui
pytest_plugins = ["tests.ui_support"]


@pytest.fixture
def people(tmp_path: Path) -> Iterator[LocalStore]:
    with LocalStore(tmp_path / "store", fsync=False) as store:
        for name, patient_id, description in PEOPLE:
            store_person(store, name, patient_id, description)
        store.flush()
        yield store


@pytest.fixture
def browser(qtbot: Any, people: LocalStore) -> StoreBrowser:
    widget = StoreBrowser(people)
    qtbot.addWidget(widget)
    widget.resize(1280, 640)
    widget.show()
    settle(widget)
    return widget


def filter_to(browser: StoreBrowser, text: str) -> list[str]:
    browser.set_filter_text(text)
    settle(browser)
    return [p.patient_id for p in rows_of(browser.patients)]


def shown_patient(browser: StoreBrowser) -> str | None:
    patient = browser.selected_patient()
    return None if patient is None else patient.patient_id


def test_a_new_filter_keeps_the_selected_patient_while_listed(
    browser: StoreBrowser, check_model: Callable[[Any], None]
) -> None:
    check_model(browser.patients)  # on every reset, insert and remove below
    row = next(r for r, p in enumerate(rows_of(browser.patients)) if p.patient_id == "MUL1")
    browser.patient_view.selectRow(row)
    settle(browser)
    assert filter_to(browser, "muller") == ["MUL2", "MUL1"]  # by folded name: anna < jurgen
    assert shown_patient(browser) == "MUL1"
    assert {s.study_description for s in rows_of(browser.studies)} == {"CT Thorax"}

    assert filter_to(browser, "dvorak") == ["DVO1"]  # the selected one is gone: the first
    assert shown_patient(browser) == "DVO1"
    assert {s.study_description for s in rows_of(browser.studies)} == {"MR Kopf"}

    assert filter_to(browser, "no such patient") == []
    assert shown_patient(browser) is None
    assert browser.studies.rowCount() == 0 and browser.series.rowCount() == 0
    assert browser.summary.text() == "No match"

    assert sorted(filter_to(browser, "")) == sorted(p[1] for p in PEOPLE)
    assert shown_patient(browser) == rows_of(browser.patients)[0].patient_id
    assert browser.studies.rowCount() == 1
    assert not thread_guard.violations


@pytest.fixture
def check_model(request: pytest.FixtureRequest) -> Iterator[Callable[[Any], None]]:
    from pytestqt.modeltest import ModelTester

    testers: list[ModelTester] = []

    def check(model: Any) -> None:
        tester = ModelTester(request.config)
        tester.check(model, force_py=True)
        testers.append(tester)

    yield check
    for tester in testers:
        tester._cleanup()


def test_columns_fit_the_text_on_screen_once_shown(qtbot: Any, tmp_path: Path) -> None:
    long_id = "ID-" + "7" * 22
    with LocalStore(tmp_path / "store", fsync=False) as store:
        store_person(store, "Short^Id", "S1")
        store_person(store, "Long^Id", long_id)
        store.flush()
        browser = StoreBrowser(store)  # hidden: its list is read, nothing is measured yet
        qtbot.addWidget(browser)
        settle(browser)
        browser.resize(1280, 640)
        browser.show()
        view = browser.patient_view
        needed = view.fontMetrics().horizontalAdvance(long_id)
        qtbot.waitUntil(lambda: view.columnWidth(1) >= needed, timeout=5000)
        width = view.columnWidth(1)
        assert filter_to(browser, "short") == ["S1"]
        QTest.qWait(50)
        assert view.columnWidth(1) == width  # never narrower under the user's eyes
        browser.close()


def test_the_store_opens_in_a_worker_while_the_window_says_so(
    ui_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened_on: list[threading.Thread] = []
    real_open = Session.open

    def slow_open(**kwargs: Any) -> Session:  # a store whose index is being migrated
        opened_on.append(threading.current_thread())
        time.sleep(0.4)
        return real_open(**kwargs)

    monkeypatch.setattr(Session, "open", staticmethod(slow_open))
    monkeypatch.setattr(app, "OPENING_NOTICE_MS", 50)
    seen: list[str] = []

    def look() -> None:  # runs only while the GUI thread is free
        seen.extend(
            w.labelText()
            for w in QApplication.topLevelWidgets()
            if isinstance(w, QProgressDialog) and w.isVisible()
        )

    ticker = QTimer(interval=20)
    ticker.timeout.connect(look)
    ticker.start()
    try:
        session = app.open_session(gui_loop(), settings=make_settings(ui_dirs, {}))
    finally:
        ticker.stop()
    try:
        assert opened_on and opened_on[0] is not threading.main_thread()
        assert any(text.startswith("Opening the local store") for text in seen)
        assert session.store.index.count().patients == 0  # open and usable
    finally:
        session.close()
    QTest.qWait(20)
    assert not any(
        isinstance(w, QProgressDialog) and w.isVisible() for w in QApplication.topLevelWidgets()
    )


def test_a_background_check_shows_its_progress_then_what_it_repaired(
    ui_dirs: Path, open_window: Callable[[Session], MainWindow], qtbot: Any
) -> None:
    settings = make_settings(ui_dirs, {})
    with LocalStore(settings.store_dir, fsync=False) as store:
        for name, patient_id, description in PEOPLE:
            store_person(store, name, patient_id, description)
        store.flush()
        index = store.root / ".workstation" / "index.sqlite"
    for suffix in ("", "-wal", "-shm"):  # the index is lost: every folder is checked again
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    session = Session.open(settings=settings)
    try:
        assert session.store.background_check is not None
        window = open_window(session)
        label = window.check_label
        texts: list[str] = []
        qtbot.waitUntil(
            lambda: texts.append(label.text()) or label.text().startswith("Store checked"),
            timeout=20000,
        )
        assert label.isVisible()
        assert label.text() == f"Store checked: {len(PEOPLE)} images indexed again"
        assert all(t.startswith("Checking the store") for t in texts[:-1] if t)
        window.tabs.setCurrentWidget(window.store_browser)
        qtbot.waitUntil(lambda: window.store_browser.patients.rowCount() == len(PEOPLE))
        window.close()
    finally:
        session.close()
