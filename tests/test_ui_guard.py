"""Guard against PySide6 6.12.0 on Python 3.11: each Signal.emit() drops a reference to True,
and the interpreter aborts (``bool_dealloc``) after a few hundred emits. pyproject.toml
pins PySide6 below 6.12 for this reason."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import sys

from PySide6.QtCore import QObject, Signal
from pytestqt.qtbot import QtBot


class _Emitter(QObject):
    fired = Signal(bool)


def test_emitting_signals_keeps_the_reference_count_of_true(qtbot: QtBot) -> None:
    emitter = _Emitter()
    seen: list[bool] = []
    emitter.fired.connect(seen.append)
    before = sys.getrefcount(True)
    for _ in range(300):
        emitter.fired.emit(True)
    seen.clear()
    after = sys.getrefcount(True)
    # Immortal True (Python >= 3.12) has a huge, fixed count; on 3.11 it must not shrink.
    assert after >= before, f"True lost {before - after} references over 300 emits"
