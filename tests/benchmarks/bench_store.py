"""How the local store and its browser hold up as the store grows (issue 12's table).

    python -m tests.benchmarks.bench_store [--sizes 20k,100k,1m] [--rounds 5] [--workdir DIR]
        [--tree DIR] [--import-files 5000] [--import-rounds 2] [--arrivals 200]
        [--arrival-seconds 4] [--keystroke m]

Stores of N instances (studies of 10 in 2 series, ~3 studies a patient, names with accents,
Greek, Cyrillic and Japanese) are written through the code's own ``BatchWriter``, with an
empty placeholder file per row (only the crash check looks at them: no image is ever read),
and kept under ``--workdir`` keyed by size and index schema (version and a hash of its SQL).
``--tree DIR`` imports ``workstation`` from DIR (the "before" code) under this benchmark.

Each size runs in a child process (its RSS is the window's), which times: opening the store
after a crash (another process opened it and was killed) and after a clean close; then, each
round on a new :class:`MainWindow` offscreen with a 10 ms timer (as bench_gui's) noting
event-loop gaps: its construction; the "Local" column of 500 result studies (half held): the
rows are put in the Query/Retrieve table as a search's batch puts them, then timed from the
search's ``rows_added`` until the tracker's counts are in their Local cells (and the longest
gap meanwhile); the Local store tab until the patient list has painted rows; ``--keystroke``
typed in the filter box (longest gap; time until the list changed and painted, then stayed
quiet 0.5 s); clearing it (longest gap); a thread storing ``--arrivals`` instances as a
retrieve does: per browser refresh, the GUI thread's time (the call, which sends the query to
a worker, plus applying the rows it read) and the latency until the patient list's ``loaded``
signal says they are applied, the longest gap, and the share of the time the GUI thread was
on a CPU; deleting each arrived study (``LocalStore.delete_study`` on a worker thread); the
RSS (of the first window, and after the last round's). Last, importing ``--import-files``
small Part-10 files, in instances/s (the store is put back after).
Cells are medians over the rounds with min-max, "-" when nothing was measured.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("QT_API", "pyside6")
# The code under test comes first on the path (``--tree`` re-runs this module with it set).
sys.path.insert(0, os.environ.get("WS_BENCH_TREE") or str(Path(__file__).resolve().parents[2]))

import argparse
import asyncio
import contextlib
import hashlib
import json
import platform
import random
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, qVersion
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QLineEdit, QTableView

import workstation
from tests.benchmarks.common import (
    BENCH_DIR,
    REPO,
    fmt,
    free_port,
    loadavg,
    median,
    print_info,
    print_table,
    say,
)
from workstation.demo.generator import generate_bulk
from workstation.settings import Settings
from workstation.store import LocalStore
from workstation.store import schema as store_schema
from workstation.store.batch import BatchWriter
from workstation.store.importer import import_paths
from workstation.store.records import InstanceRecord
from workstation.ui.app import prepare_application
from workstation.ui.main_window import MainWindow

try:  # where the session and the GUI event loop live since the ui was split into packages
    from workstation.session import Session
    from workstation.ui.common.tasks import gui_loop
    from workstation.ui.local_store.store_browser import StoreBrowser
except ImportError:  # the layout before
    from workstation.ui.session import Session  # type: ignore[no-redef]
    from workstation.ui.store_browser import StoreBrowser  # type: ignore[no-redef]
    from workstation.ui.tasks import gui_loop  # type: ignore[no-redef]
try:  # the paged patient list and the search's cells (trees before them refresh in one call)
    from workstation.results import StudyRow
    from workstation.ui.local_store.store_pages import PatientPages
    from workstation.ui.search.study_cells import study_cells
except ImportError:
    PatientPages = None  # type: ignore[assignment,misc]
    StudyRow = None  # type: ignore[assignment,misc]
    study_cells = None  # type: ignore[assignment]

TREE = Path(sys.path[0]).resolve()

# -- the entry points of the code under test: adapt here when they are renamed ---------------

META_DIR = ".workstation"  # the store's own folder: the index lives in it
INDEX_NAME = "index.sqlite"
REFRESH_METHOD = "refresh"  # StoreBrowser's reload, timed while images arrive


def schema_key() -> str:
    """The schema version and a hash of the SQL that ``prepare`` creates in an empty index."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / INDEX_NAME
        conn = store_schema.connect(path, writer=True)
        try:
            store_schema.prepare(conn, path)
            sql = "\n".join(
                str(row[0]) for row in conn.execute("SELECT sql FROM sqlite_master ORDER BY name")
            )
        finally:
            conn.close()
    return f"v{store_schema.SCHEMA_VERSION}-{hashlib.sha256(sql.encode()).hexdigest()[:8]}"


@contextlib.contextmanager
def index_writer(db_path: Path) -> Iterator[BatchWriter]:
    """The store's own writer on a fresh index; the caller begins and commits."""
    conn = store_schema.connect(db_path, writer=True)
    try:
        store_schema.prepare(conn, db_path)
        yield BatchWriter(conn)
    finally:
        conn.close()


def open_store(root: Path) -> LocalStore:
    return LocalStore(root)


def crash_store(root: Path) -> None:
    """Open the store in another process and kill it: the next open is after a crash."""
    code = (
        "import os, signal, sys\nfrom workstation.store import LocalStore\n"
        "store = LocalStore(sys.argv[1])\nstore.flush()\nos.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(TREE)}
    done = subprocess.run([sys.executable, "-c", code, str(root)], cwd=TREE, env=env, check=False)
    if done.returncode != -signal.SIGKILL:
        raise RuntimeError(f"the crashing process ended with {done.returncode}")


def import_folder(store: LocalStore, folder: Path) -> int:
    """Import ``folder`` until indexed; the number of instances stored."""
    report = import_paths(store, [folder])
    store.flush()
    return report.stored


def show_store_tab(window: MainWindow) -> None:
    window.tabs.setCurrentWidget(window.store_browser)


def filter_box(window: MainWindow) -> QLineEdit:
    return window.store_browser.filter_edit


def patient_list(window: MainWindow) -> QTableView:
    return window.store_browser.patient_view


def load_results(window: MainWindow, study_uids: list[str]) -> None:
    """Put result rows for ``study_uids`` in the Query/Retrieve table as a search's batch
    does, their cells made beforehand (as the find helper process makes them); nothing in a
    tree before that search."""
    if StudyRow is None or study_cells is None:
        return
    rows = [
        StudyRow(study_uid=uid, patient_name=f"BENCH^{n}", instance_count=INSTANCES_PER_STUDY,
                 sources=("BENCH",))
        for n, uid in enumerate(study_uids)
    ]  # fmt: skip
    window.study_model.upsert_prepared([(row, study_cells(row)) for row in rows])


def look_up_local(window: MainWindow, study_uids: list[str], done: Callable[[], None]) -> None:
    """What the search does next with the rows :func:`load_results` added (``rows_added``:
    the tracker asks a worker for their "Local" counts); ``done()`` once the counts are in
    the model's Local cells."""
    tracker = window.tracker
    tracker.recounted.connect(lambda _uids: done())
    if StudyRow is None or study_cells is None:  # a tree before: the tracker's recount alone
        tracker.recount(study_uids)
        return
    window.search.rows_added.emit(list(study_uids))


def local_cells(window: MainWindow, study_uids: list[str]) -> list[str]:
    """The Local column's text of result studies (empty for a study not in the table)."""
    model = window.study_model
    column = [c.name for c in model.columns].index("LOCAL")
    cells = []
    for uid in study_uids:
        position = model.position(uid)
        cells.append("" if position is None else str(model.index(position, column).data()))
    return cells


def clear_results(window: MainWindow) -> None:
    window.study_model.clear()


# -- generated stores ---------------------------------------------------------------------------

GENERATOR_VERSION = 1
UID_ROOT = "1.2.826.0.1.3680043.10.1234.99"
SERIES_PER_STUDY, INSTANCES_PER_SERIES, STUDIES_PER_PATIENT = 2, 5, 3
INSTANCES_PER_STUDY = SERIES_PER_STUDY * INSTANCES_PER_SERIES
LATIN = (
    ("Müller", "Dvořák", "Østergaard", "García", "Nguyễn", "Kowalski", "O'Brien", "Jensen",
     "Rossi", "Lefèvre", "Öztürk", "Smith", "Brown", "Doe"),
    ("Jürgen", "Antonín", "Anna", "John", "Zoë", "José", "Peter", "Chloé", "Omar", "Ingrid"),
)  # fmt: skip
GREEK = (("Παπαδόπουλος", "Σωτηρίου", "Νικολάου"), ("Γιώργος", "Ελένη", "Δημήτρης"))
CYRILLIC = (("Иванов", "Петрова", "Смирнов"), ("Иван", "Ольга", "Сергей"))
JAPANESE = (
    (("Yamada", "山田"), ("Tanaka", "田中"), ("Suzuki", "鈴木")),
    (("Tarou", "太郎"), ("Hanako", "花子"), ("Ichirou", "一郎")),
)
PROTOCOLS = (
    ("CT", "CT THORAX", "CHEST"), ("CT", "CT HEAD", "HEAD"), ("MR", "MR BRAIN", "BRAIN"),
    ("MR", "MR KNEE LEFT", "KNEE"), ("CR", "CR CHEST PA", "CHEST"), ("US", "US THYROID", "NECK"),
    ("DX", "DX PELVIS", "PELVIS"), ("US", "US ABDOMEN", "ABDOMEN"),
)  # fmt: skip
SOP_CLASSES = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4",
               "CR": "1.2.840.10008.5.1.4.1.1.1", "US": "1.2.840.10008.5.1.4.1.1.6.1",
               "DX": "1.2.840.10008.5.1.4.1.1.1.1"}  # fmt: skip
PHYSICIANS = ("Weber^Klaus^^Dr.", "Nováková^Eva", "House^Gregory", "")


def study_uid(index: int) -> str:
    return f"{UID_ROOT}.1.{index}"


def _patient_name(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.9:
        family, given = LATIN if roll < 0.7 else GREEK if roll < 0.8 else CYRILLIC
        return f"{rng.choice(family)}^{rng.choice(given)}"
    (family_r, family_k), (given_r, given_k) = (rng.choice(part) for part in JAPANESE)
    return f"{family_r}^{given_r}={family_k}^{given_k}"


def generate(studies: int) -> Iterator[InstanceRecord]:
    """The instance records of a store of ``studies`` studies (deterministic)."""
    rng = random.Random(studies)
    patients = [
        (f"BS{i + 1:07d}", _patient_name(rng), f"19{rng.randint(30, 99)}0{rng.randint(1, 9)}15",
         rng.choice("MF"))
        for i in range(max(1, studies // STUDIES_PER_PATIENT))
    ]  # fmt: skip
    received = datetime(2026, 1, 5, tzinfo=UTC)
    for index in range(studies):
        patient_id, name, birth, sex = patients[rng.randrange(len(patients))]
        modality, description, body_part = rng.choice(PROTOCOLS)
        study = dict(
            study_uid=study_uid(index), patient_id=patient_id, patient_name=name,
            patient_birth_date=birth, patient_sex=sex,
            study_date=f"20{rng.randint(10, 25)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
            study_time=f"{rng.randint(7, 19):02d}{rng.randrange(60):02d}00",
            accession_number=f"ACC{index + 1:08d}", study_description=description,
            referring_physician_name=rng.choice(PHYSICIANS), modality=modality,
            body_part_examined=body_part, sop_class_uid=SOP_CLASSES[modality],
            transfer_syntax_uid="1.2.840.10008.1.2.1", received_at=received, size=0,
        )  # fmt: skip
        for number in range(1, SERIES_PER_STUDY + 1):
            series = f"{UID_ROOT}.2.{index}.{number}"
            for instance in range(1, INSTANCES_PER_SERIES + 1):
                sop = f"{UID_ROOT}.3.{index}.{number}.{instance}"
                yield InstanceRecord(
                    sop_instance_uid=sop, series_uid=series, series_number=number,
                    series_description=f"SERIES {number}", instance_number=instance,
                    path=f"{study['study_uid']}/{series}/{sop}.dcm", **study,  # type: ignore[arg-type]
                )  # fmt: skip


def cached_store(workdir: Path, instances: int, key: str) -> tuple[Path, str]:
    """The store of ``instances`` (rounded down to whole studies) for schema ``key``, built
    once; returns its folder and how it was obtained."""
    studies = max(1, instances // INSTANCES_PER_STUDY)
    root = workdir / f"store-{studies * INSTANCES_PER_STUDY}-{key}-g{GENERATOR_VERSION}"
    done = root.with_name(root.name + ".done")
    if done.exists() and (root / META_DIR / INDEX_NAME).exists():
        return root, "cached"
    say(f"building {root.name} ({studies} studies)")
    shutil.rmtree(root, ignore_errors=True)
    meta = root / META_DIR
    meta.mkdir(parents=True, mode=0o700)
    start = time.perf_counter()
    with ThreadPoolExecutor(1) as files, index_writer(meta / INDEX_NAME) as writer:
        writer.conn.execute("PRAGMA cache_size = -262144")  # 256 MB: 1M rows in a few minutes
        writer.begin()
        for count, record in enumerate(generate(studies), 1):
            writer.add(record)
            if record.instance_number == INSTANCES_PER_SERIES:  # the series' placeholders
                files.submit(_placeholders, f"{root}/{record.path}")
            if count % 50_000 == 0:
                writer.commit()
                writer.begin()
                say(f"  {count} instances, {time.perf_counter() - start:.0f} s")
        writer.commit()
    seconds = time.perf_counter() - start
    done.write_text(f"{studies * INSTANCES_PER_STUDY} instances built in {seconds:.0f} s\n")
    return root, f"built in {seconds:.0f} s"


def _placeholders(last: str) -> None:
    """Empty files for a series' instances, given the path of its last one."""
    folder, name = last.rsplit("/", 1)
    os.makedirs(folder, exist_ok=True)
    stem = name[: -len(f"{INSTANCES_PER_SERIES}.dcm")]
    for number in range(1, INSTANCES_PER_SERIES + 1):
        os.close(os.open(f"{folder}/{stem}{number}.dcm", os.O_CREAT | os.O_WRONLY, 0o600))


def count_instances(root: Path) -> int:
    uri = f"file:{root / META_DIR / INDEX_NAME}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0])


def cached_import_folder(workdir: Path, files: int) -> Path:
    """A folder of ``files`` small Part-10 files (studies of 10), written once."""
    folder = workdir / f"import-{files}"
    manifest = folder.with_name(folder.name + ".studies")
    if not manifest.exists():
        say(f"writing {files} files to import into {folder}")
        shutil.rmtree(folder, ignore_errors=True)
        archive = generate_bulk(5, max(1, files // 10), instances_per_study=10)
        archive.write(folder)
        manifest.write_text("".join(f"{s.StudyInstanceUID}\n" for s in archive.studies))
    return folder


# -- the child process of one size ------------------------------------------------------------

#: Every browser refresh: (start, GUI-thread seconds, seconds until its rows were applied).
REFRESHES: list[tuple[float, float, float]] = []
_PENDING: list[list[float]] = []  # refreshes not applied yet: [start, GUI-thread seconds]
#: Plain threads for the store's blocking calls (qasync's default executor uses QThreads).
BLOCKING = ThreadPoolExecutor(1, thread_name_prefix="bench-blocking")
QUIET_S = 0.5


def time_refreshes() -> None:
    """Time each browser refresh (wrapped before any window exists): the GUI thread's share
    (the call, which only sends the query to a worker, plus landing its rows: the patient
    list's ``apply`` or ``_replace`` and the browser's ``_changed``) and the latency until the
    patient list's ``loaded`` signal says its rows are applied (:func:`refresh_landed`).
    In a tree whose refresh reads and applies in the call, both are the call."""
    original = getattr(StoreBrowser, REFRESH_METHOD)
    asynchronous = PatientPages is not None

    def timed(self: StoreBrowser, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            took = time.perf_counter() - start
            if asynchronous:
                _PENDING.append([start, took])
            else:
                REFRESHES.append((start, took, took))

    setattr(StoreBrowser, REFRESH_METHOD, timed)
    if not asynchronous:
        return
    landing = [(PatientPages, "apply"), (PatientPages, "_replace"), (StoreBrowser, "_changed")]
    for owner, name in landing:
        setattr(owner, name, _on_gui_thread(getattr(owner, name)))


def _on_gui_thread(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method``, its time added to the oldest refresh not applied yet."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            if _PENDING:
                _PENDING[0][1] += time.perf_counter() - start

    return timed


def refresh_landed() -> None:
    """The patient list applied what a worker read (its ``loaded`` signal): the refreshes
    asked before now are done."""
    now = time.perf_counter()
    while _PENDING:
        start, gui = _PENDING.pop(0)
        REFRESHES.append((start, gui, now - start))


class ListWatch(QObject):
    """When the patient list's model changes, and when its viewport has painted rows."""

    def __init__(self, view: QTableView) -> None:
        super().__init__()
        self.view = view
        self.changes: list[float] = []
        self.paints: list[float] = []
        self._model: object = None
        view.viewport().installEventFilter(self)
        self._follow()

    def _follow(self) -> None:
        model = self.view.model()
        if model is self._model:
            return
        self._model = model
        for signal_ in (model.modelReset, model.layoutChanged, model.rowsInserted,
                        model.rowsRemoved, model.dataChanged):  # fmt: skip
            signal_.connect(self._changed)

    def _changed(self, *_args: object) -> None:
        self.changes.append(time.perf_counter())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            if self.view.model() is not self._model:  # a new model is a change too
                self._changed()
                self._follow()
            if self.view.model().rowCount() > 0:
                QTimer.singleShot(0, lambda: self.paints.append(time.perf_counter()))
        return False

    async def painted(self, since: float, timeout: float = 600) -> float:
        """Seconds from ``since`` until rows were painted."""
        await wait_until(lambda: any(t >= since for t in self.paints), timeout, "a paint")
        return next(t for t in self.paints if t >= since) - since

    async def settled(self, since: float, timeout: float = 600) -> float | None:
        """Seconds from ``since`` until the list changed and painted, once quiet for
        :data:`QUIET_S`; None when it did not change."""
        deadline = time.perf_counter() + timeout
        while True:
            await asyncio.sleep(0.02)
            now = time.perf_counter()
            last = max((t for t in self.changes if t >= since), default=None)
            if last is None:
                if now > deadline:
                    return None
            elif now - last >= QUIET_S:
                after = [t for t in self.paints if t >= last]
                return (after[0] if after else last) - since


class GapTimer(QObject):
    """bench_gui's StallMonitor in short: a 10 ms precise timer on the GUI thread; the gaps
    between its ticks are the event loop's stalls, ``gui_cpu`` the GUI thread's CPU time."""

    def __init__(self) -> None:
        super().__init__()
        self.timer = QTimer(self, interval=10, timerType=Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.ticks: list[float] = []
        self.gui_cpu = 0.0
        self._cpu = 0.0

    def _tick(self) -> None:
        self.ticks.append(time.perf_counter())

    def start(self) -> None:
        self.ticks, self._cpu = [time.perf_counter()], time.thread_time()
        self.timer.start()

    def stop(self) -> list[float]:
        """The gaps in ms since :meth:`start`."""
        self.timer.stop()
        self._tick()
        self.gui_cpu = time.thread_time() - self._cpu
        return [(b - a) * 1000 for a, b in zip(self.ticks, self.ticks[1:], strict=False)]


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        await asyncio.sleep(0.02)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def arrival_payloads(scratch: Path, count: int) -> tuple[list[bytes], list[str]]:
    archive = generate_bulk(77, max(1, count // 40), instances_per_study=40)
    paths = archive.write(scratch / "arrivals")
    return [p.read_bytes() for p in paths], [s.StudyInstanceUID for s in archive.studies]


async def arrivals(
    store: LocalStore, payloads: list[bytes], seconds: float, monitor: GapTimer
) -> dict[str, float]:
    """Store ``payloads`` over ``seconds`` on a thread while the browser shows the store."""
    errors: list[BaseException] = []

    def feed() -> None:
        start = time.perf_counter()
        try:
            for number, data in enumerate(payloads):
                time.sleep(max(0.0, start + number * seconds / len(payloads) - time.perf_counter()))
                store.store_bytes(data, source_aet="BENCH", durable=False)
        except BaseException as exc:
            errors.append(exc)

    loop = asyncio.get_running_loop()
    monitor.start()
    start = time.perf_counter()
    thread = threading.Thread(target=feed, name="bench-arrivals")
    thread.start()
    await wait_until(lambda: not thread.is_alive(), seconds + 120, "the arrivals")
    await loop.run_in_executor(BLOCKING, store.flush)
    await asyncio.sleep(0.6)  # the last throttled refresh
    wall = time.perf_counter() - start
    gaps = monitor.stop()
    if errors:
        raise errors[0]
    refreshes = [(gui, latency) for t, gui, latency in REFRESHES if t >= start]
    say(f"  arrivals: {len(refreshes)} refreshes, longest gap {max(gaps):.0f} ms")
    figures = {"refresh_busy": 100 * monitor.gui_cpu / wall, "refresh_stall": max(gaps) / 1000}
    if refreshes:
        figures["refresh"] = median([gui for gui, _ in refreshes])
        figures["refresh_latency"] = median([latency for _, latency in refreshes])
    return figures


async def window_round(
    args: argparse.Namespace, root: Path, payloads: list[bytes], arrived: list[str]
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    figures: dict[str, float] = {}
    settings = Settings(store_port=free_port(), store_bind="127.0.0.1", store_dir=str(root))
    session = Session.open(settings=settings)
    monitor = GapTimer()
    try:
        start = time.perf_counter()
        window = MainWindow(session)
        figures["construct"] = time.perf_counter() - start
        window.show()
        pages = getattr(window.store_browser, "patients", None)
        if PatientPages is not None and isinstance(pages, PatientPages):
            pages.loaded.connect(refresh_landed)
        await asyncio.sleep(1.0)
        studies = max(1, args.studies)
        held = [study_uid(i) for i in range(0, studies, max(1, studies // 250))][:250]
        wanted = held + [f"{UID_ROOT}.9.{i}" for i in range(500 - len(held))]
        answered: list[float] = []
        load_results(window, wanted)
        await asyncio.sleep(0.5)  # the rows painted, as a search's batch would be
        monitor.start()
        start = time.perf_counter()
        look_up_local(window, wanted, lambda: answered.append(time.perf_counter()))
        await wait_until(lambda: bool(answered), 600, "the Local look-up")
        figures["lookup"] = answered[0] - start
        figures["lookup_stall"] = max(monitor.stop()) / 1000
        if StudyRow is not None:
            shown = local_cells(window, held)
            if not all(shown):
                raise RuntimeError(f"Local cells left empty: {shown.count('')} of {len(shown)}")
            clear_results(window)
        watch = ListWatch(patient_list(window))
        monitor.start()
        start = time.perf_counter()
        show_store_tab(window)
        figures["tab"] = await watch.painted(start)
        await asyncio.sleep(QUIET_S)
        monitor.stop()
        before = patient_list(window).model().rowCount()
        monitor.start()
        start = time.perf_counter()
        QTest.keyClicks(filter_box(window), args.keystroke)
        shown = await watch.settled(start, timeout=30)
        figures["key_stall"] = max(monitor.stop()) / 1000
        if shown is not None:
            figures["key_list"] = shown
        after = patient_list(window).model().rowCount()
        monitor.start()
        start = time.perf_counter()
        filter_box(window).clear()
        await watch.settled(start, timeout=30)
        figures["clear_stall"] = max(monitor.stop()) / 1000
        say(f"  patients listed: {before}, after {args.keystroke!r}: {after}, "
            f"cleared: {patient_list(window).model().rowCount()}")  # fmt: skip
        figures |= await arrivals(session.store, payloads, args.arrival_seconds, monitor)
        deletes = []
        for uid in arrived:
            start = time.perf_counter()
            removed = await loop.run_in_executor(BLOCKING, session.store.delete_study, uid)
            deletes.append(time.perf_counter() - start)
            if removed != len(payloads) // len(arrived):
                raise RuntimeError(f"deleting an arrived study removed {removed} instances")
        figures["delete"] = median(deletes)
        figures["rss"] = rss_mb()
        window.close()
        await asyncio.sleep(0.2)
    finally:
        session.close()
    return figures


def store_opens(root: Path, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"crash_open": [], "clean_open": []}
    for _ in range(rounds):
        for key in times:
            if key == "crash_open":
                crash_store(root)
            start = time.perf_counter()
            store = open_store(root)
            times[key].append(time.perf_counter() - start)
            store.close()
        say(f"  open after a crash {times['crash_open'][-1]:.2f} s, "
            f"clean {times['clean_open'][-1]:.3f} s")  # fmt: skip
    return times


def imports(root: Path, folder: Path, study_uids: list[str], rounds: int) -> list[float]:
    """Instances per second of each import; the store is put back after each (the index
    from a backup, under a new inode: a connection left open cannot write into it)."""
    index = root / META_DIR / INDEX_NAME
    backup, spare = (index.with_name(f"{INDEX_NAME}.bench-{n}") for n in ("backup", "spare"))
    with (
        contextlib.closing(sqlite3.connect(index)) as src,
        contextlib.closing(sqlite3.connect(backup)) as dst,
    ):
        src.backup(dst)
    files = sum(1 for p in folder.rglob("*") if p.is_file())
    rates = []
    try:
        for _ in range(rounds):
            store = open_store(root)
            try:
                start = time.perf_counter()
                stored = import_folder(store, folder)
                rates.append(stored / (time.perf_counter() - start))
            finally:
                store.close()
                for uid in study_uids:
                    shutil.rmtree(root / uid, ignore_errors=True)
                shutil.copyfile(backup, spare)
                os.replace(spare, index)
                for suffix in ("-wal", "-shm"):
                    index.with_name(INDEX_NAME + suffix).unlink(missing_ok=True)
            if stored != files:
                raise RuntimeError(f"the import stored {stored} of {files} files")
            say(f"  import: {rates[-1]:.0f} instances/s")
    finally:
        backup.unlink(missing_ok=True)
    return rates


def worker(args: argparse.Namespace) -> int:
    root, folder = Path(args.worker), Path(args.import_folder)
    os.environ["PYTHONPATH"] = str(TREE)  # helper processes of the window run the tree too
    os.chdir(TREE)
    results: dict[str, list[float]] = store_opens(root, args.rounds)
    app = prepare_application()
    app.setQuitOnLastWindowClosed(False)  # a new window each round
    time_refreshes()
    loop = gui_loop()
    with tempfile.TemporaryDirectory(prefix="ws-bench-store-") as scratch:
        os.environ["WORKSTATION_CONFIG_DIR"] = str(Path(scratch) / "config")
        payloads, arrived = arrival_payloads(Path(scratch), args.arrivals)
        for round_ in range(1, args.rounds + 1):
            figures = loop.run_until_complete(window_round(args, root, payloads, arrived))
            for key, value in figures.items():
                results.setdefault(key, []).append(value)
            shown = ", ".join(f"{k} {v:.3g}" for k, v in figures.items())
            say(f"  window round {round_}/{args.rounds}: {shown}")
    results["rss_last"], results["rss"] = results["rss"][-1:], results["rss"][:1]
    app.processEvents()
    BLOCKING.shutdown()
    uids = folder.with_name(folder.name + ".studies").read_text().split()
    results["import"] = imports(root, folder, uids, args.import_rounds)
    print(json.dumps(results))
    return 0


# -- the table ---------------------------------------------------------------------------------

#: (key, what, unit, goal); ms and s rows hold seconds.
ROWS = (
    ("crash_open", "open the store after a crash (before the window appears)", "s",
     "< 100 ms to a usable window"),
    ("clean_open", "open the store after a clean close", "ms", ""),
    ("tab", "Local store tab → patient list painted", "ms", "< 100 ms"),
    ("key_stall", "first keystroke of the name filter: window frozen", "ms", "< 50 ms stall"),
    ("key_list", "first keystroke of the name filter: until the list shows", "ms", "< 100 ms"),
    ("clear_stall", "clearing the filter: longest stall", "ms", "< 50 ms"),
    ("refresh", "browser refresh (every 400 ms) while images arrive: GUI thread", "ms",
     "< 10 ms"),
    ("refresh_latency", "  until its rows are applied", "ms", ""),
    ("refresh_stall", "  longest stall meanwhile", "ms", "< 50 ms"),
    ("refresh_busy", "  the GUI thread busy meanwhile", "%", ""),
    ("lookup", 'first "Local" column look-up of 500 result studies: cells filled', "ms",
     "< 20 ms"),
    ("lookup_stall", "  longest stall meanwhile", "ms", "< 50 ms"),
    ("delete", "delete a study (holds the index writer)", "ms", "< 50 ms"),
    ("construct", "window construction", "ms", "< 150 ms"),
    ("import", "import a folder", "/s", "≥ 2,000 instances/s"),
    ("import_1m", "  1M instances at that rate", "min", ""),
    ("rss", "window memory (RSS), the first window", "MB", "flat as the store grows"),
    ("rss_last", "  after the last round's (windows one after another)", "MB", ""),
)  # fmt: skip


def cell(values: list[float], unit: str) -> str:
    """The median and min-max of ``values`` (seconds for the ms rows), as a table cell."""
    if not values:
        return "-"
    shown = [v * 1000 for v in values] if unit == "ms" else values
    text = f"{fmt(median(shown))} {unit}".replace(" /s", "/s")
    return f"{text} ({fmt(min(shown))}-{fmt(max(shown))})" if len(shown) > 1 else text


def parse_size(text: str) -> int:
    text = text.strip().lower()
    factor = {"k": 1000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * factor)


def size_name(instances: int) -> str:
    for factor, suffix in ((1_000_000, "M"), (1000, "k")):
        if instances >= factor and instances % factor == 0:
            return f"{instances // factor}{suffix}"
    return str(instances)


def run_size(args: argparse.Namespace, root: Path, folder: Path) -> dict[str, list[float]]:
    argv = [sys.executable, "-m", "tests.benchmarks.bench_store", "--worker", str(root),
            "--import-folder", str(folder),
            "--rounds", str(args.rounds), "--import-rounds", str(args.import_rounds),
            "--arrivals", str(args.arrivals), "--arrival-seconds", str(args.arrival_seconds),
            "--keystroke", args.keystroke,
            "--studies", str(count_instances(root) // INSTANCES_PER_STUDY)]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, stdout=subprocess.PIPE, check=False, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the run on {root.name} failed ({done.returncode})")
    results: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    results["import_1m"] = [1e6 / rate / 60 for rate in results.get("import", [])]
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="20k,100k,1m", help="instances, e.g. 20k,100k,1m")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workdir", default=str(BENCH_DIR / "store"), help="cached stores")
    parser.add_argument("--tree", help="the source tree to measure (default: this one)")
    parser.add_argument("--import-files", type=int, default=5000)
    parser.add_argument("--import-rounds", type=int, default=2)
    parser.add_argument("--arrivals", type=int, default=200, help="instances, studies of 40")
    parser.add_argument("--arrival-seconds", type=float, default=4.0)
    parser.add_argument("--keystroke", default="m", help="typed into the filter box")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--import-folder", help=argparse.SUPPRESS)
    parser.add_argument("--studies", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tree and Path(args.tree).resolve() != TREE:
        env = {**os.environ, "WS_BENCH_TREE": str(Path(args.tree).resolve())}
        command = [sys.executable, "-m", "tests.benchmarks.bench_store", *argv]
        return subprocess.run(command, cwd=REPO, env=env, check=False).returncode
    if not Path(workstation.__file__).resolve().is_relative_to(TREE):
        raise RuntimeError(f"workstation comes from {workstation.__file__}, not from {TREE}")
    if args.worker:
        return worker(args)
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    key = schema_key()
    git = subprocess.run(["git", "-C", str(TREE), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    info = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {_cpu()}, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "Qt": f"{qVersion()} ({os.environ['QT_QPA_PLATFORM']})",
        "SQLite": sqlite3.sqlite_version,
        "code measured": f"{TREE} ({git or 'not a git checkout'}), index schema {key}",
        "load average at start": loadavg(),
    }
    print_info(info)
    folder = cached_import_folder(workdir, args.import_files)
    columns: list[tuple[str, dict[str, list[float]]]] = []
    for instances in sizes:
        root, how = cached_store(workdir, instances, key)
        held = count_instances(root)
        say(f"{size_name(held)} instances ({how}): measuring")
        results = run_size(args, root, folder)
        if count_instances(root) != held:  # never reuse a store the run changed
            root.with_name(root.name + ".done").unlink()
            raise RuntimeError(f"{root.name} changed during the run; it will be rebuilt")
        columns.append((size_name(held), results))
    rows = [[what, *(cell(r.get(k, []), unit) for _, r in columns), goal]
            for k, what, unit, goal in ROWS]  # fmt: skip
    print_table(
        f"Local store and its browser, medians of {args.rounds} rounds (min-max); filter "
        f"keystroke {args.keystroke!r}; import of {args.import_files} files, "
        f"{args.import_rounds} rounds; load average at the end {loadavg()}",
        ["action", *(f"{name} instances" for name, _ in columns), "goal"],
        rows,
    )
    return 0


def _cpu() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


if __name__ == "__main__":
    sys.exit(main())
