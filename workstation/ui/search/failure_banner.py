"""The banner above the results when a node did not answer a search.

A grey "0 studies (DOWN failed)" in the status line reads as "no prior studies". When a node
fails, this banner says so in a colour and words that cannot be missed: which node, why (in
plain words, then the detail), and that its studies are missing from the list. "Retry" asks
the failed nodes again (only those: the rows shown stay); "✕" hides the banner. A new search
hides it too.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from workstation.ui.search.study_search import NodeOutcome

_STYLE = """
QFrame#failureBanner {
    background: #fdecea;
    border: 1px solid #c0152f;
    border-left: 5px solid #c0152f;
    border-radius: 3px;
}
QFrame#failureBanner QLabel { color: #5f0a17; background: transparent; }
"""


class FailureBanner(QFrame):
    """Hidden until :meth:`show_failures` gets at least one failed node."""

    #: The user asked to search the failed nodes again.
    retry_requested = Signal()
    #: The user closed the banner.
    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("failureBanner")
        self.setStyleSheet(_STYLE)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        self.icon = QLabel()
        self.icon.setPixmap(
            self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(24, 24)
        )
        self.icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.title = QLabel()
        self.title.setObjectName("failureTitle")
        self.details = QLabel()
        self.details.setObjectName("failureDetails")
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.retry_button = QPushButton("Retry")
        self.retry_button.setToolTip("Search the nodes that failed again; the rows shown stay")
        self.retry_button.clicked.connect(self.retry_requested)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Hide this message")
        self.close_button.clicked.connect(self.dismiss)
        text = QVBoxLayout()
        text.setSpacing(2)
        text.addWidget(self.title)
        text.addWidget(self.details)
        buttons = QHBoxLayout()
        buttons.setSpacing(4)
        buttons.addWidget(self.retry_button, 0, Qt.AlignmentFlag.AlignTop)
        buttons.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.setSpacing(10)
        layout.addWidget(self.icon, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(text, 1)
        layout.addLayout(buttons)
        self._names: list[str] = []
        self.hide()

    @property
    def failed_nodes(self) -> list[str]:
        """The nodes named in the banner now (empty while it is hidden)."""
        return list(self._names)

    def show_failures(self, failures: Iterable[NodeOutcome]) -> None:
        """Name each failed node and why; hide the banner when there is none."""
        failed = list(failures)
        self._names = [n.name for n in failed]
        if not failed:
            self.clear()
            return
        if len(failed) == 1:
            title = f"{failed[0].name} was not searched: its studies are missing below"
        else:
            title = f"{len(failed)} nodes were not searched: their studies are missing below"
        self.title.setText(f"<b>{html.escape(title)}</b>")
        self.details.setText(
            "<br>".join(
                f"<b>{html.escape(n.name)}</b>: {html.escape(n.reason or 'failed')} — "
                f"{html.escape(n.error)}"
                for n in failed
            )
        )
        self.setToolTip("\n".join(f"{n.name}: {n.error}" for n in failed))
        self.show()

    def set_retry_enabled(self, enabled: bool) -> None:
        self.retry_button.setEnabled(enabled)

    def clear(self) -> None:
        """Hide the banner (a new search started, or the failed nodes answered)."""
        self._names = []
        self.hide()

    def dismiss(self) -> None:
        self.clear()
        self.dismissed.emit()
