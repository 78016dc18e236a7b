"""DICOM TLS options of the commands, in the spirit of DCMTK's ``+tls``.

Requestors (echo, find, move, get, send, nodes add): ``--tls``, ``--tls-ca FILE``,
``--tls-cert FILE --tls-key FILE`` (our client certificate) and ``--tls-no-verify-host``.
Servers (store-scp, serve): ``--tls-cert FILE --tls-key FILE [--tls-ca FILE
--tls-require-client-cert]``. Parsing imports no ``ssl``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from workstation.errors import InvalidInput

if TYPE_CHECKING:
    from workstation.dimse.tls import TlsServerConfig
    from workstation.nodes import RemoteNode
    from workstation.settings import Settings


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("DICOM TLS (PS3.15 B.9)")
    group.add_argument(
        "--tls",
        action="store_true",
        default=None,
        help="speak DICOM over TLS (1.2 or later, BCP 195 ciphers) to the node",
    )
    group.add_argument(
        "--tls-ca",
        metavar="FILE",
        default=None,
        help="PEM file of the CA that signed the node's certificate (default: the system's)",
    )
    group.add_argument(
        "--tls-cert", metavar="FILE", default=None, help="our client certificate (PEM)"
    )
    group.add_argument(
        "--tls-key", metavar="FILE", default=None, help="the private key of --tls-cert (PEM)"
    )
    group.add_argument(
        "--tls-no-verify-host",
        action="store_true",
        default=None,
        help="do not check that the node's certificate names its host",
    )


def client_options(args: argparse.Namespace) -> dict[str, object]:
    """The node options the TLS arguments give (those not given are left out); any of them
    turns TLS on."""
    given = {
        "tls_ca": getattr(args, "tls_ca", None),
        "tls_cert": getattr(args, "tls_cert", None),
        "tls_key": getattr(args, "tls_key", None),
    }
    options: dict[str, object] = {key: value for key, value in given.items() if value is not None}
    if getattr(args, "tls_no_verify_host", None):
        options["tls_verify_host"] = False
    if getattr(args, "tls", None) or options:
        options["tls"] = True
    return options


def apply_client(node: RemoteNode, args: argparse.Namespace) -> RemoteNode:
    """``node`` with the command line's TLS options on top of its saved ones."""
    options = client_options(args)
    if not options:
        return node
    if ("tls_cert" in options) != ("tls_key" in options) and not node.tls_cert:
        raise InvalidInput("--tls-cert and --tls-key go together: give both")
    return node.with_options(**options)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("DICOM TLS (PS3.15 B.9)")
    group.add_argument(
        "--tls-cert",
        metavar="FILE",
        default=None,
        help="listen with DICOM TLS, presenting this certificate (PEM; default: the Local AE "
        "settings)",
    )
    group.add_argument(
        "--tls-key", metavar="FILE", default=None, help="the private key of --tls-cert (PEM)"
    )
    group.add_argument(
        "--tls-ca",
        metavar="FILE",
        default=None,
        help="PEM file of the CA whose client certificates we accept",
    )
    group.add_argument(
        "--tls-require-client-cert",
        action="store_true",
        help="refuse callers without a client certificate signed by --tls-ca",
    )


def server_config(args: argparse.Namespace, settings: Settings) -> TlsServerConfig | None:
    """Our SCP's TLS: the command line's when it gives a certificate, else the settings'."""
    from workstation.dimse.tls import TlsServerConfig

    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise InvalidInput("--tls-cert and --tls-key go together: give both")
        return TlsServerConfig(
            args.tls_cert, args.tls_key, args.tls_ca or "", args.tls_require_client_cert
        )
    if args.tls_ca or args.tls_require_client_cert:
        raise InvalidInput(
            "--tls-ca and --tls-require-client-cert need our certificate: add --tls-cert FILE "
            "--tls-key FILE"
        )
    return settings.scp_tls_config
