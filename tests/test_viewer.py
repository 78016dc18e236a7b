"""The image viewer, the series thumbnails, "Open with" and the demo's phantoms, offscreen."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from tests.ui_support import WAIT_MS, search
from workstation import settings
from workstation.demo import generate_archive
from workstation.demo.archive import demo_archive
from workstation.demo.phantoms import phantom
from workstation.jobs import JobState
from workstation.session import Session
from workstation.store import LocalStore
from workstation.store.layout import resolve_in_root, series_path
from workstation.ui.local_store.store_browser import StoreBrowser
from workstation.ui.local_store.store_model import ROW_ROLE
from workstation.ui.main_window import MainWindow
from workstation.ui.viewer import ViewerWindow
from workstation.ui.viewer.imaging import CODECS_HINT
from workstation.ui.viewer.thumbnails import THUMBNAILS

pytestmark = pytest.mark.gui
pytest_plugins = ["tests.ui_support"]  # its fixtures: demo, session, window...
ROOT = "1.2.826.0.1.3680043.10.1234.88."
SIZE = 96
SLICES = 5


def part10(ds: Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def image(
    study_uid: str,
    series_uid: str,
    number: int,
    pixels: np.ndarray,
    *,
    modality: str = "OT",
    series_number: int = 1,
    description: str = "",
    **attributes: Any,
) -> Dataset:
    """An uncompressed image of ``pixels`` (frames × rows × cols [× 3], or rows × cols)."""
    sop_class = CTImageStorage if modality == "CT" else SecondaryCaptureImageStorage
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(ROOT)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.PatientName, ds.PatientID, ds.PatientSex = "Test^Viewer", "VIEW-1", "F"
    ds.StudyDate, ds.StudyDescription = "20240315", "CT HEAD"
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = modality, series_number, description
    ds.InstanceNumber = number
    rgb = pixels.shape[-1] == 3
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


class Study:
    """A CT head series of five phantom slices (HU, intercept -1024) and an MR series."""

    def __init__(self) -> None:
        self.study_uid = generate_uid(ROOT)
        self.ct_uid = generate_uid(ROOT)
        self.mr_uid = generate_uid(ROOT)
        self.datasets = []
        for i in range(SLICES):
            head = phantom("CT", "HEAD", "AXIAL 5MM", i, SLICES, SIZE, SIZE)
            self.datasets.append(
                image(
                    self.study_uid,
                    self.ct_uid,
                    i + 1,
                    head.pixels,
                    modality="CT",
                    description="AXIAL 5MM",
                    BitsStored=12,
                    HighBit=11,
                    RescaleIntercept=-1024,
                    RescaleSlope=1,
                    WindowCenter=40,
                    WindowWidth=80,
                )
            )
        for i in range(2):
            brain = phantom("MR", "BRAIN", "T2 AX", i, 2, SIZE, SIZE)
            self.datasets.append(
                image(
                    self.study_uid,
                    self.mr_uid,
                    i + 1,
                    brain.pixels,
                    modality="MR",
                    series_number=2,
                    description="T2 AX",
                )
            )


@pytest.fixture
def study() -> Study:
    return Study()


@pytest.fixture
def store(tmp_path: Path, study: Study) -> Iterator[LocalStore]:
    with LocalStore(tmp_path / "store", fsync=False) as s:
        for ds in study.datasets:
            s.store_bytes(part10(ds))
        s.flush()
        yield s


@pytest.fixture
def browser(qtbot: Any, store: LocalStore, study: Study) -> StoreBrowser:
    widget = StoreBrowser(store)
    qtbot.addWidget(widget)
    widget.resize(1280, 700)
    widget.show()
    widget.select_study(study.study_uid, study.ct_uid)
    qtbot.waitUntil(lambda: not widget.loading)  # the browser reads the index in workers
    assert widget.selected_series().series_uid == study.ct_uid  # type: ignore[union-attr]
    return widget


def open_from_double_click(qtbot: Any, browser: StoreBrowser, series_uid: str) -> ViewerWindow:
    view = browser.series_view
    row = next(
        r
        for r in range(view.model().rowCount())
        if view.model().index(r, 0).data(ROW_ROLE).series_uid == series_uid
    )
    rect = view.visualRect(view.model().index(row, 0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    viewers = browser.findChildren(ViewerWindow)
    assert len(viewers) == 1
    viewer = viewers[0]
    qtbot.waitUntil(lambda: viewer.canvas.image() is not None, timeout=WAIT_MS)
    return viewer


def pixels_of(img: QImage | None) -> bytes:
    assert img is not None and not img.isNull()
    return bytes(img.constBits())


def shown(qtbot: Any, viewer: ViewerWindow, index: int) -> QImage:
    """Wait until image ``index`` is on screen; return it."""

    def ready() -> bool:
        key = viewer.shown_key()
        return (
            key is not None and viewer._listing is not None and (viewer._listing.keys[index] == key)
        )

    qtbot.waitUntil(ready, timeout=WAIT_MS)
    img = viewer.canvas.image()
    assert img is not None
    return img


def wheel(widget: Any, notches: int, modifiers: Any = Qt.KeyboardModifier.NoModifier) -> None:
    centre = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(
        centre,
        widget.mapToGlobal(centre),
        QPoint(0, 0),
        QPoint(0, 120 * notches),
        Qt.MouseButton.NoButton,
        modifiers,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


def drag(widget: Any, button: Qt.MouseButton, dx: int, dy: int) -> None:
    start = QPointF(widget.width() / 2, widget.height() / 2)
    end = start + QPointF(dx, dy)
    none = Qt.KeyboardModifier.NoModifier
    for kind, point, buttons in (
        (QEvent.Type.MouseButtonPress, start, button),
        (QEvent.Type.MouseMove, (start + end) / 2, button),
        (QEvent.Type.MouseMove, end, button),
        (QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton),
    ):
        event = QMouseEvent(kind, point, widget.mapToGlobal(point), button, buttons, none)
        QApplication.sendEvent(widget, event)


# -- the viewer ----------------------------------------------------------------------------


def test_double_click_opens_the_first_image_with_its_corner_text(
    qtbot: Any, browser: StoreBrowser, study: Study
) -> None:
    viewer = open_from_double_click(qtbot, browser, study.ct_uid)
    assert viewer.isVisible() and viewer.series_uid == study.ct_uid
    img = shown(qtbot, viewer, 0)
    assert (img.width(), img.height()) == (SIZE, SIZE)
    assert viewer.shown_key().path.endswith(f"{study.datasets[0].SOPInstanceUID}.dcm")
    text = viewer.corner_text()
    for expected in (
        "TEST, Viewer",
        "VIEW-1",
        "CT HEAD",
        "2024-03-15",
        "Se 1: AXIAL 5MM",
        f"Im 1/{SLICES}",
        "WL 40 / WW 80",
        "Zoom",
    ):
        assert expected in text, expected
    # The brain window: air is black, the skull white, the brain grey.
    assert img.pixelColor(2, 2).red() == 0
    assert 40 < img.pixelColor(SIZE // 2, SIZE // 2).red() < 220
    # The study's two series are in the strip; the MR thumbnail arrives.
    assert viewer.strip.count() == 2
    qtbot.waitUntil(lambda: not viewer.strip.loading(), timeout=WAIT_MS)
    assert isinstance(viewer.strip.thumbnail(study.mr_uid), QImage)


def test_wheel_and_keys_scroll_and_the_pixels_change(
    qtbot: Any, browser: StoreBrowser, study: Study
) -> None:
    viewer = open_from_double_click(qtbot, browser, study.ct_uid)
    first = pixels_of(shown(qtbot, viewer, 0))
    wheel(viewer.canvas, -1)  # towards the user: the next image
    assert viewer.current_index == 1
    second = pixels_of(shown(qtbot, viewer, 1))
    assert second != first
    assert f"Im 2/{SLICES}" in viewer.corner_text()
    wheel(viewer.canvas, 1)
    assert pixels_of(shown(qtbot, viewer, 0)) == first
    qtbot.keyClick(viewer.canvas, Qt.Key.Key_End)
    shown(qtbot, viewer, SLICES - 1)
    qtbot.keyClick(viewer.canvas, Qt.Key.Key_PageUp)
    assert viewer.current_index == SLICES - 2
    qtbot.keyClick(viewer.canvas, Qt.Key.Key_Down)
    qtbot.keyClick(viewer.canvas, Qt.Key.Key_Down)  # stops at the last image
    assert viewer.current_index == SLICES - 1


def test_dragging_changes_the_window_zoom_and_pan(
    qtbot: Any, browser: StoreBrowser, study: Study
) -> None:
    viewer = open_from_double_click(qtbot, browser, study.ct_uid)
    before = pixels_of(shown(qtbot, viewer, 0))
    assert viewer.window_level() == (40, 80)
    drag(viewer.canvas, Qt.MouseButton.LeftButton, 60, 30)  # wider, and a higher level
    center, width = viewer.window_level()  # type: ignore[misc]
    assert width > 80 and center > 40
    assert f"WL {center:.0f} / WW {width:.0f}" in viewer.corner_text()
    assert pixels_of(viewer.canvas.image()) != before

    scale = viewer.canvas.scale()
    drag(viewer.canvas, Qt.MouseButton.RightButton, 0, -80)  # up: zoom in
    assert viewer.canvas.scale() > scale * 1.3
    assert f"Zoom {viewer.canvas.scale() * 100:.0f}%" in viewer.corner_text()
    wheel(viewer.canvas, 1, Qt.KeyboardModifier.ControlModifier)
    assert viewer.current_index == 0  # Ctrl+wheel zooms, it does not scroll
    drag(viewer.canvas, Qt.MouseButton.MiddleButton, 25, -10)
    assert viewer.canvas.pan() != QPointF(0, 0)

    viewer.reset()
    assert viewer.canvas.pan() == QPointF(0, 0) and viewer.canvas.zoom_factor() == 1.0
    assert viewer.window_level() == (40, 80)
    assert pixels_of(viewer.canvas.image()) == before


def test_ct_presets_set_the_window_in_the_corner_text(
    qtbot: Any, browser: StoreBrowser, study: Study
) -> None:
    viewer = open_from_double_click(qtbot, browser, study.ct_uid)
    shown(qtbot, viewer, 0)
    for name, text in (
        ("Lung", "WL -600 / WW 1500 (Lung)"),
        ("Bone", "WL 300 / WW 1500 (Bone)"),
        ("Abdomen", "WL 40 / WW 400 (Abdomen)"),
        ("Brain", "WL 40 / WW 80 (Brain)"),
    ):
        viewer.preset_actions[name].trigger()
        assert text in viewer.corner_text(), name
    viewer.preset_actions["Lung"].trigger()
    lung = pixels_of(viewer.canvas.image())
    viewer.preset_actions["Default"].trigger()
    assert "WL 40 / WW 80" in viewer.corner_text() and "(Brain)" not in viewer.corner_text()
    assert pixels_of(viewer.canvas.image()) != lung
    # The presets are for CT: the MR series has only its own window.
    viewer.strip.series_chosen.emit(study.mr_uid)
    shown(qtbot, viewer, 0)
    assert not viewer.preset_actions["Lung"].isEnabled()
    assert viewer.preset_actions["Default"].isEnabled()
    assert "Se 2: T2 AX" in viewer.corner_text()


def stored_series(store: LocalStore, datasets: list[Dataset]) -> tuple[str, str]:
    for ds in datasets:
        store.store_bytes(part10(ds))
    store.flush()
    return datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID


def open_viewer(qtbot: Any, store: LocalStore, study_uid: str, series_uid: str) -> ViewerWindow:
    viewer = ViewerWindow(store, study_uid, series_uid)
    qtbot.addWidget(viewer)
    viewer.show()

    def settled() -> bool:  # an image, or the text shown instead of one
        return viewer.shown_key() is not None or viewer.canvas.message() not in ("", "Loading…")

    qtbot.waitUntil(settled, timeout=WAIT_MS)
    return viewer


def test_monochrome1_is_shown_inverted(qtbot: Any, store: LocalStore) -> None:
    raw = np.tile(np.arange(0, 1000, 10, dtype=np.uint16), (20, 1))
    study_uid = generate_uid(ROOT)
    shown_images = []
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        ds = image(study_uid, generate_uid(ROOT), 1, raw, PhotometricInterpretation=photometric)
        viewer = open_viewer(qtbot, store, *stored_series(store, [ds]))
        assert viewer.window_level() == (495, 990)  # no window in the file: the data range
        shown_images.append(np.frombuffer(pixels_of(viewer.canvas.image()), np.uint8))
    plain, inverted = shown_images
    assert plain[0] == 0 and plain[99] == 255
    assert np.array_equal(inverted, 255 - plain)


def test_rgb_and_multi_frame_images(qtbot: Any, store: LocalStore) -> None:
    rgb = np.zeros((8, 10, 3), np.uint8)
    rgb[..., 0], rgb[0, 0] = 200, (10, 20, 30)
    study_uid = generate_uid(ROOT)
    viewer = open_viewer(
        qtbot, store, *stored_series(store, [image(study_uid, generate_uid(ROOT), 1, rgb)])
    )
    img = viewer.canvas.image()
    assert img is not None
    assert img.pixelColor(0, 0).getRgb()[:3] == (10, 20, 30)
    assert img.pixelColor(5, 5).getRgb()[:3] == (200, 0, 0)
    assert viewer.window_level() is None  # no window/level on colour
    viewer.close()

    frames = np.stack([np.full((6, 6), 40 * f, np.uint8) for f in range(4)])
    frames[:, 0, 0] = 255  # the same range in every frame
    ds = image(study_uid, generate_uid(ROOT), 1, frames)
    viewer = open_viewer(qtbot, store, *stored_series(store, [ds]))
    assert viewer.image_count == 4 and viewer.listing_complete
    assert "Im 1/4" in viewer.corner_text()
    first = shown(qtbot, viewer, 0).pixelColor(3, 3).red()
    viewer.step(2)
    third = shown(qtbot, viewer, 2).pixelColor(3, 3).red()
    assert (first, third) == (0, 80)
    assert viewer.shown_key().frame == 2  # type: ignore[union-attr]


def test_a_series_of_multi_frame_files_counts_every_frame(qtbot: Any, store: LocalStore) -> None:
    study_uid, series_uid = generate_uid(ROOT), generate_uid(ROOT)
    files = [
        image(study_uid, series_uid, n + 1, np.full((3, 4, 4), n * 10, np.uint8)) for n in range(3)
    ]  # three files of three frames
    viewer = open_viewer(qtbot, store, *stored_series(store, files))
    qtbot.waitUntil(lambda: viewer.listing_complete, timeout=WAIT_MS)
    assert viewer.image_count == 9
    viewer.show_index(8)
    assert shown(qtbot, viewer, 8) is not None
    assert viewer.shown_key().frame == 2  # type: ignore[union-attr]


@pytest.mark.skipif(
    get_decoder(JPEG2000Lossless).is_available, reason="a JPEG 2000 decoder is installed"
)
def test_a_compressed_image_without_decoder_says_what_to_install(
    qtbot: Any, store: LocalStore
) -> None:
    ds = image(generate_uid(ROOT), generate_uid(ROOT), 1, np.zeros((8, 8), np.uint16))
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])
    ds["PixelData"].VR = "OB"
    viewer = open_viewer(qtbot, store, *stored_series(store, [ds]))
    assert viewer.canvas.image() is None
    assert viewer.canvas.message() == f"This image is JPEG 2000 compressed: {CODECS_HINT}"
    assert CODECS_HINT == "install workstation[codecs] to view it"


def test_the_frame_cache_stays_within_its_budget(
    qtbot: Any, store: LocalStore, study: Study
) -> None:
    viewer = open_viewer(qtbot, store, study.study_uid, study.ct_uid)
    frame_bytes = SIZE * SIZE * 4  # float32
    viewer.cache().set_limit(2 * frame_bytes, keep=viewer.shown_key())
    for index in range(SLICES):
        viewer.show_index(index)
        shown(qtbot, viewer, index)
        assert viewer.cache().nbytes <= 2 * frame_bytes
    assert len(viewer.cache()) <= 2


# -- the store browser: thumbnails, the queue, "Open with" ----------------------------------


def test_the_preview_shows_a_thumbnail_per_series_made_once(
    qtbot: Any, browser: StoreBrowser, study: Study
) -> None:
    strip = browser.thumbnails
    assert [strip.item(r).data(Qt.ItemDataRole.UserRole + 1) for r in range(strip.count())] == [
        study.ct_uid,
        study.mr_uid,
    ]
    assert strip.current_series() == study.ct_uid
    qtbot.waitUntil(lambda: not strip.loading(), timeout=WAIT_MS)
    thumb = strip.thumbnail(study.ct_uid)
    assert isinstance(thumb, QImage) and thumb.width() == SIZE
    assert (study.ct_uid, SLICES) in THUMBNAILS
    # A click on a thumbnail selects its series; a double-click opens the viewer there.
    strip.series_chosen.emit(study.mr_uid)
    assert browser.selected_series().series_uid == study.mr_uid  # type: ignore[union-attr]
    strip.series_opened.emit(study.mr_uid)
    viewer = browser.findChildren(ViewerWindow)[0]
    assert viewer.series_uid == study.mr_uid


def test_open_with_starts_the_configured_command_on_the_folder(
    qtbot: Any,
    browser: StoreBrowser,
    store: LocalStore,
    study: Study,
    tmp_path: Path,
) -> None:
    out = tmp_path / "opened with.txt"
    script = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"
    viewers = {
        "Recorder": f"{sys.executable} -c '{script}' '{out}' {{folder}}",
        "Nothing": "/nonexistent/viewer",
    }
    browser.set_external_viewers(lambda: viewers)
    menu = browser.context_menu(browser.series_view, "Delete series…", lambda: None)
    open_with = next(a.menu() for a in menu.actions() if a.text() == "Open with")
    assert [a.text() for a in open_with.actions()] == ["Recorder", "Nothing"]
    open_with.actions()[0].trigger()
    qtbot.waitUntil(out.exists, timeout=WAIT_MS)
    expected = resolve_in_root(store.root, series_path(study.study_uid, study.ct_uid))
    qtbot.waitUntil(lambda: out.read_text() == str(expected), timeout=WAIT_MS)
    assert "did not start" in browser.open_with("Nothing")

    browser.set_external_viewers(dict)
    menu = browser.context_menu(browser.study_view, "Delete study…", lambda: None)
    open_with = next(a.menu() for a in menu.actions() if a.text() == "Open with")
    assert not open_with.actions()[0].isEnabled()
    assert "external_viewers" in open_with.actions()[0].text()


def test_double_click_on_a_finished_retrieve_opens_its_study_in_the_viewer(
    qtbot: Any, window: MainWindow, session: Session
) -> None:
    search(qtbot, window, "smith")
    row = max(window.study_model.rows, key=lambda r: r.instance_count or 0)
    window.study_view.select_study(row.study_uid)
    qtbot.keyClick(window.study_view.table, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    table = window.queue_view.table
    qtbot.waitUntil(
        lambda: [j.state for j in window.queue_view.model.rows] == [JobState.DONE],
        timeout=WAIT_MS,
    )
    rect = table.visualRect(table.model().index(0, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    viewers = window.store_browser.findChildren(ViewerWindow)
    assert len(viewers) == 1
    first = session.store.index.series(row.study_uid)[0]
    assert viewers[0].series_uid == first.series_uid
    qtbot.waitUntil(lambda: viewers[0].canvas.image() is not None, timeout=WAIT_MS)
    assert window.tabs.currentWidget() is window.store_browser


def test_settings_without_external_viewers_still_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKSTATION_CONFIG_DIR", str(tmp_path))
    (tmp_path / "settings.json").write_text(json.dumps({"version": 1, "ae_title": "OLD"}))
    assert settings.load().external_viewers == {}
    prefs = settings.load()
    prefs.external_viewers = {"Weasis": "weasis {folder}"}
    settings.save(prefs)
    assert settings.load().external_viewers == {"Weasis": "weasis {folder}"}


# -- the demo's phantoms ---------------------------------------------------------------------


def test_the_window_demo_has_realistic_images_and_the_same_studies() -> None:
    plain, real = demo_archive(), demo_archive(realistic=True)
    assert plain.archive is not None and real.archive is not None
    assert [s.StudyInstanceUID for s in real.archive.studies] == [
        s.StudyInstanceUID for s in plain.archive.studies
    ]
    assert generate_archive().rows == 16  # the tests' archive keeps its 16 × 16 pattern
    ct = next(
        series
        for study in real.archive.studies
        for series in study.series
        if series.Modality == "CT"
        and series.SeriesDescription == "AXIAL 5MM"
        and len(series.instances) >= 3
    )
    slices = [
        dcmread(io.BytesIO(real.part10(instance.SOPInstanceUID))) for instance in ct.instances
    ]
    hu = [ds.pixel_array.astype(np.int32) + int(ds.RescaleIntercept) for ds in slices]
    assert (slices[0].Rows, slices[0].Columns) == (256, 256)
    assert int(slices[0].RescaleIntercept) == -1024
    assert abs(int(np.median(hu[0][:8, :8])) + 1000) < 30  # air at the corner
    body = hu[len(hu) // 2][96:160, 96:160]
    assert -150 < int(np.median(body)) < 100  # soft tissue in the middle
    assert not np.array_equal(hu[0], hu[-1])  # scrolling shows change
    by_modality = {
        series.Modality: series for study in real.archive.studies for series in study.series
    }
    cr = dcmread(io.BytesIO(real.part10(by_modality["CR"].instances[0].SOPInstanceUID)))
    assert cr.PhotometricInterpretation == "MONOCHROME1" and cr.Rows == 256
    us = dcmread(io.BytesIO(real.part10(by_modality["US"].instances[0].SOPInstanceUID)))
    assert us.BitsStored == 8 and int(us.pixel_array.max()) <= 255
