"""One process per store: an exclusive lock held while a LocalStore is open.

Opening a store cleans its temporary folder and may reconcile its index, which would break a
second process writing into the same folder (the window and a CLI retrieve, say). The lock
makes the second one fail at once with a message naming the first.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

from workstation.errors import StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks; one process assumed
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "lock"


class StoreLock:
    """An exclusive advisory lock on ``<meta>/lock``; the file names the holder's pid."""

    def __init__(self, meta: Path, root: Path) -> None:
        self._file: IO[str] | None = None
        if fcntl is None:
            return
        path = meta / LOCK_NAME
        handle = open(path, "a+", encoding="ascii")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StoreError(
                f"the store {root} is in use by another workstation process ({holder}): "
                "close it, or use another store folder (--store)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()  # closing releases the flock
            self._file = None
