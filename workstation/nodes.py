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

_AE_CHARS = re.compile(r"^[\x20-\x7e]{1,16}$")


class RetrieveMethod(StrEnum):
    MOVE = "move"
    GET = "get"


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
    """

    ae_title: str
    host: str
    port: int
    name: str = ""
    retrieve_method: RetrieveMethod = RetrieveMethod.MOVE
    connect_timeout: float = 10.0
    dimse_timeout: float = 30.0
    retrieve_associations: int = 1
    charset: str = "ISO_IR 192"
    uid_lists: bool = True

    def __post_init__(self) -> None:
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

    @classmethod
    def parse(cls, text: str, **options: object) -> RemoteNode:
        """Parse ``AET@HOST:PORT`` (IPv6 as ``AET@[::1]:PORT``)."""
        match = re.fullmatch(r"\s*([^@]+)@(\[[^\]]+\]|[^:@\s]+):(\S+)\s*", text)
        if not match:
            raise InvalidInput(
                f"cannot read node {text!r}: write it as AET@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242"
            )
        aet, host, port = match.groups()
        host = host.strip("[]")
        return cls(ae_title=aet, host=host, port=_validate_port(port, text), **options)  # type: ignore[arg-type]

    def with_options(self, **changes: object) -> RemoteNode:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def label(self) -> str:
        return self.name or self.ae_title

    def __str__(self) -> str:
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
