"""Runs a study search on one or several nodes and streams the matches into the study table.

Each (node, query) pair is one background task. Its C-FIND runs in the window's helper process
(:mod:`.find_process`, which keeps the C-FIND's reading thread off the window's GIL); the task
pushes every accepted :class:`StudyRow`, with its cells already formatted (the per-row work is
done in the worker, not on the GUI thread), into a :class:`BatchBuffer`, and waits at a
:class:`WorkerGate` while the window paints. The buffer hands the rows to the model at most ~10
times a second and at most :data:`MAX_ROWS_PER_FLUSH` at a time, so the first studies show
while the PACS still answers and no flush freezes the window. The search is finished once
every node answered and the buffer is drained. Rows from an older search are dropped by
generation number. Stop cancels every task (C-CANCEL, then abort after a grace period, in
:mod:`workstation.dimse.find`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from workstation.nodes import RemoteNode
from workstation.query import Query
from workstation.results import StudyRow
from workstation.ui.criteria import SearchCriteria
from workstation.ui.find_process import FindOutcome, FindProcess
from workstation.ui.study_model import StudyTableModel
from workstation.ui.table_model import Cells
from workstation.ui.tasks import Task, TaskContext, TaskRunner, describe_error
from workstation.ui.throttle import BatchBuffer
from workstation.ui.worker_gate import MAX_HOLD_MS, WorkerGate

log = logging.getLogger(__name__)

#: Matches one query may return before it is stopped (C-CANCEL) and the user asked to refine.
MAX_MATCHES_PER_QUERY = 5000
#: Rows added to the table per flush (~10 a second): each flush stays well under 15 ms.
MAX_ROWS_PER_FLUSH = 500


@dataclass
class NodeOutcome:
    """How one node answered the current search."""

    name: str
    queries_left: int
    matches: int = 0
    limited: bool = False
    error: str = ""
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.error:
            return f"{self.name}: failed"
        text = f"{self.name}: {self.matches}"
        return text + " (limit reached)" if self.limited else text


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
        self.buffer = BatchBuffer(self._add_rows, max_items=MAX_ROWS_PER_FLUSH, parent=self)
        #: Search workers wait at this gate while the window paints the results or adds rows.
        self.gate = WorkerGate(self)
        self.finder = FindProcess()
        self._ticker = QTimer(self)
        self._ticker.setInterval(250)
        self._ticker.timeout.connect(self._emit_status)

    @property
    def running(self) -> bool:
        return self._current is not None and self._current.running

    def start(self, criteria: SearchCriteria, nodes: list[RemoteNode]) -> None:
        """Stop any running search, empty the table and ask every node in ``nodes``."""
        self.stop(quiet=True)
        self._generation += 1
        self.buffer.clear()
        self.model.clear()
        queries = criteria.queries()
        search = _Search(self._generation, criteria, time.monotonic())
        self._current = search
        log.info("searching %s for %s", ", ".join(n.label for n in nodes), criteria.describe())
        for node in nodes:
            search.nodes[node.label] = NodeOutcome(node.label, len(queries))
            for query in queries:
                search.tasks.append(self._run_query(search, node, query))
        self._ticker.start()
        self.started.emit()
        self._emit_status()

    def stop(self, *, quiet: bool = False) -> None:
        """Stop every query of the running search (the rows found so far stay)."""
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
        criteria = search.criteria
        generation = search.generation
        aet = self._calling_aet()
        buffer = self.buffer
        gate = self.gate
        make_cells = self.model.make_cells  # reads no Qt object: safe in the worker

        def work(context: TaskContext) -> tuple[int, bool]:
            outcome = FindOutcome()
            batches = self.finder.study_rows(
                node,
                query,
                calling_aet=aet,
                limit=MAX_MATCHES_PER_QUERY,
                cancel=context.cancel,
                outcome=outcome,
            )
            accepted = 0
            for rows in batches:
                for row in rows:
                    gate.wait()
                    if row.study_uid and criteria.accepts(row):
                        accepted += 1
                        buffer.push((generation, row, make_cells(row)))
            return accepted, outcome.limited

        return self.runner.run(
            work,
            title=f"Search on {node.label}",
            success=lambda result: self._query_done(search, node, result, ""),
            failure=lambda exc: self._query_done(search, node, (0, False), describe_error(exc)),
        )

    # -- the GUI side ----------------------------------------------------------------------------

    def _add_rows(self, items: list[tuple[int, StudyRow, Cells]]) -> None:
        self.gate.hold(MAX_HOLD_MS)  # until the rows are painted
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
        self, search: _Search, node: RemoteNode, result: tuple[int, bool], error: str
    ) -> None:
        outcome = search.nodes[node.label]
        outcome.queries_left -= 1
        outcome.matches += result[0]
        outcome.limited = outcome.limited or result[1]
        outcome.seconds = time.monotonic() - search.started
        if error and not outcome.error:
            outcome.error = error
            if search.generation == self._generation:
                self.node_failed.emit(node.label, error)
        if search.generation != self._generation or search.running:
            return
        if self.buffer.pending:
            search.draining = True  # _add_rows finishes once the rest is shown
        else:
            self._finish(search)

    def _finish(self, search: _Search) -> None:
        search.draining = False
        self._ticker.stop()
        text = self.status_text()
        log.info("search finished: %s", text)
        self.finished.emit(text)
        self.status_changed.emit(text)

    def status_text(self) -> str:
        """Text like "37 studies in 0.8 s — searching…", with per-node notes when it matters."""
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
        notes = []
        for outcome in search.nodes.values():
            if outcome.error:
                notes.append(f"{outcome.name} failed: {outcome.error}")
            elif outcome.limited:
                notes.append(f"{outcome.name}: limit reached, refine the search")
        if len(search.nodes) > 1 and not notes:
            notes = [str(n) for n in search.nodes.values()]
        return f"{text} ({'; '.join(notes)})" if notes else text

    def _emit_status(self) -> None:
        self.status_changed.emit(self.status_text())

    def close(self) -> None:
        self.stop(quiet=True)
        self._ticker.stop()
        self.buffer.close()
        self.gate.close()
        self.finder.close()
