"""``workstation nodes add|list|remove``: the saved remote nodes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from workstation import settings as settings_mod
from workstation.cli.argtypes import seconds
from workstation.errors import InvalidInput
from workstation.nodes import (
    CHARSETS,
    DEFAULT_DIMSE_TIMEOUT,
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
    p.add_argument(
        "address", help="AET@HOST:PORT, or a DICOMweb service URL http(s)://HOST[:PORT]/PATH"
    )
    web = p.add_argument_group("DICOMweb nodes (a URL as the address)")
    web.add_argument("--user", default=None, help="the user name for HTTP Basic authentication")
    web.add_argument(
        "--password-file",
        default=None,
        metavar="FILE",
        help="read the Basic password from the first line of FILE (- for standard input); it "
        "is kept in a file of the config folder only you can read, not in the settings",
    )
    web.add_argument(
        "--token-file",
        default=None,
        metavar="FILE",
        help="read a Bearer token from the first line of FILE (- for standard input); kept "
        "like a password",
    )
    web.add_argument(
        "--no-auth", action="store_true", help="no authentication (forget a saved one)"
    )
    p.add_argument(
        "--method", choices=[m.value for m in RetrieveMethod], default=None, help="default move"
    )
    p.add_argument(
        "--timeout",
        type=seconds,
        default=None,
        help=f"DIMSE timeout, seconds (default {DEFAULT_DIMSE_TIMEOUT:g})",
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
    from workstation.cli.tls_args import add_client_arguments

    add_client_arguments(p)
    p.add_argument(
        "--no-tls", dest="tls", action="store_false", help="plain DICOM (no TLS) to the node"
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
        **_tls_given(args),
    }
    web, secret = _web_given(args, saved)
    given.update(web)
    options = {key: value for key, value in given.items() if value is not None}
    if saved is not None:  # an update: what is not given stays as saved
        kept = {key: getattr(saved, key) for key in given if key not in options}
        if saved.is_web != ("://" in args.address):
            kept.pop("retrieve_method", None)  # a DIMSE node became a DICOMweb one or back
        options = {"connect_timeout": saved.connect_timeout, **kept, **options}
    node = RemoteNode.parse(args.address, name=args.name, **options)
    settings.nodes[args.name] = node
    path = settings_mod.save(settings)
    print(f"saved {args.name} = {node} ({_describe(node)}) in {path}")
    if node.is_web:
        from workstation.dicomweb import credentials

        if secret:
            where = credentials.save_secret(args.name, secret)
            print(f"the {'token' if node.auth == 'bearer' else 'password'} is kept in {where}")
        elif not node.auth:
            credentials.forget(args.name)
    if node.tls_key:
        from workstation.dimse.tls import key_warning

        warning = key_warning(node.tls_key)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    return 0


def _web_given(args: argparse.Namespace, saved: RemoteNode | None) -> tuple[dict[str, object], str]:
    """The DICOMweb options given (None: not given) and the secret read from its file."""
    from workstation.dicomweb.credentials import read_secret_file

    if "://" not in args.address:
        if args.user or args.password_file or args.token_file:
            raise InvalidInput("--user, --password-file and --token-file are for DICOMweb URLs")
        return {}, ""
    if args.password_file and args.token_file:
        raise InvalidInput("give --password-file (Basic) or --token-file (Bearer), not both")
    if args.no_auth:
        return {"auth": "", "username": ""}, ""
    if args.token_file:
        return {"auth": "bearer", "username": ""}, read_secret_file(args.token_file)
    if args.user or args.password_file:
        user = args.user or (saved.username if saved is not None else "")
        if not user:
            raise InvalidInput("a password needs a user name: add --user NAME")
        secret = read_secret_file(args.password_file) if args.password_file else ""
        return {"auth": "basic", "username": user}, secret
    return {"auth": None, "username": None}, ""


def _tls_given(args: argparse.Namespace) -> dict[str, object]:
    """The TLS options given to ``nodes add`` (None: not given); ``--no-tls`` turns TLS off."""
    from workstation.cli.tls_args import client_options

    keys = ("tls", "tls_ca", "tls_cert", "tls_key", "tls_verify_host")
    given = client_options(args)
    if args.tls is False:
        given["tls"] = False
    return {key: given.get(key) for key in keys}


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
    if node.auth == "basic":
        parts.append(f"Basic authentication as {node.username}")
    elif node.auth == "bearer":
        parts.append("Bearer token")
    if node.retrieve_associations > 1:
        parts.append(f"{node.retrieve_associations} associations")
    if node.charset != DEFAULT_CHARSET:
        parts.append(charset_label(node.charset))
    if not node.uid_lists:
        parts.append("one UID per request")
    if node.tls:
        parts.append("TLS" + ("" if node.tls_verify_host else " (host not checked)"))
    return ", ".join(parts)


def run_remove(args: argparse.Namespace) -> int:
    settings = settings_mod.load()
    matches = [name for name in settings.nodes if name.lower() == args.name.lower()]
    if not matches:
        raise InvalidInput(f"no node named {args.name!r}")
    removed = settings.nodes.pop(matches[0])
    settings_mod.save(settings)
    if removed.is_web:
        from workstation.dicomweb import credentials

        credentials.forget(matches[0])
    print(f"removed {matches[0]}")
    return 0
