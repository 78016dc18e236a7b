"""How long the window's event loop stalls while a big search streams in and a retrieve runs.

    python -m tests.benchmarks.bench_gui [--studies 10000] [--instances 1000]
        [--archive orthanc|inprocess|both] [--repeat 1] [--profile]

The real :class:`MainWindow` runs offscreen (unless ``QT_QPA_PLATFORM`` says otherwise) on a
temporary config and store folder, set up as ``workstation`` sets it up. A 10 ms
``Qt.PreciseTimer`` notes when the event loop comes round; a gap is the time between two ticks
(10 ms when idle). Each case is timed from the user's action until its result is in the
window, plus one second of settling:

- **search**: the form blank, Enter in the patient name, "Search everything?" answered by
  clicking Yes. Ends when all N studies are rows of the results table
  (``MAX_MATCHES_PER_QUERY``, 5,000 in the window, is raised to N here).
- **retrieve**: one study of M 64x64 images found by patient ID, selected, and fetched with the
  Retrieve action (C-MOVE to the window's own storage SCP). Ends when the queue shows it done.

The PACS is ``orthanc``: Orthanc in another process, Nagle off, its storage cached under
/tmp/ws-bench (:mod:`tests.benchmarks.common`); or ``inprocess``: two :class:`DemoArchive`
in this process, whose pynetdicom threads share the window's GIL. ``--profile`` adds, per
case: time spent in each throttled flush, in painting the results table (through a Python
``paintEvent``, which is what the window's :class:`TableView` does), the biggest stalls split
into time on a CPU, waiting for a CPU and asleep (the GIL, a lock), CPU time per thread, and
the garbage collections by generation (a full one holds the GIL for tens of milliseconds).
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")

import argparse
import asyncio
import contextlib
import gc
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QPaintEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox, QTableView

from tests.benchmarks.common import (
    CachedOrthanc,
    cached_files,
    cpu_seconds_of,
    free_port,
    loadavg,
    machine_info,
    print_info,
    print_table,
    say,
)
from workstation.demo.archive import DemoArchive
from workstation.demo.generator import generate_bulk, generate_large_study
from workstation.jobs import JobState
from workstation.nodes import RemoteNode, RetrieveMethod
from workstation.session import Session
from workstation.settings import Settings
from workstation.ui.app import prepare_application
from workstation.ui.common import batch_buffer
from workstation.ui.common.tasks import gui_loop
from workstation.ui.main_window import MainWindow
from workstation.ui.search import study_search, study_view

TICK_MS = 10
STALL_MS = 50
SETTLE_S = 1.0
SEARCH_NODE, STUDY_NODE = "BULK", "BIG"
HEADERS = ["case", "PACS", "items", "seconds", "items/s", "max gap ms", "p99 ms",
           f"gaps>{STALL_MS}ms", "GUI CPU s", "load"]  # fmt: skip


class StallMonitor(QObject):
    """A 10 ms precise timer on the GUI thread; the gaps between its ticks are the stalls."""

    def __init__(self, pacs_pids: list[int]) -> None:
        super().__init__()
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.ticks: list[float] = []
        self.sched: list[tuple[int, int]] = []  # the GUI thread's (ran, waited) ns per tick
        self.cpu_by_thread: defaultdict[str, float] = defaultdict(float)
        self._schedstat = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")
        self._names: dict[int, str] = {}
        self._pids = pacs_pids
        self._before: dict[str, float] = {}

    def _tick(self) -> None:
        self.ticks.append(time.perf_counter())
        ran, waited, _ = self._schedstat.read_text().split()
        self.sched.append((int(ran), int(waited)))
        if len(self.ticks) % 20 == 0:  # threads come and go: remember their names
            self._names.update((t.native_id or 0, t.name) for t in threading.enumerate())

    def _cpu(self) -> dict[str, float]:
        """CPU seconds so far of each thread of ours (by id) and of each PACS process."""
        seconds: dict[str, float] = {}
        for task in Path("/proc/self/task").iterdir():
            with contextlib.suppress(OSError):
                seconds[task.name] = int((task / "schedstat").read_text().split()[0]) / 1e9
        for pid in self._pids:
            seconds[f"pid{pid}"] = cpu_seconds_of(pid)
        return seconds

    def start(self) -> None:
        self.ticks, self.sched = [], []
        self._before = self._cpu()
        self._tick()
        self.timer.start()

    def stop(self) -> list[float]:
        """The gaps in ms since :meth:`start`; fills :attr:`cpu_by_thread`."""
        self.timer.stop()
        self._names.update((t.native_id or 0, t.name) for t in threading.enumerate())
        self.cpu_by_thread.clear()
        for key, seconds in self._cpu().items():
            name = f"PACS {key}" if key.startswith("pid") else self._names.get(int(key), "?")
            self.cpu_by_thread[name.split("@")[0].rstrip("0123456789_-")] += (
                seconds - self._before.get(key, 0.0)
            )
        return [(b - a) * 1000 for a, b in zip(self.ticks, self.ticks[1:], strict=False)]

    @property
    def gui_cpu(self) -> float:
        return (self.sched[-1][0] - self.sched[0][0]) / 1e9 if self.sched else 0.0

    def stalls(self) -> list[tuple[float, float, float, float]]:
        """Gaps over :data:`STALL_MS`, longest first: (wall ms, ran ms, waited-for-CPU ms, at s).

        The rest of the wall time the GUI thread slept: for the GIL, or a lock.
        """
        pairs = zip(self.ticks, self.ticks[1:], self.sched, self.sched[1:], strict=False)
        spans = [
            ((b - a) * 1000, (d[0] - c[0]) / 1e6, (d[1] - c[1]) / 1e6, a - self.ticks[0])
            for a, b, c, d in pairs
        ]
        return sorted((s for s in spans if s[0] > STALL_MS), reverse=True)


class Profile:
    """``--profile``: times each BatchBuffer flush, each paint of the results table and each
    garbage collection (whichever thread ran it, every other thread waited for the GIL)."""

    def __init__(self) -> None:
        self.flushes: dict[str, list[float]] = defaultdict(list)
        self.paints: list[tuple[float, float]] = []  # (wall ms, CPU ms)
        self.collections: dict[int, list[float]] = defaultdict(list)  # generation: ms
        self._gc_started = 0.0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.collections[info["generation"]].append(
                (time.perf_counter() - self._gc_started) * 1000
            )

    def install(self) -> None:
        """Before the window is built: wrap the flush, and the results table's class."""
        flushes, paints = self.flushes, self.paints
        buffer_class: Any = batch_buffer.BatchBuffer
        name = "_drain" if hasattr(buffer_class, "_drain") else "flush"
        original = getattr(buffer_class, name)

        def timed(buffer: Any, *args: Any) -> None:
            start = time.perf_counter()
            original(buffer, *args)
            label = getattr(buffer._consume, "__qualname__", "?")
            flushes[label].append((time.perf_counter() - start) * 1000)

        setattr(buffer_class, name, timed)
        attribute = "TableView" if hasattr(study_view, "TableView") else "QTableView"
        base: type[QTableView] = getattr(study_view, attribute)

        class TimedTableView(base):  # type: ignore[valid-type,misc]
            def paintEvent(self, event: QPaintEvent) -> None:
                start, cpu = time.perf_counter(), time.thread_time()
                super().paintEvent(event)
                wall, used = time.perf_counter() - start, time.thread_time() - cpu
                paints.append((wall * 1000, used * 1000))

        setattr(study_view, attribute, TimedTableView)

    def report(self, monitor: StallMonitor, case: str) -> None:
        print(f"\n  profile of {case}:")
        for label, values in sorted(self.flushes.items()):
            median = statistics.median(values)
            print(f"    flush {label}: {len(values)}, total {sum(values):.0f} ms, "
                  f"median {median:.1f} ms, max {max(values):.1f} ms")  # fmt: skip
        if self.paints:
            walls = sorted(w for w, _ in self.paints)
            worst = ", ".join(f"{w:.0f}/{c:.0f}" for w, c in sorted(self.paints)[-5:][::-1])
            print(f"    results table paints: {len(walls)}, median {statistics.median(walls):.1f}"
                  f" ms; longest (ms wall/CPU): {worst}")  # fmt: skip
        stalls = ", ".join(f"{w:.0f}/{r:.0f}/{q:.0f} at {t:.1f}s" for w, r, q, t in
                           monitor.stalls()[:8])  # fmt: skip
        print(f"    stalls (ms wall/on a CPU/waiting for one): {stalls or 'none'}")
        busy = sorted(monitor.cpu_by_thread.items(), key=lambda item: -item[1])[:6]
        print("    CPU s by thread: " + ", ".join(f"{name} {sec:.1f}" for name, sec in busy))
        collected = ", ".join(
            f"gen{generation} {len(ms)}, longest {max(ms):.0f} ms"
            for generation, ms in sorted(self.collections.items())
        )
        print(f"    garbage collections: {collected or 'none'}")
        self.flushes.clear()
        self.paints.clear()
        self.collections.clear()


@dataclass
class Pacs:
    """The two nodes: N small studies to search, one big study to retrieve."""

    label: str
    bulk: RemoteNode
    big: RemoteNode
    big_uid: str
    add_destination: Callable[[str, int], None]
    pids: list[int]


@contextlib.contextmanager
def orthanc_pacs(studies: int, instances: int) -> Iterator[Pacs]:
    bulk_files = cached_files(f"bulk-s1-n{studies}", lambda: generate_bulk(1, studies))
    big_files = cached_files(
        f"large-s1-n{instances}-64", lambda: generate_large_study(1, instances, 64, 64)
    )
    with (
        CachedOrthanc(f"gui-find-s1-n{studies}", bulk_files, tcp_nodelay=True) as bulk,
        CachedOrthanc(f"gui-retrieve-s1-n{instances}-64", big_files, tcp_nodelay=True) as big,
    ):
        yield Pacs(
            "Orthanc (other process)",
            bulk.server.node,
            big.server.node,
            generate_large_study(1, 1, 1, 1).studies[0].StudyInstanceUID,  # same UID, cheaply
            lambda aet, port: big.server.add_modality(aet, port=port),
            [p.process.pid for p in (bulk.server, big.server) if p.process is not None],
        )


@contextlib.contextmanager
def inprocess_pacs(studies: int, instances: int) -> Iterator[Pacs]:
    say(f"building in-process archives ({studies} studies, {instances} instances)")
    bulk = DemoArchive(generate_bulk(1, studies), ae_title="BULK").start()
    large = generate_large_study(1, instances, 64, 64)
    big = DemoArchive(large, ae_title="BIG").start()
    try:
        yield Pacs(
            "DemoArchive (this process)",
            bulk.node,
            big.node,
            large.studies[0].StudyInstanceUID,
            lambda aet, port: big.add_destination(aet, "127.0.0.1", port),
            [],
        )
    finally:
        bulk.stop()
        big.stop()


# -- driving the window as a user would ----------------------------------------------------


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        await asyncio.sleep(0.02)


def answer_yes_when_asked() -> None:
    """Click Yes in the next modal question (the blank-search confirmation)."""

    def click() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox) and box.isVisible():
            box.button(QMessageBox.StandardButton.Yes).click()
        else:
            QTimer.singleShot(20, click)

    QTimer.singleShot(20, click)


async def search(window: MainWindow, node: str, expected: int, patient_id: str = "") -> float:
    """Search ``node`` from the form; the seconds until ``expected`` rows are shown."""
    panel = window.query_panel
    panel.select_nodes([node])
    panel.clear()
    panel.patient_id.setText(patient_id)
    done: list[str] = []
    window.search.finished.connect(done.append)
    if not patient_id:
        answer_yes_when_asked()
    start = time.perf_counter()
    # From a plain Qt callback: the question box runs a nested event loop.
    QTimer.singleShot(0, lambda: QTest.keyClick(panel.patient_name, Qt.Key.Key_Return))
    model = window.study_model
    await wait_until(lambda: bool(done) and model.rowCount() >= expected, 600, "the search")
    seconds = time.perf_counter() - start
    window.search.finished.disconnect(done.append)
    if model.rowCount() != expected:
        raise RuntimeError(f"the search showed {model.rowCount()} studies, not {expected}")
    return seconds


async def retrieve(window: MainWindow, uid: str) -> float:
    """Select the study, trigger Retrieve; the seconds until the queue shows it done."""
    if not window.study_view.select_study(uid):
        raise RuntimeError("the study to retrieve is not in the results")
    await asyncio.sleep(0.3)  # the series pane loads once the selection settles
    start = time.perf_counter()
    window.retrieve_action.trigger()
    model = window.queue_view.model
    await wait_until(
        lambda: any(j.study_uid == uid and j.is_finished for j in model.rows), 600, "the retrieve"
    )
    seconds = time.perf_counter() - start
    job = next(j for j in model.rows if j.study_uid == uid)
    if job.state is not JobState.DONE:
        raise RuntimeError(f"the retrieve ended {job.state}: {job.message}")
    return seconds


async def measure(
    monitor: StallMonitor, action: Awaitable[float], items: int, case: str, pacs: str
) -> list[str]:
    monitor.start()
    seconds = await action
    await asyncio.sleep(SETTLE_S)
    gaps = sorted(monitor.stop())
    p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
    worst = ", ".join(f"{w:.0f} ms at {t:.1f} s" for w, _r, _q, t in monitor.stalls()[:3])
    say(f"{case}: {items} in {seconds:.2f} s, max gap {gaps[-1]:.0f} ms, p99 {p99:.0f} ms; "
        f"longest: {worst or '-'}")  # fmt: skip
    return [case, pacs, str(items), f"{seconds:.2f}", f"{items / seconds:.0f}",
            f"{gaps[-1]:.0f}", f"{p99:.0f}", str(sum(g > STALL_MS for g in gaps)),
            f"{monitor.gui_cpu:.2f}", loadavg().split()[0]]  # fmt: skip


async def run_case(
    pacs: Pacs, args: argparse.Namespace, folder: Path, profile: Profile | None
) -> list[list[str]]:
    nodes = {
        SEARCH_NODE: pacs.bulk.with_options(name=SEARCH_NODE, dimse_timeout=300.0),
        STUDY_NODE: pacs.big.with_options(name=STUDY_NODE, retrieve_method=RetrieveMethod.MOVE),
    }
    settings = Settings(
        store_port=free_port(), store_bind="127.0.0.1", store_dir=str(folder / "store"),
        nodes=nodes, retrieve_idle_timeout=30.0,
    )  # fmt: skip
    session = Session.open(settings=settings)
    pacs.add_destination(session.scp.ae_title, session.scp.port)
    window = MainWindow(session)
    monitor = StallMonitor(pacs.pids)
    rows: list[list[str]] = []
    try:
        window.show()
        await asyncio.sleep(1.0)  # the C-FIND helper process starts
        for round_ in range(1, args.repeat + 1):
            search_all = search(window, SEARCH_NODE, args.studies)
            rows.append(await measure(monitor, search_all, args.studies, "search", pacs.label))
            if profile is not None:
                profile.report(monitor, f"search, round {round_}")
            await search(window, STUDY_NODE, 1, patient_id="BIG-000001")
            if round_ > 1:
                session.store.delete_study(pacs.big_uid)
            fetch = retrieve(window, pacs.big_uid)
            rows.append(await measure(monitor, fetch, args.instances, "retrieve", pacs.label))
            if profile is not None:
                profile.report(monitor, f"retrieve, round {round_}")
            held = session.store.study_completeness(pacs.big_uid)  # waits for the index
            if held != args.instances:
                raise RuntimeError(f"the store holds {held} of {args.instances} instances")
            window.queue_view.clear_finished()
            await asyncio.sleep(0.3)
    finally:
        window.close()
        session.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--instances", type=int, default=1_000)
    parser.add_argument("--archive", choices=["orthanc", "inprocess", "both"], default="orthanc")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of both cases")
    parser.add_argument("--profile", action="store_true", help="flushes, paints, stalls, CPU")
    args = parser.parse_args(argv)
    info = machine_info()
    info["platform"] = os.environ["QT_QPA_PLATFORM"]
    study_search.MAX_MATCHES_PER_QUERY = max(study_search.MAX_MATCHES_PER_QUERY, args.studies)
    profile = Profile() if args.profile else None
    if profile is not None:
        profile.install()
    app = prepare_application()
    info["GIL switch interval"] = f"{sys.getswitchinterval() * 1000:g} ms"
    print_info(info)
    loop = gui_loop()
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="ws-bench-gui-") as scratch:
        os.environ["WORKSTATION_CONFIG_DIR"] = str(Path(scratch) / "config")
        os.environ["WORKSTATION_STORE_DIR"] = str(Path(scratch) / "store")
        for kind in ["orthanc", "inprocess"] if args.archive == "both" else [args.archive]:
            make = orthanc_pacs if kind == "orthanc" else inprocess_pacs
            with make(args.studies, args.instances) as pacs:
                folder = Path(tempfile.mkdtemp(dir=scratch, prefix=kind))
                rows += loop.run_until_complete(run_case(pacs, args, folder, profile))
    print_table(
        f"GUI event-loop gaps ({TICK_MS} ms precise timer), {info['platform']}, "
        f"{args.studies} studies / {args.instances} instances",
        HEADERS,
        rows,
    )
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
