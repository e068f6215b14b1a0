"""A grid's served throughput in 1, 2, 4 client processes (`workers`) against a 200 ms loopback stub.

    python bench/served_grid.py [--latency-ms 200] [--connections 64] [--items 64] [--workers 1 2 4] [--copies 1]
                                [--samples-per-connection 2]

One Inspect process tops out near 40-50 calls/s here (bench/client_profile.py: its CPU per call is
Inspect's). The grid's `workers: N` splits the tasks over N processes, each with connections / N:
aggregate calls/s (counted at the stub, target and judge calls alike) is compared with the ideal,
connections / latency. Target: >= 85% of ideal at 64 connections on a 16-core machine. A grid is split
by task, so `--copies K` makes 4K tasks (K copies of the data) for up to 4K workers. Each worker runs its
tasks at once with `--samples-per-connection` x its connections samples in flight per task: a sample holds
no connection while it is scored and logged, so as many samples as connections would leave some idle.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import siuo_copy
from served import StubProcess


def main() -> None:
    from vlmguard_eval.cli.grid import run_grid
    from vlmguard_eval.cli.grid_config import GridConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--items", type=int, default=64, help="SIUO-format items per task (4 tasks)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--copies", type=int, default=1, help="copies of the SIUO data, 4 tasks each")
    parser.add_argument("--samples-per-connection", type=float, default=2.0)
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    server = StubProcess(latency)
    stats = server.stats

    copies = [str(siuo_copy(Path(tempfile.mkdtemp()), args.items)) for _ in range(args.copies)]
    ideal = args.connections / latency
    print(
        f"{os.cpu_count()} cores; ideal {ideal:.0f} calls/s at {args.connections} connections, {latency * 1000:.0f} ms"
    )
    try:
        for workers in args.workers:
            stats("/reset")
            connections = max(1, args.connections // workers)
            config = GridConfig(
                benchmarks=[
                    {"task": "siuo", "args": {"format": "gen", "data_dir": data, "epochs": 1}} for data in copies
                ],
                defenses=[{"name": n} for n in ("none", "self_reminder", "safety_prompt", "adashield_s")],
                models=["openai-api/stub/target"],
                roles={"grader": "openai-api/stub/judge"},
                log_dir=tempfile.mkdtemp(),
                options={
                    "max_connections": connections,
                    "max_samples": max(1, round(args.samples_per_connection * connections)),
                    "max_tasks": -(-4 * args.copies // workers),
                    "display": "none",
                },
                workers=workers,
            )
            started = time.perf_counter()
            success, _ = run_grid(config)
            wall = time.perf_counter() - started
            counts = stats()
            achieved = counts["count"] / (counts["last"] - counts["first"] + latency)
            note = "" if success else " (NOT all succeeded)"
            print(
                f"workers {workers}: {counts['count']} calls, {achieved:6.1f} calls/s "
                f"({100 * achieved / ideal:.0f}% of ideal), {wall:.1f} s wall{note}"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
