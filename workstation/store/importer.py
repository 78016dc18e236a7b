"""Bringing files and folders into the local store (``LocalStore.import_path``).

Each file is read and checked as a received instance would be (the data set walked to its end,
UIDs validated) and written with the store's atomic, duplicate- and conflict-aware write;
files that are not DICOM Part-10 are counted and skipped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workstation.errors import InvalidInput, StoreError

if TYPE_CHECKING:
    from workstation.store.local_store import LocalStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportReport:
    stored: int = 0
    duplicates: int = 0
    skipped: int = 0  # not DICOM Part-10, or unusable UIDs
    failed: int = 0  # could not be read or written


def import_path(store: LocalStore, path: str | os.PathLike[str]) -> ImportReport:
    """Copy a file or, recursively, a folder into ``store``; non-DICOM files are skipped."""
    source = Path(path).expanduser().absolute()
    if source.resolve().is_relative_to(store.root.resolve()):
        raise InvalidInput(f"cannot import {source}: it is inside the store itself")
    if not source.exists():
        raise InvalidInput(f"cannot import {source}: no such file or folder")
    counts = {"stored": 0, "duplicates": 0, "skipped": 0, "failed": 0}
    for file in _walk(source):
        try:
            stored = store.store_file(file, move=False)
        except InvalidInput as exc:
            log.debug("skipping %s: %s", file, exc)
            counts["skipped"] += 1
        except (OSError, StoreError) as exc:
            # The file name may hold patient data: it goes to DEBUG only.
            log.warning("cannot import a file: %s", _reason(exc))
            log.debug("cannot import %s: %s", file, exc)
            counts["failed"] += 1
        else:
            counts["duplicates" if stored.duplicate else "stored"] += 1
    report = ImportReport(**counts)
    log.info(
        "import: %d stored, %d duplicate(s), %d skipped, %d failed",
        report.stored,
        report.duplicates,
        report.skipped,
        report.failed,
    )
    return report


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return type(cause).__name__


def _walk(source: Path) -> Iterator[Path]:
    if source.is_file():
        yield source
        return
    for folder, dirs, files in os.walk(source):
        dirs.sort()
        for name in sorted(files):
            yield Path(folder, name)
