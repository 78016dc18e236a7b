"""Refining C-FIND matches on our side: one policy for the Python API, the CLI and the window.

PACS do not all match what they are asked: DCMTK's dcmqrscp ignores ModalitiesInStudy (and
does not return it) and PatientID at IMAGE level of Study Root, and matches names
case-sensitively; an SCP may answer one match per instance at every level (a study of 40
instances 40 times) or answer every record for a key it does not support.
:func:`workstation.find` therefore, unless asked ``refine=False`` (``--no-refine``: exactly
what the PACS sent):

- keeps the first match of each value of the level's unique key (PatientID, StudyInstanceUID,
  SeriesInstanceUID, SOPInstanceUID) and drops the repeats;
- drops a match whose returned values contradict a matching key of the query, with the
  matching of PS3.4 C.2.2.2 (universal, single value, wildcard, UID list, date/time range;
  several values: any of them) through :func:`workstation.query.matches_value`. Text is
  compared ignoring case, accents and ``^`` versus spaces, so that nothing a PACS returns for
  a reason of its own (a case-insensitive or accent-folding PACS) is lost: the refine only
  removes what no reading of the query matches. A key the PACS did not return, or returned
  empty, is not held against the match. Keys inside sequences are not checked.
- ModalitiesInStudy at STUDY level, when a match does not carry it: the study's series are
  listed (a SERIES-level C-FIND for its StudyInstanceUID, on the same association, once the
  query has ended) and the study is kept when one series has a listed modality. At most
  :data:`MAX_SERIES_LOOKUPS` studies per query are checked so; the others are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import Enum

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from workstation.errors import InvalidInput
from workstation.query import InformationModel, Level, Query, matches_value

#: Studies per query whose modalities are looked up series by series (see the module text).
MAX_SERIES_LOOKUPS = 1000

_NOT_CHECKED_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "AT", "SQ"})
_MODALITIES = "ModalitiesInStudy"


class Verdict(Enum):
    """What to do with one match."""

    KEEP = "keep"
    DUPLICATE = "duplicate"
    CONTRADICTS = "contradicts"
    #: Keep it only if its study's series have a modality the query asks for.
    ASK_SERIES = "ask series"


class Refiner:
    """The refine of one query's matches; :meth:`verdict` for each match, in order.

    ``text(keyword)`` is how a match's values are read (``RawIdentifier.text`` or
    :func:`workstation.identifiers.text_of_dataset`): ``""`` when absent or empty.
    """

    def __init__(self, query: Query) -> None:
        self.level = query.level
        self.patient_root = query.model is InformationModel.PATIENT_ROOT
        self.unique = query.level.unique_key if query.level is not None else None
        self.checks: list[tuple[str, str, str]] = []
        for keyword, pattern in query.matching_keys().items():
            tag = tag_for_keyword(keyword)  # None for dotted paths and tags written out
            if tag is None:
                continue
            vr = dictionary_VR(tag).split(" or ")[0]
            if vr not in _NOT_CHECKED_VRS:
                self.checks.append((keyword, vr, pattern))
        modalities = query.get(_MODALITIES) if query.level is Level.STUDY else None
        self.modalities = modalities if modalities and modalities.strip("*\\ ") else ""
        self._seen: set[str] = set()

    def verdict(self, text: Callable[[str], str]) -> Verdict:
        """KEEP, DUPLICATE (its unique key was seen before), CONTRADICTS, or ASK_SERIES."""
        if self.unique is not None:
            key = text(self.unique).strip()
            if key:
                if key in self._seen:
                    return Verdict.DUPLICATE
                self._seen.add(key)
        ask = False
        for keyword, vr, pattern in self.checks:
            value = text(keyword)
            if not value.strip(" \x00"):
                ask = ask or (keyword == _MODALITIES and bool(self.modalities))
                continue
            try:
                if not matches_value(vr, pattern, value):
                    return Verdict.CONTRADICTS
            except InvalidInput:  # a malformed range: the PACS judged it, so do we not
                continue
        return Verdict.ASK_SERIES if ask else Verdict.KEEP

    def series_query(self, text: Callable[[str], str]) -> Dataset | None:
        """The SERIES-level identifier listing the modalities of a match's study (None when
        the match lacks the keys it needs)."""
        study = text("StudyInstanceUID").strip()
        patient = text("PatientID").strip()
        if not study or (self.patient_root and not patient):
            return None
        ds = Dataset()
        ds.QueryRetrieveLevel = Level.SERIES.value
        if self.patient_root:
            ds.PatientID = patient
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = ""
        ds.Modality = ""
        return ds

    def modalities_match(self, modalities: Iterable[str]) -> bool:
        """Whether a study with series of ``modalities`` matches ModalitiesInStudy (a study
        whose series name no modality is kept)."""
        found = "\\".join(m.strip() for m in modalities if m.strip())
        return not found or matches_value("CS", self.modalities, found)
