"""View → Audit trail…: the dialog lists the store's audit events, filters them and exports
XML, reading in a worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QDate
from pytestqt.qtbot import QtBot

from tests.ui_support import WAIT_MS
from workstation.audit_xml import check_xml
from workstation.demo import Archive
from workstation.nodes import RemoteNode
from workstation.ui.audit.audit_view import AuditDialog
from workstation.ui.main_window import MainWindow

pytest_plugins = ["tests.ui_support"]


def test_the_audit_trail_window_lists_filters_and_exports(
    qtbot: QtBot,
    open_nodes_window: Callable[[dict[str, RemoteNode]], MainWindow],
    archive: Archive,
    archive_files: list[Path],
    tmp_path: Path,
) -> None:
    window = open_nodes_window({})
    store = window.session.store
    refs = archive.all_instances()
    first, second = archive.studies[0], archive.studies[1]
    for study in (first, second):
        files = [
            f
            for ref, f in zip(refs, archive_files, strict=True)
            if ref.study.StudyInstanceUID == study.StudyInstanceUID
        ]
        folder = tmp_path / study.StudyInstanceUID
        folder.mkdir()
        for f in files:
            (folder / f.name).write_bytes(f.read_bytes())
        store.import_path(folder)
    store.delete_study(first.StudyInstanceUID)

    window.audit_action.trigger()
    dialog = window.audit_dialog
    assert isinstance(dialog, AuditDialog) and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.loaded >= 1, timeout=WAIT_MS)
    model = dialog.model
    assert model.rowCount() == 3
    assert [model.index(r, 2).data() for r in range(3)] == ["delete", "import", "import"]
    assert model.index(0, 5).data() == first.StudyInstanceUID
    assert model.index(0, 7).data() == str(first.number_of_instances)

    def shown_after(change: Callable[[], None]) -> list[tuple[str, str]]:
        loaded = dialog.loaded
        change()
        qtbot.waitUntil(lambda: dialog.loaded > loaded, timeout=WAIT_MS)
        return [
            (model.index(r, 2).data(), model.index(r, 5).data()) for r in range(model.rowCount())
        ]

    delete = dialog.action.findData("delete")
    assert shown_after(lambda: dialog.action.setCurrentIndex(delete)) == [
        ("delete", first.StudyInstanceUID)
    ]
    assert shown_after(lambda: dialog.action.setCurrentIndex(0)) != []
    assert shown_after(lambda: dialog.text.setText(second.StudyInstanceUID)) == [
        ("import", second.StudyInstanceUID)
    ]
    dialog.since.setDate(QDate.currentDate().addDays(1))
    dialog.until.setDate(QDate.currentDate().addDays(2))
    assert shown_after(lambda: dialog.use_dates.setChecked(True)) == []
    assert shown_after(lambda: dialog.use_dates.setChecked(False)) == [
        ("import", second.StudyInstanceUID)
    ]

    target = tmp_path / "audit.xml"
    dialog.export_xml(target)
    qtbot.waitUntil(lambda: "Exported 1 event" in dialog.status.text(), timeout=WAIT_MS)
    assert check_xml(target.read_bytes()) == []
    assert second.StudyInstanceUID.encode() in target.read_bytes()
