"""Bring the index back in line with the files after a crash, a power cut or a lost index.

Files are the truth: a file is complete before it becomes visible under its final name, while
its row commits a little later (and, with ``synchronous=NORMAL``, a power cut may lose the
last batches). Two checks repair the difference:

- :func:`check_in_flight` looks only at what the store's journal says was in flight when the
  process died (:mod:`workstation.store.journal`): each instance file being stored, each
  study or series folder being deleted. Its cost grows with that, not with the store; it is
  all a store opened after a crash of our process needs.
- :func:`reconcile` walks every series folder and every indexed series: after a power cut
  (the journal is not fsynced), when the index is new or lost, or on request. It reports
  progress and can be cancelled; :class:`~workstation.store.local_store.LocalStore` can run
  it on a background thread while the store is in use (see :class:`Repairs`).

Both remove rows whose file is missing and index files that have no row. A file is indexed
only when it parses to its end and its own UIDs place it where it lies, and never when its SOP
Instance UID is indexed at another path whose file exists (the stored copy is kept).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from workstation.errors import InvalidInput
from workstation.store.header import read_header
from workstation.store.index import StoreIndex
from workstation.store.journal import InFlight
from workstation.store.layout import SUFFIX, instance_path, series_path, validate_uid
from workstation.store.records import InstanceRecord

if TYPE_CHECKING:
    from workstation.cancel import CancelToken

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileReport:
    """What a check changed: files ``indexed``, rows without file ``removed``, files
    ``skipped`` (unreadable, misplaced, or older copies); ``checked``: the journal lines or
    series folders looked at; ``cancelled`` when a full check stopped early."""

    indexed: int = 0
    removed: int = 0
    skipped: int = 0
    checked: int = 0
    cancelled: bool = False


@dataclass(frozen=True)
class CheckProgress:
    """A full check's progress: ``done`` of ``total`` series folders."""

    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


CheckProgressCallback = Callable[[CheckProgress], None]


class Repairs:
    """How a check changes the index. This one assumes nobody else writes meanwhile;
    LocalStore's re-checks each change under its publish lock, so that a check can run
    while instances arrive and studies are deleted."""

    def __init__(self, root: Path, index: StoreIndex) -> None:
        self.root = root
        self.index = index

    def index_found(self, record: InstanceRecord) -> bool:
        """Index a file that has no row; False when it turned out not to need it."""
        self.index.submit(record)
        return True

    def remove_missing(self, rows: dict[str, str]) -> int:
        """Remove rows (SOP Instance UID -> path) whose file is missing; how many went."""
        return self.index.delete_instances(rows) if rows else 0


def check_in_flight(
    root: Path, index: StoreIndex, in_flight: InFlight, repairs: Repairs | None = None
) -> ReconcileReport:
    """Repair what the journal of the previous run says was in flight; nothing else."""
    started = time.monotonic()
    repairs = repairs if repairs is not None else Repairs(root, index)
    index.flush()
    indexed = skipped = 0
    missing: dict[str, str] = {}
    for rel in in_flight.stores:
        sop = _sop_of(rel)
        if sop is None:
            log.warning("the store's journal names an unusable path; ignored")
            continue
        row = index.path_of(sop)
        if (root / rel).is_file():
            if row != rel:
                added = _index_file(root, index, PurePosixPath(rel), repairs)
                indexed, skipped = indexed + added, skipped + (not added)
        elif row == rel:
            missing[sop] = rel
    for rel in in_flight.deletions:
        found = _check_folder(root, index, rel, repairs)
        indexed, skipped = indexed + found[0], skipped + found[1]
        missing.update(found[2])
    removed = repairs.remove_missing(missing)
    index.flush()
    report = ReconcileReport(indexed, removed, skipped, checked=len(in_flight))
    log.info(
        "store check of %d step(s) in flight took %.3f s: %d file(s) indexed, %d row(s) "
        "without file removed, %d file(s) skipped",
        len(in_flight),
        time.monotonic() - started,
        indexed,
        removed,
        skipped,
    )
    return report


def reconcile(
    root: Path,
    index: StoreIndex,
    repairs: Repairs | None = None,
    *,
    progress: CheckProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ReconcileReport:
    """Walk the whole store under ``root`` and repair ``index``; return what changed.

    ``progress`` is called after each series folder (on this thread); ``cancel`` stops the
    walk between two folders (what was repaired so far stays repaired).

    It runs beside the window at a million instances, so it never holds the interpreter long:
    the series come from the index :data:`CHUNK` rows at a time, the folders are listed as
    plain names, and the set of indexed series is built and freed in pieces (one big call
    that builds or frees 200,000 objects holds the GIL, and stalls the GUI, for 100-200 ms).
    """
    started = time.monotonic()
    repairs = repairs if repairs is not None else Repairs(root, index)
    index.flush()
    indexed = skipped = removed = checked = 0
    indexed_series: set[str] = set()  # "study/series", one string each: fewer objects
    for chunk in _series_chunks(index):
        indexed_series.update(f"{study}/{series}" for study, series in chunk)
        _pause()
    folders = [
        rel
        for number, study in enumerate(_subdir_names(root))
        for rel in _unindexed(root, study, indexed_series, number)
    ]
    total = len(indexed_series) + len(folders)
    _free(indexed_series)
    cancelled = False

    def step() -> bool:
        nonlocal checked
        checked += 1
        if progress is not None:
            progress(CheckProgress(checked, total))
        return cancel is not None and cancel.cancelled

    for chunk in _series_chunks(index):
        for study_uid, series_uid in chunk:
            try:
                prefix = f"{series_path(study_uid, series_uid)}/"
            except InvalidInput:
                log.warning("the index holds an invalid UID; its rows are left alone")
                continue
            rows = {
                sop: rel
                for sop, rel in index.instance_paths(series_uid).items()
                if rel.startswith(prefix)
            }
            names = _instance_files(root / prefix)  # after the rows: a file never leaves first
            on_disk = {prefix + name for name in names}
            removed += repairs.remove_missing(
                {sop: rel for sop, rel in rows.items() if rel not in on_disk}
            )
            for rel in sorted(on_disk - set(rows.values())):
                added = _index_file(root, index, PurePosixPath(rel), repairs)
                indexed, skipped = indexed + added, skipped + (not added)
            if step():
                cancelled = True
                break
        if cancelled:
            break
    for rel in [] if cancelled else folders:
        for name in sorted(_instance_files(root / rel)):
            added = _index_file(root, index, PurePosixPath(f"{rel}/{name}"), repairs)
            indexed, skipped = indexed + added, skipped + (not added)
        if step():
            cancelled = True
            break
    index.flush()
    report = ReconcileReport(indexed, removed, skipped, checked, cancelled)
    log.info(
        "store check of %s took %.1f s%s: %d file(s) indexed, %d row(s) without file "
        "removed, %d file(s) skipped",
        root,
        time.monotonic() - started,
        " (cancelled)" if cancelled else "",
        indexed,
        removed,
        skipped,
    )
    return report


#: Rows fetched, or objects built or freed, between two pauses of a full check.
CHUNK = 2000


def _pause() -> None:
    """Let other threads (the GUI's) take the interpreter between two chunks of work."""
    time.sleep(0)


def _series_chunks(index: StoreIndex) -> Iterator[list[tuple[str, str]]]:
    """Every (study UID, series UID) pair with instance rows, :data:`CHUNK` at a time, by
    rowid (each chunk one short query: rows committed meanwhile are seen or not, both fine)."""
    last = 0
    while True:
        rows = index.read(
            "SELECT rowid, study_uid, series_uid FROM series WHERE rowid > ? ORDER BY rowid "
            "LIMIT ?",
            (last, CHUNK),
        ).fetchall()
        if not rows:
            return
        last = int(rows[-1][0])
        yield [(str(study), str(series)) for _, study, series in rows]


def _unindexed(root: Path, study: str, indexed_series: set[str], number: int) -> list[str]:
    """The series folders of ``study`` (relative paths) that have no row in the index."""
    if number % CHUNK == 0:
        _pause()
    return [
        rel
        for series in _subdir_names(root / study)
        if (rel := f"{study}/{series}") not in indexed_series
    ]


def _free(items: set[str]) -> None:
    """Empty a large set in pieces, pausing between them (see :func:`reconcile`)."""
    while items:
        for _ in range(min(CHUNK, len(items))):
            items.pop()
        _pause()


def _check_folder(
    root: Path, index: StoreIndex, rel: str, repairs: Repairs
) -> tuple[int, int, dict[str, str]]:
    """A study or series folder whose deletion was in flight: (indexed, skipped, rows whose
    file is missing)."""
    parts = rel.split("/")
    try:
        if len(parts) not in (1, 2):
            raise InvalidInput("not a study or series folder")
        for part in parts:
            validate_uid(part, "UID")
    except InvalidInput:
        log.warning("the store's journal names an unusable folder; ignored")
        return 0, 0, {}
    column = "study_uid" if len(parts) == 1 else "series_uid"
    prefix = f"{rel}/"
    rows = {
        str(sop): str(path)
        for sop, path in index.read(
            f"SELECT sop_instance_uid, path FROM instances WHERE {column} = ?", (parts[-1],)
        )
        if str(path).startswith(prefix)
    }
    folders = [root / rel] if len(parts) == 2 else _subdirs(root / rel)
    on_disk = {
        f"{folder.relative_to(root).as_posix()}/{name}"
        for folder in folders
        for name in _instance_files(folder)
    }
    indexed = skipped = 0
    for found in sorted(on_disk - set(rows.values())):
        added = _index_file(root, index, PurePosixPath(found), repairs)
        indexed, skipped = indexed + added, skipped + (not added)
    return indexed, skipped, {sop: path for sop, path in rows.items() if path not in on_disk}


def _index_file(root: Path, index: StoreIndex, rel: PurePosixPath, repairs: Repairs) -> bool:
    path = root / rel
    try:
        record = read_header(path)
        stat = path.stat()
    except (InvalidInput, OSError) as exc:
        log.warning("cannot index %s: %s", rel, exc)
        return False
    expected = instance_path(record.study_uid, record.series_uid, record.sop_instance_uid)
    if expected != rel:
        log.warning("%s is not where its UIDs place it (%s); left alone", rel, expected)
        return False
    current = index.path_of(record.sop_instance_uid)
    if current == str(rel):
        return False  # indexed meanwhile
    if current is not None and (root / current).is_file():
        log.warning("%s is an older copy of an instance indexed at %s; left alone", rel, current)
        return False
    return repairs.index_found(
        replace(
            record,
            path=str(rel),
            size=stat.st_size,
            received_at=datetime.fromtimestamp(stat.st_mtime, UTC),
        )
    )


def _sop_of(rel: str) -> str | None:
    """The SOP Instance UID a journal path names, when it is a valid instance path."""
    parts = rel.split("/")
    if len(parts) != 3 or not parts[2].endswith(SUFFIX):
        return None
    try:
        sop = parts[2][: -len(SUFFIX)]
        if str(instance_path(parts[0], parts[1], sop)) != rel:
            return None
    except InvalidInput:
        return None
    return sop


def _subdirs(directory: Path) -> list[Path]:
    """Sub-directories whose names are not hidden (``.incoming``, ``.trash``...)."""
    return [directory / name for name in _subdir_names(directory)]


def _subdir_names(directory: Path) -> list[str]:
    """The names of :func:`_subdirs`, as plain strings (one object each)."""
    try:
        with os.scandir(directory) as entries:
            return [
                e.name
                for e in entries
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _instance_files(directory: Path) -> set[str]:
    try:
        with os.scandir(directory) as entries:
            return {
                e.name
                for e in entries
                if e.name.endswith(SUFFIX) and e.is_file(follow_symlinks=False)
            }
    except (FileNotFoundError, NotADirectoryError):
        return set()
