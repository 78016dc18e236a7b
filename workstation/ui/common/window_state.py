"""Window geometry, splitter positions and column layouts, kept in QSettings.

Only window state lives here (preferences are in :mod:`workstation.settings`). The file is
``window.ini`` in the workstation's config folder, so ``WORKSTATION_CONFIG_DIR`` isolates it
like the rest of the configuration (tests, portable installs).
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QHeaderView, QMainWindow, QSplitter

from workstation import settings as settings_module

STATE_VERSION = 1


class WindowState:
    """Saves and restores named splitters and table headers of one main window."""

    def __init__(self) -> None:
        path = settings_module.config_dir() / "window.ini"
        self._settings = QSettings(str(path), QSettings.Format.IniFormat)

    def restore(
        self,
        window: QMainWindow,
        splitters: dict[str, QSplitter],
        headers: dict[str, QHeaderView],
    ) -> bool:
        """Restore what was saved; False when nothing (or an older layout) was saved."""
        s = self._settings
        if s.value("version", 0, type=int) != STATE_VERSION:
            return False
        restored = False
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            restored = window.restoreGeometry(geometry)
        state = s.value("window/state")
        if isinstance(state, QByteArray) and not state.isEmpty():
            window.restoreState(state, STATE_VERSION)
        for name, splitter in splitters.items():
            value = s.value(f"splitters/{name}")
            if isinstance(value, QByteArray) and not value.isEmpty():
                splitter.restoreState(value)
        for name, header in headers.items():
            value = s.value(f"headers/{name}")
            if isinstance(value, QByteArray) and not value.isEmpty():
                header.restoreState(value)
        return restored

    def save(
        self,
        window: QMainWindow,
        splitters: dict[str, QSplitter],
        headers: dict[str, QHeaderView],
    ) -> None:
        s = self._settings
        s.setValue("version", STATE_VERSION)
        s.setValue("window/geometry", window.saveGeometry())
        s.setValue("window/state", window.saveState(STATE_VERSION))
        for name, splitter in splitters.items():
            s.setValue(f"splitters/{name}", splitter.saveState())
        for name, header in headers.items():
            s.setValue(f"headers/{name}", header.saveState())
        s.sync()
