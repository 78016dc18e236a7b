"""cProfile over every thread: pynetdicom does its reading and writing on its own threads.

``cProfile`` alone sees only the thread that enabled it, which for a C-FIND is the one that
iterates the responses, not pynetdicom's DUL reactor that reads the socket, nor (for C-MOVE) the
storage SCP's association threads that run our C-STORE handler. :func:`profile_threads` gives
each thread started inside the block its own profiler and merges them with the calling thread's.

By default every thread is timed with its own CPU clock, so the figures add up to the CPU the
process burnt and waiting costs nothing; with ``clock="wall"`` ``time.sleep`` and blocking waits
show as large own time instead: where threads wait, and (calls) how often they poll.
:func:`report` lists the top functions by own time, waits apart.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import pstats
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PREFIX = re.compile(r"/[^\s:(]*?(?:site-packages|lib/python3\.\d+|work/main)/")

#: Built-ins whose own time is waiting, not work (listed apart in the report).
WAITS = (
    "sleep",
    "acquire",
    "select",
    "wait",
    "poll",
    "recv",
    "recv_into",
    "accept",
    "'_thread.lock'",
)


@dataclass
class ThreadProfiles:
    main: cProfile.Profile
    threads: list[tuple[str, cProfile.Profile, threading.Thread]] = field(default_factory=list)

    def stats(self) -> pstats.Stats:
        """Merged statistics of the calling thread and every thread that has finished."""
        merged = pstats.Stats(self.main)
        for _name, profile, thread in self.threads:
            if not thread.is_alive():
                merged.add(profile)
        return merged

    @property
    def still_running(self) -> list[str]:
        return [name for name, _, thread in self.threads if thread.is_alive()]


@contextlib.contextmanager
def profile_threads(clock: str = "cpu") -> Iterator[ThreadProfiles]:
    """Profile the calling thread and every thread started in the block.

    ``clock="cpu"`` (default) times with each thread's CPU clock (``time.thread_time``), so a
    function's time is the CPU it burnt and waits cost nothing; ``"wall"`` uses cProfile's
    default wall clock, which shows where threads wait and for how long.

    Stop the servers started in the block before reading the statistics: a thread that is
    still alive is left out (its profile cannot be read safely from another thread).
    """
    timer = time.thread_time if clock == "cpu" else time.perf_counter
    original_run = threading.Thread.run
    result = ThreadProfiles(cProfile.Profile(timer))

    def run(self: threading.Thread) -> None:
        profile = cProfile.Profile(timer)
        result.threads.append((self.name, profile, self))
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    result.main.enable()
    try:
        yield result
    finally:
        result.main.disable()
        threading.Thread.run = original_run  # type: ignore[method-assign]


def _is_wait(function_label: str) -> bool:
    return function_label.startswith("{") and any(w in function_label for w in WAITS)


def report(profiles: ThreadProfiles, *, top: int = 25, dump: Path | None = None) -> str:
    """A text report: top functions by own time (work, then waits) and the busiest callers."""
    stats = profiles.stats()
    if dump is not None:
        stats.dump_stats(str(dump))
    rows = []
    for (filename, line, name), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        label = f"{filename}:{line}({name})" if filename != "~" else f"{{{name}}}"
        rows.append((tt, ct, nc, cc, _short(label)))
    work = sorted((r for r in rows if not _is_wait(r[4])), reverse=True)[:top]
    waits = sorted((r for r in rows if _is_wait(r[4])), reverse=True)[:8]
    out = io.StringIO()
    total = sum(r[0] for r in rows)
    out.write(f"threads profiled: {1 + len(profiles.threads)} (summed time {total:.2f} s)\n")
    if profiles.still_running:
        out.write(f"left out (still running): {', '.join(profiles.still_running)}\n")
    out.write(f"\n{'own s':>8} {'cum s':>8} {'calls':>9}  function (by own time, waits apart)\n")
    for tt, ct, nc, _cc, label in work:
        out.write(f"{tt:8.3f} {ct:8.3f} {nc:9d}  {label}\n")
    out.write(f"\n{'own s':>8} {'cum s':>8} {'calls':>9}  waiting (sleep, locks, select, recv)\n")
    for tt, ct, nc, _cc, label in waits:
        out.write(f"{tt:8.3f} {ct:8.3f} {nc:9d}  {label}\n")
    return out.getvalue()


def cumulative(profiles: ThreadProfiles, *, top: int = 30) -> str:
    """pstats' own listing by cumulative time, paths shortened."""
    buffer = io.StringIO()
    stats = profiles.stats()
    stats.stream = buffer  # type: ignore[attr-defined]
    stats.sort_stats("cumulative").print_stats(top)
    return _short(buffer.getvalue())


def _short(text: str) -> str:
    """Paths relative to site-packages, the standard library or the repository."""
    return _PREFIX.sub("", text)


# -- probes: CPU and wall time of chosen functions, per call, with little overhead ------------


@dataclass
class Probe:
    label: str
    depth: int
    calls: int = 0
    cpu_ns: int = 0
    wall_ns: int = 0


#: (module, attribute path in it, label, depth in the report tree). A function imported by name
#: into another module is probed where it is looked up (``local_store.read_header``).
RETRIEVE_PROBES: list[tuple[str, str, str, int]] = [
    ("pynetdicom.dul", "DULServiceProvider._read_pdu_data", "DUL: socket read + PDU decode", 0),
    ("pynetdicom.dimse", "DIMSEServiceProvider.receive_primitive", "DIMSE: P-DATA -> message", 0),
    ("pynetdicom.dul", "DULServiceProvider._send", "DUL: PDU encode + socket send", 0),
    ("pynetdicom.service_class", "StorageServiceClass.SCP", "C-STORE SCP (pynetdicom)", 0),
    ("pynetdicom.association", "Association._c_store_scp", "C-STORE SCP in C-GET (pynetdicom)", 0),
    ("workstation.dimse.storage", "StoreSink.handle_store", "our C-STORE handler", 1),
    ("pynetdicom.events", "Event.encoded_dataset", "event.encoded_dataset() (file meta)", 2),
    ("workstation.store.local_store", "read_header", "store: header parse (read_header)", 2),
    ("workstation.store.local_store", "write_atomic", "store: write_atomic", 2),
    ("workstation.store.writer", "resolve_in_root", "resolve_in_root (path check)", 3),
    ("workstation.store.writer", "_stage", "temp file write + fsync", 3),
    ("workstation.store.writer", "_fsync_dirs", "directory fsyncs", 3),
    ("workstation.store.index", "StoreIndex.submit", "index: queue the record", 3),
    ("pynetdicom.dimse", "DIMSEServiceProvider.send_msg", "DIMSE: encode + queue a message", 1),
    ("workstation.store.index", "StoreIndex._apply", "index writer thread: SQLite batches", 0),
    ("workstation.dimse.retrieve", "_plan", "listing C-FINDs (completion check)", 0),
]

FIND_PROBES: list[tuple[str, str, str, int]] = [
    ("pynetdicom.dul", "DULServiceProvider._read_pdu_data", "DUL: socket read + PDU decode", 0),
    ("pynetdicom.dimse", "DIMSEServiceProvider.receive_primitive", "DIMSE: P-DATA -> message", 0),
    (
        "pynetdicom.dimse_messages",
        "DIMSEMessage.message_to_primitive",
        "command set -> primitive",
        1,
    ),
    ("pynetdicom.association", "decode", "decode the identifier (pydicom)", 0),
    ("workstation.dimse.find", "ensure_character_set", "ensure_character_set", 0),
    ("workstation.cli.query_cmds", "write_json_line", "CLI: DICOM JSON line + flush", 0),
]


def _resolve(module: str, path: str) -> tuple[Any, str]:
    import importlib

    owner: Any = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


@contextlib.contextmanager
def probes(targets: list[tuple[str, str, str, int]]) -> Iterator[list[Probe]]:
    """Wrap each target to add up, per call, its thread CPU time and wall time (inclusive)."""
    found: list[Probe] = []
    restore: list[tuple[Any, str, Any]] = []
    for module, path, label, depth in targets:
        try:
            owner, name = _resolve(module, path)
            original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        except (ImportError, AttributeError, KeyError):
            continue  # not in this version: leave it out
        probe = Probe(label, depth)
        found.append(probe)

        def wrapper(*args: Any, _f: Any = original, _p: Probe = probe, **kwargs: Any) -> Any:
            cpu = time.thread_time_ns()
            wall = time.perf_counter_ns()
            try:
                return _f(*args, **kwargs)
            finally:
                _p.calls += 1
                _p.cpu_ns += time.thread_time_ns() - cpu
                _p.wall_ns += time.perf_counter_ns() - wall

        restore.append((owner, name, original))
        setattr(owner, name, wrapper)
    try:
        yield found
    finally:
        for owner, name, original in reversed(restore):
            setattr(owner, name, original)


def probe_report(found: list[Probe], *, units: int, unit: str, process_cpu_s: float) -> str:
    """Per-call and per-``unit`` CPU of each probe, as a share of the process's CPU."""
    out = io.StringIO()
    per_unit = 1e6 * process_cpu_s / units
    out.write(f"process CPU {process_cpu_s:.2f} s = {per_unit:.0f} us per {unit} (of {units})\n")
    out.write(f"{'calls':>7} {'us CPU/call':>11} {'us CPU/' + unit:>14} {'share':>6}  stage\n")
    for p in found:
        if not p.calls:
            continue
        cpu_us = p.cpu_ns / 1e3
        out.write(
            f"{p.calls:7d} {cpu_us / p.calls:11.1f} {cpu_us / units:14.1f} "
            f"{100 * p.cpu_ns / 1e9 / process_cpu_s:5.1f}%  {'  ' * p.depth}{p.label}"
            f" (wall {p.wall_ns / 1e3 / p.calls:.0f} us/call)\n"
        )
    return out.getvalue()
