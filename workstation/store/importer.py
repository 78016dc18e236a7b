"""Bringing files, folders, DICOMDIR media and ZIP files into the local store.

:func:`import_paths` (``LocalStore.import_path`` for one path, ``ws.import_paths`` for
scripts, ``workstation import`` on the command line, File → Import… and drag and drop in the
window) takes any mix of:

- a **file**: one Part-10 instance;
- a **folder**: every file below it, recursively, in name order - unless the folder holds a
  ``DICOMDIR`` at its top (a CD, DVD or USB stick), which is then imported as below;
- a **DICOMDIR** (PS3.10 media): its directory records are read with pydicom and every file
  they reference is imported (file IDs are matched without regard to case and a trailing
  ISO 9660 ``;1``, as CDs mounted on Linux and Windows show them); files on the medium that
  the DICOMDIR does not list (a viewer program, autorun files) are left alone, and a record
  whose file is missing is reported as failed;
- a **ZIP file**: each member is read as a stream straight into the store's own
  ``.incoming`` folder (small members in memory), never extracted by its name anywhere. A
  member with an unsafe name (absolute, ``..``, a drive letter), a symbolic link, an
  encrypted one, one that claims more than :data:`MAX_MEMBER_SIZE` or compresses more than
  :data:`MAX_RATIO` to 1 (a zip bomb) is refused and reported; so is a whole ZIP whose
  members add up to more than the free space of the store's disk.

Each instance is read and checked as a received instance would be (the data set walked to
its end, UIDs validated) and written with the store's atomic, duplicate- and conflict-aware
write: an instance already stored with the same bytes counts as "already stored"; one with
the same SOP Instance UID but other bytes is set aside in ``.conflicts`` (the stored version
is kept) and counted as such. Files that are not DICOM Part-10 (no ``DICM`` after the
preamble) are counted and skipped; a DICOM file that cannot be stored (truncated, unusable
UIDs, unreadable, disk full) counts as failed, with its reason in :attr:`ImportReport.failures`.
Files named ``DICOMDIR`` (or ``DICOMDIR.BAK``...) met in a folder or ZIP are the media's index,
not instances: they are not counted.

Progress goes to an optional callback (called on the importing thread after each file) and a
:class:`~workstation.cancel.CancelToken` stops the import between two files. File names may
hold patient names: they appear in the report (for the user) and in DEBUG logs only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import stat
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from workstation import audit
from workstation.errors import InvalidInput, StoreError

if TYPE_CHECKING:
    from workstation.cancel import CancelToken
    from workstation.store.local_store import LocalStore
    from workstation.store.records import StoredInstance

log = logging.getLogger(__name__)

#: Largest ZIP member imported (a multi-frame instance may be big; nothing real is larger).
MAX_MEMBER_SIZE = 4 << 30
#: Highest compression ratio accepted for a ZIP member larger than :data:`_RATIO_FLOOR`;
#: deflate cannot exceed about 1032:1, so a higher claim is a crafted file.
MAX_RATIO = 1100
_RATIO_FLOOR = 1 << 20
#: Most members a ZIP may have.
MAX_MEMBERS = 1_000_000
#: Members up to this size are read into memory; larger ones are streamed to a temporary file.
_IN_MEMORY = 8 << 20
#: Threads that read, check and write files: their system calls overlap, and the header
#: walks share the interpreter.
WORKERS = 4
#: Files handed to the workers ahead of the one counted next (bounds memory: each <= 8 MB).
_WINDOW = 32
#: How many failures the report lists by name (all are counted).
MAX_LISTED_FAILURES = 200
_DICOMDIR = "DICOMDIR"
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a FIFO must not wait for a writer
_NOT_PART10 = "not a DICOM Part-10 file"


@dataclass(frozen=True)
class ImportReport:
    """What an import did. ``duplicates``: instances already stored with the same bytes;
    ``conflicts``: the same SOP Instance UID with other bytes, set aside in ``.conflicts``;
    ``skipped``: files that are not DICOM Part-10; ``failed``: DICOM files (or ZIP members,
    DICOMDIR records) that could not be stored, the first :data:`MAX_LISTED_FAILURES` of them
    named with their reason in ``failures``."""

    stored: int = 0
    duplicates: int = 0
    skipped: int = 0  # not DICOM Part-10
    failed: int = 0  # could not be read, checked or written
    conflicts: int = 0
    failures: tuple[tuple[str, str], ...] = ()
    cancelled: bool = False

    @property
    def total(self) -> int:
        return self.stored + self.duplicates + self.skipped + self.failed + self.conflicts

    def summary(self) -> str:
        """One line: ``imported 12, already stored 3, skipped 2 non-DICOM, failed 1``."""
        text = (
            f"imported {self.stored}, already stored {self.duplicates}, "
            f"skipped {self.skipped} non-DICOM, failed {self.failed}"
        )
        if self.conflicts:
            text += (
                f", {self.conflicts} differing cop{'ies' if self.conflicts != 1 else 'y'} of "
                "stored instances set aside"
            )
        if self.cancelled:
            text += " (cancelled)"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "already_stored": self.duplicates,
            "conflicts": self.conflicts,
            "skipped_non_dicom": self.skipped,
            "failed": self.failed,
            "failures": [{"file": name, "reason": reason} for name, reason in self.failures],
            "cancelled": self.cancelled,
        }


@dataclass(frozen=True)
class ImportProgress:
    """Sent after each file: ``done`` of ``total`` files looked at, and the counts so far."""

    done: int
    total: int
    report: ImportReport

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ImportProgressCallback = Callable[[ImportProgress], None]


@dataclass
class _Source:
    """One file to import: a path, or a ZIP member; ``problem`` when refused up front."""

    name: str
    path: str | Path | None = None
    archive: zipfile.ZipFile | None = None
    member: zipfile.ZipInfo | None = None
    problem: str | None = None


@dataclass
class _Counts:
    stored: int = 0
    duplicates: int = 0
    skipped: int = 0
    failed: int = 0
    conflicts: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    studies: dict[str, None] = field(default_factory=dict)  # for the audit trail

    def fail(self, name: str, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_LISTED_FAILURES:
            self.failures.append((name, reason))

    def report(self, cancelled: bool = False) -> ImportReport:
        return ImportReport(
            stored=self.stored,
            duplicates=self.duplicates,
            skipped=self.skipped,
            failed=self.failed,
            conflicts=self.conflicts,
            failures=tuple(self.failures),
            cancelled=cancelled,
        )


def import_path(
    store: LocalStore,
    path: str | os.PathLike[str],
    *,
    progress: ImportProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ImportReport:
    """Import one file, folder, DICOMDIR or ZIP file (see :func:`import_paths`)."""
    return import_paths(store, [path], progress=progress, cancel=cancel)


def import_paths(
    store: LocalStore,
    paths: Iterable[str | os.PathLike[str]],
    *,
    progress: ImportProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ImportReport:
    """Copy files, folders (recursively), DICOMDIR media and ZIP files into ``store``.

    Every path is checked before anything is imported: :class:`InvalidInput` when one does
    not exist, lies inside the store, or is a DICOMDIR or ZIP file that cannot be read at all.
    Returns the counts (see :class:`ImportReport`); ``progress`` is called after each file.
    """
    sources: list[_Source] = []
    paths = list(paths)
    with contextlib.ExitStack() as stack:
        for path in paths:
            sources.extend(_plan(store, Path(path), stack))
        counts = _Counts()
        cancelled = _import_all(store, sources, counts, progress, cancel)
    store.flush()  # every file durable and indexed before the import says so
    report = counts.report(cancelled)
    log.info("import: %s", report.summary())  # counts only: names may hold patient data
    audit.record_import(store, report, tuple(counts.studies), [str(p) for p in paths])
    return report


# -- planning -----------------------------------------------------------------------------------


def _plan(store: LocalStore, path: Path, stack: contextlib.ExitStack) -> list[_Source]:
    source = path.expanduser().absolute()
    if not source.exists():
        raise InvalidInput(f"cannot import {source}: no such file or folder")
    if source.resolve().is_relative_to(store.root.resolve()):
        raise InvalidInput(f"cannot import {source}: it is inside the store itself")
    if source.is_dir():
        dicomdir = _find_name(source, _DICOMDIR)
        if dicomdir is not None and dicomdir.is_file():
            return _plan_dicomdir(dicomdir)
        return [_Source(name, path=full) for name, full in _walk(source)]
    if source.name.upper().split(";")[0] == _DICOMDIR:
        return _plan_dicomdir(source)
    if _is_zip(source):
        return _plan_zip(store, source, stack)
    return [_Source(source.name, path=source)]


def _walk(source: Path) -> Iterator[tuple[str, str]]:
    """(name relative to ``source``, full path) of every file below it, in name order;
    plain strings, no Path per file (a folder may hold a million)."""
    top = os.fspath(source)
    cut = len(top if top.endswith(os.sep) else top + os.sep)
    for folder, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            if not _is_index(name):
                full = os.path.join(folder, name)
                yield full[cut:], full


def _is_index(name: str) -> bool:
    """A DICOMDIR, or a copy of one (``DICOMDIR.BAK`` left by DCMTK): the media's index."""
    return name.upper().startswith(_DICOMDIR)


def _find_name(folder: Path, name: str) -> Path | None:
    """``folder/name`` matched without regard to case or an ISO 9660 ``;1`` version."""
    exact = folder / name
    if exact.exists():
        return exact
    wanted = name.upper()
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.upper().split(";")[0] == wanted:
                    return Path(entry.path)
    except OSError:
        return None
    return None


def _plan_dicomdir(dicomdir: Path) -> list[_Source]:
    """The files a DICOMDIR's directory records reference, in record order."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(dicomdir)
        records = ds.DirectoryRecordSequence
    except (InvalidDicomError, AttributeError, ValueError, EOFError, OSError) as exc:
        raise InvalidInput(
            f"cannot import {dicomdir}: it is not a readable DICOMDIR ({exc}); import its folder "
            "without the DICOMDIR, or the files one by one"
        ) from None
    root = dicomdir.parent
    sources: list[_Source] = []
    seen: set[str] = set()
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else [str(p) for p in file_id]
        name = "/".join(parts)
        if name.upper() in seen:
            continue
        seen.add(name.upper())
        if any(p in ("", ".", "..") or "/" in p or "\\" in p for p in parts):
            sources.append(_Source(name, problem="the DICOMDIR names an unsafe file ID"))
            continue
        found = _resolve_file_id(root, parts)
        if found is None:
            sources.append(
                _Source(name, problem="listed in the DICOMDIR but missing from the medium")
            )
        else:
            sources.append(_Source(name, path=found))
    return sources


def _resolve_file_id(root: Path, parts: Sequence[str]) -> Path | None:
    current = root
    for part in parts:
        found = _find_name(current, part)
        if found is None:
            return None
        current = found
    return current if current.is_file() else None


def _is_zip(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            head = file.read(132)
    except OSError:
        return False
    if head[128:132] == b"DICM":  # a DICOM file, even one whose preamble looks like a ZIP
        return False
    return head[:4] in (b"PK\x03\x04", b"PK\x05\x06") and zipfile.is_zipfile(path)


def _plan_zip(store: LocalStore, path: Path, stack: contextlib.ExitStack) -> list[_Source]:
    try:
        archive = stack.enter_context(zipfile.ZipFile(path))
        members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InvalidInput(f"cannot import {path}: the ZIP file cannot be read ({exc})") from None
    if len(members) > MAX_MEMBERS:
        raise InvalidInput(
            f"cannot import {path}: it has {len(members)} members, more than {MAX_MEMBERS}"
        )
    sources: list[_Source] = []
    planned = 0
    for info in members:
        if info.is_dir():
            continue
        name = info.filename
        if _is_index(PurePosixPath(name.replace("\\", "/")).name):
            continue
        problem = _member_problem(info)
        if problem is None:
            planned += info.file_size
        sources.append(_Source(name, archive=archive, member=info, problem=problem))
    free = shutil.disk_usage(store.root).free
    if planned > free:
        raise InvalidInput(
            f"cannot import {path}: its members unpack to {planned / 1e9:.1f} GB, more than the "
            f"{free / 1e9:.1f} GB free where the store is"
        )
    return sources


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a ZIP member is refused, or None."""
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if (
        name.startswith(("/", "\\"))
        or (len(name) > 1 and name[1] == ":")
        or ".." in parts
        or "\x00" in name
    ):
        return "refused: the member's name would lead outside the folder it unpacks to"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "refused: the member is a symbolic link"
    if info.flag_bits & 0x1:
        return "refused: the member is encrypted"
    if info.file_size > MAX_MEMBER_SIZE:
        return f"refused: the member claims {info.file_size} bytes, more than {MAX_MEMBER_SIZE}"
    if info.file_size > _RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        return "refused: the member compresses too well to be real (a zip bomb)"
    return None


# -- importing ----------------------------------------------------------------------------------


def _import_all(
    store: LocalStore,
    sources: list[_Source],
    counts: _Counts,
    progress: ImportProgressCallback | None,
    cancel: CancelToken | None,
) -> bool:
    """Import ``sources``, files on :data:`WORKERS` threads (ZIP members on this one, in
    order); count outcomes and call ``progress`` on this thread. True when cancelled."""
    total = len(sources)
    done = 0
    last = 0.0
    window: deque[tuple[_Source, Future[StoredInstance]]] = deque()

    def collect() -> None:
        nonlocal done, last
        source, future = window.popleft()
        _count_outcome(source, future, counts)
        done += 1
        now = time.monotonic()
        if progress is not None and (now - last >= 0.05 or done == total):
            last = now
            progress(ImportProgress(done, total, counts.report()))

    with ThreadPoolExecutor(WORKERS, thread_name_prefix="import") as pool:
        for source in sources:
            if cancel is not None and cancel.cancelled:
                break
            future: Future[StoredInstance]
            if source.problem is not None:  # refused up front: counted by its problem
                future = Future()
            elif source.path is not None:
                future = pool.submit(_store_path, store, source.path)
            else:
                future = Future()
                try:
                    future.set_result(_store_member(store, source))
                except Exception as exc:
                    future.set_exception(exc)
            window.append((source, future))
            if len(window) >= _WINDOW:
                collect()
        while window:
            collect()
    return cancel is not None and cancel.cancelled and done < total


def _store_path(store: LocalStore, path: str | Path) -> StoredInstance:
    """One file (on a worker thread): a small one read in one call and checked from memory,
    a large one mapped; written without its own fsync (see :func:`import_paths`)."""
    fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # a pipe or a device: never read
            raise InvalidInput(f"{_NOT_PART10}: not a regular file")
        data = os.read(fd, info.st_size) if info.st_size <= _IN_MEMORY else None
    finally:
        os.close(fd)
    if data is None or len(data) != info.st_size:  # large, or changing under us
        return store.store_file(path, move=False, durable=False)
    if data[128:132] != b"DICM":
        raise InvalidInput(f"{_NOT_PART10}: no 'DICM' after a 128-byte preamble")
    return store.store_bytes(data, durable=False)


def _count_outcome(source: _Source, future: Future[StoredInstance], counts: _Counts) -> None:
    if source.problem is not None:
        counts.fail(source.name, source.problem)
        log.debug("not importing %s: %s", source.name, source.problem)
        return
    try:
        stored = future.result()
    except InvalidInput as exc:
        if str(exc).startswith(_NOT_PART10):
            log.debug("skipping %s: %s", source.name, exc)
            counts.skipped += 1
        else:
            log.debug("cannot import %s: %s", source.name, exc)
            counts.fail(source.name, str(exc))
    except (OSError, StoreError, zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
        # The file name may hold patient data: it goes to DEBUG only.
        log.warning("cannot import a file: %s", _reason(exc))
        log.debug("cannot import %s: %s", source.name, exc)
        counts.fail(source.name, _reason(exc) if isinstance(exc, StoreError) else str(exc))
    else:
        _count(stored, counts)


def _count(stored: StoredInstance, counts: _Counts) -> None:
    counts.studies[stored.study_uid] = None
    if stored.conflict is not None:
        counts.conflicts += 1
    elif stored.duplicate:
        counts.duplicates += 1
    else:
        counts.stored += 1


def _store_member(store: LocalStore, source: _Source) -> StoredInstance:
    archive, info = source.archive, source.member
    assert archive is not None and info is not None
    with archive.open(info) as member:
        if info.file_size <= _IN_MEMORY:
            data = member.read(_IN_MEMORY + 1)
            if len(data) > _IN_MEMORY:  # zipfile stops at the declared size; be sure anyway
                raise InvalidInput("refused: the member is larger than it claims")
            if data[128:132] != b"DICM":
                raise InvalidInput(f"{_NOT_PART10}: no 'DICM' after a 128-byte preamble")
            return store.store_bytes(data, durable=False)
        temp = store.temp_path()
        try:
            written = 0
            with temp.open("wb") as out:
                while chunk := member.read(1 << 20):
                    written += len(chunk)
                    if written > info.file_size:
                        raise InvalidInput("refused: the member is larger than it claims")
                    out.write(chunk)
            return store.store_file(temp, move=True, durable=False)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return type(cause).__name__ if cause is not None else str(exc)
