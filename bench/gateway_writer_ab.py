"""A/B: the gateway's write-behind flush in a worker thread vs in a child process.

Starts the upstream stub and two ``metis serve --workers 1`` gateways that
differ only in ``METIS_WRITER`` (``thread`` / ``process``), each on its own
fresh SQLite database with accounting and caps on (as in
bench/gateway_overhead.py), then alternates open-loop rounds at ``--rate``
requests/s: direct, thread, process, repeated ``--rounds`` times, so both
see the same machine load. Reports per-round p50/p99 overhead and the gateway
CPU per request (server process + writer child), and the medians.

    .venv/bin/python bench/gateway_writer_ab.py --rate 500 --duration 5 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
from typing import Any

import gateway_overhead as g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    up = g.free_port()
    procs: list[subprocess.Popen[bytes]] = []
    gws: dict[str, tuple[subprocess.Popen[bytes], str, dict[str, str]]] = {}
    try:
        procs.append(g.start_upstream(up))
        for mode in ("thread", "process"):
            env = g.bench_env(f"metis-ab-{mode}-", METIS_WRITER=mode)
            p, url, h = g.start_gateway(env, up)
            procs.append(p)
            asyncio.run(g.closed_c1(url, h, 300))
            gws[mode] = (p, url, h)
        direct = f"http://127.0.0.1:{up}/v1/chat/completions"
        h_direct = {"Content-Type": "application/json", "Authorization": "Bearer sk-x"}
        rows: dict[str, list[tuple[float, float, float]]] = {"thread": [], "process": []}
        for i in range(args.rounds):
            d = asyncio.run(g.open_loop(direct, h_direct, args.rate, args.duration))
            for mode, (p, url, h) in gws.items():
                c0 = g.cpu_seconds(p.pid)
                o: dict[str, Any] = asyncio.run(g.open_loop(url, h, args.rate, args.duration))
                cpu = (g.cpu_seconds(p.pid) - c0) / max(1, o["n"])
                rows[mode].append((o["p50"] - d["p50"], o["p99"] - d["p99"], cpu * 1000))
                print(
                    f"round {i + 1} {mode:7s}: overhead p50 {o['p50'] - d['p50']:+.2f} ms,"
                    f" p99 {o['p99'] - d['p99']:+.2f} ms (direct p99 {d['p99']:.2f},"
                    f" errors {o['errors']}), CPU {cpu * 1000:.3f} ms/req"
                )
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(30)
    print(f"\nload average {os.getloadavg()[0]:.1f}, nice {os.nice(0)}, {args.rate} req/s")
    print("| writer | overhead p50 ms (median) | overhead p99 ms (median) | CPU ms/req (median) |")
    print("|---|---:|---:|---:|")
    for mode, r in rows.items():
        med = [statistics.median(x[k] for x in r) for k in range(3)]
        print(f"| {mode} | {med[0]:+.2f} | {med[1]:+.2f} | {med[2]:.3f} |")


if __name__ == "__main__":
    main()
