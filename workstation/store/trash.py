"""Deletion in two steps: a folder leaves the store tree in one rename, then is removed.

:meth:`Trash.take` renames study or series folders into ``<root>/.trash/`` (same file system,
so each is atomic); :meth:`Trash.empty` removes them once the index rows are gone, and
:meth:`Trash.give_back` renames them back when removing the rows failed. Whatever a crash
leaves in ``.trash`` is removed by :meth:`Trash.empty_all` at the next start-up.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from workstation.errors import StoreError
from workstation.store.layout import resolve_in_root

log = logging.getLogger(__name__)

TRASH_DIR = ".trash"


@dataclass(frozen=True)
class Taken:
    """A folder moved to the trash, and where it came from."""

    trash_path: Path
    original: Path


class Trash:
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root
        self.path = root / TRASH_DIR
        self._fsync = fsync

    def take(self, rels: list[PurePosixPath]) -> list[Taken]:
        """Move the folders that exist out of the tree; all or none (StoreError)."""
        taken: list[Taken] = []
        for rel in rels:
            original = resolve_in_root(self.root, rel)
            if not original.exists():
                continue
            self.path.mkdir(exist_ok=True)
            target = self.path / uuid.uuid4().hex
            try:
                os.replace(original, target)
            except OSError as exc:
                self.give_back(taken)
                raise StoreError(f"cannot delete {rel} from the local store: {exc}") from exc
            taken.append(Taken(target, original))
        if taken and self._fsync:
            _fsync_dirs([self.path, *(t.original.parent for t in taken)])
        return taken

    def give_back(self, taken: list[Taken]) -> bool:
        """Rename folders back into the tree; False when one could not be (logged)."""
        ok = True
        for item in taken:
            try:
                os.rename(item.trash_path, item.original)
            except OSError as exc:  # e.g. new instances of the study arrived meanwhile
                ok = False
                log.error("cannot put %s back after a failed deletion: %s", item.original.name, exc)
        return ok

    def empty(self, taken: list[Taken]) -> None:
        for item in taken:
            _rmtree(item.trash_path)

    def empty_all(self) -> None:
        if self.path.is_dir():
            for entry in self.path.iterdir():
                _rmtree(entry)


def _rmtree(path: Path) -> None:
    """Remove a folder of the trash; what stays is removed at the next start-up."""
    try:
        shutil.rmtree(path)
    except OSError as exc:
        log.warning("cannot empty the store's trash: %s", exc)


def _fsync_dirs(directories: list[Path]) -> None:
    if os.name != "posix":
        return
    for directory in dict.fromkeys(directories):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
