"""Simulator benchmark: startup time and small-request throughput.

Starts ``metis simulator serve`` as a subprocess (one uvicorn worker, as
users and the gateway benchmark run it), measures the time from spawn to the
first successful ``GET /_sim/health`` (imports included), then drives small
requests against it for a fixed duration per scenario:

- ``chat``: ``POST /v1/chat/completions`` (non-streaming, one short message)
- ``chat_stream``: the same with ``stream: true`` and ``include_usage``
- ``messages``: ``POST /v1/messages`` (non-streaming)
- ``models``: ``GET /v1/models``

The load generator is ``wrk`` when installed (``apt-get install wrk``; one
thread, so the server keeps the other core), else a built-in asyncio + aiohttp
generator (slower: it competes with the server for the CPU). Every scenario
checks that all responses were 200 and that the simulator's ground truth
counted each served call.

    .venv/bin/python bench/simulator.py                 # 10 s per scenario
    .venv/bin/python bench/simulator.py --duration 5 --connections 32

Prints a Markdown table; results are recorded in docs/performance.md.
"""

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
OPENAI_KEY = "sk-proj-bench-0000000000000000"
ANTHROPIC_KEY = "sk-ant-api03-bench-000000000000"

SCENARIOS: dict[str, dict[str, Any]] = {
    "chat": {
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": {"Authorization": f"Bearer {OPENAI_KEY}"},
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    },
    "chat_stream": {
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": {"Authorization": f"Bearer {OPENAI_KEY}"},
        "body": {
            "model": "gpt-4o-mini",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}],
        },
    },
    "messages": {
        "method": "POST",
        "path": "/v1/messages",
        "headers": {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
        "body": {
            "model": "claude-haiku-4-5-20251001",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}],
        },
    },
    "models": {
        "method": "GET",
        "path": "/v1/models",
        "headers": {"Authorization": f"Bearer {OPENAI_KEY}"},
        "body": None,
    },
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(entry: str, port: int) -> list[str]:
    """``metis simulator serve`` (the whole CLI) or ``python -m metis.simulator``."""
    if entry == "module":
        return [sys.executable, "-m", "metis.simulator", "--port", str(port)]
    exe = shutil.which("metis", path=str(ROOT / ".venv" / "bin")) or "metis"
    return [exe, "simulator", "serve", "--port", str(port)]


def start_server(port: int, entry: str = "cli") -> tuple[subprocess.Popen[bytes], float]:
    """Spawn the simulator; return it and the seconds until it answered."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        command(entry, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/_sim/health"
    while True:
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return proc, time.perf_counter() - t0
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(
                f"simulator exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        if time.perf_counter() - t0 > 30:
            raise RuntimeError("simulator did not start in 30 s")
        time.sleep(0.005)


def wrk_run(url: str, sc: dict[str, Any], duration: int, connections: int) -> dict[str, Any]:
    lua = [f'wrk.method = "{sc["method"]}"']
    for k, v in sc["headers"].items():
        lua.append(f'wrk.headers["{k}"] = "{v}"')
    if sc["body"] is not None:
        lua.append('wrk.headers["Content-Type"] = "application/json"')
        lua.append(f"wrk.body = [[{json.dumps(sc['body'])}]]")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("\n".join(lua) + "\n")
        script = f.name
    try:
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{duration}s",
                "--latency",
                "-s",
                script,
                url + sc["path"],
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    p50 = re.search(r"50%\s+(\S+)", out)
    p99 = re.search(r"99%\s+(\S+)", out)
    return {
        "rps": rps,
        "requests": total,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errs.group(1) if errs else "",
        "p50": p50.group(1) if p50 else "",
        "p99": p99.group(1) if p99 else "",
    }


async def _aiohttp_run(
    url: str, sc: dict[str, Any], duration: int, connections: int
) -> dict[str, Any]:
    import aiohttp

    body = json.dumps(sc["body"]).encode() if sc["body"] is not None else None
    headers = {**sc["headers"], "Content-Type": "application/json"}
    done = bad = 0
    lat: list[float] = []
    stop = time.perf_counter() + duration

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done, bad
        while time.perf_counter() < stop:
            t = time.perf_counter()
            async with session.request(
                sc["method"], url + sc["path"], data=body, headers=headers
            ) as r:
                await r.read()
                if r.status != 200:
                    bad += 1
            lat.append(time.perf_counter() - t)
            done += 1

    conn = aiohttp.TCPConnector(limit=connections)
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=conn) as s:
        await asyncio.gather(*(worker(s) for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    lat.sort()
    return {
        "rps": done / elapsed,
        "requests": done,
        "non_2xx": bad,
        "socket_errors": "",
        "p50": f"{lat[len(lat) // 2] * 1000:.2f}ms",
        "p99": f"{lat[int(len(lat) * 0.99)] * 1000:.2f}ms",
    }


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cpu = model or platform.processor()
    return f"{os.cpu_count()} CPUs (nproc), {cpu}, Python {platform.python_version()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--startups", type=int, default=5, help="startup measurements (median)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--generator", choices=("auto", "wrk", "aiohttp"), default="auto")
    args = ap.parse_args()
    gen = args.generator
    if gen == "auto":
        gen = "wrk" if shutil.which("wrk") else "aiohttp"

    startups: dict[str, list[float]] = {"cli": [], "module": []}
    for _ in range(args.startups):
        for entry, times in startups.items():
            proc, secs = start_server(free_port(), entry)
            times.append(secs)
            proc.terminate()
            proc.wait(10)
    for times in startups.values():
        times.sort()

    port = free_port()
    proc, _ = start_server(port)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        for name in args.scenarios.split(","):
            sc = SCENARIOS[name]
            httpx.post(url + "/_sim/reset")
            if gen == "wrk":
                res = wrk_run(url, sc, args.duration, args.connections)
            else:
                res = asyncio.run(_aiohttp_run(url, sc, args.duration, args.connections))
            truth = httpx.get(url + "/_sim/ground_truth", timeout=60).json()["total"]["requests"]
            billed = name != "models"
            # wrk counts requests whose responses completed; the server may have
            # served a few more that were in flight when wrk stopped.
            ok = res["non_2xx"] == 0 and (not billed or truth >= res["requests"])
            rows.append((name, res, truth if billed else "-", ok))
    finally:
        proc.terminate()
        proc.wait(10)

    print(f"machine: {machine()}")
    print(f"load generator: {gen}, {args.connections} connections, {args.duration} s per scenario")
    print(f"load average at start: {os.getloadavg()[0]:.1f} (other processes share the machine)")
    for entry, label in (("cli", "metis simulator serve"), ("module", "python -m metis.simulator")):
        t = startups[entry]
        print(
            f"startup of `{label}` (spawn -> first 200), {args.startups} runs: "
            f"median {t[len(t) // 2]:.2f} s, min {t[0]:.2f} s, max {t[-1]:.2f} s"
        )
    print()
    print("| scenario | req/s | requests | p50 | p99 | non-2xx | ledger calls | ok |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, res, truth, ok in rows:
        print(
            f"| {name} | {res['rps']:.0f} | {res['requests']} | {res['p50']} | {res['p99']} "
            f"| {res['non_2xx']} | {truth} | {'yes' if ok else 'NO'} |"
        )
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
