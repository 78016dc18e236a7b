"""Keeps the "Local" columns and the store browser in step with what the store receives.

The store calls its listeners on the index writer thread after each commit, for retrieves,
C-GETs and unsolicited pushes alike. :class:`LocalTracker` buffers those batches (throttled to
~10 GUI updates a second), then on the GUI thread tells the store browser, and recounts in a
worker the studies the results table shows.

A large search asks about thousands of studies, most of which the store does not hold: the
tracker counts them in a worker, 500 studies per query on the index's stored counts
(:meth:`~workstation.ui.local_store.store_reader.StoreReader.local_counts`), so that neither the GUI
thread nor memory grows with the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from PySide6.QtCore import QObject, Signal

from workstation.store import LocalStore, StoredInstance
from workstation.ui.common.batch_buffer import BatchBuffer
from workstation.ui.common.tasks import TaskRunner
from workstation.ui.local_store.store_reader import StoreReader
from workstation.ui.search.study_model import StudyTableModel

log = logging.getLogger(__name__)


class LocalTracker(QObject):
    """Subscribes to the store; keeps :class:`StudyTableModel` local counts current."""

    #: Instances were stored (GUI thread, batched): the new StoredInstance list.
    stored = Signal(list)
    #: Studies whose local count changed (their UIDs), after the recount.
    recounted = Signal(list)

    def __init__(
        self,
        store: LocalStore,
        model: StudyTableModel,
        runner: TaskRunner,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.model = model
        self.runner = runner
        self.received = 0
        self.buffer = BatchBuffer(self._on_batches, parent=self)
        self._reader = StoreReader(store.index)
        store.add_listener(self._from_store)

    def _from_store(self, stored: list[StoredInstance]) -> None:
        """On the index writer thread: never touch Qt here, only the buffer."""
        self.buffer.extend(stored)

    def _on_batches(self, stored: list[StoredInstance]) -> None:
        self.received += sum(not s.duplicate for s in stored)
        self.stored.emit(stored)
        shown = {s.study_uid for s in stored if self.model.position(s.study_uid) is not None}
        if shown:
            self.recount(shown)

    def recount(self, study_uids: Iterable[str]) -> None:
        """Count in a worker how many instances of each study the store holds."""
        uids = list(dict.fromkeys(study_uids))
        if not uids:
            return
        reader = self._reader
        self.runner.run(
            lambda _context: reader.local_counts(uids),
            title="Local store lookup",
            success=self._counted,
        )

    def _counted(self, counts: dict[str, int]) -> None:
        self.model.set_local_counts(counts)
        self.recounted.emit(list(counts))

    def close(self) -> None:
        self.store.remove_listener(self._from_store)
        self.buffer.close()
