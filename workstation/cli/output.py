"""Printing matches: an aligned table for people, DICOM JSON or CSV for programs.

Each printer takes identifiers as pydicom Datasets or as :class:`RawIdentifier` (the bytes off
the wire, decoded only as far as printing needs); the output is the same for both.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from pydicom.dataset import Dataset

from workstation.identifiers import RawIdentifier, text_of_dataset

log = logging.getLogger(__name__)

#: A C-FIND identifier: decoded by pydicom, or as received.
Identifier = Dataset | RawIdentifier

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


def text_of(ds: Identifier, keyword: str) -> str:
    """The value of ``keyword`` as one line of text ('' when absent)."""
    if isinstance(ds, RawIdentifier):
        return ds.text(keyword)
    return text_of_dataset(ds, keyword)


def _keywords(ds: Identifier) -> Iterable[str]:
    if isinstance(ds, RawIdentifier):
        return ds.keywords()
    return (elem.keyword for elem in ds if elem.keyword)


def json_dict_of(ds: Identifier) -> dict[str, Any]:
    """The DICOM JSON object (PS3.18 Annex F) of one identifier.

    A value pydicom cannot write as JSON (a DS of ``x.5`` from a broken peer) is left out, with
    a warning, rather than ending the output with a traceback.
    """
    try:
        return ds.json_dict() if isinstance(ds, RawIdentifier) else ds.to_json_dict()
    except ValueError:
        dataset = ds.dataset() if isinstance(ds, RawIdentifier) else ds
        return {f"{elem.tag:08X}": _element_json(dataset, elem.tag) for elem in dataset}


def _element_json(ds: Dataset, tag: int) -> dict[str, Any]:
    try:
        json: dict[str, Any] = ds[tag].to_json_dict(None, 1024)
        return json
    except ValueError as exc:
        name = ds[tag].keyword or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.warning("%s: %s; its value is left out of the JSON", name, reason)
        return {"vr": ds[tag].VR}


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: East Asian wide characters take two."""
    if text.isascii():  # every ASCII character takes one column
        return len(text)
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def _pad(text: str, width: int) -> str:
    return text + " " * (width - display_width(text))


def columns_for(rows: Sequence[Identifier], requested: Sequence[str] = ()) -> list[str]:
    present: set[str] = set()
    for ds in rows:
        present.update(_keywords(ds))
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


def write_table(rows: Sequence[Identifier], out: TextIO | None = None) -> None:
    if not rows:
        return
    out = sys.stdout if out is None else out
    columns = columns_for(rows)
    cells = [[text_of(ds, c) for c in columns] for ds in rows]
    headers = [HEADERS.get(c, c) for c in columns]
    widths = [
        max(display_width(headers[i]), *(display_width(r[i]) for r in cells))
        for i in range(len(columns))
    ]
    lines = [headers, *cells]
    out.write(
        "".join(
            "  ".join(_pad(c, w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n"
            for line in lines
        )
    )


class Flusher:
    """Flushes a stream at most ten times a second: matches still show as they arrive, but a
    write system call per match (which also hands the GIL to the reading thread) is avoided."""

    def __init__(self, out: TextIO, interval: float = 0.1) -> None:
        self.out = out
        self.interval = interval
        self.last = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.out.flush()
            self.last = now


#: ``json.dumps(obj, ensure_ascii=False, separators=(",", ":"))`` without a new encoder per call.
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def json_line(ds: Identifier) -> str:
    """One DICOM JSON object (PS3.18 Annex F) on one line, with its newline."""
    return _to_json(json_dict_of(ds)) + "\n"


def write_json_line(ds: Identifier, out: TextIO | None = None) -> None:
    """One DICOM JSON object (PS3.18 Annex F) on one line.

    One ``write`` and no flush: the caller decides when the stream is flushed (:class:`Flusher`),
    or use :class:`JsonLinesWriter`, which also batches the writes.
    """
    (sys.stdout if out is None else out).write(json_line(ds))


class JsonLinesWriter:
    """Streams DICOM JSON lines, writing them in batches: at most every ``interval`` seconds
    (and whenever ``max_chars`` are pending), each batch written and flushed at once, so matches
    still show as they arrive without a write per match. :meth:`close` (or leaving the
    ``with`` block) writes the rest."""

    def __init__(
        self, out: TextIO | None = None, interval: float = 0.1, max_chars: int = 1 << 16
    ) -> None:
        self.out = sys.stdout if out is None else out
        self.interval = interval
        self.max_chars = max_chars
        self._pending: list[str] = []
        self._chars = 0
        self._last = float("-inf")  # the first match shows at once

    def write(self, ds: Identifier) -> None:
        line = json_line(ds)
        self._pending.append(line)
        self._chars += len(line)
        if self._chars >= self.max_chars or time.monotonic() - self._last >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Write what is pending and flush the stream."""
        if self._pending:
            self.out.write("".join(self._pending))
            self._pending.clear()
            self._chars = 0
        self.out.flush()
        self._last = time.monotonic()

    close = flush

    def __enter__(self) -> JsonLinesWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


class CsvWriter:
    """Streams rows; the columns are fixed by the first row (the query's return keys)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = sys.stdout if out is None else out
        self.writer = csv.writer(self.out)
        self.columns: list[str] | None = None

    def write(self, ds: Identifier) -> None:
        if self.columns is None:
            self.columns = columns_for([ds])
            self.writer.writerow(self.columns)
        self.writer.writerow([text_of(ds, c) for c in self.columns])
