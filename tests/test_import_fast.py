"""Importing a folder on several threads: the same outcome, file by file, as one at a time."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.test_store import SERIES, STUDY, dcm_files, make_instance, sop_uid
from workstation.cancel import CancelToken
from workstation.store import LocalStore
from workstation.store.importer import ImportProgress


@pytest.fixture
def store(tmp_path: Path):
    with LocalStore(tmp_path / "store") as s:
        yield s


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the invalid UID
def test_a_folder_with_broken_and_foreign_files_imports_the_rest_with_reasons(
    tmp_path: Path, store: LocalStore
) -> None:
    source = tmp_path / "folder"
    (source / "a" / "b").mkdir(parents=True)
    for i in range(120):
        (source / "a" / f"IM{i:03d}").write_bytes(make_instance(sop_uid(i), number=i))
    whole = make_instance(sop_uid(999))
    (source / "a" / "b" / "truncated").write_bytes(whole[: len(whole) - 40])
    (source / "a" / "b" / "bad-uid").write_bytes(
        make_instance("1.2.3", study="../../etc", series=SERIES)
    )
    (source / "notes.txt").write_text("not DICOM")
    (source / "empty").write_bytes(b"")
    if hasattr(os, "mkfifo"):
        os.mkfifo(source / "a" / "pipe")  # reading it would block forever
    (source / "a" / "again").write_bytes(make_instance(sop_uid(7), number=7))  # same bytes

    seen: list[ImportProgress] = []
    threads: set[threading.Thread] = set()

    def progress(update: ImportProgress) -> None:
        seen.append(update)
        threads.add(threading.current_thread())

    report = store.import_path(source, progress=progress)

    assert (report.stored, report.duplicates, report.failed) == (120, 1, 2)
    assert report.skipped == 2 + hasattr(os, "mkfifo")
    reasons = dict(report.failures)
    assert "truncated" in reasons["a/b/truncated"]
    assert "invalid StudyInstanceUID" in reasons["a/b/bad-uid"]
    # Indexed when the import returns, and the files are the source's bytes.
    assert store.index.instance_uids() == {sop_uid(i) for i in range(120)}
    for path in dcm_files(store.root):
        number = int(path.stem.rsplit(".", 1)[1])
        assert path.read_bytes() == (source / "a" / f"IM{number:03d}").read_bytes()
    assert threads == {threading.current_thread()}
    assert [u.done for u in seen] == sorted(u.done for u in seen)
    assert seen[-1].done == seen[-1].total == report.total
    assert not list((store.root / ".incoming").iterdir())


def test_a_cancelled_import_stops_and_what_it_stored_is_indexed(
    tmp_path: Path, store: LocalStore
) -> None:
    source = tmp_path / "folder"
    source.mkdir()
    for i in range(300):
        (source / f"IM{i:03d}").write_bytes(make_instance(sop_uid(i), number=i))
    token = CancelToken()

    def progress(update: ImportProgress) -> None:
        if update.done >= 50:
            token.cancel()

    report = store.import_path(source, progress=progress, cancel=token)
    assert report.cancelled
    assert 50 <= report.stored < 300
    stored = {p.stem for p in dcm_files(store.root)}
    assert store.index.instance_uids() == stored and len(stored) == report.stored
    assert all(uid.startswith(f"{STUDY}.") for uid in stored)
