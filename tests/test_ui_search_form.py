"""The search form as a clinician uses it: a changed date or modality searches again, Enter
works in every field, the modality row stays put, and birth date and institution narrow the
search (against the demo archive and a real Orthanc)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from tests.ui_support import WAIT_MS, search
from workstation.demo import Archive
from workstation.nodes import RemoteNode
from workstation.results import StudyRow
from workstation.search import DatePreset, SearchCriteria, birth_date_pattern
from workstation.ui.main_window import MainWindow
from workstation.ui.search.query_panel import QueryPanel

pytest_plugins = ["tests.ui_support"]

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot: QtBot) -> QueryPanel:
    form = QueryPanel()
    qtbot.addWidget(form)
    form.set_nodes(["PACS"])
    form.confirm_blank_search = lambda: True  # type: ignore[method-assign]
    form.resize(1200, 80)
    form.show()
    qtbot.waitExposed(form)
    return form


def test_a_changed_modality_or_date_searches_again_once_a_search_ran(
    qtbot: QtBot, panel: QueryPanel
) -> None:
    asked: list[SearchCriteria] = []
    panel.search_requested.connect(asked.append)
    panel.modality_boxes["CT"].setChecked(True)
    qtbot.wait(600)
    assert asked == []  # nothing searched yet: ticking a box alone sends nothing

    panel.patient_name.setText("smith")
    qtbot.keyClick(panel.patient_name, Qt.Key.Key_Return)
    assert [c.modalities for c in asked] == [("CT",)]

    # Three quick changes: one search, after a short pause, with all of them.
    panel.modality_boxes["MR"].setChecked(True)
    panel.modality_boxes["CT"].setChecked(False)
    panel.set_preset(DatePreset.LAST_YEAR)
    qtbot.waitUntil(lambda: len(asked) == 2, timeout=2000)
    qtbot.wait(600)
    assert len(asked) == 2
    assert asked[1].modalities == ("MR",) and asked[1].first is not None


def test_enter_in_a_check_box_or_a_date_field_searches(qtbot: QtBot, panel: QueryPanel) -> None:
    asked: list[SearchCriteria] = []
    panel.search_requested.connect(asked.append)
    panel.patient_name.setText("smith")
    box = panel.modality_boxes["US"]
    box.setFocus()
    qtbot.keyClick(box, Qt.Key.Key_Return)
    assert len(asked) == 1
    panel.set_preset(DatePreset.CUSTOM)
    qtbot.keyClick(panel.date_from, Qt.Key.Key_Enter)
    assert len(asked) == 2


def test_the_modality_row_does_not_move_when_the_range_appears(
    qtbot: QtBot, panel: QueryPanel
) -> None:
    first_box = panel.modality_boxes["CT"]
    before = first_box.mapTo(panel, first_box.rect().topLeft())
    panel.set_preset(DatePreset.CUSTOM)
    qtbot.wait(50)
    assert panel.date_from.isVisible()
    assert first_box.mapTo(panel, first_box.rect().topLeft()) == before


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("1952-11-19", "19521119"),
        ("19521119", "19521119"),
        ("1950-01-01 - 1959-12-31", "19500101-19591231"),
        ("1950-01-01-", "19500101-"),
    ],
)
def test_birth_date_as_typed_becomes_a_da_value(typed: str, sent: str) -> None:
    assert birth_date_pattern(typed) == sent
    (query,) = SearchCriteria(birth_date=typed).queries()
    assert query.get("PatientBirthDate") == sent


def test_birth_date_and_institution_refine_rows() -> None:
    criteria = SearchCriteria(birth_date="1950-01-01 - 1959-12-31", institution="general")
    row = StudyRow(study_uid="1", birth_date="19521119", institution="St. General Hospital")
    assert criteria.accepts(row)
    assert not criteria.accepts(StudyRow(study_uid="2", birth_date="19611119"))
    assert not criteria.accepts(StudyRow(study_uid="3", institution="City Clinic"))
    assert criteria.accepts(StudyRow(study_uid="4"))  # not returned: not held against it


def test_birth_date_search_in_the_window_lists_exactly_those_patients(
    qtbot: QtBot,
    orthanc: Any,
    archive: Archive,
    open_nodes_window: Callable[[dict[str, RemoteNode]], MainWindow],
) -> None:
    study = archive.studies[0]
    window = open_nodes_window({"Orthanc": orthanc.node.with_options(name="Orthanc")})
    born = str(study.PatientBirthDate)
    typed = f"{born[:4]}-{born[4:6]}-{born[6:]}"
    search(qtbot, window, birth_date=typed)
    want = {s.StudyInstanceUID for s in archive.studies if s.PatientBirthDate == born}
    qtbot.waitUntil(lambda: {r.study_uid for r in window.study_model.rows} == want, timeout=WAIT_MS)


def test_columns_widen_to_their_content_on_the_first_results_and_keep_the_users_width(
    qtbot: QtBot,
) -> None:
    from workstation.ui.search.study_model import StudyColumn, StudyTableModel
    from workstation.ui.search.study_view import MAX_FIT_WIDTH, StudyView

    model = StudyTableModel()
    view = StudyView(model)
    qtbot.addWidget(view)
    view.resize(1024, 400)
    view.show()
    qtbot.waitExposed(view)
    column = list(StudyColumn).index(StudyColumn.ACCESSION)
    before = view.table.columnWidth(column)
    model.upsert([StudyRow("1.2.1", accession="A3100001234567890", sources=("A",))])
    fitted = view.table.columnWidth(column)
    assert before < fitted <= MAX_FIT_WIDTH
    assert view.table.textElideMode() == Qt.TextElideMode.ElideMiddle

    view.table.setColumnWidth(column, 60)  # the user narrows it: later results keep that
    model.upsert([StudyRow("1.2.2", accession="B99999999999999999999", sources=("A",))])
    assert view.table.columnWidth(column) == 60


def test_quit_with_unfinished_jobs_asks_first(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    unfinished = SimpleNamespace(state=SimpleNamespace(finished=False))
    done = SimpleNamespace(state=SimpleNamespace(finished=True))
    monkeypatch.setattr(window.session.queue, "jobs", lambda: [unfinished, done, unfinished])
    asked: list[int] = []

    def refuse(count: int) -> bool:
        asked.append(count)
        return False

    window.confirm_quit = refuse  # type: ignore[method-assign]
    window.quit_action.trigger()
    assert asked == [2] and window.isVisible()

    window.confirm_quit = lambda count: True  # type: ignore[method-assign]
    window.quit_action.trigger()
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=WAIT_MS)


# -- the queue ------------------------------------------------------------------------------


def test_several_studies_skip_the_complete_ones_and_a_series_job_says_series() -> None:
    from workstation.jobs.submit import plan_series, plan_studies
    from workstation.results import SeriesRow

    node = RemoteNode("PACS", "127.0.0.1", 104, "PACS")
    rows = [StudyRow(f"1.2.{n}", patient_name="Doe^J", sources=("PACS",)) for n in (1, 2)]
    plan = plan_studies(rows, {"PACS": node}, [], complete={"1.2.1"})
    assert [s.study_uid for s in plan.submissions] == ["1.2.2"]
    assert plan.skipped == (f"{rows[0].label}: already complete in the local store",)
    alone = plan_studies(rows[:1], {"PACS": node}, [], complete={"1.2.1"})
    assert [s.study_uid for s in alone.submissions] == ["1.2.1"]  # asked for alone: it goes

    series = SeriesRow("1.2.1", "1.2.1.1", description="LAT", source="PACS")
    (submission,) = plan_series(rows[0], [series], {"PACS": node}, []).submissions
    assert submission.label.endswith("— series LAT")


def test_queue_scrolls_to_new_jobs_cancels_the_only_one_and_forgets_fixed_failures(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_ui_models import job
    from workstation.jobs import JobState

    view = window.queue_view
    view.table.setFixedHeight(90)
    view._apply([job(n, JobState.DONE, 10) for n in range(1, 30)])
    view._apply([job(30, JobState.RUNNING, 1)])
    last = view.model.index(view.model.position("30") or 0, 0)
    qtbot.waitUntil(lambda: view.table.visualRect(last).intersects(view.table.viewport().rect()))

    view.table.clearSelection()
    assert view.cancel_button.isEnabled()  # the only unfinished job, no selection needed
    cancelled: list[int] = []
    monkeypatch.setattr(view, "_act", lambda title, ids, action: cancelled.extend(ids))
    view.cancel()
    assert cancelled == [30]

    failed = job(31, JobState.PARTIAL, 4)
    view._apply([failed])
    assert "1 need attention" in view.summary.text()
    again = job(32, JobState.DONE, 10)
    view._apply([dataclasses.replace(again, study_uid=failed.study_uid)])
    assert "need attention" not in view.summary.text()
