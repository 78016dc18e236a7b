"""The local store: atomic files, the SQLite index, deletion, import and recovery."""

from __future__ import annotations

import io
import os
import threading
from concurrent.futures import Future
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from pydicom import config as pydicom_config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian

from workstation.errors import InvalidInput, StoreError
from workstation.store import (
    CommitResult,
    InstanceRecord,
    LocalStore,
    StoredInstance,
    StoreIndex,
    instance_path,
    read_header,
    validate_uid,
    write_atomic,
)
from workstation.store import writer as writer_module
from workstation.store.layout import resolve_in_root
from workstation.store.schema import SCHEMA_VERSION

STUDY = "1.2.826.0.1.3680043.10.99.1"
SERIES = STUDY + ".1"


def make_instance(
    sop: str,
    study: str = STUDY,
    series: str = SERIES,
    *,
    name: str | bytes = "Doe^John",
    charset: str | None = "ISO_IR 192",
    patient_id: str = "PID-1",
    modality: str = "CT",
    number: int = 1,
    description: str | bytes = "CT Thorax",
    pixel: int = 0,
) -> bytes:
    """Real Part-10 bytes of a small CT image; bytes values are written as given."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop or "1.2.3")  # pydicom refuses ""
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    if isinstance(name, bytes):
        ds.add_new(0x00100010, "PN", name)
    else:
        ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19650412"
    ds.PatientSex = "M"
    ds.StudyDate = "20240315"
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC42"
    if isinstance(description, bytes):
        ds.add_new(0x00081030, "LO", description)
    else:
        ds.StudyDescription = description
    ds.ReferringPhysicianName = "Who^Doctor"
    ds.Modality = modality
    ds.SeriesNumber = 3
    ds.SeriesDescription = "Axial 1mm"
    ds.BodyPartExamined = "CHEST"
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = np.full((8, 8), pixel, np.uint16).tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def sop_uid(i: int) -> str:
    return f"{SERIES}.{i}"


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    result = {}
    for folder, _, files in os.walk(root):
        for name in files:
            st = os.stat(os.path.join(folder, name))
            result[os.path.relpath(os.path.join(folder, name), root)] = (st.st_size, st.st_mtime_ns)
    return result


def dcm_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.dcm") if ".incoming" not in p.parts)


@pytest.fixture
def store(tmp_path: Path):
    with LocalStore(tmp_path / "store") as s:
        yield s


# -- layout --------------------------------------------------------------------------------


@pytest.mark.parametrize("uid", ["1.2.840.10008.1.2.1", "0", "1.02.003", "9" * 64, "1.0.0"])
def test_validate_uid_accepts_digits_and_dots(uid: str) -> None:
    assert validate_uid(uid) == uid


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "../../x",
        "..",
        ".",
        "1.2/3",
        "1.2\\3",
        "1.2\x00",
        "1..2",
        ".1",
        "1.",
        "1.2a",
        "9" * 65,
        " 1.2",
        "1.2\n",
        "١.٢",
    ],
)
def test_validate_uid_refuses_anything_else(uid: str) -> None:
    with pytest.raises(InvalidInput):
        validate_uid(uid)


def test_instance_path_is_readable_and_stays_inside_the_root(tmp_path: Path) -> None:
    rel = instance_path("1.2", "1.2.3", "1.2.3.4")
    assert rel == PurePosixPath("1.2/1.2.3/1.2.3.4.dcm")
    assert resolve_in_root(tmp_path, rel) == tmp_path / "1.2" / "1.2.3" / "1.2.3.4.dcm"
    for bad in ("../x.dcm", "/etc/passwd", "a/../../x"):
        with pytest.raises(InvalidInput):
            resolve_in_root(tmp_path, bad)
    (tmp_path / "root").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "root" / "1.2").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InvalidInput):
        resolve_in_root(tmp_path / "root", "1.2/1.3/1.4.dcm")


# -- header --------------------------------------------------------------------------------


def test_read_header_decodes_names_with_the_declared_charset() -> None:
    record = read_header(make_instance(sop_uid(1), name="Müller^Jürgen", charset="ISO_IR 192"))
    assert record.patient_name == "Müller^Jürgen"
    assert (record.study_uid, record.series_uid) == (STUDY, SERIES)
    assert record.sop_class_uid == CTImageStorage
    assert record.transfer_syntax_uid == ExplicitVRLittleEndian
    assert (record.series_number, record.instance_number) == (3, 1)
    assert record.body_part_examined == "CHEST"
    latin1 = read_header(
        make_instance(
            sop_uid(2),
            name="Müller^Jürgen".encode("latin-1"),
            description="Schädel".encode("latin-1"),
            charset="ISO_IR 100",
        )
    )
    assert (latin1.patient_name, latin1.study_description) == ("Müller^Jürgen", "Schädel")
    utf8 = read_header(make_instance(sop_uid(3), description="Schädel", charset="ISO_IR 192"))
    assert utf8.study_description == "Schädel"


def test_read_header_guesses_utf8_then_latin1_without_charset() -> None:
    utf8 = read_header(
        make_instance(sop_uid(1), name="Müller^Jürgen".encode(), charset=None, description=b"CT")
    )
    assert utf8.patient_name == "Müller^Jürgen"
    latin1 = read_header(
        make_instance(
            sop_uid(2), name=b"Doe", charset=None, description="Schädel".encode("latin-1")
        )
    )
    assert latin1.study_description == "Schädel"


def test_read_header_refuses_non_dicom() -> None:
    with pytest.raises(InvalidInput):
        read_header(b"hello, this is not DICOM" * 10)
    with pytest.raises(InvalidInput):
        read_header(make_instance(sop_uid(1))[:200])


# -- storing -------------------------------------------------------------------------------


def test_stored_file_holds_the_exact_bytes_and_the_index_the_attributes(
    store: LocalStore,
) -> None:
    data = make_instance(sop_uid(1), name="Müller^Jürgen", charset="ISO_IR 192")
    stored = store.store_bytes(data, source_aet="PACS1")
    assert stored == StoredInstance(
        sop_instance_uid=sop_uid(1),
        sop_class_uid=CTImageStorage,
        study_uid=STUDY,
        series_uid=SERIES,
        path=store.root / STUDY / SERIES / f"{sop_uid(1)}.dcm",
        size=len(data),
        duplicate=False,
        patient_id="PID-1",
    )
    assert stored.path.read_bytes() == data
    assert store.flush(timeout=10)

    (patient,) = store.index.patients()
    assert (patient.patient_name, patient.patient_id) == ("Müller^Jürgen", "PID-1")
    assert (patient.birth_date, patient.sex, patient.study_count) == ("19650412", "M", 1)
    (study,) = store.index.studies()
    assert study.study_uid == STUDY
    assert study.patient_key == patient.key
    assert (study.study_date, study.study_time, study.accession_number) == (
        "20240315",
        "101500",
        "ACC42",
    )
    assert (study.study_description, study.referring_physician_name) == ("CT Thorax", "Who^Doctor")
    assert (study.modalities, study.series_count, study.instance_count) == (("CT",), 1, 1)
    (series,) = store.index.series(STUDY)
    assert (series.modality, series.series_number, series.series_description) == (
        "CT",
        3,
        "Axial 1mm",
    )
    assert (series.body_part_examined, series.instance_count) == ("CHEST", 1)
    (instance,) = store.index.instances(series_uid=SERIES)
    assert instance.path == f"{STUDY}/{SERIES}/{sop_uid(1)}.dcm"
    assert (instance.size, instance.source_aet) == (len(data), "PACS1")
    assert instance.transfer_syntax_uid == ExplicitVRLittleEndian
    assert instance.received_at is not None
    assert store.path_of(sop_uid(1)) == stored.path


def test_index_holds_exactly_the_stored_instances(store: LocalStore) -> None:
    other_study = "1.2.826.0.1.3680043.10.99.2"
    datas = [make_instance(sop_uid(i), number=i) for i in range(1, 4)]
    datas.append(
        make_instance(
            other_study + ".1.1",
            other_study,
            other_study + ".1",
            name="Müller^Jürgen",
            patient_id="PID-2",
            modality="MR",
        )
    )
    for data in datas:
        store.store_bytes(data)
    expected = {sop_uid(1), sop_uid(2), sop_uid(3)}
    assert store.instance_uids(study_uid=STUDY) == expected
    assert store.instance_uids() == expected | {other_study + ".1.1"}
    assert store.study_completeness(STUDY) == 3
    assert [i.instance_number for i in store.index.instances(study_uid=STUDY)] == [1, 2, 3]
    assert {p.patient_name for p in store.index.patients()} == {"Doe^John", "Müller^Jürgen"}
    assert [s.patient_name for s in store.index.studies(filter_text="müller JÜRGEN")] == [
        "Müller^Jürgen"
    ]
    assert [p.patient_id for p in store.index.patients("MÜLLER")] == ["PID-2"]
    assert [s.study_uid for s in store.index.studies(filter_text="acc42 mr")] == [other_study]
    assert store.index.studies(filter_text="%") == []
    assert store.index.study(other_study) is not None
    assert store.index.study(other_study).modalities == ("MR",)  # type: ignore[union-attr]


def test_the_same_instance_twice_is_stored_once(store: LocalStore) -> None:
    seen: list[StoredInstance] = []
    store.add_listener(seen.extend)
    data = make_instance(sop_uid(1))
    first = store.store_bytes(data, source_aet="FIRST")
    second = store.store_bytes(data, source_aet="SECOND")
    assert (first.duplicate, second.duplicate) == (False, True)
    assert store.flush(timeout=10)
    assert dcm_files(store.root) == [first.path]
    assert first.path.read_bytes() == data
    (row,) = store.index.instances()
    assert row.source_aet == "FIRST"  # the row of the first arrival is kept
    store.index.delete_instances([sop_uid(1)])  # a row lost (say, to a crash) ...
    assert store.store_bytes(data).duplicate
    assert store.instance_uids() == {sop_uid(1)}  # ... comes back with the next arrival
    assert [s.duplicate for s in seen] == [False, True, True]
    assert list((store.root / ".incoming").iterdir()) == []


def test_a_changed_instance_never_replaces_the_stored_one(
    store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    original = make_instance(sop_uid(1), pixel=0)
    first = store.store_bytes(original)
    newer = make_instance(sop_uid(1), pixel=7)
    stored = store.store_bytes(newer)
    assert stored.path == first.path and stored.path.read_bytes() == original
    assert stored.conflict is not None and stored.conflict.read_bytes() == newer
    assert stored.conflict.parent == store.root / ".conflicts"
    assert dcm_files(store.root) == [stored.conflict, first.path]  # the stored one kept
    assert "other content" in caplog.text
    again = store.store_bytes(original)  # the stored bytes once more: a plain duplicate
    assert again.duplicate and again.conflict is None


def test_an_instance_sent_again_under_another_series_is_set_aside(store: LocalStore) -> None:
    old = store.store_bytes(make_instance(sop_uid(1)))
    assert store.flush(timeout=10)
    moved = make_instance(sop_uid(1), series=SERIES + "9")
    new = store.store_bytes(moved)
    assert store.flush(timeout=10)
    assert new.path == old.path and new.conflict is not None
    assert new.conflict.read_bytes() == moved
    assert dcm_files(store.root) == [new.conflict, old.path]
    (row,) = store.index.instances()
    assert row.series_uid == SERIES


def test_store_files_and_folders_are_private(store: LocalStore) -> None:
    stored = store.store_bytes(make_instance(sop_uid(1)))
    assert stored.path.stat().st_mode & 0o777 == 0o600
    for folder in (store.root, stored.path.parent, stored.path.parent.parent):
        assert folder.stat().st_mode & 0o777 == 0o700, folder


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name fds")
def test_store_bytes_fsyncs_the_file_and_its_folder_before_returning(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(writer_module.os, "fsync", spy)
    stored = store.store_bytes(make_instance(sop_uid(1)))
    incoming = str((store.root / ".incoming").resolve())
    assert len(synced) >= 2
    assert synced[0].startswith(incoming + "/") and synced[0].endswith(".part")
    assert str(stored.path.parent.resolve()) in synced[1:]  # the rename is durable too


HOSTILE = ["../../x", "1.2/3", "", "9" * 65, "1.2.abc", "1.2\x003", ".."]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the invalid UIDs
@pytest.mark.parametrize("field", ["study", "series", "sop"])
@pytest.mark.parametrize("uid", HOSTILE)
def test_hostile_uids_are_refused_and_write_nothing(tmp_path: Path, field: str, uid: str) -> None:
    root = tmp_path / "a" / "b" / "store"
    uids = {"study": STUDY, "series": SERIES, "sop": sop_uid(1), field: uid}
    validation = pydicom_config.settings.writing_validation_mode
    pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE
    try:
        data = make_instance(uids["sop"], uids["study"], uids["series"])
    finally:
        pydicom_config.settings.writing_validation_mode = validation
    with LocalStore(root) as store:
        store.flush()
        before = tree(tmp_path)
        with pytest.raises(InvalidInput):
            store.store_bytes(data)
        source = tmp_path / "incoming.dcm"
        source.write_bytes(data)
        before_file = tree(tmp_path)
        with pytest.raises(InvalidInput):
            store.store_file(source)
        assert store.flush(timeout=10)
        assert tree(tmp_path) == before_file
        source.unlink()
        assert tree(tmp_path) == before
        assert store.index.instances() == []


def test_write_atomic_refuses_paths_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "store"
    for rel in ("../x.dcm", "/tmp/x.dcm", "1.2/../../x.dcm"):
        with pytest.raises(InvalidInput):
            write_atomic(root, rel, b"data")
    assert tree(tmp_path) == {}


def test_concurrent_stores_all_land_and_are_indexed(store: LocalStore) -> None:
    threads, per_thread = 8, 50
    datas = [
        [
            make_instance(f"{SERIES}.{t}.{i}", series=f"{SERIES}.{t}", number=i)
            for i in range(per_thread)
        ]
        for t in range(threads)
    ]
    announced: list[StoredInstance] = []
    store.add_listener(announced.extend)
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(t: int) -> None:
        start.wait()
        try:
            for data in datas[t]:
                store.store_bytes(data, source_aet=f"AE{t}")
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert store.flush(timeout=30)
    expected = {f"{SERIES}.{t}.{i}" for t in range(threads) for i in range(per_thread)}
    assert store.index.instance_uids() == expected
    assert {s.sop_instance_uid for s in announced} == expected
    assert len(announced) == len(expected)
    files = dcm_files(store.root)
    assert len(files) == len(expected)
    assert {f.stem for f in files} == expected
    assert len(store.index.series(STUDY)) == threads
    (study,) = store.index.studies()
    assert study.instance_count == len(expected)


# -- failures ------------------------------------------------------------------------------


def test_a_failed_rename_leaves_no_file_and_no_temp(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer_module.os, "replace", broken_replace)
    with pytest.raises(StoreError, match="No space left"):
        store.store_bytes(make_instance(sop_uid(1)))
    monkeypatch.undo()
    assert store.flush(timeout=10)
    assert dcm_files(store.root) == []
    assert list((store.root / ".incoming").iterdir()) == []
    assert store.index.instances() == []


def test_a_write_failing_halfway_never_shows_a_partial_file(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    calls = 0

    def half_then_fail(fd: int, data: bytes) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(writer_module.os, "write", half_then_fail)
    with pytest.raises(StoreError):
        store.store_bytes(make_instance(sop_uid(1)))
    monkeypatch.undo()
    assert calls == 2
    assert dcm_files(store.root) == []
    assert list((store.root / ".incoming").iterdir()) == []


def test_a_crash_mid_write_is_cleaned_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)

    def crash(src: object, dst: object) -> None:
        raise KeyboardInterrupt  # the process dies: nothing cleans up

    monkeypatch.setattr(writer_module.os, "replace", crash)
    monkeypatch.setattr(writer_module, "_unlink_quietly", lambda path: None)
    with pytest.raises(KeyboardInterrupt):
        store.store_bytes(make_instance(sop_uid(1)))
    monkeypatch.undo()
    leftovers = list((root / ".incoming").iterdir())
    assert len(leftovers) == 1
    assert not leftovers[0].name.endswith(".dcm")
    assert dcm_files(root) == []
    store.index.close()  # the crash: no clean close, the open marker stays
    store._owner.release()  # a dead process holds no lock

    with LocalStore(root) as reopened:
        assert list((root / ".incoming").iterdir()) == []
        assert reopened.recovery is not None
        assert reopened.index.instances() == []
        assert reopened.store_bytes(make_instance(sop_uid(1))).path.is_file()


def test_files_stored_but_not_indexed_before_a_crash_are_recovered(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    store.store_bytes(make_instance(sop_uid(1)))
    store.flush()
    monkey_index = store.index
    # Stored after the last commit, then the process died before the writer committed it.
    monkey_index.submit = lambda record: None  # type: ignore[method-assign]
    lost = store.store_bytes(make_instance(sop_uid(2)))
    store.index.close()
    store._owner.release()  # a dead process holds no lock
    assert lost.path.is_file()

    with LocalStore(root) as reopened:
        assert reopened.recovery is not None
        assert reopened.recovery.indexed == 1
        assert reopened.index.instance_uids() == {sop_uid(1), sop_uid(2)}
        assert reopened.path_of(sop_uid(2)) == lost.path


def test_rows_whose_files_vanished_are_removed_after_a_crash(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with LocalStore(root) as store:
        kept = store.store_bytes(make_instance(sop_uid(1)))
        gone = store.store_bytes(make_instance(sop_uid(2)))
    gone.path.unlink()
    (root / ".workstation" / "open").touch()  # as if the last run crashed
    with LocalStore(root) as reopened:
        assert reopened.recovery is not None
        assert reopened.recovery.removed == 1
        assert reopened.index.instance_uids() == {sop_uid(1)}
        assert reopened.path_of(sop_uid(1)) == kept.path


def test_a_lost_index_is_rebuilt_from_the_files(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with LocalStore(root) as store:
        for i in range(3):
            store.store_bytes(make_instance(sop_uid(i), name="Müller^Jürgen"))
    for name in os.listdir(root / ".workstation"):
        os.unlink(root / ".workstation" / name)
    with LocalStore(root) as rebuilt:
        assert rebuilt.index.instance_uids() == {sop_uid(i) for i in range(3)}
        assert rebuilt.index.patients()[0].patient_name == "Müller^Jürgen"


def test_a_clean_close_needs_no_check(tmp_path: Path) -> None:
    with LocalStore(tmp_path / "s") as store:
        store.store_bytes(make_instance(sop_uid(1)))
    assert not (tmp_path / "s" / ".workstation" / "open").exists()
    with LocalStore(tmp_path / "s") as again:
        assert again.recovery is None
        assert again.index.instance_uids() == {sop_uid(1)}


def test_a_closed_store_refuses_to_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    store.close()
    with pytest.raises(StoreError):
        store.store_bytes(make_instance(sop_uid(1)))
    assert dcm_files(tmp_path) == []


# -- deleting, importing, moving -----------------------------------------------------------


def test_delete_study_removes_files_and_rows(store: LocalStore) -> None:
    other_study = "1.2.826.0.1.3680043.10.99.2"
    for i in range(3):
        store.store_bytes(make_instance(sop_uid(i)))
    kept = store.store_bytes(
        make_instance(other_study + ".1.1", other_study, other_study + ".1", patient_id="PID-2")
    )
    assert store.delete_study(STUDY) == 3
    assert dcm_files(store.root) == [kept.path]
    assert not (store.root / STUDY).exists()
    assert store.instance_uids() == {other_study + ".1.1"}
    assert [s.study_uid for s in store.index.studies()] == [other_study]
    assert [p.patient_id for p in store.index.patients()] == ["PID-2"]
    assert store.index.series(STUDY) == []
    assert list((store.root / ".trash").iterdir()) == []
    assert store.delete_study(STUDY) == 0
    with pytest.raises(InvalidInput):
        store.delete_study("../..")


def test_a_failed_row_deletion_puts_the_files_back(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = store.store_bytes(make_instance(sop_uid(1)))
    store.flush()

    def failing(study_uid: str) -> Future[int]:
        future: Future[int] = Future()
        future.set_exception(StoreError("index is broken"))
        return future

    monkeypatch.setattr(store.index, "submit_delete_study", failing)
    with pytest.raises(StoreError, match="broken"):
        store.delete_study(STUDY)
    assert stored.path.read_bytes()
    assert list((store.root / ".trash").iterdir()) == []
    assert store.path_of(sop_uid(1)) == stored.path


def test_delete_series_keeps_the_rest_of_the_study(store: LocalStore) -> None:
    gone = [store.store_bytes(make_instance(sop_uid(i))) for i in range(2)]
    kept = store.store_bytes(make_instance(SERIES + "2.1", series=SERIES + "2", modality="MR"))
    assert store.delete_series(SERIES) == 2
    assert all(not g.path.exists() for g in gone)
    assert dcm_files(store.root) == [kept.path]
    (study,) = store.index.studies()
    assert (study.modalities, study.series_count, study.instance_count) == (("MR",), 1, 1)
    assert store.delete_series(SERIES + "2") == 1
    assert store.index.studies() == [] and store.index.patients() == []
    assert not (store.root / STUDY).exists()


def test_import_path_copies_dicom_and_skips_the_rest(tmp_path: Path, store: LocalStore) -> None:
    folder = tmp_path / "cd"
    (folder / "a" / "b").mkdir(parents=True)
    datas = {
        folder / "a" / "IM1": make_instance(sop_uid(1)),
        folder / "a" / "b" / "IM2": make_instance(sop_uid(2)),
    }
    for path, data in datas.items():
        path.write_bytes(data)
    (folder / "README.txt").write_text("not an image")
    (folder / "a" / "empty").write_bytes(b"")
    report = store.import_path(folder)
    assert (report.stored, report.duplicates, report.skipped, report.failed) == (2, 0, 2, 0)
    assert all(path.read_bytes() == data for path, data in datas.items())  # left in place
    assert store.instance_uids() == {sop_uid(1), sop_uid(2)}
    assert store.path_of(sop_uid(2)).read_bytes() == datas[folder / "a" / "b" / "IM2"]  # type: ignore[union-attr]
    again = store.import_path(folder / "a" / "IM1")
    assert (again.stored, again.duplicates) == (0, 1)
    with pytest.raises(InvalidInput):
        store.import_path(store.root)


def test_store_file_moves_a_temporary_file_in(tmp_path: Path, store: LocalStore) -> None:
    data = make_instance(sop_uid(1))
    temp = tmp_path / "pynetdicom-chunk.dcm"
    temp.write_bytes(data)
    inode = temp.stat().st_ino
    stored = store.store_file(temp, source_aet="PACS")
    assert not temp.exists()
    assert stored.path.read_bytes() == data
    assert stored.path.stat().st_ino == inode  # renamed, not copied
    temp.write_bytes(data)
    assert store.store_file(temp).duplicate
    assert not temp.exists()
    assert store.instance_uids() == {sop_uid(1)}


def test_store_file_copies_across_file_systems(
    tmp_path: Path, store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def no_cross_device(src: object, dst: object) -> None:
        if ".incoming" not in str(dst):
            return real_replace(src, dst)  # type: ignore[arg-type]
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(writer_module.os, "replace", no_cross_device)
    data = make_instance(sop_uid(1))
    temp = tmp_path / "chunk.dcm"
    temp.write_bytes(data)
    stored = store.store_file(temp)
    assert not temp.exists()
    assert stored.path.read_bytes() == data


# -- the index on its own ------------------------------------------------------------------


def test_store_index_batches_commits_and_keeps_its_schema_version(tmp_path: Path) -> None:
    commits: list[int] = []
    index = StoreIndex(tmp_path / "i.sqlite", on_commit=lambda r: commits.append(len(r)))
    for i in range(500):
        index.submit(
            InstanceRecord(sop_uid(i), CTImageStorage, STUDY, SERIES, path=f"x/{i}.dcm", size=1)
        )
    assert index.flush(timeout=10)
    assert sum(commits) == 500
    assert len(commits) < 500 / 10  # batches, not one commit per record
    assert max(commits) <= 200
    assert len(index.instance_uids(series_uid=SERIES)) == 500
    index.close()
    import sqlite3

    with sqlite3.connect(tmp_path / "i.sqlite") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        StoreIndex(tmp_path / "i.sqlite")


def test_one_bad_record_does_not_lose_its_batch(tmp_path: Path) -> None:
    results: list[CommitResult] = []
    index = StoreIndex(tmp_path / "i.sqlite", on_commit=results.extend, linger=0.5)
    good = [
        InstanceRecord(sop_uid(i), CTImageStorage, STUDY, SERIES, path=f"x/{i}.dcm", size=1)
        for i in range(5)
    ]
    bad = InstanceRecord(sop_uid(99), CTImageStorage, STUDY, SERIES, path="x/99.dcm", size=object())  # type: ignore[arg-type]
    for record in [*good[:2], bad, *good[2:]]:
        index.submit(record)
    assert index.flush(timeout=10)
    assert index.instance_uids() == {r.sop_instance_uid for r in good}
    assert index.failed_count == 1
    assert [r.record.sop_instance_uid for r in results if not r.ok] == [sop_uid(99)]
    assert len([r for r in results if r.ok]) == 5
    index.close()


def test_listeners_run_after_commit_and_a_failing_one_does_no_harm(store: LocalStore) -> None:
    seen: list[tuple[str, bool]] = []

    def visible(stored: list[StoredInstance]) -> None:
        for s in stored:
            seen.append((s.sop_instance_uid, s.sop_instance_uid in store.index.instance_uids()))

    def broken(stored: list[StoredInstance]) -> None:
        raise RuntimeError("listener bug")

    store.add_listener(broken)
    store.add_listener(visible)
    store.store_bytes(make_instance(sop_uid(1)))
    assert store.flush(timeout=10)
    assert seen == [(sop_uid(1), True)]
    store.remove_listener(visible)
    store.store_bytes(make_instance(sop_uid(2)))
    assert store.flush(timeout=10)
    assert seen == [(sop_uid(1), True)]


def test_no_patient_data_in_logs_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="workstation")
    with LocalStore(tmp_path / "s") as store:
        folder = tmp_path / "in"
        folder.mkdir()
        (folder / "x").write_bytes(make_instance(sop_uid(1), name="Secret^Name", patient_id="ID77"))
        store.import_path(folder)
        store.delete_study(STUDY)
    (tmp_path / "s" / ".workstation" / "open").touch()
    LocalStore(tmp_path / "s").close()
    assert caplog.records
    text = caplog.text
    assert "Secret" not in text and "ID77" not in text and "19650412" not in text


def test_a_second_process_cannot_open_the_same_store(tmp_path: Path) -> None:
    """The window and a CLI retrieve on one folder would clean each other's temp files."""
    import subprocess
    import sys

    from workstation.store import LocalStore

    with LocalStore(tmp_path / "shared"):
        code = (
            "import sys; from workstation.store import LocalStore\n"
            "from workstation.errors import StoreError\n"
            "try:\n    LocalStore(sys.argv[1])\nexcept StoreError as e:\n"
            "    print(e); sys.exit(3)\n"
        )
        other = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "shared")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert other.returncode == 3, other.stdout + other.stderr
        assert "in use by another workstation process" in other.stdout
        assert f"pid {__import__('os').getpid()}" in other.stdout
    # Once closed, the next one opens it.
    LocalStore(tmp_path / "shared").close()


def test_the_same_instance_under_two_series_in_one_batch_keeps_the_first(
    store: LocalStore,
) -> None:
    """Both arrive before the index commits: the second is set aside, the first never lost."""
    first = make_instance(sop_uid(1))
    second = make_instance(sop_uid(1), series=SERIES + "9")
    kept = store.store_bytes(first, durable=False)
    aside = store.store_bytes(second, durable=False)  # no flush in between
    assert store.flush(timeout=10)
    assert kept.path.read_bytes() == first
    assert aside.conflict is not None and aside.conflict.read_bytes() == second
    assert dcm_files(store.root) == [aside.conflict, kept.path]
    (row,) = store.index.instances()
    assert row.series_uid == SERIES


def test_a_study_folder_removed_behind_the_stores_back_is_made_again(store: LocalStore) -> None:
    import shutil

    stored = store.store_bytes(make_instance(sop_uid(1)))
    shutil.rmtree(stored.path.parent.parent)  # a user deletes it in a file manager
    again = store.store_bytes(make_instance(sop_uid(2)))
    assert again.path.read_bytes() == make_instance(sop_uid(2))
