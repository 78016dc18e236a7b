"""What the search form asks for, turned into C-FIND queries and a client-side refine filter.

Qt-free, so the rules below are unit-tested without a window.

Matching choices (PS3.4 C.2.2.2), documented here because a clinician sees their effect:

- **Patient name / referring physician**: a bare ``smith`` becomes ``smith*`` (prefix match, as
  Horos does); a value that already holds ``*`` or ``?`` is sent as typed. PN matching may be
  case-sensitive on the PACS (DCMTK's dcmqrscp is; C.2.2.2.1 leaves it to the SCP), so for the
  patient name we send up to three spellings — as typed, UPPER CASE and Title Case — and merge
  the answers by StudyInstanceUID. A case-insensitive PACS answers the same studies three
  times (cheap: name searches are narrow); a case-sensitive one then still finds ``SMITH^JANE``
  and ``Smith^John``.
- **Accents**: PACS do not fold accents (Orthanc does not find ``Müller`` for ``muller``), so
  in the patient name each letter after the first that has common one-character accented
  forms (the Latin vowels and y, c, n, r, s, z: ä é ñ ç ř š ž...; the Greek vowels: ά έ
  ή...), and each accented letter typed, is sent as ``*``: for ``muller`` a PACS is asked
  ``M*LL*`` and answers ``MÜLLER`` (and ``Miller``, which the refine drops). Not ``?``: it
  stands for one character, but Orthanc 1.10 never matches it with a non-ASCII one, and
  dcmqrscp matches UTF-8 byte by byte. The first letter is kept as typed (a leading ``*``
  would scan every name): ``Öztürk`` is found when typed with its ``Ö``. A name that would
  keep fewer than two letters (``an`` -> ``a*``) is sent as typed.
- **Refine**: every row is refined locally with :func:`workstation.query.matches_value`
  (case-, accent- and ``^``-insensitive, the same matcher as :mod:`workstation.refine`) against
  what was typed, which drops what the ``?`` patterns and an over-generous PACS let through.
  A value the PACS did not return is not held against a row.
- **Study description**: substring (``*thorax*``), as CTK and Orthanc do; refined locally.
- **Patient ID, accession number**: sent exactly as typed (identifiers are exact; type ``*``
  for a wildcard), refined locally.
- **Modalities**: one box checked is sent as ModalitiesInStudy. Several checked run one query
  per modality, merged: multi-valued ModalitiesInStudy matching is not supported by every PACS,
  and sending none would fetch every modality. Rows whose ModalitiesInStudy shares no checked
  modality are dropped; a PACS that ignores the key and does not return it (dcmqrscp) has the
  series of each study listed by the core's refine (:mod:`workstation.refine`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import unicodedata
from dataclasses import dataclass, field
from enum import Enum

from workstation.errors import InvalidInput
from workstation.query import Query, date_range, matches_value
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


def _base_letter(char: str) -> str:
    """``ü`` -> ``u``: the letter without its accents, lower case."""
    decomposed = unicodedata.normalize("NFKD", char)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _is_accented(char: str) -> bool:
    return char.isalpha() and _base_letter(char) != char.lower()


#: Letters often written with an accent in names, as one character (Latin-1, Latin Extended-A,
#: Greek tonos): their base letters are the ones :func:`accent_wildcards` turns into ``*``.
_ACCENTED_FORMS = (
    "àáâãäåāăą" "çćč" "èéêëēėęě" "ìíîïīį" "ñńň" "òóôõöōő" "řŕ" "śšş" "ùúûüūůűų" "ýÿ" "źżž"
    "άέήίόύώϊϋΐΰ"
)  # fmt: skip
_ACCENTABLE = frozenset(_base_letter(c) for c in _ACCENTED_FORMS)


def accent_wildcards(pattern: str) -> str:
    """``muller*`` -> ``m*ll*``: after the first letter, each letter with common accented
    forms and each accented letter becomes ``*`` (runs of ``*`` as one), so that a PACS that
    does not fold accents still answers ``Müller``; the rest is kept as typed."""
    out: list[str] = []
    for index, char in enumerate(pattern):
        if index and char.isalpha() and (_is_accented(char) or char.lower() in _ACCENTABLE):
            char = "*"
        if not (char == "*" and out and out[-1] == "*"):
            out.append(char)
    return "".join(out)


#: Letters :func:`accent_wildcards` must leave in a pattern for it to be sent (``an`` would
#: become ``a*``, every name with an A): with fewer, the name is sent as typed.
MIN_KEPT_LETTERS = 2


def name_spellings(pattern: str) -> list[str]:
    """The PN patterns to send for ``pattern``: as typed, UPPER and Title case, each through
    :func:`accent_wildcards` (unless that keeps fewer than :data:`MIN_KEPT_LETTERS`), without
    repeats."""
    if not pattern:
        return [""]
    title = "^".join(part.title() for part in pattern.split("^"))
    spellings = [pattern, pattern.upper(), title]
    if sum(c.isalpha() for c in accent_wildcards(pattern)) >= MIN_KEPT_LETTERS:
        spellings = [accent_wildcards(p) for p in spellings]
    return list(dict.fromkeys(spellings))


def birth_date_pattern(text: str) -> str:
    """A birth date as typed (``1952-11-19``, ``19521119``, ``1950-01-01 - 1959-12-31``) as a
    DA value or range; anything else is passed on for the query's own check to name."""
    compact = "".join(text.split())
    dashed = r"\d{4}-\d{2}-\d{2}"
    if re.fullmatch(rf"({dashed})?(-|–)?({dashed})?", compact) and compact:
        parts = re.findall(dashed, compact)
        values = [p.replace("-", "") for p in parts]
        if len(values) == 2:
            return f"{values[0]}-{values[1]}"
        if len(values) == 1:
            if compact.startswith(parts[0]) and compact != parts[0]:
                return f"{values[0]}-"
            if compact.endswith(parts[0]) and compact != parts[0]:
                return f"-{values[0]}"
            return str(values[0])
    return compact.replace("–", "-")


@dataclass(frozen=True)
class SearchCriteria:
    """The search form's values. ``first``/``last`` bound StudyDate (inclusive, ``None`` = open)."""

    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    description: str = ""
    referring_physician: str = ""
    #: The patient's birth date as typed: ``YYYYMMDD``, ``YYYY-MM-DD`` or a range of them.
    birth_date: str = ""
    institution: str = ""
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
            self.birth_date,
            self.institution,
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
            "PatientBirthDate": birth_date_pattern(self.birth_date),
            "InstitutionName": substring_pattern(self.institution),
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
        """The client-side refine: does ``row`` really match what was typed? (A value the
        PACS did not return is not held against it.)"""
        checks = (
            ("PN", row.patient_name, self.name_pattern),
            ("LO", row.patient_id, self.patient_id.strip()),
            ("SH", row.accession, self.accession.strip()),
            ("LO", row.description, substring_pattern(self.description)),
            ("PN", row.referring_physician, prefix_pattern(self.referring_physician)),
            ("CS", "\\".join(row.modalities), "\\".join(self.modalities)),
            ("DA", row.study_date, date_range(self.first, self.last)),
            ("DA", row.birth_date, birth_date_pattern(self.birth_date)),
            ("LO", row.institution, substring_pattern(self.institution)),
        )
        for vr, value, pattern in checks:
            if not pattern or not value:
                continue
            try:
                if not matches_value(vr, pattern, value):
                    return False
            except InvalidInput:  # a value that is no date: the PACS judged it
                continue
        return True

    def describe(self) -> str:
        """One line for the status bar and the log (no patient data: only which keys)."""
        used = [k for k, v in self._keys().items() if v]
        if self.patient_name.strip():
            used.insert(0, "PatientName")
        if self.modalities:
            used.append("modalities " + "/".join(self.modalities))
        return ", ".join(used) or "all studies"
