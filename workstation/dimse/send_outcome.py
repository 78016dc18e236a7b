"""What a send (C-STORE SCU, :mod:`workstation.dimse.send`) reports: per instance, as it goes,
and at its end.

:class:`InstanceResult` is one instance's fate (the node's status and its meaning, or why it
was not sent), :class:`SendProgress` the running counts a progress bar shows, and
:class:`SendOutcome` the whole send: its results, the files skipped, a one-line summary and
the reasons for what was not sent, most frequent first.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from workstation.nodes import RemoteNode


class SendState(StrEnum):
    DONE = "done"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class InstanceResult:
    """What became of one instance.

    ``status`` is the node's C-STORE status (``None`` when it was never sent); ``reason``
    says why it was not stored (the status's meaning and the peer's error comment, or why we
    did not send it), or what a warning status meant. ``transfer_syntax`` is the syntax it
    went in; ``converted`` when pydicom re-encoded it for a node that does not take its own.
    """

    sop_instance_uid: str
    sop_class_uid: str
    path: str
    sent: bool
    status: int | None = None
    reason: str = ""
    transfer_syntax: str = ""
    converted: bool = False
    error_comment: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "sop_class_uid": self.sop_class_uid,
            "path": self.path,
            "sent": self.sent,
            "status": None if self.status is None else f"0x{self.status:04X}",
            "reason": self.reason,
            "error_comment": self.error_comment,
            "transfer_syntax": self.transfer_syntax,
            "converted": self.converted,
        }


@dataclass(frozen=True)
class SendProgress:
    """A snapshot while a send runs: instances stored and failed so far, of ``total``."""

    sent: int
    failed: int
    total: int
    bytes: int = 0
    total_bytes: int = 0
    elapsed: float = 0.0

    @property
    def done(self) -> int:
        return self.sent + self.failed

    @property
    def fraction(self) -> float | None:
        return min(1.0, self.done / self.total) if self.total else None

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes / 1e6 / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True)
class SendOutcome:
    """How a send ended: one :class:`InstanceResult` per instance, in the order sent."""

    node: RemoteNode
    state: SendState
    results: tuple[InstanceResult, ...]
    skipped: tuple[str, ...] = ()
    seconds: float = 0.0
    bytes: int = 0
    #: Why the send stopped early (the association failed, say), else "".
    message: str = ""
    associations: int = 0

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def sent(self) -> int:
        return sum(1 for r in self.results if r.sent)

    @property
    def failed(self) -> tuple[InstanceResult, ...]:
        """The instances not stored on the node (for a cancel: also those never tried)."""
        return tuple(r for r in self.results if not r.sent)

    @property
    def converted(self) -> int:
        return sum(1 for r in self.results if r.sent and r.converted)

    @property
    def ok(self) -> bool:
        return self.state is SendState.DONE

    def reasons(self) -> list[tuple[str, int]]:
        """Why instances were not sent, most frequent first: (reason, count)."""
        return Counter(r.reason for r in self.results if not r.sent).most_common()

    @property
    def summary(self) -> str:
        """One line: "sent 12 of 12 instances to ORTHANC@host:4242" and what went wrong."""
        text = f"sent {self.sent} of {self.total} instance{'s' if self.total != 1 else ''}"
        text += f" to {self.node}"
        if self.state is SendState.CANCELLED:
            text = f"cancelled: {text}"
        if self.converted:
            text += f" ({self.converted} decompressed or re-encoded for the node)"
        failed = [r for r in self.results if not r.sent]
        if self.state is not SendState.CANCELLED and failed:
            reasons = self.reasons()
            shown = "; ".join(f"{n} × {reason}" if n > 1 else reason for reason, n in reasons[:3])
            more = f"; and {len(reasons) - 3} other reasons" if len(reasons) > 3 else ""
            text += f"; {len(failed)} not sent: {shown}{more}"
        if self.skipped:
            n = len(self.skipped)
            text += f"; {n} file{'s' if n != 1 else ''} skipped (not DICOM)"
        return text

    def __str__(self) -> str:
        return self.summary

    def to_json(self) -> dict[str, Any]:
        return {
            "node": str(self.node),
            "state": str(self.state),
            "summary": self.summary,
            "total": self.total,
            "sent": self.sent,
            "failed": len(self.failed),
            "converted": self.converted,
            "skipped": list(self.skipped),
            "seconds": round(self.seconds, 3),
            "bytes": self.bytes,
            "message": self.message,
            "associations": self.associations,
            "instances": [r.to_json() for r in self.results],
        }
