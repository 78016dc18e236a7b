"""Exporting studies and series from the local store: to a folder or a ZIP file, optionally
de-identified, optionally as a DICOMDIR media set.

:func:`export_instances` (``ws.export_instances``, ``workstation export``, the Local store
tab's Export…) writes:

- **a folder** (the default): ``<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm``, each file the
  stored file byte for byte (unless de-identified);
- **a DICOMDIR media set** (``dicomdir=True``; PS3.10 and PS3.11 General Purpose): files
  named with 8-character upper-case IDs in ``PTxxxxxx/STxxxxxx/SExxxxxx/IMxxxxxx`` folders
  and the ``DICOMDIR`` that indexes them, written with pydicom's ``FileSet``. Instances in
  Implicit VR Little Endian, Explicit VR Big Endian or a deflated syntax are re-encoded in
  Explicit VR Little Endian (the uncompressed syntax of the General Purpose profiles);
  compressed ones keep their syntax. Directory records need values some instances lack (a
  de-identified study has no Study Date or Study ID): the record, never the instance, gets a
  stand-in (``19000101``, ``000000``, ``1``...), as DCMTK's ``dcmmkdir +I`` invents them;
- **a ZIP file** of either (``zip=True``), its members deflated.

``deidentify=True`` applies :mod:`workstation.export.deidentify` with one UID map for the
whole export.

Nothing half-written is ever visible under the destination's name: the folder is built as a
hidden ``.<name>.partial-…`` next to the destination and renamed once complete (and synced);
a ZIP file is written to a hidden temporary name and renamed. A failure or a cancel removes
the partial export. The destination must not exist (a folder may exist if empty; a ZIP file
is replaced only with ``overwrite=True``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workstation import audit
from workstation.errors import InvalidInput, StoreError
from workstation.store.layout import instance_path, resolve_in_root, validate_uid

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pydicom.fileset import FileSet

    from workstation.cancel import CancelToken
    from workstation.store.local_store import LocalStore
    from workstation.store.records import InstanceEntry

log = logging.getLogger(__name__)

_REENCODED = frozenset(
    {
        "1.2.840.10008.1.2",  # Implicit VR Little Endian
        "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
        "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    }
)
#: Stand-ins for Type 1 directory record values an instance lacks (PS3.3 F.5).
_RECORD_STAND_INS = {
    "PatientID": "UNKNOWN",
    "StudyDate": "19000101",
    "StudyTime": "000000",
    "StudyID": "1",
    "Modality": "OT",
    "SeriesNumber": "1",
    "InstanceNumber": "1",
}


@dataclass(frozen=True)
class ExportProgress:
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


ExportProgressCallback = Callable[[ExportProgress], None]


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote. ``missing``: instances the index lists whose file is gone
    (left out); ``burned_in``: de-identified instances that declare identity burned into the
    pixels, which de-identification cannot remove."""

    destination: Path
    instances: int
    studies: int
    series: int
    size: int
    zip: bool = False
    dicomdir: bool = False
    deidentified: bool = False
    missing: int = 0
    burned_in: int = 0

    def summary(self) -> str:
        kind = "DICOMDIR media set" if self.dicomdir else "files"
        text = (
            f"exported {self.instances} instance{'s' if self.instances != 1 else ''} "
            f"({self.studies} stud{'ies' if self.studies != 1 else 'y'}, {self.series} series, "
            f"{self.size / 1e6:.1f} MB) as {'de-identified ' if self.deidentified else ''}"
            f"{kind}{' in a ZIP file' if self.zip else ''} to {self.destination}"
        )
        if self.missing:
            text += f"; {self.missing} listed in the store but missing on disk were left out"
        if self.burned_in:
            text += (
                f"; WARNING: {self.burned_in} instance(s) declare identity burned into the "
                "pixels, which de-identification does not remove"
            )
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": str(self.destination),
            "instances": self.instances,
            "studies": self.studies,
            "series": self.series,
            "bytes": self.size,
            "zip": self.zip,
            "dicomdir": self.dicomdir,
            "deidentified": self.deidentified,
            "missing": self.missing,
            "burned_in_annotation": self.burned_in,
        }


class ExportCancelled(StoreError):
    """The export was cancelled; nothing was left at the destination."""


def export_instances(
    store: LocalStore,
    destination: str | os.PathLike[str],
    *,
    studies: Iterable[str] = (),
    series: Iterable[str] = (),
    zip: bool = False,
    deidentify: bool = False,
    dicomdir: bool = False,
    overwrite: bool = False,
    progress: ExportProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> ExportReport:
    """Export the given studies and series from ``store`` to ``destination``.

    Raises :class:`InvalidInput` when nothing is selected, a UID is not in the store, or the
    destination cannot be used; :class:`StoreError` when writing fails (nothing is left
    behind); :class:`ExportCancelled` when ``cancel`` is set (nothing is left behind).
    """
    entries = _select(store, list(studies), list(series))
    dest = Path(destination).expanduser().absolute()
    _check_destination(store, dest, zip=zip, overwrite=overwrite)
    dest.parent.mkdir(parents=True, exist_ok=True)
    files: list[tuple[InstanceEntry, Path]] = []
    missing = 0
    for entry in entries:
        path = resolve_in_root(store.root, entry.path)
        if path.is_file():
            files.append((entry, path))
        else:
            missing += 1
    if not files:
        raise InvalidInput("nothing to export: the files of the selected instances are missing")
    job = _Export(files, deidentify=deidentify, progress=progress, cancel=cancel)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        content = staging / "content"
        content.mkdir()
        if dicomdir:
            job.write_dicomdir(content, work=staging)
        else:
            job.write_files(content)
        if zip:
            temp_zip = staging / "export.zip"
            _zip_folder(content, temp_zip, job)
            _fsync_file(temp_zip)
            os.replace(temp_zip, dest)
        else:
            _sync(content)
            if dest.exists():
                dest.rmdir()  # an empty folder the user chose (checked above)
            content.rename(dest)
    except OSError as exc:
        raise StoreError(f"cannot write the export to {dest}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report = ExportReport(
        destination=dest,
        instances=len(files),
        studies=len({e.study_uid for e, _ in files}),
        series=len({e.series_uid for e, _ in files}),
        size=job.size,
        zip=zip,
        dicomdir=dicomdir,
        deidentified=deidentify,
        missing=missing,
        burned_in=job.burned_in,
    )
    log.info(
        "exported %d instance(s)%s%s%s",
        report.instances,
        " de-identified" if deidentify else "",
        " as DICOMDIR" if dicomdir else "",
        " in a ZIP file" if zip else "",
    )
    audit.record_export(store, report, list(dict.fromkeys(e.study_uid for e, _ in files)))
    return report


def _select(store: LocalStore, studies: list[str], series: list[str]) -> list[InstanceEntry]:
    if not studies and not series:
        raise InvalidInput("nothing to export: name at least one study or series")
    store.flush()
    chosen: dict[str, InstanceEntry] = {}
    for kind, uids in (("study", studies), ("series", series)):
        for uid in uids:
            validate_uid(uid, f"{kind.capitalize()} Instance UID")
            if kind == "study":
                found = store.index.instances(study_uid=uid)
            else:
                found = store.index.instances(series_uid=uid)
            if not found:
                raise InvalidInput(f"the local store {store.root} holds no {kind} {uid}")
            for entry in found:
                chosen.setdefault(entry.sop_instance_uid, entry)
    return list(chosen.values())


def _check_destination(store: LocalStore, dest: Path, *, zip: bool, overwrite: bool) -> None:
    if dest.resolve().is_relative_to(store.root.resolve()):
        raise InvalidInput(f"cannot export to {dest}: it is inside the local store")
    if zip:
        if dest.is_dir():
            raise InvalidInput(f"cannot export to {dest}: it is a folder; name a .zip file")
        if dest.exists() and not overwrite:
            raise InvalidInput(
                f"cannot export to {dest}: the file exists; choose another name or delete it"
            )
        return
    if dest.exists():
        if not dest.is_dir():
            raise InvalidInput(f"cannot export to {dest}: it is a file; name a new folder")
        if any(dest.iterdir()):
            raise InvalidInput(
                f"cannot export to {dest}: the folder is not empty; name a new or empty folder"
            )


class _Export:
    """The instances of one export, written one way or another."""

    def __init__(
        self,
        files: list[tuple[InstanceEntry, Path]],
        *,
        deidentify: bool,
        progress: ExportProgressCallback | None,
        cancel: CancelToken | None,
    ) -> None:
        from workstation.export.deidentify import UidMap

        self.files = files
        self.deidentify = deidentify
        self.uids = UidMap()
        self.progress = progress
        self.cancel = cancel
        self.size = 0
        self.burned_in = 0
        self._last = 0.0
        self._done = 0
        # Writing the files, then (for a ZIP) packing them: two steps per instance.
        self.total = len(files)

    def step(self) -> None:
        if self.cancel is not None and self.cancel.cancelled:
            raise ExportCancelled("the export was cancelled; nothing was written")
        self._done += 1
        now = time.monotonic()
        if self.progress is not None and (now - self._last >= 0.05 or self._done >= self.total):
            self._last = now
            self.progress(ExportProgress(min(self._done, self.total), self.total))

    def _read(self, path: Path) -> Dataset:
        from pydicom import dcmread

        try:
            ds = dcmread(path)
        except Exception as exc:  # pydicom raises many kinds on a damaged file
            raise StoreError(f"cannot read the stored file {path.name}: {exc}") from exc
        if self.deidentify:
            from workstation.export.deidentify import deidentify

            if deidentify(ds, self.uids):
                self.burned_in += 1
        return ds

    def write_files(self, folder: Path) -> None:
        for entry, path in self.files:
            if self.deidentify:
                ds = self._read(path)
                rel = instance_path(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
                target = folder / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                ds.save_as(target, enforce_file_format=True)
            else:
                target = folder / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
            self.size += target.stat().st_size
            self.step()

    def write_dicomdir(self, folder: Path, *, work: Path) -> None:
        from pydicom.fileset import FileSet
        from pydicom.uid import ExplicitVRLittleEndian

        file_set = FileSet()
        _stage_in(file_set, work)
        file_set.ID = "WORKSTATION"
        for _, path in self.files:
            ds = self._read(path)
            if str(ds.file_meta.TransferSyntaxUID) in _REENCODED:
                ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            try:
                file_set.add_custom(ds, _leaf(file_set, ds))
            except (ValueError, KeyError, AttributeError) as exc:
                raise StoreError(f"cannot add an instance to the DICOMDIR: {exc}") from exc
            self.step()
        file_set.write(folder)
        self.size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _stage_in(file_set: FileSet, work: Path) -> None:
    """Keep pydicom's staging copies next to the export rather than in the system's temporary
    folder (often a small RAM disk)."""
    stage: dict[str, Any] = getattr(file_set, "_stage", {})
    if "t" in stage and "path" in stage:
        stage["t"].cleanup()
        stage["t"] = tempfile.TemporaryDirectory(dir=work)
        stage["path"] = Path(stage["t"].name)


def _leaf(file_set: FileSet, ds: Dataset) -> Any:
    """The PATIENT → STUDY → SERIES → IMAGE (or other leaf) records of ``ds``, made by
    pydicom's record creators from the instance, with stand-ins for missing Type 1 values."""
    from pydicom.dataset import Dataset as PydicomDataset
    from pydicom.fileset import RecordNode

    probe = PydicomDataset()
    for element in ds:
        if element.tag.group != 0x7FE0:
            probe.add(element)
    probe.file_meta = ds.file_meta
    for keyword, stand_in in _RECORD_STAND_INS.items():
        if not probe.get(keyword):
            if keyword in probe:
                del probe[keyword]  # the element is the instance's own: never change it
            setattr(probe, keyword, stand_in)
    records = list(file_set._recordify(probe))
    node = None
    for record in records:
        child = RecordNode(record)
        if node is not None:
            child.parent = node
        node = child
    return node


def _zip_folder(folder: Path, target: Path, job: _Export) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            zf.write(file, file.relative_to(folder).as_posix())
            if job.cancel is not None and job.cancel.cancelled:
                raise ExportCancelled("the export was cancelled; nothing was written")


def _fsync_file(path: Path) -> None:
    with path.open("rb") as file:
        os.fsync(file.fileno())


def _sync(folder: Path) -> None:
    from workstation.store.writer import sync_filesystem

    with contextlib.suppress(OSError):
        sync_filesystem(folder)
