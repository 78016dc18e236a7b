"""What keeps the window responsive under load (see tests/benchmarks/bench_gui.py): rows read
from raw identifiers, capped flushes, cheap painting, the C-FIND helper process and the
local-store look-ups (tests/test_ui_search_slices.py: time-sliced flushes, merged batches)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import struct
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom.charset import convert_encodings, encode_string
from pydicom.datadict import tag_for_keyword
from pydicom.filereader import read_dataset
from PySide6.QtCore import QModelRoleData, QModelRoleDataSpan, Qt
from pytestqt.qtbot import QtBot

from tests.ui_support import WAIT_MS, search
from workstation.cancel import CancelToken
from workstation.demo.archive import DemoArchive
from workstation.dimse.find_helper import FindOutcome, FindProcess
from workstation.errors import ConnectionFailed
from workstation.nodes import RemoteNode
from workstation.query import Query
from workstation.results import SeriesRow, StudyRow
from workstation.store import LocalStore
from workstation.ui.common.batch_buffer import BatchBuffer
from workstation.ui.common.tasks import TaskRunner
from workstation.ui.main_window import MainWindow
from workstation.ui.search.local_tracker import LocalTracker
from workstation.ui.search.study_model import StudyTableModel

pytest_plugins = ["tests.ui_support"]

NAMES = ["DOE^JOHN", "Müller^Anna", "Иванов^Иван", "Yamada^Tarou=山田^太郎=やまだ^たろう",
         "A^B\\C^D", "  SPACED^NAME  ", "=山田^太郎", "", "Wang^XiaoDong=王^小东="]  # fmt: skip
CHARSETS = ["", "ISO_IR 100", "ISO_IR 192", "\\ISO 2022 IR 87", "ISO_IR 144", "GB18030"]
NUMBERS = [b"12", b" 12 ", b"+3", b"1.0", b"abc", b"", b"1\\2", b"0012", b"\xb2"]
UIDS = [b"1.2.3\x00", b"1.2.3\\1.2.4", b" 1.2.3", b""]


def identifier(charset: str, name: str, number: bytes, uid: bytes) -> bytes:
    """A C-FIND identifier as it comes off the wire (Implicit VR Little Endian)."""
    codecs = convert_encodings(charset.split("\\")) if charset else ["iso8859"]
    text = encode_string(name, codecs)
    values = {
        "SpecificCharacterSet": charset.encode(), "StudyInstanceUID": uid or b"1.2.840.1",
        "PatientName": text, "ReferringPhysicianName": text, "PatientID": text[:16],
        "StudyDescription": text + b"\\x", "ModalitiesInStudy": b"CT\\MR ",
        "StudyDate": b"20240102", "StudyTime": b"101500.1 ", "PatientSex": b"M ",
        "NumberOfStudyRelatedInstances": number, "NumberOfStudyRelatedSeries": number,
        "SeriesInstanceUID": uid, "SeriesNumber": number, "Modality": b"CT",
    }  # fmt: skip
    out = b""
    if not charset:
        del values["SpecificCharacterSet"]
    for tag, value in sorted((tag_for_keyword(k), v) for k, v in values.items()):
        value += b" " * (len(value) % 2)
        out += struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value
    return out


@pytest.mark.filterwarnings("ignore:Failed to:UserWarning")  # names this charset cannot hold
@pytest.mark.filterwarnings("ignore:Found unknown escape:UserWarning")
@pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")  # the damaged ones
@pytest.mark.parametrize("charset", CHARSETS)
def test_rows_read_from_raw_bytes_equal_rows_from_pydicom(charset: str) -> None:
    for name in NAMES:
        for number in NUMBERS:
            for uid in UIDS:
                try:
                    raw = identifier(charset, name, number, uid)
                except (LookupError, ValueError):  # not representable in this character set
                    continue
                fresh = read_dataset(BytesIO(raw), True, True)
                converted = read_dataset(BytesIO(raw), True, True)
                for _ in converted:  # every element converted by pydicom: the slow path
                    pass
                for cls in (StudyRow, SeriesRow):
                    assert cls.from_dataset(fresh, "N") == cls.from_dataset(converted, "N"), (
                        charset, name, number, uid,
                    )  # fmt: skip


def test_batch_buffer_hands_over_at_most_max_items_per_tick(qtbot: QtBot) -> None:
    batches: list[list[int]] = []
    buffer = BatchBuffer(batches.append, interval_ms=20, max_items=500)
    buffer.extend(range(1200))
    qtbot.waitUntil(lambda: sum(map(len, batches)) == 1200, timeout=5000)
    assert [len(b) for b in batches] == [500, 500, 200]
    assert [i for b in batches for i in b] == list(range(1200))
    buffer.extend(range(3))
    buffer.flush()  # an explicit flush still hands over everything at once
    assert batches[-1] == [0, 1, 2] and buffer.pending == 0
    buffer.close()


def test_one_multidata_call_answers_what_data_answers() -> None:
    model = StudyTableModel()
    model.upsert([StudyRow(f"1.2.{i}", patient_name="Doe^Jo", instance_count=i) for i in range(3)])
    model.set_local_counts({"1.2.1": 1, "1.2.2": 2})
    roles = [Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.TextAlignmentRole,
             Qt.ItemDataRole.FontRole, Qt.ItemDataRole.ForegroundRole,
             Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.DecorationRole]  # fmt: skip
    items = {role: QModelRoleData(int(role.value)) for role in roles}  # reused, as Qt does
    for row in range(model.rowCount()):
        for col in range(model.columnCount()):
            index = model.index(row, col)
            for role, item in items.items():
                model.multiData(index, QModelRoleDataSpan(item))
                assert item.data() == model.data(index, role), (row, col, role)
    assert not model.index(3, 0).isValid() and not model.index(0, 13).isValid()


def test_the_find_helper_streams_rows_cancels_and_reports_failures(
    demo: DemoArchive,
) -> None:
    assert demo.archive is not None
    finder = FindProcess()
    try:
        outcome = FindOutcome()
        batches = finder.study_rows(
            demo.node, Query.study(), calling_aet="TEST", limit=None,
            cancel=CancelToken(), outcome=outcome,
        )  # fmt: skip
        uids = {row.study_uid for rows in batches for row in rows}
        assert uids == {s.StudyInstanceUID for s in demo.archive.studies}
        assert not outcome.limited

        demo.delay_per_match = 0.2
        token = CancelToken()
        slow = finder.study_rows(
            demo.node, Query.study(), calling_aet="TEST", limit=None, cancel=token,
            outcome=FindOutcome(),
        )  # fmt: skip
        first = next(slow)
        started = time.monotonic()
        token.cancel()
        rest = [row for rows in slow for row in rows]
        assert len(first) + len(rest) < len(uids) and time.monotonic() - started < 5

        closed = RemoteNode("NOBODY", "127.0.0.1", demo.port + 1, connect_timeout=2.0)
        with pytest.raises(ConnectionFailed):
            list(finder.study_rows(closed, Query.study(), calling_aet="TEST", limit=None,
                                   cancel=CancelToken(), outcome=FindOutcome()))  # fmt: skip
    finally:
        finder.close()


def test_the_search_ends_once_every_row_is_shown(qtbot: QtBot, window: MainWindow) -> None:
    window.search.buffer._max_items = 2  # many small flushes after the last C-FIND answer
    search(qtbot, window, "")
    assert window.study_model.rowCount() == len(window.study_model.rows) > 2
    assert window.search.buffer.pending == 0


def test_local_counts_are_looked_up_in_one_query_per_batch(
    qtbot: QtBot, tmp_path: Path, demo: DemoArchive
) -> None:
    assert demo.archive is not None
    held = demo.archive.studies[0]
    demo.archive.write(tmp_path / "incoming", studies=[held])
    with LocalStore(tmp_path / "store", fsync=False) as store:
        store.import_path(tmp_path / "incoming")
        store.flush()
        model = StudyTableModel()
        others = [f"1.2.826.0.1.3680043.10.1234.9.{n}" for n in range(600)]
        shown = [s.StudyInstanceUID for s in demo.archive.studies[:3]] + others
        model.upsert([StudyRow(uid) for uid in shown])
        tracker = LocalTracker(store, model, TaskRunner())
        batches: list[int] = []
        counted = store.index.study_instance_counts

        def spy(uids: Any) -> dict[str, int]:
            uids = list(uids)
            batches.append(len(uids))
            return counted(uids)

        store.index.study_instance_counts = spy  # type: ignore[method-assign]
        with qtbot.waitSignal(tracker.recounted, timeout=WAIT_MS):
            tracker.recount(shown)
        assert batches == [len(shown)]  # one call; the index asks 500 UIDs per query
        assert model.local_count(held.StudyInstanceUID) == held.number_of_instances
        assert all(model.local_count(uid) == 0 for uid in shown[1:])
        tracker.close()
