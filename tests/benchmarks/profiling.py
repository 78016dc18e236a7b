"""cProfile over every thread, and cheap per-stage probes, for the benchmarks' ``--profile``.

``cProfile`` alone sees only the thread that enabled it. A C-MOVE runs our storage SCP's
association threads (one per association, reading PDUs and writing the store) and the store
index's writer thread beside the thread that sends the request and reads the responses.
:func:`profile_threads` gives each thread started inside the block its own profiler and merges
them with the calling thread's.

By default every thread is timed with its own CPU clock, so the figures add up to the CPU the
process burnt and waiting costs nothing; with ``clock="wall"`` ``time.sleep`` and blocking waits
show as large own time instead: where threads wait, and (calls) how often they poll.
:func:`report` lists the top functions by own time, waits apart.

:func:`probes` wraps chosen functions of the lean DIMSE engine and the store
(:data:`RETRIEVE_PROBES`, :data:`FIND_PROBES`) and adds up their thread CPU time per call. A
target that no longer exists raises :class:`MissingProbe` (rename the probe with the code).
"""

from __future__ import annotations

import contextlib
import cProfile
import functools
import io
import pstats
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PREFIX = re.compile(r"/[^\s:(]*(?:site-packages|lib/python3\.\d+|work/main)/")

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
#: into another module is probed where it is looked up (``local_store.read_header``); a method
#: in the class that defines it. Probes are inclusive: a deeper row is part of the row above it.
Target = tuple[str, str, str, int]


def _arriving(depth: int) -> list[Target]:
    """An instance's fragments coming in, whoever receives it (our SCP, or C-GET)."""
    return [
        ("workstation.dimse.storage", "StoreSink.begin", "StoreSink.begin (file meta)", depth),
        ("workstation.dimse.storage", "_Incoming.write", "_Incoming.write (fragments)", depth),
    ]


def _storing(depth: int) -> list[Target]:
    """The last fragment in: the instance's way into the store."""
    return [
        ("workstation.dimse.storage", "_Incoming.finish", "_Incoming.finish", depth),
        ("workstation.dimse.storage", "StoreSink.store_instance", "store_instance", depth + 1),
        ("workstation.store.local_store", "read_header", "read_header (walk)", depth + 2),
        ("workstation.store.local_store", "write_atomic", "write_atomic", depth + 2),
        ("workstation.store.writer", "_stage", "temp file write (+ fsync if durable)", depth + 3),
        ("workstation.store.writer", "_fsync_dirs", "directory fsyncs (if durable)", depth + 3),
        ("workstation.store.index", "StoreIndex.submit", "index: queue the record", depth + 3),
        ("workstation.dimse.retrieval", "Retrieval.on_stored", "retrieve: count it", depth + 2),
    ]


_COMMON: list[Target] = [
    # every association: socket reads and PDU framing (SCP threads and the requestor)
    ("workstation.dimse.wire.pdu", "PduReader.read", "PDU read: recv_into + framing (all)", 0),
    ("workstation.dimse.wire.commands", "decode_command", "command set decode (struct, all)", 0),
]
_SCP_PDV: Target = ("workstation.dimse.wire.scp", "_Association._pdv", "SCP: one PDV", 0)
_SCP_RSP: Target = (
    "workstation.dimse.wire.scp",
    "_Association._respond_store",
    "C-STORE-RSP encode+send",
    1,
)
_SCU_NEXT: Target = (
    "workstation.dimse.wire.scu",
    "LeanAssociation._next_message",
    "SCU: next message (responses; C-GET's C-STOREs)",
    0,
)
_GET_FINISH: Target = (
    "workstation.dimse.wire.scu",
    "LeanAssociation._finish_store",
    "C-GET: finish + C-STORE-RSP",
    1,
)
_AFTER: list[Target] = [
    # the index writer thread
    ("workstation.store.index", "StoreIndex._apply", "index writer: one batch", 0),
    ("workstation.store.local_store", "LocalStore._sync_before_commit", "sync before commit", 1),
    ("workstation.store.local_store", "sync_filesystem", "syncfs", 2),
    # the requestor thread, before the C-MOVE or C-GET
    ("workstation.dimse.retrieve", "_plan", "listing C-FINDs (completion check)", 0),
]

#: C-MOVE: the instances come through our SCP's association threads.
RETRIEVE_PROBES: list[Target] = [
    *_COMMON,
    _SCP_PDV,
    *_arriving(1),
    *_storing(1),
    _SCP_RSP,
    _SCU_NEXT,
    _GET_FINISH,
    *_AFTER,
]
#: C-GET: the instances come on the association we requested, read by the calling thread.
GET_PROBES: list[Target] = [
    *_COMMON,
    _SCP_PDV,
    _SCP_RSP,
    _SCU_NEXT,
    *_arriving(1),
    _GET_FINISH,
    *_storing(2),
    *_AFTER,
]

FIND_PROBES: list[Target] = [
    (
        "workstation.dimse.wire.scu",
        "LeanAssociation._next_message",
        "SCU: next message (PDUs -> command + identifier bytes)",
        0,
    ),
    ("workstation.dimse.wire.pdu", "PduReader.read", "PDU read: recv_into + framing", 1),
    ("workstation.dimse.wire.commands", "decode_command", "command set decode (struct)", 1),
    ("workstation.identifiers", "RawIdentifier.__init__", "RawIdentifier(...)", 0),
    ("workstation.identifiers", "RawIdentifier.dataset", "api: pydicom Dataset + charset", 0),
    ("workstation.cli.output", "json_line", "--json: one JSON line", 0),
    ("workstation.identifiers", "RawIdentifier.json_dict", "RawIdentifier.json_dict", 1),
    ("workstation.cli.output", "JsonLinesWriter.flush", "--json: batched write + flush", 0),
    ("workstation.cli.output", "CsvWriter.write", "--csv: one row", 0),
    ("workstation.cli.output", "write_table", "table: the whole table", 0),
    ("workstation.identifiers", "RawIdentifier.text", "RawIdentifier.text (csv, table)", 1),
]


class MissingProbe(LookupError):
    """A probe names a function that does not exist (any more): update the probe list."""


def _resolve(module: str, path: str) -> tuple[Any, str]:
    import importlib

    owner: Any = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


def _original(owner: Any, name: str, where: str) -> Any:
    """The function to wrap: a module's attribute, or a method defined in that very class."""
    if isinstance(owner, type):
        if name not in owner.__dict__:
            defined = next((c.__name__ for c in owner.__mro__ if name in c.__dict__), None)
            hint = f" (it is defined in {defined}: probe that class)" if defined else ""
            raise MissingProbe(f"probe target {where} does not exist{hint}")
        original = owner.__dict__[name]
    else:
        original = getattr(owner, name)
    if isinstance(original, staticmethod | classmethod | property):
        raise MissingProbe(f"probe target {where} is a {type(original).__name__}: not supported")
    if not callable(original):
        raise MissingProbe(f"probe target {where} is not a function")
    return original


def check_probes(targets: list[Target]) -> None:
    """Raise :class:`MissingProbe` if any target cannot be probed."""
    for module, path, _label, _depth in targets:
        where = f"{module}.{path}"
        try:
            owner, name = _resolve(module, path)
        except (ImportError, AttributeError) as exc:
            raise MissingProbe(f"probe target {where} does not exist ({exc})") from None
        _original(owner, name, where)


@contextlib.contextmanager
def probes(targets: list[Target]) -> Iterator[list[Probe]]:
    """Wrap each target to add up, per call, its thread CPU time and wall time (inclusive).

    Every target must exist: a missing one raises :class:`MissingProbe` before anything is
    wrapped, so a renamed function cannot silently drop out of the report.
    """
    check_probes(targets)
    found: list[Probe] = []
    restore: list[tuple[Any, str, Any]] = []
    for module, path, label, depth in targets:
        owner, name = _resolve(module, path)
        original = _original(owner, name, f"{module}.{path}")
        probe = Probe(label, depth)
        found.append(probe)

        @functools.wraps(original)
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
    idle = [p.label for p in found if not p.calls]
    for p in found:
        if not p.calls:
            continue
        cpu_us = p.cpu_ns / 1e3
        out.write(
            f"{p.calls:7d} {cpu_us / p.calls:11.1f} {cpu_us / units:14.1f} "
            f"{100 * p.cpu_ns / 1e9 / process_cpu_s:5.1f}%  {'  ' * p.depth}{p.label}"
            f" (wall {p.wall_ns / 1e3 / p.calls:.0f} us/call)\n"
        )
    if idle:
        out.write(f"not called: {'; '.join(idle)}\n")
    return out.getvalue()
