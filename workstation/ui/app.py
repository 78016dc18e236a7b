"""Start the window: ``workstation`` (or ``workstation --demo``) lands here.

One QApplication on a qasync event loop; a :class:`Session` (store, storage SCP, retrieve
queue; the demo archive with ``--demo``) opened before the window, in a worker thread while
the event loop turns (:func:`open_session`), and closed after it, so quitting persists running
retrieves and leaves no partial files.

A crash in Qt (a general protection fault in libQt6Core) kills the process without a word;
:func:`enable_crash_log` makes it leave the Python stack of every thread in the user's log
folder and on stderr. :class:`~workstation.ui.common.thread_guard.GuiThreadCollector` keeps Python's
garbage collection on the GUI thread, so no QObject is ever freed on a worker.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import platformdirs
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox, QProgressDialog

from workstation import resources
from workstation.errors import WorkstationError
from workstation.logs import tame_warnings
from workstation.session import Session
from workstation.settings import Settings
from workstation.ui.common.icons import app_icon
from workstation.ui.common.tasks import gui_loop
from workstation.ui.common.thread_guard import GuiThreadCollector
from workstation.ui.main_window import MainWindow

log = logging.getLogger(__name__)

APP_NAME = "Workstation"
#: Seconds a busy worker thread may hold the GIL before the GUI thread gets it (default 5 ms).
#: Every Python method Qt calls while painting (a model's data(), ~2,000 a repaint) must
#: reacquire it; at 1 ms the largest GUI stall while a 2,000-study search streams in drops
#: from ~180 ms to ~90-125 ms (measured, see the UI notes), at no cost in throughput.
GIL_SWITCH_INTERVAL = 0.001
#: After this long opening the store (ms), a small window says what is happening.
OPENING_NOTICE_MS = 400
#: The file, in the log folder, where a fatal error leaves the Python stacks.
CRASH_LOG = "crash.log"
#: A tiny helper process copying what faulthandler writes to the crash log and to stderr:
#: faulthandler writes to one file only, and a crashing process can run no code of its own.
#: It ends when our end of the pipe closes (when we exit or crash).
_TEE = r"""
import datetime, sys
data = sys.stdin.buffer.read1(65536)
if data:
    with open(sys.argv[1], "ab") as log:
        stamp = datetime.datetime.now().isoformat(timespec="seconds")
        log.write(f"=== {stamp}: workstation (pid {sys.argv[2]}) ended on a fatal error\n".encode())
        while data:
            log.write(data)
            log.flush()
            if sys.stderr is not None:
                sys.stderr.buffer.write(data)
                sys.stderr.flush()
            data = sys.stdin.buffer.read1(65536)
"""

_collector: GuiThreadCollector | None = None
_crash_pipe: subprocess.Popen[bytes] | None = None


def log_dir() -> Path:
    """Where the window writes its logs: ``$WORKSTATION_LOG_DIR``, else the user's log folder."""
    override = os.environ.get("WORKSTATION_LOG_DIR")
    return Path(override) if override else Path(platformdirs.user_log_dir("workstation"))


def enable_crash_log(directory: Path | None = None) -> Path | None:
    """Turn faulthandler on: a fatal error dumps every thread's Python stack to the crash log
    (``crash.log`` in :func:`log_dir`) and to stderr. Returns the log's path, or None when only
    stderr gets it (no log folder, or the copying helper cannot start)."""
    global _crash_pipe
    path = (directory or log_dir()) / CRASH_LOG
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tee = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _TEE, str(path), str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
    except OSError as exc:
        log.warning("no crash log (%s): a fatal error goes to stderr only", exc)
        faulthandler.enable(all_threads=True)
        return None
    assert tee.stdin is not None
    faulthandler.enable(file=tee.stdin, all_threads=True)
    _crash_pipe = tee  # the pipe stays open as long as we run
    return path


def _application() -> QApplication:
    app = QApplication.instance()
    if isinstance(app, QApplication):
        return app
    os.environ.setdefault("QT_API", "pyside6")  # qasync: never bind to another Qt binding
    app = QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName("workstation")
    app.setApplicationVersion(resources.version())
    app.setDesktopFileName("workstation")  # resources/workstation.desktop (Wayland, taskbars)
    app.setWindowIcon(app_icon())
    return app


def prepare_application() -> QApplication:
    """The QApplication, tuned as the window runs (also used by the GUI benchmark)."""
    app = _application()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    # pynetdicom logs every association and C-STORE at INFO; the log pane shows our own INFO.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    tame_warnings()  # pydicom's warnings about a peer's values: one line each, rate-limited
    global _collector
    if _collector is None:  # garbage collection on the GUI thread only (see thread_guard)
        _collector = GuiThreadCollector(app)
    return app


def open_session(
    loop: asyncio.AbstractEventLoop, *, demo: bool = False, settings: Settings | None = None
) -> Session:
    """:meth:`Session.open` in a worker thread while the event loop turns, so that nothing
    freezes: opening is quick, but a store whose index is migrated to a new schema takes
    seconds at a million instances. After :data:`OPENING_NOTICE_MS` a small window says what
    is happening. Raises what :meth:`Session.open` raises."""
    notice = QProgressDialog()
    notice.setWindowTitle(APP_NAME)
    notice.setLabelText(
        "Opening the local store…\n\nA store written by an older version is brought up to "
        "date once, which takes a while for a large store."
    )
    notice.setRange(0, 0)  # no percentage: a busy bar
    notice.setCancelButton(None)  # None: no button
    notice.setMinimumDuration(1 << 30)  # shown by the timer below, not by QProgressDialog
    timer = QTimer(notice, singleShot=True, interval=OPENING_NOTICE_MS)
    timer.timeout.connect(notice.show)
    timer.start()
    with ThreadPoolExecutor(1, thread_name_prefix="session-open") as pool:
        opening = loop.run_in_executor(pool, partial(Session.open, demo=demo, settings=settings))
        try:
            return loop.run_until_complete(opening)
        finally:
            timer.stop()
            notice.close()
            notice.deleteLater()


def run_app(demo: bool = False) -> int:
    """Open the Query/Retrieve window; return the exit code once it is closed."""
    crash_log = enable_crash_log()
    app = prepare_application()
    if crash_log is not None:
        log.info("a fatal error would leave the Python stacks in %s", crash_log)
    loop = gui_loop()
    try:
        session = open_session(loop, demo=demo)
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
