"""In-memory C-FIND matching and retrieve selection for the demo archive.

Implements the Query/Retrieve Information Models of PS3.4 C.6.1 (Patient Root) and C.6.2
(Study Root) over a list of :class:`ArchivedInstance`, with the attribute matching of PS3.4
C.2.2.2: single value, wildcard (``*``/``?``), range (DA/TM/DT), list of UIDs, universal
(empty) matching. Text matches ignoring case (as Orthanc matches names; C.2.2.2.1 permits it
for PN) but not accents, so the demo promises no more than a typical PACS; every key may be a
backslash list whose values are OR-ed. The matching itself is the core's
(:func:`workstation.query.matches_value`).

Keys below the query level are matched relationally (an entity matches if one of its instances
does) and returned empty; keys at or above the level are returned with the entity's values.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO

from pydicom import dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from workstation.errors import InvalidInput
from workstation.query import matches_value

log = logging.getLogger(__name__)

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
PATIENT, STUDY, SERIES, IMAGE = range(4)


def _keywords(text: str) -> frozenset[str]:
    return frozenset(text.split())


# PS3.4 C.6.1.1 / C.6.2.1: the attributes of each level (anything else is IMAGE level).
_PATIENT_KEYS = _keywords(
    "PatientName PatientID IssuerOfPatientID IssuerOfPatientIDQualifiersSequence "
    "OtherPatientIDsSequence OtherPatientNames PatientBirthDate PatientBirthTime PatientSex "
    "EthnicGroup PatientComments ReferencedPatientSequence PatientSpeciesDescription "
    "PatientBreedDescription ResponsiblePerson PatientIdentityRemoved "
    "NumberOfPatientRelatedStudies NumberOfPatientRelatedSeries NumberOfPatientRelatedInstances"
)
_STUDY_KEYS = _keywords(
    "StudyDate StudyTime AccessionNumber IssuerOfAccessionNumberSequence StudyID "
    "StudyInstanceUID ReferringPhysicianName StudyDescription ProcedureCodeSequence "
    "NameOfPhysiciansReadingStudy PhysiciansOfRecord AdmittingDiagnosesDescription PatientAge "
    "PatientSize PatientWeight Occupation AdditionalPatientHistory OtherStudyNumbers "
    "ReferencedStudySequence ModalitiesInStudy SOPClassesInStudy "
    "AnatomicRegionsInStudyCodeSequence NumberOfStudyRelatedSeries NumberOfStudyRelatedInstances"
)
_SERIES_KEYS = _keywords(
    "Modality SeriesNumber SeriesInstanceUID SeriesDescription SeriesDate SeriesTime "
    "BodyPartExamined Laterality ProtocolName PerformedProcedureStepStartDate "
    "PerformedProcedureStepStartTime PerformedProcedureStepID RequestAttributesSequence "
    "Manufacturer ManufacturerModelName InstitutionName InstitutionalDepartmentName "
    "StationName OperatorsName PerformingPhysicianName NumberOfSeriesRelatedInstances"
)
# Keys computed from the hierarchy (PS3.4 C.3.2-C.3.4); only the first two are matched.
_COMPUTED = _keywords(
    "ModalitiesInStudy SOPClassesInStudy NumberOfStudyRelatedSeries NumberOfStudyRelatedInstances "
    "NumberOfSeriesRelatedInstances NumberOfPatientRelatedStudies NumberOfPatientRelatedSeries "
    "NumberOfPatientRelatedInstances"
)
_MATCHED_COMPUTED = _keywords("ModalitiesInStudy SOPClassesInStudy")
# Keys that describe the query or the response rather than an entity (PS3.4 C.4.1.1.3).
_NOT_MATCHED = (_COMPUTED - _MATCHED_COMPUTED) | _keywords(
    "QueryRetrieveLevel SpecificCharacterSet RetrieveAETitle InstanceAvailability "
    "TimezoneOffsetFromUTC StorageMediaFileSetID StorageMediaFileSetUID RetrieveURL "
    "QueryRetrieveView"
)
_UNIQUE_KEYS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_UNIQUE_TAGS = (0x00100020, 0x0020000D, 0x0020000E, 0x00080018)


class QueryError(ValueError):
    """The Identifier cannot be processed (answered with 0xA900, PS3.4 C.4.1.1.4)."""


def attribute_level(keyword: str) -> int:
    """The Q/R level an attribute belongs to (PS3.4 C.6.1.1 and C.6.2.1 tables)."""
    if keyword in _PATIENT_KEYS:
        return PATIENT
    if keyword in _STUDY_KEYS:
        return STUDY
    if keyword in _SERIES_KEYS:
        return SERIES
    return IMAGE


def _strings(value: object) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, MultiValue | list | tuple):
        return tuple(str(v) for v in value if v is not None and str(v) != "")
    return (str(value),)


def match_one(vr: str, query: str, values: tuple[str, ...], *, ignore_case: bool = True) -> bool:
    """Whether one query value (no backslash) matches any of an entity's ``values``.

    :func:`workstation.query.matches_value` without accent folding: text matches ignoring
    case, as Orthanc matches names, but ``Muller`` does not match ``Müller`` (no PACS we
    know of promises that; the window asks with ``M*LL*`` and refines on its side).
    ``ignore_case=False`` matches text case-sensitively (the local store's Q/R SCP does so
    for every VR but PN, as Orthanc does).
    """
    query = query.strip()
    if not query or query == "*":
        return True  # universal matching, PS3.4 C.2.2.2.3
    if not values:
        return False
    try:
        return any(
            matches_value(vr, query, value, accents=False, ignore_case=ignore_case)
            for value in values
        )
    except InvalidInput as exc:
        raise QueryError(str(exc)) from None


def matches(
    vr: str, query: tuple[str, ...], values: tuple[str, ...], *, ignore_case: bool = True
) -> bool:
    """Whether a (possibly multi-valued, OR-ed) query key matches an entity's values."""
    return not query or any(match_one(vr, q, values, ignore_case=ignore_case) for q in query)


@dataclass
class ArchivedInstance:
    """One SOP instance held in memory: its Part-10 bytes and a decoded header."""

    part10: bytes
    header: Dataset = field(repr=False)
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    patient_key: str = ""
    study_uid: str = ""
    series_uid: str = ""

    @classmethod
    def from_part10(cls, part10: bytes) -> ArchivedInstance:
        header = dcmread(BytesIO(part10), stop_before_pixels=True)
        header.walk(lambda ds, elem: None)  # decode every element now: read-only afterwards
        patient = str(header.get("PatientID", "") or "")
        if not patient:
            patient = f"{header.get('PatientName', '')}|{header.get('PatientBirthDate', '')}"
        return cls(
            part10=part10,
            header=header,
            sop_class_uid=str(header.get("SOPClassUID", "")),
            sop_instance_uid=str(header.get("SOPInstanceUID", "")),
            patient_key=patient,
            study_uid=str(header.get("StudyInstanceUID", "")),
            series_uid=str(header.get("SeriesInstanceUID", "")),
        )

    def dataset(self) -> Dataset:
        """A fresh, independent decode of the instance (safe to hand to pynetdicom)."""
        return dcmread(BytesIO(self.part10))

    def key(self, level: int) -> str:
        return (self.patient_key, self.study_uid, self.series_uid, self.sop_instance_uid)[level]


@dataclass(frozen=True)
class _Key:
    tag: BaseTag
    keyword: str
    vr: str
    query: tuple[str, ...]


#: One key of a C-FIND or retrieve Identifier (public name, for the local store's Q/R SCP).
Key = _Key


def identifier_keys(identifier: Dataset) -> list[Key]:
    """The keys of an Identifier: tag, keyword, VR and matching values (none for keys that
    are not matched: sequences, QueryRetrieveLevel, counts...), as the demo matches them."""
    return Catalogue._keys(identifier)


class Catalogue:
    """The matching engine over an immutable list of instances (thread-safe to query)."""

    def __init__(self, instances: Sequence[ArchivedInstance]) -> None:
        self.instances = tuple(instances)
        self._groups: list[dict[str, list[ArchivedInstance]]] = [{} for _ in LEVELS]
        for instance in self.instances:
            for level, groups in enumerate(self._groups):
                groups.setdefault(instance.key(level), []).append(instance)
        self._series_of_study: dict[str, set[str]] = {}
        self._studies_of_patient: dict[str, set[str]] = {}
        self._series_of_patient: dict[str, set[str]] = {}
        for instance in self.instances:
            self._series_of_study.setdefault(instance.study_uid, set()).add(instance.series_uid)
            self._studies_of_patient.setdefault(instance.patient_key, set()).add(instance.study_uid)
            self._series_of_patient.setdefault(instance.patient_key, set()).add(instance.series_uid)

    def group(self, level: int, key: str) -> list[ArchivedInstance]:
        return self._groups[level].get(key, [])

    def computed(self, keyword: str, instance: ArchivedInstance) -> object:
        """The value of a computed key (PS3.4 C.3.2-C.3.4) for the entity of ``instance``."""
        study = self.group(STUDY, instance.study_uid)
        patient = instance.patient_key
        if keyword == "ModalitiesInStudy":
            return sorted({str(i.header.get("Modality", "")) for i in study} - {""})
        if keyword == "SOPClassesInStudy":
            return sorted({i.sop_class_uid for i in study})
        if keyword == "NumberOfStudyRelatedSeries":
            return len(self._series_of_study[instance.study_uid])
        if keyword == "NumberOfStudyRelatedInstances":
            return len(study)
        if keyword == "NumberOfSeriesRelatedInstances":
            return len(self.group(SERIES, instance.series_uid))
        if keyword == "NumberOfPatientRelatedStudies":
            return len(self._studies_of_patient[patient])
        if keyword == "NumberOfPatientRelatedSeries":
            return len(self._series_of_patient[patient])
        if keyword == "NumberOfPatientRelatedInstances":
            return len(self.group(PATIENT, patient))
        raise KeyError(keyword)

    # -- identifiers ---------------------------------------------------------------------

    @staticmethod
    def level_of(identifier: Dataset, patient_root: bool) -> int:
        """The QueryRetrieveLevel, checked against the information model (PS3.4 C.6)."""
        text = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        if text not in LEVELS:
            raise QueryError(f"missing or unknown QueryRetrieveLevel {text!r}")
        level = LEVELS.index(text)
        if level == PATIENT and not patient_root:
            raise QueryError("the Study Root model has no PATIENT level (PS3.4 C.6.2)")
        return level

    @staticmethod
    def _keys(identifier: Dataset) -> list[_Key]:
        keys = []
        for elem in identifier:
            if elem.tag.group in (0x0000, 0x0002) or elem.tag.element == 0 or elem.tag.is_private:
                continue
            keyword = elem.keyword or keyword_for_tag(elem.tag)
            vr = elem.VR
            if vr in ("UN", None):
                try:
                    vr = dictionary_VR(elem.tag)
                except KeyError:
                    vr = "UN"
            query = () if vr == "SQ" or keyword in _NOT_MATCHED else _strings(elem.value)
            keys.append(_Key(elem.tag, keyword, vr, query))
        return keys

    def _instance_matches(self, instance: ArchivedInstance, keys: list[_Key]) -> bool:
        for key in keys:
            if not key.query:
                continue
            if key.keyword in _MATCHED_COMPUTED:
                values = _strings(self.computed(key.keyword, instance))
            else:
                elem = instance.header.get(key.tag)
                values = _strings(elem.value) if isinstance(elem, DataElement) else ()
            if not matches(key.vr, key.query, values):
                return False
        return True

    def _matching_entities(self, level: int, keys: list[_Key]) -> list[str]:
        found: dict[str, None] = {}
        for instance in self.instances:
            entity = instance.key(level)
            if entity not in found and self._instance_matches(instance, keys):
                found[entity] = None
        return list(found)

    # -- C-FIND --------------------------------------------------------------------------

    def find(
        self, identifier: Dataset, patient_root: bool, retrieve_aet: str = ""
    ) -> Iterator[Dataset]:
        """Yield one response Identifier per matching entity (PS3.4 C.4.1.2.2).

        Raises :class:`QueryError` before the first response if the Identifier is invalid.
        """
        level = self.level_of(identifier, patient_root)
        keys = self._keys(identifier)
        entities = self._matching_entities(level, keys)
        log.debug(
            "C-FIND %s on %s: %d matches",
            LEVELS[level],
            ",".join(k.keyword for k in keys if k.query),
            len(entities),
        )
        return self._responses(level, keys, entities, patient_root, retrieve_aet)

    def _responses(
        self,
        level: int,
        keys: list[_Key],
        entities: list[str],
        patient_root: bool,
        retrieve_aet: str,
    ) -> Iterator[Dataset]:
        first_unique = PATIENT if patient_root else STUDY
        for entity in entities:
            representative = self.group(level, entity)[0]
            rsp = Dataset()
            rsp.SpecificCharacterSet = "ISO_IR 192"
            rsp.QueryRetrieveLevel = LEVELS[level]
            for unique in range(first_unique, level + 1):
                tag = _UNIQUE_TAGS[unique]
                if tag in representative.header:
                    rsp[tag] = copy.deepcopy(representative.header[tag])
            for key in keys:
                if key.keyword in ("SpecificCharacterSet", "QueryRetrieveLevel"):
                    continue
                rsp[key.tag] = self._response_element(key, level, representative, retrieve_aet)
            yield rsp

    def _response_element(
        self, key: _Key, level: int, instance: ArchivedInstance, retrieve_aet: str
    ) -> DataElement:
        keyword = key.keyword
        value: object = None
        if keyword == "RetrieveAETitle":
            value = retrieve_aet or None
        elif keyword == "InstanceAvailability":
            value = "ONLINE"
        elif attribute_level(keyword) > level:
            value = None  # below the query level: zero length (PS3.4 C.4.1.1.3.2)
        elif keyword in _COMPUTED:
            value = self.computed(keyword, instance)
        elif key.tag in instance.header:
            return copy.deepcopy(instance.header[key.tag])
        if key.vr == "SQ":
            return DataElement(key.tag, "SQ", [])
        return DataElement(key.tag, key.vr, value)

    # -- C-MOVE / C-GET ------------------------------------------------------------------

    def retrieve(self, identifier: Dataset, patient_root: bool) -> list[ArchivedInstance]:
        """The instances a C-MOVE or C-GET Identifier selects (PS3.4 C.4.2.2.1, C.4.3.2.1).

        The unique key of the level must be given (a single UID or a list); every instance of
        every matching entity is returned, in archive order.
        """
        level = self.level_of(identifier, patient_root)
        unique = _UNIQUE_KEYS[level]
        if not _strings(identifier.get(unique)):
            raise QueryError(f"a {LEVELS[level]} level retrieve needs {unique}")
        keys = self._keys(identifier)
        entities = self._matching_entities(level, keys)
        return [instance for entity in entities for instance in self.group(level, entity)]
