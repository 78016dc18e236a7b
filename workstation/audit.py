"""The audit trail: who retrieved, sent, exported, imported, deleted or received which study.

Every retrieve (C-MOVE, C-GET), send (C-STORE SCU), export, import, deletion and push received
by our storage SCP is one :class:`AuditEvent`: when (UTC), who (the OS user,
``getpass.getuser()``), what (the action, the node, our and the peer's AE titles and the peer's
host, the Study Instance UIDs and the patients they belong to, how many instances went and how
many failed) and how it ended (``done``, ``partial``, ``failed``, ``cancelled``, with the
operation's own message).

Where. ``<store>/.workstation/audit.sqlite``, a database of its own beside the store's index
rather than a table in it, because:

- the index is a cache of the files (the start-up check rebuilds it, deleting a study removes
  its rows); the audit is a record that must outlive both, and never shares a transaction or
  a cascade with them;
- its writes stay off the index writer thread and its batches (an audit row is written once
  per operation, on the thread that ran it, and never waits for instance rows);
- it can be read (``workstation audit``) while the window holds the store's lock, and a send
  of loose files can be recorded without opening the store at all.

The file is private to the user (0600, created so before SQLite opens it; SQLite gives its WAL
files the same mode) in the store's 0700 meta folder. Recording never fails the operation it
records: a write that fails is one warning in the log and the operation goes on.

Patient identity (ID and name) is stored here since that is the point of an audit, but never
logged: this module logs at DEBUG and without patient data.

Export as DICOM audit messages (PS3.15 Annex A.5): :mod:`workstation.audit_xml`.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workstation.store.local_store import LocalStore

log = logging.getLogger(__name__)

AUDIT_NAME = "audit.sqlite"
SCHEMA_VERSION = 1

#: The actions recorded.
ACTIONS = ("retrieve", "send", "export", "import", "delete", "receive")
#: How an action ended.
OUTCOMES = ("done", "partial", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    node TEXT NOT NULL DEFAULT '',
    local_aet TEXT NOT NULL DEFAULT '',
    peer_aet TEXT NOT NULL DEFAULT '',
    peer_host TEXT NOT NULL DEFAULT '',
    studies TEXT NOT NULL DEFAULT '',
    patients TEXT NOT NULL DEFAULT '[]',
    instances INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_time ON events (time);
CREATE INDEX events_action ON events (action, time)
"""


def _now() -> datetime:
    return datetime.now(UTC)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without USER): the uid
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


@dataclass(frozen=True)
class AuditEvent:
    """One audited operation. ``patients`` are (Patient ID, Patient's Name) pairs; ``detail``
    says what else identifies it (``move``/``get``, the export destination, the import path)."""

    action: str
    outcome: str
    node: str = ""
    local_aet: str = ""
    peer_aet: str = ""
    peer_host: str = ""
    study_uids: tuple[str, ...] = ()
    patients: tuple[tuple[str, str], ...] = ()
    instances: int = 0
    failed: int = 0
    message: str = ""
    detail: str = ""
    user: str = field(default_factory=_user)
    time: datetime = field(default_factory=_now)
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": iso_utc(self.time),
            "user": self.user,
            "action": self.action,
            "outcome": self.outcome,
            "node": self.node,
            "local_aet": self.local_aet,
            "peer_aet": self.peer_aet,
            "peer_host": self.peer_host,
            "study_uids": list(self.study_uids),
            "patients": [{"id": pid, "name": name} for pid, name in self.patients],
            "instances": self.instances,
            "failed": self.failed,
            "message": self.message,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class AuditFilter:
    """What :meth:`AuditTrail.query` returns: each field set narrows the result.

    ``since``/``until`` bound the time (a ``date`` means from the start of that day / through
    its end, local time); ``text`` matches any column (node, UIDs, patient, message)
    case-insensitively."""

    since: datetime | date | None = None
    until: datetime | date | None = None
    action: str | None = None
    node: str | None = None
    study_uid: str | None = None
    user: str | None = None
    outcome: str | None = None
    text: str | None = None
    limit: int | None = None


def iso_utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _bound(value: datetime | date, *, end: bool) -> str:
    if not isinstance(value, datetime):
        day = datetime.combine(value, time.min).astimezone()  # local midnight
        value = day + timedelta(days=1) if end else day
    return iso_utc(value)


class AuditTrail:
    """The audit database at ``path`` (its folder created 0700, the file 0600). Thread-safe;
    each call opens its own short-lived connection (an audit row is written once per
    operation), so no file handle stays open between operations."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().absolute()
        self._lock = threading.Lock()

    # -- opening -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        folder = self.path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        # The file exists, private, before SQLite opens it (its -wal and -shm copy its mode).
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        if os.name == "posix" and self.path.stat().st_mode & 0o077:
            os.chmod(self.path, 0o600)
        conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"schema version {version} is newer than this program's ({SCHEMA_VERSION}): "
                    "update the workstation"
                )
            if version < SCHEMA_VERSION:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if not conn.execute(
                        "SELECT 1 FROM sqlite_master WHERE name = 'events'"
                    ).fetchone():
                        for statement in _SCHEMA.split(";"):
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
        except BaseException:
            conn.close()
            raise
        return conn

    # -- writing -------------------------------------------------------------------------------

    def record(self, event: AuditEvent) -> AuditEvent | None:
        """Write ``event``; returns it with its ``id``, or None when it could not be written
        (one warning logged; never raises)."""
        try:
            with self._lock, self._connection() as conn:
                cursor = conn.execute(
                    "INSERT INTO events (time, user, action, outcome, node, local_aet, peer_aet,"
                    " peer_host, studies, patients, instances, failed, message, detail)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        iso_utc(event.time),
                        event.user,
                        event.action,
                        event.outcome,
                        event.node,
                        event.local_aet,
                        event.peer_aet,
                        event.peer_host,
                        _join_uids(event.study_uids),
                        json.dumps([list(p) for p in event.patients], ensure_ascii=False),
                        event.instances,
                        event.failed,
                        event.message,
                        event.detail,
                    ),
                )
                row_id = cursor.lastrowid
        except (sqlite3.Error, OSError) as exc:
            log.warning("cannot write to the audit trail %s: %s", self.path, exc)
            return None
        log.debug("audit: %s %s, %d instance(s)", event.action, event.outcome, event.instances)
        return replace(event, id=row_id)

    # -- reading -------------------------------------------------------------------------------

    def query(self, filters: AuditFilter | None = None) -> list[AuditEvent]:
        """The events matching ``filters``, newest first."""
        f = filters or AuditFilter()
        clauses: list[str] = []
        params: list[object] = []
        if f.since is not None:
            clauses.append("time >= ?")
            params.append(_bound(f.since, end=False))
        if f.until is not None:
            clauses.append("time < ?" if not isinstance(f.until, datetime) else "time <= ?")
            params.append(_bound(f.until, end=True))
        for column, value in (
            ("action", f.action),
            ("user", f.user),
            ("outcome", f.outcome),
        ):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if f.node:
            clauses.append("(node = ? OR peer_aet = ? OR peer_host = ?)")
            params += [f.node, f.node, f.node]
        if f.study_uid:
            clauses.append("instr(studies, ?) > 0")
            params.append(f"\n{f.study_uid.strip()}\n")
        if f.text:
            columns = "node || ' ' || peer_aet || ' ' || peer_host || ' ' || user || ' ' || "
            columns += "action || ' ' || outcome || ' ' || studies || ' ' || patients || ' ' || "
            columns += "message || ' ' || detail"
            for word in f.text.split():
                clauses.append(f"instr(lower({columns}), ?) > 0")
                params.append(word.lower())
        sql = "SELECT * FROM events"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY time DESC, id DESC"
        if f.limit:
            sql += f" LIMIT {int(f.limit)}"
        if not self.path.exists():
            return []
        with self._lock, self._connection() as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(sql, params).fetchall()
        return [_event(row) for row in rows]


def _join_uids(uids: Iterable[str]) -> str:
    uids = [u for u in dict.fromkeys(uids) if u]
    return "\n" + "\n".join(uids) + "\n" if uids else ""


def _event(row: sqlite3.Row) -> AuditEvent:
    moment = datetime.strptime(row["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return AuditEvent(
        id=row["id"],
        time=moment,
        user=row["user"],
        action=row["action"],
        outcome=row["outcome"],
        node=row["node"],
        local_aet=row["local_aet"],
        peer_aet=row["peer_aet"],
        peer_host=row["peer_host"],
        study_uids=tuple(u for u in row["studies"].split("\n") if u),
        patients=tuple((str(p[0]), str(p[1])) for p in json.loads(row["patients"] or "[]")),
        instances=row["instances"],
        failed=row["failed"],
        message=row["message"],
        detail=row["detail"],
    )


# -- the trail of a store, and recording from the operations -----------------------------------

_default_folder: Path | None = None
_trails: dict[Path, AuditTrail] = {}
_trails_lock = threading.Lock()


def trail_for(store_root: str | os.PathLike[str]) -> AuditTrail:
    """The audit trail of the store folder ``store_root`` (one object per file in a process);
    opening it needs no store lock."""
    from workstation.store.local_store import META_DIR

    path = Path(store_root).expanduser().absolute() / META_DIR / AUDIT_NAME
    with _trails_lock:
        trail = _trails.get(path)
        if trail is None:
            trail = _trails[path] = AuditTrail(path)
        return trail


def use_store_folder(store_root: str | os.PathLike[str] | None) -> None:
    """Record operations that have no store of their own (a send of loose files) in the audit
    of ``store_root``: the CLI and the window set it to the user's store folder."""
    global _default_folder
    _default_folder = None if store_root is None else Path(store_root).expanduser()


def _trail(store: LocalStore | None) -> AuditTrail | None:
    if store is not None:
        return trail_for(store.root)
    if _default_folder is not None:
        return trail_for(_default_folder)
    return None


def patients_of(store: LocalStore | None, study_uids: Iterable[str]) -> list[tuple[str, str]]:
    """(Patient ID, Patient's Name) of the studies the store's index holds; never raises."""
    if store is None:
        return []
    found: dict[tuple[str, str], None] = {}
    try:
        uids = list(dict.fromkeys(study_uids))[:1000]
        entries = [store.index.study(uid) for uid in uids]
        if any(e is None for e in entries) and store.index.pending:
            store.flush(5.0)  # instances stored a moment ago: their rows are being committed
            entries = [store.index.study(uid) for uid in uids]
        for entry in entries:
            if entry is not None:
                found[(entry.patient_id, entry.patient_name)] = None
    except Exception as exc:  # the audit never fails the operation
        log.warning("audit: cannot look up the patients of a study: %s", type(exc).__name__)
    return list(found)


def record(event: AuditEvent, store: LocalStore | None = None) -> AuditEvent | None:
    """Record ``event`` in ``store``'s audit trail (or the default one, see
    :func:`use_store_folder`), adding the patients of its studies from the store's index when
    the event names none. Never raises; returns the event written, or None."""
    try:
        trail = _trail(store)
        if trail is None:
            return None
        if not event.patients and event.study_uids and store is not None:
            event = replace(event, patients=tuple(patients_of(store, event.study_uids)))
        return trail.record(event)
    except Exception as exc:
        log.warning("cannot write to the audit trail: %s", exc)
        return None


def query(
    filters: AuditFilter | None = None, *, store_root: str | os.PathLike[str] | None = None
) -> list[AuditEvent]:
    """The events of the store folder ``store_root`` (default: the settings' store folder)."""
    if store_root is None:
        from workstation.settings import load

        store_root = load().store_dir
    return trail_for(store_root).query(filters)


# -- hooks: small helpers the operations call ---------------------------------------------------


@dataclass
class Deletion:
    """What a deletion removed: the operation sets ``count`` to the instances it removed."""

    count: int = 0


@contextlib.contextmanager
def deletion(
    store: LocalStore, kind: str, uid: str, study_uids: Sequence[str]
) -> Iterator[Deletion]:
    """Record a deletion of a study or series of ``store``: the patients are looked up before
    the rows go; set ``.count`` on the object yielded to the instances removed."""
    patients = tuple(patients_of(store, study_uids))
    done = Deletion()
    event = AuditEvent(
        action="delete",
        outcome="done",
        study_uids=tuple(study_uids),
        patients=patients,
        detail=f"{kind} {uid}",
    )
    try:
        yield done
    except BaseException as exc:
        record(replace(event, outcome="failed", message=str(exc)), store)
        raise
    record(replace(event, instances=done.count, message=f"deleted {done.count} instance(s)"), store)


def _state(done: int, failed: int, cancelled: bool = False) -> str:
    if cancelled:
        return "cancelled"
    if failed:
        return "partial" if done else "failed"
    return "done"


def record_import(
    store: LocalStore, report: Any, study_uids: Sequence[str], paths: Sequence[str]
) -> None:
    """An import's :class:`~workstation.store.importer.ImportReport`."""
    stored = report.stored + report.duplicates + report.conflicts
    record(
        AuditEvent(
            action="import",
            outcome=_state(stored, report.failed, report.cancelled),
            study_uids=tuple(study_uids),
            instances=stored,
            failed=report.failed,
            message=report.summary(),
            detail=", ".join(paths),
        ),
        store,
    )


def record_export(store: LocalStore, report: Any, study_uids: Sequence[str]) -> None:
    """An export's :class:`~workstation.export.exporter.ExportReport`."""
    record(
        AuditEvent(
            action="export",
            outcome="done",
            study_uids=tuple(study_uids),
            instances=report.instances,
            failed=report.missing,
            message=report.summary(),
            detail=str(report.destination),
        ),
        store,
    )


def record_retrieve(
    store: LocalStore | None, outcome: Any, query: Any, calling_aet: str, destination: str = ""
) -> None:
    """A retrieve's :class:`~workstation.dimse.outcome.RetrieveOutcome` (``query`` names the
    studies when the retrieve listed no instance)."""
    studies = [i.study_uid for i in outcome.instances]
    if not studies and query is not None:
        with contextlib.suppress(Exception):
            studies = [u for u in (query.get("StudyInstanceUID") or "").split("\\") if u]
    node = outcome.node
    record(
        AuditEvent(
            action="retrieve",
            outcome=str(outcome.state),
            node=str(node),
            local_aet=destination or calling_aet,
            peer_aet=node.ae_title,
            peer_host=node.host,
            study_uids=tuple(dict.fromkeys(studies)),
            instances=outcome.received,
            failed=len(outcome.missing) or (outcome.failed or 0),
            message=outcome.message,
            detail=f"C-{outcome.method.upper()}",
        ),
        store,
    )


def record_send(
    store: LocalStore | None,
    node: Any,
    calling_aet: str,
    outcome: Any | None,
    study_uids: Sequence[str],
    patients: Sequence[tuple[str, str]] = (),
    error: BaseException | None = None,
    total: int = 0,
) -> None:
    """A send's :class:`~workstation.dimse.send.SendOutcome`, or the error that stopped it
    before any instance went."""
    if outcome is not None:
        state, sent, failed = str(outcome.state), outcome.sent, len(outcome.failed)
        message = outcome.summary
    else:
        state, sent, failed, message = "failed", 0, total, str(error)
    record(
        AuditEvent(
            action="send",
            outcome=state,
            node=str(node),
            local_aet=calling_aet,
            peer_aet=node.ae_title,
            peer_host=node.host,
            study_uids=tuple(dict.fromkeys(u for u in study_uids if u)),
            patients=tuple(dict.fromkeys(p for p in patients if any(p))),
            instances=sent,
            failed=failed,
            message=message,
        ),
        store,
    )


class PushTally:
    """What one association pushed to our storage SCP (instances, failures, studies), kept
    while it runs: one integer increment or set insertion per instance."""

    __slots__ = ("called", "caller", "failed", "host", "stored", "studies")

    def __init__(self, caller: str, called: str) -> None:
        self.caller = caller
        self.called = called
        self.host = ""
        self.stored = 0
        self.failed = 0
        self.studies: dict[str, None] = {}


def record_push(store: LocalStore, tally: PushTally) -> None:
    """The instances one association pushed to us, at its end."""
    record(
        AuditEvent(
            action="receive",
            outcome=_state(tally.stored, tally.failed),
            node=f"{tally.caller}@{tally.host}" if tally.host else tally.caller,
            local_aet=tally.called,
            peer_aet=tally.caller,
            peer_host=tally.host,
            study_uids=tuple(tally.studies),
            instances=tally.stored,
            failed=tally.failed,
            message=f"received {tally.stored} instance(s), refused {tally.failed}",
            detail="C-STORE",
        ),
        store,
    )
