"""The application's resources (icons, ``.desktop`` entry, About text, licence notices). Qt-free.

They live in the top-level ``resources/`` folder of the source tree, installed as the package
``workstation_resources`` (see pyproject.toml), and are read here through
:mod:`importlib.resources`, so an installed copy, an editable one and the packaged application
(``packaging/build.py``) all find them the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.metadata
import sys
from functools import cache
from importlib.resources import as_file, files
from pathlib import Path

PACKAGE = "workstation_resources"
#: Sizes of the application icon's PNGs (``icons/workstation-<size>.png``).
ICON_SIZES = (16, 32, 48, 64, 128, 256)
#: The bundled action icons (``actions/<name>.svg``), by name, with the freedesktop icon names
#: a desktop theme may provide instead (first found wins; see workstation.ui.common.icons).
ACTION_ICONS: dict[str, tuple[str, ...]] = {
    "search": ("system-search", "edit-find"),
    "stop": ("process-stop",),
    "retrieve": ("folder-download", "go-down"),
    "nodes": ("network-server", "network-workgroup"),
    "echo": ("network-transmit-receive",),
    "log": ("utilities-log-viewer", "text-x-generic"),
    "import": ("document-import", "document-open"),
    "export": ("document-export", "document-save-as"),
    "send": ("document-send", "mail-send"),
    "viewer": ("image-x-generic",),
    "about": ("help-about",),
    "clear": ("edit-clear",),
    "quit": ("application-exit",),
    "folder": ("folder-open", "folder"),
    "keyboard": ("preferences-desktop-keyboard", "input-keyboard"),
}
_files = contextlib.ExitStack()
atexit.register(_files.close)


@cache
def root() -> Path:
    """The folder holding the resources, as a real path (extracted first if zipped)."""
    return _files.enter_context(as_file(files(PACKAGE)))


def resource_path(name: str) -> Path:
    """A resource's path by its name inside the folder (``"icons/workstation-16.png"``)."""
    path = root() / name
    if not path.is_file():
        raise FileNotFoundError(f"no resource {name!r} in {root()}: is the package installed?")
    return path


def icon_path(name: str) -> Path:
    """The SVG of an action icon (a key of :data:`ACTION_ICONS`), or of the application
    (``"workstation"``)."""
    return resource_path("workstation.svg" if name == "workstation" else f"actions/{name}.svg")


def app_icon_png(size: int) -> Path:
    """The application icon rendered at ``size`` pixels (one of :data:`ICON_SIZES`)."""
    return resource_path(f"icons/workstation-{size}.png")


def desktop_entry() -> str:
    """The freedesktop ``.desktop`` entry's text."""
    return resource_path("workstation.desktop").read_text(encoding="utf-8")


def about_text() -> str:
    """What the application is, in a few plain paragraphs (for Help → About)."""
    return resource_path("about.txt").read_text(encoding="utf-8").strip()


def licences_text() -> str:
    """The project's MIT licence and the notices of the libraries the application ships."""
    return resource_path("licences.txt").read_text(encoding="utf-8").strip()


def version() -> str:
    """The installed version of the workstation ("unknown" when no metadata is installed)."""
    try:
        return importlib.metadata.version("workstation")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def version_line() -> str:
    """``workstation 0.1.0 (Python 3.11.7)``: what ``workstation --version`` prints."""
    python = ".".join(str(n) for n in sys.version_info[:3])
    return f"workstation {version()} (Python {python})"
