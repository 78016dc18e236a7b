"""The search form: which nodes to ask, and what to ask them (see :mod:`.criteria`)."""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import QDate, QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from workstation.search import MODALITIES, DatePreset, SearchCriteria

NAME_TIP = (
    "Patient name, family name first. A bare <b>smith</b> searches <b>smith*</b> (names starting "
    "with it); <b>*</b> and <b>?</b> work as wildcards. Case, accents and ^ versus space do not "
    "matter: results are checked again here, and upper- and title-case spellings are sent too "
    "for archives that match case-sensitively."
)
_FIELD_TIPS = {
    "patient_id": "Patient ID, matched exactly; use * for a wildcard.",
    "accession": "Accession number, matched exactly; use * for a wildcard.",
    "description": "Words in the study description (searched anywhere in it).",
    "referring": "Referring physician, family name first; a bare name matches its start.",
    "birth_date": "Patient's birth date: 1952-11-19, or a range such as 1950-01-01 - 1959-12-31.",
    "institution": "Words in the institution name (searched anywhere in it; not every PACS "
    "answers on it).",
}
#: After a first search, a change of date preset or modality searches again after this delay
#: (ms), so that ticking three boxes in a row sends one search, not three.
RESEARCH_DELAY_MS = 350


def _qdate(day: dt.date) -> QDate:
    return QDate(day.year, day.month, day.day)


def _pydate(day: QDate) -> dt.date:
    return dt.date(day.year(), day.month(), day.day())


class QueryPanel(QWidget):
    """Node picker, search fields, date presets, modality boxes, Search and Stop."""

    #: The user asked for a search (Enter or the Search button), confirmed if blank.
    search_requested = Signal(object)  # SearchCriteria
    stop_requested = Signal()
    #: The "Manage nodes…" entry of the node menu.
    manage_nodes_requested = Signal()
    nodes_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.node_button = QToolButton()
        self.node_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.node_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.node_button.setMinimumWidth(110)
        self.node_button.setStyleSheet("QToolButton::menu-indicator { image: none; }")
        self.node_button.setToolTip("Nodes to search; tick several to search them together")
        self.node_menu = QMenu(self.node_button)
        self.node_button.setMenu(self.node_menu)
        self._node_actions: dict[str, QAction] = {}

        self.patient_name = self._line("Patient name", NAME_TIP, 150)
        self.patient_id = self._line("Patient ID", _FIELD_TIPS["patient_id"], 80)
        self.accession = self._line("Accession", _FIELD_TIPS["accession"], 80)
        self.description = self._line("Study description", _FIELD_TIPS["description"], 100)
        self.referring = self._line("Referring physician", _FIELD_TIPS["referring"], 100)
        self.birth_date = self._line("Birth date", _FIELD_TIPS["birth_date"], 80)
        self.institution = self._line("Institution", _FIELD_TIPS["institution"], 80)

        self.date_preset = QComboBox()
        for preset in DatePreset:
            self.date_preset.addItem(preset.value, preset)
        self.date_preset.setToolTip("Study date")
        self.date_from = self._date_edit("First study date included")
        self.date_to = self._date_edit("Last study date included")
        self.date_dash = QLabel("–")
        self.date_preset.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.date_preset.currentIndexChanged.connect(self._on_preset)

        self.modality_boxes: dict[str, QCheckBox] = {}
        modality_row = QHBoxLayout()
        modality_row.setSpacing(2)
        modality_row.addWidget(QLabel("Modality:"))
        for modality in MODALITIES:
            box = QCheckBox(modality)
            box.setToolTip(f"Studies with a {modality} series (ModalitiesInStudy)")
            box.toggled.connect(self._criteria_changed)
            box.installEventFilter(self)
            self.modality_boxes[modality] = box
            modality_row.addWidget(box)
        modality_row.addStretch(1)

        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.setToolTip("Search the ticked nodes (Enter)")
        self.search_button.clicked.connect(self.request_search)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the search (Esc)")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop_requested)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("Empty the search fields (Ctrl+L)")
        self.clear_button.clicked.connect(self.clear)

        top = QHBoxLayout()
        top.setSpacing(6)
        top.addWidget(self.node_button)
        for edit, stretch in (
            (self.patient_name, 4),
            (self.patient_id, 2),
            (self.birth_date, 2),
            (self.accession, 2),
            (self.description, 3),
            (self.referring, 3),
            (self.institution, 2),
        ):
            top.addWidget(edit, stretch)
        top.addWidget(self.search_button)
        top.addWidget(self.stop_button)
        bottom = QHBoxLayout()
        bottom.setSpacing(4)
        bottom.addWidget(QLabel("Study date:"))
        bottom.addWidget(self.date_preset)
        bottom.addWidget(self.date_from)
        bottom.addWidget(self.date_dash)
        bottom.addWidget(self.date_to)
        bottom.addSpacing(16)
        bottom.addLayout(modality_row, 1)
        bottom.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 2)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addLayout(bottom)
        # The range boxes keep their room while hidden: the modality row never jumps.
        for hidden in (self.date_from, self.date_dash, self.date_to):
            policy = hidden.sizePolicy()
            policy.setRetainSizeWhenHidden(True)
            hidden.setSizePolicy(policy)
        for field_widget in (self.date_preset, self.date_from, self.date_to):
            field_widget.installEventFilter(self)
        self._searched = False
        self._research = QTimer(self)
        self._research.setSingleShot(True)
        self._research.setInterval(RESEARCH_DELAY_MS)
        self._research.timeout.connect(self._search_again)
        self.date_from.dateChanged.connect(self._criteria_changed)
        self.date_to.dateChanged.connect(self._criteria_changed)
        self._on_preset()
        self._update_node_button()

    # -- construction helpers ------------------------------------------------------------------

    def _line(self, placeholder: str, tip: str, width: int) -> QLineEdit:
        edit = QLineEdit()
        edit.setPlaceholderText(placeholder)
        edit.setToolTip(tip)
        edit.setClearButtonEnabled(True)
        edit.setMinimumWidth(width)
        edit.returnPressed.connect(self.request_search)
        return edit

    def _date_edit(self, tip: str) -> QDateEdit:
        edit = QDateEdit()
        edit.setCalendarPopup(True)
        edit.setDisplayFormat("yyyy-MM-dd")
        edit.setToolTip(tip)
        edit.setDate(_qdate(dt.date.today()))
        edit.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        return edit

    # -- nodes ---------------------------------------------------------------------------------

    def set_nodes(self, names: list[str], selected: list[str] | None = None) -> None:
        """Offer ``names``; tick ``selected`` (default: keep what was ticked, else the first)."""
        keep = set(selected if selected is not None else self.selected_nodes())
        self.node_menu.clear()
        self._node_actions = {}
        for name in names:
            action = QAction(name, self.node_menu, checkable=True)
            action.setChecked(name in keep)
            action.toggled.connect(self._on_node_toggled)
            self.node_menu.addAction(action)
            self._node_actions[name] = action
        if names and not any(a.isChecked() for a in self._node_actions.values()):
            self._node_actions[names[0]].setChecked(True)
        if not names:
            placeholder = self.node_menu.addAction("No nodes yet")
            placeholder.setEnabled(False)
        self.node_menu.addSeparator()
        manage = self.node_menu.addAction("Manage nodes…")
        manage.triggered.connect(self.manage_nodes_requested)
        self._update_node_button()

    def selected_nodes(self) -> list[str]:
        return [name for name, action in self._node_actions.items() if action.isChecked()]

    def select_nodes(self, names: list[str]) -> None:
        for name, action in self._node_actions.items():
            action.setChecked(name in names)

    def _on_node_toggled(self, _checked: bool) -> None:
        self._update_node_button()
        self.nodes_changed.emit()

    def _update_node_button(self) -> None:
        chosen = self.selected_nodes()
        if not self._node_actions:
            text = "No nodes"
        elif not chosen:
            text = "Choose a node"
        elif len(chosen) == 1:
            text = chosen[0]
        else:
            text = f"{len(chosen)} nodes"
        self.node_button.setText(f"{text}  ▾")
        self.node_button.setToolTip("Search: " + (", ".join(chosen) or "no node ticked"))

    # -- criteria ------------------------------------------------------------------------------

    def preset(self) -> DatePreset:
        value = self.date_preset.currentData()
        return value if isinstance(value, DatePreset) else DatePreset.ANY

    def set_preset(self, preset: DatePreset) -> None:
        self.date_preset.setCurrentIndex(list(DatePreset).index(preset))

    def _on_preset(self, _index: int = 0) -> None:
        preset = self.preset()
        custom = preset is DatePreset.CUSTOM
        first, last = preset.dates()
        if first and last:
            self.date_from.setDate(_qdate(first))
            self.date_to.setDate(_qdate(last))
        self.date_from.setEnabled(custom)
        self.date_to.setEnabled(custom)
        for widget in (self.date_from, self.date_dash, self.date_to):
            widget.setVisible(preset is not DatePreset.ANY)
        self._criteria_changed()

    def _criteria_changed(self, *_: object) -> None:
        """A date or modality changed: once a search has run, run it again (shortly)."""
        if self._searched:
            self._research.start()

    def _search_again(self) -> None:
        if self.selected_nodes() and not self.criteria().is_blank:
            self.search_requested.emit(self.criteria())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Enter in a modality box or a date field searches, as it does in a text field."""
        if (
            event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        ):
            self.request_search()
            return True
        return super().eventFilter(watched, event)

    def criteria(self) -> SearchCriteria:
        preset = self.preset()
        if preset is DatePreset.CUSTOM:
            first: dt.date | None = _pydate(self.date_from.date())
            last: dt.date | None = _pydate(self.date_to.date())
            if first and last and first > last:
                first, last = last, first
        else:
            first, last = preset.dates()
        return SearchCriteria(
            patient_name=self.patient_name.text(),
            patient_id=self.patient_id.text(),
            accession=self.accession.text(),
            description=self.description.text(),
            referring_physician=self.referring.text(),
            birth_date=self.birth_date.text(),
            institution=self.institution.text(),
            first=first,
            last=last,
            modalities=tuple(m for m, box in self.modality_boxes.items() if box.isChecked()),
        )

    def clear(self) -> None:
        """Empty every field, any date, no modality; focus the name."""
        for edit in (
            self.patient_name,
            self.patient_id,
            self.accession,
            self.description,
            self.referring,
            self.birth_date,
            self.institution,
        ):
            edit.clear()
        for box in self.modality_boxes.values():
            box.setChecked(False)
        self.set_preset(DatePreset.ANY)
        self.focus_search()

    def focus_search(self) -> None:
        self.patient_name.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.patient_name.selectAll()

    def set_searching(self, searching: bool) -> None:
        self.stop_button.setEnabled(searching)

    def request_search(self) -> None:
        """Emit :attr:`search_requested`, after asking when nothing narrows the search."""
        if not self.selected_nodes():
            QMessageBox.information(self, "Search", "Tick at least one node to search.")
            return
        self._research.stop()
        criteria = self.criteria()
        if criteria.is_blank and not self.confirm_blank_search():
            return
        self._searched = True
        self.search_requested.emit(criteria)

    def confirm_blank_search(self) -> bool:
        """Ask before listing every study of the archive (tests replace this)."""
        answer = QMessageBox.question(
            self,
            "Search everything?",
            "No name, ID, date or modality is given: this asks the node for every study it "
            "holds, which can take long on a large archive.\n\nSearch anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes
