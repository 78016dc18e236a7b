"""What the search form asks for, turned into C-FIND queries and a client-side refine filter.

Qt-free, so the rules below are unit-tested without a window.

Matching choices (PS3.4 C.2.2.2), documented here because a clinician sees their effect:

- **Patient name / referring physician**: a bare ``smith`` becomes ``smith*`` (prefix match, as
  Horos does); a value that already holds ``*`` or ``?`` is sent as typed. PN matching may be
  case-sensitive on the PACS (DCMTK's dcmqrscp is; C.2.2.2.1 leaves it to the SCP), so for the
  patient name we send up to three spellings — as typed, UPPER CASE and Title Case — and merge
  the answers by StudyInstanceUID. A case-insensitive PACS answers the same studies three
  times (cheap: name searches are narrow); a case-sensitive one then still finds ``SMITH^JANE``
  and ``Smith^John``. Every row is then refined locally with
  :func:`workstation.query.matches_pattern` (case-, accent- and ``^``-insensitive), which also
  drops what an over-generous PACS returns.
- **Study description**: substring (``*thorax*``), as CTK and Orthanc do; refined locally.
- **Patient ID, accession number**: sent exactly as typed (identifiers are exact; type ``*``
  for a wildcard), refined locally.
- **Modalities**: one box checked is sent as ModalitiesInStudy. Several checked run one query
  per modality, merged: multi-valued ModalitiesInStudy matching is not supported by every PACS,
  and sending none would fetch every modality. Rows whose ModalitiesInStudy is known and shares
  no checked modality are dropped (some PACS ignore the key).
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from enum import Enum

from workstation.query import Query, date_range, matches_pattern
from workstation.results import StudyRow

#: Modalities offered as check boxes, most used first (PS3.3 C.7.3.1.1.1 defined terms).
MODALITIES: tuple[str, ...] = (
    "CT", "MR", "CR", "DX", "US", "XA", "MG", "NM", "PT", "OT",
)  # fmt: skip


class DatePreset(Enum):
    """The study date choices of the search form, as (label, days back from today)."""

    ANY = "Any date"
    TODAY = "Today"
    YESTERDAY = "Yesterday"
    LAST_7_DAYS = "Last 7 days"
    LAST_30_DAYS = "Last 30 days"
    LAST_YEAR = "Last 12 months"
    CUSTOM = "Custom range"

    def dates(self, today: dt.date | None = None) -> tuple[dt.date | None, dt.date | None]:
        """(first, last) day included; ``(None, None)`` for any date and for custom."""
        day = today or dt.date.today()
        days_back = {
            DatePreset.TODAY: 0,
            DatePreset.LAST_7_DAYS: 6,
            DatePreset.LAST_30_DAYS: 29,
            DatePreset.LAST_YEAR: 364,
        }
        if self is DatePreset.YESTERDAY:
            yesterday = day - dt.timedelta(days=1)
            return yesterday, yesterday
        if self in days_back:
            return day - dt.timedelta(days=days_back[self]), day
        return None, None


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def prefix_pattern(text: str) -> str:
    """``smith`` → ``smith*``; text with a wildcard is kept as typed; ``""`` stays empty."""
    text = text.strip()
    return text if not text or _has_wildcard(text) else text + "*"


def substring_pattern(text: str) -> str:
    """``thorax`` → ``*thorax*``; text with a wildcard is kept as typed."""
    text = text.strip()
    return text if not text or _has_wildcard(text) else f"*{text}*"


def name_spellings(pattern: str) -> list[str]:
    """The spellings of a PN pattern to send: as typed, UPPER and Title case, without repeats."""
    if not pattern:
        return [""]
    title = "^".join(part.title() for part in pattern.split("^"))
    return list(dict.fromkeys([pattern, pattern.upper(), title]))


@dataclass(frozen=True)
class SearchCriteria:
    """The search form's values. ``first``/``last`` bound StudyDate (inclusive, ``None`` = open)."""

    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    description: str = ""
    referring_physician: str = ""
    first: dt.date | None = None
    last: dt.date | None = None
    modalities: tuple[str, ...] = field(default=())

    @property
    def is_blank(self) -> bool:
        """True when nothing narrows the search: it would ask the PACS for every study."""
        texts = (
            self.patient_name,
            self.patient_id,
            self.accession,
            self.description,
            self.referring_physician,
        )
        return (
            not any(t.strip() for t in texts)
            and not (self.first or self.last)
            and not (self.modalities)
        )

    @property
    def name_pattern(self) -> str:
        return prefix_pattern(self.patient_name)

    def _keys(self) -> dict[str, str]:
        keys = {
            "PatientID": self.patient_id.strip(),
            "AccessionNumber": self.accession.strip(),
            "StudyDescription": substring_pattern(self.description),
            "ReferringPhysicianName": prefix_pattern(self.referring_physician),
            "StudyDate": date_range(self.first, self.last),
        }
        return {k: v for k, v in keys.items() if v}

    def queries(self) -> list[Query]:
        """The STUDY-level queries to send to each node (see the module docstring)."""
        keys = self._keys()
        names = name_spellings(self.name_pattern)
        modalities: list[str] = list(self.modalities) or [""]
        out = []
        for name, modality in itertools.product(names, modalities):
            extra = {"PatientName": name, "ModalitiesInStudy": modality}
            out.append(Query.study(**keys, **{k: v for k, v in extra.items() if v}))
        return out

    def accepts(self, row: StudyRow) -> bool:
        """The client-side refine: does ``row`` really match what was typed?"""
        checks = (
            (row.patient_name, self.name_pattern),
            (row.patient_id, self.patient_id.strip()),
            (row.accession, self.accession.strip()),
            (row.description, substring_pattern(self.description)),
            (row.referring_physician, prefix_pattern(self.referring_physician)),
        )
        for value, pattern in checks:
            if pattern and not matches_pattern(value, pattern):
                return False
        if self.modalities and row.modalities and not set(self.modalities) & set(row.modalities):
            return False
        if (self.first or self.last) and len(row.study_date) == 8 and row.study_date.isdigit():
            day = dt.date(
                int(row.study_date[:4]), int(row.study_date[4:6]), int(row.study_date[6:])
            )
            if (self.first and day < self.first) or (self.last and day > self.last):
                return False
        return True

    def describe(self) -> str:
        """One line for the status bar and the log (no patient data: only which keys)."""
        used = [k for k, v in self._keys().items() if v]
        if self.patient_name.strip():
            used.insert(0, "PatientName")
        if self.modalities:
            used.append("modalities " + "/".join(self.modalities))
        return ", ".join(used) or "all studies"
