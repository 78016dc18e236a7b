"""Import (folders, DICOMDIR media, ZIP files) and export (folders, ZIP, DICOMDIR, de-identified)
of the local store, checked with DCMTK's own tools and by reading every file back.

Expected UIDs and bytes come from the archive's files, never from what our code reports.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pytestqt.qtbot import QtBot

import workstation as ws
from tests.servers import dcmtk
from workstation.cancel import CancelToken
from workstation.demo import Archive
from workstation.export import ExportCancelled, ExportProgress
from workstation.store import LocalStore

pytest_plugins = ["tests.ui_support"]  # open_nodes_window for the window test

REPO = Path(__file__).resolve().parent.parent
_FILE_ID = re.compile(r"[A-Z0-9_]{1,8}")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    with LocalStore(tmp_path / "store", fsync=False) as s:
        yield s


def study_files(archive: Archive, files: list[Path], index: int) -> dict[str, Path]:
    """SOP Instance UID -> archive file, for the archive's ``index``-th study."""
    uids = archive.sop_instance_uids(archive.studies[index].StudyInstanceUID)
    refs = archive.all_instances()
    return {
        ref.SOPInstanceUID: f
        for ref, f in zip(refs, files, strict=True)
        if ref.SOPInstanceUID in uids
    }


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``workstation ARGS...`` as a user runs it, with a private settings folder."""
    return subprocess.run(
        [sys.executable, "-m", "workstation", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "WORKSTATION_CONFIG_DIR": str(config)},
    )


# -- import -----------------------------------------------------------------------------------


def make_medium(archive_files: list[Path], folder: Path) -> dict[str, Path]:
    """A CD image made by DCMTK: files under DICOM/STnnnn/IMnnnnnn and dcmmkdir's DICOMDIR,
    plus a viewer program the DICOMDIR does not list."""
    wanted: dict[str, Path] = {}
    for number, source in enumerate(archive_files):
        target = folder / "DICOM" / f"ST{number // 50:04d}" / f"IM{number:06d}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        wanted[dcmread(source, stop_before_pixels=True).SOPInstanceUID] = source
    (folder / "VIEWER.EXE").write_bytes(b"MZ not an image")
    subprocess.run(
        [dcmtk("dcmmkdir"), "-q", "+r", "-Pgp", "+D", "DICOMDIR", "DICOM"],
        cwd=folder,
        check=True,
        timeout=60,
    )
    return wanted


def test_a_dicomdir_made_by_dcmmkdir_imports_exactly_its_instances(
    tmp_path: Path, store: LocalStore, archive_files: list[Path]
) -> None:
    medium = tmp_path / "cd"
    wanted = make_medium(archive_files, medium)
    report = ws.import_paths(store, [medium / "DICOMDIR"])
    assert (report.stored, report.duplicates, report.skipped, report.failed) == (
        len(wanted),
        0,
        0,
        0,
    )
    assert store.instance_uids() == set(wanted)
    for uid, source in wanted.items():
        stored = store.path_of(uid)
        assert stored is not None and stored.read_bytes() == source.read_bytes()
    some = next(iter(wanted))
    assert dcmread(store.path_of(some)).PixelData == dcmread(wanted[some]).PixelData  # type: ignore[arg-type]


def test_a_cd_mounted_in_lower_case_imports_through_its_folder(
    tmp_path: Path, store: LocalStore, archive_files: list[Path]
) -> None:
    """Linux shows an ISO 9660 CD in lower case: the DICOMDIR's file IDs are found anyway."""
    medium = tmp_path / "cd"
    wanted = make_medium(archive_files[:30], medium)
    for path in sorted(medium.rglob("*"), key=lambda p: -len(p.parts)):
        path.rename(path.with_name(path.name.lower()))
    (medium / "dicom" / "st0000" / "im000003").unlink()  # listed, but missing from the medium
    report = store.import_path(medium)
    assert (report.stored, report.skipped, report.failed) == (29, 0, 1)
    assert report.failures == (
        ("DICOM/ST0000/IM000003", "listed in the DICOMDIR but missing from the medium"),
    )
    assert len(store.instance_uids()) == 29 and store.instance_uids() < set(wanted)


def test_a_zip_with_folders_and_non_dicom_files_counts_each(
    tmp_path: Path, store: LocalStore, archive: Archive, archive_files: list[Path]
) -> None:
    files = study_files(archive, archive_files, 0)
    path = tmp_path / "study.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("export/", b"")
        for number, (uid, source) in enumerate(files.items()):
            zf.write(source, f"export/series {number % 2}/deep/{uid}.dcm")
        zf.writestr("export/README.txt", "burn me on a CD")
        zf.writestr("export/empty", b"")
        zf.writestr("DICOMDIR", b"an index, not an instance")
    report = ws.import_paths(store, [path])
    assert (report.stored, report.duplicates, report.skipped, report.failed) == (
        len(files),
        0,
        2,
        0,
    )
    assert store.instance_uids() == set(files)
    assert all(store.path_of(u).read_bytes() == f.read_bytes() for u, f in files.items())  # type: ignore[union-attr]
    assert not any((store.root / ".incoming").iterdir())

    again = ws.import_paths(store, [path])  # twice: everything is already stored
    assert (again.stored, again.duplicates, again.skipped, again.failed) == (0, len(files), 2, 0)
    assert (
        again.summary() == f"imported 0, already stored {len(files)}, skipped 2 non-DICOM, failed 0"
    )


def test_zip_members_that_would_escape_or_explode_are_refused(
    tmp_path: Path, store: LocalStore, archive_files: list[Path]
) -> None:
    inside = tmp_path / "deep" / "inside"
    inside.mkdir(parents=True)
    good, evil, absolute = (dcmread(f) for f in archive_files[:3])
    path = inside / "evil.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/IM1", part10(good))
        zf.writestr("../evil", part10(evil))
        zf.writestr("/tmp/absolute", part10(absolute))
        zf.writestr(zipfile.ZipInfo("bomb"), b"\x00" * (16 << 20), compress_type=zipfile.ZIP_BZIP2)
    report = store.import_path(path)
    assert (report.stored, report.failed) == (1, 3)
    reasons = dict(report.failures)
    assert "outside" in reasons["../evil"] and "outside" in reasons["/tmp/absolute"]
    assert "zip bomb" in reasons["bomb"]
    assert store.instance_uids() == {good.SOPInstanceUID}
    assert not (inside.parent / "evil").exists() and not (inside / "evil").exists()
    assert sorted(
        p.name for p in tmp_path.rglob("*") if p.is_file() and "store" not in p.parts
    ) == ["evil.zip"]


def test_a_differing_copy_goes_to_conflicts_and_damaged_dicom_fails(
    tmp_path: Path, store: LocalStore, archive_files: list[Path]
) -> None:
    store.import_path(archive_files[0])
    changed = dcmread(archive_files[0])
    changed.PatientName = "Other^Person"
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "changed.dcm").write_bytes(part10(changed))
    (folder / "cut.dcm").write_bytes(archive_files[1].read_bytes()[:-100])
    report = store.import_path(folder)
    assert (report.stored, report.duplicates, report.conflicts, report.failed) == (0, 0, 1, 1)
    assert report.failures[0][0] == "cut.dcm" and "truncated" in report.failures[0][1]
    assert len(list(store.conflicts_folder.iterdir())) == 1


# -- export -----------------------------------------------------------------------------------


@pytest.fixture
def filled(store: LocalStore, archive_files: list[Path]) -> LocalStore:
    assert store.import_path(archive_files[0].parent.parent.parent).stored == len(archive_files)
    return store


def file_ids(root: Path) -> list[tuple[str, ...]]:
    return [p.relative_to(root).parts for p in root.rglob("*") if p.is_file()]


def test_a_dicomdir_export_is_accepted_by_dcmtk_and_imports_elsewhere(
    tmp_path: Path, filled: LocalStore, archive: Archive
) -> None:
    study = archive.studies[0].StudyInstanceUID
    expected = archive.sop_instance_uids(study)
    dest = tmp_path / "usb"
    report = ws.export_instances(filled, dest, studies=[study], dicomdir=True)
    assert report.instances == len(expected) and report.destination == dest
    ids = file_ids(dest)
    assert ("DICOMDIR",) in ids and len(ids) == len(expected) + 1
    assert all(_FILE_ID.fullmatch(part) for parts in ids for part in parts)
    dump = subprocess.run(
        [dcmtk("dcmdump"), str(dest / "DICOMDIR")], capture_output=True, text=True, check=True
    )
    assert dump.stdout.count('"Directory Record" IMAGE') == len(expected)
    # DCMTK reads our DICOMDIR to update it and checks every file against STD-GEN-CD.
    check = subprocess.run(
        [dcmtk("dcmmkdir"), "+U", "-w", "-nb", "-a", "-Pgp", "+r", "+D", "DICOMDIR", "PT000000"],
        cwd=dest,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and "E:" not in check.stderr, check.stderr
    with LocalStore(tmp_path / "other", fsync=False) as other:
        again = other.import_path(dest)
        assert (again.stored, again.failed) == (len(expected), 0), again.failures
        assert other.instance_uids() == expected
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_dciodvfy_accepts_the_exported_instances(
    tmp_path: Path, filled: LocalStore, archive: Archive
) -> None:
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    dest = tmp_path / "usb"
    ws.export_instances(filled, dest, studies=[archive.studies[0].StudyInstanceUID], dicomdir=True)
    result = subprocess.run([tool, str(dest / "DICOMDIR")], capture_output=True, text=True)
    assert "Error" not in result.stderr, result.stderr


def referencing_instance(source: Path) -> Dataset:
    """A derived image in the same series that references ``source`` and names a hospital."""
    ds = dcmread(source)
    original = ds.SOPInstanceUID
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = 99
    ds.InstitutionName = "St. Elsewhere Hospital"
    ds.DeviceSerialNumber = "SN-4711"
    ds.OtherPatientIDs = "OLD-ID-1"
    ds.FrameOfReferenceUID = "1.2.3.4.5.6.7"
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = original
    ds.SourceImageSequence = [ref]
    block = ds.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x01, "LO", "private secret")
    return ds


def test_a_deidentified_export_keeps_pixels_and_references_and_drops_identity(
    tmp_path: Path, filled: LocalStore, archive: Archive, archive_files: list[Path]
) -> None:
    index = 0
    study = archive.studies[index]
    files = study_files(archive, archive_files, index)
    first_uid, first_file = next(iter(files.items()))
    derived = referencing_instance(first_file)
    filled.store_bytes(part10(derived))
    originals = {uid: dcmread(path) for uid, path in files.items()} | {
        derived.SOPInstanceUID: derived
    }
    dest = tmp_path / "anon"
    report = ws.export_instances(filled, dest, studies=[study.StudyInstanceUID], deidentify=True)
    assert report.deidentified and report.instances == len(originals)

    out = [dcmread(p) for p in dest.rglob("*.dcm")]
    assert len(out) == len(originals)
    identity = [study.PatientName, study.PatientID, "St. Elsewhere", "SN-4711", "OLD-ID-1"]
    identity += [study.AccessionNumber, "private secret"]
    for path in dest.rglob("*.dcm"):
        raw = path.read_bytes()
        assert not [text for text in identity if text.encode() in raw], path
    key = {(int(o.SeriesNumber), int(o.InstanceNumber)): o for o in originals.values()}
    new_uids: dict[str, str] = {}
    for ds in out:
        original = key[(int(ds.SeriesNumber), int(ds.InstanceNumber))]
        assert ds.PatientName != original.PatientName and ds.PatientID != original.PatientID
        assert not ds.get("PatientBirthDate") and "InstitutionName" not in ds
        assert "DeviceSerialNumber" not in ds and "OtherPatientIDs" not in ds
        assert not [e for e in ds if e.tag.is_private]
        assert ds.PatientIdentityRemoved == "YES" and "Confidentiality" in ds.DeidentificationMethod
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert ds.PixelData == original.PixelData
        assert ds.SOPClassUID == original.SOPClassUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        for name in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            assert ds[name].value.startswith("2.25.") and ds[name].value != original[name].value
        new_uids[original.SOPInstanceUID] = ds.SOPInstanceUID
    assert len({ds.StudyInstanceUID for ds in out}) == 1
    assert len({ds.PatientID for ds in out}) == 1
    assert len({ds.SeriesInstanceUID for ds in out}) == len(
        {o.SeriesInstanceUID for o in originals.values()}
    )
    [copy] = [ds for ds in out if int(ds.InstanceNumber) == 99]
    assert copy.SourceImageSequence[0].ReferencedSOPInstanceUID == new_uids[first_uid]
    assert copy.FrameOfReferenceUID.startswith("2.25.")

    # The same export again maps the UIDs differently: exports cannot be linked.
    again = tmp_path / "anon2"
    ws.export_instances(filled, again, studies=[study.StudyInstanceUID], deidentify=True)
    assert dcmread(next(again.rglob("*.dcm"))).StudyInstanceUID != out[0].StudyInstanceUID


def test_a_deidentified_dicomdir_zip_has_stand_ins_only_in_the_directory(
    tmp_path: Path, filled: LocalStore, archive: Archive
) -> None:
    study = archive.studies[1]
    dest = tmp_path / "anon.zip"
    ws.export_instances(
        filled, dest, studies=[study.StudyInstanceUID], deidentify=True, dicomdir=True, zip=True
    )
    with zipfile.ZipFile(dest) as zf:
        names = zf.namelist()
        assert "DICOMDIR" in names
        directory = dcmread(io.BytesIO(zf.read("DICOMDIR")))
        image = dcmread(io.BytesIO(zf.read(next(n for n in names if n != "DICOMDIR"))))
    [record] = [r for r in directory.DirectoryRecordSequence if r.DirectoryRecordType == "STUDY"]
    assert record.StudyDate == "19000101" and image.StudyDate == ""
    assert record.StudyInstanceUID == image.StudyInstanceUID != study.StudyInstanceUID


def test_a_zip_export_holds_the_stored_files_and_is_never_half_visible(
    tmp_path: Path, filled: LocalStore, archive: Archive, archive_files: list[Path]
) -> None:
    study = archive.studies[2]
    files = study_files(archive, archive_files, 2)
    dest = tmp_path / "out" / "study.zip"
    seen: list[bool] = []

    def progress(_: ExportProgress) -> None:
        seen.append(dest.exists())

    report = ws.export_instances(
        filled, dest, studies=[study.StudyInstanceUID], zip=True, progress=progress
    )
    assert seen and not any(seen)  # nothing at the destination until complete
    assert report.instances == len(files) and report.zip
    with zipfile.ZipFile(dest) as zf:
        assert zf.testzip() is None
        members = {PurePath(n).stem: zf.read(n) for n in zf.namelist()}
    assert members == {uid: f.read_bytes() for uid, f in files.items()}
    assert os.listdir(dest.parent) == ["study.zip"]
    with pytest.raises(ws.InvalidInput, match="exists"):
        ws.export_instances(filled, dest, studies=[study.StudyInstanceUID], zip=True)

    token = CancelToken()
    half = tmp_path / "half"
    with pytest.raises(ExportCancelled):
        ws.export_instances(
            filled,
            half,
            studies=[study.StudyInstanceUID],
            progress=lambda _p: token.cancel(),
            cancel=token,
        )
    assert sorted(os.listdir(tmp_path)) == ["out", "store"]


# -- the command line ---------------------------------------------------------------------------


def test_cli_import_and_export(tmp_path: Path, archive: Archive, archive_files: list[Path]) -> None:
    store = tmp_path / "store"
    folder = archive_files[0].parent.parent
    files = [f for f in archive_files if f.is_relative_to(folder)]
    junk = tmp_path / "junk.txt"
    junk.write_text("hello")
    done = run_cli(
        tmp_path / "config", "import", str(folder), str(junk), "--store", str(store), "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) | {"failures": []} == {
        "stored": len(files),
        "already_stored": 0,
        "conflicts": 0,
        "skipped_non_dicom": 1,
        "failed": 0,
        "failures": [],
        "cancelled": False,
    }
    missing = run_cli(
        tmp_path / "config", "import", str(tmp_path / "nowhere"), "--store", str(store)
    )
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    assert "Traceback" not in missing.stderr

    study = dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    dest = tmp_path / "cd"
    out = run_cli(
        tmp_path / "config",
        "export",
        "--study",
        study,
        str(dest),
        "--dicomdir",
        "--deidentify",
        "--store",
        str(store),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Exported ") and (dest / "DICOMDIR").is_file()
    unknown = run_cli(
        tmp_path / "config",
        "export",
        "--study",
        "1.2.3",
        str(tmp_path / "x.zip"),
        "--zip",
        "--store",
        str(store),
    )
    assert unknown.returncode == 2 and "holds no study 1.2.3" in unknown.stderr
    assert not (tmp_path / "x.zip").exists()


# -- the window ---------------------------------------------------------------------------------


@pytest.mark.gui
def test_window_drop_imports_and_export_runs_from_the_store_tab(
    qtbot: QtBot,
    open_nodes_window: Any,
    tmp_path: Path,
    archive: Archive,
    archive_files: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent
    from PySide6.QtWidgets import QDialog

    from workstation.ui.local_store import import_export

    window = open_nodes_window({})
    study = archive.studies[0]
    files = study_files(archive, archive_files, 0)
    path = tmp_path / "drop.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for uid, source in files.items():
            zf.write(source, f"{uid}.dcm")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    qtbot.waitUntil(lambda: not window.import_export.importing, timeout=20_000)
    box = window.import_export.last_box
    assert box is not None and box.text().startswith(f"Imported {len(files)}, already stored 0")
    assert window.session.store.instance_uids() == set(files)
    browser = window.store_browser
    qtbot.waitUntil(lambda: browser.selected_study() is not None, timeout=5_000)
    assert browser.selected_study().study_uid == study.StudyInstanceUID  # type: ignore[union-attr]

    dest = tmp_path / "exported.zip"

    def fill(dialog: import_export.ExportDialog) -> int:
        dialog.zip_box.setChecked(True)
        dialog.deidentify_box.setChecked(True)
        dialog.path_edit.setText(str(dest))
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(import_export.ExportDialog, "exec", fill)
    menu = browser.context_menu(browser.study_view, "Delete study…", lambda: None)
    [action] = [a for a in menu.actions() if a.text() == "Export…"]
    action.trigger()
    qtbot.waitUntil(lambda: not window.import_export.exporting, timeout=20_000)
    assert window.import_export.last_box.windowTitle() == "Export finished"  # type: ignore[union-attr]
    with zipfile.ZipFile(dest) as zf:
        first = dcmread(io.BytesIO(zf.read(zf.namelist()[0])))
    assert first.PatientIdentityRemoved == "YES" and len(zipfile.ZipFile(dest).namelist()) == len(
        files
    )
