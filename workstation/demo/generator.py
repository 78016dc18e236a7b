"""Deterministic synthetic DICOM studies for the demo archive, the tests and the benchmarks.

Everything derives from ``random.Random(seed)`` and seeded UID hashes, so the same seed always
gives the same patients, studies, UIDs and pixels. The :class:`Archive` describes the content
with plain ``str`` attributes named after their DICOM keywords, so a test can compute exactly
which studies a query should match; :meth:`Archive.datasets` and :meth:`Archive.write` turn it
into valid Part-10 files (Explicit VR Little Endian, 12-bit MONOCHROME2 pixels). An archive
made with ``realistic=True`` (the window's demo) has images a clinician recognises instead
(:mod:`workstation.demo.phantoms`): CT in HU, MR, CR, DX and US of the series' body part.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundImageStorage,
    generate_uid,
)

from workstation.demo.phantoms import phantom

log = logging.getLogger(__name__)

#: Root of every UID the generator makes.
UID_PREFIX = "1.2.826.0.1.3680043.10.1234."
IMPLEMENTATION_CLASS_UID = UID_PREFIX + "0.1"
IMPLEMENTATION_VERSION_NAME = "WS_DEMO_1"

#: The storage SOP class each generated modality uses.
MODALITY_SOP_CLASSES: dict[str, str] = {
    "CT": str(CTImageStorage),
    "MR": str(MRImageStorage),
    "CR": str(ComputedRadiographyImageStorage),
    "US": str(UltrasoundImageStorage),
    "DX": str(DigitalXRayImageStorageForPresentation),
}

# The first patients of every archive, in this order: the names queries like to trip over.
_SPECIAL_NAMES: tuple[tuple[str, str], ...] = (
    ("Müller^Jürgen", "M"),
    ("Dvořák^Antonín", "M"),
    ("Παπαδόπουλος^Γιώργος", "M"),
    ("Иванов^Иван", "M"),
    ("Yamada^Tarou=山田^太郎", "M"),
    ("Smith^John", "M"),
    ("SMITH^JANE", "F"),
    ("Müller^Anna", "F"),
)
_LAST_NAMES = ("Doe", "Brown", "Garcia", "Nguyen", "Kowalski", "O'Brien", "Jensen", "Rossi")
_FIRST_NAMES = (("John", "M"), ("Peter", "M"), ("Omar", "M"), ("Alice", "F"), ("Maria", "F"))
_PHYSICIANS = ("Weber^Klaus^^Dr.", "Nováková^Eva", "House^Gregory", "Lee^Min", "")

# modality -> (weight, ((study description, body part), ...), (series descriptions, ...))
_PROTOCOLS: dict[str, tuple[int, tuple[tuple[str, str], ...], tuple[str, ...]]] = {
    "CT": (
        30,
        (("CT THORAX", "CHEST"), ("CT ABDOMEN", "ABDOMEN"), ("CT HEAD", "HEAD")),
        ("AXIAL 5MM", "CORONAL MPR", "TOPOGRAM"),
    ),
    "MR": (
        25,
        (("MR KNEE LEFT", "KNEE"), ("MR BRAIN", "BRAIN"), ("MR LUMBAR SPINE", "LSPINE")),
        ("T1 SAG", "T2 AX", "PD FS COR"),
    ),
    "CR": (15, (("CR CHEST PA", "CHEST"), ("CR HAND RIGHT", "HAND")), ("PA", "LAT")),
    "US": (15, (("US ABDOMEN", "ABDOMEN"), ("US THYROID", "NECK")), ("B-MODE", "DOPPLER")),
    "DX": (15, (("DX CHEST", "CHEST"), ("DX PELVIS", "PELVIS")), ("AP", "LAT")),
}
_MODALITIES = tuple(_PROTOCOLS)
_WEIGHTS = tuple(weight for weight, _, _ in _PROTOCOLS.values())

_FIRST_DAY = dt.date(2015, 1, 1).toordinal()
_LAST_DAY = dt.date(2025, 12, 31).toordinal()


class InstanceInfo(NamedTuple):
    """One SOP instance; a plain ``(SOPClassUID, SOPInstanceUID)`` pair."""

    SOPClassUID: str
    SOPInstanceUID: str


@dataclass(frozen=True)
class SeriesInfo:
    """A series; ``InstanceNumber`` of ``instances[i]`` is ``i + 1``."""

    SeriesInstanceUID: str
    Modality: str
    SeriesNumber: int
    SeriesDescription: str
    BodyPartExamined: str
    instances: tuple[InstanceInfo, ...]


@dataclass(frozen=True)
class PatientInfo:
    PatientID: str
    PatientName: str
    PatientSex: str
    PatientBirthDate: str


@dataclass(frozen=True)
class StudyInfo:
    """A study with its patient's attributes (as a study-root C-FIND answer has them)."""

    PatientID: str
    PatientName: str
    PatientSex: str
    PatientBirthDate: str
    StudyInstanceUID: str
    StudyDate: str
    StudyTime: str
    AccessionNumber: str
    StudyDescription: str
    ReferringPhysicianName: str
    StudyID: str
    series: tuple[SeriesInfo, ...]

    @property
    def modalities(self) -> tuple[str, ...]:
        """ModalitiesInStudy: the distinct modalities of the series, sorted."""
        return tuple(sorted({s.Modality for s in self.series}))

    @property
    def patient(self) -> PatientInfo:
        return PatientInfo(self.PatientID, self.PatientName, self.PatientSex, self.PatientBirthDate)

    @property
    def number_of_instances(self) -> int:
        return sum(len(s.instances) for s in self.series)


class InstanceRef(NamedTuple):
    """An instance with the study and series it belongs to."""

    study: StudyInfo
    series: SeriesInfo
    instance: InstanceInfo
    InstanceNumber: int

    @property
    def SOPInstanceUID(self) -> str:
        return self.instance.SOPInstanceUID


@dataclass(frozen=True)
class Archive:
    """Generated content: patients, studies, series and instances, with pixels of rows×columns."""

    seed: int
    patients: tuple[PatientInfo, ...]
    studies: tuple[StudyInfo, ...]
    rows: int = 16
    columns: int = 16
    #: Anatomical phantoms (``workstation.demo.phantoms``) instead of the test pattern.
    realistic: bool = False

    @cached_property
    def _by_uid(self) -> dict[str, StudyInfo]:
        return {s.StudyInstanceUID: s for s in self.studies}

    def study(self, uid: str) -> StudyInfo:
        """The study with this StudyInstanceUID (KeyError if there is none)."""
        return self._by_uid[uid]

    def all_instances(self, studies: Iterable[StudyInfo | str] | None = None) -> list[InstanceRef]:
        """Every instance (of ``studies``, given as StudyInfo or UID, when given)."""
        chosen = self.studies if studies is None else [self._resolve(s) for s in studies]
        return [
            InstanceRef(study, series, instance, number)
            for study in chosen
            for series in study.series
            for number, instance in enumerate(series.instances, start=1)
        ]

    def sop_instance_uids(self, study_uid: str | None = None) -> set[str]:
        """The SOPInstanceUIDs of one study, or of the whole archive."""
        studies = None if study_uid is None else [study_uid]
        return {ref.SOPInstanceUID for ref in self.all_instances(studies)}

    def dataset(self, ref: InstanceRef) -> Dataset:
        """The full Part-10 dataset (with ``file_meta``) of one instance."""
        return _build_dataset(ref, self.rows, self.columns, self.realistic)

    def datasets(
        self, studies: Iterable[StudyInfo | str] | None = None
    ) -> Iterator[tuple[str, Dataset]]:
        """Yield ``(relative path, dataset)``, the path as ``PatientID/StudyUID/SOPUID.dcm``."""
        for ref in self.all_instances(studies):
            yield _path_hint(ref), _build_dataset(ref, self.rows, self.columns, self.realistic)

    def write(
        self, folder: str | Path, studies: Iterable[StudyInfo | str] | None = None
    ) -> list[Path]:
        """Write Part-10 files below ``folder``; return their paths in archive order."""
        root = Path(folder)
        paths: list[Path] = []
        made: set[Path] = set()
        for ref in self.all_instances(studies):
            path = root / _path_hint(ref)
            if path.parent not in made:
                path.parent.mkdir(parents=True, exist_ok=True)
                made.add(path.parent)
            path.write_bytes(_encode_file(ref, self.rows, self.columns, self.realistic))
            paths.append(path)
        log.debug("wrote %d files below %s", len(paths), root)
        return paths

    def _resolve(self, study: StudyInfo | str) -> StudyInfo:
        return self.study(study) if isinstance(study, str) else study


def _path_hint(ref: InstanceRef) -> str:
    return f"{ref.study.PatientID}/{ref.study.StudyInstanceUID}/{ref.SOPInstanceUID}.dcm"


@cache
def _pixel_base(rows: int, columns: int) -> np.ndarray:
    y, x = np.indices((rows, columns), dtype=np.uint32)
    return (x * 16 + y * 8 + (x * y) // 4) % 4096


def _uid(seed: int, kind: str, *parts: object) -> str:
    return str(generate_uid(UID_PREFIX, [f"seed={seed}", kind, *map(str, parts)]))


def _random_date(rng: random.Random, first: int, last: int) -> str:
    return dt.date.fromordinal(rng.randint(first, last)).strftime("%Y%m%d")


def _make_patients(rng: random.Random, count: int, id_prefix: str) -> list[PatientInfo]:
    patients = []
    for index in range(count):
        if id_prefix == "TB1" and index < len(_SPECIAL_NAMES):
            name, sex = _SPECIAL_NAMES[index]
        else:
            first, sex = rng.choice(_FIRST_NAMES)
            name = f"{rng.choice(_LAST_NAMES)}^{first}"
        birth = _random_date(
            rng, dt.date(1930, 1, 1).toordinal(), dt.date(2010, 12, 31).toordinal()
        )
        patients.append(PatientInfo(f"{id_prefix}-{index + 1:06d}", name, sex, birth))
    return patients


def _make_study(
    rng: random.Random,
    seed: int,
    kind: str,
    index: int,
    patient: PatientInfo,
    series_counts: list[int],
) -> StudyInfo:
    """One study of ``len(series_counts)`` series with that many instances each."""
    modality = rng.choices(_MODALITIES, _WEIGHTS)[0]
    _, descriptions, _ = _PROTOCOLS[modality]
    description, body_part = rng.choice(descriptions)
    study_uid = _uid(seed, kind, "study", index)
    series = []
    for number, count in enumerate(series_counts, start=1):
        series_modality = modality
        if number > 1 and number == len(series_counts) and rng.random() < 0.3:
            series_modality = rng.choice([m for m in _MODALITIES if m != modality])
        sop_class = MODALITY_SOP_CLASSES[series_modality]
        instances = tuple(
            InstanceInfo(sop_class, _uid(seed, kind, "instance", index, number, i))
            for i in range(count)
        )
        series.append(
            SeriesInfo(
                SeriesInstanceUID=_uid(seed, kind, "series", index, number),
                Modality=series_modality,
                SeriesNumber=number,
                SeriesDescription=rng.choice(_PROTOCOLS[series_modality][2]),
                BodyPartExamined=body_part,
                instances=instances,
            )
        )
    return StudyInfo(
        PatientID=patient.PatientID,
        PatientName=patient.PatientName,
        PatientSex=patient.PatientSex,
        PatientBirthDate=patient.PatientBirthDate,
        StudyInstanceUID=study_uid,
        StudyDate=_random_date(rng, _FIRST_DAY, _LAST_DAY),
        StudyTime=f"{rng.randint(7, 19):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}",
        AccessionNumber=f"A{index + 1:06d}",
        StudyDescription=description,
        ReferringPhysicianName=rng.choices(_PHYSICIANS, (4, 3, 3, 2, 1))[0],
        StudyID=str(rng.randint(1, 9999)),
        series=tuple(series),
    )


def generate_archive(
    seed: int = 1,
    patients: int = 12,
    studies_per_patient: tuple[int, int] = (1, 4),
    series_per_study: tuple[int, int] = (1, 3),
    instances_per_series: tuple[int, int] = (1, 6),
    rows: int = 16,
    columns: int = 16,
    realistic: bool = False,
) -> Archive:
    """A small realistic archive; the first eight patients carry the tricky names.

    Ranges are inclusive ``(low, high)``. Patient IDs are ``TB1-000001``... ``realistic``
    gives anatomical phantoms (use 256 × 256 or more) instead of the test pattern.
    """
    rng = random.Random(seed)
    people = _make_patients(rng, patients, "TB1")
    studies: list[StudyInfo] = []
    for patient in people:
        for _ in range(rng.randint(*studies_per_patient)):
            counts = [
                rng.randint(*instances_per_series) for _ in range(rng.randint(*series_per_study))
            ]
            studies.append(_make_study(rng, seed, "archive", len(studies), patient, counts))
    return Archive(seed, tuple(people), tuple(studies), rows, columns, realistic)


def generate_bulk(
    seed: int = 1,
    studies: int = 10_000,
    rows: int = 16,
    columns: int = 16,
    instances_per_study: int = 1,
) -> Archive:
    """Many studies of one series each (patient IDs ``BLK-...``, about 3 studies a patient)."""
    rng = random.Random(seed)
    people = _make_patients(rng, max(1, studies // 3), "BLK")
    made = tuple(
        _make_study(rng, seed, "bulk", index, rng.choice(people), [instances_per_study])
        for index in range(studies)
    )
    return Archive(seed, tuple(people), made, rows, columns)


def generate_large_study(
    seed: int = 1,
    instances: int = 1000,
    rows: int = 512,
    columns: int = 512,
    series: int = 1,
) -> Archive:
    """One study (patient ID ``BIG-000001``) of ``instances`` images over ``series`` series."""
    rng = random.Random(seed)
    people = _make_patients(rng, 1, "BIG")
    counts = [instances // series + (1 if i < instances % series else 0) for i in range(series)]
    study = _make_study(rng, seed, "large", 0, people[0], counts)
    return Archive(seed, tuple(people), (study,), rows, columns)


_Element = tuple[int, str, Any]


@cache
def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return tag


def _elements(ref: InstanceRef, rows: int, columns: int, realistic: bool) -> list[_Element]:
    """The instance's data elements as ``(tag, VR, value)``, sorted by tag."""
    study, series, instance, number = ref
    modality = series.Modality
    cross_sectional = modality in ("CT", "MR")
    values: list[tuple[str, str, object]] = [
        ("SpecificCharacterSet", "CS", "ISO_IR 192"),
        ("ImageType", "CS", ["ORIGINAL", "PRIMARY", "AXIAL" if cross_sectional else "OTHER"]),
        ("SOPClassUID", "UI", instance.SOPClassUID),
        ("SOPInstanceUID", "UI", instance.SOPInstanceUID),
        ("StudyDate", "DA", study.StudyDate),
        ("SeriesDate", "DA", study.StudyDate),
        ("ContentDate", "DA", study.StudyDate),
        ("StudyTime", "TM", study.StudyTime),
        ("SeriesTime", "TM", study.StudyTime),
        ("ContentTime", "TM", study.StudyTime),
        ("AccessionNumber", "SH", study.AccessionNumber),
        ("Modality", "CS", modality),
        ("Manufacturer", "LO", "Workstation Demo"),
        ("ReferringPhysicianName", "PN", study.ReferringPhysicianName),
        ("StudyDescription", "LO", study.StudyDescription),
        ("SeriesDescription", "LO", series.SeriesDescription),
        ("PatientName", "PN", study.PatientName),
        ("PatientID", "LO", study.PatientID),
        ("PatientBirthDate", "DA", study.PatientBirthDate),
        ("PatientSex", "CS", study.PatientSex),
        ("BodyPartExamined", "CS", series.BodyPartExamined),
        ("StudyInstanceUID", "UI", study.StudyInstanceUID),
        ("SeriesInstanceUID", "UI", series.SeriesInstanceUID),
        ("StudyID", "SH", study.StudyID),
        ("SeriesNumber", "IS", series.SeriesNumber),
        ("InstanceNumber", "IS", number),
        ("SamplesPerPixel", "US", 1),
        ("PhotometricInterpretation", "CS", "MONOCHROME2"),
        ("Rows", "US", rows),
        ("Columns", "US", columns),
        ("BitsAllocated", "US", 16),
        ("BitsStored", "US", 12),
        ("HighBit", "US", 11),
        ("PixelRepresentation", "US", 0),
        ("WindowCenter", "DS", 2048),
        ("WindowWidth", "DS", 4096),
    ]
    if cross_sectional:
        values += [
            ("ImagePositionPatient", "DS", [0, 0, number * 5]),
            ("ImageOrientationPatient", "DS", [1, 0, 0, 0, 1, 0]),
            ("SliceThickness", "DS", 5),
            ("PixelSpacing", "DS", [0.5, 0.5]),
        ]
    if modality == "CT":
        values += [("RescaleIntercept", "DS", -1024), ("RescaleSlope", "DS", 1)]
    if modality == "DX":
        values.append(("PresentationIntentType", "CS", "FOR PRESENTATION"))
    if realistic:
        values = _with_phantom(values, ref, rows, columns)
    else:
        # The UID's last digits vary the pattern from image to image without any randomness.
        offset = int(instance.SOPInstanceUID[-6:]) % 4096
        pixels = ((_pixel_base(rows, columns) + offset) % 4096).astype("<u2").tobytes()
        values.append(("PixelData", "OW", pixels))
    return sorted((_tag(keyword), vr, value) for keyword, vr, value in values)


def _with_phantom(
    values: list[tuple[str, str, object]], ref: InstanceRef, rows: int, columns: int
) -> list[tuple[str, str, object]]:
    """``values`` with the pixels, photometric, bits and window of the series' phantom."""
    series = ref.series
    image = phantom(
        series.Modality,
        series.BodyPartExamined,
        series.SeriesDescription,
        ref.InstanceNumber - 1,
        len(series.instances),
        rows,
        columns,
    )
    replaced = {
        "PhotometricInterpretation": image.photometric,
        "BitsStored": image.bits_stored,
        "HighBit": image.bits_stored - 1,
        "WindowCenter": image.window_center,
        "WindowWidth": image.window_width,
    }
    out = [(k, vr, replaced.get(k, v)) for k, vr, v in values]
    out.append(("PixelData", "OW", image.pixels.astype("<u2").tobytes()))
    return out


def _meta_elements(instance: InstanceInfo) -> list[_Element]:
    return [
        (0x00020001, "OB", b"\x00\x01"),
        (0x00020002, "UI", instance.SOPClassUID),
        (0x00020003, "UI", instance.SOPInstanceUID),
        (0x00020010, "UI", str(ExplicitVRLittleEndian)),
        (0x00020012, "UI", IMPLEMENTATION_CLASS_UID),
        (0x00020013, "SH", IMPLEMENTATION_VERSION_NAME),
    ]


def _build_dataset(ref: InstanceRef, rows: int, columns: int, realistic: bool = False) -> Dataset:
    ds = Dataset()
    for tag, vr, value in _elements(ref, rows, columns, realistic):
        ds.add_new(tag, vr, value)
    meta = FileMetaDataset()
    for tag, vr, value in _meta_elements(ref.instance):
        meta.add_new(tag, vr, value)
    ds.file_meta = meta
    return ds


_LONG_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UC", "UN", "UR", "UT"})


def _encode(elements: list[_Element]) -> bytes:
    """Explicit VR Little Endian encoding of flat elements (no sequences)."""
    out = bytearray()
    for tag, vr, value in elements:
        if vr == "US":
            raw = struct.pack("<H", value)
        elif isinstance(value, bytes):
            raw = value + b"\0" * (len(value) % 2)
        else:
            items = value if isinstance(value, list) else [value]
            raw = "\\".join(f"{v:g}" if isinstance(v, float) else str(v) for v in items).encode()
            if len(raw) % 2:
                raw += b"\0" if vr == "UI" else b" "
        head = struct.pack("<HH2s", tag >> 16, tag & 0xFFFF, vr.encode())
        if vr in _LONG_VRS:
            out += head + struct.pack("<2xI", len(raw)) + raw
        else:
            out += head + struct.pack("<H", len(raw)) + raw
    return bytes(out)


def _encode_file(ref: InstanceRef, rows: int, columns: int, realistic: bool = False) -> bytes:
    """A complete Part-10 file, as pydicom would write it, about ten times faster."""
    meta = _encode(_meta_elements(ref.instance))
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(meta))
    body = _encode(_elements(ref, rows, columns, realistic))
    return b"\0" * 128 + b"DICM" + group_length + meta + body
