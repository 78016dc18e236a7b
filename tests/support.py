"""Small helpers every test module shares: a free loopback port, whether a port answers, a
bounded poll, and :class:`StoreFilter`, the rule the Local store's filter box follows, which the
tests hold the SQL filter to. Test servers (Orthanc, DCMTK) are started by :mod:`tests.servers`."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import pytest

from workstation.store.records import PatientEntry, StudyEntry
from workstation.text import fold, format_date

#: Every test server listens here, and only here.
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts TCP connections on ``host:port`` right now."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


class StoreFilter:
    """The Local store's filter box, stated in Python: every word of the text must appear,
    ignoring case and accents (``muller`` finds ``Müller^Jürgen``), in the patient's name, ID
    or birth date, or in one of the study's accession number, description, referring
    physician, date or modalities. The window filters in SQL
    (:mod:`workstation.store.queries`); an empty filter matches everything."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.words = fold(text).split()

    def __bool__(self) -> bool:
        return bool(self.words)

    def matches(self, haystack: str) -> bool:
        """Whether every word occurs in ``haystack`` (already folded)."""
        return all(word in haystack for word in self.words)

    def matches_patient(self, patient: PatientEntry) -> bool:
        return self.matches(
            fold(f"{patient.patient_name} {patient.patient_id} {patient.birth_date}")
        )

    def matches_study(self, study: StudyEntry) -> bool:
        return self.matches(study_haystack(study))


def study_haystack(study: StudyEntry) -> str:
    """What the filter searches in a study: patient, accession, descriptions, date, modalities."""
    values = (
        study.patient_name,
        study.patient_id,
        study.accession_number,
        study.study_description,
        study.referring_physician_name,
        study.study_date,
        format_date(study.study_date),
        *study.modalities,
    )
    return fold(" ".join(values))
