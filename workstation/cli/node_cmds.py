"""``workstation nodes add|list|remove``: the saved remote nodes."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from workstation import settings as settings_mod
from workstation.errors import InvalidInput
from workstation.nodes import RemoteNode, RetrieveMethod


def add_parser(sub: Any, add_common: Callable[[argparse.ArgumentParser], None]) -> None:
    nodes = sub.add_parser("nodes", help="save, list and remove remote nodes")
    add_common(nodes)
    verbs = nodes.add_subparsers(dest="nodes_command", metavar="ACTION", required=True)

    p = verbs.add_parser("add", help="save a node: workstation nodes add NAME AET@HOST:PORT")
    p.add_argument("name")
    p.add_argument("address", help="AET@HOST:PORT")
    p.add_argument("--method", choices=[m.value for m in RetrieveMethod], default="move")
    p.add_argument("--timeout", type=float, default=30.0, help="DIMSE timeout, seconds")
    p.add_argument(
        "--associations",
        type=int,
        default=1,
        metavar="N",
        help="retrieve a study series by series over N associations at once (default 1; "
        "only for a PACS that allows several associations from us)",
    )
    p.set_defaults(func=run_add)

    p = verbs.add_parser("list", help="list saved nodes")
    p.set_defaults(func=run_list)

    p = verbs.add_parser("remove", help="forget a saved node")
    p.add_argument("name")
    p.set_defaults(func=run_remove)


def run_add(args: argparse.Namespace) -> int:
    settings = settings_mod.load()
    node = RemoteNode.parse(
        args.address,
        name=args.name,
        retrieve_method=args.method,
        dimse_timeout=args.timeout,
        retrieve_associations=args.associations,
    )
    settings.nodes[args.name] = node
    path = settings_mod.save(settings)
    print(f"saved {args.name} = {node} ({_method(node)}) in {path}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    settings = settings_mod.load()
    if not settings.nodes:
        print("no nodes saved; add one with: workstation nodes add NAME AET@HOST:PORT")
    for name, node in sorted(settings.nodes.items()):
        print(f"{name:<16} {node!s:<40} {_method(node)}")
    return 0


def _method(node: RemoteNode) -> str:
    lanes = node.retrieve_associations
    return f"{node.retrieve_method}, {lanes} associations" if lanes > 1 else node.retrieve_method


def run_remove(args: argparse.Namespace) -> int:
    settings = settings_mod.load()
    matches = [name for name in settings.nodes if name.lower() == args.name.lower()]
    if not matches:
        raise InvalidInput(f"no node named {args.name!r}")
    del settings.nodes[matches[0]]
    settings_mod.save(settings)
    print(f"removed {matches[0]}")
    return 0
