"""The status bar's word on the full check of the store that runs in the background.

When a store was left open by a power cut (or its index was lost), :class:`~workstation.store.
LocalStore` compares every series folder with the index on a thread while the window is in use
(:mod:`workstation.store.background_check`). :class:`StoreCheckStatus` shows how far it got
("Checking the store: 40 %…"), reading the check's progress every :data:`POLL_MS` (an
attribute read: no lock, no query), then what it repaired, and emits ``finished`` so that the
store browser shows the repaired index.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QLabel, QWidget

from workstation.store import LocalStore
from workstation.store.recovery import ReconcileReport

#: How often the progress is read (ms).
POLL_MS = 500
#: How long the outcome stays in the status bar (ms).
OUTCOME_MS = 15000


class StoreCheckStatus(QLabel):
    """Hidden unless ``store`` runs a background check; then its progress and outcome."""

    #: The check ended (finished, or stopped): the index may have changed.
    finished = Signal()

    def __init__(self, store: LocalStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._check = store.background_check
        self._timer = QTimer(self, interval=POLL_MS)
        self._timer.timeout.connect(self._update)
        self._hide_timer = QTimer(self, singleShot=True, interval=OUTCOME_MS)
        self._hide_timer.timeout.connect(self.hide)
        self.setToolTip(
            "The store was not closed cleanly: every series folder is compared with the index, "
            "while you work. Images stored meanwhile are kept."
        )
        self.hide()
        if self._check is not None:
            self._update()
            self._timer.start()

    def stop(self) -> None:
        """Stop following the check (the window closes; the check goes on with the store)."""
        self._timer.stop()
        self._hide_timer.stop()

    def _update(self) -> None:
        check = self._check
        if check is None:
            return
        if check.running:
            progress = check.progress
            percent = f": {int(progress.fraction * 100)} %" if progress.total else ""
            self.setText(f"Checking the store{percent}…")
            self.show()
            return
        self._timer.stop()
        self.setText(outcome_text(check.report))
        self.show()
        self._hide_timer.start()
        self.finished.emit()


def outcome_text(report: ReconcileReport | None) -> str:
    """One line on what a finished check did."""
    if report is None or report.cancelled:
        return "The store check stopped; it runs again at the next start"
    repairs = []
    if report.indexed:
        repairs.append(f"{report.indexed} image{'s' * (report.indexed != 1)} indexed again")
    if report.removed:
        repairs.append(f"{report.removed} missing image{'s' * (report.removed != 1)} removed")
    return "Store checked: " + ("; ".join(repairs) if repairs else "nothing to repair")
