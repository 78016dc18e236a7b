"""Send jobs in the queue: a study or series of the local store C-STOREd to DCMTK storescp.

A user checks what arrived (the same data set bytes the store holds, each instance once), what
the queue row says (sent N of M, the reason for what was not sent, and which instances), that
Cancel then Retry (or quitting then starting again) sends only the rest, and that a job file
written before send jobs existed still loads.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import UltrasoundImageStorage

from tests.test_send import CT_ONLY, Storescp, data_set, fill_store
from workstation.demo import Archive
from workstation.jobs import JobKind, JobState, RetrieveJob, RetrieveQueue
from workstation.nodes import RemoteNode
from workstation.query import Level
from workstation.store import LocalStore

pytest_plugins = ["tests.ui_support"]  # open_nodes_window for the window test

TIMEOUT = 30.0
REFUSED = (
    "the node does not accept Ultrasound Image Storage: it refused the presentation "
    "context (check the SOP classes it is configured to store)"
)


def wait_until(predicate: Callable[[], object], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def storescps(tmp_path: Path) -> Iterator[Callable[..., Storescp]]:
    """``storescps(*options)``: a DCMTK storescp started with these options."""
    started: list[Storescp] = []

    def make(*options: str) -> Storescp:
        server = Storescp(tmp_path / f"storescp{len(started)}", *options)
        started.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def study(archive: Archive) -> Any:
    """The first study of the archive: US series of 4 and 3, a CT series of 6."""
    return archive.studies[0]


@pytest.fixture
def store(tmp_path: Path, archive: Archive, study: Any) -> Iterator[LocalStore]:
    """A local store holding the first study (13 instances: US 4 + US 3 + CT 6)."""
    fill_store(tmp_path / "store", archive, [study], tmp_path)
    with LocalStore(tmp_path / "store", fsync=False) as opened:
        yield opened


@pytest.fixture
def open_queue(tmp_path: Path, store: LocalStore) -> Iterator[Callable[..., RetrieveQueue]]:
    """``open_queue()``: a queue on the store with its jobs in tmp_path/jobs.sqlite."""
    opened: list[RetrieveQueue] = []

    def open_(**options: Any) -> RetrieveQueue:
        queue = RetrieveQueue(store, None, db_path=tmp_path / "jobs.sqlite", **options)
        opened.append(queue)
        return queue

    try:
        yield open_
    finally:
        for queue in opened:
            queue.shutdown(timeout=TIMEOUT)


def sent_so_far(queue: RetrieveQueue, job_id: int) -> int:
    progress = queue.get(job_id).send_progress
    return progress.sent if progress is not None else 0


def received_counts(server: Storescp) -> dict[str, int]:
    """SOP Instance UID -> how many times storescp received it (it runs with -uf)."""
    from pydicom import dcmread

    counts: dict[str, int] = {}
    for path in server.received.iterdir():
        uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        counts[uid] = counts.get(uid, 0) + 1
    return counts


def test_a_send_job_arrives_identical(
    open_queue: Callable[..., RetrieveQueue],
    store: LocalStore,
    storescps: Callable[..., Storescp],
    archive: Archive,
    study: Any,
) -> None:
    server = storescps("+xa")
    queue = open_queue()
    job = queue.submit_send(server.node, study_uid=study.StudyInstanceUID)
    assert (job.kind, job.level, job.expected) == (JobKind.SEND, Level.STUDY, 13)
    done = queue.wait(job.id, timeout=TIMEOUT)
    assert done.state is JobState.DONE, done.message
    assert done.message == "sent 13 of 13 instances"
    assert done.missing == () and done.details == () and done.fraction == 1.0
    assert done.send_progress is not None
    assert (done.send_progress.sent, done.send_progress.total) == (13, 13)
    received = server.files()
    assert set(received) == archive.sop_instance_uids(study.StudyInstanceUID)
    for uid, data in received.items():
        path = store.path_of(uid)
        assert path is not None
        assert data_set(data) == data_set(path.read_bytes())


def test_cancel_then_retry_sends_only_the_rest(
    open_queue: Callable[..., RetrieveQueue],
    storescps: Callable[..., Storescp],
    study: Any,
) -> None:
    server = storescps("+xa", "-uf", "--sleep-during", "1")  # one second an instance
    series = study.series[0]  # 4 US images
    queue = open_queue()
    job = queue.submit_send(server.node, study_uid=study.StudyInstanceUID,
                            series_uids=[series.SeriesInstanceUID])  # fmt: skip
    wait_until(lambda: sent_so_far(queue, job.id) >= 1, "the first instance sent")
    queue.cancel(job.id)
    stopped = queue.wait(job.id, timeout=TIMEOUT)
    assert stopped.state is JobState.CANCELLED
    sent_before = len(received_counts(server))
    assert 1 <= sent_before < 4
    left = 4 - sent_before
    assert stopped.message == f"cancelled: sent {sent_before} of 4 instances; {left} still to send"
    assert len(stopped.missing) == left
    retried = queue.retry(job.id)  # the node has a free slot: it starts at once
    assert retried.message == f"sending the {left} instance(s) not sent yet"
    done = queue.wait(job.id, timeout=TIMEOUT)
    assert done.state is JobState.DONE, done.message
    assert done.message == "sent 4 of 4 instances" and done.attempts == 2
    assert received_counts(server) == {i.SOPInstanceUID: 1 for i in series.instances}


def test_a_refused_sop_class_makes_a_partial_job_with_the_reason(
    open_queue: Callable[..., RetrieveQueue],
    storescps: Callable[..., Storescp],
    archive: Archive,
    study: Any,
    tmp_path: Path,
) -> None:
    config = tmp_path / "ct-only.cfg"
    config.write_text(CT_ONLY)
    server = storescps("-uf", "-xf", str(config), "CT")
    queue = open_queue()
    job = queue.submit_send(server.node, study_uid=study.StudyInstanceUID)
    partial = queue.wait(job.id, timeout=TIMEOUT)
    assert partial.state is JobState.PARTIAL
    assert partial.message == f"sent 6 of 13 instances; 7 not sent: 7 × {REFUSED}"
    us = {i.SOPInstanceUID for s in study.series[:2] for i in s.instances}
    assert dict(partial.details) == {uid: REFUSED for uid in us}
    assert set(partial.missing) == us
    ct = {i.SOPInstanceUID for i in study.series[2].instances}
    assert received_counts(server) == dict.fromkeys(ct, 1)
    assert UltrasoundImageStorage not in {i.SOPClassUID for i in study.series[2].instances}

    queue.retry(job.id)  # the node still refuses: only the 7 are tried again
    again = queue.wait(job.id, timeout=TIMEOUT)
    assert again.state is JobState.PARTIAL and again.message == partial.message
    assert received_counts(server) == dict.fromkeys(ct, 1)


def test_a_send_interrupted_by_quitting_resumes_with_what_was_not_sent(
    open_queue: Callable[..., RetrieveQueue],
    storescps: Callable[..., Storescp],
    study: Any,
) -> None:
    server = storescps("+xa", "-uf", "--sleep-during", "1")
    series = study.series[0]
    queue = open_queue()
    job = queue.submit_send(server.node, study_uid=study.StudyInstanceUID,
                            series_uids=[series.SeriesInstanceUID])  # fmt: skip
    wait_until(lambda: sent_so_far(queue, job.id) >= 1, "the first instance sent")
    queue.shutdown(timeout=TIMEOUT)  # as when the window quits
    sent_before = len(received_counts(server))
    left = 4 - sent_before
    assert left >= 1

    again = open_queue(resume=False)
    (loaded,) = again.jobs()
    assert (loaded.kind, loaded.state, len(loaded.missing)) == (JobKind.SEND, JobState.QUEUED, left)
    assert loaded.message == (
        f"interrupted by quitting; {left} instance(s) still to send resume at the next start"
    )
    again.resume()
    done = again.wait(job.id, timeout=TIMEOUT)
    assert done.state is JobState.DONE and done.message == "sent 4 of 4 instances"
    assert received_counts(server) == {i.SOPInstanceUID: 1 for i in series.instances}


V1_SCHEMA = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL, level TEXT NOT NULL, study_uid TEXT NOT NULL,
    series_uids TEXT NOT NULL, label TEXT NOT NULL, expected INTEGER, state TEXT NOT NULL,
    message TEXT NOT NULL, missing TEXT NOT NULL, created REAL NOT NULL, started REAL,
    finished REAL, attempts INTEGER NOT NULL
)
"""


def test_a_job_file_from_before_send_jobs_loads(
    tmp_path: Path,
    open_queue: Callable[..., RetrieveQueue],
    storescps: Callable[..., Storescp],
    study: Any,
) -> None:
    node = RemoteNode("PACS", "127.0.0.1", 1, name="pacs")
    old = sqlite3.connect(tmp_path / "jobs.sqlite")
    old.execute(V1_SCHEMA)
    node_json = json.dumps({"ae_title": "PACS", "host": "127.0.0.1", "port": 1, "name": "pacs"})
    old.execute(
        "INSERT INTO jobs (node, level, study_uid, series_uids, label, expected, state, message,"
        " missing, created, started, finished, attempts) VALUES"
        " (?, 'STUDY', '1.2.3', '[]', 'DOE^JOHN', 5, 'partial', 'got 4 of 5', '[\"1.2.3.4\"]',"
        " 1.0, 2.0, 3.0, 1)",
        (node_json,),
    )
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()

    queue = open_queue(resume=False)
    assert queue.persistent
    (loaded,) = queue.jobs()
    assert loaded == RetrieveJob(
        id=1, node=node, level=Level.STUDY, study_uid="1.2.3", label="DOE^JOHN", expected=5,
        state=JobState.PARTIAL, message="got 4 of 5", missing=("1.2.3.4",), created=1.0,
        started=2.0, finished=3.0, attempts=1,
    )  # fmt: skip
    assert loaded.kind is JobKind.RETRIEVE
    server = storescps("+xa")
    sent = queue.submit_send(server.node, study_uid=study.StudyInstanceUID,
                             series_uids=[study.series[2].SeriesInstanceUID])  # fmt: skip
    assert queue.wait(sent.id, timeout=TIMEOUT).state is JobState.DONE
    queue.shutdown(timeout=TIMEOUT)

    reopened = open_queue(resume=False)
    assert [(j.id, j.kind, j.state) for j in reopened.jobs()] == [
        (1, JobKind.RETRIEVE, JobState.PARTIAL),
        (2, JobKind.SEND, JobState.DONE),
    ]
    assert reopened.get(2).message == "sent 6 of 6 instances"
    counters = reopened.get(2).send_progress  # Images and Speed read the same after a restart
    assert counters is not None and (counters.sent, counters.total) == (6, 6)
    reopened.shutdown(timeout=TIMEOUT)
    check = sqlite3.connect(tmp_path / "jobs.sqlite")
    assert check.execute("PRAGMA user_version").fetchone() == (3,)
    check.close()


def test_sending_what_the_store_does_not_hold_is_refused(
    open_queue: Callable[..., RetrieveQueue], storescps: Callable[..., Storescp]
) -> None:
    from workstation.errors import InvalidInput

    queue = open_queue()
    with pytest.raises(InvalidInput, match=r"holds no study 1\.2\.3\.999"):
        queue.submit_send(RemoteNode("X", "127.0.0.1", 1), study_uid="1.2.3.999")
    assert queue.jobs() == []


@pytest.mark.gui
def test_send_to_from_the_local_store_menu_queues_a_job(
    open_nodes_window: Callable[..., Any],
    storescps: Callable[..., Storescp],
    archive: Archive,
    study: Any,
    tmp_path: Path,
    qtbot: Any,
) -> None:
    from workstation.ui.queue.queue_model import QueueColumn

    server = storescps("+xa")
    window = open_nodes_window({"Archive": server.node.with_options(name="Archive")})
    archive.write(tmp_path / "incoming", [study])
    window.session.store.import_path(tmp_path / "incoming")
    window.session.store.flush()
    browser = window.store_browser
    browser.refresh()
    series = study.series[2]
    browser.select_study(study.StudyInstanceUID, series.SeriesInstanceUID)
    qtbot.waitUntil(lambda: not browser.loading)  # the browser reads the index in workers
    assert browser.selected_series().series_uid == series.SeriesInstanceUID  # type: ignore[union-attr]
    menu = browser.context_menu(browser.series_view, "Delete…", lambda: None)
    (send_to,) = [a.menu() for a in menu.actions() if a.text() == "Send to"]
    assert [a.text() for a in send_to.actions()] == ["Archive"]
    send_to.actions()[0].trigger()

    model = window.queue_view.model
    qtbot.waitUntil(lambda: len(model.rows) == 1 and model.rows[0].is_finished, timeout=20_000)
    (job,) = model.rows
    assert (job.kind, job.state, job.series_uids) == (
        JobKind.SEND, JobState.DONE, (series.SeriesInstanceUID,),
    )  # fmt: skip

    def cell(column: QueueColumn) -> str:
        return str(model.index(0, list(QueueColumn).index(column)).data())

    assert cell(QueueColumn.NODE) == "Send → Archive"
    assert cell(QueueColumn.STATE) == "Done"
    assert cell(QueueColumn.COUNT) == "6/6"
    assert cell(QueueColumn.MESSAGE) == "sent 6 of 6 instances"
    assert set(server.files()) == {i.SOPInstanceUID for i in series.instances}
    assert window.statusBar().currentMessage() == "Queued a send of the series to Archive"
    window.queue_view.table.selectRow(0)
    assert window.queue_view.retry_button.isEnabled() is False  # nothing left to send
    assert window.queue_view.details_button.isEnabled() is False  # nothing not sent
