"""Icons for the window: the application icon and the actions' icons.

An action's icon comes from the desktop's icon theme when it has one of the freedesktop names
(:data:`workstation.resources.ACTION_ICONS`), so the toolbar looks like the rest of the
desktop; else from the SVG bundled in ``resources/actions``. Set ``WORKSTATION_BUNDLED_ICONS=1``
to always use the bundled ones.
"""

from __future__ import annotations

import os

from PySide6.QtGui import QAction, QIcon
from PySide6.QtWidgets import QWidget

from workstation import resources

#: Which icon an action of the window gets, by its attribute name without ``_action``
#: (``window.retrieve_action`` gets "retrieve"). Actions added later that follow the naming
#: (``import_folder_action``, ``export_action``, ``send_action``...) get theirs too: the whole
#: stem is looked up first, then its first word.
ACTION_ICON_NAMES = {
    "find": "search",
    "search": "search",
    "stop": "stop",
    "retrieve": "retrieve",
    "clear": "clear",
    "nodes": "nodes",
    "echo": "echo",
    "log": "log",
    "import": "import",
    "export": "export",
    "send": "send",
    "viewer": "viewer",
    "view": "viewer",
    "open_viewer": "viewer",
    "about": "about",
    "shortcuts": "keyboard",
    "files": "folder",
    "quit": "quit",
}


def app_icon() -> QIcon:
    """The application icon: the PNGs at their sizes (crisp at 16 px), the SVG above them."""
    icon = QIcon()
    for size in resources.ICON_SIZES:
        icon.addFile(str(resources.app_icon_png(size)))
    icon.addFile(str(resources.icon_path("workstation")))
    return icon


def action_icon(name: str) -> QIcon:
    """The icon ``name`` (a key of ``ACTION_ICONS``): the theme's, else the bundled SVG."""
    bundled = QIcon(str(resources.icon_path(name)))
    if os.environ.get("WORKSTATION_BUNDLED_ICONS") != "1":
        for theme_name in resources.ACTION_ICONS[name]:
            if QIcon.hasThemeIcon(theme_name):
                return QIcon.fromTheme(theme_name, bundled)
    return bundled


def decorate_actions(window: QWidget) -> None:
    """Give every ``<name>_action`` of ``window`` without an icon the icon its name calls for
    (:data:`ACTION_ICON_NAMES`); the log dock's toggle gets the log icon."""
    for attribute, value in vars(window).items():
        if not attribute.endswith("_action") or not isinstance(value, QAction):
            continue
        stem = attribute.removesuffix("_action")  # "import_folder": exact, else "import"
        name = ACTION_ICON_NAMES.get(stem) or ACTION_ICON_NAMES.get(stem.split("_")[0])
        if name is not None and value.icon().isNull():
            value.setIcon(action_icon(name))
    dock = getattr(window, "log_dock", None)
    if dock is not None and dock.toggleViewAction().icon().isNull():
        dock.toggleViewAction().setIcon(action_icon("log"))
