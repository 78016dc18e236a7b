"""The retrieve queue against real peers: the demo Q/R SCP and Orthanc, on loopback.

Every wait is on a condition with a deadline; the queue's ``on_change`` stream is recorded and
replayed to check ordering, the per-node limit and the progress throttle.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import LOOPBACK, OrthancServer, free_port
from tests.support import wait_until
from workstation.demo import Archive, generate_large_study
from workstation.demo.archive import DemoArchive
from workstation.dimse.storage import StorageServer
from workstation.errors import InvalidInput
from workstation.jobs import PROGRESS_INTERVAL, JobState, QueueClosed, RetrieveJob, RetrieveQueue
from workstation.nodes import LocalAE, RemoteNode, RetrieveMethod
from workstation.store import LocalStore, StoredInstance

TIMEOUT = 30.0
SCP_AET = "JOBSTEST"
LARGE_COUNT = 60


class Recorder:
    """An ``on_change`` callback that keeps every snapshot with the time it came."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[float, RetrieveJob]] = []
        self.threads: set[str] = set()

    def __call__(self, job: RetrieveJob) -> None:
        with self.lock:
            self.events.append((time.monotonic(), job))
            self.threads.add(threading.current_thread().name)

    def of(self, job_id: int) -> list[RetrieveJob]:
        with self.lock:
            return [job for _, job in self.events if job.id == job_id]

    def timed(self, job_id: int) -> list[tuple[float, RetrieveJob]]:
        with self.lock:
            return [(t, job) for t, job in self.events if job.id == job_id]

    def all(self) -> list[RetrieveJob]:
        with self.lock:
            return [job for _, job in self.events]

    def last(self, job_id: int) -> RetrieveJob | None:
        jobs = self.of(job_id)
        return jobs[-1] if jobs else None


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    local = LocalStore(tmp_path / "store", fsync=False)
    try:
        yield local
    finally:
        local.close()


@pytest.fixture
def scp(store: LocalStore) -> Iterator[StorageServer]:
    server = StorageServer(LocalAE(SCP_AET, 0, LOOPBACK), store).start()
    try:
        yield server
    finally:
        server.stop()


def _demo(content: Archive, scp: StorageServer, ae_title: str) -> DemoArchive:
    server = DemoArchive(content, ae_title=ae_title, port=free_port())
    server.add_destination(scp.ae_title, LOOPBACK, scp.port)
    return server.start()


@pytest.fixture
def demo(archive: Archive, scp: StorageServer) -> Iterator[DemoArchive]:
    """The session archive served by a demo Q/R SCP that knows our SCP as a destination."""
    server = _demo(archive, scp, "DEMO")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def large_content() -> Archive:
    return generate_large_study(seed=7, instances=LARGE_COUNT, rows=16, columns=16, series=2)


@pytest.fixture
def large(large_content: Archive, scp: StorageServer) -> Iterator[DemoArchive]:
    """One study of 60 instances, sent 0.05 s apart: slow enough to cancel or interrupt."""
    server = _demo(large_content, scp, "LARGE")
    server.delay_per_instance = 0.05
    try:
        yield server
    finally:
        server.stop()


QueueFactory = Callable[..., tuple[RetrieveQueue, Recorder]]


@pytest.fixture
def make_queue(store: LocalStore, scp: StorageServer, tmp_path: Path) -> Iterator[QueueFactory]:
    """``make_queue(**options) -> (queue, recorder)``; every queue is shut down at the end."""
    queues: list[RetrieveQueue] = []

    def make(**options: Any) -> tuple[RetrieveQueue, Recorder]:
        recorder = Recorder()
        options.setdefault("db_path", tmp_path / "jobs.sqlite")
        options.setdefault("idle_timeout", 5.0)
        queue = RetrieveQueue(store, scp, on_change=recorder, **options)
        queues.append(queue)
        return queue, recorder

    try:
        yield make
    finally:
        for queue in queues:
            queue.shutdown(timeout=20)


def move_node(server: DemoArchive) -> RemoteNode:
    return server.node.with_options(retrieve_method=RetrieveMethod.MOVE)


def large_study_uid(content: Archive) -> str:
    return content.studies[0].StudyInstanceUID


def received(recorder: Recorder, job_id: int) -> int:
    job = recorder.last(job_id)
    return 0 if job is None or job.progress is None else job.progress.received


# -- retrieving ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", [RetrieveMethod.MOVE, RetrieveMethod.GET])
def test_study_retrieve_completes_with_progress(
    method: RetrieveMethod,
    demo: DemoArchive,
    archive: Archive,
    store: LocalStore,
    make_queue: QueueFactory,
) -> None:
    queue, recorder = make_queue()
    study = max(archive.studies, key=lambda s: s.number_of_instances)
    node = demo.node.with_options(retrieve_method=method)
    label = f"{study.PatientName} — {study.StudyDescription}"

    job = queue.submit(
        node, study_uid=study.StudyInstanceUID, label=label, expected=study.number_of_instances
    )
    assert job.level == "STUDY" and job.series_uids == ()
    done = queue.wait(job.id, TIMEOUT)

    assert done.state is JobState.DONE, done.message
    assert done.attempts == 1 and done.missing == () and not done.cancelling
    assert done.started is not None and done.finished is not None
    assert done.created <= done.started <= done.finished
    assert done.label == label and done.expected == study.number_of_instances
    assert store.instance_uids(study_uid=study.StudyInstanceUID) == archive.sop_instance_uids(
        study.StudyInstanceUID
    )
    wait_until(lambda: recorder.last(job.id) == done, "the DONE snapshot to be sent")
    events = recorder.of(job.id)
    states = [e.state for e in events]
    assert states[0] is JobState.QUEUED and states[1] is JobState.RUNNING
    assert states[-1] is JobState.DONE and states.count(JobState.DONE) == 1
    assert set(states[1:-1]) == {JobState.RUNNING}  # no state goes backwards
    fractions = [f for e in events if e.progress is not None and (f := e.fraction) is not None]
    assert fractions and fractions[-1] == 1.0
    assert fractions == sorted(fractions)  # in order, never backwards
    assert events[-1].progress is not None
    assert events[-1].progress.received == study.number_of_instances
    assert recorder.threads == {"retrieve-queue-notifier"}  # never the caller's thread


def test_study_retrieve_from_orthanc(
    orthanc: OrthancServer,
    archive: Archive,
    store: LocalStore,
    store_port: int,
    tmp_path: Path,
) -> None:
    """C-MOVE from Orthanc, which knows the session's WORKSTATION destination."""
    study = archive.studies[3]
    with StorageServer(LocalAE("WORKSTATION", store_port, LOOPBACK), store) as scp:
        queue = RetrieveQueue(store, scp, db_path=tmp_path / "jobs.sqlite", idle_timeout=10.0)
        try:
            job = queue.submit(orthanc.node, study_uid=study.StudyInstanceUID)
            done = queue.wait(job.id, TIMEOUT)
        finally:
            queue.shutdown()
    assert done.state is JobState.DONE, done.message
    assert done.progress is not None and done.progress.fraction == 1.0
    held = orthanc.instance_uids(study.StudyInstanceUID)
    assert held and store.instance_uids(study_uid=study.StudyInstanceUID) == held


def test_series_retrieve_fetches_only_those_series(
    demo: DemoArchive, archive: Archive, store: LocalStore, make_queue: QueueFactory
) -> None:
    queue, _ = make_queue()
    study = next(s for s in archive.studies if len(s.series) >= 3)
    wanted = study.series[0], study.series[2]

    job = queue.submit(
        move_node(demo),
        study_uid=study.StudyInstanceUID,
        series_uids=[s.SeriesInstanceUID for s in wanted],
    )
    done = queue.wait(job.id, TIMEOUT)

    assert done.state is JobState.DONE, done.message
    assert done.level == "SERIES" and len(done.series_uids) == 2
    expected = {i.SOPInstanceUID for s in wanted for i in s.instances}
    assert store.instance_uids(study_uid=study.StudyInstanceUID) == expected


def test_per_node_limit_and_fifo(
    demo: DemoArchive, archive: Archive, store: LocalStore, make_queue: QueueFactory
) -> None:
    demo.delay_per_instance = 0.01  # long enough for the jobs to overlap if allowed to
    queue, recorder = make_queue(per_node_limit=1)
    studies = archive.studies[:4]

    jobs = [queue.submit(demo.node, study_uid=s.StudyInstanceUID) for s in studies]
    assert [j.state for j in jobs] == [JobState.RUNNING] + [JobState.QUEUED] * 3
    assert queue.wait_idle(TIMEOUT)
    assert [queue.get(j.id).state for j in jobs] == [JobState.DONE] * 4
    wait_until(
        lambda: sum(e.state is JobState.DONE for e in recorder.all()) == 4, "four DONE events"
    )

    # Replay the ordered change stream: never two jobs of the node running at once.
    running: set[int] = set()
    most = 0
    started: list[int] = []
    for event in recorder.all():
        if event.state is JobState.RUNNING:
            if event.id not in running:
                started.append(event.id)
            running.add(event.id)
        else:
            running.discard(event.id)
        most = max(most, len(running))
    assert most == 1
    assert started == [j.id for j in jobs]  # first come, first served
    for study in studies:
        uids = archive.sop_instance_uids(study.StudyInstanceUID)
        assert store.instance_uids(study_uid=study.StudyInstanceUID) == uids


def test_limit_is_per_node(
    demo: DemoArchive,
    large: DemoArchive,
    archive: Archive,
    large_content: Archive,
    make_queue: QueueFactory,
) -> None:
    queue, _ = make_queue(per_node_limit=1)
    first = queue.submit(large.node, study_uid=large_study_uid(large_content))
    second = queue.submit(large.node, study_uid=large_study_uid(large_content))
    other = queue.submit(demo.node, study_uid=archive.studies[0].StudyInstanceUID)
    assert (first.state, second.state, other.state) == (
        JobState.RUNNING, JobState.QUEUED, JobState.RUNNING,
    )  # fmt: skip
    assert queue.wait(other.id, TIMEOUT).state is JobState.DONE
    assert queue.get(second.id).state is JobState.QUEUED  # still behind the slow one
    queue.cancel(second.id)
    queue.cancel(first.id)
    assert queue.wait(first.id, TIMEOUT).state is JobState.CANCELLED


def test_progress_is_throttled(
    large: DemoArchive, large_content: Archive, make_queue: QueueFactory
) -> None:
    large.delay_per_instance = 0.005  # ~200 instances a second: far more than 10 updates
    queue, recorder = make_queue()
    job = queue.submit(large.node, study_uid=large_study_uid(large_content))
    done = queue.wait(job.id, TIMEOUT)
    assert done.state is JobState.DONE, done.message
    wait_until(lambda: recorder.last(job.id) == done, "the DONE snapshot")

    timed = recorder.timed(job.id)
    progress = [t for t, e in timed if e.state is JobState.RUNNING and e.progress is not None]
    assert progress, "no progress snapshot at all"
    seconds = timed[-1][0] - timed[0][0]
    assert len(progress) <= seconds / PROGRESS_INTERVAL + 3
    assert len(progress) < LARGE_COUNT


# -- cancelling ----------------------------------------------------------------------------


def test_cancel_running_keeps_what_arrived_then_retry_fetches_the_rest(
    large: DemoArchive, large_content: Archive, store: LocalStore, make_queue: QueueFactory
) -> None:
    queue, recorder = make_queue()
    study_uid = large_study_uid(large_content)
    job = queue.submit(large.node, study_uid=study_uid)  # C-GET
    wait_until(lambda: received(recorder, job.id) >= 3, "a few instances")

    cancelling = queue.cancel(job.id)
    assert cancelling.state is JobState.RUNNING and cancelling.cancelling
    done = queue.wait(job.id, TIMEOUT)

    assert done.state is JobState.CANCELLED, done.message
    assert not done.cancelling and done.finished is not None
    stored = store.instance_uids(study_uid=study_uid)
    everything = large_content.sop_instance_uids(study_uid)
    assert 0 < len(stored) < len(everything)
    assert set(done.missing) == everything - stored
    assert queue.cancel(job.id) == done  # cancelling a finished job does nothing

    large.delay_per_instance = 0.0
    again = queue.retry(job.id)
    assert str(len(done.missing)) in again.message
    final = queue.wait(job.id, TIMEOUT)
    assert final.state is JobState.DONE, final.message
    assert final.attempts == 2 and final.missing == ()
    wait_until(lambda: recorder.last(job.id) == final, "the DONE snapshot")
    second = [f for e in recorder.of(job.id) if e.attempts == 2 and (f := e.fraction) is not None]
    assert second and second == sorted(second) and second[-1] == 1.0  # one request a series
    assert final.progress is not None and final.progress.expected == len(done.missing)
    assert store.instance_uids(study_uid=study_uid) == everything


def test_cancel_queued_job(
    large: DemoArchive, large_content: Archive, store: LocalStore, make_queue: QueueFactory
) -> None:
    queue, recorder = make_queue(per_node_limit=1)
    study_uid = large_study_uid(large_content)
    running = queue.submit(large.node, study_uid=study_uid)
    waiting = queue.submit(large.node, study_uid=study_uid)
    assert waiting.state is JobState.QUEUED

    cancelled = queue.cancel(waiting.id)
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.started is None and cancelled.attempts == 0
    assert queue.get(waiting.id) == cancelled
    assert queue.get(running.id).state is JobState.RUNNING

    queue.cancel(running.id)
    assert queue.wait(running.id, TIMEOUT).state is JobState.CANCELLED
    assert queue.get(waiting.id).attempts == 0  # it never ran
    assert all(e.state is not JobState.RUNNING for e in recorder.of(waiting.id))


# -- persistence ---------------------------------------------------------------------------


def test_jobs_resume_after_shutdown(
    large: DemoArchive,
    large_content: Archive,
    demo: DemoArchive,
    archive: Archive,
    store: LocalStore,
    make_queue: QueueFactory,
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "resume.sqlite"
    first_queue, recorder = make_queue(db_path=db_path, per_node_limit=1)
    large_uid = large_study_uid(large_content)
    small = archive.studies[:2]
    label = "Müller^Jürgen — CT THORAX"
    interrupted = first_queue.submit(move_node(large), study_uid=large_uid, label=label)
    behind = first_queue.submit(large.node, study_uid=large_uid)  # the same study, by C-GET
    cancelled = first_queue.submit(large.node, study_uid=large_uid)
    first_queue.cancel(cancelled.id)
    finished = first_queue.submit(demo.node, study_uid=small[1].StudyInstanceUID)
    assert first_queue.wait(finished.id, TIMEOUT).state is JobState.DONE
    wait_until(lambda: received(recorder, interrupted.id) >= 3, "a few instances")

    first_queue.shutdown(wait=True, timeout=TIMEOUT)

    stopped = first_queue.get(interrupted.id)
    assert stopped.state is JobState.QUEUED and "resumes" in stopped.message
    assert first_queue.get(behind.id).state is JobState.QUEUED
    assert len(store.instance_uids(study_uid=large_uid)) < LARGE_COUNT
    with pytest.raises(QueueClosed):
        first_queue.submit(demo.node, study_uid=small[0].StudyInstanceUID)

    large.delay_per_instance = 0.0
    second_queue, second_recorder = make_queue(db_path=db_path, per_node_limit=1)
    assert second_queue.wait_idle(TIMEOUT)
    jobs = {j.id: j for j in second_queue.jobs()}
    assert list(jobs) == [interrupted.id, behind.id, cancelled.id, finished.id]
    resumed = jobs[interrupted.id]
    assert resumed.state is JobState.DONE, resumed.message
    assert resumed.attempts == 2 and resumed.label == label
    assert resumed.node == move_node(large)
    assert jobs[behind.id].state is JobState.DONE and jobs[behind.id].attempts == 1
    assert jobs[cancelled.id].state is JobState.CANCELLED  # a user's cancel is not undone
    assert jobs[finished.id].state is JobState.DONE and jobs[finished.id].attempts == 1
    assert store.instance_uids(study_uid=large_uid) == large_content.sop_instance_uids()
    assert {e.id for e in second_recorder.all()} == {interrupted.id, behind.id}
    # New ids never reuse old ones.
    newer = second_queue.submit(demo.node, study_uid=small[0].StudyInstanceUID)
    assert newer.id > finished.id


def test_running_row_of_a_crash_is_held_with_resume_false(
    demo: DemoArchive, archive: Archive, store: LocalStore, make_queue: QueueFactory,
    tmp_path: Path,
) -> None:  # fmt: skip
    db_path = tmp_path / "crash.sqlite"
    study = archive.studies[5]
    queue, _ = make_queue(db_path=db_path)
    job = queue.submit(demo.node, study_uid=study.StudyInstanceUID, expected=3)
    assert queue.wait(job.id, TIMEOUT).state is JobState.DONE
    queue.shutdown()
    store.delete_study(study.StudyInstanceUID)
    # What a crash in the middle of the retrieve leaves in the file:
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE jobs SET state = 'running', finished = NULL WHERE id = ?", (job.id,))
    conn.close()

    held_queue, recorder = make_queue(db_path=db_path, resume=False)
    held = held_queue.get(job.id)
    assert held.state is JobState.QUEUED and held.expected == 3
    assert held_queue.wait(job.id, 1.0).state is JobState.QUEUED  # returns at once: held
    assert held_queue.wait_idle(0)
    assert recorder.all() == []

    held_queue.resume()
    done = held_queue.wait(job.id, TIMEOUT)
    assert done.state is JobState.DONE and done.attempts == 2
    assert store.instance_uids(study_uid=study.StudyInstanceUID) == archive.sop_instance_uids(
        study.StudyInstanceUID
    )


# -- retrying, failures, housekeeping --------------------------------------------------------


def test_retry_after_partial_fetches_only_the_missing(
    large: DemoArchive,
    large_content: Archive,
    store: LocalStore,
    scp: StorageServer,
    make_queue: QueueFactory,
) -> None:
    queue, recorder = make_queue(idle_timeout=1.0)
    study_uid = large_study_uid(large_content)
    job = queue.submit(move_node(large), study_uid=study_uid)
    wait_until(lambda: received(recorder, job.id) >= 5, "a few instances")

    large.stop()  # the PACS goes away in the middle of the C-MOVE
    partial = queue.wait(job.id, TIMEOUT)
    assert partial.state is JobState.PARTIAL, partial.message
    stored = store.instance_uids(study_uid=study_uid)
    assert partial.missing and set(partial.missing) == large_content.sop_instance_uids() - stored

    large.delay_per_instance = 0.0
    large.start()  # on the same port
    arrived: list[StoredInstance] = []
    unsubscribe = scp.subscribe(arrived.append)
    try:
        queued = queue.retry(job.id)
        assert queued.state in (JobState.QUEUED, JobState.RUNNING)
        done = queue.wait(job.id, TIMEOUT)
    finally:
        unsubscribe()

    assert done.state is JobState.DONE, done.message
    assert done.attempts == 2 and done.missing == ()
    assert sorted(i.sop_instance_uid for i in arrived) == sorted(partial.missing)
    assert store.instance_uids(study_uid=study_uid) == large_content.sop_instance_uids()


def test_unreachable_node_fails_and_retry_repeats_the_request(
    make_queue: QueueFactory, archive: Archive
) -> None:
    queue, _ = make_queue()
    nowhere = RemoteNode("NOBODY", LOOPBACK, free_port(), connect_timeout=2.0)
    job = queue.submit(nowhere, study_uid=archive.studies[0].StudyInstanceUID)
    failed = queue.wait(job.id, TIMEOUT)
    assert failed.state is JobState.FAILED and failed.message

    again = queue.retry(job.id)
    assert "whole request" in again.message or again.state is JobState.RUNNING
    failed_again = queue.wait(job.id, TIMEOUT)
    assert failed_again.state is JobState.FAILED and failed_again.attempts == 2


def test_invalid_requests_are_refused(
    demo: DemoArchive, archive: Archive, make_queue: QueueFactory
) -> None:
    queue, _ = make_queue(per_node_limit=1)
    with pytest.raises(InvalidInput):
        queue.submit(demo.node, study_uid="")
    with pytest.raises(InvalidInput):
        queue.submit(demo.node, study_uid="1.2\\3.4")
    with pytest.raises(KeyError):
        queue.get(999_999)
    job = queue.submit(demo.node, study_uid=archive.studies[0].StudyInstanceUID)
    assert queue.wait(job.id, TIMEOUT).state is JobState.DONE
    with pytest.raises(InvalidInput):
        queue.retry(job.id)  # nothing to retry in a DONE job
    with pytest.raises(InvalidInput):
        RetrieveQueue(None, None, db_path=None, per_node_limit=0)  # type: ignore[arg-type]


def test_remove_and_clear_finished_persist(
    large: DemoArchive,
    large_content: Archive,
    demo: DemoArchive,
    archive: Archive,
    make_queue: QueueFactory,
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "housekeeping.sqlite"
    queue, _ = make_queue(db_path=db_path)
    done = [queue.submit(demo.node, study_uid=s.StudyInstanceUID) for s in archive.studies[:3]]
    slow = queue.submit(large.node, study_uid=large_study_uid(large_content))
    for job in done:
        assert queue.wait(job.id, TIMEOUT).state is JobState.DONE
    with pytest.raises(InvalidInput):
        queue.remove(slow.id)  # still running

    assert queue.remove(done[0].id).id == done[0].id
    with pytest.raises(KeyError):
        queue.get(done[0].id)
    assert sorted(queue.clear_finished()) == [done[1].id, done[2].id]
    assert [j.id for j in queue.jobs()] == [slow.id]
    queue.shutdown()

    reopened, _ = make_queue(db_path=db_path, resume=False)
    assert [j.id for j in reopened.jobs()] == [slow.id]


def test_on_change_errors_do_not_stop_the_queue_and_logs_hold_no_patient_data(
    demo: DemoArchive,
    archive: Archive,
    store: LocalStore,
    scp: StorageServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[RetrieveJob] = []

    def broken(job: RetrieveJob) -> None:
        calls.append(job)
        raise RuntimeError("a careless GUI slot")

    study = archive.studies[0]
    label = f"{study.PatientName} {study.PatientID} {study.PatientBirthDate}"
    caplog.set_level(logging.INFO)
    with RetrieveQueue(store, scp, db_path=tmp_path / "j.sqlite", on_change=broken) as queue:
        job = queue.submit(demo.node, study_uid=study.StudyInstanceUID, label=label)
        assert queue.wait(job.id, TIMEOUT).state is JobState.DONE
    assert calls and calls[-1].state is JobState.DONE  # the notifier drained on shutdown
    texts = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("workstation") and r.levelno >= logging.INFO
    ]
    assert any("retrieve job" in t for t in texts)
    for text in texts:
        for secret in (study.PatientName, study.PatientID, study.PatientBirthDate, label):
            assert secret not in text
    assert label not in repr(queue.get(job.id))


def test_a_second_queue_on_an_open_job_file_keeps_its_jobs_in_memory(
    demo: DemoArchive, archive: Archive, make_queue: QueueFactory, tmp_path: Path
) -> None:
    db_path = tmp_path / "shared.sqlite"
    first, _ = make_queue(db_path=db_path)
    job = first.submit(demo.node, study_uid=archive.studies[0].StudyInstanceUID)
    assert first.wait(job.id, TIMEOUT).state is JobState.DONE

    second, _ = make_queue(db_path=db_path)  # e.g. the CLI while the window runs
    assert first.persistent and not second.persistent
    assert second.jobs() == []  # it does not see, nor run, the first one's jobs
    other = second.submit(demo.node, study_uid=archive.studies[1].StudyInstanceUID)
    assert second.wait(other.id, TIMEOUT).state is JobState.DONE
    second.shutdown()
    first.shutdown()

    reopened, _ = make_queue(db_path=db_path)
    assert reopened.persistent and [j.id for j in reopened.jobs()] == [job.id]


def test_a_cancel_just_before_quitting_is_not_resumed(
    large: DemoArchive, large_content: Archive, make_queue: QueueFactory, tmp_path: Path
) -> None:
    db_path = tmp_path / "quit.sqlite"
    queue, recorder = make_queue(db_path=db_path)
    job = queue.submit(large.node, study_uid=large_study_uid(large_content))
    wait_until(lambda: received(recorder, job.id) >= 2, "a few instances")
    queue.cancel(job.id)
    queue.shutdown(timeout=TIMEOUT)  # before the worker has seen the C-CANCEL through
    assert queue.get(job.id).state is JobState.CANCELLED

    reopened, again = make_queue(db_path=db_path)
    assert reopened.get(job.id).state is JobState.CANCELLED
    assert reopened.wait_idle(0) and again.all() == []
