"""Opening a store after a crash checks what was in flight, not the whole store."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path, PurePosixPath

import pytest

from tests.test_store import STUDY, dcm_files, make_instance, sop_uid
from workstation.store import InstanceRecord, LocalStore, recovery
from workstation.store.journal import InFlightJournal

OTHER_STUDY = "1.2.826.0.1.3680043.10.99.2"


def other(i: int) -> bytes:
    """An instance of another study than the one the tests crash in."""
    return make_instance(f"{OTHER_STUDY}.1.{i}", OTHER_STUDY, f"{OTHER_STUDY}.1")


class Spy:
    """Counts what a start-up check reads: headers (by path) and folders listed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.headers: list[Path] = []
        self.listed: list[Path] = []
        self.walked: list[Path] = []
        read_header, instance_files, subdirs = (
            recovery.read_header,
            recovery._instance_files,
            recovery._subdir_names,
        )

        def spy_header(source: Path) -> InstanceRecord:
            self.headers.append(Path(source))
            return read_header(source)

        def spy_files(directory: Path) -> set[str]:
            self.listed.append(directory)
            return instance_files(directory)

        def spy_subdirs(directory: Path) -> list[str]:
            self.walked.append(directory)
            return subdirs(directory)

        monkeypatch.setattr(recovery, "read_header", spy_header)
        monkeypatch.setattr(recovery, "_instance_files", spy_files)
        monkeypatch.setattr(recovery, "_subdir_names", spy_subdirs)


def indexed_paths(root: Path) -> set[str]:
    """The paths the index lists, read straight from the database file."""
    with sqlite3.connect(f"file:{root / '.workstation' / 'index.sqlite'}?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute("SELECT path FROM instances")}


def crash(store: LocalStore) -> None:
    """The process dies: no clean close (the open marker and the journal stay)."""
    store.index.close()
    store._journal.close()  # a dead process's descriptors close; every line stays on disk
    store._owner.release()


_IMPORTER = textwrap.dedent(
    """
    import sys, time
    from workstation.store import LocalStore, index

    # The index commits slowly, so that the kill finds files whose rows are not committed.
    apply = index.StoreIndex._apply
    def slow_apply(self, batch):
        time.sleep(0.3)
        return apply(self, batch)
    index.StoreIndex._apply = slow_apply
    store = LocalStore(sys.argv[1])
    store.import_path(sys.argv[2])
    print("finished", flush=True)
    """
)


def test_a_crash_mid_import_reconciles_exactly_what_was_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "cd"
    source.mkdir()
    for i in range(400):
        (source / f"IM{i:04d}").write_bytes(make_instance(sop_uid(i), number=i))
    root = tmp_path / "store"
    with LocalStore(root) as store:  # a store that already holds another study
        for i in range(30):
            store.store_bytes(
                make_instance(f"{OTHER_STUDY}.1.{i}", OTHER_STUDY, f"{OTHER_STUDY}.1")
            )
    process = subprocess.Popen(
        [sys.executable, "-c", _IMPORTER, str(root), str(source)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    deadline = time.monotonic() + 60
    while len(dcm_files(root)) < 30 + 60:
        assert process.poll() is None, "the import ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.stdout is not None and "finished" not in process.stdout.read()

    visible = {p.relative_to(root).as_posix() for p in dcm_files(root)}
    rows = indexed_paths(root)
    in_flight = InFlightJournal(root / ".workstation").read()
    assert visible - rows, "the kill found every file indexed: nothing to reconcile"
    assert visible - rows <= set(in_flight.stores)  # the journal names every file without row
    assert not any(rel.startswith(OTHER_STUDY) for rel in in_flight.stores)  # not the rest

    spy = Spy(monkeypatch)
    with LocalStore(root) as reopened:
        assert reopened.recovery is not None
        assert reopened.index.instance_uids() == {
            PurePosixPath(rel).stem for rel in visible
        }  # every complete file indexed, no row without a file
        for rel in visible:
            assert reopened.path_of(PurePosixPath(rel).stem) == root / rel
        # Exactly what was in flight was looked at: no folder walked, and headers read only
        # of the files the journal named that had no row.
        assert spy.walked == [] and spy.listed == []
        assert {p.relative_to(root).as_posix() for p in spy.headers} == visible - rows
        assert reopened.recovery.indexed == len(visible - rows)
    monkeypatch.undo()
    with LocalStore(root) as again:  # the import, run again, completes
        rerun = again.import_path(source)
        assert rerun.stored + rerun.duplicates == 400 and rerun.failed == 0
        assert len(again.index.instance_uids()) == 430


def test_a_crash_mid_delete_removes_only_that_studys_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    for i in range(5):
        store.store_bytes(make_instance(sop_uid(i)))
        store.store_bytes(other(i))
    store.flush()

    def die(study_uid: str) -> None:
        raise KeyboardInterrupt  # the folder is in the trash; the process dies before the rows

    monkeypatch.setattr(store.index, "submit_delete_study", die)
    with pytest.raises(KeyboardInterrupt):
        store.delete_study(STUDY)
    crash(store)
    assert len(indexed_paths(root)) == 10  # rows without files

    spy = Spy(monkeypatch)
    with LocalStore(root) as reopened:
        assert reopened.recovery is not None and reopened.recovery.removed == 5
        assert reopened.index.instance_uids() == {f"{OTHER_STUDY}.1.{i}" for i in range(5)}
        assert spy.walked == [root / STUDY]  # the deleted study's folder, nothing else
        assert spy.headers == []
    assert not list((root / ".trash").iterdir())


def test_a_store_left_open_in_another_boot_is_checked_in_full_in_the_background(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    store.store_bytes(make_instance(sop_uid(1)))
    store.flush()
    store.index.submit = lambda record: None  # type: ignore[method-assign]  # never committed
    lost = store.store_bytes(make_instance(sop_uid(2)))
    crash(store)
    for segment in (root / ".workstation").glob("inflight-*"):
        segment.unlink()  # a power cut: the journal's tail never reached the disk
    (root / ".workstation" / "open").write_text("boot=another-boot\n")

    started = time.monotonic()
    with LocalStore(root, check_in_background=True) as reopened:
        opened = time.monotonic() - started
        check = reopened.background_check
        assert check is not None
        report = check.wait(30)
        assert report is not None and report.indexed == 1 and not report.cancelled
        assert check.progress.done == check.progress.total >= 1
        assert reopened.path_of(sop_uid(2)) == lost.path
        assert "check" not in (root / ".workstation" / "open").read_text()
    assert opened < 5  # the walk did not hold up the open (generous: a shared test machine)
    assert not (root / ".workstation" / "open").exists()
    with LocalStore(root) as again:
        assert again.recovery is None and again.background_check is None


def test_a_full_check_runs_while_instances_arrive(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with LocalStore(root) as store:
        for i in range(20):
            store.store_bytes(make_instance(sop_uid(i)))
    with LocalStore(root) as store:
        for i in range(20, 60):
            store.store_bytes(make_instance(sop_uid(i)), durable=False)
            if i == 30:
                report = store.check()
        store.flush()
        assert report.removed == 0 and report.skipped == 0
        assert store.index.instance_uids() == {sop_uid(i) for i in range(60)}


def test_the_journal_stays_empty_once_rows_commit_and_goes_on_close(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with LocalStore(root) as store:
        for i in range(50):
            store.store_bytes(make_instance(sop_uid(i)), durable=False)
        store.delete_series(f"{STUDY}.1")
        store.flush()
        assert store._journal.open_lines == 0
        assert sum(p.stat().st_size for p in (root / ".workstation").glob("inflight-*")) == 0
    assert not list((root / ".workstation").glob("inflight-*"))
    assert not (root / ".workstation" / "open").exists()


def test_a_full_check_reads_the_index_in_chunks_and_repairs_across_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full check fetches series and frees its set a few at a time (so that the window
    never stalls on it at a million instances): nothing may fall between two chunks."""
    root = tmp_path / "store"
    series = [f"{STUDY}.{n}" for n in range(1, 8)]
    with LocalStore(root) as store:
        for uid in series:
            for i in range(3):
                store.store_bytes(make_instance(f"{uid}.{i}", STUDY, uid))
        store.store_bytes(make_instance(f"{OTHER_STUDY}.1.1", OTHER_STUDY, f"{OTHER_STUDY}.1"))
    gone = root / STUDY / series[2] / f"{series[2]}.1.dcm"
    gone.unlink()  # a row without its file, in the middle of the series
    unindexed = root / STUDY / series[5] / f"{series[5]}.9.dcm"  # copied in by hand
    unindexed.write_bytes(make_instance(f"{series[5]}.9", STUDY, series[5]))
    monkeypatch.setattr(recovery, "CHUNK", 2)
    pauses: list[None] = []
    monkeypatch.setattr(recovery, "_pause", lambda: pauses.append(None))
    with LocalStore(root) as store:
        report = store.check()
        store.flush()
        assert (report.indexed, report.removed, report.skipped) == (1, 1, 0)
        assert report.checked == len(series) + 1 and not report.cancelled
        assert store.path_of(f"{series[2]}.1") is None
        assert store.path_of(f"{series[5]}.9") == unindexed
        assert len(store.index.instance_uids()) == len(series) * 3 + 1
    assert len(pauses) >= 4  # it let other threads in between the chunks
