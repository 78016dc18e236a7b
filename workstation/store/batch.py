"""The SQL of the index writer: one batch of records and deletions in one transaction.

Only the index's writer thread uses a :class:`BatchWriter`. Within a batch, patient, study and
series rows are upserted once per distinct set of values (a series arrives as hundreds of
records with the same values); derived study columns (ModalitiesInStudy, the series and
instance counts, the search text, the patient's sort name) are recomputed once per touched
study at the end, and each touched study is logged in ``changes`` for the browser.

Rows left empty (a deleted study, series or instance, an instance or study that moved
elsewhere) are pruned by checking only the rows that may have become empty, through indexes:
deleting a study costs the size of the study, not of the index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from workstation.store.records import InstanceRecord
from workstation.store.schema import patient_search, study_search
from workstation.text import fold

#: How many entries of the change log are kept; a browser further behind reloads everything.
CHANGES_KEPT = 20_000


@dataclass(frozen=True)
class CommitResult:
    """What the writer did with one record; ``superseded`` is the instance's previous path
    when it now lives elsewhere (its study or series UID changed), ``ok`` False when indexing
    it failed."""

    record: InstanceRecord
    superseded: str | None = None
    ok: bool = True


@dataclass
class _BatchState:
    patients: dict[tuple[str, str, str, str], int] = field(default_factory=dict)
    studies: set[tuple[object, ...]] = field(default_factory=set)
    series: set[tuple[object, ...]] = field(default_factory=set)
    #: Studies whose derived columns are recomputed (and logged as changed).
    touched: set[str] = field(default_factory=set)
    #: Rows that may have become empty, pruned if they did.
    series_check: set[str] = field(default_factory=set)
    studies_check: set[str] = field(default_factory=set)
    patients_check: set[int] = field(default_factory=set)
    #: (patient_key, study_uid) changes to log besides the touched studies (removals, moves).
    logged: set[tuple[int, str]] = field(default_factory=set)


_UPSERT_PATIENT = """
INSERT INTO patients (patient_id, patient_name, birth_date, sex, search) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (patient_id, patient_name, birth_date) DO UPDATE SET
    sex = CASE WHEN excluded.sex <> '' THEN excluded.sex ELSE patients.sex END
RETURNING patient_key
"""
_UPSERT_STUDY = """
INSERT INTO studies (study_uid, patient_key, study_date, study_time, accession_number,
    study_description, referring_physician_name) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (study_uid) DO UPDATE SET
    patient_key = excluded.patient_key,
    study_date = CASE WHEN excluded.study_date <> '' THEN excluded.study_date
        ELSE studies.study_date END,
    study_time = CASE WHEN excluded.study_time <> '' THEN excluded.study_time
        ELSE studies.study_time END,
    accession_number = CASE WHEN excluded.accession_number <> '' THEN excluded.accession_number
        ELSE studies.accession_number END,
    study_description = CASE WHEN excluded.study_description <> ''
        THEN excluded.study_description ELSE studies.study_description END,
    referring_physician_name = CASE WHEN excluded.referring_physician_name <> ''
        THEN excluded.referring_physician_name ELSE studies.referring_physician_name END
"""
_UPSERT_SERIES = """
INSERT INTO series (series_uid, study_uid, modality, series_number, series_description,
    body_part_examined) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (series_uid) DO UPDATE SET
    study_uid = excluded.study_uid,
    modality = CASE WHEN excluded.modality <> '' THEN excluded.modality ELSE series.modality END,
    series_number = COALESCE(excluded.series_number, series.series_number),
    series_description = CASE WHEN excluded.series_description <> ''
        THEN excluded.series_description ELSE series.series_description END,
    body_part_examined = CASE WHEN excluded.body_part_examined <> ''
        THEN excluded.body_part_examined ELSE series.body_part_examined END
"""
_UPSERT_INSTANCE = """
INSERT INTO instances (sop_instance_uid, sop_class_uid, series_uid, study_uid, instance_number,
    transfer_syntax_uid, path, size, source_aet, received_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (sop_instance_uid) DO UPDATE SET
    sop_class_uid = excluded.sop_class_uid, series_uid = excluded.series_uid,
    study_uid = excluded.study_uid, instance_number = excluded.instance_number,
    transfer_syntax_uid = excluded.transfer_syntax_uid, path = excluded.path,
    size = excluded.size, source_aet = excluded.source_aet, received_at = excluded.received_at
"""
_STUDY_FIELDS = """
SELECT s.patient_key, p.patient_name, p.search, s.accession_number, s.study_description,
    s.referring_physician_name, s.study_date
FROM studies s JOIN patients p USING (patient_key) WHERE s.study_uid = ?
"""
_UPDATE_STUDY = """
UPDATE studies SET modalities = ?, series_count = ?, search = ?, patient_sort = ?,
    instance_count = (SELECT COUNT(*) FROM instances i WHERE i.study_uid = studies.study_uid)
WHERE study_uid = ?
"""


class BatchWriter:
    """Applies records and deletions on the writer connection; the caller owns transactions."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._state = _BatchState()

    def begin(self) -> None:
        self._state = _BatchState()
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._finish()
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def add(self, r: InstanceRecord) -> CommitResult:
        state, conn = self._state, self.conn
        previous = conn.execute(
            "SELECT path, study_uid, series_uid FROM instances WHERE sop_instance_uid = ?",
            (r.sop_instance_uid,),
        ).fetchone()
        if r.duplicate and previous is not None and previous[0] == r.path:
            return CommitResult(r)  # same bytes, already indexed: keep the first arrival's row
        pkey = (r.patient_id, r.patient_name, r.patient_birth_date, r.patient_sex)
        patient_key = state.patients.get(pkey)
        if patient_key is None:
            search = patient_search(r.patient_name, r.patient_id, r.patient_birth_date)
            patient_key = conn.execute(_UPSERT_PATIENT, (*pkey, search)).fetchone()[0]
            state.patients[pkey] = patient_key
        study = (
            r.study_uid,
            patient_key,
            r.study_date,
            r.study_time,
            r.accession_number,
            r.study_description,
            r.referring_physician_name,
        )
        if study not in state.studies:
            old = conn.execute(
                "SELECT patient_key FROM studies WHERE study_uid = ?", (r.study_uid,)
            ).fetchone()
            if old is not None and old[0] != patient_key:  # the study moved to another patient
                state.patients_check.add(old[0])
                state.logged.add((old[0], r.study_uid))
            conn.execute(_UPSERT_STUDY, study)
            state.studies.add(study)
        series = (
            r.series_uid,
            r.study_uid,
            r.modality,
            r.series_number,
            r.series_description,
            r.body_part_examined,
        )
        if series not in state.series:
            old = conn.execute(
                "SELECT study_uid FROM series WHERE series_uid = ?", (r.series_uid,)
            ).fetchone()
            if old is not None and old[0] != r.study_uid:  # the series moved to another study
                state.touched.add(old[0])
                state.studies_check.add(old[0])
            conn.execute(_UPSERT_SERIES, series)
            state.series.add(series)
        received = r.received_at.isoformat() if r.received_at is not None else None
        conn.execute(
            _UPSERT_INSTANCE,
            (
                r.sop_instance_uid,
                r.sop_class_uid,
                r.series_uid,
                r.study_uid,
                r.instance_number,
                r.transfer_syntax_uid,
                r.path,
                r.size,
                r.source_aet,
                received,
            ),
        )
        state.touched.add(r.study_uid)
        superseded = None
        if previous is not None:
            old_path, old_study, old_series = previous
            if old_study != r.study_uid:
                state.touched.add(old_study)
                state.studies_check.add(old_study)
            if old_series != r.series_uid:
                state.series_check.add(old_series)
            if old_path != r.path:
                superseded = old_path
        return CommitResult(r, superseded)

    def delete_study(self, study_uid: str) -> int:
        state, conn = self._state, self.conn
        row = conn.execute(
            "SELECT patient_key FROM studies WHERE study_uid = ?", (study_uid,)
        ).fetchone()
        count = conn.execute("DELETE FROM instances WHERE study_uid = ?", (study_uid,)).rowcount
        conn.execute("DELETE FROM series WHERE study_uid = ?", (study_uid,))
        conn.execute("DELETE FROM studies WHERE study_uid = ?", (study_uid,))
        if row is not None:
            state.patients_check.add(row[0])
            state.logged.add((row[0], study_uid))
        state.touched.discard(study_uid)
        return count

    def delete_series(self, series_uid: str) -> int:
        state, conn = self._state, self.conn
        studies = {
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT study_uid FROM instances WHERE series_uid = ?"
                " UNION SELECT study_uid FROM series WHERE series_uid = ?",
                (series_uid, series_uid),
            )
        }
        count = conn.execute("DELETE FROM instances WHERE series_uid = ?", (series_uid,)).rowcount
        conn.execute("DELETE FROM series WHERE series_uid = ?", (series_uid,))
        state.touched.update(studies)
        state.studies_check.update(studies)
        return count

    def delete_instances(self, sop_instance_uids: Iterable[str]) -> int:
        state, conn = self._state, self.conn
        count = 0
        for uid in sop_instance_uids:
            row = conn.execute(
                "DELETE FROM instances WHERE sop_instance_uid = ? RETURNING study_uid, series_uid",
                (uid,),
            ).fetchone()
            if row is not None:
                count += 1
                state.touched.add(row[0])
                state.series_check.add(row[1])
        return count

    def _finish(self) -> None:
        self._prune()
        self._recompute()
        self._state = _BatchState()

    def _prune(self) -> None:
        """Remove the checked series without instances, then studies without series, then
        patients without studies: one indexed look-up each."""
        state, conn = self._state, self.conn
        for series_uid in state.series_check:
            row = conn.execute(
                "DELETE FROM series WHERE series_uid = ? AND NOT EXISTS"
                " (SELECT 1 FROM instances i WHERE i.series_uid = series.series_uid)"
                " RETURNING study_uid",
                (series_uid,),
            ).fetchone()
            if row is not None:
                state.studies_check.add(row[0])
                state.touched.add(row[0])
        for study_uid in state.studies_check:
            row = conn.execute(
                "DELETE FROM studies WHERE study_uid = ? AND NOT EXISTS"
                " (SELECT 1 FROM series se WHERE se.study_uid = studies.study_uid)"
                " RETURNING patient_key",
                (study_uid,),
            ).fetchone()
            if row is not None:
                state.patients_check.add(row[0])
                state.logged.add((row[0], study_uid))
        for patient_key in state.patients_check:
            conn.execute(
                "DELETE FROM patients WHERE patient_key = ? AND NOT EXISTS"
                " (SELECT 1 FROM studies s WHERE s.patient_key = patients.patient_key)",
                (patient_key,),
            )

    def _recompute(self) -> None:
        """The derived columns of every touched study, and the change log."""
        state, conn = self._state, self.conn
        logged = set(state.logged)
        for study_uid in state.touched:
            row = conn.execute(_STUDY_FIELDS, (study_uid,)).fetchone()
            if row is None:  # removed
                continue
            patient_key, name, patient, accession, description, referring, date = row
            modalities = [
                m
                for (m,) in conn.execute(
                    "SELECT modality FROM series WHERE study_uid = ?", (study_uid,)
                )
            ]
            joined = "\\".join(sorted({m for m in modalities if m}))
            search = study_search(patient, accession, description, referring, date, joined)
            conn.execute(_UPDATE_STUDY, (joined, len(modalities), search, fold(name), study_uid))
            logged.add((patient_key, study_uid))
        if logged:
            conn.executemany(
                "INSERT INTO changes (patient_key, study_uid) VALUES (?, ?)", sorted(logged)
            )
            last = conn.execute("SELECT MAX(seq) FROM changes").fetchone()[0]
            conn.execute("DELETE FROM changes WHERE seq <= ?", (last - CHANGES_KEPT,))
