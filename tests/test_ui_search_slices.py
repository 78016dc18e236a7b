"""A large search reaches the table in time-sliced flushes, each batch merged into the sorted
rows, its cells made in the C-FIND helper process (see tests/benchmarks/bench_gui.py)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import random
import subprocess
import sys
import time

import pytest
from PySide6.QtCore import QPersistentModelIndex, Qt
from pytestqt.qtbot import QtBot

from tests.ui_support import search
from workstation.cancel import CancelToken
from workstation.demo.archive import DemoArchive
from workstation.dimse.find_helper import FindOutcome, FindProcess
from workstation.results import StudyRow
from workstation.search import SearchCriteria
from workstation.ui.common.batch_buffer import BatchBuffer
from workstation.ui.main_window import MainWindow
from workstation.ui.search.study_cells import StudyCells
from workstation.ui.search.study_model import StudyColumn, StudyTableModel

pytest_plugins = ["tests.ui_support"]

DATE = list(StudyColumn).index(StudyColumn.STUDY_DATE)
IMAGES = list(StudyColumn).index(StudyColumn.INSTANCES)


def test_a_time_sliced_flush_hands_over_what_fits_and_all_of_it_in_order(qtbot: QtBot) -> None:
    calls: list[list[int]] = []

    def slow(items: list[int]) -> None:  # 0.2 ms an item: 40 fit in the 8 ms budget
        calls.append(items)
        time.sleep(len(items) * 0.0002)

    buffer = BatchBuffer(slow, interval_ms=20, max_items=500, budget_ms=8)
    buffer.extend(range(2000))
    qtbot.waitUntil(lambda: sum(map(len, calls)) == 2000, timeout=10_000)
    assert [i for items in calls for i in items] == list(range(2000))
    assert len(calls[0]) == 500  # nothing measured yet: the cap
    assert all(len(items) <= 200 for items in calls[1:])  # then what fits (at least 100)
    buffer.close()


def rows(count: int, seed: int) -> list[StudyRow]:
    """Studies with many equal dates and image counts, so that ties are kept in order."""
    rng = random.Random(seed)
    return [
        StudyRow(
            f"1.2.{seed}.{n}",
            patient_name=f"DOE^{rng.randint(0, 50)}",
            study_date=f"2024{rng.randint(1, 3):02d}01",
            instance_count=rng.choice([None, 1, 5, 5, 9]),
            sources=("A",),
        )
        for n in range(count)
    ]


@pytest.mark.parametrize(
    ("column", "order"),
    [
        (DATE, Qt.SortOrder.DescendingOrder),
        (DATE, Qt.SortOrder.AscendingOrder),
        (IMAGES, Qt.SortOrder.DescendingOrder),
    ],
)
def test_batches_merged_into_a_sorted_table_end_sorted_with_the_selection_kept(
    column: int, order: Qt.SortOrder
) -> None:
    model = StudyTableModel()
    model.sort(column, order)
    arrived = rows(3000, 1)
    rng = random.Random(2)
    selected: QPersistentModelIndex | None = None
    start = 0
    while start < len(arrived):
        size = rng.randint(1, 400)
        model.upsert_prepared([(r, model.make_cells(r)) for r in arrived[start : start + size]])
        start += size
        if selected is None and model.rowCount() > 100:
            selected = QPersistentModelIndex(model.index(57, 0))
            chosen = model.row_at(57).study_uid
    again = arrived[5].merged(StudyRow(arrived[5].study_uid, sources=("B",)))
    model.upsert([again])  # a second node answers: merged in place, no new line

    descending = order == Qt.SortOrder.DescendingOrder
    key = StudyTableModel().sort_key
    column_enum = list(StudyColumn)[column]
    expected = sorted(arrived, key=lambda r: key(r, column_enum), reverse=descending)
    assert [r.study_uid for r in model.rows] == [r.study_uid for r in expected]  # stable
    assert model.row_at(model.position(again.study_uid) or 0).sources == ("A", "B")
    assert all(model.position(r.study_uid) == i for i, r in enumerate(model.rows))
    assert selected is not None and model.row_at(selected.row()).study_uid == chosen


def test_the_search_shows_every_match_sorted_and_keeps_the_selection(
    qtbot: QtBot, window: MainWindow, demo: DemoArchive
) -> None:
    assert demo.archive is not None
    window.search.buffer._max_items = 3  # many merged batches
    demo.delay_per_match = 0.01
    search(qtbot, window, "")
    model = window.study_model
    assert {r.study_uid for r in model.rows} == {s.StudyInstanceUID for s in demo.archive.studies}
    dates = [f"{r.study_date}{r.study_time}" for r in model.rows]
    assert dates == sorted(dates, reverse=True)  # the default: newest first

    first = model.row_at(0).study_uid
    window.study_view.table.selectRow(0)
    window.study_view.table.sortByColumn(IMAGES, Qt.SortOrder.AscendingOrder)  # a header click
    counts = [-1 if r.instance_count is None else r.instance_count for r in model.rows]
    assert counts == sorted(counts)
    assert [r.study_uid for r in window.study_view.selected_rows()] == [first]


def test_the_helper_refines_and_makes_the_cells_the_table_shows(demo: DemoArchive) -> None:
    assert demo.archive is not None
    some = demo.archive.studies[0]
    criteria = SearchCriteria(patient_id=some.PatientID)
    finder = FindProcess()
    try:
        answered = [
            item
            for batch in finder.prepared_rows(
                demo.node,
                criteria.queries()[0],
                StudyCells(criteria),
                calling_aet="TEST",
                limit=None,
                cancel=CancelToken(),
                outcome=FindOutcome(),
            )
            for item in batch
        ]
    finally:
        finder.close()
    want = {s.StudyInstanceUID for s in demo.archive.studies if s.PatientID == some.PatientID}
    assert {row.study_uid for row, cells in answered if cells is not None} == want
    model = StudyTableModel()
    for row, cells in answered:
        if cells is not None:
            assert cells == model.make_cells(row)  # what the window would have made
            assert cells[0][DATE] and cells[0][0]  # a date and a name to read


def test_the_cells_module_loads_no_qt_in_the_helper() -> None:
    code = (
        "import sys, workstation.ui.search.study_cells, workstation.dimse.find_helper;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
