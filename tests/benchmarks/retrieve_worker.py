"""One retrieve by the workstation in its own process, for clean timing and peak RSS.

    python -m tests.benchmarks.retrieve_worker move|get AET@HOST:PORT STUDY_UID --store DIR
        [--scp-aet WSBENCH --scp-port PORT] [--no-check] [--profile FILE] [--probe FILE]

The store is opened and (for C-MOVE) our storage SCP started before the clock starts, as in
the workstation, where both are up before anyone retrieves. The time covers ``workstation.move``
or ``workstation.get`` and ``store.flush()`` (every index record committed, after the syncfs
that makes the batch durable). One JSON line on stdout gives the outcome, the seconds, the CPU
seconds of the call (every thread) and the memory high-water marks. ``--profile`` writes a
cProfile report over all threads, ``--probe`` the CPU per stage
(:data:`tests.benchmarks.profiling.RETRIEVE_PROBES`, ``GET_PROBES``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("method", choices=["move", "get"])
    parser.add_argument("node")
    parser.add_argument("study_uid")
    parser.add_argument("--store", required=True)
    parser.add_argument("--scp-aet", default="WSBENCH")
    parser.add_argument("--scp-port", type=int, default=0)
    parser.add_argument("--no-check", action="store_true")
    parser.add_argument("--profile", default=None, help="write a cProfile report to this file")
    parser.add_argument("--probe", default=None, help="write a per-stage CPU report to this file")
    args = parser.parse_args(argv)

    import workstation as ws

    node = ws.RemoteNode.parse(args.node)
    query = ws.Query.study(StudyInstanceUID=args.study_uid)
    baseline = vm_hwm_mb()
    probing: Any = contextlib.nullcontext([])
    if args.probe:  # before the store and the SCP exist: they bind some methods at start
        from tests.benchmarks.profiling import GET_PROBES, RETRIEVE_PROBES, probes

        probing = probes(RETRIEVE_PROBES if args.method == "move" else GET_PROBES)
    with probing as found:
        store = ws.LocalStore(args.store)
        scp = None
        if args.method == "move":
            local = ws.LocalAE(args.scp_aet, args.scp_port, "127.0.0.1")
            scp = ws.StorageServer(local, store)
            scp.start()
        profiler: Any = None
        if args.profile:
            from tests.benchmarks.profiling import profile_threads

            profiler = profile_threads()
            profiles = profiler.__enter__()
        cpu = time.process_time()
        start = time.perf_counter()
        if scp is not None:
            outcome = ws.move(node, query, scp, check=not args.no_check)
        else:
            outcome = ws.get(node, query, store, check=not args.no_check)
        store.flush()
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        if scp is not None:
            scp.stop()
    if args.probe:
        from tests.benchmarks.profiling import probe_report

        text = probe_report(
            found, units=max(1, outcome.received), unit="instance", process_cpu_s=cpu
        )
        Path(args.probe).write_text(f"{seconds:.2f} s wall\n{text}")
    if profiler is not None:
        from tests.benchmarks.profiling import report

        profiler.__exit__(None, None, None)
        text = report(profiles, top=30, dump=Path(args.profile).with_suffix(".prof"))
        Path(args.profile).write_text(text)
    store.close()
    result = {
        "state": str(outcome.state),
        "message": outcome.message,
        "received": outcome.received,
        "expected": outcome.expected,
        "bytes": outcome.bytes,
        "seconds": seconds,
        "cpu_s": cpu,
        "baseline_rss_mb": baseline,
        "peak_rss_mb": vm_hwm_mb(),
    }
    print(json.dumps(result))
    return 0 if outcome.state is ws.RetrieveState.DONE else 1


if __name__ == "__main__":
    sys.exit(main())
