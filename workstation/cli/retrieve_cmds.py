"""``workstation move``, ``workstation get`` and ``workstation store-scp``."""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from workstation import settings as settings_mod
from workstation.cli.argtypes import seconds
from workstation.cli.query_cmds import add_query_arguments, build_query, resolve_target
from workstation.errors import InvalidInput

if TYPE_CHECKING:
    from workstation.dimse.outcome import RetrieveOutcome, RetrieveProgress
    from workstation.dimse.tls import TlsServerConfig
    from workstation.nodes import RemoteNode
    from workstation.store import StoredInstance


def _add_store_arguments(parser: argparse.ArgumentParser, settings: settings_mod.Settings) -> None:
    parser.add_argument(
        "--store",
        default=None,
        metavar="DIR",
        help=f"the local store folder (default: {settings.store_dir})",
    )


def add_retrieve_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    settings = settings_mod.Settings()
    add_query_arguments(parser, worklist=False)
    _add_store_arguments(parser, settings)
    if verb == "move":
        parser.add_argument(
            "--port",
            type=int,
            default=None,
            help=f"port of our storage SCP, the move destination (default {settings.store_port})",
        )
        parser.add_argument(
            "--bind",
            default=None,
            help="address our storage SCP listens on (default: loopback when the PACS is on "
            "this machine, else all)",
        )
    parser.add_argument(
        "--associations",
        type=int,
        default=None,
        metavar="N",
        help="retrieve series by series over N associations at once (default: the node's, 1)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=seconds,
        default=None,
        metavar="S",
        help="give up after S seconds without a response or an instance "
        f"(default {settings.retrieve_idle_timeout:g})",
    )
    parser.add_argument(
        "--total-timeout",
        type=seconds,
        default=None,
        metavar="S",
        help="give up after S seconds in all (default: no limit)",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help=f"{verb} everything the PACS holds (needed when no -q and no query file narrow it)",
    )
    parser.add_argument(
        "--only-missing",
        action="store_true",
        help="leave out instances the local store already holds (resume an interrupted one)",
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip the C-FIND listing (no completion check; the query must hold the UIDs)",
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")


def add_store_scp_arguments(parser: argparse.ArgumentParser) -> None:
    settings = settings_mod.Settings()
    _add_store_arguments(parser, settings)
    parser.add_argument("--aet", default=None, help=f"our AE title (default {settings.ae_title})")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port to listen on (default {settings.store_port})",
    )
    parser.add_argument("--bind", default=None, help="address to listen on (default: all)")
    parser.add_argument(
        "--allow",
        nargs="+",
        default=None,
        metavar="AET",
        help="accept associations only from these calling AE titles",
    )
    parser.add_argument(
        "--batched-sync",
        action="store_true",
        help="answer each C-STORE once the file is complete on disk and fsync in batches: "
        "faster, but a power cut may lose the last instances a sender was told are stored "
        "(default: fsync each instance before answering)",
    )
    from workstation.cli.tls_args import add_server_arguments

    add_server_arguments(parser)


class ProgressLine:
    """A live progress line on stderr, repainted at most ten times a second."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = 0.0
        self.lock = threading.Lock()
        self.shown = False

    def __call__(self, progress: RetrieveProgress) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.1:
            return
        with self.lock:
            self.last = now
            total = progress.expected if progress.expected is not None else "?"
            fraction = progress.fraction
            pct = f"{fraction * 100:5.1f}%" if fraction is not None else "    ?"
            counters = ""
            if progress.remaining is not None:
                counters = (
                    f"  pacs: {progress.completed} done, {progress.remaining} left, "
                    f"{progress.failed or 0} failed"
                )
            sys.stderr.write(
                f"\r{pct}  {progress.received}/{total} instances  "
                f"{progress.megabytes_per_second:5.1f} MB/s{counters}\x1b[K"
            )
            sys.stderr.flush()
            self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _print_outcome(outcome: RetrieveOutcome, as_json: bool) -> int:
    from workstation.dimse.outcome import RetrieveState

    if as_json:
        print(json.dumps(outcome.to_json(), indent=2))
    else:
        print(f"{outcome.node}: {outcome}")
        if outcome.received:  # a list helps when some arrived; when none did, the cause does
            for uid in outcome.missing[:20]:
                print(f"  missing {uid}")
            if len(outcome.missing) > 20:
                print(f"  ... and {len(outcome.missing) - 20} more")
    return {RetrieveState.DONE: 0, RetrieveState.CANCELLED: 130}.get(outcome.state, 1)


def run_retrieve(args: argparse.Namespace) -> int:
    from workstation.cancel import CancelToken
    from workstation.dimse.retrieve import get, move
    from workstation.dimse.storage import StorageServer
    from workstation.nodes import LocalAE
    from workstation.store import LocalStore

    settings = settings_mod.load()
    node, aet = resolve_target(args)
    if args.associations is not None:
        node = node.with_options(retrieve_associations=args.associations)
    query = build_query(args)
    if not args.all and not query.matching_keys():
        raise InvalidInput(
            f"{args.verb} needs -q to say what to retrieve (or --all for everything the PACS holds)"
        )
    progress = ProgressLine(sys.stderr.isatty())
    token = CancelToken()
    options = dict(
        on_progress=progress,
        cancel=token,
        idle_timeout=args.idle_timeout or settings.retrieve_idle_timeout,
        total_timeout=args.total_timeout,
        check=not args.no_check,
        only_missing=args.only_missing,
    )
    # Ctrl+C cancels the retrieve (C-CANCEL, then abort) and still prints what arrived.
    previous = signal.signal(signal.SIGINT, lambda signum, frame: token.cancel())
    try:
        with LocalStore(args.store or settings.store_dir) as store:
            if args.verb == "get":
                outcome = get(node, query, store, calling_aet=aet, **options)
            else:
                local = LocalAE(
                    args.aet or settings.ae_title,
                    settings.store_port if args.port is None else args.port,
                    args.bind or _bind_towards(node.host, settings.store_bind),
                )
                # The move's sub-operations come from the PACS: accept it and the callers the
                # user configured, nobody else.
                allowed = [node.ae_title, *settings.allowed_callers]
                tls = _move_scp_tls(node, settings)
                with StorageServer(local, store, allowed_callers=allowed, tls=tls) as scp:
                    outcome = move(node, query, scp, **options)
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.close()
    if outcome.uid_list_refused:
        for name in settings_mod.remember_no_uid_lists(node):
            print(
                f"{name}: saved as a node that takes one UID per request "
                f"(undo with: workstation nodes add {name} {node} --uid-lists)",
                file=sys.stderr,
            )
    return _print_outcome(outcome, args.json)


def _move_scp_tls(node: RemoteNode, settings: settings_mod.Settings) -> TlsServerConfig | None:
    """The TLS of a move's storage SCP: the Local AE settings' when they turn it on; else, for
    a move over TLS, our client certificate serves the SCP too (as DCMTK movescu +tls does),
    so the PACS may send the instances over TLS; else plain DICOM."""
    configured = settings.scp_tls_config
    if configured is not None or not node.tls or not node.tls_cert:
        return configured
    from workstation.dimse.tls import TlsServerConfig

    return TlsServerConfig(node.tls_cert, node.tls_key, node.tls_ca)


def _bind_towards(host: str, configured: str) -> str:
    """Where a move's storage SCP listens: the configured address, except that the default
    (every interface) becomes loopback when the PACS is on this machine."""
    if configured not in ("", "0.0.0.0", "::"):
        return configured
    try:
        if ipaddress.ip_address(host).is_loopback:
            return "127.0.0.1" if ":" not in host else "::1"
    except ValueError:
        if host == "localhost":
            return "127.0.0.1"
    return configured or "0.0.0.0"


def run_store_scp(args: argparse.Namespace) -> int:
    from workstation.cli.tls_args import server_config
    from workstation.dimse.storage import StorageServer
    from workstation.nodes import LocalAE
    from workstation.store import LocalStore

    settings = settings_mod.load()
    local = LocalAE(
        args.aet or settings.ae_title,
        settings.store_port if args.port is None else args.port,
        args.bind or settings.store_bind,
    )
    allowed = args.allow if args.allow is not None else settings.allowed_callers
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())

    def report(stored: StoredInstance) -> None:
        if stored.conflict is not None:
            print(
                f"kept {stored.sop_instance_uid} as stored: the copy received differs, set "
                f"aside as {stored.conflict}",
                flush=True,
            )
            return
        note = " (already stored)" if stored.duplicate else ""
        print(f"stored {stored.sop_instance_uid} ({stored.size} bytes){note}", flush=True)

    try:
        with (
            LocalStore(args.store or settings.store_dir) as store,
            StorageServer(
                local,
                store,
                allowed_callers=allowed,
                batched_sync=args.batched_sync,
                tls=server_config(args, settings),
            ) as scp,
        ):
            scp.subscribe(report)
            callers = ", ".join(allowed) if allowed else "any AE title"
            print(
                f"{scp} listening, storing into {store.root}, accepting {callers}; Ctrl+C to stop",
                file=sys.stderr,
                flush=True,
            )
            while not stop.wait(0.5):
                pass
            print(f"stopped after {scp.received} instances", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, previous)
    return 0
