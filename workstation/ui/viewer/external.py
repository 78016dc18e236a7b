"""Open a study or series folder in another viewer ("Open with ▸" in the Local store).

Commands come from the ``external_viewers`` setting (name → command), for example::

    "external_viewers": {
        "Weasis": "weasis {folder}",
        "3D Slicer": "/opt/Slicer/Slicer --python-code \\"slicer.util.loadDICOM('{folder}')\\""
    }

The command is split like a shell would (quotes group words) but run without a shell, so a
folder with spaces or quotes stays one argument; ``{folder}`` is replaced in each argument,
and the folder is appended when the command does not mention it. The program is started
detached: the window never waits for it.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import QProcess

log = logging.getLogger(__name__)

PLACEHOLDER = "{folder}"


def viewer_commands(setting: object) -> dict[str, str]:
    """The usable entries of the ``external_viewers`` setting (others are skipped, logged)."""
    if not isinstance(setting, Mapping):
        if setting:
            log.warning("external_viewers should map names to commands; ignoring it")
        return {}
    out = {}
    for name, command in setting.items():
        if isinstance(name, str) and isinstance(command, str) and name.strip() and command.strip():
            out[name.strip()] = command.strip()
        else:
            log.warning("external viewer %r: the command must be a non-empty text", name)
    return out


def command_line(template: str, folder: Path) -> list[str]:
    """``template`` split into program and arguments, ``{folder}`` filled in.

    Raises ValueError for an unbalanced quote or an empty command.
    """
    words = shlex.split(template)
    if not words:
        raise ValueError("the command is empty")
    if not any(PLACEHOLDER in word for word in words):
        words.append(PLACEHOLDER)
    return [word.replace(PLACEHOLDER, str(folder)) for word in words]


def launch(name: str, template: str, folder: Path) -> str:
    """Start the viewer on ``folder`` without waiting; return the status line to show."""
    try:
        argv = command_line(template, folder)
    except ValueError as exc:
        return f"Cannot open with {name}: {exc} (fix external_viewers in the settings file)"
    started, _pid = QProcess.startDetached(argv[0], argv[1:], str(folder))
    if not started:
        return f"Cannot open with {name}: {argv[0]!r} did not start (is it installed?)"
    log.info("opened a folder with the external viewer %s", name)
    return f"Opened with {name}"
