"""DICOM TLS (PS3.15 B.9, the BCP 195 profile): the TLS contexts of the associations we open
and accept, the check that private keys stay private, and plain-language TLS errors.

Both sides speak TLS 1.2 or 1.3 only, with the cipher suites BCP 195 (RFC 9325) recommends:
ECDHE or DHE key exchange with AES-GCM or ChaCha20-Poly1305 (TLS 1.3 suites are all of that
kind). A requestor verifies the peer's certificate against the node's CA file or the system's
trust store and, unless the node says otherwise, that it names the host we connect to. An
acceptor presents our certificate and, when asked to, requires and verifies the caller's.

This module is imported only when a node or a server uses TLS (``workstation echo`` on a plain
node loads no ``ssl``).
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
import threading
from dataclasses import dataclass
from typing import Any

from workstation.errors import InvalidInput

log = logging.getLogger(__name__)

#: BCP 195's recommended TLS 1.2 suites (TLS 1.3 ones are configured by OpenSSL and all fit).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"
#: The usual port of DICOM over TLS (PS3.15 B.9: "dicom-tls", 2762).
DICOM_TLS_PORT = 2762

_warned_keys: set[str] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class TlsServerConfig:
    """What our SCP presents: certificate and key (PEM), and whom it trusts for client
    certificates (``ca``; empty: the system's trust store) when ``require_client_cert``."""

    cert: str
    key: str
    ca: str = ""
    require_client_cert: bool = False

    def context(self) -> ssl.SSLContext:
        return server_context(self.cert, self.key, self.ca, self.require_client_cert)


def key_warning(path: str) -> str | None:
    """A warning when the private key file ``path`` is readable by its group or by others."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        return (
            f"the private key {path} is readable by other users of this computer: "
            f"make it private with chmod 600 {path}"
        )
    return None


def warn_key(path: str) -> None:
    """Log :func:`key_warning` once per key file and process."""
    warning = key_warning(path)
    if warning is None:
        return
    with _warned_lock:
        if path in _warned_keys:
            return
        _warned_keys.add(path)
    log.warning("%s", warning)


def _harden(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def _load_chain(context: ssl.SSLContext, cert: str, key: str, whose: str) -> None:
    if bool(cert) != bool(key):
        missing = "key" if cert else "certificate"
        raise InvalidInput(f"{whose} TLS certificate needs its private key and the reverse: "
                           f"give the {missing} file too")  # fmt: skip
    if not cert:
        return
    for path in (cert, key):
        if not os.path.isfile(path):
            raise InvalidInput(f"{whose} TLS file {path} does not exist")
    warn_key(key)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        why = "the key does not match the certificate" if "KEY_VALUES_MISMATCH" in str(exc) else (
            exc.reason or str(exc))  # fmt: skip
        raise InvalidInput(
            f"cannot use {whose} TLS certificate {cert} with key {key}: {why} "
            "(both must be PEM files, the key without a passphrase)"
        ) from None


def _load_ca(context: ssl.SSLContext, ca: str) -> None:
    if not os.path.isfile(ca):
        raise InvalidInput(f"the TLS CA file {ca} does not exist")
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise InvalidInput(
            f"cannot read the TLS CA file {ca} ({exc.reason or exc}): it must hold PEM certificates"
        ) from None


def client_context(
    ca: str = "", cert: str = "", key: str = "", verify_host: bool = True
) -> ssl.SSLContext:
    """The context of an association we request: the peer verified against ``ca`` (a PEM
    file; empty: the system's trust store), our certificate when ``cert``/``key`` are given."""
    context = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    context.check_hostname = verify_host
    context.verify_mode = ssl.CERT_REQUIRED
    if ca:
        _load_ca(context, ca)
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    _load_chain(context, cert, key, "our")
    return context


class _LazyHandshake(ssl.SSLContext):
    """A server context whose sockets shake hands on their first read, not when wrapped:
    pynetdicom wraps each accepted socket in its accept loop, which one silent client would
    otherwise hold up; the association's own thread then does the handshake."""

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["do_handshake_on_connect"] = False
        return super().wrap_socket(sock, *args, **kwargs)


def server_context(
    cert: str, key: str, ca: str = "", require_client_cert: bool = False
) -> ssl.SSLContext:
    """The context of an SCP of ours: our certificate and key; with ``require_client_cert``
    a caller must present a certificate signed by ``ca`` (empty: the system's trust store)."""
    if not cert or not key:
        raise InvalidInput(
            "a TLS server needs our certificate and private key: give both (--tls-cert FILE "
            "--tls-key FILE, or the Local AE settings)"
        )
    context = _harden(_LazyHandshake(ssl.PROTOCOL_TLS_SERVER))
    _load_chain(context, cert, key, "our")
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        if ca:
            _load_ca(context, ca)
        else:
            context.load_default_certs(ssl.Purpose.CLIENT_AUTH)
    elif ca:  # a caller's certificate, when it sends one, is checked against the CA
        context.verify_mode = ssl.CERT_OPTIONAL
        _load_ca(context, ca)
    return context


# -- plain-language errors ------------------------------------------------------------------

_UNTRUSTED = {2, 18, 19, 20, 21, 27, 28}  # X509_V_ERR_*: unknown issuer, self-signed...
_NOT_TLS = (
    "WRONG_VERSION_NUMBER",
    "UNEXPECTED_EOF",
    "RECORD_LAYER_FAILURE",
    "PACKET_LENGTH_TOO_LONG",
    "UNKNOWN_PROTOCOL",
    "HTTP_REQUEST",
    "EOF occurred",
)
_WANTS_CERT = ("CERTIFICATE_REQUIRED", "PEER_DID_NOT_RETURN_A_CERTIFICATE")


def _reason(exc: BaseException) -> str:
    return f"{getattr(exc, 'reason', '') or ''} {exc}"


def describe_client_error(exc: BaseException, peer: str, host: str, port: int,
                          *, have_cert: bool) -> str:  # fmt: skip
    """One line saying why TLS with ``peer`` failed, and what to do about it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = exc.verify_code
        if code == 10:
            return (
                f"the TLS certificate of {peer} has expired: its administrator must renew it "
                "(check the clocks of both computers too)"
            )
        if code == 9:
            return (
                f"the TLS certificate of {peer} is not valid yet: check the clocks of both "
                "computers"
            )
        if code in _UNTRUSTED:
            return (
                f"the TLS certificate of {peer} is not trusted (unknown CA: "
                f"{exc.verify_message}): give the certificate of the CA that signed it as "
                "the node's TLS CA file (--tls-ca FILE)"
            )
        if code in (62, 64):  # host name or IP address mismatch
            return (
                f"the TLS certificate of {peer} is not for {host!r} (host name mismatch): "
                "connect with a name or address the certificate lists, or turn off the host "
                "name check for this node (--tls-no-verify-host)"
            )
        return f"the TLS certificate of {peer} cannot be verified: {exc.verify_message}"
    text = _reason(exc)
    if any(word in text for word in _WANTS_CERT) or ("HANDSHAKE_FAILURE" in text and not have_cert):
        return (
            f"{peer} wants a client certificate: give ours in the node's TLS settings "
            "(--tls-cert FILE --tls-key FILE)"
        )
    if "CERTIFICATE_EXPIRED" in text:
        return f"{peer} refused our TLS client certificate: it has expired; renew it"
    if any(word in text for word in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        return (
            f"{peer} does not trust our TLS client certificate (unknown CA): have its "
            "administrator trust the CA that signed ours"
        )
    if "PROTOCOL_VERSION" in text or "UNSUPPORTED_PROTOCOL" in text:
        return (
            f"{peer} speaks only TLS older than 1.2, which is no longer safe (BCP 195): "
            "upgrade its TLS settings"
        )
    if "NO_SHARED_CIPHER" in text or "HANDSHAKE_FAILURE" in text:
        return (
            f"{peer} refused the TLS handshake (no cipher suite in common with BCP 195's, or "
            "it does not accept our certificate)"
        )
    if any(word in text for word in _NOT_TLS) or isinstance(
        exc, ssl.SSLEOFError | ConnectionError | EOFError
    ):
        return (
            f"{peer} does not speak TLS on port {port} (it answered our TLS handshake with "
            "plain DICOM, or hung up): turn TLS off for this node, or use its TLS port"
        )
    if isinstance(exc, TimeoutError):
        return f"{peer} did not complete the TLS handshake in time: check that it is a TLS port"
    return f"TLS with {peer} failed: {exc}"


def describe_server_error(exc: BaseException) -> str:
    """Why a caller's TLS handshake with our SCP failed, in a few words for the log."""
    text = _reason(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == 10:
            return "its client certificate has expired"
        if exc.verify_code in _UNTRUSTED:
            return "its client certificate is not signed by a CA we trust (unknown CA)"
        return f"its client certificate cannot be verified ({exc.verify_message})"
    if any(word in text for word in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "CERTIFICATE_REQUIRED")):
        return "it sent no client certificate, and we require one"
    if any(word in text for word in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        return (
            "it does not accept our certificate (a CA it does not trust, or not the name it "
            "expects): give it our CA certificate, or check the name it connects with"
        )
    if "CERTIFICATE_EXPIRED" in text:
        return "it says our certificate has expired: renew it"
    if "UNSUPPORTED_PROTOCOL" in text or "VERSION" in text:
        return "it offers only TLS older than 1.2 (not allowed by BCP 195)"
    if "NO_SHARED_CIPHER" in text:
        return "it offers no cipher suite BCP 195 allows"
    if isinstance(exc, TimeoutError):
        return "it did not complete the handshake in time"
    return str(exc)


def looks_like_tls(first: bytes) -> bool:
    """Whether the first bytes of a connection are a TLS record (handshake or alert), not a
    DICOM PDU (types 0x01 to 0x07)."""
    return len(first) >= 1 and first[0] in (0x15, 0x16) and (len(first) < 2 or first[1] == 3)


_contexts: dict[tuple[object, ...], ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def _stamp(path: str) -> float:
    try:
        return os.stat(path).st_mtime if path else 0.0
    except OSError:
        return -1.0


def node_context(node: Any) -> ssl.SSLContext:
    """The client context for a TLS node (a :class:`~workstation.nodes.RemoteNode`), built
    once per CA/certificate/key files (and their modification times) and reused."""
    files = (node.tls_ca, node.tls_cert, node.tls_key)
    key = (*files, node.tls_verify_host, *(_stamp(path) for path in files))
    with _contexts_lock:
        context = _contexts.get(key)
    if context is None:
        context = client_context(node.tls_ca, node.tls_cert, node.tls_key, node.tls_verify_host)
        with _contexts_lock:
            _contexts[key] = context
    return context


def describe_closed_after_handshake(peer: str, *, have_cert: bool) -> str:
    """Why a peer that completed the TLS handshake hung up before answering our association
    request: with TLS 1.3 a refused client certificate shows only then, as a closed
    connection (the alert may not arrive before it)."""
    if not have_cert:
        return (
            f"{peer} closed the TLS connection before answering: it most likely wants a client "
            "certificate: give ours in the node's TLS settings (--tls-cert FILE --tls-key FILE)"
        )
    return (
        f"{peer} closed the TLS connection before answering: it most likely does not accept "
        "our client certificate (a CA it does not trust, or expired)"
    )
