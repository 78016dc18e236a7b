"""The SQLite schema of the store index, its version, its migrations and the connection settings.

``PRAGMA user_version`` holds :data:`SCHEMA_VERSION`; :func:`prepare` creates the tables of an
empty database, migrates one written by an older version (in one transaction, at open) and
refuses one written by a newer version. Tables it does not know (another module's) are left
alone.

Patients are keyed by (PatientID, PatientName, PatientBirthDate): two archives may use the same
PatientID for different people, and wrongly merging two patients in a browser is worse than
showing one patient twice.

The browser's filter is SQL over the ``search`` columns, folded with
:func:`workstation.text.fold` (the product's one folding rule: accents removed, case-folded,
PN ``^`` and ``=`` as spaces): a study's ``search`` holds its patient's name, ID and birth date
and its own accession, description, referring physician, date and modalities (see
:func:`study_search`). ``studies.patient_sort`` is the folded name of its patient, the order of
the patient list: the index ``studies_browse`` (patient_sort, patient_key, search) lists the
patients in order, with or without a filter, by one scan of a narrow index that stops at the
page's last patient. ``studies`` keep their series and instance counts; ``changes`` logs which
patient and study each commit touched, so that a browser refreshes only those. The writer
thread (:mod:`workstation.store.batch`) keeps all of them current.

Version 1 had ``search`` columns folded without removing accents, no counts and no change log.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from workstation.errors import StoreError
from workstation.text import fold, format_date

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
BUSY_TIMEOUT_MS = 10_000

_TABLES_V1 = """
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
CREATE TABLE series (
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL REFERENCES studies (study_uid) ON DELETE CASCADE,
    modality TEXT NOT NULL DEFAULT '',
    series_number INTEGER,
    series_description TEXT NOT NULL DEFAULT '',
    body_part_examined TEXT NOT NULL DEFAULT ''
);
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
"""
_INDEXES_V1 = """
CREATE INDEX studies_patient ON studies (patient_key);
CREATE INDEX studies_date ON studies (study_date, study_time);
CREATE INDEX series_study ON series (study_uid);
CREATE INDEX instances_series ON instances (series_uid);
CREATE INDEX instances_study ON instances (study_uid);
"""
#: The whole of version 1, as the first release created it (tests build v1 databases with it).
SCHEMA_V1 = _TABLES_V1 + _INDEXES_V1

#: From version 1 to 2: new columns (O(1) in SQLite), the change log and the new indexes.
_ALTER_V2 = """
ALTER TABLE studies ADD COLUMN patient_sort TEXT NOT NULL DEFAULT '';
ALTER TABLE studies ADD COLUMN series_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE studies ADD COLUMN instance_count INTEGER NOT NULL DEFAULT 0;
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_key INTEGER NOT NULL,
    study_uid TEXT NOT NULL
);
"""
_INDEXES_V2 = """
CREATE INDEX studies_browse ON studies (patient_sort, patient_key, search);
"""
#: Version 2 recomputes every derived column with the product's folding.
_FILL_V2 = (
    "UPDATE patients SET search = patient_search(patient_name, patient_id, birth_date)",
    "UPDATE studies SET"
    " series_count = (SELECT COUNT(*) FROM series se WHERE se.study_uid = studies.study_uid),"
    " instance_count = (SELECT COUNT(*) FROM instances i WHERE i.study_uid = studies.study_uid),"
    " (patient_sort, search) = (SELECT fold(p.patient_name), study_search(p.search,"
    " studies.accession_number, studies.study_description, studies.referring_physician_name,"
    " studies.study_date, studies.modalities) FROM patients p"
    " WHERE p.patient_key = studies.patient_key)",
)


def patient_search(name: str, patient_id: str, birth_date: str) -> str:
    """The folded text a patient's own fields are searched in."""
    return _fold_all((name, patient_id, birth_date, format_date(birth_date)))


def study_search(
    patient: str,
    accession: str,
    description: str,
    referring: str,
    study_date: str,
    modalities: str,
) -> str:
    """The folded text a study is searched in: its patient's (``patient``, the patient's
    :func:`patient_search` text), then its own fields.

    Dates are there as stored and as shown (``20240315 2024-03-15``); ``modalities`` is
    backslash-joined, as in the ``studies`` table.
    """
    values = (
        patient,
        accession,
        description,
        referring,
        study_date,
        format_date(study_date),
        modalities.replace("\\", " "),
    )
    return _fold_all(values)


def _fold_all(values: tuple[str, ...]) -> str:
    """``fold(" ".join(values))``, value by value: ASCII values (most) folded here, the others
    by :func:`fold`, which remembers them (names and descriptions repeat across studies)."""
    parts = [
        value.replace("=", " ").replace("^", " ").lower() if value.isascii() else fold(value)
        for value in values
    ]
    return " ".join(" ".join(parts).split())


def add_functions(conn: sqlite3.Connection) -> None:
    """The folding functions as SQL functions (the migration computes columns with them)."""
    conn.create_function("fold", 1, fold, deterministic=True)
    conn.create_function("patient_search", 3, patient_search, deterministic=True)
    conn.create_function("study_search", 6, study_search, deterministic=True)


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
    """Create, migrate or check the schema; return True when the database was empty."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the store index {db_path} has schema version {version}, newer than this program "
            f"({SCHEMA_VERSION}): update the workstation or use another store folder"
        )
    if version == SCHEMA_VERSION:
        return False
    started = time.monotonic()
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have prepared it meanwhile.
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            _run(conn, SCHEMA_V1 + _ALTER_V2 + _INDEXES_V2)
        elif version == 1:
            add_functions(conn)
            _run(conn, _ALTER_V2)
            for statement in _FILL_V2:
                conn.execute(statement)
            _run(conn, _INDEXES_V2)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if version:
        log.info(
            "store index migrated from schema version %d to %d in %.2f s",
            version,
            SCHEMA_VERSION,
            time.monotonic() - started,
        )
    return version == 0


def _run(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)
