"""One HTTP(S) conversation with a DICOMweb node: authentication, errors a person can act on,
keep-alive, and a cancel that reaches a blocked read.

The standard library's :mod:`http.client` carries it (see the README's "DICOMweb nodes" for
the measurement that chose it): responses are read as streams, so a WADO-RS study never has
to fit in memory, and no dependency is added.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import logging
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from workstation.errors import (
    ConnectionFailed,
    DimseTimeout,
    InvalidInput,
    NetworkError,
    OperationFailed,
)
from workstation.nodes import RemoteNode

log = logging.getLogger(__name__)

USER_AGENT = "workstation-dicomweb/1"
Params = Sequence[tuple[str, str]] | Mapping[str, str]


class CredentialsRefused(NetworkError):
    """The node answered 401 or 403: our user name, password or token is not accepted."""


class HttpStatusError(OperationFailed):
    """The node answered a request with an HTTP error status (other than 401/403)."""

    def __init__(self, message: str, http_status: int) -> None:
        super().__init__(message)
        self.http_status = http_status


#: Left as they are in a query value: what RFC 3986 allows there, plus the DICOM component
#: separator ``^`` and value separator ``\\`` (Orthanc 1.x does not percent-decode its QIDO-RS
#: parameters, so ``Smith%5EJohn`` would match nothing there).
_QUERY_SAFE = "*,?:/@!$'()^\\"


def _quote(
    text: str, safe: str = "", encoding: str | None = None, errors: str | None = None
) -> str:
    return quote(text, safe=_QUERY_SAFE, encoding=encoding, errors=errors)


def _add_hint(node: RemoteNode) -> str:
    name = node.name or "NAME"
    user = f" --user {node.username}" if node.username else " --user USER"
    if node.auth == "bearer":
        return f"workstation nodes add {name} {node.url} --token-file FILE"
    return f"workstation nodes add {name} {node.url}{user} --password-file FILE"


class DicomWebClient:
    """Requests to one DICOMweb node, one at a time on a kept-alive connection.

    ``secret`` is the password (Basic) or token (Bearer); ``None`` reads the one saved for the
    node (:mod:`workstation.dicomweb.credentials`). :meth:`abort` may be called from any
    thread: it shuts the socket down, so a read blocked in another thread ends at once.
    """

    def __init__(self, node: RemoteNode, secret: str | None = None) -> None:
        if not node.is_web:
            raise InvalidInput(f"{node} is not a DICOMweb node")
        self.node = node
        parts = urlsplit(node.url)
        self.scheme = parts.scheme
        self.base_path = parts.path.rstrip("/")
        self._headers = {"User-Agent": USER_AGENT}
        if node.auth:
            if secret is None:
                from workstation.dicomweb.credentials import secret as saved_secret

                secret = saved_secret(node)
            if not secret:
                what = "token" if node.auth == "bearer" else "password"
                raise InvalidInput(
                    f"no {what} saved for DICOMweb node {node.label}: {_add_hint(node)}"
                )
            if node.auth == "bearer":
                self._headers["Authorization"] = f"Bearer {secret}"
            else:
                pair = f"{node.username}:{secret}".encode()
                self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._aborted = False

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> http.client.HTTPConnection:
        node = self.node
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(
                node.host, node.port, timeout=node.connect_timeout, context=self._tls_context()
            )
        else:
            conn = http.client.HTTPConnection(node.host, node.port, timeout=node.connect_timeout)
        try:
            conn.connect()
        except TimeoutError:
            raise ConnectionFailed(
                f"DICOMweb node {node.label} ({node.url}) did not accept a connection within "
                f"{node.connect_timeout:g} s: check the host, port and firewall"
            ) from None
        except ssl.SSLError as exc:
            raise ConnectionFailed(
                f"TLS with DICOMweb node {node.label} ({node.url}) failed: {exc.reason or exc}"
            ) from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if isinstance(exc, ConnectionRefusedError):
                reason = "connection refused"
            where = "" if node.label == node.url else f" at {node.url}"
            raise ConnectionFailed(
                f"cannot reach DICOMweb node {node.label}{where}: {reason}; check that "
                "the server is running and the URL is right"
            ) from None
        assert conn.sock is not None
        conn.sock.settimeout(node.dimse_timeout)
        with self._lock:
            if self._aborted:
                conn.close()
                raise NetworkError(f"the request to {node.label} was cancelled")
            self._conn = conn
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        """HTTPS: the system's trust store, or the node's CA file (``tls_ca``); our client
        certificate when the node has one; the host name checked unless turned off."""
        node = self.node
        try:
            context = ssl.create_default_context(cafile=getattr(node, "tls_ca", "") or None)
            if getattr(node, "tls_cert", ""):
                context.load_cert_chain(node.tls_cert, getattr(node, "tls_key", "") or None)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidInput(f"cannot use the TLS files of {node.label}: {exc}") from None
        if not getattr(node, "tls_verify_host", True):
            context.check_hostname = False
        return context

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def abort(self) -> None:
        """Stop whatever runs now, from any thread (the socket is shut down)."""
        with self._lock:
            self._aborted = True
            conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def aborted(self) -> bool:
        return self._aborted

    def __enter__(self) -> DicomWebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------------

    def url(self, path: str, params: Params | None = None) -> str:
        """The request target: the service root's path, ``path``, and the query string."""
        target = f"{self.base_path}/{path.lstrip('/')}"
        if params:
            target += "?" + urlencode(params, quote_via=_quote)  # type: ignore[arg-type]
        return target

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | Iterable[bytes] | None = None,
        what: str = "request",
    ) -> http.client.HTTPResponse:
        """Send one request and return the response with a success status, body unread.

        Read the body to its end (or :meth:`close`) before the next request. Raises
        :class:`CredentialsRefused` for 401/403, :class:`HttpStatusError` for other error
        statuses, :class:`ConnectionFailed` when the node cannot be reached.
        """
        target = self.url(path, params)
        all_headers = {**self._headers, **(headers or {})}
        if _is_stream(body):
            self.close()  # a streamed body cannot be sent twice: no stale connection for it
        for attempt in (1, 2):
            reused = self._conn is not None
            conn = self._conn or self._connect()
            try:
                conn.request(method, target, body=body, headers=all_headers)
                response = conn.getresponse()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                # a kept-alive connection the server closed meanwhile: once more, afresh
                if attempt == 1 and reused and not self._aborted and not _is_stream(body):
                    continue
                raise self._failure(exc, what) from None
            except TimeoutError:
                self.close()
                raise DimseTimeout(
                    f"DICOMweb node {self.node.label} did not answer the {what} within "
                    f"{self.node.dimse_timeout:g} s: the query may be too broad, or raise the "
                    "node's timeout"
                ) from None
            except OSError as exc:
                self.close()
                raise self._failure(exc, what) from None
        log.debug("%s %s -> %d", method, target, response.status)
        if response.status >= 300:
            self._raise_for(response, what)
        return response

    def _failure(self, exc: BaseException, what: str) -> NetworkError:
        if self._aborted:
            return NetworkError(f"the {what} on {self.node.label} was cancelled")
        return NetworkError(
            f"DICOMweb node {self.node.label} closed the connection during the {what}: {exc}"
        )

    def _raise_for(self, response: http.client.HTTPResponse, what: str) -> None:
        try:
            body = response.read(2000)
        except (OSError, http.client.HTTPException):
            body = b""
        self.close()
        status, node = response.status, self.node
        if status in (401, 403):
            if not node.auth:
                advice = f"it needs a user and password or a token: {_add_hint(node)}"
            elif status == 401:
                advice = f"check them, or save new ones with: {_add_hint(node)}"
            else:
                advice = "the user may not be allowed this; check its rights on the server"
            raise CredentialsRefused(
                f"DICOMweb node {node.label} refused our credentials (HTTP {status}): {advice}"
            )
        text = " ".join(body.decode("utf-8", "replace").split())[:300]
        detail = f": {text}" if text else ""
        if status == 404:
            raise HttpStatusError(
                f"DICOMweb node {node.label} answered the {what} with HTTP 404 Not Found"
                f"{detail}; check the URL's path (the DICOMweb root, e.g. /dicom-web)",
                status,
            )
        raise HttpStatusError(
            f"DICOMweb node {node.label} answered the {what} with HTTP {status} "
            f"{response.reason}{detail}",
            status,
        )

    def get_json(self, path: str, params: Params | None = None, *, what: str) -> list[Any]:
        """A GET answered with a DICOM JSON array (QIDO-RS); ``[]`` for 204 No Content."""
        import json

        response = self.request(
            "GET", path, params=params, headers={"Accept": "application/dicom+json"}, what=what
        )
        data = response.read()
        if response.status == 204 or not data.strip():
            return []
        try:
            value = json.loads(data)
        except ValueError:
            raise OperationFailed(
                f"DICOMweb node {self.node.label} answered the {what} with something that is "
                "not JSON: check that the URL is a DICOMweb service root"
            ) from None
        if not isinstance(value, list):
            raise OperationFailed(
                f"DICOMweb node {self.node.label} answered the {what} with JSON that is not "
                "a list of data sets"
            )
        return value


def _is_stream(body: object) -> bool:
    return body is not None and not isinstance(body, bytes | bytearray)


def web_echo(node: RemoteNode) -> float:
    """What C-ECHO is for a DIMSE node: one QIDO-RS search for a single study, which checks
    the URL and the credentials. Returns the seconds it took."""
    import time

    start = time.perf_counter()
    with DicomWebClient(node) as client:
        client.get_json("studies", [("limit", "1")], what="QIDO-RS search (echo)")
    return time.perf_counter() - start
