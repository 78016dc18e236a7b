"""What a Retrieve click queues: which node each selected study or series comes from.

Qt-free: the window's Retrieve button uses it, and nothing here needs the window.
:class:`QueuePlan` is what to queue; the C-MOVE/C-GET requests of one retrieve are a
:class:`workstation.dimse.plan.RetrievePlan`. A study found on several nodes is fetched from the
first of its sources that is still configured; a study already queued or running is not queued
twice.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from workstation.jobs.model import JobKind, RetrieveJob
from workstation.nodes import RemoteNode
from workstation.results import SeriesRow, StudyRow


@dataclass(frozen=True)
class Submission:
    """The arguments of one :meth:`RetrieveQueue.submit` call."""

    node: RemoteNode
    study_uid: str
    series_uids: tuple[str, ...]
    label: str
    expected: int | None


@dataclass(frozen=True)
class QueuePlan:
    """The :meth:`RetrieveQueue.submit` calls to make, and what was left out."""

    submissions: tuple[Submission, ...]
    #: Labels of what was not queued, with the reason.
    skipped: tuple[str, ...]


def _busy(jobs: Iterable[RetrieveJob]) -> set[tuple[str, tuple[str, ...]]]:
    return {
        (j.study_uid, j.series_uids)
        for j in jobs
        if not j.is_finished and j.kind is JobKind.RETRIEVE  # a send does not fetch it
    }


def _node_for(sources: Iterable[str], nodes: Mapping[str, RemoteNode]) -> RemoteNode | None:
    for source in sources:
        if source in nodes:
            return nodes[source]
    return None


def plan_studies(
    rows: Iterable[StudyRow],
    nodes: Mapping[str, RemoteNode],
    jobs: Iterable[RetrieveJob],
    complete: Collection[str] = (),
) -> QueuePlan:
    """Whole-study retrieves, with ``expected`` from NumberOfStudyRelatedInstances.

    Of several studies, those the local store already holds whole (``complete``) are left
    out; one study asked for alone is retrieved all the same (its missing images, if any)."""
    rows = list(rows)
    busy = _busy(jobs)
    submissions: list[Submission] = []
    skipped: list[str] = []
    for row in rows:
        node = _node_for(row.sources, nodes)
        if node is None:
            skipped.append(f"{row.label}: its node is no longer configured")
        elif len(rows) > 1 and row.study_uid in complete:
            skipped.append(f"{row.label}: already complete in the local store")
        elif (row.study_uid, ()) in busy:
            skipped.append(f"{row.label}: already in the queue")
        else:
            busy.add((row.study_uid, ()))
            submissions.append(Submission(node, row.study_uid, (), row.label, row.instance_count))
    return QueuePlan(tuple(submissions), tuple(skipped))


def plan_series(
    study: StudyRow,
    series: Iterable[SeriesRow],
    nodes: Mapping[str, RemoteNode],
    jobs: Iterable[RetrieveJob],
) -> QueuePlan:
    """One retrieve of the chosen series of ``study`` (from the node that listed them)."""
    chosen = [s for s in series if s.study_uid == study.study_uid or not s.study_uid]
    if not chosen:
        return QueuePlan((), ())
    node = _node_for([chosen[0].source, *study.sources], nodes)
    uids = tuple(s.series_uid for s in chosen)
    if node is None:
        return QueuePlan((), (f"{study.label}: its node is no longer configured",))
    if (study.study_uid, uids) in _busy(jobs):
        return QueuePlan((), (f"{study.label}: these series are already in the queue",))
    counts = [s.instance_count for s in chosen]
    expected = None if any(c is None for c in counts) else sum(c or 0 for c in counts)
    if len(chosen) == 1:
        what = f"series {chosen[0].description}" if chosen[0].description else "1 series"
    else:
        what = f"{len(chosen)} series"
    label = f"{study.label} — {what}"
    return QueuePlan((Submission(node, study.study_uid, uids, label, expected),), ())
