"""C-ECHO: ``workstation echo`` as a whole process against DCMTK ``echoscu``.

    python -m tests.benchmarks.bench_echo [--repeat 10] [--against storescp|orthanc|both]

The peer is a DCMTK ``storescp`` started here (``storescp``), or an Orthanc whose (empty)
storage is cached under /tmp/ws-bench like the other benchmarks' (``orthanc``), both with
``TCP_NODELAY=1``. Methods, run alternately ``--repeat`` times (10):

- ``workstation echo``: ``python -m workstation echo AET@127.0.0.1:PORT`` from start to exit:
  interpreter start-up, imports, association, C-ECHO, release;
- ``echoscu``: ``/usr/bin/echoscu -aec AET 127.0.0.1 PORT``, the same from start to exit;
- ``ws.echo (call)``: ``workstation.echo(node)`` in this process: the DIMSE part alone, to tell
  it from the start-up (no ratio: it is not a process).

Every run must succeed (exit code 0; our line must say "echo success"). The table gives
medians and min-max in milliseconds, the process CPU, peak RSS and the time ratio to echoscu:
the median of the per-round ratios and their min-max.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import workstation as ws
from tests.benchmarks.common import (
    Background,
    CachedOrthanc,
    Series,
    alternate,
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

OURS, DCMTK, CALL = "workstation echo", "echoscu", "ws.echo (call)"


class EchoBench:
    def __init__(self, node: ws.RemoteNode, config_dir: Path) -> None:
        self.node = node
        self.config_dir = config_dir
        self.target = f"{node.ae_title}@{node.host}:{node.port}"

    def cli(self) -> dict[str, float]:
        argv = [sys.executable, "-m", "workstation", "echo", self.target]
        env = python_env({"WORKSTATION_CONFIG_DIR": str(self.config_dir)})
        run = run_process(argv, env=env, capture_stdout=True).check("workstation echo")
        if b": echo success in " not in run.stdout:
            raise RuntimeError(f"workstation echo printed {run.stdout[-300:]!r}")
        return {"seconds": run.seconds, "cpu_s": run.cpu_seconds, "rss_mb": run.peak_rss_mb}

    def echoscu(self) -> dict[str, float]:
        argv = [dcmtk("echoscu"), "-aet", "ECHOSCU", "-aec", self.node.ae_title]
        argv += [self.node.host, str(self.node.port)]
        run = run_process(argv, env=dcmtk_tool_env()).check("echoscu")
        return {"seconds": run.seconds, "cpu_s": run.cpu_seconds, "rss_mb": run.peak_rss_mb}

    def call(self) -> dict[str, float]:
        cpu = time.process_time()
        start = time.perf_counter()
        result = ws.echo(self.node)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        if result.status.code != 0:
            raise RuntimeError(f"ws.echo: {result}")
        return {"seconds": seconds, "cpu_s": cpu}


@contextlib.contextmanager
def storescp_peer(scratch: Path) -> Iterator[ws.RemoteNode]:
    port = free_port()
    out = scratch / "storescp-out"
    out.mkdir()
    argv = [dcmtk("storescp"), "-aet", "STORESCP", "-od", str(out), str(port)]
    server = Background(argv, port=port, env=dcmtk_tool_env(), log=scratch / "storescp.log")
    try:
        yield ws.RemoteNode(ae_title="STORESCP", host="127.0.0.1", port=port)
    finally:
        server.stop()


@contextlib.contextmanager
def orthanc_peer(_scratch: Path) -> Iterator[ws.RemoteNode]:
    with CachedOrthanc("echo", [], tcp_nodelay=True) as orthanc:
        yield orthanc.server.node


PEERS: dict[str, Callable[[Path], contextlib.AbstractContextManager[ws.RemoteNode]]] = {
    "storescp": storescp_peer,
    "orthanc": orthanc_peer,
}


def table(title: str, series: dict[str, Series]) -> None:
    rows = []
    for name, s in series.items():
        ratio, ratio_range = ratio_cells(s, series[DCMTK]) if name == OURS else ("", "")
        rows.append(
            [
                name,
                fmt(1000 * s.median("seconds")),
                spread([1000 * v for v in s.values("seconds")]),
                fmt(1000 * s.median("cpu_s")),
                fmt(s.median("rss_mb")) if s.values("rss_mb") else "-",
                ratio,
                ratio_range,
            ]
        )
    headers = ["method", "median ms", "min-max ms", "CPU ms", "peak RSS MB"]
    headers += ["ours/echoscu", "min-max"]
    print_table(title, headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="rounds of every method (10)")
    parser.add_argument(
        "--against",
        choices=["storescp", "orthanc", "both"],
        default="storescp",
        help="the C-ECHO SCP: a DCMTK storescp, the cached Orthanc, or both in turn",
    )
    args = parser.parse_args(argv)
    print_info(machine_info())
    peers = ["storescp", "orthanc"] if args.against == "both" else [args.against]
    with tempfile.TemporaryDirectory(prefix="ws-bench-echo-") as scratch_dir:
        scratch = Path(scratch_dir)
        for peer in peers:
            with PEERS[peer](scratch) as node:
                bench = EchoBench(node, scratch / "config")
                say(f"{peer} on port {node.port}: checking each method once")
                bench.cli(), bench.echoscu(), bench.call()
                methods = {OURS: bench.cli, DCMTK: bench.echoscu, CALL: bench.call}
                say(f"{peer}: {args.repeat} rounds of {', '.join(methods)}")
                series = alternate(methods, args.repeat)
                title = (
                    f"C-ECHO against {peer}, medians of {args.repeat} "
                    f"(load average now {loadavg()})"
                )
                table(title, series)
    return 0


if __name__ == "__main__":
    sys.exit(main())
