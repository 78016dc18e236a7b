"""What a retrieve reports: progress while it runs, and an outcome that says what arrived
(:class:`RetrieveOutcome`, with the sentence :func:`retrieve_message` writes for it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from workstation.dimse.status import Category, StatusInfo
from workstation.nodes import RemoteNode, RetrieveMethod

if TYPE_CHECKING:
    from workstation.dimse.retrieval import Retrieval


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


def retrieve_message(
    r: Retrieval,
    state: RetrieveState,
    final: StatusInfo | None,
    received: int,
    missing: tuple[str, ...],
    seconds: float,
    destination_hint: str,
) -> str:
    """The sentence a retrieve ends with: what arrived, then why the rest did not (what the
    PACS answered, our store's write failures, the idle timeout), and what to do about it."""
    total = len(r.expected) if r.expected is not None else r.expected_count
    of = f" of {total}" if total is not None else ""
    noun = "instance" if received == 1 else "instances"
    rate = f" ({format_rate(r.bytes, seconds)})" if seconds > 0 and r.bytes else ""
    got = f"received {received}{of} {noun} in {seconds:.1f} s{rate}"
    if r.already_stored:
        got += f" ({r.already_stored} already in the local store)"
    if r.conflicts:
        count = len(set(r.conflicts))
        got += (
            f"; {count} arrived with content differing from the stored "
            f"cop{'ies' if count != 1 else 'y'}: the stored kept, the new set aside in "
            "the store's .conflicts folder"
        )
    failures, why = r.write_failures()
    disk = ""
    if failures:
        disk = (
            f"our local store could not write {failures} "
            f"instance{'s' if failures != 1 else ''} ({why}): free space on its disk "
            "(or fix the store folder), then Retry"
        )
    notes = _notes(r)
    if final is not None and final.code == 0xA801 and not r.lists_refused:
        return (
            f"the PACS does not know AE {r.move_destination} as a move destination; "
            f"add {r.move_destination} at {destination_hint} to its configuration"
        )
    if disk and state is not RetrieveState.DONE:
        reasons = [disk]
        if final is not None and final.category in (Category.FAILURE, Category.WARNING):
            reasons.append(f"the PACS then answered {final}")
        if missing:
            reasons.append(f"{len(missing)} instance{'s' if len(missing) != 1 else ''} missing")
        return "; ".join([got, *reasons, *notes])
    if state is RetrieveState.FAILED and not received and r.nothing_matched():
        return (
            f"the PACS has nothing matching: it answered {final} with no sub-operation "
            "(nothing to send)"
        )
    if (
        state is RetrieveState.FAILED
        and not received
        and r.listed_nothing
        and not r.expected_count
        and final is not None
    ):
        return f"the PACS has nothing matching: its listing found no instance; it answered {final}"
    if (
        r.method is RetrieveMethod.MOVE
        and final is not None
        and final.category is Category.FAILURE
        and not received
    ):
        # Many PACS (Orthanc among them) answer an unknown destination with 0xC000.
        return (
            f"{got}; the PACS answered {final}; check that it knows AE "
            f"{r.move_destination} as a move destination at {destination_hint}"
        )
    if state is RetrieveState.DONE:
        if r.expected is None:
            got += " (checked by count only: the PACS did not list the instances)"
        return "; ".join([got, *notes])
    if state is RetrieveState.CANCELLED:
        return "; ".join([f"cancelled; {got}", *notes])
    reasons = []
    if final is not None and final.category in (Category.FAILURE, Category.WARNING):
        reasons.append(f"the PACS answered {final}")
    failed = r.finished_counts["failed"]
    if failed:
        reasons.append(f"it reported {failed} failed sub-operation{'s' if failed != 1 else ''}")
    if r.error:
        reasons.append(r.error)
    if r.stop_reason:
        reasons.append(r.stop_reason)
    if missing and r.retry_useless:
        reasons.append(f"{len(missing)} instance{'s' if len(missing) != 1 else ''} not retrieved")
    elif missing:
        reasons.append(
            f"{len(missing)} instance{'s' if len(missing) != 1 else ''} missing "
            "(retry fetches only those)"
        )
    elif r.expected is None:
        announced = max(r.announced(), r.expected_count or 0)
        if announced > received:
            reasons.append(f"{announced - received} of {announced} did not arrive")
        elif not received:
            reasons.append("nothing arrived")
    return "; ".join([got, *reasons, *notes])


def _notes(r: Retrieval) -> list[str]:
    """What the user should know besides what arrived: how requests were sent, extras."""
    notes = []
    if r.lists_refused:
        level, count = r.lists_refused[0]
        notes.append(
            f"{r.node.label} refused a request naming {count} {level} UIDs, so they "
            f"were asked for one at a time (set the node to one UID per request to skip "
            "the refused list)"
        )
    elif r.one_per_uid:
        notes.append(f"sent one request per UID ({r.node.label} takes no UID lists)")
    if r.unrequested:
        count = len(r.unrequested)
        notes.append(
            f"{count} instance{'s' if count != 1 else ''} nobody asked for also arrived "
            "and w" + ("ere" if count != 1 else "as") + " stored"
        )
    return notes


def format_rate(size: int, seconds: float) -> str:
    per_second = size / seconds
    if per_second >= 1e6:
        return f"{per_second / 1e6:.1f} MB/s"
    return f"{per_second / 1e3:.0f} kB/s"
