"""Soak: a bounded run of mixed gateway traffic at a fixed rate, checked against ground truth.

Setup (all on 127.0.0.1, each its own process): the provider simulator
(``python -m metis.simulator``), ``metis serve --workers 1`` on a fresh
database (SQLite by default, ``--database-url`` for PostgreSQL), workspace
``soak`` with OpenAI and Anthropic inference credentials pointing at the
simulator, and ``--keys`` gateway keys, each with its own user; every key
has a daily cap, and the first two have caps small enough to be reached
during the run (so refusals -- 429 -- happen while other keys carry on).

Traffic: open loop at ``--rate`` requests/s for ``--duration`` s (each
request scheduled at a fixed time, sent even if earlier ones are still
running), round-robin over keys and over four kinds: OpenAI chat and
Anthropic messages, streaming and not, through the official async SDKs.

Checked at the end (after a graceful SIGTERM of the server, which flushes):

- no 5xx from Metis (the simulator injects no faults, so any 5xx is ours);
- every request answered 200 has its usage record; records equal the
  simulator's calls one for one (tokens and cost, by upstream response id)
  and their totals equal ``/_sim/ground_truth`` exactly;
- each key's spend counter equals its records' cost; capped keys stay within
  the documented overshoot bound (one worst-case reservation per process);
- memory: the server's RSS sampled every 5 s; reported first/last minute and
  the slope of a least-squares line over the second half of the run.

    .venv/bin/python bench/soak.py                         # 10 minutes, 40 req/s
    .venv/bin/python bench/soak.py --duration 300 --rate 40

Prints a JSON summary (pasted into docs/performance.md, "Soak"); exits 1 if
a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
KINDS = ("openai", "openai_stream", "anthropic", "anthropic_stream")
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-haiku-4-5-20251001"
PAGE = os.sysconf("SC_PAGE_SIZE")
ERRORS: Counter[str] = Counter()  # 5xx bodies and client-side failures, for diagnosis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, ok: tuple[int, ...], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code in ok:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def setup(env: dict[str, str], sim_url: str, keys: int) -> list[tuple[str, str, str]]:
    """Migrate, provision; returns [(key_id, secret, cap_usd)]."""
    os.environ.update(env)
    from metis.config import get_settings
    from metis.credentials import add_credential
    from metis.db.engine import make_engine
    from metis.db.migrate import upgrade
    from metis.identity.keys import issue_key
    from metis.money import to_nanousd
    from metis.workspaces import add_workspace

    settings = get_settings()
    engine = make_engine(settings=settings)
    upgrade(engine)
    out = []
    with engine.begin() as conn:
        ws = add_workspace(conn, "soak")
        for provider, secret in (
            ("openai", "sk-soak-openai-0001"),
            ("anthropic", "sk-ant-soak-01"),
        ):
            add_credential(
                conn,
                settings,
                workspace_id=ws.id,
                provider=provider,
                purposes=["inference"],
                mode="standard",
                secret=secret,
                base_url=sim_url,
            )
        for i in range(keys):
            cap = "0.05" if i < 2 else "1000"
            key, secret = issue_key(
                conn,
                name=f"soak-{i}",
                workspace=ws.id,
                user=f"soak-user-{i}",
                team=None,
                allowed_models=None,
                daily_cap_nanousd=to_nanousd(Decimal(cap)),
                create_user=True,
                create_team=True,
            )
            out.append((key.id, secret, cap))
    engine.dispose()
    return out


async def consume(raw: Any, stream: bool) -> None:
    """Read the whole response (the SDKs' raw ``parse()`` is sync in one, async in the other)."""
    parsed = raw.parse()
    if inspect.isawaitable(parsed):
        parsed = await parsed
    if stream:
        async for _ in parsed:
            pass


async def one(
    oc: openai.AsyncOpenAI, ac: anthropic.AsyncAnthropic, kind: str, n: int
) -> tuple[int, str | None, float]:
    """(status, x-metis-request-id, latency s) of one request; 0 = connection failure."""
    t0 = time.perf_counter()
    msg = f"soak request {n}: " + "lorem " * (n % 37)
    try:
        if kind.startswith("openai"):
            stream = kind.endswith("stream")
            raw: Any = await oc.chat.completions.with_raw_response.create(
                model=OPENAI_MODEL,
                messages=[{"role": "user", "content": msg}],
                max_tokens=64,
                stream=stream,
            )
            await consume(raw, stream)
        else:
            stream = kind.endswith("stream")
            raw = await ac.messages.with_raw_response.create(
                model=ANTHROPIC_MODEL,
                max_tokens=64,
                messages=[{"role": "user", "content": msg}],
                stream=stream,
            )
            await consume(raw, stream)
        return raw.status_code, raw.headers.get("x-metis-request-id"), time.perf_counter() - t0
    except (openai.APIStatusError, anthropic.APIStatusError) as e:
        if e.status_code >= 500:
            ERRORS[f"{e.status_code} {e.message}"[:160]] += 1
        return e.status_code, None, time.perf_counter() - t0
    except (openai.APIError, anthropic.APIError) as e:
        ERRORS[f"client {type(e).__name__}"] += 1
        return 0, None, time.perf_counter() - t0


async def drive(
    url: str, keys: list[tuple[str, str, str]], rate: float, duration: float, pid: int
) -> dict[str, Any]:
    clients = [
        (
            openai.AsyncOpenAI(api_key=s, base_url=url + "/v1", max_retries=0, timeout=30),
            anthropic.AsyncAnthropic(api_key=s, base_url=url, max_retries=0, timeout=30),
        )
        for _, s, _ in keys
    ]
    results: list[tuple[int, str | None, float, int, float]] = []
    rss: list[tuple[float, int]] = []
    tasks: set[asyncio.Task[None]] = set()
    total = int(rate * duration)
    start = time.monotonic()

    async def run(n: int) -> None:
        k = n % len(keys)
        oc, ac = clients[k]
        try:
            status, rid, lat = await one(oc, ac, KINDS[(n // len(keys)) % 4], n)
        except Exception as e:  # a bug in this script must fail the run, not vanish
            print(f"request {n}: {type(e).__name__}: {e}", file=sys.stderr)
            status, rid, lat = -1, None, 0.0
        results.append((status, rid, lat, k, time.monotonic() - start))

    next_sample = start
    for n in range(total):
        at = start + n / rate
        now = time.monotonic()
        if now >= next_sample:
            rss.append((now - start, rss_bytes(pid)))
            next_sample += 5
        if at > now:
            await asyncio.sleep(at - now)
        t = asyncio.create_task(run(n))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    rss.append((time.monotonic() - start, rss_bytes(pid)))
    for oc, ac in clients:
        await oc.close()
        await ac.close()
    return {"results": results, "rss": rss, "elapsed": time.monotonic() - start}


def per_minute(
    results: list[tuple[int, str | None, float, int, float]], rss: list[tuple[float, int]]
) -> list[dict[str, Any]]:
    """Per minute of the run (by completion time): statuses, 200 latency p50/p99, max RSS."""
    out = []
    for m in range(int(max((r[4] for r in results), default=0) // 60) + 1):
        rows = [r for r in results if m * 60 <= r[4] < (m + 1) * 60]
        lat = sorted(r[2] for r in rows if r[0] == 200)
        mem = [b for t, b in rss if m * 60 <= t < (m + 1) * 60]
        out.append(
            {
                "minute": m,
                "statuses": {str(k): v for k, v in sorted(Counter(r[0] for r in rows).items())},
                "p50_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
                "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None,
                "rss_mib": round(max(mem) / 2**20, 1) if mem else None,
            }
        )
    return out


def slope_mib_per_min(points: list[tuple[float, int]]) -> float:
    xs = [p[0] / 60 for p in points]
    ys = [p[1] / 2**20 for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs) or 1.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def verify(
    engine_url: str, sim_url: str, keys: list[tuple[str, str, str]], answered: set[str]
) -> dict[str, Any]:
    from sqlalchemy import select

    from metis.db.engine import make_engine
    from metis.db.tables import usage_records
    from metis.gateway.caps import estimate
    from metis.gateway.worst_case import WorstCase
    from metis.ledger.counters import read_counter
    from metis.money import to_nanousd
    from metis.timeutil import day_key, utcnow

    engine = make_engine(engine_url)
    with engine.connect() as conn:
        rows = [
            dict(r)
            for r in conn.execute(
                select(usage_records).where(usage_records.c.source == "gateway")
            ).mappings()
        ]
        counters = {
            kid: read_counter(conn, ("key_daily", kid, day_key(utcnow())))[0] for kid, _, _ in keys
        }
    engine.dispose()
    calls = httpx.get(sim_url + "/_sim/calls", timeout=60).json()["calls"]
    truth = httpx.get(sim_url + "/_sim/ground_truth", timeout=60).json()["total"]
    by_call = {c["response_id"]: c for c in calls}
    failed = [r for r in rows if r["status"] not in ("ok", "client_disconnected")]
    rows = [r for r in rows if r["status"] in ("ok", "client_disconnected")]
    fields = (
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cache_creation_input_tokens",
        "cost_nanousd",
    )
    mism = [
        r["correlation_id"]
        for r in rows
        if r["correlation_id"] not in by_call
        or any(int(r[f]) != int(by_call[r["correlation_id"]][f]) for f in fields)
    ]
    totals = {f: sum(int(r[f]) for r in rows) for f in fields}
    truth_totals = {f: int(truth.get(f, 0)) for f in fields}
    recorded = {r["dedupe_key"] for r in rows}
    worst = max(  # one worst-case reservation: request bodies here are < 600 bytes
        estimate("openai", OPENAI_MODEL, 600, WorstCase(output_budget=64)) or 0,
        estimate("anthropic", ANTHROPIC_MODEL, 600, WorstCase(output_budget=64)) or 0,
    )
    caps = []
    for kid, _, cap in keys:
        cost = sum(int(r["cost_nanousd"]) for r in rows if r["gateway_key_id"] == kid)
        caps.append(
            {
                "key": kid,
                "cap_usd": cap,
                "spent_nanousd": cost,
                "counter_equals_records": counters[kid] == cost,
                "within_bound": cost <= to_nanousd(Decimal(cap)) + worst,
            }
        )
    return {
        "records": len(rows),
        "error_records": len(failed),  # calls that failed upstream: recorded, zero cost
        "simulator_calls": len(calls),
        "answered_without_record": len(answered - recorded),
        "duplicate_upstream_ids": len(rows) - len({r["correlation_id"] for r in rows}),
        "record_call_mismatches": len(mism),
        "totals": totals,
        "ground_truth": truth_totals,
        "totals_equal_ground_truth": totals == truth_totals and len(rows) == len(calls),
        "caps": caps,
    }


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600, help="seconds of traffic")
    ap.add_argument("--rate", type=float, default=40, help="requests per second")
    ap.add_argument("--keys", type=int, default=8)
    ap.add_argument("--database-url", default=None, help="default: SQLite in a temp METIS_HOME")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="metis-soak-"))
    home = tmp / "home"
    home.mkdir(mode=0o700)
    from metis.secrets.master_key import generate_key_text

    db_url = args.database_url or f"sqlite:///{home / 'metis.db'}"
    env = {
        "METIS_HOME": str(home),
        "METIS_DATABASE_URL": db_url,
        "METIS_MASTER_KEY": generate_key_text(),
        "METIS_INGEST_SCHEDULER": "false",
        "METIS_LOG_LEVEL": "WARNING",
    }
    sim_port, gw_port = free_port(), free_port()
    sim_url, gw_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
    sim = subprocess.Popen(
        [PY, "-m", "metis.simulator", "--port", str(sim_port), "--seed", "11"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    srv: subprocess.Popen[bytes] | None = None
    log = (tmp / "serve.log").open("wb")
    try:
        wait_http(sim_url + "/_sim/health", (200,), sim, "simulator")
        keys = setup(env, sim_url, args.keys)
        srv = subprocess.Popen(
            [PY, "-c", "from metis.cli.main import run; run()", "serve", "--port", str(gw_port)],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        wait_http(gw_url + "/v1/models", (401,), srv, "metis serve")
        load_before = os.getloadavg()
        run = asyncio.run(drive(gw_url, keys, args.rate, args.duration, srv.pid))
        load_after = os.getloadavg()
        srv.send_signal(signal.SIGTERM)
        code = srv.wait(60)
        results = run["results"]
        statuses = Counter(r[0] for r in results)
        answered = {r[1] for r in results if r[0] == 200 and r[1]}
        lat = sorted(r[2] for r in results if r[0] == 200)
        rss = run["rss"]
        half = [p for p in rss if p[0] >= run["elapsed"] / 2]
        first = [p[1] for p in rss if p[0] <= 60]
        last = [p[1] for p in rss if p[0] >= run["elapsed"] - 60]
        check = verify(db_url, sim_url, keys, answered)
        summary = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
            + platform.python_version(),
            "backend": db_url.split(":", 1)[0],
            "duration_s": round(run["elapsed"], 1),
            "rate_rps": args.rate,
            "requests": len(results),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "metis_5xx": sum(v for k, v in statuses.items() if k >= 500),
            "connection_failures": statuses.get(0, 0),
            "client_errors": statuses.get(-1, 0),
            "latency_ms_200": {
                "p50": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
                "p99": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None,
            },
            "rss_mib": {
                "first_minute_max": round(max(first) / 2**20, 1),
                "last_minute_max": round(max(last) / 2**20, 1),
                "max": round(max(p[1] for p in rss) / 2**20, 1),
                "slope_second_half_mib_per_min": round(slope_mib_per_min(half), 3),
                "samples": len(rss),
            },
            "per_minute": per_minute(results, rss),
            "errors": dict(ERRORS.most_common(10)),
            "load_average_1m": {"start": round(load_before[0], 2), "end": round(load_after[0], 2)},
            "server_exit": code,
            **check,
        }
        print(json.dumps(summary, indent=2))
        ok = (
            len(results) == int(args.rate * args.duration)
            and statuses.get(-1, 0) == 0
            and summary["metis_5xx"] == 0
            and summary["connection_failures"] == 0
            and check["answered_without_record"] == 0
            and check["duplicate_upstream_ids"] == 0
            and check["record_call_mismatches"] == 0
            and check["totals_equal_ground_truth"]
            and all(c["counter_equals_records"] and c["within_bound"] for c in check["caps"])
        )
        print("SOAK", "PASSED" if ok else "FAILED", file=sys.stderr)
        return 0 if ok else 1
    finally:
        if srv is not None and srv.poll() is None:
            srv.kill()
        sim.terminate()
        sim.wait(10)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
