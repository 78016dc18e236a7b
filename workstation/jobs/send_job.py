"""Send jobs of the queue: a study (or some of its series) of the local store, C-STOREd to a node.

The queue runs a send job like a retrieve (worker thread, per-node limit, cancel, retry,
persistence); this module holds what is particular to sends: which instances an attempt
sends, and what its :class:`~workstation.dimse.send.SendOutcome` makes of the job.

A job's ``missing`` lists the SOP Instance UIDs still to send: empty for a new job (the whole
selection goes), else those the last attempt did not store (refused, failed, or not reached
because of a cancel or quitting). The next attempt - Retry, or the resume at the next start
after a quit - sends only these. ``details`` names each of them with the reason.
Nothing here logs patient data; the label is for display and the job file only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workstation.cancel import CancelToken
from workstation.dimse.send import SendOutcome, SendProgress, SendSelection, SendState, send
from workstation.dimse.send import select_from_store as _select_from_store
from workstation.errors import InvalidInput
from workstation.jobs.model import JobState, RetrieveJob
from workstation.query import Level

if TYPE_CHECKING:
    from workstation.store import LocalStore

#: Why an instance of the selection was not sent because the store no longer holds it.
GONE = "not sent: the local store no longer holds it"


def selection(store: LocalStore, study_uid: str, series_uids: tuple[str, ...]) -> SendSelection:
    """The instances of a study (or of some of its series) the store holds; InvalidInput
    when it holds none of one of them."""
    if series_uids:
        return _select_from_store(store, series_uids=series_uids)
    return _select_from_store(store, study_uids=[study_uid])


def label(store: LocalStore, study_uid: str, series_uids: tuple[str, ...]) -> str:
    """What the queue shows for a send: patient and study (and series) from the store."""
    study = store.index.study(study_uid)
    if study is None:
        return study_uid
    text = " — ".join(p for p in (study.patient_name, study.study_description) if p)
    if series_uids:
        names = {s.series_uid: s for s in store.index.series(study_uid)}
        if len(series_uids) == 1 and series_uids[0] in names:
            entry = names[series_uids[0]]
            what = entry.series_description or f"{entry.modality} series"
        else:
            what = f"{len(series_uids)} series"
        text = f"{text} — {what}" if text else what
    return text or study_uid


@dataclass(frozen=True)
class SendAttempt:
    """One attempt: its outcome, the instances sent before it, those no longer in the store."""

    outcome: SendOutcome
    before: int
    gone: tuple[str, ...] = ()


def attempt_total(job: RetrieveJob) -> int:
    """How many instances the job covers (``expected``, counted at submit time)."""
    return job.expected or 0


def run(
    job: RetrieveJob,
    store: LocalStore,
    *,
    calling_aet: str,
    cancel: CancelToken,
    on_progress: Callable[[SendProgress], None],
) -> SendAttempt:
    """Send what the job still has to send (network and disk: never under the queue's lock).

    Raises :class:`InvalidInput` when the store holds none of it any more, and the
    :class:`~workstation.errors.NetworkError` of an association that could not be opened."""
    chosen = selection(store, job.study_uid, job.series_uids if job.level is Level.SERIES else ())
    items = chosen.items
    gone: tuple[str, ...] = ()
    before = 0
    if job.missing:
        wanted = set(job.missing)
        items = tuple(i for i in items if i.sop_instance_uid in wanted)
        held = {i.sop_instance_uid for i in items}
        gone = tuple(uid for uid in job.missing if uid not in held)
        before = max(0, attempt_total(job) - len(job.missing))
        if not items:
            raise InvalidInput(
                f"the local store no longer holds the {len(job.missing)} instance(s) still "
                "to send: import them again, or remove the job"
            )

    def progress(p: SendProgress) -> None:
        on_progress(
            SendProgress(
                sent=p.sent + before,
                failed=p.failed + len(gone),
                total=p.total + before + len(gone),
                bytes=p.bytes,
                total_bytes=p.total_bytes,
                elapsed=p.elapsed,
            )
        )

    outcome = send(
        job.node,
        SendSelection(items),
        store=store,  # selects nothing more (no UIDs given); for the audit trail
        calling_aet=calling_aet,
        on_progress=progress,
        cancel=cancel,
    )
    return SendAttempt(outcome, before, gone)


def _plural(n: int, word: str = "instance") -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def conclude(job: RetrieveJob, attempt: SendAttempt) -> tuple[JobState, str, dict[str, Any]]:
    """The job's state, message and other changes after an attempt.

    ``total`` counts the whole selection: the instances sent by earlier attempts are included,
    so a retry that sends the last one ends "sent 13 of 13"."""
    outcome = attempt.outcome
    not_sent = [(r.sop_instance_uid, r.reason) for r in outcome.failed]
    not_sent += [(uid, GONE) for uid in attempt.gone]
    total = attempt.before + outcome.total + len(attempt.gone)
    sent = total - len(not_sent)
    cancelled = outcome.state is SendState.CANCELLED
    if cancelled:
        state = JobState.CANCELLED
    elif not not_sent:
        state = JobState.DONE
    elif sent:
        state = JobState.PARTIAL
    else:
        state = JobState.FAILED
    message = f"sent {sent} of {_plural(total)}"
    if outcome.converted:
        message += f" ({outcome.converted} decompressed or re-encoded for the node)"
    if cancelled:
        message = f"cancelled: {message}; {len(not_sent)} still to send"
    elif not_sent:
        reasons = Counter(reason for _, reason in not_sent).most_common()
        shown = "; ".join(f"{n} × {why}" if n > 1 else why for why, n in reasons[:3])
        more = f"; and {len(reasons) - 3} other reasons" if len(reasons) > 3 else ""
        message += f"; {len(not_sent)} not sent: {shown}{more}"
    progress = SendProgress(
        sent=sent,
        failed=len(not_sent),
        total=total,
        bytes=outcome.bytes,
        total_bytes=outcome.bytes,
        elapsed=outcome.seconds,
    )
    changes: dict[str, Any] = {
        "expected": total,
        "missing": tuple(uid for uid, _ in not_sent),
        "details": tuple(not_sent),
        "send_progress": progress,
    }
    return state, message, changes


def details_text(job: RetrieveJob) -> str:
    """The instances a send did not store, one a line: "UID: why" (no patient data)."""
    return "\n".join(f"{uid or '(unreadable file)'}: {why}" for uid, why in job.details)
