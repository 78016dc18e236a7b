"""The local store: instance files under a folder, indexed in SQLite.

Storing an instance (``store_bytes`` from a C-STORE handler, ``store_file`` for a chunked
receive, ``import_path`` for a folder) runs on the caller's thread and costs one header parse
(~0.5 ms, no pixel data) plus an fsynced write; it never waits for SQLite. When it returns the
file is durable under its final name and its index record is queued; the index's writer thread
commits records in batches and then calls the listeners with the
:class:`~workstation.store.records.StoredInstance` list it committed.

Layout of the folder::

    <root>/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm   the instances
    <root>/.incoming/                                    temporary files of writes in progress
    <root>/.trash/                                       studies and series being deleted
    <root>/.conflicts/                                   differing re-sends, set aside
    <root>/.workstation/index.sqlite                     the index (WAL)
    <root>/.workstation/open                             present while a LocalStore is open

A storage SCP does (see :class:`workstation.dimse.storage.StoreSink`)::

    try:
        store.store_bytes(part10_bytes, source_aet=caller, expect=(sop_class, sop_instance))
    except DatasetMismatch:
        ...  # 0xA900: the data set is not the instance its request announced
    except InvalidInput:
        ...  # 0xC000: not Part-10, does not parse to its end, or unusable UIDs
    except StoreError:
        ...  # 0xA700: out of resources (disk full, permissions, store closed)

Durability. ``store_bytes(durable=True)`` (the default) fsyncs the file and its folder before
it returns: a success answered then survives a power cut. ``durable=False`` (the instances of
our own retrieves, which the PACS still holds) returns once the file is complete under its
final name, which survives a crash of our process; the index writer then makes the whole batch
durable with one ``syncfs`` before it commits the rows, so an indexed instance is always a
durable one. After a power cut, a file that never got its row is not trusted: the next copy
that arrives replaces it, and the start-up check indexes it only if it parses to its end.

One process at a time may open a store. Each step that a crash could leave half done (a file
visible before its row commits, a folder in ``.trash`` before its rows go) is first written to
a small journal (:mod:`workstation.store.journal`); opening the store after a crash of the
process checks exactly those, however large the store. A full walk of the folders is owed only
after a power cut, when the index is missing, or when asked for (:meth:`LocalStore.check`);
``check_in_background=True`` runs it on a thread while the store is in use (see
:mod:`workstation.store.background_check`).

An instance that arrives again with the same SOP Instance UID but other bytes (another patient
name, zeroed pixels) never replaces the stored one: it is set aside in ``.conflicts`` under a
name saying what and when, logged, and reported (``StoredInstance.conflict``). The same bytes
again are a duplicate and change nothing.

The folder and everything in it are private to the user (0700 folders, 0600 files).

Deletion moves the study or series folder to ``.trash`` (one rename), then removes its rows,
then the files. A crash in between leaves rows without files, which the start-up check removes,
or files in ``.trash``, which start-up deletes; never rows that silently point nowhere.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from workstation import audit
from workstation.errors import InvalidInput, StoreError
from workstation.listeners import Listeners
from workstation.store.background_check import (
    BackgroundCheck,
    LockedRepairs,
    full_check_owed,
    write_marker,
)
from workstation.store.batch import CommitResult
from workstation.store.folder import claim, count_files, has_entries
from workstation.store.header import DatasetMismatch as DatasetMismatch
from workstation.store.header import check_expected, read_header
from workstation.store.importer import ImportProgressCallback, ImportReport
from workstation.store.index import StoreIndex
from workstation.store.journal import InFlightJournal
from workstation.store.layout import (
    instance_path,
    resolve_in_root,
    series_path,
    study_path,
    validate_uid,
)
from workstation.store.records import InstanceRecord, StoredInstance
from workstation.store.recovery import (
    CheckProgressCallback,
    ReconcileReport,
    check_in_flight,
    reconcile,
)
from workstation.store.trash import Taken, Trash
from workstation.store.writer import (
    ContentConflict,
    Source,
    WriteResult,
    clean_incoming,
    sync_filesystem,
    temp_path,
    write_atomic,
)

if TYPE_CHECKING:
    from workstation.cancel import CancelToken

log = logging.getLogger(__name__)

META_DIR = ".workstation"
CONFLICTS_DIR = ".conflicts"
INDEX_NAME = "index.sqlite"
OPEN_MARKER = "open"

Listener = Callable[[list[StoredInstance]], None]


class LocalStore:
    """The store under ``root`` (``~`` expanded, created if missing). Thread-safe."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        fsync: bool = True,
        check_in_background: bool = False,
    ) -> None:
        self.root = Path(root).expanduser().absolute()
        self._fsync = fsync
        meta = self.root / META_DIR
        self._owner = claim(self.root, meta)  # before touching anything another may use
        clean_incoming(self.root)
        self._trash = Trash(self.root, fsync=fsync)
        self._trash.empty_all()
        self._marker = meta / OPEN_MARKER
        unclean = self._marker.exists()
        full_check = full_check_owed(self._marker)
        self._journal = InFlightJournal(meta)
        in_flight = self._journal.read()
        self._lock = threading.Lock()
        self._guard = _PublishGuard(self._lock, self._check_open)
        self._closed = False
        self._dirty = False
        self._pending: dict[str, int] = {}  # relative path -> records published, not committed
        self._pending_sops: dict[str, str] = {}  # SOP Instance UID -> its path, not committed
        self._listeners: Listeners[list[StoredInstance]] = Listeners("a store listener failed", log)
        self._needs_sync = False
        self._conflicts = count_files(self.root / CONFLICTS_DIR)
        #: Series folders checked to lie inside the store (see write_atomic's trusted_dirs).
        self._trusted: set[str] = set()
        self.index = StoreIndex(
            meta / INDEX_NAME, on_commit=self._committed, before_commit=self._sync_before_commit
        )
        full_check = full_check or (self.index.created and has_entries(self.root))
        #: What the start-up check repaired (only what was in flight, or all of the store
        #: when that could not be trusted and no background check was asked for), or None
        #: when the store was closed cleanly.
        self.recovery: ReconcileReport | None = None
        #: The full check running in the background (``check_in_background``), if any.
        self.background_check: BackgroundCheck | None = None
        try:
            write_marker(self._marker, check_owed=full_check)
            if full_check and not check_in_background:
                log.warning("the store %s has to be checked in full; checking it", self.root)
                self.recovery = reconcile(self.root, self.index)
                write_marker(self._marker, check_owed=False)
            elif unclean or in_flight:
                log.warning("the store %s was not closed cleanly; checking it", self.root)
                self.recovery = check_in_flight(self.root, self.index, in_flight)
            self._journal.start()
        except BaseException:
            self.index.close()
            self._owner.release()
            raise
        if full_check and check_in_background:
            log.warning("the store %s has to be checked in full; checking it meanwhile", self.root)
            self.background_check = BackgroundCheck(self._full_check, self._full_check_done)
            self.background_check.start()

    # -- storing -----------------------------------------------------------------------------

    def store_bytes(
        self,
        data: bytes,
        *,
        source_aet: str = "",
        expect: tuple[str, str] | None = None,
        durable: bool = True,
    ) -> StoredInstance:
        """Store a Part-10 file given as bytes (preamble, file meta and data set).

        Raises :class:`InvalidInput` when the bytes are not Part-10, do not parse to their end
        or carry unusable UIDs, :class:`DatasetMismatch` when ``expect`` (SOP Class and SOP
        Instance UID, as a C-STORE request announced them) disagrees with the data set (nothing
        is written then), and :class:`StoreError` when the disk refuses the write.
        """
        record = read_header(data)
        check_expected(record, expect)
        return self._store(record, data, move=False, source_aet=source_aet, durable=durable)

    def check_bytes(self, data: bytes, *, expect: tuple[str, str] | None = None) -> InstanceRecord:
        """What :meth:`store_bytes` checks before writing anything: the bytes walk to their
        end and carry usable UIDs (matching ``expect``). Raises as :meth:`store_bytes`; pass
        the record to :meth:`store_checked` to write the file."""
        record = read_header(data)
        check_expected(record, expect)
        return record

    def store_checked(
        self, record: InstanceRecord, data: bytes, *, source_aet: str = "", durable: bool = True
    ) -> StoredInstance:
        """Write bytes that :meth:`check_bytes` accepted as ``record``."""
        return self._store(record, data, move=False, source_aet=source_aet, durable=durable)

    def store_file(
        self,
        path: str | os.PathLike[str],
        *,
        source_aet: str = "",
        move: bool = True,
        expect: tuple[str, str] | None = None,
        durable: bool = True,
    ) -> StoredInstance:
        """Store a Part-10 file; by default the file is consumed (renamed into the store when
        on the same file system), as suits a file received into :meth:`temp_path`."""
        record = read_header(path)
        check_expected(record, expect)
        return self._store(record, path, move=move, source_aet=source_aet, durable=durable)

    def temp_path(self) -> Path:
        """A fresh name in the store's ``.incoming`` folder, for a file being received; pass
        it to :meth:`store_file` when complete. Start-up removes any left there."""
        return temp_path(self.root)

    def import_path(
        self,
        path: str | os.PathLike[str],
        *,
        progress: ImportProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> ImportReport:
        """Copy a file, a folder (recursively), a DICOMDIR medium or a ZIP file into the
        store; non-DICOM files are skipped (see :mod:`workstation.store.importer`)."""
        from workstation.store.importer import import_path

        return import_path(self, path, progress=progress, cancel=cancel)

    def _store(
        self,
        record: InstanceRecord,
        data: Source,
        *,
        move: bool,
        source_aet: str,
        durable: bool = True,
    ) -> StoredInstance:
        rel = str(instance_path(record.study_uid, record.series_uid, record.sop_instance_uid))
        received = datetime.now(UTC)

        token: list[int] = []  # the journal line of this write, until published

        def publish(result: WriteResult) -> None:  # called under self._lock
            self.index.submit(
                replace(
                    record,
                    path=rel,
                    size=result.size,
                    source_aet=source_aet,
                    received_at=received,
                    duplicate=result.duplicate,
                )
            )
            self._pending[rel] = self._pending.get(rel, 0) + 1
            self._pending_sops[record.sop_instance_uid] = rel
            self._journal.published(rel, token.pop() if token else None)
            if not synced and self._fsync:  # a store opened with fsync=False never syncs
                self._needs_sync = True

        # The index is asked before taking the publish lock (no SQL under it); copies published
        # but not committed yet are checked under the lock, where they are recorded.
        indexed = self.index.path_of(record.sop_instance_uid)

        def held_elsewhere() -> None:  # called under self._lock, before the file is visible
            previous = self._pending_sops.get(record.sop_instance_uid) or indexed
            if previous is not None and previous != rel and (self.root / previous).exists():
                # The same instance under another study or series: keep the stored one.
                raise ContentConflict(self.root / previous)
            if not token:
                token.append(self._journal.add_store(rel))

        synced = durable and self._fsync
        self._check_open()
        try:
            write = functools.partial(
                write_atomic,
                self.root,
                rel,
                data,
                move=move,
                fsync=synced,
                lock=self._guard,
                on_publish=publish,
                trusted_dirs=self._trusted,
                before_publish=held_elsewhere,
            )
            try:
                result = write(keep_existing=True)
            except ContentConflict as conflict:
                if conflict.path != self.root / rel or self._is_stored(
                    rel, record.sop_instance_uid
                ):
                    raise
                # A file nobody indexed (left by a write a power cut interrupted): replace it.
                result = write(keep_existing=False)
        except ContentConflict as conflict:
            return self._set_aside(record, data, conflict.path, move=move, source_aet=source_aet)
        except OSError as exc:
            raise StoreError(f"cannot write to the local store {self.root}: {exc}") from exc
        finally:
            if token:  # journaled, then the write failed before the file became visible
                self._journal.done(token.pop())
        return StoredInstance(
            sop_instance_uid=record.sop_instance_uid,
            sop_class_uid=record.sop_class_uid,
            study_uid=record.study_uid,
            series_uid=record.series_uid,
            patient_id=record.patient_id,
            path=result.path,
            size=result.size,
            duplicate=result.duplicate,
        )

    def _is_stored(self, rel: str, sop_instance_uid: str) -> bool:
        """Whether the file at ``rel`` is an instance the store holds (indexed, or published
        and about to be)."""
        with self._lock:
            if rel in self._pending:
                return True
        return self.index.path_of(sop_instance_uid) == rel

    def _sync_before_commit(self) -> None:
        """Index writer thread: make the files published without fsync durable (one syncfs
        for the batch) before their rows say they are stored."""
        with self._lock:
            needed, self._needs_sync = self._needs_sync, False
        if needed:
            sync_filesystem(self.root)

    def _set_aside(
        self, record: InstanceRecord, data: Source, stored: Path, *, move: bool, source_aet: str
    ) -> StoredInstance:
        """Keep a differing version of a stored instance in ``.conflicts``; never replace."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{record.sop_instance_uid}.{stamp}.dcm"
        try:
            result = write_atomic(
                self.root, f"{CONFLICTS_DIR}/{name}", data, move=move, fsync=self._fsync
            )
        except OSError as exc:
            raise StoreError(f"cannot write to the local store {self.root}: {exc}") from exc
        with self._lock:
            self._conflicts += 1
        log.warning(
            "an instance arrived from %s with the SOP Instance UID of a stored one but other "
            "content: the stored version is kept, the new one set aside as %s/%s",
            source_aet or "an import",
            CONFLICTS_DIR,
            name,
        )
        size = stored.stat().st_size if stored.exists() else 0
        return StoredInstance(
            sop_instance_uid=record.sop_instance_uid,
            sop_class_uid=record.sop_class_uid,
            study_uid=record.study_uid,
            series_uid=record.series_uid,
            patient_id=record.patient_id,
            path=stored,
            size=size,
            duplicate=True,
            conflict=result.path,
        )

    @property
    def conflicts_folder(self) -> Path:
        """Where differing re-sends of stored instances are kept for a person to look at."""
        return self.root / CONFLICTS_DIR

    def conflict_count(self) -> int:
        """How many differing copies wait in :attr:`conflicts_folder` (cheap: no disk access)."""
        with self._lock:
            return self._conflicts

    # -- deleting ----------------------------------------------------------------------------

    def delete_study(self, study_uid: str) -> int:
        """Delete a study's files and rows; return the number of instance rows removed."""
        rel = study_path(study_uid)
        with audit.deletion(self, "study", study_uid, [study_uid]) as deleted:
            with self._guard:
                self._trusted.clear()
                taken, tokens = self._take([rel])
                future = self.index.submit_delete_study(study_uid)
            deleted.count = self._finish_delete(future.result, taken, tokens)
        return deleted.count

    def delete_series(self, series_uid: str) -> int:
        """Delete a series' files and rows; return the number of instance rows removed."""
        validate_uid(series_uid, "Series Instance UID")
        self.flush()
        rels = [
            series_path(study, series_uid) for study in self.index.series_study_uids(series_uid)
        ]
        studies = sorted({rel.parent.name for rel in rels})
        with audit.deletion(self, "series", series_uid, studies) as deleted:
            with self._guard:
                self._trusted.clear()
                taken, tokens = self._take(rels)
                future = self.index.submit_delete_series(series_uid)
            deleted.count = count = self._finish_delete(future.result, taken, tokens)
        with self._lock:
            for rel in rels:
                with contextlib.suppress(OSError):  # not empty, or gone
                    (self.root / rel.parent).rmdir()
        return count

    def _take(self, rels: list[PurePosixPath]) -> tuple[list[Taken], list[int]]:
        """Journal, then move to the trash, the folders of a deletion (under the lock)."""
        tokens = [self._journal.add_delete(str(rel)) for rel in rels]
        try:
            return self._trash.take(rels), tokens
        except BaseException:  # nothing was taken
            for token in tokens:
                self._journal.done(token)
            raise

    def _finish_delete(self, wait: Callable[[], int], taken: list[Taken], tokens: list[int]) -> int:
        try:
            count = wait()
        except Exception:
            with self._lock:
                if self._trash.give_back(taken):
                    for token in tokens:
                        self._journal.done(token)
                else:
                    self._dirty = True  # its journal lines stay for the next start-up
            raise
        self._trash.empty(taken)
        for token in tokens:
            self._journal.done(token)
        return count

    # -- reading -----------------------------------------------------------------------------

    def path_of(self, sop_instance_uid: str) -> Path | None:
        """The file of an instance, or None when the store does not hold it."""
        rel = self.index.path_of(sop_instance_uid)
        if rel is None and self.index.pending:
            self.flush()
            rel = self.index.path_of(sop_instance_uid)
        return None if rel is None else resolve_in_root(self.root, rel)

    def instance_uids(
        self, study_uid: str | None = None, series_uid: str | None = None
    ) -> set[str]:
        """SOP Instance UIDs stored, including those stored but not yet committed."""
        self.flush()
        return self.index.instance_uids(study_uid=study_uid, series_uid=series_uid)

    def study_completeness(self, study_uid: str) -> int:
        self.flush()
        return self.index.study_completeness(study_uid)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every instance stored so far is indexed and announced to listeners."""
        return self.index.flush(timeout)

    # -- listeners ---------------------------------------------------------------------------

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback(stored)`` on the index thread after each commit of new instances;
        returns a function that removes it.

        Keep it short (hand the list to a queue or a Qt signal); it must not call
        :meth:`flush`, which cannot complete from that thread.
        """
        return self._listeners.add(callback)

    def remove_listener(self, callback: Listener) -> None:
        self._listeners.remove(callback)

    def _committed(self, results: list[CommitResult]) -> None:
        """The index committed ``results`` (runs on its writer thread)."""
        # Where each instance's row points now; a path holds its SOP Instance UID, so no other
        # row can point to an instance's superseded path.
        current = {r.record.sop_instance_uid: r.record.path for r in results if r.ok}
        with self._lock:
            for result in results:
                self._journal.committed(result.record.path, ok=result.ok)
                left = self._pending.get(result.record.path, 0) - 1
                if left > 0:
                    self._pending[result.record.path] = left
                else:
                    self._pending.pop(result.record.path, None)
                    sop = result.record.sop_instance_uid
                    if self._pending_sops.get(sop) == result.record.path:
                        del self._pending_sops[sop]
            for result in results:
                old = result.superseded
                sop = result.record.sop_instance_uid
                if old and old not in self._pending and old != current.get(sop):
                    self._remove_superseded(old)
            if any(not r.ok for r in results):
                self._dirty = True
        self._listeners.emit([_stored(self.root, r.record) for r in results if r.ok])

    def _remove_superseded(self, rel: str) -> None:
        """Delete the file an instance left behind when its study or series UID changed."""
        self._trusted.clear()  # its folders may go with it
        try:
            path = resolve_in_root(self.root, rel)
            path.unlink()
            for parent in (path.parent, path.parent.parent):
                parent.rmdir()
        except (OSError, InvalidInput):
            pass  # gone already, or the folder still holds other instances

    # -- checking ----------------------------------------------------------------------------

    def check(
        self,
        *,
        progress: CheckProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> ReconcileReport:
        """Walk the whole store and repair the index (rows without file, files without row);
        safe while instances arrive. Slow on a large store: run it on a worker."""
        self._check_open()
        return self._full_check(progress, cancel)

    def _full_check(
        self, progress: CheckProgressCallback | None, cancel: CancelToken | None
    ) -> ReconcileReport:
        repairs = LockedRepairs(self.root, self.index, self._lock, self._pending)
        return reconcile(self.root, self.index, repairs, progress=progress, cancel=cancel)

    def _full_check_done(self, report: ReconcileReport) -> None:
        """The background check ended (its thread); once complete, it is no longer owed."""
        if not report.cancelled and not self._closed:
            write_marker(self._marker, check_owed=False)

    # -- life cycle --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the local store {self.root} is closed")

    def close(self) -> None:
        """Index everything stored, stop the index thread; further stores raise StoreError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        check = self.background_check
        if check is not None:
            check.cancel()
        self.index.close()
        owed = check is not None and (check.report is None or check.report.cancelled)
        if self.index.failed_count or self._dirty or owed:
            log.warning("the store %s will be checked at next start-up", self.root)
        else:
            with contextlib.suppress(FileNotFoundError):
                self._marker.unlink()
        self._journal.close()
        self._owner.release()

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stored(root: Path, record: InstanceRecord) -> StoredInstance:
    return StoredInstance(
        sop_instance_uid=record.sop_instance_uid,
        sop_class_uid=record.sop_class_uid,
        study_uid=record.study_uid,
        series_uid=record.series_uid,
        patient_id=record.patient_id,
        path=root / record.path,
        size=record.size,
        duplicate=record.duplicate,
    )


class _PublishGuard:
    """The publish lock as a reusable context manager that refuses once the store closed."""

    def __init__(self, lock: threading.Lock, check: Callable[[], None]) -> None:
        self._lock = lock
        self._check = check

    def __enter__(self) -> None:
        self._lock.acquire()
        try:
            self._check()
        except BaseException:
            self._lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
