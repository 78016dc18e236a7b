"""What the window says about a search against real Orthancs: a failed node's banner and Retry,
and per-node counts that add up.

Expected studies are computed from the generator's Archive, never from what the SCP said.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from tests.servers import LOOPBACK, OrthancServer, free_port
from tests.ui_support import WAIT_MS, search
from workstation.demo import Archive
from workstation.nodes import RemoteNode, RetrieveMethod
from workstation.ui.main_window import MainWindow
from workstation.ui.search.study_search import NodeOutcome, _per_node

pytestmark = pytest.mark.gui
pytest_plugins = ["tests.ui_support"]  # its fixtures: ui_dirs, open_nodes_window...

OpenWindow = Callable[[dict[str, RemoteNode]], MainWindow]


def folded(text: str) -> str:
    """Without accents, case or ``^``: what a clinician means by "muller"."""
    decomposed = unicodedata.normalize("NFKD", text.replace("^", " "))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def studies_named(archive: Archive, typed: str) -> set[str]:
    return {
        s.StudyInstanceUID
        for s in archive.studies
        if folded(s.PatientName).startswith(folded(typed))
    }


def shown_uids(window: MainWindow) -> set[str]:
    return {row.study_uid for row in window.study_model.rows}


def retry(qtbot: QtBot, window: MainWindow) -> None:
    banner = window.failure_banner
    assert banner.retry_button.isEnabled()
    with qtbot.waitSignal(window.search.finished, timeout=WAIT_MS):
        banner.retry_button.click()
    qtbot.waitUntil(lambda: window.study_model.rowCount() == len(window.study_model.rows))


# -- a failed node -------------------------------------------------------------------------------


def test_a_failed_node_gets_a_banner_and_retry_searches_it_again(
    qtbot: QtBot,
    open_nodes_window: OpenWindow,
    orthanc: OrthancServer,
    archive: Archive,
    archive_files: list[Path],
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there (yet)
    down = RemoteNode("BACKUP", LOOPBACK, port, name="Backup", connect_timeout=2.0)
    window = open_nodes_window({"Orthanc": orthanc.node, "Backup": down})
    banner = window.failure_banner
    assert banner.isHidden()

    search(qtbot, window, "müller")
    expected = studies_named(archive, "müller")
    assert len(expected) == 2
    assert shown_uids(window) == expected  # the good node's rows are shown
    assert banner.isVisible() and banner.failed_nodes == ["Backup"]
    assert "Backup was not searched" in banner.title.text()
    details = banner.details.text()
    assert "Backup" in details and "no connection" in details and str(port) in details
    assert "Backup failed" in window.study_view.counter.text()

    retry(qtbot, window)  # still down: the banner says so again, the rows stay
    assert banner.isVisible() and banner.failed_nodes == ["Backup"]
    assert shown_uids(window) == expected

    # The backup PACS comes up on that port with the Müller studies: Retry asks it alone.
    mullers = [s for s in archive.studies if s.StudyInstanceUID in expected]
    backup = OrthancServer(tmp_path / "backup", "BACKUP")
    backup.dicom_port, backup.http_port = port, free_port()
    try:
        backup.start()
        backup.upload(archive.write(tmp_path / "files", studies=mullers))
        retry(qtbot, window)
        assert banner.isHidden() and banner.failed_nodes == []
        assert shown_uids(window) == expected
        assert all(sorted(row.sources) == ["Backup", "Orthanc"] for row in window.study_model.rows)
        counter = window.study_view.counter.text()
        assert "failed" not in counter and "Backup 2" in counter and "Orthanc 2" in counter
    finally:
        backup.kill()


def test_a_new_search_clears_the_banner_and_dismiss_hides_it(
    qtbot: QtBot, open_nodes_window: OpenWindow, orthanc: OrthancServer
) -> None:
    down = RemoteNode("NOBODY", LOOPBACK, free_port(), name="Down", connect_timeout=2.0)
    window = open_nodes_window({"Orthanc": orthanc.node, "Down": down})
    banner = window.failure_banner
    search(qtbot, window, "smith")
    assert banner.isVisible()
    with qtbot.waitSignal(window.search.finished, timeout=WAIT_MS):
        window.query_panel.patient_name.setText("doe")
        window.query_panel.request_search()
        assert banner.isHidden()  # at once, before the nodes answer again
    assert banner.isVisible() and banner.failed_nodes == ["Down"]
    with qtbot.waitSignal(banner.dismissed):
        banner.close_button.click()
    assert banner.isHidden()
    window.query_panel.select_nodes(["Orthanc"])
    search(qtbot, window, "smith")
    assert banner.isHidden()


# -- counts that add up --------------------------------------------------------------------------

_TWO_NODES = re.compile(
    r"^(?P<total>\d+) stud(?:y|ies) in [\d.]+ s · "
    r"Orthanc (?P<a>\d+), OrthancGET (?P<b>\d+) \((?:the same )?(?P<both>\d+) on both\)"
)


@pytest.mark.parametrize("typed", ["müller", "smith", "jensen"])
def test_two_nodes_on_the_same_pacs_give_counts_that_add_up(
    qtbot: QtBot,
    open_nodes_window: OpenWindow,
    orthanc: OrthancServer,
    archive: Archive,
    typed: str,
) -> None:
    nodes = {
        "Orthanc": orthanc.node,
        "OrthancGET": orthanc.node.with_options(
            name="OrthancGET", retrieve_method=RetrieveMethod.GET
        ),
    }
    window = open_nodes_window(nodes)
    search(qtbot, window, typed)
    expected = studies_named(archive, typed)
    assert shown_uids(window) == expected
    counter = window.study_view.counter.text()
    match = _TWO_NODES.match(counter)
    assert match, counter
    total, a, b, both = (int(match[k]) for k in ("total", "a", "b", "both"))
    assert total == window.study_model.rowCount() == len(expected)
    assert a + b - both == total  # the numbers add up
    assert a == b == both == total and f"(the same {total} on both)" in counter
    assert window.status_label.text() == counter


def outcome(name: str, shown: set[str], **fields: object) -> NodeOutcome:
    return NodeOutcome(name, 0, shown=shown, **fields)  # type: ignore[arg-type]


def test_per_node_counts_say_what_overlaps() -> None:
    a, b = outcome("A", {"1", "2", "3"}), outcome("B", {"3", "4"})
    assert _per_node([a, b]) == "A 3, B 2 (1 on both)"
    assert _per_node([a, outcome("B", {"4"})]) == "A 3, B 1"
    failed = outcome("DOWN", set(), error="connection refused", reason="no connection")
    assert _per_node([a, b, failed]) == "A 3, B 2, DOWN failed (1 on both)"
    c = outcome("C", {"3", "5"})
    assert _per_node([a, b, c]) == "A 3, B 2, C 2 (1 of them on several nodes, listed once)"
    limited = outcome("A", {"1"}, limited=True)
    assert _per_node([limited, b]) == "A 1 (limit reached, refine the search), B 2"
    partial = outcome("B", {"4"}, error="aborted", reason="broke off the search")
    assert _per_node([a, partial]) == "A 3, B 1 before it failed"
