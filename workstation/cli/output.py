"""Printing matches: an aligned table for people, DICOM JSON or CSV for programs."""

from __future__ import annotations

import csv
import json
import sys
import time
import unicodedata
from collections.abc import Sequence
from typing import TextIO

from pydicom.dataset import Dataset

# Column order for the table and CSV; keys a level does not return are left out.
PREFERRED_COLUMNS = [
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ModalitiesInStudy",
    "Modality",
    "StudyDescription",
    "SeriesNumber",
    "SeriesDescription",
    "InstanceNumber",
    "ReferringPhysicianName",
    "NumberOfPatientRelatedStudies",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "NumberOfSeriesRelatedInstances",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
]
HEADERS = {
    "PatientName": "Patient",
    "PatientID": "ID",
    "PatientBirthDate": "Born",
    "PatientSex": "Sex",
    "StudyDate": "Date",
    "StudyTime": "Time",
    "AccessionNumber": "Accession",
    "ModalitiesInStudy": "Mod",
    "Modality": "Mod",
    "StudyDescription": "Description",
    "SeriesNumber": "#",
    "SeriesDescription": "Series",
    "InstanceNumber": "#",
    "ReferringPhysicianName": "Referrer",
    "NumberOfPatientRelatedStudies": "Studies",
    "NumberOfStudyRelatedSeries": "Ser",
    "NumberOfStudyRelatedInstances": "Img",
    "NumberOfSeriesRelatedInstances": "Img",
    "StudyInstanceUID": "Study UID",
    "SeriesInstanceUID": "Series UID",
    "SOPInstanceUID": "SOP Instance UID",
}


def text_of(ds: Dataset, keyword: str) -> str:
    """The value of ``keyword`` as one line of text ('' when absent)."""
    value = ds.get(keyword)
    if value is None or value == "":
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: East Asian wide characters take two."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def _pad(text: str, width: int) -> str:
    return text + " " * (width - display_width(text))


def columns_for(rows: Sequence[Dataset], requested: Sequence[str] = ()) -> list[str]:
    present: set[str] = set()
    for ds in rows:
        present.update(elem.keyword for elem in ds if elem.keyword)
    columns = [c for c in PREFERRED_COLUMNS if c in present]
    extra = sorted(
        k
        for k in present
        if k not in columns
        and k not in {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"}
        and not k.endswith("Sequence")
    )
    columns += [k for k in requested if k in extra] or extra
    return columns


def write_table(rows: Sequence[Dataset], out: TextIO = sys.stdout) -> None:
    if not rows:
        return
    columns = columns_for(rows)
    cells = [[text_of(ds, c) for c in columns] for ds in rows]
    headers = [HEADERS.get(c, c) for c in columns]
    widths = [
        max(display_width(headers[i]), *(display_width(r[i]) for r in cells))
        for i in range(len(columns))
    ]
    out.write("  ".join(_pad(h, w) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n")
    for row in cells:
        out.write("  ".join(_pad(c, w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


class Flusher:
    """Flushes a stream at most ten times a second: matches still show as they arrive, but a
    write system call per match (which also hands the GIL to pynetdicom) is avoided."""

    def __init__(self, out: TextIO, interval: float = 0.1) -> None:
        self.out = out
        self.interval = interval
        self.last = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.out.flush()
            self.last = now


def write_json_line(ds: Dataset, out: TextIO = sys.stdout) -> None:
    """One DICOM JSON object (PS3.18 Annex F) on one line."""
    out.write(json.dumps(ds.to_json_dict(), ensure_ascii=False, separators=(",", ":")) + "\n")


class CsvWriter:
    """Streams rows; the columns are fixed by the first row (the query's return keys)."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.writer = csv.writer(out)
        self.columns: list[str] | None = None

    def write(self, ds: Dataset) -> None:
        if self.columns is None:
            self.columns = columns_for([ds])
            self.writer.writerow(self.columns)
        self.writer.writerow([text_of(ds, c) for c in self.columns])
