"""Runs a study search on one or several nodes and streams the matches into the study table.

Each (node, query) pair is one background task. Its C-FIND runs in the window's helper process
(:mod:`workstation.dimse.find_helper`, which keeps the C-FIND's reading thread off the window's
GIL), and so does the per-row work: the client-side refine and each row's table cells
(:class:`.StudyCells`). The task only counts what comes and hands each batch of
``(row, cells)`` to a :class:`BatchBuffer`, the one throttle on the way to the table: it hands
the rows to the model ~5 times a second (each flush repaints the table), each time at most
what fits in :data:`FLUSH_BUDGET_MS` (and :data:`MAX_ROWS_PER_FLUSH`), the rest at the next
turn of the event loop, so the first studies show while the PACS still answers and no flush
freezes the window. The search is finished once every node answered and the buffer is
drained. Rows from an older search are dropped by generation number. Stop cancels every task
(C-CANCEL, then abort after a grace period, in :mod:`workstation.dimse.find`).

Counting: a name search sends up to three spellings to each node (see
:mod:`.criteria`), so a node answers the same study up to three times, and the same study
may come from several nodes; the client-side refine then drops what does not really match.
So each node's count is of the *distinct studies shown* from it, and the status says how many
of them are on more than one node, so the numbers add up (:meth:`StudySearch.status_text`).

Threads: the worker function of :meth:`StudySearch._run_query` touches no Qt object (the
buffer is thread-safe); everything else here runs on the GUI thread, checked by
:func:`.thread_guard.check_gui_thread`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from workstation.dimse.find_helper import FindOutcome, FindProcess
from workstation.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectionFailed,
    DimseTimeout,
    InvalidInput,
    NoAcceptedContext,
    OperationFailed,
)
from workstation.nodes import CHARSET_NAMES, RemoteNode, charset_label, other_charset
from workstation.query import Query
from workstation.results import StudyRow
from workstation.search import SearchCriteria
from workstation.ui.common.batch_buffer import BatchBuffer
from workstation.ui.common.table_model import Cells
from workstation.ui.common.tasks import Task, TaskContext, TaskRunner, describe_error
from workstation.ui.common.thread_guard import check_gui_thread
from workstation.ui.search.study_cells import StudyCells
from workstation.ui.search.study_model import StudyTableModel

log = logging.getLogger(__name__)

#: Matches one query may return before it is stopped (C-CANCEL) and the user asked to refine.
MAX_MATCHES_PER_QUERY = 5000
#: Rows added to the table per flush (~10 a second), at most.
MAX_ROWS_PER_FLUSH = 500
#: Milliseconds of the GUI thread one flush may take: fewer rows when the table grows.
FLUSH_BUDGET_MS = 8
#: Milliseconds between two flushes: each repaints the table (15-30 ms of a CPU), ~5 a second.
FLUSH_INTERVAL_MS = 200


@dataclass
class NodeOutcome:
    """How one node answered the current search."""

    name: str
    queries_left: int
    node: RemoteNode | None = None
    #: Responses received, over every query sent to the node (one study may answer several).
    answers: int = 0
    #: The distinct studies of this node that passed the refine: shown in the table.
    shown: set[str] = field(default_factory=set)
    #: The distinct studies of this node that the refine dropped (not what was typed).
    refined_out: set[str] = field(default_factory=set)
    limited: bool = False
    #: Why the node failed, as the core said it ("" while it did not).
    error: str = ""
    #: The same in a few plain words, e.g. "no connection".
    reason: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.error)

    @property
    def running(self) -> bool:
        return self.queries_left > 0


@dataclass
class _Answers:
    """What one query's worker saw; read on the GUI thread once the worker is done."""

    count: int = 0
    shown: set[str] = field(default_factory=set)
    refined_out: set[str] = field(default_factory=set)
    limited: bool = False


def plain_reason(exc: BaseException) -> str:
    """A few words a clinician can read for why a node failed (the detail is in the message)."""
    if isinstance(exc, ConnectionFailed):
        return "no connection"
    if isinstance(exc, AssociationRejected):
        return "refused to talk to us"
    if isinstance(exc, AssociationAborted):
        return "broke off the search"
    if isinstance(exc, DimseTimeout):
        return "stopped answering"
    if isinstance(exc, NoAcceptedContext):
        return "does not offer study search"
    if isinstance(exc, OperationFailed):
        return "answered with an error"
    return "the search failed"


@dataclass
class _Search:
    generation: int
    criteria: SearchCriteria
    started: float
    nodes: dict[str, NodeOutcome] = field(default_factory=dict)
    tasks: list[Task[Any]] = field(default_factory=list)
    stopped: bool = False
    #: Every node answered; ``finished`` is emitted once the buffer is drained.
    draining: bool = False

    @property
    def running(self) -> bool:
        return any(n.queries_left for n in self.nodes.values())


class StudySearch(QObject):
    """Owns the searches of the window: start, stop, stream into ``model``, report status."""

    started = Signal()
    #: Status text, e.g. "37 studies in 0.8 s — searching…".
    status_changed = Signal(str)
    #: The search ended (all nodes answered, failed or were stopped); the final status text.
    finished = Signal(str)
    #: (node name, message) when a node fails.
    node_failed = Signal(str, str)
    #: New study UIDs were added to the model (for the local-store lookup).
    rows_added = Signal(list)

    def __init__(
        self,
        model: StudyTableModel,
        runner: TaskRunner,
        calling_aet: Callable[[], str],
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.runner = runner
        self._calling_aet = calling_aet
        self._generation = 0
        self._current: _Search | None = None
        self.buffer = BatchBuffer(
            self._add_rows,
            interval_ms=FLUSH_INTERVAL_MS,
            max_items=MAX_ROWS_PER_FLUSH,
            budget_ms=FLUSH_BUDGET_MS,
            parent=self,
        )
        self.finder = FindProcess()
        self._ticker = QTimer(self)
        self._ticker.setInterval(250)
        self._ticker.timeout.connect(self._emit_status)

    @property
    def running(self) -> bool:
        return self._current is not None and self._current.running

    def start(self, criteria: SearchCriteria, nodes: list[RemoteNode]) -> None:
        """Stop any running search, empty the table and ask every node in ``nodes``."""
        check_gui_thread("StudySearch.start")
        self.stop(quiet=True)
        self._generation += 1
        self.buffer.clear()
        self.model.clear()
        queries = criteria.queries()
        search = _Search(self._generation, criteria, time.monotonic())
        self._current = search
        log.info("searching %s for %s", ", ".join(n.label for n in nodes), criteria.describe())
        self._ask(search, nodes, queries)

    def failures(self) -> list[NodeOutcome]:
        """The nodes of the current search that failed, in the order they were asked."""
        search = self._current
        return [] if search is None else [n for n in search.nodes.values() if n.failed]

    def retry_failed(self, resolve: Callable[[str], RemoteNode | None] | None = None) -> bool:
        """Ask the failed nodes of the finished search again; the rows shown stay.

        ``resolve(name)`` gives the node's current settings (it may have been fixed in the
        meantime); by default the node as it was asked. False when there is nothing to retry
        or the search still runs.
        """
        check_gui_thread("StudySearch.retry_failed")
        search = self._current
        if search is None or search.running:
            return False
        targets: list[RemoteNode] = []
        for outcome in search.nodes.values():
            node = (resolve(outcome.name) if resolve else None) or outcome.node
            if outcome.failed and node is not None:
                targets.append(node)
        if not targets:
            return False
        queries = search.criteria.queries()
        search.started = time.monotonic()
        search.stopped = search.draining = False
        for outcome in search.nodes.values():
            outcome.seconds = 0.0
        log.info("searching %s again", ", ".join(n.label for n in targets))
        self._ask(search, targets, queries)
        return True

    def _ask(self, search: _Search, nodes: Sequence[RemoteNode], queries: Sequence[Query]) -> None:
        """Send every query to every node (one task each) and say that the search runs."""
        for node in nodes:
            search.nodes[node.label] = NodeOutcome(node.label, len(queries), node)
            for query in queries:
                search.tasks.append(self._run_query(search, node, query))
        self._ticker.start()
        self.started.emit()
        self._emit_status()

    def stop(self, *, quiet: bool = False) -> None:
        """Stop every query of the running search (the rows found so far stay)."""
        check_gui_thread("StudySearch.stop")
        search = self._current
        if search is None or not search.running:
            return
        search.stopped = True
        for task in search.tasks:
            task.cancel()
        if not quiet:
            log.info("search stopped by the user")
            self._emit_status()

    # -- the worker side -----------------------------------------------------------------------

    def _run_query(self, search: _Search, node: RemoteNode, query: Query) -> Task[Any]:
        generation = search.generation
        aet = self._calling_aet()
        # Everything the worker uses, taken here on the GUI thread: no attribute of this
        # QObject is read in the worker, and nothing in ``work`` is a Qt object.
        buffer = self.buffer  # thread-safe: a lock and a list
        finder = self.finder  # plain Python
        prepare = StudyCells(search.criteria)  # runs in the helper process
        answers = _Answers()  # filled by the worker, read by the callbacks once it is done

        def work(context: TaskContext) -> None:
            outcome = FindOutcome()
            batches = finder.prepared_rows(
                node,
                query,
                prepare,
                calling_aet=aet,
                limit=MAX_MATCHES_PER_QUERY,
                cancel=context.cancel,
                outcome=outcome,
            )
            for batch in batches:
                answers.count += len(batch)
                shown = []
                for row, cells in batch:
                    if not row.study_uid:
                        continue
                    if cells is None:
                        answers.refined_out.add(row.study_uid)
                    else:
                        answers.shown.add(row.study_uid)
                        shown.append((generation, row, cells))
                buffer.extend(shown)
            answers.limited = outcome.limited

        return self.runner.run(
            work,
            title=f"Search on {node.label}",
            success=lambda _none: self._query_done(search, node, answers, None),
            failure=lambda exc: self._query_done(search, node, answers, exc),
        )

    # -- the GUI side ----------------------------------------------------------------------------

    def _add_rows(self, items: list[tuple[int, StudyRow, Cells]]) -> None:
        check_gui_thread("StudySearch._add_rows")
        prepared = [
            (row, cells) for generation, row, cells in items if generation == self._generation
        ]
        if prepared:
            position = self.model.position
            known = {row.study_uid for row, _ in prepared if position(row.study_uid) is not None}
            self.model.upsert_prepared(prepared)
            uids = (row.study_uid for row, _ in prepared)
            fresh = list(dict.fromkeys(uid for uid in uids if uid not in known))
            if fresh:
                self.rows_added.emit(fresh)
        search = self._current
        if search is not None and search.draining and not self.buffer.pending:
            self._finish(search)
        elif prepared:
            self._emit_status()

    def _query_done(
        self, search: _Search, node: RemoteNode, answers: _Answers, exc: BaseException | None
    ) -> None:
        check_gui_thread("StudySearch._query_done")
        outcome = search.nodes[node.label]
        outcome.queries_left -= 1
        outcome.answers += answers.count
        outcome.shown |= answers.shown
        outcome.refined_out |= answers.refined_out
        outcome.limited = outcome.limited or answers.limited
        outcome.seconds = time.monotonic() - search.started
        if exc is not None and not outcome.error:
            outcome.error = describe_error(exc)
            outcome.reason = plain_reason(exc)
            if search.generation == self._generation:
                self.node_failed.emit(node.label, outcome.error)
        if search.generation != self._generation or search.running:
            return
        if self.buffer.pending:
            search.draining = True  # _add_rows finishes once the rest is shown
        else:
            self._finish(search)

    def _finish(self, search: _Search) -> None:
        check_gui_thread("StudySearch._finish")
        search.draining = False
        self._ticker.stop()
        text = self.status_text()
        log.info("search finished: %s", text)
        self.finished.emit(text)
        self.status_changed.emit(text)

    def status_text(self) -> str:
        """Text like "37 studies in 0.8 s — searching…", then what each node contributed.

        With several nodes, each node's count is of the distinct studies shown from it, and
        the studies found on more than one node (listed once) are said, so the counts add up:
        "11 studies in 0.4 s · A 11, B 11 (the same 11 on both)". Answers the refine dropped
        and failed or limited nodes are noted too.
        """
        search = self._current
        if search is None:
            return "Ready"
        count = self.model.rowCount()
        seconds = time.monotonic() - search.started
        if not search.running:
            seconds = max((n.seconds for n in search.nodes.values()), default=seconds)
        noun = "study" if count == 1 else "studies"
        text = f"{count} {noun} in {seconds:.1f} s"
        if search.running:
            text += " — stopping…" if search.stopped else " — searching…"
        elif search.stopped:
            text += " — stopped"
        nodes = list(search.nodes.values())
        notes = []
        if len(nodes) > 1:
            notes.append(_per_node(nodes))
        else:
            notes += [f"{n.name} failed" for n in nodes if n.failed]
            notes += [f"{n.name}: limit reached, refine the search" for n in nodes if n.limited]
        shown = set().union(*(n.shown for n in nodes))
        hidden = len(set().union(*(n.refined_out for n in nodes)) - shown)
        if hidden:
            answers = "answer" if hidden == 1 else "answers"
            notes.append(f"{hidden} more {answers} not matching exactly, not shown")
        if not count and not search.running and not search.stopped:
            notes += charset_hints(search.criteria, nodes)
        return " · ".join([text, *notes])

    def _emit_status(self) -> None:
        self.status_changed.emit(self.status_text())

    def close(self) -> None:
        self.stop(quiet=True)
        self._ticker.stop()
        self.buffer.close()
        self.finder.close()


def _per_node(nodes: list[NodeOutcome]) -> str:
    """The distinct studies shown from each node and the overlap: "A 11, B 6 (3 on both)"."""
    parts = []
    for node in nodes:
        if node.failed:
            before = f" {len(node.shown)} before it" if node.shown else ""
            parts.append(f"{node.name}{before} failed")
        elif node.running and not node.shown:
            parts.append(f"{node.name} …")
        else:
            limit = " (limit reached, refine the search)" if node.limited else ""
            parts.append(f"{node.name} {len(node.shown)}{limit}")
    text = ", ".join(parts)
    found = [n.shown for n in nodes if n.shown]
    union: set[str] = set().union(*found)
    repeats = sum(len(uids) for uids in found) - len(union)
    if not repeats:
        return text
    if len(found) == 2:
        same = found[0] == found[1]
        return f"{text} (the same {repeats} on both)" if same else f"{text} ({repeats} on both)"
    several = sum(sum(uid in uids for uids in found) > 1 for uid in union)
    return f"{text} ({several} of them on several nodes, listed once)"


def charset_hints(criteria: SearchCriteria, nodes: list[NodeOutcome]) -> list[str]:
    """For a search with non-ASCII text that found nothing: the character set each node was
    asked in, which may not be the one it holds its names in (and compares bytes against)."""
    queries = criteria.queries()
    hints = []
    for outcome in nodes:
        node = outcome.node
        if node is None or outcome.failed:
            continue
        try:
            term = next((t for q in queries if (t := q.character_set(node.charset))), "")
        except InvalidInput:
            continue
        if term:
            other = other_charset(term)
            hints.append(
                f"no match; the query was sent as {charset_label(term)}: if {outcome.name} "
                f"holds {CHARSET_NAMES[other]} names, set its character set to {other} in "
                "Nodes → Nodes…"
            )
    return hints
