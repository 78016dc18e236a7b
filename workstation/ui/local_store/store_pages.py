"""The Local store's patient list: a table fetched from SQL a page at a time, in the background.

A store of a million instances holds tens of thousands of patients; the list reads the first
:data:`PAGE_SIZE` of them (by folded name, as the index orders them), and the next page when the
view scrolls to the end (``canFetchMore``/``fetchMore``). Pages follow by key (the rows after
the last one shown), so patients stored meanwhile never shift a page. Every query runs in a
worker of the window's :class:`~workstation.ui.common.tasks.TaskRunner`, the rows' texts are
prepared there too, and the GUI thread only swaps them in:

- :meth:`PatientPages.set_query` (a new filter) and :meth:`PatientPages.reload` read the rows
  shown again and change only what differs, so the selection stays where it was; when at
  least half of the rows are new (a new filter, mostly), one model reset replaces them all,
  a single layout instead of hundreds of row removals and insertions (the browser then selects
  its patient again by key);
- :meth:`PatientPages.refresh` asks the index which patients changed since the last look
  (its change log), updates those shown, removes those gone and inserts the new ones that
  fall within the rows already fetched (the others come with a later page).

Results of a query that a newer one replaced are dropped (a generation count), and a result
finds the model through a weak reference: the model may be gone when a worker finishes.
"""

from __future__ import annotations

import bisect
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, QPersistentModelIndex, Qt, Signal

from workstation.store.records import PatientEntry
from workstation.ui.common.table_model import Cells
from workstation.ui.common.tasks import TaskContext, TaskRunner
from workstation.ui.common.thread_guard import check_gui_thread
from workstation.ui.local_store.store_model import PatientTableModel
from workstation.ui.local_store.store_reader import Changes, PageKey, StoreReader, page_key

#: Patients per query: a few screens' worth.
PAGE_SIZE = 200

_ROOT = QModelIndex()
#: Rows ready to show: the entry and its cells (made in the worker).
Prepared = list[tuple[PatientEntry, Cells]]
#: What to call once a query's rows are shown.
Done = Callable[[], None] | None


class PatientPages(PatientTableModel):
    """The patients of the index that a filter lists, fetched page by page (see the module).

    ``loaded`` is emitted on the GUI thread after a query's rows are shown; ``failed``
    carries the text of a query that failed (the store closed, its disk failed).
    """

    loaded = Signal()
    failed = Signal(str)

    def __init__(
        self,
        reader: StoreReader,
        runner: TaskRunner,
        parent: QObject | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        super().__init__(parent)
        self._reader = reader
        self._runner = runner
        self._page_size = page_size
        self._filter_text = ""
        self._page_keys: list[PageKey] = []
        self._more = False
        self._token: int | None = None  # the change log's position when the rows were read
        self._generation = 0
        self._pending = 0  # queries in flight whose answer is still wanted

    @property
    def loading(self) -> bool:
        """Whether a query of the list is running."""
        return self._pending > 0

    @property
    def complete(self) -> bool:
        """Whether every patient the filter lists is fetched."""
        return not self._more

    def set_query(self, filter_text: str, done: Done = None) -> None:
        """List the patients ``filter_text`` matches (read in the background), then call
        ``done`` unless a newer query replaced this one."""
        check_gui_thread("PatientPages.set_query")
        self._filter_text = filter_text
        self._read(self._page_size, done)

    def reload(self, done: Done = None) -> None:
        """Read again the rows fetched so far (at least a page) and show what changed."""
        check_gui_thread("PatientPages.reload")
        self._read(max(self._page_size, len(self._rows)), done)

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """The index orders the list (by name): nothing to do here."""

    def _read(self, limit: int, done: Done) -> None:
        self._generation += 1
        generation, reader, text = self._generation, self._reader, self._filter_text
        self._pending = 1  # a fetchMore or refresh still running is stale now

        def work(_context: TaskContext) -> tuple[Prepared, bool, int]:
            token = reader.token()  # first: a commit meanwhile is seen again, not missed
            rows = reader.patient_page(text, limit=limit + 1)
            return self._prepare(rows[:limit]), len(rows) > limit, token

        self._run(work, generation, "Local store: patients", _then(PatientPages._replace, done))

    # -- fetching more ----------------------------------------------------------------------

    def canFetchMore(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> bool:
        return not parent.isValid() and self._more

    def fetchMore(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> None:
        """Ask for the next page (the view calls this when it scrolls to the end)."""
        check_gui_thread("PatientPages.fetchMore")
        if parent.isValid() or not self._more or self._pending:
            return
        self._fetch(self._page_size)

    def fetch_through(self, position: int, done: Done = None) -> None:
        """Fetch the rows down to ``position`` (to select a patient further down), then call
        ``done``."""
        check_gui_thread("PatientPages.fetch_through")
        if self._more and position >= len(self._rows):
            self._fetch(position + 1 - len(self._rows), done)
        elif done is not None:
            done()

    def _fetch(self, limit: int, done: Done = None) -> None:
        generation, reader, text = self._generation, self._reader, self._filter_text
        after = self._rows[-1] if self._rows else None
        self._pending += 1

        def work(_context: TaskContext) -> tuple[Prepared, bool]:
            rows = reader.patient_page(text, after, limit=limit + 1)
            return self._prepare(rows[:limit]), len(rows) > limit

        self._run(work, generation, "Local store: more patients", _then(PatientPages._append, done))

    # -- changes while images arrive ----------------------------------------------------------

    def refresh(self, done: Callable[[Changes | None], None]) -> None:
        """Bring up to date the patients that changed since the rows were read, then call
        ``done`` with what changed (None: the list was read again whole)."""
        check_gui_thread("PatientPages.refresh")
        token = self._token
        if token is None:
            self.reload(done=lambda: done(None))
            return
        generation, reader, text = self._generation, self._reader, self._filter_text
        self._pending += 1

        def work(_context: TaskContext) -> tuple[Changes, Prepared]:
            changes = reader.changes(token, text)
            return changes, self._prepare(changes.patients)

        def finished(model: PatientPages, result: tuple[Changes, Prepared]) -> None:
            changes, rows = result
            if not changes.complete:
                model.reload(done=lambda: done(None))
                return
            model._token = changes.token
            model.apply(rows, set(changes.patient_keys))
            done(changes)

        self._run(work, generation, "Local store: changed patients", finished)

    def apply(self, rows: Prepared, touched: set[int]) -> None:
        """Update the patients among ``touched`` that are shown, remove those that the list no
        longer shows, insert the new ones that fall within the rows already fetched."""
        check_gui_thread("PatientPages.apply")
        present = {entry.key for entry, _cells in rows}
        self._remove([str(k) for k in touched - present])
        for entry, cells in rows:
            position = self._positions.get(str(entry.key))
            if position is not None and self._page_keys[position] != page_key(entry):
                self._remove([str(entry.key)])  # its place in the order changed
                position = None
            if position is not None:
                if self._rows[position] != entry:
                    self._rows[position], self._cells[position] = entry, cells
                    self._changed(position, position)
            elif not self._more or page_key(entry) < self._page_keys[-1]:
                self._insert(self._place(page_key(entry)), [(entry, cells)])

    def show_entry(self, entry: PatientEntry) -> None:
        """Show a patient read elsewhere (it may be newer than the list) if it falls within
        the rows fetched."""
        check_gui_thread("PatientPages.show_entry")
        self.apply([(entry, self.make_cells(entry))], set())

    # -- the rows -----------------------------------------------------------------------------

    def _prepare(self, rows: list[PatientEntry]) -> Prepared:
        """Cells of the rows (on the worker: the hooks read no Qt object)."""
        return [(entry, self.make_cells(entry)) for entry in rows]

    def _run(
        self,
        work: Callable[[TaskContext], Any],
        generation: int,
        title: str,
        apply: Callable[[Any, Any], None],
    ) -> None:
        ref = weakref.ref(self)

        def landed(model: PatientPages | None) -> PatientPages | None:
            if model is None or model._generation != generation:
                return None
            model._pending = max(0, model._pending - 1)
            return model

        def success(result: Any) -> None:
            if (model := landed(ref())) is not None:
                apply(model, result)
                model.loaded.emit()

        def failure(exc: BaseException) -> None:
            if (model := landed(ref())) is not None:
                model.failed.emit(str(exc))
                model.loaded.emit()

        self._runner.run(work, title=title, success=success, failure=failure)

    def _replace(self, result: tuple[Prepared, bool, int]) -> None:
        """Show exactly these rows, changing only what differs (selections stay)."""
        rows, more, token = result
        wanted = [str(entry.key) for entry, _cells in rows]
        self._more, self._token = more, token
        overlap = sum(1 for k in wanted if k in self._positions)
        if overlap * 2 < max(len(wanted), len(self._keys)):
            self._reset(rows)  # a new filter, mostly other patients: one reset, one layout
            return
        chosen = set(wanted)
        self._remove([k for k in self._keys if k not in chosen])
        kept = [k for k in wanted if k in self._positions]
        if kept != self._keys:  # the order changed: reorder, keeping persistent indexes
            self._reorder(kept)
        target = 0
        changed: list[int] = []
        while target < len(rows):  # the rows before ``target`` are in place
            entry, cells = rows[target]
            position = self._positions.get(wanted[target])
            if position is None:
                end = target + 1
                while end < len(rows) and wanted[end] not in self._positions:
                    end += 1
                self._insert(target, rows[target:end])
                target = end
                continue
            if self._rows[position] != entry:
                self._rows[position], self._cells[position] = entry, cells
                self._page_keys[position] = page_key(entry)
                changed.append(position)
            target += 1
        if changed:  # one repaint of the rows that changed, not one per row
            self._changed(min(changed), max(changed))

    def _reset(self, items: Prepared) -> None:
        """Show exactly ``items`` in one model reset (the views lose their selection
        silently: the browser selects again by key)."""
        self.beginResetModel()
        self._rows = [entry for entry, _cells in items]
        self._page_keys = [page_key(entry) for entry in self._rows]
        self._cells = [cells for _entry, cells in items]
        self._keys = [str(entry.key) for entry in self._rows]
        self._positions = {k: i for i, k in enumerate(self._keys)}
        self.endResetModel()

    def _append(self, result: tuple[Prepared, bool]) -> None:
        rows, more = result
        fresh = [item for item in rows if str(item[0].key) not in self._positions]
        if fresh:
            self._insert(len(self._rows), fresh)
        self._more = more

    def _insert(self, position: int, items: Prepared) -> None:
        self.beginInsertRows(_ROOT, position, position + len(items) - 1)
        self._rows[position:position] = [entry for entry, _cells in items]
        self._page_keys[position:position] = [page_key(entry) for entry, _cells in items]
        self._cells[position:position] = [cells for _entry, cells in items]
        self._keys[position:position] = [str(entry.key) for entry, _cells in items]
        self._positions = {k: i for i, k in enumerate(self._keys)}
        self.endInsertRows()

    def _remove(self, keys: Sequence[str]) -> None:
        positions = sorted(self._positions[k] for k in keys if k in self._positions)
        while positions:  # from the bottom, a run of neighbours at a time
            last = first = positions.pop()
            while positions and positions[-1] == first - 1:
                first = positions.pop()
            self.beginRemoveRows(_ROOT, first, last)
            for column in (self._rows, self._page_keys, self._cells, self._keys):
                del column[first : last + 1]
            self._positions = {k: i for i, k in enumerate(self._keys)}
            self.endRemoveRows()

    def _reorder(self, keys: list[str]) -> None:
        """Put the rows in the order of ``keys`` (each a key shown), keeping persistent indexes."""
        self.layoutAboutToBeChanged.emit()
        before = self.persistentIndexList()
        order = [self._positions[k] for k in keys]
        for name in ("_rows", "_page_keys", "_cells", "_keys"):
            column = getattr(self, name)
            setattr(self, name, [column[i] for i in order])
        self._positions = {k: i for i, k in enumerate(self._keys)}
        moved_to = {old: new for new, old in enumerate(order)}
        after = [self.index(moved_to[i.row()], i.column()) for i in before]
        self.changePersistentIndexList(before, after)
        self.layoutChanged.emit()

    def _place(self, key: PageKey) -> int:
        """Where a row at ``key`` goes among the rows fetched (a binary search)."""
        return bisect.bisect_left(self._page_keys, key)


def _then(apply: Callable[[PatientPages, Any], None], done: Done) -> Callable[[Any, Any], None]:
    def both(model: PatientPages, result: Any) -> None:
        apply(model, result)
        if done is not None:
            done()

    return both
