"""The Local store tab as a view over SQL: the filter, the pages, refreshes, no query on the GUI
thread (issue 12). Driven offscreen, on stores written through the real LocalStore."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.uid import generate_uid
from PySide6.QtTest import QTest

from tests.support import StoreFilter
from tests.test_ui_browser import UID_ROOT, image_dataset, part10, rows_of, settle
from tests.ui_support import make_settings
from workstation.session import Session
from workstation.store import LocalStore, StoredInstance
from workstation.ui.common import thread_guard
from workstation.ui.local_store.store_browser import FILTER_DELAY_MS, StoreBrowser
from workstation.ui.local_store.store_pages import PAGE_SIZE
from workstation.ui.local_store.store_reader import StoreReader
from workstation.ui.main_window import MainWindow

pytestmark = pytest.mark.gui
pytest_plugins = ["tests.ui_support"]

#: (PatientName, PatientID, StudyDescription) in the scripts a clinic meets.
PEOPLE = [
    ("Müller^Jürgen", "MUL1", "CT Thorax"),
    ("MULLER^Anna", "MUL2", "Hüfte rechts"),
    ("Dvořák^Antonín", "DVO1", "MR Kopf"),
    ("Παπαδόπουλος^Γιώργος", "PAP1", "CT Κοιλίας"),
    ("Иванов^Пётр", "IVA1", "МРТ головы"),
    ("Yamada^Tarou=山田^太郎", "YAM1", "頭部 CT"),
    ("Øster^Zoë", "OST1", "US Abdomen"),
]
FILTERS = [
    "muller", "MÜLLER", "jurgen muller", "dvorak", "παπαδοπουλος", "ΓΙΩΡΓΟΣ", "κοιλιας",
    "иванов", "петр", "ГОЛОВЫ", "山田", "tarou", "頭部", "zoe", "øster", "ct", "hufte",
    "mul2", "no such patient",
]  # fmt: skip


def store_person(store: LocalStore, name: str, patient_id: str, description: str = "") -> None:
    ds = image_dataset(np.zeros((2, 2), np.uint8), PatientName=name, PatientID=patient_id)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.StudyDescription, ds.StudyDate = description, "20240315"
    store.store_bytes(part10(ds))


def old_filter(store: LocalStore, text: str) -> set[str]:
    """The patient IDs the filter found when it ran in Python over every study."""
    store_filter = StoreFilter(text)
    found = {p.patient_id for p in store.index.patients() if store_filter.matches_patient(p)}
    studies = store.index.studies()
    return found | {s.patient_id for s in studies if store_filter.matches_study(s)}


@pytest.fixture
def people_window(
    ui_dirs: Path, open_window: Callable[[Session], MainWindow]
) -> Iterator[MainWindow]:
    session = Session.open(settings=make_settings(ui_dirs, {}))
    try:
        for name, patient_id, description in PEOPLE:
            store_person(session.store, name, patient_id, description)
        session.store.flush()
        window = open_window(session)
        window.tabs.setCurrentWidget(window.store_browser)
        settle(window.store_browser)
        yield window
        window.close()
    finally:
        session.close()


def test_the_sql_filter_finds_what_the_python_filter_found(people_window: MainWindow) -> None:
    browser, store = people_window.store_browser, people_window.session.store
    assert {p.patient_id for p in rows_of(browser.patients)} == {p[1] for p in PEOPLE}
    for text in FILTERS:
        browser.filter_edit.setText(text)  # as typed: applied after the typing pause
        QTest.qWait(FILTER_DELAY_MS + 50)
        settle(browser)
        listed = {p.patient_id for p in rows_of(browser.patients)}
        assert listed == old_filter(store, text), text
        if listed:
            assert browser.selected_patient() is not None
            assert browser.studies.rowCount() > 0
        else:
            assert browser.summary.text() == "No match"
    browser.filter_edit.clear()
    browser.set_filter_text("")
    settle(browser)
    assert browser.patients.rowCount() == len(PEOPLE)
    assert browser.summary.text() == f"{len(PEOPLE)} patients · {len(PEOPLE)} studies"
    assert not thread_guard.violations


@pytest.fixture
def crowded(tmp_path: Path) -> Iterator[LocalStore]:
    """A store of PAGE_SIZE * 2 + 50 patients, ``Patient^0000`` onwards."""
    with LocalStore(tmp_path / "store", fsync=False) as store:
        for n in range(PAGE_SIZE * 2 + 50):
            store_person(store, f"Patient^{n:04d}", f"P{n:04d}")
        store.flush()
        yield store


@pytest.fixture
def crowded_browser(qtbot: Any, crowded: LocalStore) -> StoreBrowser:
    browser = StoreBrowser(crowded)
    qtbot.addWidget(browser)
    browser.resize(1200, 600)
    browser.show()
    settle(browser)
    return browser


def test_scrolling_to_the_end_fetches_the_next_page(crowded_browser: StoreBrowser) -> None:
    browser = crowded_browser
    assert browser.patients.rowCount() == PAGE_SIZE
    assert browser.summary.text() == f"{PAGE_SIZE * 2 + 50} patients · {PAGE_SIZE * 2 + 50} studies"
    for expected in (PAGE_SIZE * 2, PAGE_SIZE * 2 + 50):
        browser.patient_view.scrollToBottom()
        deadline = time.monotonic() + 5
        while browser.patients.rowCount() < expected:
            assert time.monotonic() < deadline, "no page came"
            QTest.qWait(10)
            browser.patient_view.scrollToBottom()
    settle(browser)
    assert not browser.patients.canFetchMore()
    ids = [p.patient_id for p in rows_of(browser.patients)]
    assert ids == [f"P{n:04d}" for n in range(PAGE_SIZE * 2 + 50)]


def test_a_refresh_while_images_arrive_keeps_the_selection_and_the_scroll(
    crowded_browser: StoreBrowser, crowded: LocalStore, qtbot: Any
) -> None:
    browser, view = crowded_browser, crowded_browser.patient_view
    chosen = browser.patients.position("150")  # any patient down the list
    view.scrollTo(browser.patients.index(120, 0), view.ScrollHint.PositionAtTop)
    top = browser.patients.row_at(view.rowAt(0))
    picked = browser.patients.row_at(130)
    view.selectRow(130)
    settle(browser)
    assert chosen is not None and browser.selected_patient() == picked

    arrived: list[StoredInstance] = []
    crowded.add_listener(arrived.extend)  # on the index thread: only collect
    for n in range(5):  # new patients sorted before those on screen
        store_person(crowded, f"Aaron^{n}", f"NEW{n}")
    crowded.flush()
    browser.notify_stored(arrived)
    qtbot.waitUntil(lambda: browser.patients.rowCount() == PAGE_SIZE + 5)
    settle(browser)
    assert [p.patient_id for p in rows_of(browser.patients)][:5] == [f"NEW{n}" for n in range(5)]
    assert browser.selected_patient() == picked
    assert browser.patients.row_at(view.rowAt(0)) == top
    assert not thread_guard.violations


def test_the_browser_never_queries_on_the_gui_thread(crowded: LocalStore) -> None:
    reader = StoreReader(crowded.index)
    thread_guard.enable_checks(True)
    try:
        with pytest.raises(thread_guard.ThreadAffinityError):
            reader.patient_page("")
        with pytest.raises(thread_guard.ThreadAffinityError):
            reader.local_counts([generate_uid(UID_ROOT)])
    finally:
        thread_guard.violations.clear()
        thread_guard.enable_checks(thread_guard.CHECK_THREADS_ENV in os.environ)
