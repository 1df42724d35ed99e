"""Gateway CPU per request, split by process, at one load shape.

Starts the stub upstream and ``metis serve`` exactly as
``bench/gateway_overhead.py`` does (fresh SQLite, capped user/team key,
accounting on), warms up, then applies one load and reports utime + stime
(/proc) per request of the server process ("main": event loop and its
threads) and of each child (the write-behind writer), and the total.

    .venv/bin/python bench/gateway_cpu.py --load c1 --requests 5000
    .venv/bin/python bench/gateway_cpu.py --load 500 --requests 4000     # open loop, req/s
    .venv/bin/python bench/gateway_cpu.py --load idle --seconds 10     # ms CPU per second
    .venv/bin/python bench/gateway_cpu.py --load 500 --upstream-only   # the bare stub server

To compare two builds in the same minutes, run it from each checkout's
venv, or with ``PYTHONPATH=<other checkout>/src`` (the server subprocess
inherits it). Used for the tables of docs/performance.md "Round 3".
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from pathlib import Path

import gateway_overhead as g


def _cpu_by_pid(pid: int) -> dict[int, float]:
    out = {}
    for p in g._tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        out[p] = (int(fields[11]) + int(fields[12])) / g.CLK
    return out


def _load(url: str, headers: dict[str, str], load: str, n: int, seconds: float) -> int:
    """Apply the load; returns how many requests it made (idle: none)."""
    if load == "idle":
        time.sleep(seconds)
        return 0
    if load == "c1":
        asyncio.run(g.closed_c1(url, headers, n))
        return n
    rate = int(load)
    res = asyncio.run(g.open_loop(url, headers, rate, n / rate))
    return int(res["n"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--load", default="c1", help="c1, idle, or an open-loop rate in req/s")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=10.0, help="for --load idle")
    ap.add_argument("--upstream-only", action="store_true", help="measure the stub alone")
    args = ap.parse_args()
    env = g.bench_env("metis-bench-cpu-")
    up_port = g.free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up = g.start_upstream(up_port)
        procs.append(up)
        if args.upstream_only:
            target, url = up, f"http://127.0.0.1:{up_port}/v1/chat/completions"
            headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-x"}
        else:
            target, url, headers = g.start_gateway(env, up_port)
            procs.append(target)
        asyncio.run(g.closed_c1(url, headers, 500))  # warm up
        time.sleep(1.5)
        before = _cpu_by_pid(target.pid)
        n = _load(url, headers, args.load, args.requests, args.seconds)
        after = _cpu_by_pid(target.pid)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(30)
    per = n if n else args.seconds  # idle: per second
    unit = "ms CPU/request" if n else "ms CPU/s"
    print(f"load {args.load}: {n} requests" if n else f"idle {args.seconds:.0f} s")
    for pid, t in after.items():
        who = "main" if pid == target.pid else "child"
        print(f"  {who:5} {(t - before.get(pid, 0.0)) / per * 1000:.3f} {unit}")
    total = sum(after.values()) - sum(before.values())
    print(f"  total {total / per * 1000:.3f} {unit}")


if __name__ == "__main__":
    main()
