"""The full check of a store on a background thread, and the open marker that says it is owed.

Opening a store repairs synchronously only what its journal says was in flight
(:func:`workstation.store.recovery.check_in_flight`). A full walk
(:func:`workstation.store.recovery.reconcile`) is owed only when the journal cannot be trusted
or the index has to be rebuilt:

- the store was left open in another boot of the system (a power cut: the journal is never
  fsynced, and the index may have lost its last commits), or by a version of the program that
  kept no journal (its marker names no boot), or on a system whose boot cannot be told;
- the index is new while the folder holds instances (deleted, or a store copied without it);
- a previous full check was interrupted (the marker still says ``check``).

The open marker ``.workstation/open`` exists while a store is open and names the boot it was
opened in, plus ``check`` while a full check is owed; a clean close removes it.

:class:`BackgroundCheck` runs the walk on its own thread while the store is in use, with
progress and cancel; :class:`LockedRepairs` makes each repair under the store's publish lock,
so that an instance stored or a study deleted meanwhile is never undone by the check.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from workstation.cancel import CancelToken
from workstation.store.index import StoreIndex
from workstation.store.journal import boot_id
from workstation.store.records import InstanceRecord
from workstation.store.recovery import (
    CheckProgress,
    CheckProgressCallback,
    ReconcileReport,
    Repairs,
)

log = logging.getLogger(__name__)

_CHECK = "check"


def full_check_owed(marker: Path) -> bool:
    """Whether the store whose open marker is ``marker`` needs a full walk (see above)."""
    try:
        lines = marker.read_text(encoding="ascii", errors="replace").split()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    current = boot_id()
    return current is None or _CHECK in lines or f"boot={current}" not in lines


def write_marker(marker: Path, *, check_owed: bool) -> None:
    """Say the store is open in this boot (and whether a full check is owed), durably."""
    text = f"boot={boot_id() or 'unknown'}\n" + (f"{_CHECK}\n" if check_owed else "")
    temp = marker.with_name(marker.name + ".new")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    try:
        os.write(fd, text.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, marker)
    _fsync_dir(marker.parent)


class LockedRepairs(Repairs):
    """Repairs re-checked under the store's publish ``lock``: a file being published
    (``pending`` holds its path until its row commits) is left to its own record, and a row
    is removed only while its file is still missing, in queue order with any new copy."""

    def __init__(
        self, root: Path, index: StoreIndex, lock: threading.Lock, pending: dict[str, int]
    ) -> None:
        super().__init__(root, index)
        self._lock = lock
        self._pending = pending

    def index_found(self, record: InstanceRecord) -> bool:
        with self._lock:
            if record.path in self._pending or not (self.root / record.path).is_file():
                return False
            self.index.submit(record)
            return True

    def remove_missing(self, rows: dict[str, str]) -> int:
        if not rows:
            return 0
        with self._lock:
            gone = [
                sop
                for sop, rel in rows.items()
                if rel not in self._pending and not (self.root / rel).exists()
            ]
            future = self.index.submit_delete_instances(gone) if gone else None
        return future.result() if future is not None else 0


class BackgroundCheck:
    """A full check running on a daemon thread; ``on_done`` gets its report there."""

    def __init__(
        self,
        run: Callable[[CheckProgressCallback, CancelToken], ReconcileReport],
        on_done: Callable[[ReconcileReport], None],
    ) -> None:
        self._run = run
        self._on_done = on_done
        self.cancel_token = CancelToken()
        self._progress = CheckProgress(0, 0)
        self.report: ReconcileReport | None = None
        self._thread = threading.Thread(target=self._main, name="store-check", daemon=True)

    def start(self) -> BackgroundCheck:
        self._thread.start()
        return self

    @property
    def progress(self) -> CheckProgress:
        """Series folders checked so far, of how many."""
        return self._progress

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> ReconcileReport | None:
        """The report once the check ended (None on timeout)."""
        self._thread.join(timeout)
        return self.report

    def cancel(self, timeout: float | None = None) -> None:
        """Stop between two folders and wait for the thread (the check stays owed)."""
        self.cancel_token.cancel()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _set_progress(self, progress: CheckProgress) -> None:
        self._progress = progress

    def _main(self) -> None:
        try:
            self.report = self._run(self._set_progress, self.cancel_token)
        except Exception:  # the store closed under it, or the disk failed: owed next time
            log.exception("the background check of the store failed; it runs again next time")
            self.report = ReconcileReport(cancelled=True)
        try:
            self._on_done(self.report)
        except Exception:
            log.exception("the end of the background check of the store failed")


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
