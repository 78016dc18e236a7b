"""Render the application icon's PNGs from ``resources/workstation.svg`` with Qt's SVG renderer.

Usage::

    QT_QPA_PLATFORM=offscreen python packaging/render_icons.py          # rewrite the PNGs
    QT_QPA_PLATFORM=offscreen python packaging/render_icons.py --check  # exit 1 if stale

The PNGs (16 to 256 px, ``resources/icons/workstation-<size>.png``) are committed: they are
small, and desktops and the window's title bar use them where no SVG loader is at hand. Run
this after editing the SVG; ``tests/test_resources.py`` fails while they differ.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
SIZES = (16, 32, 48, 64, 128, 256)


def render(svg: Path, size: int) -> QImage:
    """The SVG drawn at ``size`` x ``size`` pixels (ARGB, transparent corners)."""
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def png_path(size: int, root: Path = RESOURCES) -> Path:
    return root / "icons" / f"workstation-{size}.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether they are stale")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    stale = []
    for size in SIZES:
        image = render(RESOURCES / "workstation.svg", size)
        out = png_path(size)
        if args.check:
            saved = QImage(str(out)).convertToFormat(QImage.Format.Format_ARGB32)
            if saved != image:
                stale.append(out.name)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(out)):
            raise SystemExit(f"cannot write {out}")
        print(f"wrote {out}")
    if stale:
        print("stale (run packaging/render_icons.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
