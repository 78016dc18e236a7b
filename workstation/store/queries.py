"""The read side of the store index: what a browser asks, as frozen dataclasses.

Filters match case-insensitively (Unicode case folding, so ``müller`` finds ``MÜLLER``) on
every whitespace-separated word: ``müller 2024`` finds Müller's studies of 2024. PN carets
count as spaces, so ``müller jürgen`` finds ``Müller^Jürgen``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from workstation.store.records import InstanceEntry, PatientEntry, SeriesEntry, StudyEntry
from workstation.store.schema import fold

_STUDIES = """
SELECT s.study_uid, s.patient_key, p.patient_id, p.patient_name, s.study_date, s.study_time,
    s.accession_number, s.study_description, s.referring_physician_name, s.modalities,
    (SELECT COUNT(*) FROM series se WHERE se.study_uid = s.study_uid),
    (SELECT COUNT(*) FROM instances i WHERE i.study_uid = s.study_uid)
FROM studies s JOIN patients p USING (patient_key)
"""
_INSTANCES = """
SELECT sop_instance_uid, sop_class_uid, series_uid, study_uid, instance_number,
    transfer_syntax_uid, path, size, source_aet, received_at FROM instances
"""


def _like_filters(column: str, filter_text: str) -> tuple[list[str], list[str]]:
    """One ``column LIKE ?`` clause per word of ``filter_text``, with wildcards escaped."""
    clauses: list[str] = []
    params: list[str] = []
    for word in fold(filter_text).split():
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append(f"{column} LIKE ? ESCAPE '\\'")
        params.append(f"%{escaped}%")
    return clauses, params


def _where(clauses: list[str]) -> str:
    return f" WHERE {' AND '.join(clauses)}" if clauses else ""


def _study(row: tuple[Any, ...]) -> StudyEntry:
    return StudyEntry(
        study_uid=row[0],
        patient_key=row[1],
        patient_id=row[2],
        patient_name=row[3],
        study_date=row[4],
        study_time=row[5],
        accession_number=row[6],
        study_description=row[7],
        referring_physician_name=row[8],
        modalities=tuple(m for m in str(row[9]).split("\\") if m),
        series_count=row[10],
        instance_count=row[11],
    )


def _instance(row: tuple[Any, ...]) -> InstanceEntry:
    received = row[9]
    return InstanceEntry(
        sop_instance_uid=str(row[0]),
        sop_class_uid=str(row[1]),
        series_uid=str(row[2]),
        study_uid=str(row[3]),
        instance_number=row[4],
        transfer_syntax_uid=str(row[5]),
        path=str(row[6]),
        size=int(row[7]),
        source_aet=str(row[8]),
        received_at=datetime.fromisoformat(received) if isinstance(received, str) else None,
    )


class IndexQueries:
    """Read queries; :class:`~workstation.store.index.StoreIndex` supplies the connection."""

    def _reader(self) -> sqlite3.Connection:
        raise NotImplementedError

    def patients(self, filter_text: str = "") -> list[PatientEntry]:
        """Patients whose name, ID or birth date contain every word of ``filter_text``."""
        clauses, params = _like_filters("p.search", filter_text)
        rows = self._reader().execute(
            "SELECT p.patient_key, p.patient_id, p.patient_name, p.birth_date, p.sex,"
            " (SELECT COUNT(*) FROM studies s WHERE s.patient_key = p.patient_key)"
            f" FROM patients p{_where(clauses)} ORDER BY p.patient_name, p.patient_id",
            params,
        )
        return [PatientEntry(*row) for row in rows]

    def studies(self, patient_key: int | None = None, filter_text: str = "") -> list[StudyEntry]:
        """Studies, newest first; ``filter_text`` matches patient name and ID, accession,
        description, referring physician, date and modalities."""
        clauses, params = _like_filters("s.search", filter_text)
        args: list[object] = list(params)
        if patient_key is not None:
            clauses.append("s.patient_key = ?")
            args.append(patient_key)
        rows = self._reader().execute(
            f"{_STUDIES}{_where(clauses)} ORDER BY s.study_date DESC, s.study_time DESC,"
            " s.study_uid",
            args,
        )
        return [_study(row) for row in rows]

    def read(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        """Run one read-only statement on this thread's connection (the Q/R SCP's queries,
        :mod:`workstation.serve.catalogue`); the connection refuses writes."""
        return self._reader().execute(sql, params)

    def study(self, study_uid: str) -> StudyEntry | None:
        rows = self._reader().execute(f"{_STUDIES} WHERE s.study_uid = ?", (study_uid,))
        row = rows.fetchone()
        return None if row is None else _study(row)

    def series(self, study_uid: str) -> list[SeriesEntry]:
        """The series of a study, by Series Number."""
        rows = self._reader().execute(
            "SELECT se.series_uid, se.study_uid, se.modality, se.series_number,"
            " se.series_description, se.body_part_examined,"
            " (SELECT COUNT(*) FROM instances i WHERE i.series_uid = se.series_uid)"
            " FROM series se WHERE se.study_uid = ?"
            " ORDER BY se.series_number IS NULL, se.series_number, se.series_uid",
            (study_uid,),
        )
        return [SeriesEntry(*row) for row in rows]

    def instances(
        self, series_uid: str | None = None, study_uid: str | None = None
    ) -> list[InstanceEntry]:
        """Instances of a series and/or study (every instance when both are None)."""
        clauses, args = self._scope(series_uid, study_uid)
        rows = self._reader().execute(
            f"{_INSTANCES}{_where(clauses)}"
            " ORDER BY series_uid, instance_number IS NULL, instance_number, sop_instance_uid",
            args,
        )
        return [_instance(row) for row in rows]

    def instance(self, sop_instance_uid: str) -> InstanceEntry | None:
        row = (
            self._reader()
            .execute(f"{_INSTANCES} WHERE sop_instance_uid = ?", (sop_instance_uid,))
            .fetchone()
        )
        return None if row is None else _instance(row)

    def instance_uids(
        self, study_uid: str | None = None, series_uid: str | None = None
    ) -> set[str]:
        clauses, args = self._scope(series_uid, study_uid)
        rows = self._reader().execute(
            f"SELECT sop_instance_uid FROM instances{_where(clauses)}", args
        )
        return {row[0] for row in rows}

    def study_completeness(self, study_uid: str) -> int:
        """How many instances of the study are stored."""
        row = (
            self._reader()
            .execute("SELECT COUNT(*) FROM instances WHERE study_uid = ?", (study_uid,))
            .fetchone()
        )
        return int(row[0])

    def path_of(self, sop_instance_uid: str) -> str | None:
        """The instance's path relative to the store root, or None when it is not indexed."""
        row = (
            self._reader()
            .execute("SELECT path FROM instances WHERE sop_instance_uid = ?", (sop_instance_uid,))
            .fetchone()
        )
        return None if row is None else str(row[0])

    def series_study_uids(self, series_uid: str) -> set[str]:
        """The studies that hold instances of a series (normally exactly one)."""
        rows = self._reader().execute(
            "SELECT DISTINCT study_uid FROM instances WHERE series_uid = ?", (series_uid,)
        )
        return {str(row[0]) for row in rows}

    def series_locations(self) -> list[tuple[str, str]]:
        """Every (study UID, series UID) pair that has instance rows."""
        rows = self._reader().execute("SELECT DISTINCT study_uid, series_uid FROM instances")
        return [(str(a), str(b)) for a, b in rows]

    def instance_paths(self, series_uid: str) -> dict[str, str]:
        """SOP Instance UID -> relative path, for one series."""
        rows = self._reader().execute(
            "SELECT sop_instance_uid, path FROM instances WHERE series_uid = ?", (series_uid,)
        )
        return {str(a): str(b) for a, b in rows}

    @staticmethod
    def _scope(series_uid: str | None, study_uid: str | None) -> tuple[list[str], list[str]]:
        clauses: list[str] = []
        args: list[str] = []
        if series_uid is not None:
            clauses.append("series_uid = ?")
            args.append(series_uid)
        if study_uid is not None:
            clauses.append("study_uid = ?")
            args.append(study_uid)
        return clauses, args
