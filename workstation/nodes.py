"""Remote DICOM nodes (the PACS we talk to) and our own local AE, as small value objects."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

from workstation.errors import InvalidInput

DEFAULT_AE_TITLE = "WORKSTATION"
DEFAULT_STORE_PORT = 11113
#: Where ``workstation serve`` (our Q/R SCP) listens by default.
DEFAULT_SERVE_PORT = 11114

# Every default below is declared here once; the CLI's help, the dialogs and the settings
# file take them from here.
#: Seconds for the TCP connect and the association set-up.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Seconds to wait for each response of an echo or a find.
DEFAULT_DIMSE_TIMEOUT = 30.0
#: A retrieve gives up after this many seconds with neither a response nor an instance.
DEFAULT_IDLE_TIMEOUT = 30.0
#: After a C-CANCEL, seconds to wait for the peer's final response before aborting.
CANCEL_GRACE = 3.0
#: Retrieves the queue runs at once against one node.
DEFAULT_RETRIEVES_PER_NODE = 2

_AE_CHARS = re.compile(r"^[\x20-\x7e]{1,16}$")


class RetrieveMethod(StrEnum):
    MOVE = "move"
    GET = "get"
    #: WADO-RS, for a DICOMweb node (the only method such a node has).
    WADO = "wado"


#: How a DICOMweb node authenticates: none, HTTP Basic (user and password), or a Bearer token.
WEB_AUTH_KINDS = ("", "basic", "bearer")


def _validate_url(url: str) -> tuple[str, str, int]:
    """``url`` without a trailing slash, its host and port; raise when it is not http(s)."""
    from urllib.parse import urlsplit

    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"cannot read the DICOMweb URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"cannot read the DICOMweb URL {url!r}: write it as http(s)://HOST[:PORT]/PATH, "
            "e.g. http://127.0.0.1:8042/dicom-web"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise InvalidInput(
            f"the DICOMweb URL {url!r} must not carry a query, a fragment or credentials "
            "(give the user with --user and the secret in a file)"
        )
    return text.rstrip("/"), parts.hostname, port or (443 if parts.scheme == "https" else 80)


def validate_ae_title(title: str) -> str:
    """Return ``title`` stripped, or raise: 1-16 printable ASCII characters, no backslash."""
    stripped = title.strip()
    if not stripped or not _AE_CHARS.match(stripped) or "\\" in stripped:
        raise InvalidInput(
            f"invalid AE title {title!r}: use 1 to 16 printable ASCII characters, no backslash"
        )
    return stripped


#: Specific Character Set defined terms a query may be sent in (PS3.3 C.12.1.1.2), written
#: out so that loading the settings imports no pydicom.
CHARSETS = (
    "ISO_IR 192", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 144",
    "ISO_IR 127", "ISO_IR 126", "ISO_IR 138", "ISO_IR 148", "ISO_IR 13",
    "ISO_IR 166", "GB18030", "GBK",
)  # fmt: skip
#: What each of :data:`CHARSETS` is called in plain words.
CHARSET_NAMES = {
    "ISO_IR 192": "UTF-8", "ISO_IR 100": "Latin-1", "ISO_IR 101": "Latin-2",
    "ISO_IR 109": "Latin-3", "ISO_IR 110": "Latin-4", "ISO_IR 144": "Cyrillic",
    "ISO_IR 127": "Arabic", "ISO_IR 126": "Greek", "ISO_IR 138": "Hebrew",
    "ISO_IR 148": "Latin-5, Turkish", "ISO_IR 13": "Japanese katakana",
    "ISO_IR 166": "Thai", "GB18030": "Chinese", "GBK": "Chinese",
}  # fmt: skip


def charset_label(term: str) -> str:
    """``ISO_IR 100 (Latin-1)``: a defined term with its plain name."""
    name = CHARSET_NAMES.get(term)
    return f"{term} ({name})" if name else term


def other_charset(term: str) -> str:
    """The character set to suggest when a query sent in ``term`` matched nothing: Latin-1
    after UTF-8 (the usual mismatch: a PACS holding Latin-1 names and comparing bytes), else
    UTF-8."""
    return "ISO_IR 100" if term == "ISO_IR 192" else "ISO_IR 192"


def validate_charset(term: str) -> str:
    """Return ``term`` as a defined term (``iso_ir 100`` -> ``ISO_IR 100``), or raise."""
    stripped = " ".join((term or "").split()).upper().replace("ISO_IR_", "ISO_IR ")
    if stripped not in CHARSETS:
        raise InvalidInput(f"unknown character set {term!r}: use one of {', '.join(CHARSETS)}")
    return stripped


def _validate_port(port: int | str, text: str) -> int:
    try:
        value = int(port)
    except (TypeError, ValueError):
        raise InvalidInput(f"invalid port in {text!r}: {port!r} is not a number") from None
    if not 0 < value < 65536:
        raise InvalidInput(f"invalid port in {text!r}: {value} is not between 1 and 65535")
    return value


@dataclass(frozen=True)
class RemoteNode:
    """A peer we query and retrieve from.

    Timeouts in seconds: ``connect_timeout`` for the TCP connect and association set-up,
    ``dimse_timeout`` for each response of an echo or a find; retrieves use their own idle
    and total timeouts on top (see :mod:`workstation.dimse.retrieve`).

    ``retrieve_associations`` above 1 retrieves a study series by series over that many
    associations at once, for a PACS that allows it (most serve each association with its
    own thread); 1, the default, sends one request on one association, as DCMTK does.

    ``charset`` is the Specific Character Set a query with non-ASCII text is sent in
    (``ISO_IR 192``, UTF-8, by default; ``ISO_IR 100`` for a PACS that holds Latin-1 and matches
    bytes). ``uid_lists`` says whether the PACS takes a C-MOVE/C-GET naming several UIDs in one
    request (PS3.4 C.2.2.2.2): ``True`` (the default) sends lists and falls back to one request
    per UID when a list is refused; ``False`` sends one request per UID from the start.

    A DICOMweb node (PS3.18) has a ``url`` (``http(s)://HOST[:PORT]/PATH``, the service root):
    ``host`` and ``port`` come from it, ``ae_title`` is optional, and its retrieve method is
    WADO-RS. ``auth`` is ``""``, ``"basic"`` (with ``username``) or ``"bearer"``; the password or
    token is never part of the node: it lives in a file only the user can read
    (:mod:`workstation.dicomweb.credentials`).
    """

    ae_title: str = ""
    host: str = ""
    port: int = 0
    name: str = ""
    retrieve_method: RetrieveMethod = RetrieveMethod.MOVE
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    dimse_timeout: float = DEFAULT_DIMSE_TIMEOUT
    retrieve_associations: int = 1
    charset: str = "ISO_IR 192"
    uid_lists: bool = True
    url: str = ""
    auth: str = ""
    username: str = ""
    #: DICOM TLS (PS3.15 B.9): ``tls_ca`` the CA file that signed the PACS's certificate
    #: (empty: the system's trust store); ``tls_cert``/``tls_key`` our client certificate,
    #: when the PACS wants one; ``tls_verify_host`` checks that the certificate names ``host``.
    tls: bool = False
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_verify_host: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "tls", bool(self.tls))
        object.__setattr__(self, "tls_verify_host", bool(self.tls_verify_host))
        if bool(self.tls_cert) != bool(self.tls_key):
            raise InvalidInput(
                "a TLS client certificate needs its private key and the reverse: give both "
                "(--tls-cert FILE --tls-key FILE)"
            )
        if self.url or self.auth or self.username:
            self._check_web()
            return
        object.__setattr__(self, "charset", validate_charset(self.charset))
        object.__setattr__(self, "uid_lists", bool(self.uid_lists))
        if not 1 <= int(self.retrieve_associations) <= 16:
            raise InvalidInput(
                f"retrieve associations must be 1 to 16, not {self.retrieve_associations}"
            )
        object.__setattr__(self, "retrieve_associations", int(self.retrieve_associations))
        object.__setattr__(self, "ae_title", validate_ae_title(self.ae_title))
        object.__setattr__(self, "port", _validate_port(self.port, str(self.port)))
        object.__setattr__(self, "retrieve_method", RetrieveMethod(self.retrieve_method))
        if not self.host:
            raise InvalidInput("a remote node needs a host name or address")
        if self.retrieve_method is RetrieveMethod.WADO:
            raise InvalidInput("WADO-RS is for DICOMweb nodes: give the node a URL")

    def _check_web(self) -> None:
        if not self.url:
            raise InvalidInput("DICOMweb authentication needs a DICOMweb node: give its URL")
        url, host, port = _validate_url(self.url)
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        if self.ae_title:
            object.__setattr__(self, "ae_title", validate_ae_title(self.ae_title))
        object.__setattr__(self, "retrieve_method", RetrieveMethod.WADO)
        object.__setattr__(self, "charset", validate_charset(self.charset))
        object.__setattr__(self, "uid_lists", bool(self.uid_lists))
        object.__setattr__(self, "retrieve_associations", int(self.retrieve_associations))
        auth = (self.auth or "").strip().lower()
        if auth not in WEB_AUTH_KINDS:
            raise InvalidInput(f"unknown DICOMweb authentication {self.auth!r}: basic or bearer")
        if auth == "basic" and not self.username:
            raise InvalidInput("Basic authentication needs a user name (--user)")
        if not auth and self.username:
            auth = "basic"
        object.__setattr__(self, "auth", auth)

    @property
    def is_web(self) -> bool:
        """A DICOMweb node (QIDO-RS, WADO-RS, STOW-RS) rather than a DIMSE one."""
        return bool(self.url)

    @classmethod
    def parse(cls, text: str, **options: object) -> RemoteNode:
        """Parse ``AET@HOST:PORT`` (IPv6 as ``AET@[::1]:PORT``), or a DICOMweb service URL
        ``http(s)://HOST[:PORT]/PATH``."""
        if re.match(r"\s*[a-z][a-z0-9+.-]*://", text, re.IGNORECASE):
            return cls(url=text.strip(), **options)  # type: ignore[arg-type]
        match = re.fullmatch(r"\s*([^@]+)@(\[[^\]]+\]|[^:@\s]+):(\S+)\s*", text)
        if not match:
            raise InvalidInput(
                f"cannot read node {text!r}: write it as AET@HOST:PORT, e.g. "
                "ORTHANC@127.0.0.1:4242, or as a DICOMweb URL http(s)://HOST[:PORT]/PATH"
            )
        aet, host, port = match.groups()
        host = host.strip("[]")
        return cls(ae_title=aet, host=host, port=_validate_port(port, text), **options)  # type: ignore[arg-type]

    def with_options(self, **changes: object) -> RemoteNode:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        return self.name or self.ae_title or self.url

    def __str__(self) -> str:
        if self.url:
            return self.url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"


@dataclass(frozen=True)
class LocalAE:
    """Our own application entity: the calling AE title, and where our storage SCP listens.

    ``bind`` is the address the storage SCP listens on; the PACS must reach it, so the default
    is every interface.
    """

    ae_title: str = DEFAULT_AE_TITLE
    port: int = DEFAULT_STORE_PORT
    bind: str = "0.0.0.0"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", validate_ae_title(self.ae_title))
        object.__setattr__(
            self, "port", _validate_port(self.port, str(self.port)) if self.port else 0
        )
