"""What the Local store tab reads from the index: one small adapter, called only from workers.

The browser is a view over SQL: its patient list is fetched a page at a time and filtered in
SQL, it is refreshed by the patients that the index's change log names, and the studies and
series of the selection are read whole (a patient has a handful). Every method here runs a
query, so each first checks that it is not on the GUI thread (:func:`check_worker_thread`,
active under ``WORKSTATION_CHECK_THREADS=1`` as the tests run): the window never waits for
SQLite.

The filter is the store's (:mod:`workstation.store.queries`): every word of the box, folded by
:func:`workstation.text.fold` (accents removed, case-folded), must appear in a study's search
text (its patient's name, ID and birth date, its accession, description, referring physician,
date and modalities); a patient is listed when one of its studies matches. The list is ordered
by folded name, then patient key (:attr:`PatientEntry.sort_name`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from workstation.store.queries import IndexQueries
from workstation.store.records import PatientEntry, SeriesEntry, StoreCount, StudyEntry
from workstation.ui.common.thread_guard import ThreadAffinityError, checks_enabled, violations

#: A patient's place in the list's order.
PageKey = tuple[str, int]


def page_key(entry: PatientEntry) -> PageKey:
    return entry.sort_name, entry.key


@dataclass(frozen=True)
class Changes:
    """What changed in the index since the last look: the current entries of the patients
    touched that the filter lists, and every patient key and study UID touched. ``complete``
    is False when the index forgot older changes: then reload the list."""

    token: int
    patients: list[PatientEntry]
    patient_keys: frozenset[int]
    study_uids: frozenset[str]
    complete: bool = True


@dataclass(frozen=True)
class LocatedStudy:
    """A study found for :meth:`StoreReader.locate`: its patient's entry and row in the
    filtered list (None when the filter hides the study)."""

    study: StudyEntry
    position: int | None
    patient: PatientEntry | None = None


def check_worker_thread(what: str) -> None:
    """Refuse a query on the GUI thread when the thread checks are on (see thread_guard)."""
    if checks_enabled() and threading.current_thread() is threading.main_thread():
        message = f"{what} queried the store index on the GUI thread"
        violations.append(message)
        raise ThreadAffinityError(message)


class StoreReader:
    """The browser's queries on one index (any worker thread; each has its own connection)."""

    def __init__(self, index: IndexQueries) -> None:
        self._index = index

    def token(self) -> int:
        """Where the index's change log is now (see :meth:`changes`)."""
        check_worker_thread("StoreReader.token")
        return self._index.change_token()

    def patient_page(
        self, filter_text: str, after: PatientEntry | None = None, limit: int | None = 200
    ) -> list[PatientEntry]:
        """Patients the filter lists, in list order, after the row ``after``."""
        check_worker_thread("StoreReader.patient_page")
        return self._index.patients(filter_text, limit=limit, after=after)

    def counts(self, filter_text: str) -> StoreCount:
        """How many patients the filter lists, and how many studies it matches."""
        check_worker_thread("StoreReader.counts")
        return self._index.count(filter_text)

    def changes(self, token: int, filter_text: str) -> Changes:
        """The patients that commits after ``token`` touched, as the filter lists them now."""
        check_worker_thread("StoreReader.changes")
        changed = self._index.changes_since(token)
        patients = self._index.patients_by_key(changed.patient_keys, filter_text)
        return Changes(
            changed.token,
            list(patients.values()),
            changed.patient_keys,
            changed.study_uids,
            changed.complete,
        )

    def studies(self, patient_key: int, filter_text: str) -> list[StudyEntry]:
        """The patient's studies the filter matches, newest first."""
        check_worker_thread("StoreReader.studies")
        return self._index.studies(patient_key=patient_key, filter_text=filter_text)

    def series(self, study_uid: str) -> list[SeriesEntry]:
        check_worker_thread("StoreReader.series")
        return self._index.series(study_uid)

    def locate(self, study_uid: str, filter_text: str) -> LocatedStudy | None:
        """A study, and the row of its patient in the list the filter gives."""
        check_worker_thread("StoreReader.locate")
        study = self._index.study(study_uid)
        if study is None:
            return None
        listed = self._index.studies(patient_key=study.patient_key, filter_text=filter_text)
        if all(s.study_uid != study_uid for s in listed):
            return LocatedStudy(study, None)
        key = study.patient_key
        return LocatedStudy(
            study,
            self._index.patient_position(key, filter_text),
            self._index.patients_by_key([key], filter_text).get(key),
        )

    def local_counts(self, study_uids: Sequence[str]) -> dict[str, int]:
        """How many instances of each study the store holds (0 for those it does not hold):
        one query per 500 studies."""
        check_worker_thread("StoreReader.local_counts")
        return self._index.study_instance_counts(study_uids)
