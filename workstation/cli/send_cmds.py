"""``workstation send``: store studies, series or files on a node (C-STORE, like storescu)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import TYPE_CHECKING

from workstation import audit
from workstation import settings as settings_mod
from workstation.cli.query_cmds import resolve_target
from workstation.cli.retrieve_cmds import ProgressLine
from workstation.errors import InvalidInput

if TYPE_CHECKING:
    from workstation.dimse.send import SendOutcome, SendProgress


def add_send_arguments(parser: argparse.ArgumentParser) -> None:
    settings = settings_mod.Settings()
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="DICOM files or folders to send (folders recursively; other files are skipped)",
    )
    parser.add_argument(
        "--study",
        action="append",
        default=[],
        metavar="UID",
        help="send this study from the local store (repeatable)",
    )
    parser.add_argument(
        "--series",
        action="append",
        default=[],
        metavar="UID",
        help="send this series from the local store (repeatable)",
    )
    parser.add_argument(
        "--store",
        default=None,
        metavar="DIR",
        help=f"the local store folder for --study/--series (default: {settings.store_dir})",
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")


class SendProgressLine(ProgressLine):
    """``workstation send``'s live line on stderr: instances and bytes sent so far."""

    def __call__(self, progress: SendProgress) -> None:  # type: ignore[override]
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.1:
            return
        with self.lock:
            self.last = now
            fraction = progress.fraction
            pct = f"{fraction * 100:5.1f}%" if fraction is not None else "    ?"
            failed = f", {progress.failed} not sent" if progress.failed else ""
            sys.stderr.write(
                f"\r{pct}  {progress.sent}/{progress.total} instances sent{failed}  "
                f"{progress.bytes / 1e6:.1f} MB  {progress.megabytes_per_second:5.1f} MB/s\x1b[K"
            )
            sys.stderr.flush()
            self.shown = True


def _print_outcome(outcome: SendOutcome, as_json: bool) -> int:
    from workstation.dimse.send import SendState

    if as_json:
        print(json.dumps(outcome.to_json(), indent=2))
    else:
        print(f"{outcome.node.label}: {outcome}")
        if outcome.state is not SendState.CANCELLED:
            failed = outcome.failed
            for result in failed[:20]:
                print(f"  not sent {result.sop_instance_uid or result.path}: {result.reason}")
            if len(failed) > 20:
                print(f"  ... and {len(failed) - 20} more")
    return {SendState.DONE: 0, SendState.CANCELLED: 130}.get(outcome.state, 1)


def run_send(args: argparse.Namespace) -> int:
    from workstation.cancel import CancelToken
    from workstation.dimse.send import send
    from workstation.store import LocalStore

    by_uid = bool(args.study or args.series)
    if by_uid and args.paths:
        raise InvalidInput("give either files/folders or --study/--series, not both")
    if not by_uid and not args.paths:
        raise InvalidInput("say what to send: files or folders, or --study UID / --series UID")
    if args.store and not by_uid:
        raise InvalidInput(
            "--store goes with --study/--series (files are sent from where they are)"
        )
    settings = settings_mod.load()
    audit.use_store_folder(settings.store_dir)  # loose files are audited in the user's store
    node, aet = resolve_target(args)
    progress = SendProgressLine(sys.stderr.isatty())
    token = CancelToken()
    # Ctrl+C stops after the instance being sent, releases, and still prints what went.
    previous = signal.signal(signal.SIGINT, lambda signum, frame: token.cancel())
    try:
        if by_uid:
            with LocalStore(args.store or settings.store_dir) as store:
                outcome = send(
                    node,
                    store=store,
                    study_uid=args.study,
                    series_uid=args.series,
                    calling_aet=aet,
                    on_progress=progress,
                    cancel=token,
                )
        else:
            outcome = send(node, args.paths, calling_aet=aet, on_progress=progress, cancel=token)
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.close()
    return _print_outcome(outcome, args.json)
