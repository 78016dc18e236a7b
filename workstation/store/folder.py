"""The store's folder on disk: claiming it (created, private, locked) and quick looks into it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from workstation.errors import StoreUnusable
from workstation.store.owner import StoreLock

log = logging.getLogger(__name__)


def claim(root: Path, meta: Path) -> StoreLock:
    """Create the store's folders and lock the store; :class:`StoreUnusable` with a one-line
    reason when ``root`` cannot hold a store (a file, a folder that cannot be created)."""
    where = f"cannot use {root} as the store"
    blocker = next((p for p in (root, *root.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        what = "it is" if blocker == root else f"{blocker} is"
        raise StoreUnusable(f"{where}: {what} a file, not a folder")
    try:
        meta.mkdir(mode=0o700, parents=True, exist_ok=True)
        _make_private(root)
        return StoreLock(meta, root)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StoreUnusable(f"{where}: cannot create {exc.filename or meta} ({reason})") from None


def _make_private(root: Path) -> None:
    """Patient data is the user's alone: the store folder is 0700 (where we own it)."""
    if os.name != "posix":
        return
    try:
        if root.stat().st_uid == os.getuid() and root.stat().st_mode & 0o077:
            os.chmod(root, 0o700)
    except OSError as exc:
        log.warning("cannot make the store %s private: %s", root, exc)


def count_files(folder: Path) -> int:
    """Files directly in ``folder`` (0 when it does not exist)."""
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if e.is_file(follow_symlinks=False))
    except FileNotFoundError:
        return 0


def has_entries(root: Path) -> bool:
    """Whether ``root`` holds anything but hidden entries (``.workstation``, ``.trash``...)."""
    with os.scandir(root) as entries:
        return any(not e.name.startswith(".") for e in entries)
