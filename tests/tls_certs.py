"""Throwaway certificates for the DICOM TLS tests, made with the ``openssl`` command line.

:func:`make_certificates` writes into a folder: a CA (``ca.pem``), a server certificate for
127.0.0.1 and localhost, a client certificate, an expired server certificate, one for another
host name, and one signed by a CA nobody trusts. Keys are RSA 2048 (what DCMTK's default TLS
profile expects), without passphrase, readable only by their owner.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

_SERVER_EXT = (
    "basicConstraints=CA:FALSE\n"
    "keyUsage=digitalSignature,keyEncipherment\n"
    "extendedKeyUsage=serverAuth,clientAuth\n"
    "subjectAltName={san}\n"
)


@dataclass(frozen=True)
class Pair:
    cert: str
    key: str


@dataclass(frozen=True)
class Certificates:
    folder: Path
    ca: str
    server: Pair
    client: Pair
    expired: Pair
    wrong_host: Pair
    untrusted: Pair
    #: the CA that signed ``untrusted``
    other_ca: str


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def _ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
        "-days", "30", "-subj", f"/CN=Workstation test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    os.chmod(key, 0o600)
    return cert, key


def _issue(folder: Path, name: str, ca: tuple[Path, Path], *, san: str, days: int = 30) -> Pair:
    cert, key, csr = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    ext.write_text(_SERVER_EXT.format(san=san))
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
        "-subj", f"/CN={name}",
    )  # fmt: skip
    os.chmod(key, 0o600)
    # -days -1: valid from now until yesterday, i.e. expired
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-days", str(days), "-extfile", ext, "-out", cert,
    )  # fmt: skip
    return Pair(str(cert), str(key))


def make_certificates(folder: Path) -> Certificates:
    folder.mkdir(parents=True, exist_ok=True)
    ca = _ca(folder, "ca")
    other = _ca(folder, "other-ca")
    local = "IP:127.0.0.1,DNS:localhost"
    return Certificates(
        folder=folder,
        ca=str(ca[0]),
        server=_issue(folder, "server", ca, san=local),
        client=_issue(folder, "client", ca, san="DNS:workstation-client"),
        expired=_issue(folder, "expired", ca, san=local, days=-1),
        wrong_host=_issue(folder, "wrong-host", ca, san="DNS:pacs.example.org"),
        untrusted=_issue(folder, "untrusted", other, san=local),
        other_ca=str(other[0]),
    )
