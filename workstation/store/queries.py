"""The read side of the store index: what a browser asks, as frozen dataclasses.

The filter is the product's one store filter: ``filter_text`` is folded with
:func:`workstation.text.fold` (accents removed, case-folded, PN ``^`` and ``=`` as spaces) and
split into words; a study matches when every word appears, as typed (``%``, ``_`` and ``\\``
are literal), in its search text: its patient's name, ID and birth date and its own accession,
description, referring physician, date (``20240315`` and ``2024-03-15``) and modalities (see
:func:`workstation.store.schema.study_search`). A patient matches when one of its studies does,
and then counts the studies that match. ``muller 2024`` finds Müller's studies of 2024;
``müller jürgen`` finds ``Müller^Jürgen``.

The patient list is ordered by folded name, then patient key (:attr:`PatientEntry.sort_name`,
:attr:`PatientEntry.key`), and read page by page from the ``studies_browse`` index (see
:mod:`workstation.store.schema`), so its first page costs at most one scan of that narrow
index, whatever the filter. :meth:`IndexQueries.changes_since` tells a browser which patients
and studies commits touched, so that it refreshes only those.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from workstation.store.records import (
    IndexChanges,
    InstanceEntry,
    PatientEntry,
    SeriesEntry,
    StoreCount,
    StudyEntry,
)
from workstation.text import fold

_STUDIES = """
SELECT s.study_uid, s.patient_key, p.patient_id, p.patient_name, s.study_date, s.study_time,
    s.accession_number, s.study_description, s.referring_physician_name, s.modalities,
    s.series_count, s.instance_count
FROM studies s JOIN patients p USING (patient_key)
"""
_INSTANCES = """
SELECT sop_instance_uid, sop_class_uid, series_uid, study_uid, instance_number,
    transfer_syntax_uid, path, size, source_aet, received_at FROM instances
"""
_PATIENT = "p.patient_key, p.patient_id, p.patient_name, p.birth_date, p.sex"
#: Matching patients in list order, with how many of their studies match (``{where}``: the
#: filter on ``s``); a plain scan of the covering index, stopping at the page's end.
_PATIENT_PAGE = f"""
SELECT {_PATIENT}, m.n, m.patient_sort FROM (
    SELECT s.patient_sort, s.patient_key, COUNT(*) AS n
    FROM studies s INDEXED BY studies_browse{{where}}
    GROUP BY s.patient_sort, s.patient_key ORDER BY s.patient_sort, s.patient_key
    LIMIT ? OFFSET ?
) m JOIN patients p ON p.patient_key = m.patient_key
ORDER BY m.patient_sort, m.patient_key
"""
#: How many UIDs or keys go into one ``IN (...)``.
_CHUNK = 500


def _like_filters(column: str, filter_text: str) -> tuple[list[str], list[str]]:
    """One ``column LIKE ?`` clause per word of ``filter_text``, with wildcards escaped."""
    clauses: list[str] = []
    params: list[str] = []
    for word in fold(filter_text).split():
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append(f"{column} LIKE ? ESCAPE '\\'")
        params.append(f"%{escaped}%")
    return clauses, params


def _chunks(values: Iterable[Any]) -> Iterator[list[Any]]:
    batch = list(dict.fromkeys(values))
    for start in range(0, len(batch), _CHUNK):
        yield batch[start : start + _CHUNK]


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


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

    def patients(
        self,
        filter_text: str = "",
        *,
        limit: int | None = None,
        offset: int = 0,
        after: PatientEntry | None = None,
    ) -> list[PatientEntry]:
        """The patients with a study that matches ``filter_text``, in list order; each counts
        its matching studies. Page with ``limit`` and ``offset``, or with ``after`` (the last
        entry of the previous page: no rows skipped, however deep the page)."""
        clauses, params = _like_filters("s.search", filter_text)
        args: list[object] = list(params)
        if after is not None:
            clauses.append("(s.patient_sort, s.patient_key) > (?, ?)")
            args += [after.sort_name, after.key]
        sql = _PATIENT_PAGE.format(where=_where(clauses))
        rows = self._reader().execute(sql, [*args, -1 if limit is None else limit, offset])
        return [PatientEntry(*row) for row in rows]

    def count(self, filter_text: str = "") -> StoreCount:
        """How many patients and studies ``filter_text`` matches (all of them when empty)."""
        clauses, params = _like_filters("s.search", filter_text)
        if not clauses:
            sql = "SELECT (SELECT COUNT(*) FROM patients), (SELECT COUNT(*) FROM studies)"
        else:
            sql = (
                "SELECT COUNT(*), COALESCE(SUM(n), 0) FROM (SELECT COUNT(*) AS n"
                f" FROM studies s INDEXED BY studies_browse{_where(clauses)}"
                " GROUP BY s.patient_sort, s.patient_key)"
            )
        patients, studies = self._reader().execute(sql, params).fetchone()
        return StoreCount(int(patients), int(studies))

    def patient_position(self, patient_key: int, filter_text: str = "") -> int | None:
        """The row of a patient in the list :meth:`patients` gives for ``filter_text``, or
        None when it is not there."""
        conn = self._reader()
        clauses, params = _like_filters("s.search", filter_text)
        row = conn.execute(
            "SELECT s.patient_sort FROM studies s"
            f"{_where(['s.patient_key = ?', *clauses])} LIMIT 1",
            [patient_key, *params],
        ).fetchone()
        if row is None:
            return None
        clauses.append("(s.patient_sort, s.patient_key) < (?, ?)")
        before = conn.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM studies s INDEXED BY studies_browse"
            f"{_where(clauses)} GROUP BY s.patient_sort, s.patient_key)",
            [*params, row[0], patient_key],
        ).fetchone()
        return int(before[0])

    def patients_by_key(
        self, patient_keys: Iterable[int], filter_text: str = ""
    ) -> dict[int, PatientEntry]:
        """The current entries of these patients, those that ``filter_text`` matches (a key
        missing from the answer: the patient is gone or no longer matches)."""
        clauses, params = _like_filters("s.search", filter_text)
        found: dict[int, PatientEntry] = {}
        for keys in _chunks(patient_keys):
            rows = self._reader().execute(
                f"SELECT {_PATIENT}, COUNT(*), MIN(s.patient_sort)"
                " FROM studies s JOIN patients p USING (patient_key)"
                f"{_where([f's.patient_key IN ({_marks(keys)})', *clauses])}"
                " GROUP BY s.patient_key",
                [*keys, *params],
            )
            found.update((row[0], PatientEntry(*row)) for row in rows)
        return found

    def change_token(self) -> int:
        """Where the change log is now: pass it to :meth:`changes_since` later."""
        row = self._reader().execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
        return int(row[0])

    def changes_since(self, token: int) -> IndexChanges:
        """The patients and studies that commits after ``token`` added, changed or removed."""
        rows = (
            self._reader()
            .execute(
                "SELECT seq, patient_key, study_uid FROM changes WHERE seq > ? ORDER BY seq",
                (token,),
            )
            .fetchall()
        )
        if not rows:
            return IndexChanges(token, frozenset(), frozenset())
        # The log's numbers are consecutive (AUTOINCREMENT, trimmed from the oldest end): a
        # gap after ``token`` means the entries the caller needs were trimmed.
        return IndexChanges(
            token=rows[-1][0],
            patient_keys=frozenset(row[1] for row in rows),
            study_uids=frozenset(row[2] for row in rows),
            complete=rows[0][0] == token + 1,
        )

    def studies(self, patient_key: int | None = None, filter_text: str = "") -> list[StudyEntry]:
        """Studies that match ``filter_text`` (of one patient, or all), newest first."""
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

    def study_instance_counts(self, study_uids: Iterable[str]) -> dict[str, int]:
        """How many instances of each study are stored (0 for a study the store lacks)."""
        counts: dict[str, int] = {}
        for uids in _chunks(study_uids):
            counts.update(dict.fromkeys(uids, 0))
            counts.update(
                self._reader().execute(
                    f"SELECT study_uid, instance_count FROM studies"
                    f" WHERE study_uid IN ({_marks(uids)})",
                    uids,
                )
            )
        return counts

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
        """Every (study UID, series UID) pair that has instance rows (series without
        instances are pruned on commit)."""
        rows = self._reader().execute("SELECT study_uid, series_uid FROM series")
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
