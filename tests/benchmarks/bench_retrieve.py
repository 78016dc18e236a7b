"""Retrieving one study of N instances from Orthanc: the workstation against DCMTK.

    python -m tests.benchmarks.bench_retrieve [--instances 1000] [--size small|large|both]
        [--repeat 3] [--orthanc-nodelay on|off|both] [--stock-full]
        [--dcmtk-mode normal|bit-preserving] [--methods move,get,movescu,getscu]
        [--no-check-row] [--flat | --no-flat] [--profile]

One Orthanc holds a study of N instances (small: 64x64, ~9 KB a file; large: 512x512,
~0.5 MB) and, for the memory check, a second study of N/4. Methods, run alternately:

- ``move``: ``workstation.move`` into our StorageServer and a fresh LocalStore (C-MOVE, with
  the workstation's default completion check: a C-FIND listing first);
- ``movescu``: DCMTK ``movescu`` with a DCMTK ``storescp`` (fresh output folder) as destination;
- ``get``: ``workstation.get`` into a fresh LocalStore (C-GET on one association);
- ``getscu``: DCMTK ``getscu`` into a fresh folder.

Our side runs in a child process (:mod:`tests.benchmarks.retrieve_worker`); its time is the
retrieve call plus the store's final index commit (with the syncfs that makes the batch
durable), its peak RSS that of the whole process (SCP included), its CPU per instance that of
the call (every thread, interpreter start-up excluded). DCMTK's time is the movescu/getscu
process from start to exit, with storescp already listening; their peak RSS and CPU are the sum
of movescu's and storescp's. Every run must bring all N instances (files counted), or the
benchmark stops. The time ratio is the median of the per-round ratios, with their min-max.

Orthanc is run with ``TCP_NODELAY=1`` in its environment (Nagle off) and without (stock: Nagle
on, ~40 ms per small C-STORE on loopback; the N/4 study then, unless ``--stock-full``, and only
the four base rows, since the delay hides everything else); the DCMTK clients always get
``TCP_NODELAY=1``, as our own sockets always have it.

``--no-check-row`` adds our move without the completion check. ``--flat`` (default) also
retrieves the N/4 study with our move and get and compares peak RSS. ``--profile`` prints,
before the timed rounds, the CPU per stage of one move and one get (probes around the lean
DIMSE engine's and the store's functions, :mod:`tests.benchmarks.profiling`) and a cProfile
listing by CPU time over all threads of each on the N/4 study.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.common import (
    Background,
    CachedOrthanc,
    Series,
    alternate,
    cached_files,
    count_files,
    dcmtk_tool_env,
    fmt,
    free_port,
    loadavg,
    machine_info,
    print_info,
    print_table,
    python_env,
    ratio_cells,
    run_process,
    say,
    spread,
)
from tests.servers import dcmtk
from workstation.demo.generator import generate_large_study

SIZES = {"small": 64, "large": 512}
OUR_AET = "WSBENCH"
STORESCP_AET = "STORESCP"


@dataclass
class Study:
    uid: str
    instances: int
    bytes: int


class RetrieveBench:
    def __init__(
        self, orthanc: CachedOrthanc, scratch: Path, dcmtk_mode: str, log_dir: Path
    ) -> None:
        self.orthanc = orthanc
        self.scratch = scratch
        self.dcmtk_flags = ["+B"] if dcmtk_mode == "bit-preserving" else []
        self.log_dir = log_dir
        self.runs = 0

    @property
    def node_text(self) -> str:
        node = self.orthanc.server.node
        return f"{node.ae_title}@{node.host}:{node.port}"

    def _folder(self, label: str) -> Path:
        self.runs += 1
        folder = self.scratch / f"{self.runs:03d}-{label}"
        folder.mkdir(parents=True)
        return folder

    @staticmethod
    def _check(what: str, study: Study, count: int) -> None:
        if count != study.instances:
            raise RuntimeError(f"{what}: {count} instances arrived, not {study.instances}")

    @staticmethod
    def _rates(study: Study, seconds: float) -> dict[str, float]:
        return {
            "seconds": seconds,
            "inst_per_s": study.instances / seconds,
            "mb_per_s": study.bytes / 1e6 / seconds,
        }

    # -- ours -----------------------------------------------------------------------------------

    def ours(
        self,
        method: str,
        study: Study,
        *,
        check: bool = True,
        profile: Path | None = None,
        probe: Path | None = None,
    ) -> dict[str, float]:
        folder = self._folder(method)
        store = folder / "store"
        argv = [sys.executable, "-m", "tests.benchmarks.retrieve_worker", method]
        argv += [self.node_text, study.uid, "--store", str(store)]
        if method == "move":
            port = free_port()
            self.orthanc.server.add_modality(OUR_AET, port=port)
            argv += ["--scp-aet", OUR_AET, "--scp-port", str(port)]
        if not check:
            argv.append("--no-check")
        if profile is not None:
            argv += ["--profile", str(profile)]
        if probe is not None:
            argv += ["--probe", str(probe)]
        run = run_process(argv, env=python_env(), capture_stdout=True)
        lines = run.stdout.decode().strip().splitlines()
        if run.returncode != 0 or not lines:
            tail = (run.stdout + run.stderr).decode(errors="replace")[-3000:]
            raise RuntimeError(f"workstation {method} failed ({run.returncode}):\n{tail}")
        result = json.loads(lines[-1])
        self._check(f"workstation {method}", study, count_files(store, "*.dcm"))
        if result["received"] != study.instances:
            raise RuntimeError(f"workstation {method}: outcome says {result['message']}")
        shutil.rmtree(folder)
        return {
            **self._rates(study, result["seconds"]),
            "process_s": run.seconds,
            "cpu_s": run.cpu_seconds,
            "call_cpu_s": result["cpu_s"],
            "rss_mb": run.peak_rss_mb,
            "base_rss_mb": result["baseline_rss_mb"],
        }

    # -- DCMTK ----------------------------------------------------------------------------------

    def _retrieve_keys(self, study: Study) -> list[str]:
        return ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study.uid}"]

    def movescu(self, study: Study) -> dict[str, float]:
        folder = self._folder("movescu")
        out = folder / "out"
        out.mkdir()
        port = free_port()
        self.orthanc.server.add_modality(STORESCP_AET, port=port)
        storescp = Background(
            [
                dcmtk("storescp"),
                "-aet",
                STORESCP_AET,
                *self.dcmtk_flags,
                "-od",
                str(out),
                str(port),
            ],
            port=port,
            env=dcmtk_tool_env(),
            log=self.log_dir / "storescp.log",
        )
        try:
            server = self.orthanc.server
            argv = [dcmtk("movescu"), "-S", "-aet", "MOVESCU", "-aec", server.aet]
            argv += ["-aem", STORESCP_AET, *self._retrieve_keys(study)]
            argv += [server.node.host, str(server.dicom_port)]
            run = run_process(argv, env=dcmtk_tool_env()).check("movescu")
            receiver_rss = storescp.peak_rss_mb()
            receiver_cpu = storescp.cpu_seconds()
        finally:
            storescp.stop()
        self._check("movescu + storescp", study, count_files(out))
        shutil.rmtree(folder)
        return {
            **self._rates(study, run.seconds),
            "process_s": run.seconds,
            "cpu_s": run.cpu_seconds + receiver_cpu,
            "rss_mb": run.peak_rss_mb + receiver_rss,
            "storescp_rss_mb": receiver_rss,
            "movescu_rss_mb": run.peak_rss_mb,
        }

    def getscu(self, study: Study) -> dict[str, float]:
        folder = self._folder("getscu")
        server = self.orthanc.server
        argv = [dcmtk("getscu"), "-S", "-aet", "GETSCU", "-aec", server.aet, *self.dcmtk_flags]
        argv += ["-od", str(folder), *self._retrieve_keys(study)]
        argv += [server.node.host, str(server.dicom_port)]
        run = run_process(argv, env=dcmtk_tool_env()).check("getscu")
        self._check("getscu", study, count_files(folder))
        shutil.rmtree(folder)
        return {
            **self._rates(study, run.seconds),
            "process_s": run.seconds,
            "cpu_s": run.cpu_seconds,
            "rss_mb": run.peak_rss_mb,
        }


PAIRS = {"move": "movescu", "get": "getscu"}


def table(title: str, series: dict[str, Series], instances: int) -> None:
    rows = []
    for name, s in series.items():
        seconds = s.median("seconds")
        base = PAIRS.get(name.split(" ")[0])
        ratio, ratio_range = ratio_cells(s, series.get(base)) if base else ("", "")
        rss = fmt(s.median("rss_mb"))
        if s.values("storescp_rss_mb"):
            rss += (
                f" (storescp {fmt(s.median('storescp_rss_mb'))}"
                f" + movescu {fmt(s.median('movescu_rss_mb'))})"
            )
        elif s.values("base_rss_mb"):
            rss += f" (at start {fmt(s.median('base_rss_mb'))})"
        cpu = s.median("call_cpu_s") if s.values("call_cpu_s") else s.median("cpu_s")
        rows.append(
            [
                name,
                fmt(seconds),
                spread(s.values("seconds")),
                fmt(s.median("inst_per_s")),
                fmt(s.median("mb_per_s")),
                fmt(s.median("process_s")),
                fmt(s.median("cpu_s")),
                f"{1e6 * cpu / instances:.0f}",
                rss,
                f"{ratio} (vs {base})" if ratio else "",
                ratio_range,
            ]
        )
    headers = ["method", "median s", "min-max s", "inst/s", "MB/s", "process s"]
    headers += ["process CPU s", "CPU us/inst*", "peak RSS MB", "time ours/DCMTK", "min-max"]
    print_table(title, headers, rows)
    print(
        "* ours: CPU of the retrieve call (all threads, start-up excluded); "
        "DCMTK: the whole processes"
    )


def memory_table(title: str, flat: dict[str, dict[int, Series]]) -> None:
    rows = []
    for name, by_size in flat.items():
        sizes = sorted(by_size)
        cells = [f"{fmt(by_size[n].median('rss_mb'))} MB @ {n}" for n in sizes]
        growth = by_size[sizes[-1]].median("rss_mb") - by_size[sizes[0]].median("rss_mb")
        rows.append([name, *cells, f"{growth:+.1f} MB"])
    sizes = sorted(next(iter(flat.values())))
    headers = ["method", *[f"{n} instances" for n in sizes], "growth"]
    print_table(title, headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000, help="in the study (1000)")
    parser.add_argument(
        "--size",
        choices=["small", "large", "both"],
        default="both",
        help="64x64 (~9 kB) or 512x512 (~0.5 MB) instances, or both in turn (both)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds of every method (3)")
    parser.add_argument("--seed", type=int, default=1, help="of the generated study (1)")
    parser.add_argument(
        "--orthanc-nodelay",
        choices=["on", "off", "both"],
        default="both",
        help="TCP_NODELAY=1 in Orthanc's environment (on), stock Nagle (off), or both in turn",
    )
    parser.add_argument(
        "--stock-full",
        action="store_true",
        help="with stock Orthanc (Nagle on, ~45 ms a C-STORE) retrieve the N-instance study "
        "too; by default the N/4 one, so that a run stays within minutes",
    )
    parser.add_argument(
        "--dcmtk-mode",
        choices=["normal", "bit-preserving"],
        default="normal",
        help="storescp/getscu storage mode: decode then write (normal), or +B",
    )
    parser.add_argument(
        "--methods", default="move,movescu,get,getscu", help="comma-separated, of these four"
    )
    parser.add_argument("--no-check-row", action="store_true", help="also time move --no-check")
    parser.add_argument(
        "--flat",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="check that our peak RSS stays flat: N/4 against N instances (Nagle-off only)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="print CPU per stage and cProfile of our side"
    )
    args = parser.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(args.methods) - {"move", "get", "movescu", "getscu"}
    if unknown:
        raise SystemExit(f"unknown method(s) {', '.join(sorted(unknown))}")
    print_info(machine_info())
    for size in ["small", "large"] if args.size == "both" else [args.size]:
        run_size(args, size)
    return 0


def study_files(seed: int, count: int, pixels: int) -> tuple[Study, list[Path]]:
    """The generated files of one study (cached) and what the benchmark needs to know of it."""
    files = cached_files(
        f"large-s{seed}-n{count}-{pixels}",
        lambda: generate_large_study(seed, count, pixels, pixels),
    )
    uid = generate_large_study(seed, 1, 1, 1).studies[0].StudyInstanceUID  # same UID, cheaply
    return Study(uid, count, sum(f.stat().st_size for f in files)), files


def build_runs(
    bench: RetrieveBench, study: Study, args: argparse.Namespace, *, extras: bool = True
) -> dict[str, Callable[[], dict[str, float]]]:
    """The methods to alternate; ``extras`` adds the no-check row when asked for."""
    runs: dict[str, Callable[[], dict[str, float]]] = {}
    for method in args.methods:
        if method == "movescu":
            runs[method] = lambda: bench.movescu(study)
        elif method == "getscu":
            runs[method] = lambda: bench.getscu(study)
        else:
            runs[method] = functools.partial(bench.ours, method, study)
    if args.no_check_row and extras and "move" in args.methods:
        runs["move no-check"] = functools.partial(bench.ours, "move", study, check=False)
    return runs


def run_size(args: argparse.Namespace, size: str) -> None:
    pixels = SIZES[size]
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.orthanc_nodelay]
    quarter = max(1, args.instances // 4)
    main_study, files = study_files(args.seed, args.instances, pixels)
    small_study, small_files = study_files(args.seed + 1000, quarter, pixels)
    say(
        f"{size}: study of {main_study.instances} instances, {main_study.bytes / 1e6:.1f} MB "
        f"({main_study.bytes / main_study.instances / 1e3:.1f} kB each); "
        f"second study of {quarter}"
    )
    key = f"retrieve-s{args.seed}-n{args.instances}-{pixels}"
    with (
        CachedOrthanc(key, files + small_files, tcp_nodelay=modes[0]) as orthanc,
        tempfile.TemporaryDirectory(prefix="ws-bench-retrieve-") as scratch,
    ):
        bench = RetrieveBench(orthanc, Path(scratch), args.dcmtk_mode, orthanc.workdir)
        for nodelay in modes:
            orthanc.restart(tcp_nodelay=nodelay)
            study = main_study if nodelay or args.stock_full else small_study
            mode = "TCP_NODELAY=1 (Nagle off)" if nodelay else "stock (Nagle on)"
            if args.profile and nodelay:
                profile(bench, study, small_study, f"{size}, {mode}", Path(scratch))
            # With Nagle on, Orthanc's ~40 ms per C-STORE hides everything else: base rows only.
            runs = build_runs(bench, study, args, extras=nodelay)
            say(f"{size}, Orthanc {mode}: {args.repeat} rounds of {', '.join(runs)}")
            series = alternate(runs, args.repeat)
            title = (
                f"Retrieve {study.instances} x {study.bytes / study.instances / 1e3:.0f} kB "
                f"({study.bytes / 1e6:.0f} MB), Orthanc {mode}, medians of {args.repeat}, "
                f"DCMTK {args.dcmtk_mode} mode (load average now {loadavg()})"
            )
            table(title, series, study.instances)
            ours = [m for m in ("move", "get") if m in args.methods]
            if args.flat and nodelay and quarter != args.instances and ours:
                say(f"memory: our {' and '.join(ours)} of {quarter} instances")
                smaller = alternate(
                    {m: functools.partial(bench.ours, m, small_study) for m in ours},
                    args.repeat,
                )
                flat = {m: {quarter: smaller[m], args.instances: series[m]} for m in ours}
                memory_table(f"Peak RSS of our process, {size} instances, medians", flat)


def profile(bench: RetrieveBench, study: Study, small: Study, label: str, scratch: Path) -> None:
    """Per-stage CPU (probes) on ``study``; cProfile by CPU time on the smaller ``small``."""
    for method in ("move", "get"):
        report = scratch / f"probe-{method}.txt"
        bench.ours(method, study, probe=report)
        print(f"\n=== stages: workstation.{method}, {label} ===")
        print(report.read_text())
        report = scratch / f"profile-{method}.txt"
        bench.ours(method, small, profile=report)
        print(f"\n=== cProfile (CPU time, all threads): workstation.{method}, {small.instances}")
        print(report.read_text())


if __name__ == "__main__":
    sys.exit(main())
