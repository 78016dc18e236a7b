"""``workstation serve``: the local store as a Query/Retrieve SCP, in the foreground."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from workstation import settings as settings_mod
from workstation.errors import InvalidInput

if TYPE_CHECKING:
    from workstation.nodes import RemoteNode


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"port {value} is not between 1 and 65535")
    return value


def add_parser(sub: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    settings = settings_mod.Settings()
    p = sub.add_parser(
        "serve",
        help="serve the local store to other nodes (Q/R SCP: C-FIND, C-MOVE, C-GET)",
        description="Answer C-ECHO, C-FIND (Patient and Study Root), C-MOVE to saved nodes "
        "and C-GET from the local store, until Ctrl+C. Only the saved nodes and the allowed "
        "callers of the settings may associate, unless --allow or --allow-any say otherwise.",
    )
    add_common(p)
    p.add_argument(
        "--store",
        default=None,
        metavar="DIR",
        help=f"the local store folder (default: {settings.store_dir})",
    )
    p.add_argument(
        "--port",
        type=_port,
        default=None,
        help=f"port to listen on (default: settings, {settings.serve_port})",
    )
    p.add_argument("--aet", default=None, help="our AE title (default: settings, WORKSTATION)")
    p.add_argument("--bind", default=None, help="address to listen on (default: settings, all)")
    who = p.add_mutually_exclusive_group()
    who.add_argument(
        "--allow",
        nargs="+",
        default=None,
        metavar="AET",
        help="accept associations only from these calling AE titles (default: the saved "
        "nodes and the settings' allowed callers)",
    )
    who.add_argument(
        "--allow-any", action="store_true", help="accept associations from any calling AE title"
    )
    from workstation.cli.tls_args import add_server_arguments

    add_server_arguments(p)
    p.set_defaults(func=run_serve)


def _destinations(fallback: settings_mod.Settings) -> Callable[[], Iterable[RemoteNode]]:
    """The saved nodes, read again at each C-MOVE (a node saved meanwhile counts)."""
    log = logging.getLogger("workstation.serve")

    def nodes() -> Iterable[RemoteNode]:
        try:
            return list(settings_mod.load().nodes.values())
        except InvalidInput as exc:
            log.warning("%s; using the nodes saved when serve started", exc)
            return list(fallback.nodes.values())

    return nodes


def run_serve(args: argparse.Namespace) -> int:
    from workstation.cli.tls_args import server_config
    from workstation.serve import QRServer
    from workstation.store import LocalStore

    settings = settings_mod.load()
    if args.allow_any:
        allowed: list[str] | None = None
    elif args.allow is not None:
        allowed = list(args.allow)
    else:
        allowed = settings.serve_callers
    # One line per association and request (no patient data is logged at INFO).
    logging.getLogger("workstation.serve").setLevel(
        logging.DEBUG if args.verbose >= 2 else logging.INFO
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        with LocalStore(args.store or settings.store_dir) as store:
            server = QRServer(
                store,
                ae_title=args.aet or settings.ae_title,
                port=settings.serve_port if args.port is None else args.port,
                bind=args.bind or settings.store_bind,
                destinations=_destinations(settings),
                allowed_callers=allowed,
                tls=server_config(args, settings),
            )
            with server:
                callers = ", ".join(allowed) if allowed is not None else "any AE title"
                print(
                    f"{server} serving {store.root} to {callers}; Ctrl+C to stop",
                    file=sys.stderr,
                    flush=True,
                )
                while not stop.wait(0.5):
                    pass
            print("stopped", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, previous)
    return 0
