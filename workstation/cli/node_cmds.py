"""``workstation nodes add|list|remove``: the saved remote nodes."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from workstation import settings as settings_mod
from workstation.cli.argtypes import seconds
from workstation.errors import InvalidInput
from workstation.nodes import (
    CHARSETS,
    RemoteNode,
    RetrieveMethod,
    charset_label,
    validate_charset,
)

DEFAULT_CHARSET = CHARSETS[0]


def add_parser(sub: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    nodes = sub.add_parser("nodes", help="save, list and remove remote nodes")
    add_common(nodes)
    verbs = nodes.add_subparsers(dest="nodes_command", metavar="ACTION", required=True)

    p = verbs.add_parser(
        "add",
        help="save a node: workstation nodes add NAME AET@HOST:PORT",
        description="Save a node. Adding a name already saved updates it: the options not "
        "given keep their saved values.",
    )
    p.add_argument("name")
    p.add_argument("address", help="AET@HOST:PORT")
    p.add_argument(
        "--method", choices=[m.value for m in RetrieveMethod], default=None, help="default move"
    )
    p.add_argument(
        "--timeout", type=seconds, default=None, help="DIMSE timeout, seconds (default 30)"
    )
    p.add_argument(
        "--associations",
        type=int,
        default=None,
        metavar="N",
        help="retrieve a study series by series over N associations at once (default 1; "
        "only for a PACS that allows several associations from us)",
    )
    p.add_argument(
        "--charset",
        type=_charset,
        default=None,
        metavar="TERM",
        help="the character set a query with non-ASCII text is sent in (default "
        '"ISO_IR 192", UTF-8; "ISO_IR 100" for a PACS that holds Latin-1 names); one of '
        + ", ".join(CHARSETS),
    )
    p.add_argument(
        "--uid-lists",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether a retrieve may name several UIDs in one request (default yes; "
        "--no-uid-lists sends one request per study, series or instance, for a PACS that "
        "refuses lists: a retrieve that sees a list refused remembers it by itself)",
    )
    p.set_defaults(func=run_add)

    p = verbs.add_parser("list", help="list saved nodes")
    p.set_defaults(func=run_list)

    p = verbs.add_parser("remove", help="forget a saved node")
    p.add_argument("name")
    p.set_defaults(func=run_remove)


def _charset(text: str) -> str:
    try:
        return validate_charset(text)
    except InvalidInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_add(args: argparse.Namespace) -> int:
    settings = settings_mod.load()
    saved = settings.nodes.get(args.name)
    given = {
        "retrieve_method": args.method,
        "dimse_timeout": args.timeout,
        "retrieve_associations": args.associations,
        "charset": args.charset,
        "uid_lists": args.uid_lists,
    }
    options = {key: value for key, value in given.items() if value is not None}
    if saved is not None:  # an update: what is not given stays as saved
        kept = {key: getattr(saved, key) for key in given if key not in options}
        options = {"connect_timeout": saved.connect_timeout, **kept, **options}
    node = RemoteNode.parse(args.address, name=args.name, **options)
    settings.nodes[args.name] = node
    path = settings_mod.save(settings)
    print(f"saved {args.name} = {node} ({_describe(node)}) in {path}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    settings = settings_mod.load()
    if not settings.nodes:
        print("no nodes saved; add one with: workstation nodes add NAME AET@HOST:PORT")
    for name, node in sorted(settings.nodes.items()):
        print(f"{name:<16} {node!s:<40} {_describe(node)}")
    return 0


def _describe(node: RemoteNode) -> str:
    """``move``, then what differs from the defaults: ``get, 4 associations, ISO_IR 100
    (Latin-1)``."""
    parts = [str(node.retrieve_method)]
    if node.retrieve_associations > 1:
        parts.append(f"{node.retrieve_associations} associations")
    if node.charset != DEFAULT_CHARSET:
        parts.append(charset_label(node.charset))
    if not node.uid_lists:
        parts.append("one UID per request")
    return ", ".join(parts)


def run_remove(args: argparse.Namespace) -> int:
    settings = settings_mod.load()
    matches = [name for name in settings.nodes if name.lower() == args.name.lower()]
    if not matches:
        raise InvalidInput(f"no node named {args.name!r}")
    del settings.nodes[matches[0]]
    settings_mod.save(settings)
    print(f"removed {matches[0]}")
    return 0
