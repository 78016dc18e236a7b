"""The passwords and tokens of DICOMweb nodes, kept out of the settings file.

They live in ``dicomweb-secrets.json`` in the config directory, created readable and writable
by the user only (0600) and replaced atomically; the settings file holds only the kind of
authentication and the user name. A secret is found by the node's name, or by its URL for a
node that has no name.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from pathlib import Path

from workstation.errors import InvalidInput
from workstation.nodes import RemoteNode

log = logging.getLogger(__name__)

FILE_NAME = "dicomweb-secrets.json"


def secrets_path() -> Path:
    from workstation.settings import config_dir

    return config_dir() / FILE_NAME


def _key(node: RemoteNode | str) -> str:
    if isinstance(node, str):
        return node
    return node.name or node.url


def _read() -> dict[str, str]:
    path = secrets_path()
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s can be read by other users: run chmod 600 on it", path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"cannot read {path}: {exc}; fix or delete it") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write(data: dict[str, str]) -> Path:
    path = secrets_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".secrets-")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            json.dump(data, tmp, indent=2)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(name, 0o600)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return path


def secret(node: RemoteNode | str) -> str:
    """The password or token saved for ``node`` (its name, or its URL), ``""`` if none."""
    return _read().get(_key(node), "")


def save_secret(node: RemoteNode | str, value: str) -> Path:
    """Keep ``value`` as the password or token of ``node``; returns the file's path."""
    data = _read()
    data[_key(node)] = value
    return _write(data)


def forget(node: RemoteNode | str) -> None:
    """Remove what is saved for ``node`` (nothing happens when there is nothing)."""
    data = _read()
    if data.pop(_key(node), None) is not None:
        _write(data)


def read_secret_file(path: str) -> str:
    """The first line of ``path`` (``-``: standard input), the way ``--password-file`` reads."""
    import sys

    try:
        text = sys.stdin.readline() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    lines = text.splitlines()
    value = lines[0].strip() if lines else ""
    if not value:
        raise InvalidInput(f"{path} holds no password or token on its first line")
    return value
