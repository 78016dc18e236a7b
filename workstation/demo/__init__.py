"""Synthetic, seeded DICOM content for the demo archive, the tests and the benchmarks."""

from workstation.demo.generator import (
    MODALITY_SOP_CLASSES,
    UID_PREFIX,
    Archive,
    InstanceInfo,
    InstanceRef,
    PatientInfo,
    SeriesInfo,
    StudyInfo,
    generate_archive,
    generate_bulk,
    generate_large_study,
)

__all__ = [
    "MODALITY_SOP_CLASSES",
    "UID_PREFIX",
    "Archive",
    "InstanceInfo",
    "InstanceRef",
    "PatientInfo",
    "SeriesInfo",
    "StudyInfo",
    "generate_archive",
    "generate_bulk",
    "generate_large_study",
]

from workstation.demo.archive import DemoArchive, demo_archive

__all__ += ["DemoArchive", "demo_archive"]
