"""What the store has in flight, so that a crash costs a check of only that.

The index commits a little after a file becomes visible, and a deletion moves folders away
before it removes their rows; a process killed in between leaves files without rows or rows
without files. :class:`InFlightJournal` writes a line *before* each such step - ``S <path>``
before an instance file is renamed into place, ``D <folder>`` before a study or series folder
is moved to the trash - and forgets the line once the step is over (the row committed, the
deletion finished). Opening the store after a crash then checks exactly the lines left
(:func:`workstation.store.recovery.check_in_flight`) instead of walking every folder.

The lines are plain ``write`` calls, never fsynced: a killed process loses nothing the kernel
has accepted, so the journal is complete after any crash of our process. A power cut or a
crash of the system can lose its tail; the store's open marker records the boot it was written
in (:func:`boot_id`), and a store left open in another boot is checked in full instead.

The journal is a series of segment files ``inflight-<n>.log`` in the store's hidden folder.
A segment that holds no open line is truncated (the current one) or deleted (an older one), so
it stays small however long the store runs; a line whose step failed (a row that could not be
committed, a deletion that could not be undone) stays until the next start-up checks it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "inflight-"
SUFFIX = ".log"
#: Lines per segment before the next one starts (its own lines then close it when all done).
SEGMENT_LINES = 1024
_SEGMENT = re.compile(rf"{re.escape(PREFIX)}(\d+){re.escape(SUFFIX)}")
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_O_BINARY = getattr(os, "O_BINARY", 0)


@dataclass
class InFlight:
    """The lines left by the previous run: instance files, and folders being deleted."""

    stores: dict[str, None] = field(default_factory=dict)
    deletions: dict[str, None] = field(default_factory=dict)
    #: How many segment files there were (0: the previous run left no journal at all).
    segments: int = 0

    def __len__(self) -> int:
        return len(self.stores) + len(self.deletions)


class InFlightJournal:
    """The journal of the store whose hidden folder is ``meta``. Thread-safe.

    Call :meth:`read` before :meth:`start`; each ``add_*`` returns a token for :meth:`done`.
    """

    def __init__(self, meta: Path, *, segment_lines: int = SEGMENT_LINES) -> None:
        self.meta = meta
        self._segment_lines = max(1, segment_lines)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._current = 0
        self._lines = 0
        self._open: dict[int, int] = {}  # segment -> lines not done yet
        self._published: dict[str, deque[int | None]] = {}  # path -> tokens, publish order

    def _segments(self) -> list[tuple[int, Path]]:
        found = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self.meta) as entries:
            for entry in entries:
                match = _SEGMENT.fullmatch(entry.name)
                if match:
                    found.append((int(match.group(1)), Path(entry.path)))
        return sorted(found)

    def read(self) -> InFlight:
        """The lines every segment holds (a torn or unknown line is ignored)."""
        result = InFlight()
        for _, path in self._segments():
            result.segments += 1
            try:
                text = path.read_bytes().decode("ascii", "replace")
            except OSError as exc:
                log.warning("cannot read the store's journal %s: %s", path.name, exc)
                continue
            for line in text.split("\n")[:-1]:  # the last piece has no newline: torn or empty
                kind, _, rel = line.partition(" ")
                if kind == "S" and rel:
                    result.stores[rel] = None
                elif kind == "D" and rel:
                    result.deletions[rel] = None
        return result

    def start(self) -> None:
        """Forget the previous run's segments (checked by now) and open a fresh one."""
        with self._lock:
            old = self._segments()
            self._current = (old[-1][0] + 1) if old else 1
            self._open_segment()
            for _, path in old:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def add_store(self, rel: str) -> int:
        """Before an instance file is renamed to ``rel`` (relative, POSIX)."""
        return self._add(f"S {rel}\n")

    def add_delete(self, rel: str) -> int:
        """Before a study or series folder ``rel`` is moved to the trash."""
        return self._add(f"D {rel}\n")

    def done(self, token: int) -> None:
        """The step of a line is over: its segment may go once all its lines are."""
        with self._lock:
            left = self._open.get(token, 0) - 1
            if left > 0:
                self._open[token] = left
                return
            self._open.pop(token, None)
            if token != self._current:
                _unlink(self.meta / _name(token))
            elif self._fd is not None and self._lines:
                os.ftruncate(self._fd, 0)
                self._lines = 0

    def published(self, rel: str, token: int | None) -> None:
        """A record for ``rel`` went to the index (``token``: its line, None for a duplicate
        of a stored file); records of one path commit in the order they were published."""
        with self._lock:
            self._published.setdefault(rel, deque()).append(token)

    def committed(self, rel: str, *, ok: bool) -> None:
        """The index committed (or, ``ok`` False, failed) the oldest record for ``rel``; a
        failed one's line stays for the next start-up to check."""
        with self._lock:
            tokens = self._published.get(rel)
            if not tokens:
                return
            token = tokens.popleft()
            if not tokens:
                del self._published[rel]
        if token is not None and ok:
            self.done(token)

    def close(self) -> None:
        """Stop writing; remove the segments when every line is done, else leave them for
        the next start-up to check."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if not self._open:
                for _, path in self._segments():
                    _unlink(path)

    @property
    def open_lines(self) -> int:
        """Lines whose step is not over yet."""
        with self._lock:
            return sum(self._open.values())

    def _add(self, line: str) -> int:
        data = line.encode("ascii")
        with self._lock:
            if self._fd is None:
                raise OSError("the store's journal is closed")
            if self._lines >= self._segment_lines:
                os.close(self._fd)
                self._fd = None
                if not self._open.get(self._current):
                    _unlink(self.meta / _name(self._current))
                self._current += 1
                self._open_segment()
            assert self._fd is not None
            if os.write(self._fd, data) != len(data):  # a small append is whole, or fails
                raise OSError("short write to the store's journal")
            self._lines += 1
            self._open[self._current] = self._open.get(self._current, 0) + 1
            return self._current

    def _open_segment(self) -> None:
        path = self.meta / _name(self._current)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC | _O_BINARY
        self._fd = os.open(path, flags, 0o600)
        self._lines = 0


def boot_id() -> str | None:
    """An identifier of the running boot of the system (Linux), or None where unknown."""
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def _name(segment: int) -> str:
    return f"{PREFIX}{segment}{SUFFIX}"


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
