"""Start the window: ``workstation`` (or ``workstation --demo``) lands here.

One QApplication on a qasync event loop; a :class:`Session` (store, storage SCP, retrieve
queue; the demo archive with ``--demo``) opened before the window and closed after it, so
quitting persists running retrieves and leaves no partial files.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from PySide6.QtWidgets import QApplication, QMessageBox

from workstation.errors import WorkstationError
from workstation.ui.main_window import MainWindow
from workstation.ui.session import Session
from workstation.ui.tasks import gui_loop

log = logging.getLogger(__name__)

APP_NAME = "Workstation"
#: Seconds a busy worker thread may hold the GIL before the GUI thread gets it (default 5 ms).
#: Every Python method Qt calls while painting (a model's data(), ~2,000 a repaint) must
#: reacquire it; at 1 ms the largest GUI stall while a 2,000-study search streams in drops
#: from ~180 ms to ~90-125 ms (measured, see the UI notes), at no cost in throughput.
GIL_SWITCH_INTERVAL = 0.001


def _application() -> QApplication:
    app = QApplication.instance()
    if isinstance(app, QApplication):
        return app
    os.environ.setdefault("QT_API", "pyside6")  # qasync: never bind to another Qt binding
    app = QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("workstation")
    return app


def prepare_application() -> QApplication:
    """The QApplication, tuned as the window runs (also used by the GUI benchmark)."""
    app = _application()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    # pynetdicom logs every association and C-STORE at INFO; the log pane shows our own INFO.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    return app


def run_app(demo: bool = False) -> int:
    """Open the Query/Retrieve window; return the exit code once it is closed."""
    app = prepare_application()
    loop = gui_loop()
    try:
        session = Session.open(demo=demo)
    except WorkstationError as exc:
        log.error("cannot start: %s", exc)
        QMessageBox.critical(None, APP_NAME, f"The workstation cannot start:\n\n{exc}")
        return 1
    window = MainWindow(session)
    closed = asyncio.Event()
    app.setQuitOnLastWindowClosed(False)  # the loop below ends the application, not Qt
    app.lastWindowClosed.connect(closed.set)
    window.show()
    code = 0
    try:
        with loop:
            loop.run_until_complete(closed.wait())
    except KeyboardInterrupt:  # Ctrl+C in the terminal that started us: quit cleanly
        code = 130
    finally:
        window.close()
        session.close()
    return code
