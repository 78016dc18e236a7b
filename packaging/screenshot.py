"""Take a screenshot of the window in demo mode: search, retrieve, save ``window.grab()``.

Usage (any Qt platform; in CI under Xvfb)::

    xvfb-run -a -s "-screen 0 1400x900x24" env QT_QPA_PLATFORM=xcb \\
        python packaging/screenshot.py out.png

Configuration and store go to a temporary folder, so the user's own are never touched.
The picture shows a name search, the series of the chosen study, one finished retrieve and one
in progress (the demo archive is slowed down for it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TIMEOUT = 30.0


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def drive(window: object, out: Path) -> None:
    from workstation.jobs import JobState
    from workstation.ui.main_window import MainWindow

    assert isinstance(window, MainWindow)
    session = window.session
    await wait_until(lambda: session.demo is not None, "the demo archive")
    await asyncio.sleep(0.2)
    panel = window.query_panel
    panel.patient_name.setText("smith")
    panel.request_search()
    await wait_until(lambda: not window.search.running and window.study_model.rowCount() > 0,
                     "the search")  # fmt: skip
    rows = sorted(window.study_model.rows, key=lambda r: r.instance_count or 0)
    first, second = rows[0], rows[-1]
    window.study_view.select_study(first.study_uid)
    window.retrieve_studies()
    queue = window.queue_view.model
    await wait_until(lambda: any(j.state is JobState.DONE for j in queue.rows), "a retrieve")
    assert session.demo is not None
    session.demo.delay_per_instance = 0.25
    window.study_view.select_study(second.study_uid)
    window.retrieve_studies()
    await wait_until(
        lambda: any(j.state is JobState.RUNNING and (j.fraction or 0) >= 0.4 for j in queue.rows),
        "the second retrieve to get going",
    )
    await wait_until(lambda: window.series_panel.model.rowCount() > 0, "the series")
    window.study_view.table.setFocus()
    await asyncio.sleep(0.3)  # let the last throttled updates paint
    window.grab().save(str(out))
    print(f"saved {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG file to write")
    parser.add_argument("--width", type=int, default=1380)
    parser.add_argument("--height", type=int, default=860)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="workstation-shot-"))
    os.environ["WORKSTATION_CONFIG_DIR"] = str(scratch / "config")
    os.environ["WORKSTATION_STORE_DIR"] = str(scratch / "store")
    os.environ.setdefault("QT_API", "pyside6")

    from PySide6.QtWidgets import QApplication

    from workstation.session import Session
    from workstation.settings import Settings
    from workstation.ui.app import GIL_SWITCH_INTERVAL
    from workstation.ui.common.tasks import gui_loop
    from workstation.ui.main_window import MainWindow

    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    app = QApplication(sys.argv[:1])
    app.setApplicationName("Workstation")
    loop = gui_loop()
    session = Session.open(demo=True, settings=Settings(store_port=0))
    window = MainWindow(session)
    window.resize(args.width, args.height)
    window.show()
    try:
        with loop:
            loop.run_until_complete(drive(window, args.out.absolute()))
    finally:
        window.close()
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
