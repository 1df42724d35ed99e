"""Gateway overhead: the same small request sent directly to the upstream and through Metis.

Setup (all on 127.0.0.1, each server its own process, one uvicorn worker,
uvloop + httptools): a minimal OpenAI/Anthropic upstream
(tests/gateway/stub_upstream.py; far faster than any gateway), and
``metis serve --workers 1`` on a fresh SQLite database with accounting and
caps ON: the key belongs to a user and a team with a key daily cap, a team
daily cap and a team monthly cap (so every request reserves and settles four
spend counters, and writes a usage record and two events via the
write-behind flush).

Scenarios (direct = client -> upstream; gateway = client -> Metis -> upstream):

- ``c1``: closed loop, concurrency 1, N requests: p50/p90/p99 latency.
- ``open R``: open loop at R requests/s (100, 500, 1000) for D seconds; each
  latency is measured from the request's *scheduled* send time (no
  coordinated omission); p50/p90/p99.
- ``c64``: closed loop at concurrency 64 for D seconds with ``wrk`` (1
  thread): the highest throughput, plus the gateway's CPU time per request
  (utime + stime of the server process from /proc over the run / requests).
- ``ttfb``: streaming chat completion, concurrency 1: time to first byte.
- ``responses``: the same for ``POST /v1/responses`` (OpenAI Responses API):
  plain at concurrency 1 and at 500 req/s open loop, streamed at
  concurrency 1 (time to first byte, and to the last byte with
  ``response.completed``). ``--no-responses`` skips them.
- ``--writer``: where the gateway's write-behind flush runs (``METIS_WRITER``;
  default ``auto`` = a child process under ``metis serve``). Gateway CPU is
  that of the server process *and* its writer child.
- ``litellm``: LiteLLM Proxy 1.109.1 (``../shared/peers/litellm``, no
  database, so *without* accounting) measured the same way for c64 and c1,
  when ``$LITELLM_VENV`` (default ~/.cache/litellm-venv) exists.
- ``--compatible``: the OpenAI-compatible path in the same run, on the same
  gateway and stub: the workspace also holds a ``groq`` credential (the
  preset, priced by genai-prices' ``groq`` prices) whose base URL is the
  stub's ``/v1``, and the client asks for ``groq/llama-3.3-70b-versatile``.
  For c1, each open-loop rate and c64, the gateway is measured OpenAI path,
  compatible path, OpenAI path again (the two OpenAI runs show the run's
  noise); before each c64 gateway run the gateway is left to go idle (its
  write-behind backlog flushed). Afterwards the usage records are counted by
  provider, with the unpriced ones.
- ``--database-url URL`` (PostgreSQL): instead of a fresh SQLite file, a fresh
  database with a unique name (``metis_bench_gw_<hex>``) on that server,
  migrated like ``metis db upgrade``, dropped afterwards unless ``--keep``.
- ``--gateways N`` (default 1): N ``metis serve --workers 1`` processes on
  their own ports sharing the one database (each with its own write-behind
  writer child), the same key and caps. The Python clients (c1, open loop,
  TTFB, responses) send request i to gateway i mod N; c64 runs one ``wrk`` per
  gateway at the same time with 64/N connections each and sums their
  throughput; gateway CPU per request = the CPU of all N server processes and
  their writer children over all requests.
- Ledger check (every mode): when the load is over, the usage records are
  counted until they equal the requests the gateways received (their
  ``metis_gateway_requests_total`` on ``/metrics``; a timeout, not a fixed
  sleep), and after the gateways' graceful shutdown the spend counters are
  compared with the records: per scope, the spend summed over its periods
  equals the records' cost, and no lease is left reserved. A mismatch exits
  with status 1. Also reported: how long after each concurrency-64 burst its
  last usage record landed (the write-behind backlog), the gateway CPU per
  request including that flush, with ``--database-url`` the CPU of the bench
  database's PostgreSQL backends over the same span (the server runs on this
  machine; not part of "gateway CPU"), and the open-loop failures by HTTP
  status or client exception. With the defaults (SQLite, one gateway) this
  goes to stderr so the Markdown on stdout keeps its format; otherwise it is
  printed after the tables.

    .venv/bin/python bench/gateway_overhead.py                # ~2 minutes
    .venv/bin/python bench/gateway_overhead.py --duration 5 --no-litellm
    .venv/bin/python bench/gateway_overhead.py --duration 5 --no-litellm --no-responses --compatible
    .venv/bin/python bench/gateway_overhead.py --database-url \
        postgresql+psycopg://metis@127.0.0.1:55432/postgres --gateways 2 --no-litellm

Prints Markdown tables (copied into docs/performance.md, "Gateway").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
METIS = str(Path(PY).parent / "metis")
BODY = (
    b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in one word."}],'
    b'"max_tokens":5}'
)
STREAM_BODY = (
    b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello in one word."}],'
    b'"max_tokens":5,"stream":true}'
)
COMPAT_MODEL = b"groq/llama-3.3-70b-versatile"  # the groq preset, at the stub's base URL
COMPAT_BODY = BODY.replace(b"gpt-4o-mini", COMPAT_MODEL)
RESP_BODY = b'{"model":"gpt-4o-mini","input":"Say hello in one word.","max_output_tokens":16}'
RESP_STREAM_BODY = (
    b'{"model":"gpt-4o-mini","input":"Say hello in one word.","max_output_tokens":16,"stream":true}'
)
CLK = os.sysconf("SC_CLK_TCK")
SENT: Counter[str] = Counter()
"""Requests answered (or failed) per server ``host:port``, counted by the load generators."""
FAILED: Counter[tuple[str, str]] = Counter()
"""Open-loop failures per (server ``host:port``, HTTP status or client exception)."""
Urls = str | Sequence[str]


def url_list(urls: Urls) -> list[str]:
    """One URL or several (one per gateway; request i goes to ``urls[i % len(urls)]``)."""
    return [urls] if isinstance(urls, str) else list(urls)


def tally(url: str, n: int = 1) -> None:
    SENT[urlsplit(url).netloc] += n


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and all its live descendants (the write-behind child)."""
    total = 0.0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK
    return total


def cpu_all(pids: Sequence[int]) -> float:
    """`cpu_seconds` summed over several server processes (N gateways)."""
    return sum(cpu_seconds(p) for p in pids)


def _tree(pid: int) -> list[int]:
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except FileNotFoundError:
            continue
        for k in kids:
            out.extend(_tree(int(k)))
    return out


def settle(pids: Sequence[int], idle_cpu: float = 0.02, timeout: float = 30) -> None:
    """Wait until ``pids`` and their descendants use under ``idle_cpu`` CPU seconds per 0.25 s
    (the write-behind backlog of a burst flushed)."""
    deadline = time.monotonic() + timeout
    last = cpu_all(pids)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = cpu_all(pids)
        if now - last < idle_cpu:
            return
        last = now


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def summary(lat_s: list[float]) -> tuple[float, float, float]:
    ms = [x * 1000 for x in lat_s]
    return pct(ms, 50), pct(ms, 90), pct(ms, 99)


# -- load generators ----------------------------------------------------------


async def closed_c1(urls: Urls, headers: dict[str, str], n: int, body: bytes = BODY) -> list[float]:
    out = []
    us = url_list(urls)
    conn = aiohttp.TCPConnector(limit=len(us))  # one kept-alive connection per server
    async with aiohttp.ClientSession(connector=conn) as s:
        for i in range(n):
            url = us[i % len(us)]
            t = time.perf_counter()
            async with s.post(url, data=body, headers=headers) as r:
                await r.read()
                assert r.status == 200, r.status
            out.append(time.perf_counter() - t)
            tally(url)
    return out


async def open_loop(
    urls: Urls, headers: dict[str, str], rate: int, duration: float, body: bytes = BODY
) -> dict[str, Any]:
    lat: list[float] = []
    errors = 0
    us = url_list(urls)
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def one(sched: float, url: str) -> None:
            nonlocal errors
            try:
                async with s.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                        FAILED[(urlsplit(url).netloc, f"HTTP {r.status}")] += 1
            except aiohttp.ClientError as e:
                errors += 1
                FAILED[(urlsplit(url).netloc, type(e).__name__)] += 1
            lat.append(time.perf_counter() - sched)
            tally(url)

        n = int(rate * duration)
        start = time.perf_counter() + 0.05
        tasks = []
        for i in range(n):
            sched = start + i / rate
            delay = sched - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(sched, us[i % len(us)])))
        await asyncio.gather(*tasks)
    p50, p90, p99 = summary(lat)
    return {"p50": p50, "p90": p90, "p99": p99, "errors": errors, "n": len(lat)}


async def ttfb(
    urls: Urls, headers: dict[str, str], n: int, body: bytes = STREAM_BODY
) -> tuple[list[float], list[float]]:
    """(time to the first body byte, time to the stream's end) per request."""
    first, last = [], []
    us = url_list(urls)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=len(us))) as s:
        for i in range(n):
            url = us[i % len(us)]
            t = time.perf_counter()
            async with s.post(url, data=body, headers=headers) as r:
                assert r.status == 200
                await r.content.readany()
                first.append(time.perf_counter() - t)
                await r.read()
                last.append(time.perf_counter() - t)
            tally(url)
    return first, last


def wrk(
    url: str, headers: dict[str, str], conns: int, duration: float, body: bytes = BODY
) -> dict[str, float]:
    return wrk_many([url], headers, conns, duration, body)


def wrk_many(
    urls: Sequence[str], headers: dict[str, str], conns: int, duration: float, body: bytes = BODY
) -> dict[str, float]:
    """One ``wrk`` per URL at the same time, ``conns`` connections split evenly over them;
    throughput, requests and non-2xx summed."""
    hdr = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(f'wrk.method = "POST"\nwrk.body = [[{body.decode()}]]\n{hdr}')
    n = len(urls)
    runs = []
    for i, url in enumerate(urls):
        c = conns // n + (1 if i < conns % n else 0)
        cmd = ["wrk", "-t1", f"-c{c}", f"-d{int(duration)}s", "--latency", "-s", lua.name, url]
        runs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    outs = [r.communicate()[0] for r in runs]
    os.unlink(lua.name)
    if any(r.returncode for r in runs):
        raise RuntimeError(f"wrk failed: {[r.returncode for r in runs]}")
    total: dict[str, float] = {"rps": 0.0, "requests": 0, "non2xx": 0}
    for url, out in zip(urls, outs, strict=True):
        one = wrk_parse(out)
        tally(url, int(one["requests"]))
        for k in total:
            total[k] += one[k]
    return total


def wrk_parse(out: str) -> dict[str, float]:
    """Throughput, requests and non-2xx answers from one ``wrk`` report."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "requests": total, "non2xx": int(non2xx.group(1)) if non2xx else 0}


def with_cpu(pids: Sequence[int], run: Any, n: Any) -> tuple[Any, float]:
    """``run()``'s result and the CPU seconds per request of ``pids`` (and descendants) over
    it; ``n(result)`` = requests served."""
    cpu0 = cpu_all(pids)
    out = run()
    return out, (cpu_all(pids) - cpu0) / max(1, n(out))


def served_c1(
    pids: Sequence[int], urls: Urls, headers: dict[str, str], n: int, body: bytes = BODY
) -> Any:
    """Concurrency 1 against servers (round robin): (p50, p90, p99), CPU s/request."""
    return with_cpu(
        pids, lambda: summary(asyncio.run(closed_c1(urls, headers, n, body))), lambda _: n
    )


def served_open(
    pids: Sequence[int],
    urls: Urls,
    headers: dict[str, str],
    rate: int,
    duration: float,
    body: bytes = BODY,
) -> Any:
    """Open loop against servers (round robin): `open_loop`'s result, CPU s/request."""
    run = lambda: asyncio.run(open_loop(urls, headers, rate, duration, body))  # noqa: E731
    return with_cpu(pids, run, lambda o: o["n"])


def served_c64(
    pids: Sequence[int], urls: Urls, headers: dict[str, str], duration: float, body: bytes = BODY
) -> Any:
    """wrk at concurrency 64 against servers (64/N connections each): `wrk_many`'s result,
    CPU s/request."""
    run = lambda: wrk_many(url_list(urls), headers, 64, duration, body)  # noqa: E731
    return with_cpu(pids, run, lambda w: w["requests"])


# -- servers ------------------------------------------------------------------


def start_upstream(port: int) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        [
            PY,
            "-m",
            "uvicorn",
            "tests.gateway.stub_upstream:app",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
    )
    wait_http(f"http://127.0.0.1:{port}/health")
    return p


def bench_env(prefix: str, **extra: str) -> dict[str, str]:
    """METIS_* for a fresh SQLite installation in a new temp METIS_HOME."""
    from metis.secrets.master_key import generate_key_text

    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    return {
        "METIS_HOME": str(tmp),
        "METIS_DATABASE_URL": f"sqlite:///{tmp / 'metis.db'}",
        "METIS_MASTER_KEY": generate_key_text(),
        "METIS_LOG_LEVEL": "WARNING",
        **extra,
    }


def start_gateway(
    env: dict[str, str], upstream_port: int, procs: list[subprocess.Popen[bytes]], n: int = 1
) -> tuple[list[int], list[str], dict[str, str]]:
    """Set up Metis for the stub upstream, start ``n`` `metis serve` processes on one database
    (each appended to ``procs`` as it starts, so a failed start still stops the others):
    (pids, chat URLs, headers)."""
    secret = setup_metis(env, f"http://127.0.0.1:{upstream_port}")
    urls = []
    for _ in range(n):
        port = free_port()
        procs.append(
            subprocess.Popen([METIS, "serve", "--port", str(port)], env=dict(os.environ, **env))
        )
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        urls.append(f"http://127.0.0.1:{port}/v1/chat/completions")
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}
    return [p.pid for p in procs[-n:]], urls, headers


def create_pg_database(server_url: str) -> tuple[str, str]:
    """A fresh database with a unique name on the PostgreSQL server of ``server_url``:
    (its name, its URL)."""
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.exc import DBAPIError

    from metis.db.engine import normalize_url

    base = normalize_url(server_url)
    if make_url(base).get_backend_name() != "postgresql":
        sys.exit(f"--database-url must be a PostgreSQL URL, not {make_url(base).drivername}")
    name = f"metis_bench_gw_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except DBAPIError as e:
        shown = make_url(base).render_as_string(hide_password=True)
        sys.exit(f"cannot create a database on {shown}: {str(e.orig).strip()}")
    finally:
        admin.dispose()
    return name, make_url(base).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(server_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    from metis.db.engine import normalize_url

    admin = create_engine(normalize_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# -- ledger check -------------------------------------------------------------


def received(urls: Sequence[str]) -> list[int]:
    """Billed requests each gateway received (``metis_gateway_requests_total`` on /metrics)."""
    import urllib.request

    out = []
    for url in urls:
        parts = urlsplit(url)
        with urllib.request.urlopen(f"{parts.scheme}://{parts.netloc}/metrics", timeout=10) as r:
            text = r.read().decode()
        out.append(
            int(
                sum(
                    float(ln.rsplit(" ", 1)[1])
                    for ln in text.splitlines()
                    if ln.startswith("metis_gateway_requests_total{")
                )
            )
        )
    return out


def count_records(eng: Any) -> int:
    """Usage records in the bench database."""
    from sqlalchemy import func, select

    from metis.db.tables import usage_records

    with eng.connect() as c:
        return int(c.execute(select(func.count()).select_from(usage_records)).scalar_one())


def wait_records(expected: int, timeout: float = 60) -> tuple[int, float]:
    """Poll the usage-record count until it reaches ``expected`` (every gateway's write-behind
    flushed) or stops growing for 5 s, at most ``timeout`` s: (count, seconds waited)."""
    from metis.db.engine import make_engine

    eng = make_engine()  # `setup_metis` set METIS_DATABASE_URL
    try:
        t0 = time.monotonic()
        n, changed = count_records(eng), t0
        while n < expected and time.monotonic() - t0 < timeout:
            time.sleep(0.1)
            m = count_records(eng)
            if m != n:
                n, changed = m, time.monotonic()
            elif time.monotonic() - changed > 5:
                break
        return n, time.monotonic() - t0
    finally:
        eng.dispose()


def pg_backend_cpu() -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to the bench database (the
    server runs on this machine): the database work the gateway CPU does not include."""
    from sqlalchemy import text

    from metis.db.engine import make_engine

    eng = make_engine()
    with eng.connect() as c:
        q = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        pids = [int(p) for (p,) in c.execute(text(q + " AND pid <> pg_backend_pid()"))]
    eng.dispose()
    return {p: cpu_seconds(p) for p in pids if Path(f"/proc/{p}").exists()}


def counter_check() -> tuple[int, int, list[tuple[str, int, int]]]:
    """(records, their cost in nano-USD, [(scope, spent summed over its periods, reserved)])."""
    from sqlalchemy import func, select

    from metis.db.engine import make_engine
    from metis.db.tables import spend_counters as sc
    from metis.db.tables import usage_records as u

    eng = make_engine()
    with eng.connect() as c:
        n, cost = c.execute(select(func.count(), func.sum(u.c.cost_nanousd))).one()
        q = select(sc.c.scope, func.sum(sc.c.spent_nanousd), func.sum(sc.c.reserved_nanousd))
        scopes = [(s, int(a), int(b)) for s, a, b in c.execute(q.group_by(sc.c.scope))]
    eng.dispose()
    return int(n), int(cost or 0), sorted(scopes)


def ledger_lines(r: dict[str, Any]) -> tuple[list[str], bool]:
    """The ledger check as text, and whether it held: every received request is one usage
    record, and each capped scope's spend equals the records' cost with no lease left."""
    got, want, waited = r["landed"]
    n, cost, scopes = r["records"], r["cost"], r["scopes"]
    capped = {"key_daily", "team_daily", "team_monthly"}  # the caps `setup_metis` sets
    ok = (
        got == want == n
        and capped <= {s for s, _, _ in scopes}
        and all(spent == cost and res == 0 for _, spent, res in scopes)
    )
    ms = lambda xs: " / ".join(f"{x * 1000:.2f}" for x in xs)  # noqa: E731
    pg = (
        f"; the bench database's PostgreSQL backends (not in the gateway CPU)"
        f" {ms(r['c64_pg_cpu'])} ms CPU per request over the same span"
        if r["c64_pg_cpu"]
        else ""
    )
    lines = [
        f"Ledger check ({'ok' if ok else 'MISMATCH'}): the gateways received {want} billed"
        f" requests ({' + '.join(map(str, r['per_gateway']))}; the clients counted {r['sent']},"
        f" wrk leaves its in-flight requests uncounted); {got} usage records after"
        f" {waited:.1f} s of polling, {n} after shutdown, cost {cost} nano-USD."
        + (
            " Failed open-loop requests through the gateways: "
            + ", ".join(f"{k} {kind}" for kind, k in sorted(r["failed"].items()))
            + " (an exception name is a client-side failure: that request may never have reached a"
            " gateway)."
            if r["failed"]
            else ""
        ),
        "Write-behind after concurrency 64: the last usage record landed"
        f" {' / '.join(f'{x:.1f}' for x in r['c64_lag'])} s after the last answer; gateway CPU"
        f" from the burst's start until then {ms(r['c64_cpu'])} ms per request{pg}.",
        "Spend counters (summed over periods; leases returned at shutdown): "
        + "; ".join(
            f"{s} spent {spent} ({'=' if spent == cost else '!='} records), reserved {res}"
            for s, spent, res in scopes
        )
        + ".",
    ]
    return lines, ok


def setup_metis(env: dict[str, str], upstream: str) -> str:
    """Migrate a fresh database; workspace, credentials, capped user/team key. Returns the key."""
    os.environ.update(env)
    from metis.config import get_settings
    from metis.credentials import add_credential
    from metis.db.engine import make_engine
    from metis.db.migrate import upgrade
    from metis.identity.keys import issue_key
    from metis.identity.teams import set_caps
    from metis.workspaces import add_workspace

    eng = make_engine()
    upgrade(eng)
    with eng.begin() as c:
        ws = add_workspace(c, "bench")
        for prov in ("openai", "anthropic"):
            add_credential(
                c,
                get_settings(),
                workspace_id=ws.id,
                provider=prov,
                purposes=["inference"],
                mode="standard",
                secret="sk-bench-upstream-0000",
                base_url=upstream,
            )
        # An OpenAI-compatible preset at the same stub (`--compatible`; unused otherwise: a
        # model without a `groq/` prefix goes to `openai` as before).
        add_credential(
            c,
            get_settings(),
            workspace_id=ws.id,
            provider="groq",
            purposes=["inference"],
            secret="gsk-bench-upstream-0000",
            base_url=upstream + "/v1",
        )
        _, secret = issue_key(
            c,
            name="bench",
            workspace=ws.id,
            user="bench-user",
            team="bench-team",
            daily_cap_nanousd=10**12,
            create_user=True,
            create_team=True,
        )
        set_caps(c, "bench-team", daily_cap_nanousd=10**13, monthly_cap_nanousd=10**14)
    eng.dispose()
    return secret


def start_litellm(port: int, upstream_port: int, venv: Path, tmp: Path) -> subprocess.Popen[bytes]:
    cfg = tmp / "litellm.yaml"
    cfg.write_text(
        "model_list:\n  - model_name: gpt-4o-mini\n    litellm_params:\n"
        f"      model: openai/gpt-4o-mini\n      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: sk-anything\nlitellm_settings:\n  telemetry: false\n"
        "general_settings:\n  master_key: sk-bench-master-key\n"
    )
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    p = subprocess.Popen(
        [
            str(venv / "bin" / "litellm"),
            "--config",
            str(cfg),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per timed scenario")
    ap.add_argument("--c1", type=int, default=1000, help="requests in the concurrency-1 runs")
    ap.add_argument("--rates", default="100,500,1000")
    ap.add_argument("--no-litellm", action="store_true")
    ap.add_argument("--no-responses", action="store_true", help="skip the /v1/responses runs")
    ap.add_argument(
        "--compatible",
        action="store_true",
        help="also measure an OpenAI-compatible provider (groq/...) against the same stub",
    )
    ap.add_argument(
        "--database-url",
        metavar="URL",
        help="a PostgreSQL server: the run creates a fresh database there (dropped afterwards"
        " unless --keep) instead of a SQLite file",
    )
    ap.add_argument("--keep", action="store_true", help="keep the --database-url database")
    ap.add_argument(
        "--gateways",
        type=int,
        default=1,
        metavar="N",
        help="metis serve processes sharing the database; load is spread evenly over them",
    )
    ap.add_argument(
        "--writer",
        choices=("auto", "process", "thread"),
        default="auto",
        help="METIS_WRITER for the gateway (auto = process under metis serve)",
    )
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is required (apt-get install wrk)")
    if not 1 <= args.gateways <= 64:
        sys.exit("--gateways must be between 1 and 64")
    env = bench_env("metis-bench-", METIS_WRITER=args.writer)
    pg_name = None
    if args.database_url:
        pg_name, env["METIS_DATABASE_URL"] = create_pg_database(args.database_url)
    up_port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {}
    try:
        try:
            procs.append(start_upstream(up_port))
            gw, through, h_gw = start_gateway(env, up_port, procs, args.gateways)
            direct = f"http://127.0.0.1:{up_port}/v1/chat/completions"
            h_direct = {"Content-Type": "application/json", "Authorization": "Bearer sk-x"}
            asyncio.run(closed_c1(through, h_gw, 300))  # warm up
            if args.compatible:
                asyncio.run(closed_c1(through, h_gw, 300, COMPAT_BODY))
            asyncio.run(closed_c1(direct, h_direct, 300))
            # --compatible: each gateway scenario runs OpenAI path, compatible path, OpenAI again
            paths = [BODY, COMPAT_BODY, BODY] if args.compatible else [BODY]

            d = summary(asyncio.run(closed_c1(direct, h_direct, args.c1)))
            gs = [served_c1(gw, through, h_gw, args.c1, b) for b in paths]
            results["c1"] = (d, *gs[0])
            results["compat_c1"] = (d, gs)

            for rate in [int(r) for r in args.rates.split(",")]:
                od = asyncio.run(open_loop(direct, h_direct, rate, args.duration))
                gs = [served_open(gw, through, h_gw, rate, args.duration, b) for b in paths]
                results[f"open{rate}"] = (od, *gs[0])
                results[f"compat_open{rate}"] = (od, gs)

            # Before c64: its write-behind backlog would be flushed (and its CPU counted) here.
            if not args.no_responses:
                r_direct = direct.replace("/chat/completions", "/responses")
                r_through = [u.replace("/chat/completions", "/responses") for u in through]
                asyncio.run(closed_c1(r_through, h_gw, 300, RESP_BODY))  # warm up
                d = summary(asyncio.run(closed_c1(r_direct, h_direct, args.c1, RESP_BODY)))
                results["resp_c1"] = (d, *served_c1(gw, r_through, h_gw, args.c1, RESP_BODY))
                od = asyncio.run(open_loop(r_direct, h_direct, 500, args.duration, RESP_BODY))
                og = served_open(gw, r_through, h_gw, 500, args.duration, RESP_BODY)
                results["resp_open500"] = (od, *og)
                fd, ld = asyncio.run(ttfb(r_direct, h_direct, 300, RESP_STREAM_BODY))
                cpu0 = cpu_all(gw)
                fg, lg = asyncio.run(ttfb(r_through, h_gw, 300, RESP_STREAM_BODY))
                cpu_s = (cpu_all(gw) - cpu0) / 300
                results["resp_stream"] = (summary(fd), summary(fg), summary(ld), summary(lg), cpu_s)

            wd = wrk(direct, h_direct, 64, args.duration)
            gs, lag, pg_cpu, gw_cpu = [], [], [], []
            results["c64_lag"], results["c64_pg_cpu"], results["c64_cpu"] = lag, pg_cpu, gw_cpu
            for b in paths:
                settle(gw)  # the previous burst's write-behind backlog flushed
                pg0 = pg_backend_cpu() if pg_name else {}
                cpu0 = cpu_all(gw)
                gs.append(served_c64(gw, through, h_gw, args.duration, b))
                # How far the ledger lags the burst: its records land after the last answer.
                lag.append(wait_records(sum(received(through)))[1])
                gw_cpu.append((cpu_all(gw) - cpu0) / max(1, gs[-1][0]["requests"]))
                if pg_name:
                    pg1 = pg_backend_cpu()
                    used = sum(t - pg0.get(p, 0.0) for p, t in pg1.items())
                    pg_cpu.append(used / max(1, gs[-1][0]["requests"]))
            results["c64"] = (wd, *gs[0])
            results["compat_c64"] = (wd, gs)
            if args.compatible:
                settle(gw)

            td = summary(asyncio.run(ttfb(direct, h_direct, 300))[0])
            tg = summary(asyncio.run(ttfb(through, h_gw, 300))[0])
            results["ttfb"] = (td, tg)
            # Every request the gateways received lands as one usage record (write-behind flushed).
            results["per_gateway"] = received(through)
            want = sum(results["per_gateway"])
            results["sent"] = sum(SENT[urlsplit(u).netloc] for u in through)
            hosts = {urlsplit(u).netloc for u in through}
            failed: Counter[str] = Counter()
            for (host, kind), k in FAILED.items():
                if host in hosts:
                    failed[kind] += k
            results["failed"] = failed
            got, waited = wait_records(want)
            results["landed"] = (got, want, waited)

            venv = Path(os.environ.get("LITELLM_VENV", Path.home() / ".cache" / "litellm-venv"))
            if not args.no_litellm and (venv / "bin" / "litellm").exists():
                ll_port = free_port()
                ll = start_litellm(ll_port, up_port, venv, Path(env["METIS_HOME"]))
                procs.append(ll)
                ll_url = f"http://127.0.0.1:{ll_port}/v1/chat/completions"
                h_ll = {
                    "Content-Type": "application/json",
                    "Authorization": "Bearer sk-bench-master-key",
                }
                asyncio.run(closed_c1(ll_url, h_ll, 100))
                lc1, lcpu1 = served_c1([ll.pid], ll_url, h_ll, min(args.c1, 300))
                lw, lcpu = served_c64([ll.pid], ll_url, h_ll, args.duration)
                results["litellm"] = (lc1, lcpu1, lw, lcpu)
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
        # After the gateways' graceful shutdown (final flush, leases returned).
        results["records"], results["cost"], results["scopes"] = counter_check()
        if args.compatible:
            results["records_by_provider"] = records_by_provider()
    finally:
        if pg_name is not None and not args.keep:
            drop_pg_database(args.database_url, pg_name)
        elif pg_name is not None:
            print(f"kept database {pg_name}", file=sys.stderr)
    report(results, args)
    lines, ok = ledger_lines(results)
    default = args.database_url is None and args.gateways == 1
    print("\n" + "\n".join(lines), file=sys.stderr if default else sys.stdout)
    if not ok:
        sys.exit(1)


def records_by_provider() -> list[tuple[str, str, int, int]]:
    """(provider, cost_source, usage records, of them with cost 0) in the bench database
    (`setup_metis` set METIS_DATABASE_URL; the gateway has flushed and exited)."""
    from sqlalchemy import case, func, select

    from metis.db.engine import make_engine
    from metis.db.tables import usage_records as u

    eng = make_engine()
    with eng.connect() as c:
        q = select(
            u.c.provider,
            u.c.cost_source,
            func.count(),
            func.sum(case((u.c.cost_nanousd == 0, 1), else_=0)),
        ).group_by(u.c.provider, u.c.cost_source)
        rows = [(p, s, int(n), int(z or 0)) for p, s, n, z in c.execute(q)]
    eng.dispose()
    return rows


def setup_note(args: argparse.Namespace) -> str:
    """The database and gateway count, for the Machine line (empty for the defaults)."""
    if args.database_url is None and args.gateways == 1:
        return ""
    db = "PostgreSQL" if args.database_url else "SQLite"
    if args.database_url:
        from sqlalchemy import create_engine, text

        from metis.db.engine import normalize_url

        eng = create_engine(normalize_url(args.database_url))
        with eng.connect() as c:
            db += " " + str(c.execute(text("SHOW server_version")).scalar_one()).split()[0]
        eng.dispose()
    return f", database {db}, {args.gateways} x `metis serve --workers 1`"


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    cpu_model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    print(
        f"\nMachine: nproc={os.cpu_count()}, CPU {cpu_model}, Python {platform.python_version()},"
        f" load average at end {load:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())},"
        f" nice {os.nice(0)}, METIS_WRITER={args.writer}{setup_note(args)}\n"
    )
    print(
        "| scenario | direct p50/p90/p99 ms | gateway p50/p90/p99 ms | overhead p50 / p99 ms |"
        " gateway CPU ms/req |"
    )
    print("|---|---|---|---|---:|")

    def row(name: str, d: tuple[float, ...], g: tuple[float, ...], cpu: float | None) -> None:
        c = f"{cpu * 1000:.2f}" if cpu is not None else "-"
        print(
            f"| {name} | {d[0]:.2f} / {d[1]:.2f} / {d[2]:.2f} | {g[0]:.2f} / {g[1]:.2f} / "
            f"{g[2]:.2f} | {g[0] - d[0]:+.2f} / {g[2] - d[2]:+.2f} | {c} |"
        )

    d, g, cpu = r["c1"]
    row("closed loop, concurrency 1", d, g, cpu)
    for k, v in r.items():
        if k.startswith("open"):
            od, og, cpu = v
            row(
                f"open loop {k[4:]} req/s (errors {od['errors']}/{og['errors']})",
                (od["p50"], od["p90"], od["p99"]),
                (og["p50"], og["p90"], og["p99"]),
                cpu,
            )
    td, tg = r["ttfb"]
    row("streaming TTFB, concurrency 1", td, tg, None)
    if "resp_c1" in r:
        d, g, cpu = r["resp_c1"]
        row("`/v1/responses`, closed loop, concurrency 1", d, g, cpu)
        od, og, cpu = r["resp_open500"]
        row(
            f"`/v1/responses`, open loop 500 req/s (errors {od['errors']}/{og['errors']})",
            (od["p50"], od["p90"], od["p99"]),
            (og["p50"], og["p90"], og["p99"]),
            cpu,
        )
        fd, fg, ld, lg, cpu = r["resp_stream"]
        row("`/v1/responses` streamed, TTFB, concurrency 1", fd, fg, None)
        row("`/v1/responses` streamed, to `response.completed`, concurrency 1", ld, lg, cpu)
    wd, wg, cpu64 = r["c64"]
    n = args.gateways
    how = f"{n} x wrk, 1 thread, 64/{n} connections each" if n > 1 else "wrk, 1 thread"
    print(f"\n| closed loop, concurrency 64 ({how}) | req/s | non-2xx | CPU ms/req |")
    print("|---|---:|---:|---:|")
    print(f"| direct (upstream alone) | {wd['rps']:.0f} | {wd['non2xx']} | - |")
    print(
        f"| through Metis (accounting + caps on) | {wg['rps']:.0f} | {wg['non2xx']} |"
        f" {cpu64 * 1000:.2f} |"
    )
    if "litellm" in r:
        lc1, lcpu1, lw, lcpu = r["litellm"]
        print(
            f"| LiteLLM Proxy 1.109.1 (no database: no accounting) | {lw['rps']:.0f} |"
            f" {lw['non2xx']} | {lcpu * 1000:.2f} |"
        )
        print(
            f"\nLiteLLM concurrency 1: p50/p90/p99 {lc1[0]:.2f} / {lc1[1]:.2f} / {lc1[2]:.2f} ms,"
            f" CPU {lcpu1 * 1000:.2f} ms/req; Metis/LiteLLM throughput at c64:"
            f" {wg['rps'] / max(lw['rps'], 1e-9):.1f}x"
        )

    if len(r["compat_c1"][1]) == 3:
        compat_report(r)


def compat_report(r: dict[str, Any]) -> None:
    """`--compatible`: the OpenAI path (twice) and the compatible path, added latency vs direct."""
    rates = [k[len("compat_open") :] for k in r if k.startswith("compat_open")]
    scen = [("c1", "concurrency 1")] + [(f"open{x}", f"open loop {x} req/s") for x in rates]
    names = ("OpenAI run 1", "compatible", "OpenAI run 2")

    def tri(o: Any) -> tuple[float, ...]:
        return (o["p50"], o["p90"], o["p99"]) if isinstance(o, dict) else tuple(o)

    rows: list[tuple[str, list[float]]] = []  # metric, [OpenAI 1, compatible, OpenAI 2]
    for key, label in scen:
        od, gs = r[f"compat_{key}"]
        d = tri(od)
        for i, q in ((0, "p50"), (2, "p99")):
            rows.append((f"{label}: added {q} ms", [tri(g)[i] - d[i] for g, _ in gs]))
        errs = " / ".join(str(g["errors"]) for g, _ in gs) if key != "c1" else ""
        err = f"; errors direct {od['errors']}, gateway {errs}" if errs else ""
        print(f"{label}: direct p50 / p99 {d[0]:.2f} / {d[2]:.2f} ms{err}")
    for key, label in scen:
        rows.append((f"{label}: gateway CPU ms/req", [c * 1000 for _, c in r[f"compat_{key}"][1]]))
    wd, gs = r["compat_c64"]
    rows.append(("concurrency 64: req/s", [w["rps"] for w, _ in gs]))
    rows.append(("concurrency 64: gateway CPU ms/req", [c * 1000 for _, c in gs]))
    print(f"concurrency 64: direct {wd['rps']:.0f} req/s; non-2xx {[w['non2xx'] for w, _ in gs]}")
    print(
        "\n| metric | " + " | ".join(names) + " | compatible - OpenAI mean | OpenAI 1 - OpenAI 2 |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for metric, (a, c, b) in rows:
        fmt = "{:.0f}" if metric.endswith("req/s") else "{:.2f}"
        cells = [fmt.format(x) for x in (a, c, b)]
        diffs = [("{:+" + fmt[2:]).format(x) for x in (c - (a + b) / 2, a - b)]
        print(f"| {metric} | " + " | ".join(cells + diffs) + " |")
    if "records_by_provider" in r:
        print(
            "\nusage records: "
            + "; ".join(f"{p} {s} {n} ({z} at cost 0)" for p, s, n, z in r["records_by_provider"])
        )


if __name__ == "__main__":
    main()
