"""Bring the index back in line with the files after a crash, a power cut or a lost index.

Files are the truth: every instance file was fsynced before its C-STORE was acknowledged,
while the index commits a little later (and, with ``synchronous=NORMAL``, may lose its last
batches on a power cut). :func:`reconcile` therefore

- removes rows whose file is missing (a deletion interrupted after its files were moved away);
- indexes files that have no row (stored, then the process died before the batch committed).

A file is indexed only when its own UIDs place it where it lies, and never when its SOP
Instance UID is already indexed at another path (an older copy left by an interrupted move).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from workstation.errors import InvalidInput
from workstation.store.header import read_header
from workstation.store.index import StoreIndex
from workstation.store.layout import SUFFIX, instance_path, series_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileReport:
    indexed: int = 0
    removed: int = 0
    skipped: int = 0


def reconcile(root: Path, index: StoreIndex) -> ReconcileReport:
    """Walk the store under ``root`` and repair ``index``; return what changed."""
    started = time.monotonic()
    index.flush()
    indexed = skipped = 0
    missing: list[str] = []
    seen: set[tuple[str, str]] = set()
    for study_uid, series_uid in index.series_locations():
        try:
            prefix = f"{series_path(study_uid, series_uid)}/"
        except InvalidInput:
            log.warning("the index holds an invalid UID; its rows are left alone")
            continue
        seen.add((study_uid, series_uid))
        names = _instance_files(root / prefix)
        rows = {
            sop: rel[len(prefix) :]
            for sop, rel in index.instance_paths(series_uid).items()
            if rel.startswith(prefix)
        }
        missing.extend(sop for sop, name in rows.items() if name not in names)
        for name in sorted(names - set(rows.values())):
            added = _index_file(root, index, PurePosixPath(prefix, name))
            indexed, skipped = indexed + added, skipped + (not added)
    for study_dir in _subdirs(root):
        for series_dir in _subdirs(study_dir):
            if (study_dir.name, series_dir.name) in seen:
                continue
            for name in sorted(_instance_files(series_dir)):
                rel = PurePosixPath(study_dir.name, series_dir.name, name)
                added = _index_file(root, index, rel)
                indexed, skipped = indexed + added, skipped + (not added)
    removed = index.delete_instances(missing) if missing else 0
    index.flush()
    report = ReconcileReport(indexed=indexed, removed=removed, skipped=skipped)
    log.info(
        "store check of %s took %.1f s: %d file(s) indexed, %d row(s) without file removed, "
        "%d file(s) skipped",
        root,
        time.monotonic() - started,
        indexed,
        removed,
        skipped,
    )
    return report


def _index_file(root: Path, index: StoreIndex, rel: PurePosixPath) -> bool:
    path = root / rel
    try:
        record = read_header(path)
        stat = path.stat()
    except (InvalidInput, OSError) as exc:
        log.warning("cannot index %s: %s", rel, exc)
        return False
    expected = instance_path(record.study_uid, record.series_uid, record.sop_instance_uid)
    if expected != rel:
        log.warning("%s is not where its UIDs place it (%s); left alone", rel, expected)
        return False
    current = index.path_of(record.sop_instance_uid)
    if current is not None and current != str(rel):
        log.warning("%s is an older copy of an instance indexed at %s; left alone", rel, current)
        return False
    index.submit(
        replace(
            record,
            path=str(rel),
            size=stat.st_size,
            received_at=datetime.fromtimestamp(stat.st_mtime, UTC),
        )
    )
    return True


def _subdirs(directory: Path) -> list[Path]:
    """Sub-directories whose names are not hidden (``.incoming``, ``.trash``...)."""
    try:
        with os.scandir(directory) as entries:
            return [
                Path(e.path)
                for e in entries
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            ]
    except FileNotFoundError:
        return []


def _instance_files(directory: Path) -> set[str]:
    try:
        with os.scandir(directory) as entries:
            return {
                e.name
                for e in entries
                if e.name.endswith(SUFFIX) and e.is_file(follow_symlinks=False)
            }
    except (FileNotFoundError, NotADirectoryError):
        return set()
