"""The image viewer: a series at a time, scrolling, window/level, zoom and pan, presets.

``from workstation.ui.viewer import ViewerWindow`` imports Qt only when the name is used, so
walking the package's modules (tests/test_architecture.py) loads no Qt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workstation.ui.viewer.window import ViewerWindow

__all__ = ["ViewerWindow"]


def __getattr__(name: str) -> Any:
    if name == "ViewerWindow":
        from workstation.ui.viewer.window import ViewerWindow

        return ViewerWindow
    raise AttributeError(name)
