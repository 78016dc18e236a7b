"""Argument parsing and dispatch for the ``workstation`` command.

Exit codes: 0 success, 1 failure (one line on stderr says what to do), 2 bad usage (an
option, a selector, a query file or a store folder that cannot be used), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from workstation.cli.argtypes import seconds
from workstation.errors import InvalidInput, WorkstationError
from workstation.resources import version_line

log = logging.getLogger("workstation")

Command = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (the usage itself is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for DIMSE detail)"
    )


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="AET@HOST:PORT, or the name of a saved node")
    parser.add_argument(
        "--aet", default=None, help="our calling AE title (default: settings, WORKSTATION)"
    )
    parser.add_argument(
        "--timeout", type=seconds, default=None, help="seconds to wait for each response"
    )
    from workstation.cli.tls_args import add_client_arguments

    add_client_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    from workstation.cli import (
        audit_cmds,
        io_cmds,
        node_cmds,
        query_cmds,
        retrieve_cmds,
        send_cmds,
        serve_cmds,
    )

    parser = _Parser(
        prog="workstation",
        description="DICOM Query/Retrieve workstation. Without a command, opens the window.",
    )
    parser.add_argument(
        "--demo", action="store_true", help="open the window on the built-in demo archive"
    )
    parser.add_argument("--version", action="version", version=version_line())
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("echo", help="verify a node answers (C-ECHO)")
    _add_target(p)
    _add_common(p)
    p.set_defaults(func=query_cmds.run_echo)

    p = sub.add_parser("find", help="query a node (C-FIND), like findscu")
    _add_target(p)
    _add_common(p)
    query_cmds.add_find_arguments(p)
    p.set_defaults(func=query_cmds.run_find)

    for verb in ("move", "get"):
        p = sub.add_parser(
            verb,
            help="retrieve into the local store ("
            + ("C-MOVE to our storage SCP" if verb == "move" else "C-GET on one association")
            + ")",
        )
        _add_target(p)
        _add_common(p)
        retrieve_cmds.add_retrieve_arguments(p, verb)
        p.set_defaults(func=retrieve_cmds.run_retrieve, verb=verb)

    p = sub.add_parser("store-scp", help="run our storage SCP in the foreground")
    _add_common(p)
    retrieve_cmds.add_store_scp_arguments(p)
    p.set_defaults(func=retrieve_cmds.run_store_scp)

    p = sub.add_parser("send", help="send files, or studies/series of the local store (C-STORE)")
    _add_target(p)
    _add_common(p)
    send_cmds.add_send_arguments(p)
    p.set_defaults(func=send_cmds.run_send)

    node_cmds.add_parser(sub, _add_common)
    serve_cmds.add_parser(sub, _add_common)
    io_cmds.add_parsers(sub, _add_common)
    audit_cmds.add_parser(sub, _add_common)
    return parser


def configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # pynetdicom logs each association at INFO; keep it quiet unless asked for DIMSE detail.
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if verbosity >= 2 else logging.CRITICAL)
    # pydicom warns (and logs) about each invalid value a peer sends: one short line, limited.
    from workstation.logs import tame_warnings

    tame_warnings()
    if verbosity >= 2:
        from workstation.dimse.pynetdicom_ae import verbose_dimse_logging

        verbose_dimse_logging()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if args.command is None:
        from workstation.ui.app import run_app

        return run_app(demo=args.demo)
    func: Command = args.func
    try:
        return func(args)
    except InvalidInput as exc:  # bad usage: a selector, a query file, a store folder...
        print(f"workstation {args.command}: {exc}", file=sys.stderr)
        return 2
    except WorkstationError as exc:
        print(f"workstation {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"workstation {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `workstation find ... | head`
        sys.stderr.close()
        return 0
