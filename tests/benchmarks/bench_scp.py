"""Our storage SCP receiving many parallel pushes, against DCMTK's ``storescp --fork``.

    python -m tests.benchmarks.bench_scp [--senders 20] [--per-sender 100] [--size small|large]
        [--repeat 3] [--tls]

``--senders`` DCMTK ``storescu`` processes (TCP_NODELAY=1) each push ``--per-sender`` instances
of their own (64x64, ~9 kB; or 512x512, ~0.5 MB) at once. Receivers, run alternately:

- ``storescp --fork``: a process per association, writing each file as it arrives (no fsync);
- ``store-scp``: ``workstation store-scp`` (one process, a thread per association), with
  its default durability: every pushed instance fsynced before the success response;
- ``store-scp --batched-sync``: answers once the file is complete under its final name and
  fsyncs in batches, which is the closest to what storescp guarantees.

``--tls``: every hop over DICOM TLS (throwaway certificates from tests/tls_certs.py; client
certificates required): ``storescu +tls`` into ``storescp +tls`` and into ``store-scp
--tls-cert``, the engine's performance over TLS against DCMTK's (DCMTK 3.6.7's movescu and
getscu have no TLS, so storage is where the two can be compared).

The time runs from starting the senders to the last one exiting (every response received);
the receiver is listening before. Every round counts the files that arrived (all, or the
benchmark stops). CPU is the receiver's own (all storescp children included), per instance.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.benchmarks.common import (
    Background,
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
    say,
    spread,
)
from tests.servers import dcmtk
from workstation.demo import generate_large_study


def _children_cpu(pid: int) -> float:
    """CPU seconds of a process and every child it waited for (storescp --fork's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=20)
    parser.add_argument("--per-sender", type=int, default=100)
    parser.add_argument("--size", choices=["small", "large"], default="small")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tls", action="store_true", help="every association over DICOM TLS")
    args = parser.parse_args()
    tls: list[str] = []
    server_tls: list[str] = []
    if args.tls:
        from tests.tls_certs import make_certificates

        certs = make_certificates(Path(tempfile.mkdtemp(prefix="ws-bench-tls-")))
        tls = ["+tls", certs.client.key, certs.client.cert, "+cf", certs.ca]
        server_tls = ["--tls-cert", certs.server.cert, "--tls-key", certs.server.key]
        server_tls += ["--tls-ca", certs.ca, "--tls-require-client-cert"]
        dcmtk_server_tls = ["+tls", certs.server.key, certs.server.cert, "+cf", certs.ca]
    print_info(machine_info())
    px = 64 if args.size == "small" else 512
    groups: list[list[Path]] = []
    for sender in range(args.senders):
        key = f"scp-s{100 + sender}-n{args.per_sender}-{px}"
        groups.append(
            cached_files(
                key, lambda s=sender: generate_large_study(100 + s, args.per_sender, px, px)
            )
        )
    total = args.senders * args.per_sender
    python = sys.executable

    def run(receiver: str) -> dict[str, float]:
        with tempfile.TemporaryDirectory(prefix="ws-bench-scp-") as scratch:
            out = Path(scratch) / "out"
            out.mkdir()
            port = free_port()
            if receiver == "storescp --fork":
                argv = [dcmtk("storescp"), "--fork", "-od", str(out), str(port)]
                if args.tls:
                    argv[1:1] = dcmtk_server_tls
                env = dcmtk_tool_env()
            else:
                argv = [python, "-m", "workstation", "store-scp", "--store", str(out)]
                argv += ["--port", str(port), "--bind", "127.0.0.1", "--aet", "WS"]
                if "batched" in receiver:
                    argv.append("--batched-sync")
                argv += server_tls
                env = python_env({"WORKSTATION_CONFIG_DIR": str(Path(scratch) / "cfg")})
            server = Background(argv, port=port, env=env, log=Path(scratch) / "server.log")
            try:
                cpu_before = _children_cpu(server.process.pid)
                start = time.perf_counter()
                senders = [
                    subprocess.Popen(
                        [dcmtk("storescu"), *tls, "-aec", "WS", "127.0.0.1", str(port)]
                        + [str(path) for path in g],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        env=dcmtk_tool_env(),
                    )
                    for g in groups
                ]
                codes = [p.wait(600) for p in senders]
                seconds = time.perf_counter() - start
                time.sleep(0.3)  # storescp --fork's children reaped, our index committed
                cpu = _children_cpu(server.process.pid) - cpu_before
                peak = server.peak_rss_mb()
            finally:
                server.stop()
            arrived = (
                count_files(out, "*.dcm") if receiver != "storescp --fork" else count_files(out)
            )
            if any(codes) or arrived != total:
                raise SystemExit(f"{receiver}: {arrived} of {total} arrived, exit codes {codes}")
            return {
                "seconds": seconds,
                "per_s": total / seconds,
                "cpu_us": cpu / total * 1e6,
                "rss": peak,
            }

    names = ["storescp --fork", "store-scp", "store-scp --batched-sync"]
    over = ", over DICOM TLS" if args.tls else ""
    say(f"{args.senders} senders x {args.per_sender} instances ({px}x{px}){over}; load {loadavg()}")
    series = alternate({name: (lambda n=name: run(n)) for name in names}, args.repeat)
    base = series["storescp --fork"].median("per_s")
    rows = [
        [
            name,
            fmt(s.median("seconds")),
            spread(s.values("seconds")),
            fmt(s.median("per_s")),
            fmt(s.median("cpu_us")),
            fmt(s.median("rss")),
            fmt(s.median("per_s") / base, 2),
        ]
        for name, s in series.items()
    ]
    print_table(
        f"{total} pushed instances ({px}x{px}), {args.senders} parallel storescu{over}, "
        f"medians of {args.repeat}",
        ["receiver", "s", "min-max", "inst/s", "CPU us/inst", "peak RSS MB*", "rate/storescp"],
        rows,
    )
    print("* storescp --fork: the parent's; its children are not counted")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
