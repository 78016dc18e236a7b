"""The application's resources and what the window does with them: icons, Help menu, the
``.desktop`` entry, ``--version``, and the packaging helpers that install them."""

from __future__ import annotations

import configparser
import importlib.metadata
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from PySide6.QtCore import QObject, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QImage
from PySide6.QtWidgets import QDialog, QToolBar, QToolButton
from pytestqt.qtbot import QtBot

from workstation import resources
from workstation.ui.help_menu import AboutDialog, FilesDialog, ShortcutsDialog
from workstation.ui.main_window import MainWindow

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "packaging"))
pytest_plugins = ["tests.ui_support"]  # its fixtures: demo, session, window...

import install_desktop  # noqa: E402
import render_icons  # noqa: E402

VERSION = importlib.metadata.version("workstation")
#: What the licence notices must name: each shipped library, its licence, where to read it.
NOTICES = [
    ("MIT License", "https://opensource.org/license/mit"),
    ("PySide6", "GNU Lesser General Public License v3.0 (LGPLv3)"),
    ("pydicom", "https://github.com/pydicom/pydicom/blob/main/LICENSE"),
    ("pynetdicom", "https://github.com/pydicom/pynetdicom/blob/main/LICENCE"),
    ("qasync", "BSD 2-Clause License"),
    ("platformdirs", "https://github.com/tox-dev/platformdirs/blob/main/LICENSE"),
    ("NumPy", "BSD 3-Clause License"),
]


# -- the installed package ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout installed as a user's pip would (not editable), without dependencies."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
         "--no-deps", "--no-compile", "--target", str(target), str(REPO)],
        check=True, capture_output=True,
    )  # fmt: skip
    return target


def test_resources_load_from_the_installed_package(installed: Path, tmp_path: Path) -> None:
    script = (
        "import json, workstation_resources\n"
        "from workstation import resources as r\n"
        "print(json.dumps({'package': workstation_resources.__file__,\n"
        "  'about': r.about_text(), 'licences': r.licences_text(),\n"
        "  'desktop': r.desktop_entry(), 'root': str(r.root()),\n"
        "  'icons': [str(r.icon_path(n)) for n in sorted(r.ACTION_ICONS)],\n"
        "  'pngs': [str(r.app_icon_png(s)) for s in r.ICON_SIZES]}))\n"
    )
    # -I: only the installed copy is importable (not the source tree, not the editable one)
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(installed)!r})\n"
         + script],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    found = json.loads(done.stdout)
    assert Path(found["package"]).is_relative_to(installed)
    assert Path(found["root"]) == installed / "workstation_resources"
    assert found["about"] == resources.about_text()
    assert found["licences"] == resources.licences_text()
    assert found["desktop"] == (REPO / "resources" / "workstation.desktop").read_text()
    for path in found["icons"] + found["pngs"]:
        assert Path(path).is_file() and Path(path).is_relative_to(installed)


def test_every_package_of_the_source_tree_is_installed(installed: Path) -> None:
    """pyproject.toml lists the packages by hand (see there): a new one must be added."""
    source = {p.parent.relative_to(REPO) for p in (REPO / "workstation").rglob("__init__.py")}
    missing = sorted(
        ".".join(p.parts) for p in source if not (installed / p / "__init__.py").is_file()
    )
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"


def test_version_on_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "workstation", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"workstation {VERSION} (Python 3.")


# -- icons ----------------------------------------------------------------------------------


def test_icon_pngs_are_the_svg_rendered_at_each_size(qapp: object) -> None:
    for size in resources.ICON_SIZES:
        saved = QImage(str(resources.app_icon_png(size))).convertToFormat(
            QImage.Format.Format_ARGB32
        )
        assert (saved.width(), saved.height()) == (size, size)
        fresh = render_icons.render(resources.icon_path("workstation"), size)
        worst = max(
            abs(a - b)
            for y in range(size)
            for x in range(size)
            for a, b in zip(
                saved.pixelColor(x, y).getRgb(), fresh.pixelColor(x, y).getRgb(), strict=True
            )
        )
        assert worst <= 8, f"{size} px is stale: run packaging/render_icons.py"
    corner = QImage(str(resources.app_icon_png(256))).pixelColor(0, 0)
    assert corner.alpha() == 0  # a rounded tile, not a square


def test_every_toolbar_action_has_an_icon_and_its_text(window: MainWindow) -> None:
    toolbars = window.findChildren(QToolBar)
    assert toolbars
    checked = 0
    for toolbar in toolbars:
        assert toolbar.toolButtonStyle().name == "ToolButtonTextBesideIcon"
        for action in toolbar.actions():
            if action.isSeparator() or action.text() == "":
                continue
            assert not action.icon().isNull(), f"{action.text()!r} has no icon"
            assert not action.icon().pixmap(16, 16).isNull(), action.text()
            button = toolbar.widgetForAction(action)
            assert isinstance(button, QToolButton)
            assert button.text()
            checked += 1
    assert checked >= 5
    assert not window.windowIcon().isNull()
    assert window.windowIcon().availableSizes()  # the PNGs: crisp at 16 px


# -- the Help menu ---------------------------------------------------------------------------


D = TypeVar("D", bound=QDialog)


def _dialog(qtbot: QtBot, window: MainWindow, kind: type[D]) -> D:
    """The dialog of that kind the window shows (waits for it)."""
    found: list[D] = []

    def shown() -> None:
        found[:] = [d for d in window.findChildren(kind) if d.isVisible()]
        assert found

    qtbot.waitUntil(shown, timeout=5000)
    return found[0]


def test_help_is_the_last_menu(window: MainWindow) -> None:
    menus = [a.text() for a in window.menuBar().actions()]
    assert menus[-1] == "&Help"
    texts = [a.text() for a in window.help_menu.actions() if not a.isSeparator()]
    assert texts == ["Keyboard Shortcuts", "Where Are My Files?", "About Workstation"]
    assert all(not a.icon().isNull() for a in window.help_menu.actions() if not a.isSeparator())


def test_about_shows_the_version_and_the_licences(qtbot: QtBot, window: MainWindow) -> None:
    window.help_menu.about_action.trigger()
    about = _dialog(qtbot, window, AboutDialog)
    assert f"Version {VERSION}" in about.version_label.text()
    shown = about.licences.toPlainText()
    for name, licence in NOTICES:
        assert name in shown and licence in shown, (name, licence)
    about.close()


def test_keyboard_shortcuts_lists_the_windows_actions(qtbot: QtBot, window: MainWindow) -> None:
    window.help_menu.shortcuts_action.trigger()
    dialog = _dialog(qtbot, window, ShortcutsDialog)
    table = dialog.table
    rows = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert rows["Retrieve"] == "Ctrl+R"
    assert rows["Find"] == "Ctrl+F"
    assert rows["Stop"] == "Esc"
    assert rows["Clear search"] == "Ctrl+L"
    assert rows["Keyboard Shortcuts"] == "F1"
    assert len(rows) == table.rowCount()  # one row per action
    dialog.close()
    qtbot.waitUntil(lambda: not window.findChildren(ShortcutsDialog))
    # read from the actions: a shortcut an action gets later is listed too
    window.nodes_action.setShortcut("Ctrl+Shift+N")
    window.help_menu.shortcuts_action.trigger()
    table = _dialog(qtbot, window, ShortcutsDialog).table
    rows = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert rows["Nodes"] == "Ctrl+Shift+N"


class _UrlCatcher(QObject):
    """Stands in for the file manager: records the URLs the window asks the desktop to open."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


@pytest.fixture
def file_manager() -> Iterator[_UrlCatcher]:
    catcher = _UrlCatcher()
    QDesktopServices.setUrlHandler("file", catcher, "open")
    yield catcher
    QDesktopServices.unsetUrlHandler("file")


def test_where_are_my_files_shows_and_opens_each_folder(
    qtbot: QtBot, window: MainWindow, ui_dirs: Path, file_manager: _UrlCatcher
) -> None:
    window.help_menu.files.logs = ui_dirs / "logs"  # not made yet: Open makes it
    window.help_menu.files_action.trigger()
    dialog = _dialog(qtbot, window, FilesDialog)
    store = window.session.store.root
    assert dialog.path_labels["Local store"].text() == str(store)
    assert dialog.path_labels["Settings"].text() == str(ui_dirs / "config" / "settings.json")
    assert dialog.path_labels["Logs"].text() == str(ui_dirs / "logs")
    for label, folder in [("Local store", store), ("Logs", ui_dirs / "logs"),
                          ("Settings", ui_dirs / "config")]:  # fmt: skip
        dialog.open_buttons[label].click()
        assert file_manager.urls[-1] == QUrl.fromLocalFile(str(folder))
        assert folder.is_dir()
    assert len(file_manager.urls) == 3
    dialog.close()


# -- the desktop entry -----------------------------------------------------------------------


def _entry(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser["Desktop Entry"]


def test_desktop_entry_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "workstation.desktop"
    path.write_text(resources.desktop_entry(), encoding="utf-8")
    validator = shutil.which("desktop-file-validate")
    if validator is not None:  # Debian's desktop-file-utils (.ci/run installs it)
        done = subprocess.run([validator, str(path)], capture_output=True, text=True)
        errors = [line for line in done.stdout.splitlines() if "error:" in line]
        assert done.returncode == 0 and not errors, done.stdout
    entry = _entry(resources.desktop_entry())
    assert entry["Type"] == "Application"
    assert entry["Name"] == "Workstation"
    assert entry["Comment"]
    assert entry["Exec"] == "workstation"
    assert entry["Icon"] == "workstation"
    assert entry["Categories"] == "Graphics;MedicalSoftware;Science;"


def test_install_desktop_writes_the_entry_and_icons_for_the_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    program = tmp_path / "my apps" / "workstation"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n")
    written = install_desktop.install(program)
    share = tmp_path / "share"
    desktop = share / "applications" / "workstation.desktop"
    assert desktop in written
    entry = _entry(desktop.read_text())
    assert entry["Exec"] == f'"{program}"'  # quoted: the path has a space
    assert entry["Icon"] == "workstation"
    for size in resources.ICON_SIZES:
        png = share / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "workstation.png"
        assert png.read_bytes() == resources.app_icon_png(size).read_bytes()
    svg = share / "icons" / "hicolor" / "scalable" / "apps" / "workstation.svg"
    assert svg.read_bytes() == resources.icon_path("workstation").read_bytes()
    install_desktop.uninstall()
    assert not any(p.exists() for p in written)
