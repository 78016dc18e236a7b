"""The SQLite index of the local store: one writer thread, any number of readers.

Storing threads call :meth:`StoreIndex.submit`, which only puts the record on a queue and never
touches SQLite. A single writer thread owns the write connection and drains the queue: it takes
what is waiting, lingers up to ``linger`` seconds for more, and commits up to ``batch_size``
items in one transaction, so thousands of instances per second cost a few commits. A
:meth:`flush` or a deletion ends the current batch at once. After each commit the
``on_commit`` callback runs on the writer thread; :meth:`flush` returns only after it ran.

If a batch fails, the writer retries its items one by one, so one bad record cannot lose its
neighbours; records that still fail are counted in :attr:`failed_count` and logged (their files
are on disk, and :func:`workstation.store.recovery.reconcile` indexes them again).

Readers get one connection per thread (WAL: they never block the writer and never see a
half-committed batch); all of them are closed by :meth:`close`.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path

from workstation.errors import StoreError
from workstation.store.batch import BatchWriter, CommitResult
from workstation.store.queries import IndexQueries
from workstation.store.records import InstanceRecord
from workstation.store.schema import connect, prepare

log = logging.getLogger(__name__)

CommitCallback = Callable[[list[CommitResult]], None]


class _Control:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_FLUSH = _Control("flush")
_STOP = _Control("stop")


class _Delete:
    def __init__(self, kind: str, uids: tuple[str, ...]) -> None:
        self.kind = kind
        self.uids = uids
        self.future: Future[int] = Future()


class StoreIndex(IndexQueries):
    """The index database at ``db_path`` (created with its folder if missing)."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        batch_size: int = 200,
        linger: float = 0.05,
        on_commit: CommitCallback | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        self.db_path = Path(db_path).expanduser()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._batch_size = max(1, batch_size)
        self._linger = max(0.0, linger)
        self._on_commit = on_commit
        #: Called on the writer thread before instance rows are committed: the store makes
        #: the files those rows name durable there (see LocalStore, "durability").
        self._before_commit = before_commit
        conn = connect(self.db_path, writer=True)
        try:
            #: True when this index was created now (an empty database).
            self.created = prepare(conn, self.db_path)
        except BaseException:
            conn.close()
            raise
        self._writer = BatchWriter(conn)
        self._queue: queue.Queue[tuple[int, object]] = queue.Queue()
        self._seq_lock = threading.Lock()
        self._submitted = 0
        self._committed = 0
        self._done = threading.Condition()
        #: Set by what must end the lingering batch at once (a flush, a deletion, close).
        self._urgent = threading.Event()
        self._closed = False
        self._failures = 0
        self._readers: weakref.WeakKeyDictionary[threading.Thread, sqlite3.Connection] = (
            weakref.WeakKeyDictionary()
        )
        self._readers_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="store-index-writer", daemon=True)
        self._thread.start()

    # -- writing -----------------------------------------------------------------------------

    def submit(self, record: InstanceRecord) -> None:
        """Queue ``record`` for indexing; never blocks. Raises StoreError once closed."""
        self._put(record)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is committed and announced.

        Returns False on timeout, and at once when called from the writer thread (from an
        ``on_commit`` callback), which cannot wait for itself.
        """
        if threading.current_thread() is self._thread:
            return False
        try:
            seq = self._put(_FLUSH)
        except StoreError:  # closed: close() drained the queue
            self._thread.join(timeout)
            return not self._thread.is_alive()
        with self._done:
            return self._done.wait_for(lambda: self._committed >= seq, timeout)

    def submit_delete_study(self, study_uid: str) -> Future[int]:
        """Queue the removal of a study's rows after everything submitted before it."""
        return self._put_delete("study", (study_uid,))

    def submit_delete_series(self, series_uid: str) -> Future[int]:
        return self._put_delete("series", (series_uid,))

    def submit_delete_instances(self, sop_instance_uids: Iterable[str]) -> Future[int]:
        return self._put_delete("instances", tuple(sop_instance_uids))

    def delete_study(self, study_uid: str, timeout: float | None = None) -> int:
        """Remove the rows of a study (instances, series, and its patient if now empty).

        Returns the number of instance rows removed. Files are not touched.
        """
        return self.submit_delete_study(study_uid).result(timeout)

    def delete_series(self, series_uid: str, timeout: float | None = None) -> int:
        """Remove the rows of a series (and its study and patient if now empty)."""
        return self.submit_delete_series(series_uid).result(timeout)

    def delete_instances(
        self, sop_instance_uids: Iterable[str], timeout: float | None = None
    ) -> int:
        return self.submit_delete_instances(sop_instance_uids).result(timeout)

    @property
    def failed_count(self) -> int:
        """How many records could not be indexed since start-up."""
        return self._failures

    @property
    def pending(self) -> int:
        """How many queued items are not committed yet."""
        return self._submitted - self._committed

    def close(self, timeout: float | None = 30.0) -> None:
        """Commit what is queued, stop the writer thread and close every connection."""
        with self._seq_lock:
            if self._closed:
                return
            self._closed = True
            self._submitted += 1
            self._queue.put((self._submitted, _STOP))
            self._urgent.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error(
                "the index writer did not finish within %s s; some rows may be missing", timeout
            )
        with self._readers_lock:
            readers = list(self._readers.values())
            self._readers.clear()
        for conn in readers:
            conn.close()

    def __enter__(self) -> StoreIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -----------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (IndexQueries runs every query on it)."""
        thread = threading.current_thread()
        with self._readers_lock:
            conn = self._readers.get(thread)
            if conn is None:
                if self._closed:
                    raise StoreError("the store index is closed")
                conn = connect(self.db_path, writer=False)
                self._readers[thread] = conn
        return conn

    # -- the writer thread -------------------------------------------------------------------

    def _put(self, item: object) -> int:
        with self._seq_lock:
            if self._closed:
                raise StoreError("the store index is closed")
            self._submitted += 1
            self._queue.put((self._submitted, item))
            if _ends_batch(item):
                self._urgent.set()
            return self._submitted

    def _put_delete(self, kind: str, uids: tuple[str, ...]) -> Future[int]:
        item = _Delete(kind, uids)
        self._put(item)
        return item.future

    def _run(self) -> None:
        stop = False
        while not stop:
            seq, item = self._queue.get()
            batch = [item]
            if not _ends_batch(item):
                # Linger with one wait, not a wake-up per record submitted (each costs the
                # storing thread a futex and a GIL hand-off); then take what came meanwhile.
                self._urgent.wait(self._linger)
                self._urgent.clear()
            while not _ends_batch(item) and len(batch) < self._batch_size:
                try:
                    seq, item = self._queue.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            stop = item is _STOP
            try:
                results = self._apply(batch)
            except Exception:  # a bug here must not stop the thread: flush() would hang
                log.exception("the index writer failed on a batch of %d items", len(batch))
                self._failures += 1
                results = []
            if results and self._on_commit is not None:
                try:
                    self._on_commit(results)
                except Exception:
                    log.exception("the store's commit callback failed")
            with self._done:
                self._committed = seq
                self._done.notify_all()
        self._writer.conn.close()

    def _apply(self, batch: list[object]) -> list[CommitResult]:
        writer = self._writer
        results: list[CommitResult] = []
        done: list[tuple[_Delete, int]] = []
        if self._before_commit is not None and any(isinstance(i, InstanceRecord) for i in batch):
            try:
                self._before_commit()
            except Exception as exc:  # the files may not be durable: do not index them yet
                return [r for item in batch for r in self._fail(item, exc)]
        try:
            writer.begin()
        except Exception as exc:  # no transaction at all (disk full, locked by another program)
            return [r for item in batch for r in self._fail(item, exc)]
        try:
            for item in batch:
                if isinstance(item, InstanceRecord):
                    results.append(writer.add(item))
                elif isinstance(item, _Delete):
                    done.append((item, self._delete(item)))
            writer.commit()
        except Exception as exc:
            writer.rollback()
            if len(batch) == 1:
                return self._fail(batch[0], exc)
            log.warning("index batch of %d items failed (%s); retrying one by one", len(batch), exc)
            return [r for item in batch for r in self._apply([item])]
        for delete, count in done:
            delete.future.set_result(count)
        return results

    def _delete(self, item: _Delete) -> int:
        if item.kind == "study":
            return self._writer.delete_study(item.uids[0])
        if item.kind == "series":
            return self._writer.delete_series(item.uids[0])
        return self._writer.delete_instances(item.uids)

    def _fail(self, item: object, exc: Exception) -> list[CommitResult]:
        if isinstance(item, _Delete):
            log.error("cannot remove %s rows from the index: %s", item.kind, exc)
            item.future.set_exception(StoreError(f"cannot update the store index: {exc}"))
            return []
        if isinstance(item, InstanceRecord):
            self._failures += 1
            log.error("cannot index instance %s: %s", item.sop_instance_uid, exc)
            return [CommitResult(item, ok=False)]
        return []


def _ends_batch(item: object) -> bool:
    return isinstance(item, _Control | _Delete)
