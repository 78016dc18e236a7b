"""Planning a retrieve: which instances the PACS holds for a query, and which requests to send.

Before a C-MOVE or C-GET (or, for a C-MOVE of explicit UIDs, while it runs: see
:mod:`.retrieve`) we list, with C-FINDs on one association, every instance the request
covers (study -> series -> image, hierarchically as PS3.4 C.4.1.3.1 requires). That list is what
the completion check compares the arrivals with, what names the missing instances, and, for
C-GET, which SOP classes to propose. A query without the unique key of its level (e.g.
``PatientID=...`` at STUDY level) is first resolved to the UIDs that match it.
"""

from __future__ import annotations

import copy
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from workstation.dimse.outcome import ExpectedInstance
from workstation.dimse.status import Category, describe
from workstation.errors import DimseTimeout, InvalidInput, OperationFailed
from workstation.identifiers import RawIdentifier
from workstation.query import InformationModel, Level, Query

log = logging.getLogger(__name__)

_UNIQUE_KEYS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")


def split_uids(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split("\\") if v.strip()]


@dataclass(frozen=True)
class RetrievePlan:
    """The C-MOVE/C-GET identifiers to send and, if listed, the instances they should bring."""

    requests: tuple[Dataset, ...]
    instances: tuple[ExpectedInstance, ...] | None
    #: Without a listing, how many instances the PACS says the request covers (if it says).
    count: int | None = None

    @property
    def sop_classes(self) -> set[str]:
        return {i.sop_class_uid for i in self.instances or () if i.sop_class_uid}


@dataclass(frozen=True)
class Expectation:
    """What a retrieve expects to arrive, decided by its plan when it starts.

    ``instances`` from a listing (then arrivals are checked one by one), else ``count`` (from
    NumberOf*RelatedInstances or the caller) and ``scope`` (the level's unique key and the
    UIDs asked for, to tell which arrivals belong to this retrieve). A C-MOVE that lists
    while it runs starts with ``scope`` and gets its listing later
    (:meth:`~workstation.dimse.retrieval.Retrieval.expect_listed`).
    """

    instances: tuple[ExpectedInstance, ...] | None = None
    count: int | None = None
    scope: tuple[str, set[str]] | None = None
    #: Listed instances left out because the store already held them (only_missing).
    already_stored: int = 0
    #: The requests go out one UID each (the node takes no UID lists).
    one_per_uid: bool = False


class _Match:
    """A listing match read straight from its bytes: ``match.SOPInstanceUID`` and
    ``match.get(keyword, default)`` as on a Dataset, without building one (a retrieve of
    100,000 instances lists 100,000 of them)."""

    __slots__ = ("raw",)

    def __init__(self, raw: RawIdentifier) -> None:
        self.raw = raw

    def get(self, keyword: str, default: Any = None) -> Any:
        if keyword not in self.raw.keywords():
            return default
        return self.raw.text(keyword)

    def __getattr__(self, keyword: str) -> str:
        return self.raw.text(keyword)


def _find_all(assoc: Any, model: InformationModel, ds: Dataset) -> list[_Match]:
    """Every match of one C-FIND, once per unique key of its level.

    Some SCPs answer one match per instance at every level (a study of 100 instances comes
    back 100 times): kept as they come, a patient retrieve would send one listing C-FIND per
    duplicate below it.
    """
    try:
        key: str | None = Level(str(ds.QueryRetrieveLevel)).unique_key
    except (AttributeError, ValueError):
        key = None
    matches = []
    seen: set[str] = set()
    for status, match, _ in assoc.find_raw(ds, model.find_uid):
        if status < 0:
            raise DimseTimeout("the PACS stopped answering while we listed the instances")
        info = describe(status)
        if info.category is Category.PENDING:
            if match is None:
                continue
            found = _Match(RawIdentifier(match.data, implicit_vr=match.implicit_vr))
            value = str(found.get(key, "") or "") if key else ""
            if value:
                if value in seen:
                    continue
                seen.add(value)
            matches.append(found)
        elif info.category is Category.FAILURE:
            raise OperationFailed(f"listing the instances failed: {info}", info.code)
    return matches


def _identifier(level: Level, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level.value
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


class Planner:
    """Runs the listing C-FINDs on an open association that accepted the query's find model.

    ``charset``: the node's character set, for a query with non-ASCII values.
    """

    def __init__(self, assoc: Any, query: Query, charset: str | None = None) -> None:
        if query.model is InformationModel.WORKLIST or query.level is None:
            raise InvalidInput("retrieve needs a patient root or study root query, not a worklist")
        self.assoc = assoc
        self.query = query
        self.model = query.model
        self.patient_root = query.model is InformationModel.PATIENT_ROOT
        self.charset = charset

    def _find(self, level: Level, **keys: str) -> list[_Match]:
        return _find_all(self.assoc, self.model, _identifier(level, **keys))

    def _patient_key(self, patient_id: str) -> dict[str, str]:
        return {"PatientID": patient_id} if self.patient_root else {}

    def resolve(self) -> list[_Match]:
        """Matches at the query's level, with the unique keys of that level and above."""
        level = self.query.level
        assert level is not None
        ds = self.query.identifier(charset=self.charset)
        depth = list(Level).index(level)
        wanted = list(_UNIQUE_KEYS[1 : depth + 1])
        if self.patient_root or level in (Level.PATIENT, Level.STUDY):
            wanted.append("PatientID")
        if level is Level.IMAGE:
            wanted.append("SOPClassUID")
        for keyword in wanted:
            if keyword not in ds:
                setattr(ds, keyword, "")
        return _find_all(self.assoc, self.model, ds)

    def count(self) -> int | None:
        """How many instances the request covers, from the NumberOf*RelatedInstances keys.

        The fallback for a PACS that will not list instances at IMAGE level.
        """
        level = self.query.level
        if level is Level.IMAGE:
            return len(split_uids(self.query.get("SOPInstanceUID"))) or None
        key = {
            Level.PATIENT: "NumberOfPatientRelatedInstances",
            Level.STUDY: "NumberOfStudyRelatedInstances",
            Level.SERIES: "NumberOfSeriesRelatedInstances",
        }[level]  # type: ignore[index]
        ds = self.query.identifier(charset=self.charset)
        setattr(ds, key, "")
        try:
            matches = _find_all(self.assoc, self.model, ds)
        except (OperationFailed, DimseTimeout):
            return None
        counts = [m.get(key) for m in matches]
        if not counts or any(c in (None, "") for c in counts):
            return None
        return sum(int(c) for c in counts)

    def list_instances(self) -> tuple[ExpectedInstance, ...]:
        level = self.query.level
        assert level is not None
        instances: list[ExpectedInstance] = []
        for match in self.resolve():
            patient = str(match.get("PatientID", "") or self.query.get("PatientID") or "")
            study = str(match.get("StudyInstanceUID", "") or "")
            series = str(match.get("SeriesInstanceUID", "") or "")
            if level is Level.PATIENT:
                for st in self._find(Level.STUDY, PatientID=patient, StudyInstanceUID=""):
                    instances += self._study(patient, str(st.StudyInstanceUID))
            elif level is Level.STUDY:
                instances += self._study(patient, study)
            elif level is Level.SERIES:
                instances += self._series(patient, study, series)
            else:
                instances.append(
                    ExpectedInstance(
                        study,
                        series,
                        str(match.SOPInstanceUID),
                        str(match.get("SOPClassUID", "")),
                        patient,
                    )
                )
        unique = {i.sop_instance_uid: i for i in instances}
        return tuple(unique.values())

    def _study(self, patient: str, study: str) -> list[ExpectedInstance]:
        keys = self._patient_key(patient)
        found = self._find(Level.SERIES, **keys, StudyInstanceUID=study, SeriesInstanceUID="")
        instances = []
        for series in found:
            instances += self._series(patient, study, str(series.SeriesInstanceUID))
        return instances

    def _series(self, patient: str, study: str, series: str) -> list[ExpectedInstance]:
        keys = self._patient_key(patient)
        found = self._find(
            Level.IMAGE,
            **keys,
            StudyInstanceUID=study,
            SeriesInstanceUID=series,
            SOPInstanceUID="",
            SOPClassUID="",
        )
        return [
            ExpectedInstance(
                study, series, str(m.SOPInstanceUID), str(m.get("SOPClassUID", "")), patient
            )
            for m in found
        ]


def requests_for_query(query: Query) -> tuple[Dataset, ...]:
    """Identifiers straight from the query (no listing): its unique keys only (C.4.2.2.1)."""
    level = query.level
    assert level is not None
    if not query.get(level.unique_key):
        raise InvalidInput(
            f"a {level} retrieve without listing needs {level.unique_key}; give it with -q"
        )
    ds = Dataset()
    ds.QueryRetrieveLevel = level.value
    for keyword in _UNIQUE_KEYS:
        value = query.get(keyword)
        if value:
            setattr(ds, keyword, value)
    if level is Level.PATIENT:
        # List matching is defined for UIDs only (PS3.4 C.2.2.2.2): one request per patient.
        return split_request(ds)
    return (ds,)


def uid_list(request: Dataset) -> list[str]:
    """The values of the unique key of ``request``'s level (several: a list request)."""
    try:
        key = Level(str(request.QueryRetrieveLevel)).unique_key
    except (AttributeError, ValueError):
        return []
    value = request.get(key)
    if value is None or isinstance(value, str | bytes):
        return split_uids(value.decode("ascii", "replace") if isinstance(value, bytes) else value)
    return [str(v).strip() for v in value if str(v).strip()]  # a MultiValue


def split_request(request: Dataset) -> tuple[Dataset, ...]:
    """``request`` as one request per value of its level's unique key (itself if single)."""
    values = uid_list(request)
    if len(values) < 2:
        return (request,)
    key = Level(str(request.QueryRetrieveLevel)).unique_key
    singles = []
    for value in values:
        single = copy.deepcopy(request)
        setattr(single, key, value)
        singles.append(single)
    return tuple(singles)


def requests_for_instances(
    instances: Iterable[ExpectedInstance], level: Level, *, patient_root: bool
) -> tuple[Dataset, ...]:
    """C-MOVE/C-GET identifiers covering ``instances`` at ``level``, one per parent.

    Each identifier lists the UIDs of its level under one parent (UID list matching,
    PS3.4 C.2.2.2.2), so a study retrieve is one request and a retry of a few missing
    instances is one request per series.
    """
    groups: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for inst in instances:
        parent: tuple[str, ...]
        # Study root sends no PatientID: studies of several patients go in one request.
        patient = inst.patient_id if patient_root else ""
        if level is Level.PATIENT:
            parent, uid = (), inst.patient_id
        elif level is Level.STUDY:
            parent, uid = (patient,), inst.study_uid
        elif level is Level.SERIES:
            parent, uid = (patient, inst.study_uid), inst.series_uid
        else:
            parent, uid = (patient, inst.study_uid, inst.series_uid), inst.sop_instance_uid
        if level is Level.PATIENT:
            # List matching is defined for UIDs only (PS3.4 C.2.2.2.2): PatientID is not one,
            # so a retrieve of several patients is one request per patient.
            parent = (uid,)
        if uid not in groups[parent]:
            groups[parent].append(uid)
    requests = []
    for parent, uids in groups.items():
        ds = Dataset()
        ds.QueryRetrieveLevel = level.value
        if level is Level.PATIENT:
            parent = ()
        names: Sequence[str] = _UNIQUE_KEYS[: len(parent) + 1]
        values = [*parent, "\\".join(uids)]
        for keyword, value in zip(names, values, strict=True):
            if keyword == "PatientID" and not patient_root and level is not Level.PATIENT:
                continue
            setattr(ds, keyword, value)
        requests.append(ds)
    return tuple(requests)
