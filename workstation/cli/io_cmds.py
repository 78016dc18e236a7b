"""``workstation import`` and ``workstation export``: files, folders, DICOMDIR media, ZIP files.

Exit codes: 0 done; 1 some files failed (the summary and ``--json`` list them) or writing
failed; 2 bad usage (a path that does not exist, a UID the store does not hold, a destination
in use); 130 interrupted (Ctrl+C stops between two files; an interrupted export leaves
nothing behind).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from workstation import settings as settings_mod
from workstation.cancel import CancelToken

#: How many failures the text summary lists (``--json`` has them all, up to the report's cap).
_LISTED = 20


def add_parsers(sub: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    settings = settings_mod.Settings()
    store_help = f"the local store folder (default: {settings.store_dir})"

    p = sub.add_parser(
        "import",
        help="import files, folders, DICOMDIR media and ZIP files into the local store",
        description="Import into the local store: DICOM files, folders (recursively), a "
        "DICOMDIR (a CD, DVD or USB stick: name the DICOMDIR or its folder) and ZIP files. "
        "Instances already stored count as such; non-DICOM files are skipped.",
    )
    add_common(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="file, folder, DICOMDIR or ZIP")
    p.add_argument("--store", default=None, metavar="DIR", help=store_help)
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run_import)

    p = sub.add_parser(
        "export",
        help="export studies or series from the local store to a folder or ZIP file",
        description="Export studies and series from the local store to DEST, a new (or "
        "empty) folder, or with --zip a new .zip file. Nothing is visible at DEST until the "
        "export is complete.",
    )
    add_common(p)
    p.add_argument("destination", metavar="DEST", help="a new or empty folder, or a .zip file")
    p.add_argument(
        "--study",
        action="append",
        default=[],
        metavar="UID",
        help="a Study Instance UID to export (repeat for several)",
    )
    p.add_argument(
        "--series",
        action="append",
        default=[],
        metavar="UID",
        help="a Series Instance UID to export (repeat for several)",
    )
    p.add_argument("--zip", action="store_true", help="write one ZIP file")
    p.add_argument(
        "--deidentify",
        action="store_true",
        help="remove patient identity (PS3.15 Annex E basic profile, a documented subset; "
        "new UIDs; pixel data unchanged)",
    )
    p.add_argument(
        "--dicomdir",
        action="store_true",
        help="write a DICOMDIR media set (8-character file names) for a CD or USB stick",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing ZIP file")
    p.add_argument("--store", default=None, metavar="DIR", help=store_help)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_export)


class _Progress:
    """``done/total files`` on stderr, repainted at most ten times a second (a terminal only)."""

    def __init__(self, verb: str) -> None:
        self.enabled = sys.stderr.isatty()
        self.verb = verb
        self.last = 0.0
        self.shown = False
        self.lock = threading.Lock()

    def __call__(self, progress: Any) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.1 and progress.done < progress.total):
            return
        with self.lock:
            self.last = now
            sys.stderr.write(
                f"\r{self.verb} {progress.done}/{progress.total} files "
                f"({progress.fraction * 100:.0f}%)\x1b[K"
            )
            sys.stderr.flush()
            self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


@contextmanager
def _interruptible() -> Iterator[CancelToken]:
    """Ctrl+C sets the token (the work stops between two files) instead of raising."""
    token = CancelToken()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: token.cancel())
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)


def run_import(args: argparse.Namespace) -> int:
    from workstation.store import LocalStore
    from workstation.store.importer import import_paths

    settings = settings_mod.load()
    progress = _Progress("importing")
    with _interruptible() as token, LocalStore(args.store or settings.store_dir) as store:
        try:
            report = import_paths(store, args.paths, progress=progress, cancel=token)
        finally:
            progress.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.summary()[0].upper() + report.summary()[1:])
        for name, reason in report.failures[:_LISTED]:
            print(f"  failed {name}: {reason}")
        if report.failed > _LISTED:
            print(f"  ... and {report.failed - _LISTED} more")
        if report.conflicts:
            print(f"  differing copies are kept in {store.conflicts_folder}")
    if report.cancelled:
        return 130
    return 1 if report.failed else 0


def run_export(args: argparse.Namespace) -> int:
    from workstation.export import ExportCancelled, export_instances
    from workstation.store import LocalStore

    settings = settings_mod.load()
    progress = _Progress("exporting")
    with _interruptible() as token, LocalStore(args.store or settings.store_dir) as store:
        try:
            report = export_instances(
                store,
                args.destination,
                studies=args.study,
                series=args.series,
                zip=args.zip,
                deidentify=args.deidentify,
                dicomdir=args.dicomdir,
                overwrite=args.overwrite,
                progress=progress,
                cancel=token,
            )
        except ExportCancelled:
            progress.close()
            print("workstation export: interrupted; nothing was written", file=sys.stderr)
            return 130
        finally:
            progress.close()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.summary()[0].upper() + report.summary()[1:])
    return 0
