"""The value objects of the local store: what goes into the index and what comes out of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class InstanceRecord:
    """One instance as the index stores it: header attributes plus where and how it arrived.

    Text values are decoded ``str`` (PN as DICOM writes it, e.g. ``Müller^Jürgen``), missing
    values are ``""``, missing numbers ``None``. ``path`` is relative to the store root, with
    forward slashes. ``duplicate`` marks an arrival whose identical bytes were already stored.
    """

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str = ""
    patient_id: str = ""
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    study_date: str = ""
    study_time: str = ""
    accession_number: str = ""
    study_description: str = ""
    referring_physician_name: str = ""
    modality: str = ""
    series_number: int | None = None
    series_description: str = ""
    body_part_examined: str = ""
    instance_number: int | None = None
    path: str = ""
    size: int = 0
    source_aet: str = ""
    received_at: datetime | None = None
    duplicate: bool = False


@dataclass(frozen=True)
class StoredInstance:
    """The result of storing one instance; ``path`` is absolute.

    ``conflict`` is set when the store already held a *different* version of the instance
    (same SOP Instance UID, other bytes): the stored version was kept, ``path`` is still its
    file, and the version that arrived was set aside at ``conflict`` for a person to look at.
    """

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    path: Path
    size: int
    duplicate: bool
    conflict: Path | None = None
    patient_id: str = ""


@dataclass(frozen=True)
class PatientEntry:
    """A patient of the index; ``study_count`` counts the studies a filter matched (all of
    them without a filter). The patient list is ordered by (``sort_name``, ``key``)."""

    key: int
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    study_count: int
    sort_name: str = ""


@dataclass(frozen=True)
class StoreCount:
    """How many patients and studies a filter matches."""

    patients: int
    studies: int


@dataclass(frozen=True)
class IndexChanges:
    """What commits after a change token touched (added, changed or removed); ``token`` is
    where to ask from next time. ``complete`` is False when older changes were forgotten:
    then reload everything."""

    token: int
    patient_keys: frozenset[int]
    study_uids: frozenset[str]
    complete: bool = True


@dataclass(frozen=True)
class StudyEntry:
    study_uid: str
    patient_key: int
    patient_id: str
    patient_name: str
    study_date: str
    study_time: str
    accession_number: str
    study_description: str
    referring_physician_name: str
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int


@dataclass(frozen=True)
class SeriesEntry:
    series_uid: str
    study_uid: str
    modality: str
    series_number: int | None
    series_description: str
    body_part_examined: str
    instance_count: int


@dataclass(frozen=True)
class InstanceEntry:
    sop_instance_uid: str
    sop_class_uid: str
    series_uid: str
    study_uid: str
    instance_number: int | None
    transfer_syntax_uid: str
    path: str
    size: int
    source_aet: str
    received_at: datetime | None
