"""The local store: received and imported instances as files, indexed in SQLite."""

from workstation.store.batch import CommitResult
from workstation.store.header import read_header
from workstation.store.importer import ImportReport
from workstation.store.index import StoreIndex
from workstation.store.layout import instance_path, validate_uid
from workstation.store.local_store import LocalStore
from workstation.store.records import (
    InstanceEntry,
    InstanceRecord,
    PatientEntry,
    SeriesEntry,
    StoredInstance,
    StudyEntry,
)
from workstation.store.recovery import ReconcileReport, reconcile
from workstation.store.writer import WriteResult, clean_incoming, write_atomic

__all__ = [
    "CommitResult",
    "ImportReport",
    "InstanceEntry",
    "InstanceRecord",
    "LocalStore",
    "PatientEntry",
    "ReconcileReport",
    "SeriesEntry",
    "StoreIndex",
    "StoredInstance",
    "StudyEntry",
    "WriteResult",
    "clean_incoming",
    "instance_path",
    "read_header",
    "reconcile",
    "validate_uid",
    "write_atomic",
]
