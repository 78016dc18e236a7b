"""C-FIND matching and C-MOVE/C-GET selection over the local store's SQLite index.

The Query/Retrieve models of PS3.4 C.6.1 (Patient Root) and C.6.2 (Study Root) at the PATIENT,
STUDY, SERIES and IMAGE levels, answered from the index (:mod:`workstation.store.schema`)
without loading it into Python: each matching key becomes a SQL condition that every match
satisfies (UID lists as ``IN``, date ranges as index ranges, wildcards as ``GLOB`` or ``LIKE``),
and the rows SQLite returns are then checked with the one matcher of the project
(:func:`workstation.demo.matching.matches`, i.e. :func:`workstation.query.matches_value`), so
that the SQL only narrows and never decides. Matching follows PS3.4 C.2.2.2: single value,
wildcards ``*`` and ``?``, universal, UID lists, DA/TM ranges; text is case-sensitive except PN,
which ignores case as Orthanc does; several values of a key are OR-ed.

The index holds the usual keys (see ``_COLUMNS``). A key of the level or above that it does not
hold (StudyID, SeriesDate, ImageType...) is read from one instance file of each candidate entity,
and matched and returned from there: slower, but true. Keys below the query level are returned
empty and not matched; sequences are returned empty. Responses are in UTF-8 (ISO_IR 192).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from workstation.demo.matching import (
    IMAGE,
    LEVELS,
    PATIENT,
    SERIES,
    STUDY,
    Catalogue,
    Key,
    QueryError,
    attribute_level,
    identifier_keys,
    match_one,
    matches,
)
from workstation.store.queries import IndexQueries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Column:
    level: int
    sql: str
    vr: str
    #: Backslash-joined values (ModalitiesInStudy, SOPClassesInStudy).
    multi: bool = False
    #: A sub-query: selected only when asked for, never pre-filtered in SQL.
    computed: bool = False


def _count(sql: str, level: int) -> _Column:
    return _Column(level, f"(SELECT COUNT(*) {sql})", "IS", computed=True)


_COLUMNS: dict[str, _Column] = {
    "PatientName": _Column(PATIENT, "p.patient_name", "PN"),
    "PatientID": _Column(PATIENT, "p.patient_id", "LO"),
    "PatientBirthDate": _Column(PATIENT, "p.birth_date", "DA"),
    "PatientSex": _Column(PATIENT, "p.sex", "CS"),
    "NumberOfPatientRelatedStudies": _count(
        "FROM studies x WHERE x.patient_key = p.patient_key", PATIENT
    ),
    "NumberOfPatientRelatedSeries": _count(
        "FROM series x JOIN studies y ON y.study_uid = x.study_uid"
        " WHERE y.patient_key = p.patient_key",
        PATIENT,
    ),
    "NumberOfPatientRelatedInstances": _count(
        "FROM instances x JOIN studies y ON y.study_uid = x.study_uid"
        " WHERE y.patient_key = p.patient_key",
        PATIENT,
    ),
    "StudyInstanceUID": _Column(STUDY, "s.study_uid", "UI"),
    "StudyDate": _Column(STUDY, "s.study_date", "DA"),
    "StudyTime": _Column(STUDY, "s.study_time", "TM"),
    "AccessionNumber": _Column(STUDY, "s.accession_number", "SH"),
    "StudyDescription": _Column(STUDY, "s.study_description", "LO"),
    "ReferringPhysicianName": _Column(STUDY, "s.referring_physician_name", "PN"),
    "ModalitiesInStudy": _Column(STUDY, "s.modalities", "CS", multi=True),
    "SOPClassesInStudy": _Column(
        STUDY,
        "(SELECT group_concat(u, '\\') FROM"
        " (SELECT DISTINCT x.sop_class_uid AS u FROM instances x WHERE x.study_uid = s.study_uid))",
        "UI",
        multi=True,
        computed=True,
    ),
    "NumberOfStudyRelatedSeries": _count("FROM series x WHERE x.study_uid = s.study_uid", STUDY),
    "NumberOfStudyRelatedInstances": _count(
        "FROM instances x WHERE x.study_uid = s.study_uid", STUDY
    ),
    "SeriesInstanceUID": _Column(SERIES, "se.series_uid", "UI"),
    "Modality": _Column(SERIES, "se.modality", "CS"),
    "SeriesNumber": _Column(SERIES, "se.series_number", "IS"),
    "SeriesDescription": _Column(SERIES, "se.series_description", "LO"),
    "BodyPartExamined": _Column(SERIES, "se.body_part_examined", "CS"),
    "NumberOfSeriesRelatedInstances": _count(
        "FROM instances x WHERE x.series_uid = se.series_uid", SERIES
    ),
    "SOPInstanceUID": _Column(IMAGE, "i.sop_instance_uid", "UI"),
    "SOPClassUID": _Column(IMAGE, "i.sop_class_uid", "UI"),
    "InstanceNumber": _Column(IMAGE, "i.instance_number", "IS"),
}
_UNIQUE = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_FROM = (
    "patients p",
    "studies s JOIN patients p ON p.patient_key = s.patient_key",
    "series se JOIN studies s ON s.study_uid = se.study_uid"
    " JOIN patients p ON p.patient_key = s.patient_key",
    "instances i JOIN series se ON se.series_uid = i.series_uid"
    " JOIN studies s ON s.study_uid = i.study_uid JOIN patients p ON p.patient_key = s.patient_key",
)
#: One instance file of the entity, for keys the index does not hold.
_REPRESENTATIVE = (
    "(SELECT x.path FROM instances x JOIN studies y ON y.study_uid = x.study_uid"
    " WHERE y.patient_key = p.patient_key LIMIT 1)",
    "(SELECT x.path FROM instances x WHERE x.study_uid = s.study_uid LIMIT 1)",
    "(SELECT x.path FROM instances x WHERE x.series_uid = se.series_uid LIMIT 1)",
    "i.path",
)
#: Keys the response sets itself.
_OWN = frozenset({"SpecificCharacterSet", "QueryRetrieveLevel"})
#: Keys answered by the SCP, never read from files.
_ANSWERED = frozenset({"RetrieveAETitle", "InstanceAvailability"})
_TEMPORAL = frozenset({"DA", "TM"})
_NUMBERS = frozenset({"IS", "DS", "US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
_NOT_TEXT = frozenset({"UI", "DT", "SQ", "OB", "OW", "OD", "OF", "OL", "OV", "UN", "AT"})
#: Above every character a DA or TM value holds: ``value <= high + _TOP`` is the prefix test.
_TOP = "\x7f"


@dataclass(frozen=True)
class Located:
    """One instance a C-MOVE or C-GET sends: its UIDs, file and transfer syntax."""

    sop_class_uid: str
    sop_instance_uid: str
    path: Path
    transfer_syntax_uid: str


def _case_blind(vr: str) -> bool:
    return vr == "PN"


def _text_condition(sql: str, vr: str, query: str) -> tuple[str, list[object]] | None:
    """A SQL condition every value matching wildcard text ``query`` meets, or None.

    ``^`` and runs of spaces become "anything" (the matcher reads ``^`` as a space and folds
    runs of spaces); PN compares with LIKE (ASCII case-insensitive; a non-ASCII PN pattern is
    left to the matcher), other VRs with GLOB (case-sensitive, ``*`` and ``?`` as in DICOM).
    """
    if unicodedata.normalize("NFC", query) != query:
        return None
    words = query.replace("^", " ").split()
    if not words:
        return None
    if _case_blind(vr):
        if not query.isascii():
            return None
        escaped = [
            w.replace("!", "!!").replace("%", "!%").replace("_", "!_").replace("*", "%")
            for w in words
        ]
        pattern = "%".join(e.replace("?", "_") for e in escaped)
        # A PN may also match by a later component group (``Yamada^Tarou=山田^太郎``).
        return f"({sql} LIKE ? ESCAPE '!' OR {sql} LIKE '%=%')", [pattern]
    pattern = "*".join(w.replace("[", "[[]") for w in words)
    return f"{sql} GLOB ?", [pattern]


def _condition(column: _Column, query: tuple[str, ...]) -> tuple[str, list[object]] | None:
    """A SQL condition that every row matching ``query`` (OR-ed values) meets, or None."""
    if column.computed or column.multi or not query:
        return None
    sql, vr = column.sql, column.vr
    parts: list[str] = []
    params: list[object] = []
    uids: list[str] = []
    for raw in query:
        value = raw.strip()
        if not value or value == "*":
            return None  # universal matching: every row
        if vr == "UI":
            uids.append(value)
            continue
        if vr in _TEMPORAL:
            if "*" in value or "?" in value or "." in value or ":" in value:
                return None
            low, dash, high = value.partition("-")
            if not dash:
                high = low
            bounds = []
            if low:
                bounds.append(f"{sql} >= ?")
                params.append(low)
            if high:
                bounds.append(f"{sql} <= ?")
                params.append(high + _TOP)
            parts.append("(" + " AND ".join(bounds) + ")")
            continue
        if vr in _NUMBERS:
            try:
                number = float(value)
            except ValueError:
                return None
            parts.append(f"{sql} = ?")
            params.append(number)
            continue
        if vr in _NOT_TEXT:
            return None
        text = _text_condition(sql, vr, value)
        if text is None:
            return None
        parts.append(text[0])
        params.extend(text[1])
    if uids:
        parts.append(f"{sql} IN ({', '.join('?' * len(uids))})")
        params.extend(uids)
    return "(" + " OR ".join(parts) + ")", params


def _values(value: object, multi: bool) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, int | float):
        return (str(value),)
    text = str(value)
    return tuple(v for v in text.split("\\") if v) if multi else (text,)


def _header_values(elem: DataElement | None) -> tuple[str, ...]:
    if elem is None or elem.value is None or elem.value == "":
        return ()
    if elem.VM > 1:
        return tuple(str(v) for v in elem.value if v is not None and str(v) != "")
    return (str(elem.value),)


class IndexCatalogue:
    """The Q/R SCP's matching engine over a store index (thread-safe: each thread reads on
    its own connection). ``root`` is the store folder the index's paths are relative to."""

    def __init__(self, index: IndexQueries, root: Path) -> None:
        self.index = index
        self.root = Path(root)

    # -- C-FIND --------------------------------------------------------------------------

    def find(
        self, identifier: Dataset, patient_root: bool, retrieve_aet: str = ""
    ) -> Iterator[Dataset]:
        """Yield one response Identifier per matching entity (PS3.4 C.4.1.2.2).

        Raises :class:`QueryError` before the first response if the Identifier is invalid.
        """
        level = Catalogue.level_of(identifier, patient_root)
        keys = [k for k in identifier_keys(identifier) if k.keyword not in _OWN]
        for key in keys:  # a malformed range is refused now, not after the first rows
            for value in key.query:
                match_one(key.vr, value, ("",))
        plan = _Plan(level, keys, patient_root)
        rows = self.index.read(plan.sql, plan.params)
        return self._responses(plan, rows, retrieve_aet)

    def _responses(
        self, plan: _Plan, rows: Iterator[Sequence[Any]], retrieve_aet: str
    ) -> Iterator[Dataset]:
        count = 0
        for row in rows:
            values = dict(zip(plan.selected, row, strict=True))
            header = self._header(values.get("__path__")) if plan.header_keys else None
            if not plan.accepts(values, header):
                continue
            count += 1
            yield plan.response(values, header, retrieve_aet)
        log.debug("C-FIND %s: %d matches", LEVELS[plan.level], count)

    def _header(self, rel: object) -> Dataset | None:
        if not isinstance(rel, str):
            return None
        try:
            return dcmread(self.root / rel, stop_before_pixels=True)
        except (OSError, InvalidDicomError, ValueError) as exc:
            log.warning("cannot read %s for a C-FIND: %s", rel, exc)
            return None

    # -- C-MOVE / C-GET ------------------------------------------------------------------

    def retrieve(self, identifier: Dataset, patient_root: bool) -> list[Located]:
        """The instances a C-MOVE or C-GET Identifier selects (PS3.4 C.4.2.2.1, C.4.3.2.1):
        by the unique keys of the level and above (the level's own is required)."""
        level = Catalogue.level_of(identifier, patient_root)
        unique = _UNIQUE[level]
        keys = {k.keyword: k for k in identifier_keys(identifier)}
        if unique not in keys or not [v for v in keys[unique].query if v.strip()]:
            raise QueryError(f"a {LEVELS[level]} level retrieve needs {unique}")
        clauses: list[str] = []
        params: list[object] = []
        sql_of = ("p.patient_id", "i.study_uid", "i.series_uid", "i.sop_instance_uid")
        for upper in range(PATIENT if patient_root else STUDY, level + 1):
            key = keys.get(_UNIQUE[upper])
            wanted = [v.strip() for v in key.query if v.strip()] if key else []
            if "*" in wanted or not wanted:
                continue
            clauses.append(f"{sql_of[upper]} IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        rows = self.index.read(
            "SELECT i.sop_class_uid, i.sop_instance_uid, i.path, i.transfer_syntax_uid"
            " FROM instances i JOIN studies s ON s.study_uid = i.study_uid"
            " JOIN patients p ON p.patient_key = s.patient_key"
            f" WHERE {' AND '.join(clauses)}"
            " ORDER BY i.study_uid, i.series_uid, i.instance_number IS NULL, i.instance_number,"
            " i.sop_instance_uid",
            params,
        )
        return [Located(str(a), str(b), self.root / str(c), str(d)) for a, b, c, d in rows]


class _Plan:
    """One C-FIND as SQL (what to select, the pre-filter) and the checks of its rows."""

    def __init__(self, level: int, keys: list[Key], patient_root: bool) -> None:
        self.level = level
        self.keys = keys
        self.first_unique = PATIENT if patient_root else STUDY
        #: Keys at or above the level that the index does not hold: read from a file.
        self.header_keys = [
            k
            for k in keys
            if k.keyword not in _COLUMNS
            and k.vr != "SQ"
            and k.keyword not in _ANSWERED
            and not k.tag.is_private
            and attribute_level(k.keyword) <= level
        ]
        wanted = {_UNIQUE[u] for u in range(self.first_unique, level + 1)}
        wanted |= {
            k.keyword for k in keys if k.keyword in _COLUMNS and _COLUMNS[k.keyword].level <= level
        }
        self.selected = sorted(wanted)
        expressions = [_COLUMNS[name].sql for name in self.selected]
        if self.header_keys:
            self.selected.append("__path__")
            expressions.append(_REPRESENTATIVE[level])
        clauses: list[str] = []
        self.params: list[object] = []
        #: (keyword, VR, values, multi) checked on each row by the matcher.
        self.checks: list[tuple[str, str, tuple[str, ...], bool]] = []
        for key in keys:
            column = _COLUMNS.get(key.keyword)
            if column is None or column.level > level or not key.query:
                continue
            self.checks.append((key.keyword, column.vr, key.query, column.multi))
            condition = _condition(column, key.query)
            if condition is not None:
                clauses.append(condition[0])
                self.params.extend(condition[1])
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        self.sql = f"SELECT {', '.join(expressions)} FROM {_FROM[level]}{where}"

    def accepts(self, values: dict[str, Any], header: Dataset | None) -> bool:
        for keyword, vr, query, multi in self.checks:
            found = _values(values.get(keyword), multi)
            if not matches(vr, query, found, ignore_case=_case_blind(vr)):
                return False
        for key in self.header_keys:
            if not key.query:
                continue
            elem = header.get(key.tag) if header is not None else None
            found = _header_values(elem if isinstance(elem, DataElement) else None)
            if not matches(key.vr, key.query, found, ignore_case=_case_blind(key.vr)):
                return False
        return True

    def response(
        self, values: dict[str, Any], header: Dataset | None, retrieve_aet: str
    ) -> Dataset:
        rsp = Dataset()
        rsp.SpecificCharacterSet = "ISO_IR 192"
        rsp.QueryRetrieveLevel = LEVELS[self.level]
        for unique in _UNIQUE[self.first_unique : self.level + 1]:
            setattr(rsp, unique, str(values[unique] or ""))
        for key in self.keys:
            rsp[key.tag] = self._element(key, values, header, retrieve_aet)
        return rsp

    def _element(
        self, key: Key, values: dict[str, Any], header: Dataset | None, retrieve_aet: str
    ) -> DataElement:
        keyword = key.keyword
        if key.vr == "SQ":
            return DataElement(key.tag, "SQ", [])
        if keyword == "RetrieveAETitle":
            return DataElement(key.tag, key.vr, retrieve_aet or None)
        if keyword == "InstanceAvailability":
            return DataElement(key.tag, key.vr, "ONLINE")
        column = _COLUMNS.get(keyword)
        if column is not None:
            if column.level > self.level:
                return DataElement(key.tag, key.vr, None)
            found = _values(values.get(keyword), column.multi)
            if not found:
                return DataElement(key.tag, key.vr, None)
            return DataElement(key.tag, key.vr, list(found) if len(found) > 1 else found[0])
        if header is not None and attribute_level(keyword) <= self.level and key.tag in header:
            elem = header[key.tag]
            return DataElement(key.tag, elem.VR, elem.value)
        return DataElement(key.tag, key.vr, None)
