"""Add the workstation to the user's desktop menu: the ``.desktop`` entry and the icons.

Usage::

    python packaging/install_desktop.py                          # the `workstation` on PATH
    python packaging/install_desktop.py dist/workstation/workstation   # a built folder
    python packaging/install_desktop.py --uninstall

Writes ``~/.local/share/applications/workstation.desktop`` (``Exec=`` the program given, by
its absolute path, else the ``workstation`` command) and the icon into
``~/.local/share/icons/hicolor/<size>x<size>/apps/workstation.png`` and ``scalable/apps``
(``$XDG_DATA_HOME`` instead of ``~/.local/share`` when set). Nothing needs root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

NAME = "workstation"


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def desktop_text(program: Path | None) -> str:
    """The bundled entry, with ``Exec=`` pointing at ``program`` when given."""
    from workstation import resources

    lines = resources.desktop_entry().splitlines()
    if program is not None:
        exec_line = f"Exec={_quote(str(program.absolute()))}"
        lines = [exec_line if line.startswith("Exec=") else line for line in lines]
    return "\n".join(lines) + "\n"


def _quote(path: str) -> str:
    """An Exec= argument, quoted as the Desktop Entry spec asks when it needs to be."""
    if not any(c in path for c in " \t\"'\\><~|&;$*?#()`"):
        return path
    escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("`", "\\`").replace("$", "\\$")
    return f'"{escaped}"'


def installed_files(root: Path | None = None) -> list[Path]:
    from workstation import resources

    base = root or data_home()
    icons = base / "icons" / "hicolor"
    return [
        base / "applications" / f"{NAME}.desktop",
        icons / "scalable" / "apps" / f"{NAME}.svg",
        *(icons / f"{s}x{s}" / "apps" / f"{NAME}.png" for s in resources.ICON_SIZES),
    ]


def install(program: Path | None = None, root: Path | None = None) -> list[Path]:
    """Write the entry and the icons; returns the files written."""
    from workstation import resources

    desktop, svg, *pngs = installed_files(root)
    for path in (desktop, svg, *pngs):
        path.parent.mkdir(parents=True, exist_ok=True)
    desktop.write_text(desktop_text(program), encoding="utf-8")
    shutil.copyfile(resources.icon_path("workstation"), svg)
    for size, png in zip(resources.ICON_SIZES, pngs, strict=True):
        shutil.copyfile(resources.app_icon_png(size), png)
    _refresh(desktop.parent, svg.parents[2])
    for path in (desktop, svg, *pngs):
        print(f"wrote {path}")
    return [desktop, svg, *pngs]


def uninstall(root: Path | None = None) -> None:
    for path in installed_files(root):
        if path.exists():
            path.unlink()
            print(f"removed {path}")


def _refresh(applications: Path, icons: Path) -> None:
    """Tell the desktop, where its tools are installed (they are optional)."""
    for tool in (["update-desktop-database", str(applications)],
                 ["gtk-update-icon-cache", "-q", "-t", str(icons)]):  # fmt: skip
        if shutil.which(tool[0]):
            subprocess.run(tool, check=False, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program", nargs="?", type=Path, help="the program Exec= starts")
    parser.add_argument("--uninstall", action="store_true", help="remove what install wrote")
    args = parser.parse_args(argv)
    if args.uninstall:
        uninstall()
    else:
        if args.program is not None and not args.program.is_file():
            parser.error(f"no program {args.program}")
        install(args.program)
    return 0


if __name__ == "__main__":
    sys.exit(main())
