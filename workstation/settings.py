"""Every user setting, declared once with its type and default, in a versioned JSON file.

The file lives in the user's config directory (platformdirs), or in ``$WORKSTATION_CONFIG_DIR``
when that is set (tests and portable installs). The Qt window keeps only window state in
QSettings; preferences and nodes live here so the CLI and the window share them.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from workstation.errors import InvalidInput
from workstation.nodes import (
    DEFAULT_AE_TITLE,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_RETRIEVES_PER_NODE,
    DEFAULT_SERVE_PORT,
    DEFAULT_STORE_PORT,
    LocalAE,
    RemoteNode,
)

if TYPE_CHECKING:
    from workstation.dimse.tls import TlsServerConfig

log = logging.getLogger(__name__)

SETTINGS_VERSION = 1
APP_NAME = "workstation"


def config_dir() -> Path:
    override = os.environ.get("WORKSTATION_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir(APP_NAME))


def default_store_dir() -> Path:
    override = os.environ.get("WORKSTATION_STORE_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME)) / "store"


@dataclass
class Settings:
    """The preferences of one user. Add a field here and it is loaded, saved and upgraded."""

    ae_title: str = DEFAULT_AE_TITLE
    store_port: int = DEFAULT_STORE_PORT
    store_bind: str = "0.0.0.0"
    store_dir: str = field(default_factory=lambda: str(default_store_dir()))
    #: Calling AE titles our storage SCP accepts; empty accepts every caller.
    allowed_callers: list[str] = field(default_factory=list)
    #: Retrieves running at once against one node.
    retrieves_per_node: int = DEFAULT_RETRIEVES_PER_NODE
    #: Seconds without a C-STORE after which a retrieve stops waiting for missing instances.
    retrieve_idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    nodes: dict[str, RemoteNode] = field(default_factory=dict)
    #: The window serves the local store as a Q/R SCP (``workstation serve``), on
    #: ``serve_port`` with our AE title, bound like the storage SCP (``store_bind``).
    serve_enabled: bool = False
    serve_port: int = DEFAULT_SERVE_PORT
    #: DICOM TLS on our storage SCP and Q/R SCP (PS3.15 B.9): our certificate and private key
    #: (PEM); with ``scp_tls_require_client_cert`` callers must present a certificate signed
    #: by ``scp_tls_ca`` (empty: the system's trust store).
    scp_tls: bool = False
    scp_tls_cert: str = ""
    scp_tls_key: str = ""
    scp_tls_ca: str = ""
    scp_tls_require_client_cert: bool = False
    #: "Open with ▸ name" in the Local store: name → command, e.g. ``"Weasis": "weasis
    #: {folder}"``; ``{folder}`` becomes the study or series folder (appended when absent).
    external_viewers: dict[str, str] = field(default_factory=dict)

    @property
    def serve_callers(self) -> list[str]:
        """Who may query and retrieve from our Q/R SCP: the allowed callers and the AE
        titles of the saved nodes."""
        titles = [
            *self.allowed_callers,
            *(node.ae_title for node in self.nodes.values() if node.ae_title),
        ]
        return list(dict.fromkeys(titles))

    @property
    def scp_tls_config(self) -> TlsServerConfig | None:
        """Our SCPs' TLS settings, or None when they speak plain DICOM."""
        if not self.scp_tls:
            return None
        from workstation.dimse.tls import TlsServerConfig

        return TlsServerConfig(
            self.scp_tls_cert, self.scp_tls_key, self.scp_tls_ca, self.scp_tls_require_client_cert
        )

    @property
    def local_ae(self) -> LocalAE:
        return LocalAE(self.ae_title, self.store_port, self.store_bind)

    def node(self, name_or_address: str) -> RemoteNode:
        """A saved node by name (case-insensitive), else an ``AET@HOST:PORT`` address."""
        for name, node in self.nodes.items():
            if name.lower() == name_or_address.lower():
                return node
        if "@" in name_or_address or "://" in name_or_address:  # AET@HOST:PORT or a URL
            return RemoteNode.parse(name_or_address)
        known = ", ".join(sorted(self.nodes)) or "none saved yet"
        raise InvalidInput(
            f"no node named {name_or_address!r} (known: {known}); give AET@HOST:PORT or add it "
            f"with: workstation nodes add {name_or_address} AET@HOST:PORT"
        )


# Upgrades from version N to N+1, applied in order to the raw JSON before it is read.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _node_to_json(node: RemoteNode) -> dict[str, Any]:
    data = asdict(node)
    data["retrieve_method"] = str(node.retrieve_method)
    return data


def _from_json(data: dict[str, Any]) -> Settings:
    version = int(data.get("version", 1))
    while version < SETTINGS_VERSION:
        data = UPGRADES[version](data)
        version += 1
    known = {f.name for f in fields(Settings)} - {"nodes"}
    values = {k: v for k, v in data.items() if k in known}
    nodes = {}
    for name, raw in (data.get("nodes") or {}).items():
        try:
            nodes[name] = RemoteNode(**{**raw, "name": name})
        except (TypeError, InvalidInput) as exc:
            log.warning("ignoring saved node %r: %s", name, exc)
    return Settings(**values, nodes=nodes)


def settings_path() -> Path:
    return config_dir() / "settings.json"


def load() -> Settings:
    """Read the user's settings; a missing file gives the defaults, a broken one says where."""
    path = settings_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Settings()
    try:
        return _from_json(json.loads(text))
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(f"cannot read settings file {path}: {exc}; fix or delete it") from None


def save(settings: Settings) -> Path:
    """Write the settings atomically (temp file, then rename)."""
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = asdict(settings)
    data["nodes"] = {name: _node_to_json(node) for name, node in settings.nodes.items()}
    data["version"] = SETTINGS_VERSION
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=".settings-", delete=False
    ) as tmp:
        json.dump(data, tmp, indent=2, ensure_ascii=False)
    os.replace(tmp.name, path)
    return path


def remember_no_uid_lists(node: RemoteNode) -> list[str]:
    """Mark the saved nodes at ``node``'s address as taking one UID per request (after the
    PACS refused a list); returns their names (none saved: nothing is written)."""
    settings = load()
    names = [
        name
        for name, saved in settings.nodes.items()
        if str(saved) == str(node) and saved.uid_lists
    ]
    for name in names:
        settings.nodes[name] = settings.nodes[name].with_options(uid_lists=False)
    if names:
        save(settings)
    return names
