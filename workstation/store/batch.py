"""The SQL of the index writer: one batch of records and deletions in one transaction.

Only the index's writer thread uses a :class:`BatchWriter`. Within a batch, patient, study and
series rows are upserted once per distinct set of values (a series arrives as hundreds of
records with the same values); derived columns (ModalitiesInStudy, the search text) are
recomputed once per touched study at the end; rows left empty by deletions or by an instance
that moved to another study are pruned.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field

from workstation.store.records import InstanceRecord
from workstation.store.schema import fold


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
    touched: set[str] = field(default_factory=set)
    prune: bool = False


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
_STUDY_SEARCH = """
SELECT p.patient_name, p.patient_id, s.accession_number, s.study_description,
    s.referring_physician_name, s.study_date
FROM studies s JOIN patients p USING (patient_key) WHERE s.study_uid = ?
"""
_PRUNE = (
    "DELETE FROM series WHERE NOT EXISTS "
    "(SELECT 1 FROM instances i WHERE i.series_uid = series.series_uid)",
    "DELETE FROM studies WHERE NOT EXISTS "
    "(SELECT 1 FROM series s WHERE s.study_uid = studies.study_uid)",
    "DELETE FROM patients WHERE NOT EXISTS "
    "(SELECT 1 FROM studies s WHERE s.patient_key = patients.patient_key)",
)


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
            "SELECT path FROM instances WHERE sop_instance_uid = ?", (r.sop_instance_uid,)
        ).fetchone()
        if r.duplicate and previous is not None and previous[0] == r.path:
            return CommitResult(r)  # same bytes, already indexed: keep the first arrival's row
        pkey = (r.patient_id, r.patient_name, r.patient_birth_date, r.patient_sex)
        patient_key = state.patients.get(pkey)
        if patient_key is None:
            search = fold(f"{r.patient_name} {r.patient_id} {r.patient_birth_date}")
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
            if old is not None and old[0] != patient_key:
                state.prune = True
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
        if previous is not None and previous[0] != r.path:
            superseded = previous[0]
            state.prune = True
        return CommitResult(r, superseded)

    def delete_study(self, study_uid: str) -> int:
        count = self.conn.execute(
            "DELETE FROM instances WHERE study_uid = ?", (study_uid,)
        ).rowcount
        self.conn.execute("DELETE FROM series WHERE study_uid = ?", (study_uid,))
        self.conn.execute("DELETE FROM studies WHERE study_uid = ?", (study_uid,))
        self._state.prune = True
        return count

    def delete_series(self, series_uid: str) -> int:
        rows = self.conn.execute(
            "SELECT DISTINCT study_uid FROM instances WHERE series_uid = ?", (series_uid,)
        ).fetchall()
        self._state.touched.update(row[0] for row in rows)
        count = self.conn.execute(
            "DELETE FROM instances WHERE series_uid = ?", (series_uid,)
        ).rowcount
        self.conn.execute("DELETE FROM series WHERE series_uid = ?", (series_uid,))
        self._state.prune = True
        return count

    def delete_instances(self, sop_instance_uids: Iterable[str]) -> int:
        count = 0
        for uid in sop_instance_uids:
            row = self.conn.execute(
                "DELETE FROM instances WHERE sop_instance_uid = ? RETURNING study_uid", (uid,)
            ).fetchone()
            if row is not None:
                count += 1
                self._state.touched.add(row[0])
        self._state.prune = True
        return count

    def _finish(self) -> None:
        state, conn = self._state, self.conn
        if state.prune:
            for statement in _PRUNE:
                conn.execute(statement)
        for study_uid in state.touched:
            row = conn.execute(_STUDY_SEARCH, (study_uid,)).fetchone()
            if row is None:  # pruned
                continue
            modalities = [
                m
                for (m,) in conn.execute(
                    "SELECT DISTINCT modality FROM series WHERE study_uid = ? AND modality <> ''"
                    " ORDER BY modality",
                    (study_uid,),
                )
            ]
            joined = "\\".join(modalities)
            conn.execute(
                "UPDATE studies SET modalities = ?, search = ? WHERE study_uid = ?",
                (joined, fold(" ".join([*row, *modalities])), study_uid),
            )
        self._state = _BatchState()
