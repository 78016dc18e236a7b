"""The store browser, the preview, the nodes dialog and the log pane, driven offscreen."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

import io
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pynetdicom import AE, evt
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDialog, QMessageBox
from pytestqt.modeltest import ModelTester

from tests.servers import free_port
from workstation import settings
from workstation.demo import Archive, generate_archive
from workstation.errors import StoreError
from workstation.nodes import RemoteNode, RetrieveMethod
from workstation.store import LocalStore, StoredInstance
from workstation.ui.common.log_pane import LogPane, install_log_handler
from workstation.ui.local_store.store_browser import StoreBrowser
from workstation.ui.local_store.store_model import ROW_ROLE
from workstation.ui.nodes.nodes_dialog import NodesDialog
from workstation.ui.viewer.preview import NO_IMAGE, PreviewUnavailable, decode_preview, load_preview

pytestmark = pytest.mark.gui
ROWS, COLUMNS = 64, 48
UID_ROOT = "1.2.826.0.1.3680043.10.1234.77."
VERIFICATION = "1.2.840.10008.1.1"


@pytest.fixture(scope="module")
def small_archive() -> Archive:
    """Three patients (Müller^Jürgen, Dvořák^Antonín, Παπαδόπουλος^Γιώργος), 64×48 images."""
    return generate_archive(
        seed=7,
        patients=3,
        studies_per_patient=(1, 2),
        series_per_study=(2, 3),
        instances_per_series=(1, 5),
        rows=ROWS,
        columns=COLUMNS,
    )


@pytest.fixture
def store(tmp_path: Path, small_archive: Archive) -> Iterator[LocalStore]:
    small_archive.write(tmp_path / "incoming")
    with LocalStore(tmp_path / "store", fsync=False) as s:
        s.import_path(tmp_path / "incoming")
        s.flush()
        yield s


@pytest.fixture
def browser(qtbot: Any, store: LocalStore) -> StoreBrowser:
    widget = StoreBrowser(store)
    qtbot.addWidget(widget)
    widget.resize(1280, 640)
    widget.show()
    settle(widget)
    return widget


def settle(browser: StoreBrowser, timeout: float = 5.0) -> None:
    """Wait until the browser's queries (in workers) have answered and the lists show them."""
    deadline = time.monotonic() + timeout
    while browser.loading:
        assert time.monotonic() < deadline, "the browser's queries did not answer"
        QTest.qWait(5)


@pytest.fixture
def check_model(request: pytest.FixtureRequest) -> Iterator[Callable[[Any], None]]:
    """pytest-qt's qtmodeltester, one per model (a tester follows the last model it checked).

    The Python tester raises at once; Qt's C++ tester would only print warnings.
    """
    testers: list[ModelTester] = []

    def check(model: Any) -> None:
        tester = ModelTester(request.config)
        tester.check(model, force_py=True)
        testers.append(tester)

    yield check
    for tester in testers:
        tester._cleanup()


def rows_of(model: Any) -> list[Any]:
    return [model.index(r, 0).data(ROW_ROLE) for r in range(model.rowCount())]


def select(view: Any, key_of: Any, wanted: str) -> None:
    """Select a row as a click would, and wait for what the selection shows below it."""
    model = view.model()
    for row in range(model.rowCount()):
        if key_of(model.index(row, 0).data(ROW_ROLE)) == wanted:
            view.selectRow(row)
            browser = view.window()
            assert isinstance(browser, StoreBrowser)
            settle(browser)
            return
    raise AssertionError(f"{wanted} is not listed")


def part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def image_dataset(pixels: np.ndarray, **attributes: Any) -> Dataset:
    """A secondary-capture image with ``pixels`` (frames × rows × cols [× 3]) uncompressed."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(UID_ROOT)
    ds.StudyInstanceUID = generate_uid(UID_ROOT)
    ds.SeriesInstanceUID = generate_uid(UID_ROOT)
    ds.PatientName, ds.PatientID, ds.Modality = "Test^Pixels", "PIX-1", "OT"
    rgb = pixels.ndim == 4 or (pixels.ndim == 3 and pixels.shape[-1] == 3)
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else "MONOCHROME2"
    if rgb:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if rgb else pixels.shape[-2:]
    if pixels.ndim == (4 if rgb else 3):
        ds.NumberOfFrames = pixels.shape[0]
    ds.BitsAllocated = ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def write(tmp_path: Path, ds: Dataset) -> Path:
    path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
    path.write_bytes(part10(ds))
    return path


def jpeg2000_instance(study_uid: str) -> bytes:
    """A CT whose pixel data claims JPEG 2000 but holds no decodable codestream."""
    ds = image_dataset(np.zeros((8, 8), np.uint16), Modality="CT", SeriesDescription="J2K")
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.StudyInstanceUID = study_uid
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    ds["PixelData"].VR = "OB"
    return part10(ds)


# -- the browser ---------------------------------------------------------------------------


def test_browser_lists_exactly_what_the_store_holds(
    browser: StoreBrowser, small_archive: Archive, check_model: Callable[[Any], None]
) -> None:
    for model in (browser.patients, browser.studies, browser.series):
        check_model(model)  # and again on every change while the test selects rows
    names = {p.patient_name for p in rows_of(browser.patient_view.model())}
    assert names == {p.PatientName for p in small_archive.patients}

    for patient in small_archive.patients:
        select(browser.patient_view, lambda p: p.patient_id, patient.PatientID)
        expected = {
            s.StudyInstanceUID for s in small_archive.studies if s.PatientID == patient.PatientID
        }
        assert {s.study_uid for s in rows_of(browser.study_view.model())} == expected
        for study_uid in expected:
            select(browser.study_view, lambda s: s.study_uid, study_uid)
            series = small_archive.study(study_uid).series
            listed = {s.series_uid: s.instance_count for s in rows_of(browser.series_view.model())}
            assert listed == {s.SeriesInstanceUID: len(s.instances) for s in series}
            assert browser.selected_study().study_uid == study_uid  # type: ignore[union-attr]


def test_studies_are_newest_first(browser: StoreBrowser) -> None:
    select(browser.patient_view, lambda p: p.patient_name, "Müller^Jürgen")
    dates = [s.study_date for s in rows_of(browser.study_view.model())]
    assert dates == sorted(dates, reverse=True)


@pytest.mark.parametrize("text", ["muller", "MÜLLER", "jurgen muller", "TB1-000001"])
def test_filter_ignores_case_and_accents(browser: StoreBrowser, text: str) -> None:
    browser.set_filter_text(text)
    settle(browser)
    assert [p.patient_name for p in rows_of(browser.patient_view.model())] == ["Müller^Jürgen"]
    assert browser.selected_patient().patient_name == "Müller^Jürgen"  # type: ignore[union-attr]


def test_filter_on_study_description_narrows_studies(
    browser: StoreBrowser, small_archive: Archive
) -> None:
    study = small_archive.studies[0]
    description = study.StudyDescription.lower()
    browser.set_filter_text(description)
    settle(browser)
    patients = rows_of(browser.patient_view.model())
    matching = {
        s.PatientID for s in small_archive.studies if s.StudyDescription.lower() == description
    }
    assert {p.patient_id for p in patients} == matching
    for study_row in rows_of(browser.study_view.model()):
        assert study_row.study_description.lower() == description

    browser.set_filter_text("no such patient")
    settle(browser)
    assert browser.patient_view.model().rowCount() == 0
    assert browser.study_view.model().rowCount() == 0
    assert browser.summary.text() == "No match"
    browser.set_filter_text("")
    settle(browser)
    assert browser.patient_view.model().rowCount() == len(small_archive.patients)


def test_selecting_a_series_previews_its_middle_image(
    browser: StoreBrowser, small_archive: Archive, qtbot: Any
) -> None:
    study = small_archive.studies[0]
    browser.select_study(study.StudyInstanceUID, study.series[0].SeriesInstanceUID)
    settle(browser)
    assert browser.selected_series().series_uid == study.series[0].SeriesInstanceUID  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: browser.preview.image() is not None)
    image = browser.preview.image()
    assert image is not None and not image.isNull()
    assert (image.width(), image.height()) == (COLUMNS, ROWS)
    count = len(study.series[0].instances)
    assert browser.preview._caption.text().startswith(f"Image {count // 2 + 1} of {count}")


def test_undecodable_pixel_data_shows_the_placeholder(
    browser: StoreBrowser, store: LocalStore, qtbot: Any
) -> None:
    study_uid = generate_uid(UID_ROOT)
    stored = store.store_bytes(jpeg2000_instance(study_uid))
    store.flush()
    browser.refresh()
    browser.select_study(study_uid, stored.series_uid)
    settle(browser)
    assert browser.selected_series().series_uid == stored.series_uid  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: browser.preview.message().startswith("Compressed (JPEG 2000)"))
    assert browser.preview.image() is None
    assert "the file is stored intact" in browser.preview.message()


def test_delete_study_asks_first_then_removes_files_and_rows(
    browser: StoreBrowser,
    store: LocalStore,
    qtbot: Any,
    monkeypatch: pytest.MonkeyPatch,
    check_model: Callable[[Any], None],
) -> None:
    check_model(browser.studies)  # keeps checking through the removal
    study = browser.selected_study()
    assert study is not None
    folder = store.root / study.study_uid
    assert folder.is_dir()
    asked: list[str] = []

    def answer(reply: QMessageBox.StandardButton) -> Any:
        def exec_(box: QMessageBox) -> int:
            asked.append(box.text())
            return reply

        return exec_

    monkeypatch.setattr(QMessageBox, "exec", answer(QMessageBox.StandardButton.Cancel))
    browser.delete_selected_study()
    assert folder.is_dir() and browser.studies.position(study.study_uid) is not None

    monkeypatch.setattr(QMessageBox, "exec", answer(QMessageBox.StandardButton.Yes))
    with qtbot.waitSignal(browser.message, check_params_cb=lambda m: m.startswith("Deleted")):
        browser.delete_selected_study()
    settle(browser)
    assert f"{study.instance_count} images" in asked[-1]
    assert study.study_description in asked[-1] and "Dvořák, Antonín" in asked[-1]
    assert not folder.exists()
    assert store.index.study(study.study_uid) is None
    assert browser.studies.position(study.study_uid) is None


def test_a_failed_delete_is_reported_and_keeps_the_study(
    browser: StoreBrowser, store: LocalStore, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = browser.selected_study()
    assert study is not None

    def refuse(study_uid: str) -> int:
        raise StoreError("cannot delete from the local store: permission denied")

    monkeypatch.setattr(store, "delete_study", refuse)
    monkeypatch.setattr(QMessageBox, "exec", lambda box: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(browser.message, check_params_cb=lambda m: m.startswith("Could not")):
        browser.delete_selected_study()
    settle(browser)
    assert browser.studies.position(study.study_uid) is not None
    assert browser.delete_study_button.isEnabled()


def test_delete_series_keeps_the_rest_of_the_study(
    browser: StoreBrowser, store: LocalStore, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, series = browser.selected_study(), browser.selected_series()
    assert study is not None and series is not None and study.series_count > 1
    monkeypatch.setattr(QMessageBox, "exec", lambda box: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(browser.message, check_params_cb=lambda m: m.startswith("Deleted")):
        browser.delete_selected_series()
    settle(browser)
    assert not (store.root / study.study_uid / series.series_uid).exists()
    assert browser.series.position(series.series_uid) is None
    assert browser.series.rowCount() == study.series_count - 1
    assert browser.selected_study() is not None
    assert browser.selected_study().study_uid == study.study_uid  # type: ignore[union-attr]


def test_open_containing_folder_opens_the_series_folder(
    browser: StoreBrowser, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[QUrl] = []

    def open_url(url: QUrl) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr(QDesktopServices, "openUrl", open_url)
    assert browser.open_containing_folder()
    study, series = browser.selected_study(), browser.selected_series()
    assert study is not None and series is not None
    assert Path(opened[0].toLocalFile()) == store.root / study.study_uid / series.series_uid


def test_arrivals_refresh_at_most_a_few_times_a_second_and_keep_the_selection(
    browser: StoreBrowser, store: LocalStore, qtbot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    select(browser.patient_view, lambda p: p.patient_name, "Dvořák^Antonín")
    chosen = browser.selected_study()
    assert chosen is not None
    refreshes: list[int] = []
    original = browser.refresh

    def counted() -> None:
        refreshes.append(1)
        original()

    monkeypatch.setattr(browser, "refresh", counted)
    browser._refresh_timer.timeout.disconnect()
    browser._refresh_timer.timeout.connect(browser.refresh)

    arrived: list[StoredInstance] = []
    store.add_listener(arrived.extend)  # runs on the index thread: only collect
    study_uid = generate_uid(UID_ROOT)
    for number in range(5):
        ds = image_dataset(np.zeros((4, 4), np.uint16), PatientName="Aaron^New", PatientID="NEW")
        ds.StudyInstanceUID, ds.InstanceNumber = study_uid, number + 1
        store.store_bytes(part10(ds))
    store.flush()
    for record in arrived:  # the window hands them over one by one, on the GUI thread
        browser.notify_stored([record])
    qtbot.waitUntil(
        lambda: any(p.patient_id == "NEW" for p in rows_of(browser.patient_view.model()))
    )
    settle(browser)
    assert len(refreshes) == 1
    assert browser.selected_study() is not None
    assert browser.selected_study().study_uid == chosen.study_uid  # type: ignore[union-attr]


def test_arrivals_show_up_under_an_active_filter(
    browser: StoreBrowser, store: LocalStore, qtbot: Any
) -> None:
    browser.set_filter_text("aaron")
    settle(browser)
    assert browser.summary.text() == "No match"
    arrived: list[StoredInstance] = []
    store.add_listener(arrived.extend)
    ds = image_dataset(np.zeros((4, 4), np.uint16), PatientName="Åaron^New", PatientID="NEW")
    store.store_bytes(part10(ds))
    store.flush()
    browser.notify_stored(arrived)
    qtbot.waitUntil(lambda: browser.patients.rowCount() == 1)
    settle(browser)
    qtbot.waitUntil(lambda: browser.summary.text() == "1 patient · 1 study")
    assert browser.selected_study().study_uid == ds.StudyInstanceUID  # type: ignore[union-attr]
    assert browser.summary.text() == "1 patient · 1 study"


# -- the preview ---------------------------------------------------------------------------


def pixel(image: Any, x: int, y: int) -> tuple[int, int, int]:
    color = image.pixelColor(x, y)
    return color.red(), color.green(), color.blue()


def test_preview_applies_rescale_and_the_window(tmp_path: Path) -> None:
    raw = np.array([[0, 980, 1040, 1080, 2000]], np.uint16)  # HU = raw - 1024
    ds = image_dataset(
        raw, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=[16, 400], WindowWidth=[81, 1]
    )
    image = decode_preview(write(tmp_path, ds))
    values = [pixel(image, x, 0)[0] for x in range(5)]
    # HU -1024 and -44 below the window, 16 in its middle, 56 at its top, 976 above.
    assert values[0] == values[1] == 0 and values[3] == values[4] == 255
    assert 125 <= values[2] <= 130


def test_preview_without_window_stretches_min_to_max_and_inverts_monochrome1(
    tmp_path: Path,
) -> None:
    raw = np.array([[100, 200, 300]], np.uint16)
    plain = decode_preview(write(tmp_path, image_dataset(raw)))
    assert [pixel(plain, x, 0)[0] for x in range(3)] == [0, 127, 255]
    inverted = image_dataset(raw, PhotometricInterpretation="MONOCHROME1")
    image = decode_preview(write(tmp_path, inverted))
    assert [pixel(image, x, 0)[0] for x in range(3)] == [255, 128, 0]


def test_preview_shows_colour_and_the_middle_frame(tmp_path: Path) -> None:
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0], rgb[0, 0] = 200, (10, 20, 30)
    image = decode_preview(write(tmp_path, image_dataset(rgb)))
    assert pixel(image, 0, 0) == (10, 20, 30) and pixel(image, 2, 1) == (200, 0, 0)

    frames = np.stack([np.full((4, 4), v, np.uint8) for v in (0, 0, 0)])
    frames[1, 0, 0] = 255  # only the middle frame has a bright pixel
    middle = decode_preview(write(tmp_path, image_dataset(frames)))
    assert pixel(middle, 0, 0)[0] == 255 and pixel(middle, 1, 1)[0] == 0


def test_preview_scales_big_images_down(tmp_path: Path) -> None:
    big = np.tile(np.arange(1024, dtype=np.uint16), (512, 1))
    image = load_preview(write(tmp_path, image_dataset(big)), max_size=256)
    assert image is not None and (image.width(), image.height()) == (256, 128)
    assert image.text("source-size") == "1024 × 512"


def test_preview_without_pixel_data_says_so(tmp_path: Path) -> None:
    ds = image_dataset(np.zeros((2, 2), np.uint8))
    del ds.PixelData
    path = write(tmp_path, ds)
    with pytest.raises(PreviewUnavailable, match=NO_IMAGE):
        decode_preview(path)
    assert load_preview(path) is None


# -- the nodes dialog ----------------------------------------------------------------------


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WORKSTATION_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


def type_into(qtbot: Any, edit: Any, text: str) -> None:
    edit.setFocus()
    edit.selectAll()
    qtbot.keyClicks(edit, text) if text else qtbot.keyClick(edit, "\b")


def test_nodes_dialog_round_trips_a_node_through_the_settings(qtbot: Any, config_dir: Path) -> None:
    dialog = NodesDialog(settings.load())
    qtbot.addWidget(dialog)
    dialog.add_node()
    type_into(qtbot, dialog.name_edit, "Orthanc")
    type_into(qtbot, dialog.ae_edit, "ORTHANC")
    type_into(qtbot, dialog.host_edit, "127.0.0.1")
    type_into(qtbot, dialog.port_edit, "4242")
    dialog.method_combo.setCurrentIndex(1)
    dialog.connect_spin.setValue(5)
    dialog.lanes_spin.setValue(3)
    type_into(qtbot, dialog.local_ae_edit, "MYWS")
    type_into(qtbot, dialog.callers_edit, "ORTHANC, CT01")
    assert dialog.node_error.text() == "" and dialog.local_error.text() == ""
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted

    expected = RemoteNode(
        "ORTHANC", "127.0.0.1", 4242, "Orthanc", RetrieveMethod.GET, 5.0, retrieve_associations=3
    )
    saved = settings.load()
    assert saved.nodes == {"Orthanc": expected} and dialog.settings() == saved
    assert saved.ae_title == "MYWS" and saved.allowed_callers == ["ORTHANC", "CT01"]

    again = NodesDialog(saved)
    qtbot.addWidget(again)
    assert again.node_list.count() == 1 and again.port_edit.text() == "4242"
    assert again.method_combo.currentText() == "C-GET" and again.lanes_spin.value() == 3


def test_nodes_dialog_shows_invalid_input_inline(qtbot: Any, config_dir: Path) -> None:
    dialog = NodesDialog(settings.load())
    qtbot.addWidget(dialog)
    dialog.add_node()
    type_into(qtbot, dialog.port_edit, "99999")
    assert "99999 is not between 1 and 65535" in dialog.node_error.text()
    dialog.accept()
    assert dialog.result() != QDialog.DialogCode.Accepted
    assert not settings.settings_path().exists()

    type_into(qtbot, dialog.port_edit, "104")
    assert dialog.node_error.text() == ""
    type_into(qtbot, dialog.local_ae_edit, "")
    assert "Invalid AE title" in dialog.local_error.text()


@pytest.fixture
def verification_scp() -> Iterator[int]:
    ae = AE(ae_title="ECHOSCP")
    ae.add_supported_context(VERIFICATION)
    handlers: list[Any] = [(evt.EVT_C_ECHO, lambda event: 0x0000)]
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    assert server is not None
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def echo_text(qtbot: Any, config_dir: Path, port: int) -> tuple[str, bool]:
    current = settings.load()
    current.nodes = {"SCP": RemoteNode("ECHOSCP", "127.0.0.1", port, "SCP", connect_timeout=5)}
    dialog = NodesDialog(current)
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.echo_finished, timeout=15_000) as blocker:
        qtbot.mouseClick(dialog.echo_button, Qt.MouseButton.LeftButton)
    text, ok = blocker.args
    assert dialog.echo_result.text() == text and dialog.echo_button.isEnabled()
    return text, ok


def test_echo_reports_success_with_the_round_trip_time(
    qtbot: Any, config_dir: Path, verification_scp: int
) -> None:
    text, ok = echo_text(qtbot, config_dir, verification_scp)
    assert ok and "Echo OK" in text and text.endswith(" ms")


def test_echo_to_a_closed_port_says_connection_refused(qtbot: Any, config_dir: Path) -> None:
    text, ok = echo_text(qtbot, config_dir, free_port())
    assert not ok and "connection refused" in text.lower()


# -- the log pane --------------------------------------------------------------------------


def test_log_records_from_any_thread_reach_the_pane_on_the_gui_thread(qtbot: Any) -> None:
    pane = LogPane()
    qtbot.addWidget(pane)
    root = logging.getLogger()
    old_level = root.level
    handler = install_log_handler(pane)
    appended_in: list[str] = []
    append = pane._append

    def spy(lines: list[tuple[int, str]]) -> None:
        appended_in.append(threading.current_thread().name)
        append(lines)

    def work() -> None:
        logger = logging.getLogger("test.worker")
        logger.info("hello from the worker")
        logger.debug("too detailed")
        logger.warning("careful")

    pane._append = spy  # type: ignore[method-assign]
    try:
        worker = threading.Thread(target=work, name="worker")
        worker.start()
        worker.join()
        qtbot.waitUntil(lambda: "careful" in pane.text())
        assert "hello from the worker" in pane.text() and "too detailed" not in pane.text()
        assert appended_in and set(appended_in) == {threading.main_thread().name}

        pane.set_level(logging.WARNING)
        assert "careful" in pane.text() and "hello from the worker" not in pane.text()
        pane.set_level(logging.INFO)
        assert "hello from the worker" in pane.text()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_differing_copies_set_aside_are_shown_in_the_summary(
    browser: StoreBrowser, store: LocalStore, qtbot: Any
) -> None:
    (row,) = store.index.instances()[:1]
    stored = (store.root / row.path).read_bytes()
    altered = bytearray(stored)
    altered[-1] ^= 0xFF  # the same instance, one pixel byte changed
    result = store.store_bytes(bytes(altered))
    assert result.conflict is not None
    browser.refresh()
    settle(browser)
    assert browser.summary.text().endswith("· 1 differing copy of stored images set aside")
    assert str(store.conflicts_folder) in browser.summary.toolTip()
    assert (store.root / row.path).read_bytes() == stored


def test_nodes_dialog_edits_the_character_set(qtbot: Any, config_dir: Path) -> None:
    current = settings.load()
    current.nodes = {"Old": RemoteNode("OLD", "127.0.0.1", 104, "Old", uid_lists=False)}
    settings.save(current)
    dialog = NodesDialog(settings.load())
    qtbot.addWidget(dialog)
    combo = dialog.charset_combo
    assert combo.currentData() == "ISO_IR 192" and combo.currentText() == "ISO_IR 192 (UTF-8)"
    combo.setCurrentIndex(combo.findData("ISO_IR 100"))
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted
    saved = settings.load().nodes["Old"]
    assert saved.charset == "ISO_IR 100"
    assert saved.uid_lists is False  # untouched, it stays as saved

    again = NodesDialog(settings.load())
    qtbot.addWidget(again)
    assert again.charset_combo.currentText() == "ISO_IR 100 (Latin-1)"
    assert not again.lists_check.isChecked()
    again.lists_check.setChecked(True)
    again.accept()
    assert settings.load().nodes["Old"].uid_lists is True
