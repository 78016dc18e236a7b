"""What the benchmarks share: cached data and Orthanc storage, timing, peak RSS and tables.

Generated files and Orthanc's storage and index are kept under ``$WS_BENCH_DIR`` (default
``/tmp/ws-bench``) so that a second run skips generation and upload; delete the folder to
start afresh. A lock file keeps two benchmark processes from sharing one Orthanc folder.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import LOOPBACK, OrthancServer, dcmtk, port_open
from workstation.demo import Archive

BENCH_DIR = Path(os.environ.get("WS_BENCH_DIR", "/tmp/ws-bench"))
REPO = Path(__file__).resolve().parents[2]


def say(message: str) -> None:
    """Progress on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """``min-max`` of a list of seconds or rates, for the tables."""
    if not values:
        return ""
    return f"{min(values):.3g}-{max(values):.3g}"


# -- environment ---------------------------------------------------------------------------


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _first_line(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


def machine_info() -> dict[str, str]:
    import pydicom
    import pynetdicom

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pynetdicom": pynetdicom.__version__,
        "pydicom": pydicom.__version__,
        "orthanc": _first_line(["/usr/sbin/Orthanc", "--version"]),
        "dcmtk": _first_line([dcmtk("findscu"), "--version"]).replace("$", "").strip(),
        "load average at start": loadavg(),
    }


def print_info(info: Mapping[str, str]) -> None:
    for key, value in info.items():
        print(f"{key}: {value}")


# -- cached data and Orthanc ------------------------------------------------------------------


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created if missing) for the block."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another benchmark that holds {folder}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def cached_files(key: str, make: Callable[[], Archive]) -> list[Path]:
    """The Part-10 files of ``make()``, written once below ``BENCH_DIR/files/key``."""
    folder = BENCH_DIR / "files" / key
    manifest = folder / "manifest.txt"
    with locked(BENCH_DIR / "files"):
        if manifest.exists():
            paths = [folder / line for line in manifest.read_text().splitlines() if line]
            if paths and paths[0].exists() and paths[-1].exists():
                return paths
        say(f"generating {key} (cached in {folder})")
        partial = folder.with_name(key + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        written = make().write(partial)
        (partial / "manifest.txt").write_text(
            "\n".join(str(p.relative_to(partial)) for p in written) + "\n"
        )
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
        return [folder / p.relative_to(partial) for p in written]


def folder_bytes(paths: Sequence[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


class CachedOrthanc:
    """One Orthanc whose storage and index persist under ``BENCH_DIR/orthanc/<key>``.

    Entering uploads ``files`` only when the kept index does not already hold exactly that
    many instances; ``server`` is the running :class:`OrthancServer`. :meth:`restart`
    switches Nagle (``TCP_NODELAY`` in Orthanc's environment) keeping the data and the ports.
    """

    def __init__(self, key: str, files: Sequence[Path], *, tcp_nodelay: bool) -> None:
        self.workdir = BENCH_DIR / "orthanc" / key
        self.files = list(files)
        self.server = OrthancServer(self.workdir, tcp_nodelay=tcp_nodelay)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> CachedOrthanc:
        self._stack.enter_context(locked(self.workdir))
        self._stack.callback(self.server.stop)
        marker = self.workdir / "uploaded.txt"
        self.server.start()
        held = self.server.statistics()["CountInstances"]
        if not marker.exists() or held != len(self.files):
            say(f"Orthanc holds {held} instances, want {len(self.files)}: uploading afresh")
            self.server.stop()
            for sub in ("storage", "index"):
                shutil.rmtree(self.workdir / sub, ignore_errors=True)
            marker.unlink(missing_ok=True)
            self.server.start()
            start = time.perf_counter()
            self.server.upload(self.files)
            held = self.server.statistics()["CountInstances"]
            if held != len(self.files):
                raise RuntimeError(f"Orthanc holds {held} after upload, not {len(self.files)}")
            marker.write_text(f"{held}\n")
            say(f"uploaded {held} files in {time.perf_counter() - start:.1f} s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def restart(self, *, tcp_nodelay: bool) -> OrthancServer:
        """Restart with Nagle on (``tcp_nodelay=False``) or off; destinations must be re-added."""
        if self.server.running and self.server.tcp_nodelay == tcp_nodelay:
            return self.server
        self.server.stop()
        self.server.tcp_nodelay = tcp_nodelay
        self.server.start()
        return self.server


# -- processes, time and memory -----------------------------------------------------------


@dataclass
class ProcessRun:
    """One finished child: wall seconds, exit code, peak RSS (MB), CPU seconds, output."""

    seconds: float
    returncode: int
    peak_rss_mb: float
    cpu_seconds: float
    stdout: bytes = b""
    stderr: bytes = b""

    def check(self, what: str) -> ProcessRun:
        if self.returncode != 0:
            tail = self.stderr.decode(errors="replace")[-2000:]
            raise RuntimeError(f"{what} exited with {self.returncode}:\n{tail}")
        return self


#: GNU time reports the peak RSS of the child it forks itself. ``wait4`` on a child we fork
#: would not do: Linux carries the parent's high-water mark over ``exec`` into ``ru_maxrss``,
#: so every child would seem at least as big as this Python process.
GNU_TIME = "/usr/bin/time"


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    capture_stdout: bool = False,
    discard_stderr: bool = False,
    cwd: str | Path | None = None,
    timeout: float = 900.0,
) -> ProcessRun:
    """Run ``argv`` to its end under GNU time, for its own peak RSS and CPU time.

    stdout goes to /dev/null unless ``capture_stdout``; stderr is kept for error messages
    unless ``discard_stderr`` (for tools that log every response there).
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".time") as usage,
    ):
        wrapped = [GNU_TIME, "-q", "-o", usage.name, "-f", "%M %U %S", *argv]
        start = time.perf_counter()
        process = subprocess.Popen(
            wrapped,
            stdin=subprocess.DEVNULL,
            stdout=out if capture_stdout else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL if discard_stderr else err,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        seconds = time.perf_counter() - start
        fields = usage.read().split()
        peak_kb, user, system = (float(x) for x in fields[-3:]) if len(fields) >= 3 else (0, 0, 0)
        out.seek(0)
        err.seek(0)
        return ProcessRun(
            seconds=seconds,
            returncode=process.returncode,
            peak_rss_mb=peak_kb / 1024,
            cpu_seconds=user + system,
            stdout=out.read() if capture_stdout else b"",
            stderr=err.read(),
        )


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of a running process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Background:
    """A long-running helper (DCMTK storescp) that we start, measure and stop ourselves."""

    def __init__(
        self, argv: Sequence[str], *, port: int, env: Mapping[str, str], log: Path
    ) -> None:
        self.port = port
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,
            )
        deadline = time.monotonic() + 10
        while not port_open(port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{argv[0]} did not listen on port {port}; see {log}")
            time.sleep(0.02)

    def peak_rss_mb(self) -> float:
        return vm_hwm_mb(self.process.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds_of(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def dcmtk_tool_env(tcp_nodelay: bool = True) -> dict[str, str]:
    """Environment for a DCMTK client: Nagle off unless asked, like our own sockets."""
    return {**os.environ, "TCP_NODELAY": "1" if tcp_nodelay else "0"}


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for our own Python children: the repository on the path."""
    path = os.environ.get("PYTHONPATH", "")
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO)}
    env.update(extra or {})
    return env


def count_files(folder: Path, pattern: str = "*") -> int:
    """Regular files below ``folder`` matching ``pattern``, hidden folders excluded."""
    total = 0
    for _root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        total += sum(1 for name in files if Path(name).match(pattern))
    return total


# -- alternating runs and tables ------------------------------------------------------------


@dataclass
class Series:
    """The runs of one method: each run is a dict of figures (``seconds`` always)."""

    name: str
    runs: list[dict[str, float]] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [run[key] for run in self.runs if key in run]

    def median(self, key: str) -> float:
        return median(self.values(key))


def alternate(
    methods: Mapping[str, Callable[[], dict[str, float]]], repeat: int
) -> dict[str, Series]:
    """Run every method ``repeat`` times, interleaved, rotating the order each round."""
    names = list(methods)
    series = {name: Series(name) for name in names}
    for round_ in range(repeat):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            figures = methods[name]()
            series[name].runs.append(figures)
            shown = ", ".join(f"{k}={v:.3g}" for k, v in figures.items())
            say(f"  round {round_ + 1}/{repeat} {name}: {shown}")
    return series


def round_ratios(ours: Series, base: Series, key: str = "seconds") -> list[float]:
    """``ours / base`` round by round (:func:`alternate` runs every method once a round)."""
    pairs = zip(ours.values(key), base.values(key), strict=False)
    return [a / b for a, b in pairs if b]


def ratio_cells(ours: Series, base: Series | None, key: str = "seconds") -> tuple[str, str]:
    """The median of the per-round ratios ``ours / base`` and their min-max, as table cells."""
    ratios = round_ratios(ours, base, key) if base is not None else []
    if not ratios:
        return "", ""
    return fmt(median(ratios)), spread(ratios)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print()
    print(title)
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    sys.stdout.flush()


def fmt(value: float, digits: int = 3) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
