"""The window's table models (checked with pytest-qt's qtmodeltester) and the Qt-free rules
behind them: rows from C-FIND identifiers, search criteria, retrieve plans, throttling."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import datetime as dt
import threading
import time
from dataclasses import replace

import pytest
from pydicom.dataset import Dataset
from PySide6.QtCore import QPersistentModelIndex, Qt
from pytestqt.modeltest import ModelTester
from pytestqt.qtbot import QtBot

from workstation.dimse.outcome import RetrieveProgress
from workstation.jobs import JobState, RetrieveJob
from workstation.jobs.submit import plan_series, plan_studies
from workstation.nodes import RemoteNode
from workstation.query import Level
from workstation.results import LocalPresence, SeriesRow, StudyRow, format_person_name
from workstation.search import DatePreset, SearchCriteria, accent_wildcards, name_spellings
from workstation.ui.common.batch_buffer import BatchBuffer
from workstation.ui.common.table_model import SORT_ROLE
from workstation.ui.queue.queue_model import QueueColumn, QueueTableModel
from workstation.ui.search.series_model import SeriesTableModel
from workstation.ui.search.study_model import StudyColumn, StudyTableModel

NODE = RemoteNode("PACS", "127.0.0.1", 104, name="PACS")


def study_ds(
    uid: str, name: str = "Doe^John", count: str = "10", modalities: str = "CT"
) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = uid
    ds.PatientName = name
    ds.PatientID = "P1"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.ModalitiesInStudy = modalities.split("\\")
    ds.NumberOfStudyRelatedInstances = count
    ds.NumberOfStudyRelatedSeries = "2"
    return ds


def job(job_id: int, state: JobState = JobState.RUNNING, received: int = 3) -> RetrieveJob:
    progress = RetrieveProgress(received=received, expected=10, bytes=3000, elapsed=1.5)
    return RetrieveJob(
        id=job_id, node=NODE, level=Level.STUDY, study_uid=f"1.2.{job_id}",
        label=f"Doe, John {job_id}", expected=10, state=state, progress=progress,
    )  # fmt: skip


def test_study_row_from_a_dataset_and_merge() -> None:
    row = StudyRow.from_dataset(study_ds("1.2.3", modalities="CT\\MR"), "A")
    assert row.modalities == ("CT", "MR") and row.instance_count == 10 and row.sources == ("A",)
    other = StudyRow.from_dataset(study_ds("1.2.3", count="12"), "B")
    merged = row.merged(other)
    assert merged.sources == ("A", "B") and merged.instance_count == 12
    assert format_person_name("Yamada^Tarou=山田^太郎") == "Yamada, Tarou (山田, 太郎)"
    assert LocalPresence.of(0, 10) is LocalPresence.ABSENT
    assert LocalPresence.of(4, 10) is LocalPresence.PARTIAL
    assert LocalPresence.of(10, 10) is LocalPresence.COMPLETE


def test_study_model(qtmodeltester: ModelTester) -> None:
    model = StudyTableModel()
    model.upsert([StudyRow.from_dataset(study_ds(f"1.2.{i}"), "A") for i in range(5)])
    model.upsert([StudyRow.from_dataset(study_ds("1.2.1"), "B")])  # merges, no new row
    assert model.rowCount() == 5
    assert model.row_at(1).sources == ("A", "B")
    model.set_local_counts({"1.2.1": 4, "1.2.2": 10})
    local = list(StudyColumn).index(StudyColumn.LOCAL)
    assert [model.index(r, local).data() for r in range(3)] == ["—", "partial", "complete"]
    series = list(StudyColumn).index(StudyColumn.INSTANCES)
    assert model.index(0, series).data(SORT_ROLE) == 10
    qtmodeltester.check(model)
    persistent = QPersistentModelIndex(model.index(model.position("1.2.1") or 0, 0))
    model.sort(list(StudyColumn).index(StudyColumn.LOCAL), Qt.SortOrder.DescendingOrder)
    assert [r.study_uid for r in model.rows[:2]] == ["1.2.2", "1.2.1"]
    assert persistent.row() == 1  # selections follow their rows
    model.upsert([StudyRow("1.2.9", sources=("A",))])
    model.set_local_counts({"1.2.9": 99})
    assert model.rows[0].study_uid == "1.2.9" and model.position("1.2.9") == 0
    qtmodeltester.check(model)


def test_series_model(qtmodeltester: ModelTester) -> None:
    model = SeriesTableModel()
    model.show_study("1.2.3")
    model.upsert(
        SeriesRow("1.2.3", f"1.2.3.{n}", "CT", n, "AXIAL", instance_count=n) for n in range(1, 4)
    )
    model.set_local_counts({"1.2.3.2": 2})
    qtmodeltester.check(model)


def test_queue_model(qtmodeltester: ModelTester) -> None:
    model = QueueTableModel()
    model.apply([job(1), job(2, JobState.QUEUED, 0), job(1, JobState.DONE, 10)])
    assert model.rowCount() == 2 and model.job(0).state is JobState.DONE
    count = list(QueueColumn).index(QueueColumn.COUNT)
    assert model.index(0, count).data() == "10/10"
    model.remove_keys(["1"])
    assert [j.id for j in model.rows] == [2]
    qtmodeltester.check(model)


def test_criteria_queries_and_refine() -> None:
    assert name_spellings("holt*") == ["h*lt*", "H*LT*", "H*lt*"]
    assert name_spellings("SMITH*") == ["SM*TH*", "Sm*th*"]
    criteria = SearchCriteria(patient_name="müller", modalities=("CT", "MR"))
    queries = criteria.queries()
    assert len(queries) == 3 * 2
    assert {q.get("ModalitiesInStudy") for q in queries} == {"CT", "MR"}
    assert [q.get("PatientName") for q in queries[::2]] == ["m*ll*", "M*LL*", "M*ll*"]
    row = StudyRow("1", patient_name="MULLER^ANNA", modalities=("CT",))
    assert criteria.accepts(row)
    assert not criteria.accepts(StudyRow("2", patient_name="MULLER^A", modalities=("US",)))
    assert not criteria.accepts(StudyRow("3", patient_name="SCHMIDT", modalities=("CT",)))
    assert SearchCriteria().is_blank and not SearchCriteria(modalities=("CT",)).is_blank
    day = dt.date(2024, 3, 10)
    assert DatePreset.LAST_7_DAYS.dates(day) == (dt.date(2024, 3, 4), day)
    assert DatePreset.YESTERDAY.dates(day) == (dt.date(2024, 3, 9), dt.date(2024, 3, 9))
    dated = SearchCriteria(first=day, last=day)
    assert dated.queries()[0].get("StudyDate") == "20240310"
    assert not dated.accepts(StudyRow("4", study_date="20240311"))


@pytest.mark.parametrize(
    ("typed", "sent"),
    [
        ("muller*", "m*ll*"),
        ("müller*", "m*ll*"),  # an accented letter typed is a * too
        ("DVOŘÁK^A*", "DV*K^*"),
        ("öztürk", "ö*t*k"),  # the first letter is kept as typed
        ("łoś*", "ł*"),  # ł has no accent to take off: kept
        ("παπαδοπουλος*", "π*π*δ*π*λ*ς*"),
        ("иван*", "иван*"),
        ("Sm?th*", "Sm?th*"),
    ],
)
def test_accent_wildcards(typed: str, sent: str) -> None:
    assert accent_wildcards(typed) == sent


def test_short_names_are_sent_as_typed() -> None:
    """``an`` as ``a*`` would ask the PACS for nearly every patient with an A."""
    assert name_spellings("an*") == ["an*", "AN*", "An*"]
    assert name_spellings("eva*") == ["ev*", "EV*", "Ev*"]
    assert name_spellings("") == [""]


def test_refine_folds_accents_and_keeps_what_the_pacs_did_not_say() -> None:
    criteria = SearchCriteria(patient_name="muller", patient_id="TB1*")
    assert criteria.accepts(StudyRow("1", patient_name="Müller^Jürgen", patient_id="TB1-1"))
    assert criteria.accepts(StudyRow("2", patient_name="MULLER", patient_id=""))
    assert not criteria.accepts(StudyRow("3", patient_name="Møller^Hans", patient_id="TB1-2"))
    assert not criteria.accepts(StudyRow("4", patient_name="Muller", patient_id="X-1"))
    greek = SearchCriteria(patient_name="παπαδοπουλος")
    assert greek.accepts(StudyRow("5", patient_name="Παπαδόπουλος^Γιώργος"))
    japanese = SearchCriteria(patient_name="山田")
    assert japanese.accepts(StudyRow("6", patient_name="Yamada^Tarou=山田^太郎"))


def test_retrieve_plans() -> None:
    nodes = {"A": NODE}
    rows = [StudyRow("1.2.1", sources=("GONE", "A"), instance_count=5), StudyRow("1.2.2")]
    plan = plan_studies(rows, nodes, [job(9)])
    assert [(s.study_uid, s.expected, s.node) for s in plan.submissions] == [("1.2.1", 5, NODE)]
    assert len(plan.skipped) == 1
    busy = RetrieveJob(id=3, node=NODE, level=Level.STUDY, study_uid="1.2.1")
    assert not plan_studies(rows[:1], nodes, [busy]).submissions
    series = [SeriesRow("1.2.1", "1.2.1.1", instance_count=2, source="A"),
              SeriesRow("1.2.1", "1.2.1.2", instance_count=3, source="A")]  # fmt: skip
    [sub] = plan_series(rows[0], series, nodes, []).submissions
    assert sub.series_uids == ("1.2.1.1", "1.2.1.2") and sub.expected == 5


def test_batch_buffer_throttles_pushes_from_threads(qtbot: QtBot) -> None:
    batches: list[list[int]] = []
    buffer = BatchBuffer(batches.append, interval_ms=100)

    def produce() -> None:
        for i in range(2000):
            buffer.push(i)
            if i % 100 == 0:
                time.sleep(0.01)

    thread = threading.Thread(target=produce)
    started = time.monotonic()
    thread.start()
    qtbot.waitUntil(lambda: sum(map(len, batches)) == 2000, timeout=10_000)
    seconds = time.monotonic() - started
    assert [i for batch in batches for i in batch] == list(range(2000))
    assert len(batches) <= seconds * 10 + 2  # at most ~10 flushes a second
    thread.join()
    buffer.close()


@pytest.mark.parametrize("preset", list(DatePreset))
def test_every_date_preset_gives_an_ordered_range(preset: DatePreset) -> None:
    first, last = preset.dates(dt.date(2024, 1, 1))
    assert (first is None) == (last is None)
    assert first is None or last is None or first <= last


def test_a_person_shows_the_same_on_the_query_tab_and_in_the_local_store() -> None:
    from workstation.store.records import PatientEntry
    from workstation.ui.local_store.store_model import PatientTableModel
    from workstation.ui.search.study_model import StudyTableModel

    name = "Smith^John^A^Dr^Jr"
    assert format_person_name(name) == "Smith, Dr John A, Jr"
    row = StudyRow.from_dataset(study_ds("1.2.3"), "A")
    row = replace(row, patient_name=name)
    query_model = StudyTableModel()
    query_model.upsert([row])
    store_model = PatientTableModel()
    store_model.set_entries([PatientEntry(1, "P1", name, "19700101", "M", 1)])
    shown_query = {query_model.index(0, c).data() for c in range(query_model.columnCount())}
    shown_store = {store_model.index(0, c).data() for c in range(store_model.columnCount())}
    assert "Smith, Dr John A, Jr" in shown_query & shown_store
