"""The SQLite schema of the store index, its version, and the connection settings.

``PRAGMA user_version`` holds :data:`SCHEMA_VERSION`; :func:`prepare` creates the tables of an
empty database, refuses one written by a newer version, and is where migrations will go.

Patients are keyed by (PatientID, PatientName, PatientBirthDate): two archives may use the same
PatientID for different people, and wrongly merging two patients in a browser is worse than
showing one patient twice. The ``search`` columns hold case-folded text (PN carets as spaces)
that the browser filters match with LIKE; the writer thread fills them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from workstation.errors import StoreError

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000

_SCHEMA_V1 = """
CREATE TABLE patients (
    patient_key INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL,
    patient_name TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    sex TEXT NOT NULL DEFAULT '',
    search TEXT NOT NULL DEFAULT '',
    UNIQUE (patient_id, patient_name, birth_date)
);
CREATE TABLE studies (
    study_uid TEXT PRIMARY KEY,
    patient_key INTEGER NOT NULL REFERENCES patients (patient_key),
    study_date TEXT NOT NULL DEFAULT '',
    study_time TEXT NOT NULL DEFAULT '',
    accession_number TEXT NOT NULL DEFAULT '',
    study_description TEXT NOT NULL DEFAULT '',
    referring_physician_name TEXT NOT NULL DEFAULT '',
    modalities TEXT NOT NULL DEFAULT '',
    search TEXT NOT NULL DEFAULT ''
);
CREATE INDEX studies_patient ON studies (patient_key);
CREATE INDEX studies_date ON studies (study_date, study_time);
CREATE TABLE series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL REFERENCES studies (study_uid) ON DELETE CASCADE,
    modality TEXT NOT NULL DEFAULT '',
    series_number INTEGER,
    series_description TEXT NOT NULL DEFAULT '',
    body_part_examined TEXT NOT NULL DEFAULT ''
);
CREATE INDEX series_study ON series (study_uid);
CREATE TABLE instances (
    sop_instance_uid TEXT PRIMARY KEY,
    sop_class_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL REFERENCES series (series_uid) ON DELETE CASCADE,
    study_uid TEXT NOT NULL,
    instance_number INTEGER,
    transfer_syntax_uid TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    source_aet TEXT NOT NULL DEFAULT '',
    received_at TEXT
);
CREATE INDEX instances_series ON instances (series_uid);
CREATE INDEX instances_study ON instances (study_uid);
"""


def connect(db_path: Path, *, writer: bool) -> sqlite3.Connection:
    """A connection with the store's settings; only the writer thread gets ``writer=True``.

    ``check_same_thread=False`` lets :meth:`StoreIndex.close` close every thread's connection;
    each connection is still used by one thread at a time.
    """
    try:
        conn = sqlite3.connect(
            db_path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the store index {db_path}: {exc}") from exc
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    if writer:
        # WAL: readers never block the writer nor see a half-committed batch. NORMAL: a commit
        # survives an application crash; a power cut may lose the last batches, which
        # LocalStore's recovery re-indexes from the (fsynced) files.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"the store index {db_path} cannot use WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
    else:
        conn.execute("PRAGMA query_only = ON")
    return conn


def prepare(conn: sqlite3.Connection, db_path: Path) -> bool:
    """Create or check the schema; return True when the database was empty."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store index {db_path} has schema version {version}, newer than this program "
            f"({SCHEMA_VERSION}): update the workstation or use another store folder"
        )
    if version == SCHEMA_VERSION:
        return False
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA_V1.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return True


def fold(text: str) -> str:
    """Search form of a value: case-folded, with PN separators as spaces."""
    return " ".join(text.replace("^", " ").replace("=", " ").casefold().split())
