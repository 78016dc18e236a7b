"""What a retrieve reports: progress while it runs, and an outcome that says what arrived."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from workstation.dimse.status import StatusInfo
from workstation.nodes import RemoteNode


class RetrieveState(StrEnum):
    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ExpectedInstance:
    """An instance the PACS holds for the request, as listed by an IMAGE-level C-FIND."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str = ""
    patient_id: str = ""


@dataclass(frozen=True)
class RetrieveProgress:
    """A snapshot while a retrieve runs.

    ``completed``, ``remaining``, ``failed`` and ``warning`` are the PACS's sub-operation
    counters from its pending responses (``None`` until it sends them: some never do);
    ``received`` is what we counted ourselves, ``expected`` comes from the C-FIND listing.
    """

    received: int
    expected: int | None
    completed: int | None = None
    remaining: int | None = None
    failed: int | None = None
    warning: int | None = None
    bytes: int = 0
    elapsed: float = 0.0

    @property
    def fraction(self) -> float | None:
        """How far along, 0..1: from the PACS's counters, else from received/expected."""
        if self.completed is not None:
            done = self.completed + (self.failed or 0) + (self.warning or 0)
            # The counters add up over the requests of a retrieve while ``remaining`` is the
            # current request's: against the listing's total they never run backwards.
            if self.expected:
                return min(1.0, max(done, self.received) / self.expected)
            if self.remaining is not None and done + self.remaining:
                return done / (done + self.remaining)
        if self.expected:
            return min(1.0, self.received / self.expected)
        return None

    @property
    def rate(self) -> float:
        """Instances received per second."""
        return self.received / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes / 1e6 / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True)
class RetrieveOutcome:
    """How a retrieve ended and exactly what arrived.

    ``missing`` lists the SOP Instance UIDs the PACS holds for the request that did not arrive;
    ``failed_uids`` those the PACS reported in FailedSOPInstanceUIDList. Pass the outcome to
    :func:`workstation.retry` to fetch only what is missing.
    """

    node: RemoteNode
    method: str
    state: RetrieveState
    message: str
    status: StatusInfo | None
    expected: int | None
    received: int
    completed: int | None
    failed: int | None
    warning: int | None
    missing: tuple[str, ...]
    failed_uids: tuple[str, ...]
    seconds: float
    bytes: int
    instances: tuple[ExpectedInstance, ...] = field(default=(), repr=False)
    #: Listed instances not asked for because the store already held them (only_missing).
    already_stored: int = 0
    #: Instances that arrived with content differing from the copy the store already held:
    #: the stored one was kept, the new one set aside (``<store>/.conflicts``).
    conflicts: tuple[str, ...] = ()
    #: How many associations carried the requests (more than one: series in parallel).
    associations: int = 1
    #: The requests named one UID each: the node takes no UID lists, or refused one now.
    one_per_uid: bool = False
    #: The PACS refused a request naming several UIDs (then asked one at a time): remember
    #: it for the node (``RemoteNode.uid_lists=False``) to skip the refused request next time.
    uid_list_refused: bool = False
    #: Instances that arrived during the retrieve that no running retrieve asked for (stored).
    unrequested: int = 0
    #: Instances our local store failed to write (e.g. a full disk): they are missing.
    write_failures: int = 0

    @property
    def ok(self) -> bool:
        return self.state is RetrieveState.DONE

    @property
    def cancelled(self) -> bool:
        return self.state is RetrieveState.CANCELLED

    @property
    def missing_instances(self) -> tuple[ExpectedInstance, ...]:
        missing = set(self.missing)
        return tuple(i for i in self.instances if i.sop_instance_uid in missing)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("instances")
        data["node"] = str(self.node)
        data["state"] = str(self.state)
        data["status"] = (
            None
            if self.status is None
            else {"code": f"0x{self.status.code:04X}", "meaning": self.status.meaning}
        )
        data["missing"] = list(self.missing)
        data["failed_uids"] = list(self.failed_uids)
        data["conflicts"] = list(self.conflicts)
        return data

    def __str__(self) -> str:
        return f"{self.state}: {self.message}"
