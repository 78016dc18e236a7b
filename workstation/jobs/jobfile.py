"""The SQLite file that keeps the queue's jobs across restarts (WAL, one row a job).

Schema version 2 added the send jobs (columns ``kind`` and ``details``); version 3 the last
attempt's counters (``progress``, ``send_progress``: instances, bytes, seconds), so a finished
job shows the same Images, Progress and Speed after a restart. An older file is upgraded in
place when it is opened (its rows take the new columns' defaults: retrieves, no counters).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from workstation.dimse.outcome import RetrieveProgress
from workstation.dimse.send import SendProgress
from workstation.errors import WorkstationError
from workstation.jobs.model import JobKind, JobState, RetrieveJob
from workstation.nodes import RemoteNode
from workstation.query import Level

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3

_P = TypeVar("_P", RetrieveProgress, SendProgress)

_COLUMNS = [
    "node",
    "level",
    "study_uid",
    "series_uids",
    "label",
    "expected",
    "state",
    "message",
    "missing",
    "created",
    "started",
    "finished",
    "attempts",
    "kind",
    "details",
    "progress",
    "send_progress",
]
#: Columns added after version 1, with their definitions (ALTER TABLE ... ADD COLUMN).
_ADDED = {
    "kind": "kind TEXT NOT NULL DEFAULT 'retrieve'",  # retrieve or send
    "details": "details TEXT NOT NULL DEFAULT '[]'",  # JSON [[SOP Instance UID, why], ...]
    "progress": "progress TEXT",  # JSON RetrieveProgress of the last attempt, or NULL
    "send_progress": "send_progress TEXT",  # JSON SendProgress of the last attempt, or NULL
}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,         -- the RemoteNode as JSON
    level TEXT NOT NULL,        -- STUDY or SERIES
    study_uid TEXT NOT NULL,
    series_uids TEXT NOT NULL,  -- JSON list
    label TEXT NOT NULL,
    expected INTEGER,
    state TEXT NOT NULL,
    message TEXT NOT NULL,
    missing TEXT NOT NULL,      -- JSON list of SOP Instance UIDs
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'retrieve',
    details TEXT NOT NULL DEFAULT '[]',
    progress TEXT,
    send_progress TEXT
)
"""


def _upgrade(conn: sqlite3.Connection) -> None:
    """Add the columns a file of an older version lacks (its rows take their defaults)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
    for name, definition in _ADDED.items():
        if name not in present:
            conn.execute(f"ALTER TABLE jobs ADD COLUMN {definition}")


def _node_json(node: RemoteNode) -> str:
    data = dataclasses.asdict(node)
    data["retrieve_method"] = str(node.retrieve_method)
    return json.dumps(data)


def _node_from_json(text: str) -> RemoteNode:
    data = json.loads(text)
    known = {f.name for f in dataclasses.fields(RemoteNode)}
    return RemoteNode(**{k: v for k, v in data.items() if k in known})


def _counters_json(counters: RetrieveProgress | SendProgress | None) -> str | None:
    return None if counters is None else json.dumps(dataclasses.asdict(counters))


def _counters(kind: type[_P], text: str | None) -> _P | None:
    """The counters saved by :func:`_counters_json` (fields it does not know are dropped)."""
    if not text:
        return None
    data = json.loads(text)
    known = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in data.items() if k in known})


class JobFile:
    """The SQLite file of the jobs. Callers serialise access (the queue's lock).

    The file is locked for this process while it is open (``locking_mode = EXCLUSIVE``), so
    that two programs never run the same jobs; the second one keeps its jobs in memory only
    (:attr:`persistent` is False) and logs why. ``path=None`` keeps them in memory by choice.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path is None else Path(path)
        self._conn: sqlite3.Connection | None = None
        self._ids = itertools.count(1)
        if self.path is None:
            return
        conn = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 1000")
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
            _upgrade(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")  # a write: takes the lock
            self._conn = conn
        except (OSError, sqlite3.Error) as exc:
            if conn is not None:
                conn.close()
            busy = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
            why = "another program has it open" if busy else str(exc)
            log.error("cannot open the job file %s: %s; jobs will not be kept", self.path, why)

    @property
    def persistent(self) -> bool:
        """True while the jobs are written to the file."""
        return self._conn is not None

    def _fail(self, exc: Exception) -> None:
        log.error("cannot write the job file %s: %s; jobs will not be kept", self.path, exc)
        self.close()

    def load(self) -> list[RetrieveJob]:
        if self._conn is None:
            return []
        jobs: list[RetrieveJob] = []
        rows = self._conn.execute(f"SELECT id, {', '.join(_COLUMNS)} FROM jobs ORDER BY id")
        for row in rows:
            try:
                jobs.append(self._job(row))
            except (ValueError, TypeError, KeyError, WorkstationError) as exc:
                log.warning("skipping unreadable job %s in %s: %s", row[0], self.path, exc)
        if jobs:
            self._ids = itertools.count(jobs[-1].id + 1)
        return jobs

    @staticmethod
    def _job(row: tuple[Any, ...]) -> RetrieveJob:
        values = dict(zip(["id", *_COLUMNS], row, strict=True))
        return RetrieveJob(
            id=int(values["id"]),
            node=_node_from_json(values["node"]),
            level=Level(values["level"]),
            study_uid=str(values["study_uid"]),
            series_uids=tuple(json.loads(values["series_uids"] or "[]")),
            label=str(values["label"] or ""),
            expected=None if values["expected"] is None else int(values["expected"]),
            state=JobState(values["state"]),
            message=str(values["message"] or ""),
            missing=tuple(json.loads(values["missing"] or "[]")),
            created=float(values["created"] or 0.0),
            started=None if values["started"] is None else float(values["started"]),
            finished=None if values["finished"] is None else float(values["finished"]),
            attempts=int(values["attempts"] or 0),
            kind=JobKind(values["kind"] or JobKind.RETRIEVE),
            details=tuple((str(u), str(w)) for u, w in json.loads(values["details"] or "[]")),
            progress=_counters(RetrieveProgress, values["progress"]),
            send_progress=_counters(SendProgress, values["send_progress"]),
        )

    @staticmethod
    def _values(job: RetrieveJob) -> list[Any]:
        return [
            _node_json(job.node), str(job.level), job.study_uid, json.dumps(job.series_uids),
            job.label, job.expected, str(job.state), job.message, json.dumps(job.missing),
            job.created, job.started, job.finished, job.attempts,
            str(job.kind), json.dumps(job.details),
            _counters_json(job.progress), _counters_json(job.send_progress),
        ]  # fmt: skip

    def insert(self, job: RetrieveJob) -> int:
        """Add a new job; returns its id (from the file, else a counter of this session)."""
        if self._conn is not None:
            marks = ", ".join("?" * len(_COLUMNS))
            try:
                cursor = self._conn.execute(
                    f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({marks})",
                    self._values(job),
                )
                if cursor.lastrowid is not None:
                    self._ids = itertools.count(cursor.lastrowid + 1)
                    return cursor.lastrowid
            except sqlite3.Error as exc:
                self._fail(exc)
        return next(self._ids)

    def save(self, job: RetrieveJob) -> None:
        if self._conn is None:
            return
        assignments = ", ".join(f"{c} = ?" for c in _COLUMNS)
        try:
            self._conn.execute(
                f"UPDATE jobs SET {assignments} WHERE id = ?", [*self._values(job), job.id]
            )
        except sqlite3.Error as exc:
            self._fail(exc)

    def delete(self, ids: Iterable[int]) -> None:
        if self._conn is None:
            return
        try:
            self._conn.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in ids])
        except sqlite3.Error as exc:
            self._fail(exc)

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.close()
            except sqlite3.Error as exc:
                log.warning("closing the job file %s: %s", self.path, exc)
