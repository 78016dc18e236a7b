"""Atomic, durable file writes into the store.

A file appears under its final name only when it is complete: the data goes to a temporary
file in ``<root>/.incoming/`` (same file system, never a ``.dcm`` name, never inside the study
tree), is fsynced, and is renamed into place with :func:`os.replace`; then the directory is
fsynced so the rename survives a power cut. A crash leaves at worst a ``*.part`` file in
``.incoming``, which :func:`clean_incoming` removes at start-up.

An instance whose final file already holds the same bytes is a duplicate: nothing is written.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from workstation.store.layout import resolve_in_root

log = logging.getLogger(__name__)

INCOMING_DIR = ".incoming"
TEMP_SUFFIX = ".part"
_CHUNK = 1 << 20
_O_BINARY = getattr(os, "O_BINARY", 0)

Source = bytes | str | os.PathLike[str]


class ContentConflict(Exception):
    """The final path holds different bytes, and the write was asked not to replace them."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} already holds a different version")
        self.path = path


@dataclass(frozen=True)
class WriteResult:
    """Where the instance now is, its size in bytes, and whether identical bytes were there."""

    path: Path
    size: int
    duplicate: bool


def write_atomic(
    root: str | os.PathLike[str],
    relpath: PurePosixPath | str,
    data: Source,
    *,
    move: bool = False,
    fsync: bool = True,
    lock: AbstractContextManager[object] | None = None,
    on_publish: Callable[[WriteResult], None] | None = None,
    keep_existing: bool = False,
    trusted_dirs: set[str] | None = None,
    before_publish: Callable[[], None] | None = None,
) -> WriteResult:
    """Put ``data`` (bytes, or the path of a file) at ``root/relpath`` atomically.

    ``trusted_dirs``: folders (relative, POSIX) known to exist inside ``root`` with no link
    leading out; for those the path is not resolved again and the folders not re-created
    (each check costs an ``lstat`` per path component). The folder of ``relpath`` is added
    once checked. The caller forgets a folder when it deletes it.

    With ``keep_existing=True`` a final file holding different bytes is never replaced:
    :class:`ContentConflict` is raised instead (the source is left alone).

    With ``move=True`` a source file is consumed: renamed into the store when it is on the same
    file system, copied then deleted otherwise, deleted when it is a duplicate. Without it the
    source file is copied and left alone.

    ``lock`` is held, and ``before_publish`` (which may raise :class:`ContentConflict`) and
    ``on_publish`` called, around the moment the file becomes visible (or is confirmed to be a
    duplicate): :class:`~workstation.store.local_store.LocalStore` uses
    them to keep publishing and indexing in step with study deletion.

    Raises :class:`OSError` from the file system; the final path is then untouched (or holds
    the previous version) and no temporary file is left behind.
    """
    root = root if isinstance(root, Path) else Path(root)
    folder = str(relpath).rpartition("/")[0] or "."  # PurePosixPath(relpath).parent, cheaper
    trusted = trusted_dirs is not None and folder in trusted_dirs
    final = root / relpath if trusted else resolve_in_root(root, relpath)
    size = len(data) if isinstance(data, bytes) else os.stat(data).st_size
    guard: AbstractContextManager[object] = lock if lock is not None else contextlib.nullcontext()

    existing = _size_of(final)
    if existing is not None:
        if existing == size and _same_content(final, data, size):
            with guard:
                # A study deletion may have taken the file away since the comparison.
                if _has_size(final, size):
                    if fsync:  # it may have been published without fsync a moment ago
                        _fsync_file(final)
                        _fsync_dirs([final.parent])
                    result = WriteResult(final, size, duplicate=True)
                    if on_publish is not None:
                        on_publish(result)
                    if move and not isinstance(data, bytes):
                        _unlink_quietly(Path(data))
                    return result
        if keep_existing and final.exists():
            raise ContentConflict(final)

    temp = _stage(root, data, move=move, fsync=fsync)
    try:
        with guard:
            if keep_existing and final.exists():  # another thread published meanwhile
                if not (_has_size(final, size) and _same_content(final, temp, size)):
                    raise ContentConflict(final)
                result = WriteResult(final, size, duplicate=True)
                if on_publish is not None:
                    on_publish(result)
                _unlink_quietly(temp)
                return result
            if before_publish is not None:
                before_publish()
            trusted = trusted and folder in (trusted_dirs or ())  # a deletion may have cleared it
            created = [] if trusted else _makedirs(root, final.parent)
            try:
                os.replace(temp, final)
            except FileNotFoundError:
                if not trusted or not os.path.exists(temp):
                    raise
                # The folder went away behind our back (a file manager): check it anew.
                assert trusted_dirs is not None
                trusted_dirs.discard(folder)
                final = resolve_in_root(root, relpath)
                created = _makedirs(root, final.parent)
                os.replace(temp, final)
            if trusted_dirs is not None:
                trusted_dirs.add(folder)  # under the lock a deletion also takes
            result = WriteResult(final, size, duplicate=False)
            if on_publish is not None:
                on_publish(result)
    except ContentConflict:
        if move and not isinstance(data, bytes):
            os.replace(temp, data)  # give the source back for the caller to set aside
        else:
            _unlink_quietly(temp)
        raise
    except BaseException:
        _unlink_quietly(temp)
        raise
    if fsync:
        _fsync_dirs([final.parent, *created])
    return result


def clean_incoming(root: str | os.PathLike[str]) -> int:
    """Remove the leftovers of interrupted writes in ``root/.incoming``; return how many.

    Call it once at start-up, before any write: it removes every file there, including the
    temporary files of writes still in progress.
    """
    incoming = Path(root) / INCOMING_DIR
    removed = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(incoming) as entries:
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed += 1
            except OSError as exc:
                log.warning("cannot remove stale temporary file %s: %s", entry.path, exc)
    if removed:
        log.info("removed %d unfinished write(s) from %s", removed, incoming)
    return removed


def temp_path(root: Path) -> Path:
    """A fresh temporary name in ``root/.incoming`` (the folder is created when missing)."""
    incoming = root / INCOMING_DIR
    if not incoming.is_dir():
        incoming.mkdir(mode=0o700, exist_ok=True)
    return incoming / _temp_name()


def _temp_name() -> str:
    return f"{os.urandom(16).hex()}{TEMP_SUFFIX}"


def _stage(root: Path, data: Source, *, move: bool, fsync: bool) -> Path:
    """A complete, fsynced copy of ``data`` in ``.incoming``."""
    if isinstance(data, bytes):
        temp = root / f"{INCOMING_DIR}/{_temp_name()}"
        try:
            _write_new(temp, [memoryview(data)], fsync=fsync)
        except FileNotFoundError:  # .incoming itself is gone: make it, once
            temp = temp_path(root)
            _write_new(temp, [memoryview(data)], fsync=fsync)
        return temp
    temp = temp_path(root)
    source = Path(data)
    if move:
        try:
            os.replace(source, temp)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise
            # Another file system (EXDEV), or a file still open on Windows: copy instead.
            log.debug("cannot rename %s into the store (%s); copying", source, exc)
        else:
            try:
                if fsync:
                    _fsync_file(temp)
            except BaseException:
                _unlink_quietly(temp)
                raise
            return temp
    with open(source, "rb") as src:
        _write_new(temp, _chunks(src), fsync=fsync)
    if move:
        _unlink_quietly(source)
    return temp


def _write_new(path: Path, chunks: Iterator[memoryview] | list[memoryview], *, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
    try:
        try:
            for chunk in chunks:
                view = chunk
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _unlink_quietly(path)
        raise


def _chunks(stream: IO[bytes]) -> Iterator[memoryview]:
    while block := stream.read(_CHUNK):
        yield memoryview(block)


def _same_content(path: Path, data: Source, size: int) -> bool:
    """True when ``path`` exists and holds exactly ``data`` (compared byte for byte)."""
    if not _has_size(path, size):
        return False
    try:
        with open(path, "rb") as existing:
            if isinstance(data, bytes):
                view = memoryview(data)
                offset = 0
                while block := existing.read(_CHUNK):
                    if view[offset : offset + len(block)] != block:
                        return False
                    offset += len(block)
                return offset == size
            with open(data, "rb") as other:
                while True:
                    a, b = existing.read(_CHUNK), other.read(_CHUNK)
                    if a != b:
                        return False
                    if not a:
                        return True
    except FileNotFoundError:
        return False


def sync_filesystem(path: Path) -> None:
    """Make every write to the file system holding ``path`` durable: ``syncfs`` on Linux
    (one call for any number of files), ``sync`` elsewhere on POSIX."""
    if os.name != "posix":
        return
    if _SYNCFS is not None:
        fd = os.open(path, os.O_RDONLY)
        try:
            if _SYNCFS(fd) != 0:
                error = ctypes.get_errno()
                raise OSError(error, os.strerror(error))
        finally:
            os.close(fd)
        return
    os.sync()


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return function


_SYNCFS = _load_syncfs() if sys.platform.startswith("linux") else None


def _size_of(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def _has_size(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def _makedirs(root: Path, directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; return the parents whose entries changed."""
    missing: list[Path] = []
    current = directory
    while current != root and not current.is_dir():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    return [m.parent for m in missing]


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR | _O_BINARY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dirs(directories: list[Path]) -> None:
    """Make renames and new entries durable; POSIX only (Windows cannot open directories)."""
    if os.name != "posix":
        return
    for directory in dict.fromkeys(directories):
        try:
            fd = os.open(directory, os.O_RDONLY)
        except FileNotFoundError:  # a deletion took the directory away meanwhile
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
