"""Exporting from the local store: folders, ZIP files, DICOMDIR media, de-identified copies."""

from workstation.export.deidentify import UidMap, deidentify
from workstation.export.exporter import (
    ExportCancelled,
    ExportProgress,
    ExportReport,
    export_instances,
)

__all__ = [
    "ExportCancelled",
    "ExportProgress",
    "ExportReport",
    "UidMap",
    "deidentify",
    "export_instances",
]
