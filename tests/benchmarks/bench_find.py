"""C-FIND of N studies from Orthanc: ``workstation.find``, the CLI's three formats, ``findscu``.

    python -m tests.benchmarks.bench_find [--studies 10000] [--repeat 5]
        [--orthanc-nodelay on|off|both] [--profile [--no-timing]]

One Orthanc holds N generated studies of one small instance each (files and Orthanc storage are
cached under /tmp/ws-bench). Every method sends the same study-root STUDY-level request with
the workstation's default study return keys and must receive all N matches:

- ``api``: ``workstation.find`` in this process; each Dataset is consumed and its PatientName
  and StudyInstanceUID read, as a script would (time and CPU of the loop only);
- ``cli --json``, ``cli --csv``, ``cli table``: ``python -m workstation find AET@HOST:PORT -S``
  with ``--json``, ``--csv`` or neither (the aligned table, printed once every match is in),
  stdout to /dev/null (whole process: interpreter start-up, imports, printing every match);
- ``findscu -sr``: DCMTK decodes every response into a DcmDataset and prints nothing: the
  same work as ``api``;
- ``findscu +sr``: DCMTK also dumps every response as text (to /dev/null), the work that
  matches the CLI rows.

Each method's result is checked once before timing (counts; the same Study Instance UIDs from
``api``, ``--json`` and ``--csv``). The table gives medians, min-max, CPU per match and the
time ratio to the matching findscu row: the median of the per-round ratios and their min-max.
``--profile`` prints the CPU per stage (probes) and a cProfile listing by CPU time over all
threads of ``api`` and of the CLI's ``main()`` run in this process for each format. findscu
runs with ``TCP_NODELAY=1`` like our sockets; ``--orthanc-nodelay`` sets Orthanc's (it makes no
difference to C-FIND).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import workstation as ws
from tests.benchmarks.common import (
    CachedOrthanc,
    Series,
    alternate,
    cached_files,
    cpu_seconds_of,
    dcmtk_tool_env,
    fmt,
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
from workstation.demo.generator import generate_bulk

QUERY = ws.Query.study()

#: The CLI rows: the format options of each.
CLI_FORMATS: dict[str, list[str]] = {
    "cli --json": ["--json"],
    "cli --csv": ["--csv"],
    "cli table": [],
}
#: Which findscu row each of ours is compared with.
PAIRS = {"api": "findscu -sr", **dict.fromkeys(CLI_FORMATS, "findscu +sr")}


def findscu_keys(query: ws.Query) -> list[str]:
    """The request identifier as findscu ``-k`` arguments, key for key."""
    argv: list[str] = []
    for elem in query.identifier():
        value = "" if elem.value in (None, "") else str(elem.value)
        argv += ["-k", f"{elem.keyword}={value}" if value else elem.keyword]
    return argv


class FindBench:
    def __init__(self, node: ws.RemoteNode, orthanc_pid: int, studies: int, config_dir: Path):
        self.node = node
        self.orthanc_pid = orthanc_pid
        self.studies = studies
        self.config_dir = config_dir
        self.target = f"{node.ae_title}@{node.host}:{node.port}"

    def _orthanc_cpu(self) -> float:
        return cpu_seconds_of(self.orthanc_pid)

    def _check(self, what: str, count: int) -> None:
        if count != self.studies:
            raise RuntimeError(f"{what} received {count} matches, not {self.studies}")

    # -- the methods --------------------------------------------------------------------------

    def api(self) -> dict[str, float]:
        gc.collect()
        orthanc = self._orthanc_cpu()
        cpu = time.process_time()
        start = time.perf_counter()
        count = 0
        for ds in ws.find(self.node, QUERY):
            _ = ds.PatientName, ds.StudyInstanceUID
            count += 1
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        self._check("workstation.find", count)
        return {"seconds": seconds, "cpu_s": cpu, "orthanc_cpu_s": self._orthanc_cpu() - orthanc}

    def cli_args(self, options: list[str]) -> list[str]:
        return ["find", self.target, "-S", *options]

    def cli(self, options: list[str]) -> dict[str, float]:
        env = python_env({"WORKSTATION_CONFIG_DIR": str(self.config_dir)})
        orthanc = self._orthanc_cpu()
        argv = [sys.executable, "-m", "workstation", *self.cli_args(options)]
        run = run_process(argv, env=env).check("workstation find")
        return {
            "seconds": run.seconds,
            "cpu_s": run.cpu_seconds,
            "orthanc_cpu_s": self._orthanc_cpu() - orthanc,
            "rss_mb": run.peak_rss_mb,
        }

    def findscu_argv(self, show: bool, extract_to: Path | None = None) -> list[str]:
        argv = [dcmtk("findscu"), "-S", "-aet", "FINDSCU", "-aec", self.node.ae_title]
        argv += ["+sr" if show else "-sr", *findscu_keys(QUERY)]
        if extract_to is not None:
            argv += ["-X", "-od", str(extract_to)]
        return [*argv, self.node.host, str(self.node.port)]

    def findscu(self, show: bool) -> dict[str, float]:
        orthanc = self._orthanc_cpu()
        run = run_process(self.findscu_argv(show), env=dcmtk_tool_env(), discard_stderr=True).check(
            "findscu"
        )
        return {
            "seconds": run.seconds,
            "cpu_s": run.cpu_seconds,
            "orthanc_cpu_s": self._orthanc_cpu() - orthanc,
            "rss_mb": run.peak_rss_mb,
        }

    # -- untimed checks that every method really gets all N -----------------------------------

    def _cli_output(self, options: list[str]) -> tuple[str, str]:
        env = python_env({"WORKSTATION_CONFIG_DIR": str(self.config_dir)})
        argv = [sys.executable, "-m", "workstation", *self.cli_args(options)]
        run = run_process(argv, env=env, capture_stdout=True).check("workstation find")
        return run.stdout.decode(), run.stderr.decode(errors="replace")

    def verify(self) -> None:
        api_uids = {str(ds.StudyInstanceUID) for ds in ws.find(self.node, QUERY)}
        self._check("workstation.find", len(api_uids))

        text, _ = self._cli_output(CLI_FORMATS["cli --json"])
        lines = text.splitlines()
        self._check("the CLI (--json)", len(lines))
        objects = [json.loads(line) for line in lines]
        if "0020000D" not in objects[0] or "00100010" not in objects[0]:
            raise RuntimeError(f"unexpected CLI JSON: {lines[0][:200]}")
        if {o["0020000D"]["Value"][0] for o in objects} != api_uids:
            raise RuntimeError("the CLI's --json lists other Study Instance UIDs than the API")

        text, _ = self._cli_output(CLI_FORMATS["cli --csv"])
        rows = list(csv.reader(io.StringIO(text)))
        self._check("the CLI (--csv)", len(rows) - 1)
        column = rows[0].index("StudyInstanceUID")
        if {row[column] for row in rows[1:]} != api_uids:
            raise RuntimeError("the CLI's --csv lists other Study Instance UIDs than the API")

        text, summary = self._cli_output(CLI_FORMATS["cli table"])
        self._check("the CLI (table)", len(text.splitlines()) - 1)
        if f"{self.studies} matches from" not in summary:
            raise RuntimeError(f"unexpected table summary on stderr: {summary[-300:]}")

        run = run_process(self.findscu_argv(True), env=dcmtk_tool_env())
        text_b = run.check("findscu +sr").stdout + run.stderr
        self._check("findscu +sr", text_b.count(b"Find Response:"))
        with tempfile.TemporaryDirectory(prefix="findscu-") as out:
            run_process(self.findscu_argv(False, Path(out)), env=dcmtk_tool_env()).check(
                "findscu -sr -X"
            )
            self._check("findscu -sr", len(list(Path(out).glob("rsp*.dcm"))))
        say(
            f"  verified: every method receives all {self.studies} matches "
            "(api, --json and --csv the same Study Instance UIDs)"
        )


def table(title: str, series: dict[str, Series], studies: int) -> None:
    rows = []
    for name, s in series.items():
        seconds = s.median("seconds")
        base = PAIRS.get(name)
        ratio, ratio_range = ratio_cells(s, series.get(base)) if base else ("", "")
        rows.append(
            [
                name,
                fmt(seconds),
                spread(s.values("seconds")),
                f"{studies / seconds:.0f}",
                fmt(s.median("cpu_s")),
                f"{1e6 * s.median('cpu_s') / studies:.0f}",
                fmt(s.median("orthanc_cpu_s")),
                fmt(s.median("rss_mb")) if s.values("rss_mb") else "-",
                f"{ratio} (vs {base})" if ratio else "",
                ratio_range,
            ]
        )
    headers = ["method", "median s", "min-max s", "studies/s", "client CPU s", "CPU us/match"]
    headers += ["Orthanc CPU s", "peak RSS MB", "ours/findscu", "min-max"]
    print_table(title, headers, rows)


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[None]:
    """File descriptor 1 to /dev/null (the CLI's writers hold ``sys.stdout`` themselves)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def profile(bench: FindBench) -> None:
    """Per-stage CPU (probes), then cProfile by CPU time over all threads, of ``api`` and of
    the CLI's ``main()`` run in this process for each format (stdout to /dev/null)."""
    from tests.benchmarks.profiling import (
        FIND_PROBES,
        probe_report,
        probes,
        profile_threads,
        report,
    )
    from workstation.cli.main import main as cli_main

    os.environ["WORKSTATION_CONFIG_DIR"] = str(bench.config_dir)

    def api() -> None:
        count = sum(1 for ds in ws.find(bench.node, QUERY) if ds.PatientName is not None)
        bench._check("profiled find", count)

    def cli(options: list[str]) -> Callable[[], None]:
        def run() -> None:
            with stdout_to_devnull():
                code = cli_main(bench.cli_args(options))
            if code != 0:
                raise RuntimeError(f"workstation find {' '.join(options)} returned {code}")

        return run

    cases: list[tuple[str, Callable[[], None]]] = [("workstation.find in-process", api)]
    cases += [(f"main() of {name}", cli(options)) for name, options in CLI_FORMATS.items()]
    for what, run in cases:
        with probes(FIND_PROBES) as found:
            cpu = time.process_time()
            start = time.perf_counter()
            run()
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu
        print(f"\n=== stages: {what} ({seconds:.2f} s wall) ===")
        print(probe_report(found, units=bench.studies, unit="match", process_cpu_s=cpu))
    for what, run in cases:
        with profile_threads() as prof:
            run()
        print(f"\n=== cProfile (CPU time, all threads): {what} ===")
        print(report(prof, top=22))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=10_000, help="in Orthanc (10000)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of every method (5)")
    parser.add_argument("--seed", type=int, default=1, help="of the generated studies (1)")
    parser.add_argument(
        "--orthanc-nodelay",
        choices=["on", "off", "both"],
        default="on",
        help="TCP_NODELAY=1 in Orthanc's environment (on), stock Nagle (off), or both in turn",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="before timing, print CPU per stage and cProfile of api and the CLI formats",
    )
    parser.add_argument("--no-timing", action="store_true", help="with --profile: only profile")
    args = parser.parse_args(argv)

    info = machine_info()
    info["studies"] = str(args.studies)
    print_info(info)
    files = cached_files(
        f"bulk-s{args.seed}-n{args.studies}", lambda: generate_bulk(args.seed, args.studies)
    )
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.orthanc_nodelay]
    key = f"find-s{args.seed}-n{args.studies}"
    with (
        CachedOrthanc(key, files, tcp_nodelay=modes[0]) as orthanc,
        tempfile.TemporaryDirectory(prefix="ws-bench-config-") as config_dir,
    ):
        for nodelay in modes:
            server = orthanc.restart(tcp_nodelay=nodelay)
            assert server.process is not None
            node = server.node.with_options(dimse_timeout=120.0)
            bench = FindBench(node, server.process.pid, args.studies, Path(config_dir))
            mode = "TCP_NODELAY=1 (Nagle off)" if nodelay else "stock (Nagle on)"
            say(f"Orthanc {mode}: verifying")
            bench.verify()
            if args.profile:
                profile(bench)
                if args.no_timing:
                    continue
            methods: dict[str, Callable[[], dict[str, float]]] = {"api": bench.api}
            for name, options in CLI_FORMATS.items():
                methods[name] = lambda b=bench, o=options: b.cli(o)
            methods["findscu -sr"] = lambda b=bench: b.findscu(False)
            methods["findscu +sr"] = lambda b=bench: b.findscu(True)
            say(f"Orthanc {mode}: {args.repeat} rounds of {', '.join(methods)}")
            series = alternate(methods, args.repeat)
            title = (
                f"C-FIND, {args.studies} studies, Orthanc {mode}, medians of {args.repeat} "
                f"(load average now {loadavg()})"
            )
            table(title, series, args.studies)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
