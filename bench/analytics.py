"""Analytics benchmark: a large ledger, every endpoint timed, a 1M-row export's peak memory.

Generates N usage records (default 10,000,000) over 90 days for 3 workspaces,
10 teams, 200 users, 300 gateway keys, 8 models and three sources, bulk-loads
them (SQLite: executemany on the raw driver with secondary indexes dropped and
rebuilt; PostgreSQL: COPY), builds the rollups with `metis.ledger.rollups.rebuild`,
then times each analytics endpoint over HTTP (a real Metis server thread,
admin token) for 90-day and 7-day windows, and runs ``metis export usage`` for
about 1M rows in a subprocess (CSV and JSON Lines, reconciled and raw view),
reporting rows/s and its peak RSS next to a 10k-row export, and ``metis export
focus`` (CSV and Parquet) for 7 and 90 days. ``--export-only`` runs just the
usage export (with ``--reuse`` of a kept database: pass its ``--rows`` too).
It also times the write path (`upsert_usage` with rollup maintenance) for
gateway-like batches.

The sources overlap as in production, so the reconciled view has work to do:
gateway rows carry the provider response id (``correlation_id``); of the
plugin rows half report the id of a gateway call (duplicates), a quarter were
sent through the gateway's URL (``METIS_GATEWAY_URLS``) and a quarter went
straight to the provider; every workspace x provider day but the last is
covered by a completed provider sync. ``--reconciled-only`` times just the
reconciled-view cases and the write path (no export).

    .venv/bin/python bench/analytics.py --backend sqlite --rows 10000000
    .venv/bin/python bench/analytics.py --backend postgresql \
        --pg-url postgresql://metis@127.0.0.1:55432/postgres --rows 10000000
    .venv/bin/python bench/analytics.py --rows 200000      # a quick run
    .venv/bin/python bench/analytics.py --rows 1000000 --keep --repeat 1
    .venv/bin/python bench/analytics.py --reuse sqlite:////tmp/metis-bench-…/metis.db \
        --rows 1000000 --no-rebuild --export-only

Prints a Markdown table; results are recorded in docs/performance.md.
"""

import argparse
import hashlib
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
from sqlalchemy import Engine, create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from metis.db import partitions
from metis.db.engine import make_engine, normalize_url
from metis.db.migrate import upgrade
from metis.db.tables import (
    gateway_keys,
    metadata,
    provider_credentials,
    sync_windows,
    teams,
    usage_records,
    users,
    workspaces,
)
from metis.ledger import rollups
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage

END = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 90
MODELS = [
    ("openai", "gpt-4o", 2500, 10000),
    ("openai", "gpt-4o-mini", 150, 600),
    ("openai", "gpt-4.1", 2000, 8000),
    ("openai", "o3-mini", 1100, 4400),
    ("anthropic", "claude-sonnet-4-5", 3000, 15000),
    ("anthropic", "claude-haiku-4-5", 1000, 5000),
    ("anthropic", "claude-opus-4-1", 15000, 75000),
    ("openai", "text-embedding-3-small", 20, 0),
]
COLS = (
    "workspace_id", "source", "source_ref", "dedupe_key", "window_start", "window_end",
    "usage_date", "granularity", "provider", "model", "model_raw", "input_tokens",
    "output_tokens", "cached_input_tokens", "cache_creation_input_tokens", "reasoning_tokens",
    "input_audio_tokens", "output_audio_tokens", "request_count", "cost_nanousd", "cost_source",
    "pricing_version", "user_id", "team_id", "gateway_key_id", "status", "latency_ms",
    "content_sha256", "ingested_at", "updated_at", "revision", "correlation_id", "base_url",
)  # fmt: skip
GATEWAY_URL = "http://metis.internal:8080"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def seed_identity(engine: Engine) -> list[tuple[str, str, str, str]]:
    """3 workspaces, 10 teams, 200 users, 300 keys; returns (ws, key, user, team) per key."""
    now = END
    rnd = random.Random(1)
    keys = []
    with engine.begin() as c:
        c.execute(insert(workspaces), [
            {"id": f"ws_{i}", "name": f"ws{i}", "created_at": now} for i in range(3)
        ])  # fmt: skip
        c.execute(insert(teams), [
            {"id": f"team_{i}", "name": f"team{i}", "created_at": now, "disabled": False,
             "daily_cap_nanousd": 50 * 10**9 if i % 2 else None, "monthly_cap_nanousd": None}
            for i in range(10)
        ])  # fmt: skip
        c.execute(insert(users), [
            {"id": f"usr_{i}", "alias": f"user{i}", "display_name": f"User {i}",
             "created_at": now, "disabled": False} for i in range(200)
        ])  # fmt: skip
        rows = []
        for i in range(300):
            ws, u = f"ws_{i % 3}", f"usr_{rnd.randrange(200)}"
            t = f"team_{int(u[4:]) % 10}"
            rows.append({"id": f"key_{i}", "secret_sha256": hashlib.sha256(
                secrets.token_bytes(16)).hexdigest(), "display_prefix": "gw_x", "name": f"k{i}",
                "workspace_id": ws, "user_id": u, "team_id": t, "created_at": now})  # fmt: skip
            keys.append((ws, f"key_{i}", u, t))
        c.execute(insert(gateway_keys), rows)
        # Provider syncs completed every day of the window but the last, per workspace/provider.
        for i in range(3):
            for prov in ("openai", "anthropic"):
                cred = f"cred_{i}_{prov}"
                c.execute(insert(provider_credentials).values(
                    id=cred, workspace_id=f"ws_{i}", provider=prov, purpose_inference=False,
                    purpose_usage_admin=True, mode="admin", created_at=now))  # fmt: skip
                first = END - timedelta(days=DAYS)
                c.execute(insert(sync_windows), [
                    {"credential_id": cred, "window_start": first + timedelta(days=d),
                     "window_end": first + timedelta(days=d + 1),
                     "completed_at": first + timedelta(days=d + 1, hours=2), "records": 1}
                    for d in range(DAYS - 1)
                ])  # fmt: skip
    return keys


def gen_rows(n: int, keys: list[tuple[str, str, str, str]], pg: bool) -> Any:
    """Yield value tuples in COLS order (strings for SQLite datetimes, datetimes for PG)."""
    rnd = random.Random(42)
    start_day = (END - timedelta(days=DAYS)).date()
    days = [start_day + timedelta(days=d) for d in range(DAYS)]
    now = END
    now_s = now.strftime("%Y-%m-%d %H:%M:%S.%f") if not pg else now
    sha = "0" * 64
    last_gw: dict[str, int] = {}  # workspace -> index of its latest gateway row
    for i in range(n):
        d = days[i * DAYS // n]
        r = rnd.random()
        prov, model, pin, pout = MODELS[rnd.randrange(len(MODELS))]
        inp = rnd.randrange(50, 8000)
        out = rnd.randrange(0, 1500)
        cached = inp // 2 if r < 0.3 else 0
        cost = (inp * pin + out * pout) // 1000  # nano-USD per token * tokens, roughly
        sec = rnd.randrange(86400)
        ws_dt = datetime(d.year, d.month, d.day, sec // 3600, (sec // 60) % 60, sec % 60)
        corr: str | None = None
        base_url: str | None = None
        if r < 0.75:
            ws_id, key, user, team = keys[rnd.randrange(len(keys))]
            src, ref, gran = "gateway", key, "request"
            status = "ok" if rnd.random() > 0.02 else "upstream_error"
            lat = int(rnd.lognormvariate(6.2, 0.6))
            corr = f"chatcmpl-{i}"
            last_gw[ws_id] = i
        elif r < 0.93:
            ws_id, _, user, team = keys[rnd.randrange(len(keys))]
            key, src, ref, gran, status, lat = (
                None,
                "hermes_plugin",
                "itok_1",
                "request",
                None,
                None,
            )
            team = None
            kind = rnd.random()
            if kind < 0.5 and ws_id in last_gw:  # the plugin saw a gateway call's response id
                corr = f"chatcmpl-{last_gw[ws_id]}"
            elif kind < 0.75:  # sent through the gateway (Hermes: no response id)
                base_url = GATEWAY_URL + "/v1"
            else:  # straight to the provider
                base_url = "https://api.openai.com/v1"
        else:
            ws_id = f"ws_{rnd.randrange(3)}"
            key = user = team = None
            src, ref, gran, status, lat = "provider_api_key", "cred_1", "1h", None, None
        if pg:
            start: Any = ws_dt.replace(tzinfo=UTC)
            end: Any = start + timedelta(seconds=1)
            day: Any = d
            ts: Any = now_s
        else:
            start = ws_dt.strftime("%Y-%m-%d %H:%M:%S.000000")
            end = (ws_dt + timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S.000000")
            day = d.isoformat()
            ts = now_s
        yield (
            ws_id, src, ref, f"b{i}", start, end, day, gran, prov, model, model, inp, out,
            cached, 0, 0, 0, 0, 1, cost, "computed", "genai-prices-bench", user, team, key,
            status, lat, sha, ts, ts, 1, corr, base_url,
        )  # fmt: skip


def load(engine: Engine, n: int, keys: list[tuple[str, str, str, str]]) -> float:
    t0 = time.perf_counter()
    pg = engine.dialect.name == "postgresql"
    secondary = [ix for ix in usage_records.indexes]
    with engine.begin() as c:
        # PostgreSQL: the months of the data get their partitions first (COPY into the
        # partitioned parent routes each row; without them rows would land in DEFAULT).
        partitions.ensure_partitions(c, (END - timedelta(days=DAYS)).date(), END.date())
        for ix in secondary:
            ix.drop(c)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if pg:
            with cur.copy(f"COPY usage_records ({', '.join(COLS)}) FROM STDIN") as cp:  # type: ignore[attr-defined]
                for i, row in enumerate(gen_rows(n, keys, pg=True)):
                    cp.write_row(row)
                    if i and i % 1_000_000 == 0:
                        log(f"  {i:,} rows")
        else:
            cur.execute("PRAGMA synchronous=OFF")
            sql = (f"INSERT INTO usage_records ({', '.join(COLS)}) "
                   f"VALUES ({', '.join('?' * len(COLS))})")  # fmt: skip
            batch: list[tuple[Any, ...]] = []
            for i, row in enumerate(gen_rows(n, keys, pg=False)):
                batch.append(row)
                if len(batch) == 50_000:
                    cur.executemany(sql, batch)
                    batch.clear()
                if i and i % 1_000_000 == 0:
                    log(f"  {i:,} rows")
            if batch:
                cur.executemany(sql, batch)
        raw.commit()
    finally:
        raw.close()
    log(f"loaded {n:,} rows in {time.perf_counter() - t0:.0f}s; building indexes")
    with engine.begin() as c:
        for ix in secondary:
            ix.create(c)
        if pg:
            c.execute(text("ANALYZE usage_records"))
        else:
            c.execute(text("ANALYZE"))
    return time.perf_counter() - t0


BYTES_PER_RECORD = 800
"""Disk per loaded record with indexes and rollups, rounded up from measured runs
(SQLite 10M records: 6.2 GB, 620 B/record; PostgreSQL: see docs/performance.md)."""


def check_disk(engine: Engine, rows: int, tmp: Path) -> None:
    """Exit with a clear message unless the database's disk has room for ``rows`` records.

    Needs the estimate plus 25 % (index builds and the rollup rebuild write
    temporary copies). PostgreSQL's data directory is asked of the server
    (``SHOW data_directory``, superuser or pg_read_all_settings); if it may
    not be read, the check is skipped with a note.
    """
    import shutil

    need = int(rows * BYTES_PER_RECORD * 1.25)
    where: Path | None = tmp
    if engine.dialect.name == "postgresql":
        try:
            with engine.connect() as c:
                where = Path(str(c.execute(text("SHOW data_directory")).scalar()))
        except Exception as e:  # only a pre-flight check
            log(f"disk check skipped: data directory unknown ({type(e).__name__})")
            where = None
    if where is None:
        return
    free = shutil.disk_usage(where).free
    log(f"disk: {free / 1e9:.1f} GB free at {where}, about {need / 1e9:.1f} GB needed")
    if free < need:
        sys.exit(
            f"not enough disk for {rows:,} records: {free / 1e9:.1f} GB free at {where}, "
            f"about {need / 1e9:.1f} GB needed ({BYTES_PER_RECORD} B per record + 25 %)"
        )


def timed(fn: Any, repeat: int) -> tuple[float, float]:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), max(ts)


def endpoint_cases(reconciled_only: bool = False) -> list[tuple[str, str, dict[str, str]]]:
    """(name, window, query) for every analytics endpoint, in its default view.

    Windows: 90 days, 7 days, and 90 days whose ends are not UTC midnights
    (the reconciled view widens those to whole days; the raw view and
    reliability read the partial days' raw rows). Filters: the dashboard's
    (workspace) and the API's (team, user, key). A few ``view=raw`` cases run
    alongside as a yardstick of the machine's state.
    """
    w90 = {"from": (END - timedelta(days=90)).isoformat(), "to": END.isoformat()}
    w7 = {"from": (END - timedelta(days=7)).isoformat(), "to": END.isoformat()}
    w90h = {"from": (END - timedelta(days=90, hours=-3)).isoformat(),
            "to": (END - timedelta(hours=5)).isoformat()}  # fmt: skip
    wins = {"90d": w90, "7d": w7, "90d, partial-day edges": w90h}
    cases: list[tuple[str, str, dict[str, str]]] = []
    for wname, w in wins.items():
        for g in ("model", "day", "user", "team", "gateway_key", "source", "workspace"):
            cases.append((f"/analytics/cost?group_by={g}", wname, {**w, "group_by": g}))
        for path in (
            "/analytics/by_key",
            "/analytics/by_team",
            "/analytics/cache_effectiveness",
            "/analytics/routing",
            "/analytics/reliability",
            "/analytics/ingest",
        ):
            cases.append((path, wname, dict(w)))  # fmt: skip
        cases.append(("/analytics/savings?baseline=openai:gpt-4o", wname,
                      {**w, "baseline": "openai:gpt-4o"}))  # fmt: skip
        days = {"from": w["from"][:10], "to": w["to"][:10]}
        cases.append(("/analytics/reconciliation", wname, days))
    for wname, w in (("90d", w90), ("7d", w7)):
        cases += [
            ("/analytics/cost?group_by=model&workspace=ws1", wname,
             {**w, "group_by": "model", "workspace": "ws1"}),
            ("/analytics/by_team?workspace=ws1", wname, {**w, "workspace": "ws1"}),
            ("/analytics/cost?group_by=user&team=team3", wname,
             {**w, "group_by": "user", "team": "team3"}),
            ("/analytics/by_team?team=team3", wname, {**w, "team": "team3"}),
            ("/analytics/cost?group_by=model&user=user5", wname,
             {**w, "group_by": "model", "user": "user5"}),
            ("/analytics/cost?group_by=day&gateway_key=k7", wname,
             {**w, "group_by": "day", "gateway_key": "k7"}),
            ("/analytics/reliability?workspace=ws1", wname, {**w, "workspace": "ws1"}),
            ("/analytics/reliability?team=team3", wname, {**w, "team": "team3"}),
        ]  # fmt: skip
    cases += [
        ("/analytics/forecast", "default", {}),
        ("/analytics/forecast?by=team", "default", {"by": "team"}),
    ]
    raw = [
        (f"{n}&view=raw", w, {**q, "view": "raw"})
        for n, w, q in cases
        if n in ("/analytics/cost?group_by=model", "/analytics/cost?group_by=user")
        and w in ("90d", "90d, partial-day edges")
    ]
    if reconciled_only:
        cases = [c for c in cases if c[0].startswith(("/analytics/cost", "/analytics/by_"))]
    return raw + cases


def bench_endpoints(
    url: str, repeat: int, reconciled_only: bool = False
) -> list[tuple[str, str, float, float]]:
    from metis.server import create_app
    from metis.util.server_thread import ServerThread

    token = os.environ["METIS_ADMIN_TOKEN"]
    cases = endpoint_cases(reconciled_only)
    out = []
    with (
        ServerThread(create_app()) as srv,
        httpx.Client(
            base_url=srv.url, headers={"Authorization": f"Bearer {token}"}, timeout=600
        ) as http,
    ):
        for name, win, params in cases:
            path = name.split("?")[0]

            def call(path: str = path, params: dict[str, str] = params) -> None:
                r = http.get(path, params=params)
                r.raise_for_status()

            call()  # warm
            med, worst = timed(call, repeat)
            out.append((name, win, med, worst))
            log(f"  {name} [{win}] median {med * 1000:.0f} ms")
    return out


# The child's own peak RSS in KiB: VmHWM of its address space. (getrusage's ru_maxrss
# survives exec on Linux, so a child forked from a large benchmark process would report
# the parent's size.)
PEAK_RSS_KB = "next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM:'))"


def bench_export(env: dict[str, str], tmp: Path, rows_target: int, total: int) -> list[str]:
    """Run `metis export usage` in a child for ~rows_target rows and for 10k rows, as CSV and
    JSON Lines, in the reconciled (default) and raw views: time, rows/s and peak RSS."""
    results = []
    for target in (10_000, rows_target):
        days = max(1, round(DAYS * target / total))
        frm = (END - timedelta(days=days)).isoformat()
        for view in ("reconciled", "raw"):
            for fmt in ("csv", "jsonl"):
                out = tmp / f"export_{target}.{fmt}"
                code = (
                    "import resource, sys, time\n"
                    "from metis.cli.main import main\n"
                    "t0 = time.perf_counter()\n"
                    f"rc = main(['export', 'usage', '--from', '{frm}', '--to', "
                    f"'{END.isoformat()}', '--view', '{view}', '--output', '{out}'])\n"
                    "u = resource.getrusage(resource.RUSAGE_SELF)\n"
                    "print(rc, time.perf_counter() - t0, u.ru_utime + u.ru_stime, "
                    f"{PEAK_RSS_KB})\n"
                )
                res = subprocess.run(
                    [sys.executable, "-c", code], env=env, capture_output=True, text=True,
                    check=True,
                )  # fmt: skip
                _rc, secs, cpu, rss_kb = res.stdout.split()
                with out.open("rb") as fh:
                    lines = sum(1 for _ in fh) - (fmt == "csv")
                out.unlink()
                results.append(
                    f"| export usage {fmt}, {view} | {lines:,} rows | {float(secs):.1f} s, "
                    f"{lines / float(secs):,.0f} rows/s (CPU {float(cpu):.1f} s: "
                    f"{lines / float(cpu):,.0f} rows per CPU-second) | peak RSS "
                    f"{int(rss_kb) / 1024:.0f} MiB |"
                )
                log(results[-1])
    return results


def bench_focus(env: dict[str, str], tmp: Path) -> list[str]:
    """Run `metis export focus` (CSV and Parquet) in a child for 7 and 90 days; peak RSS.

    The export reads one UTC day at a time, so its peak memory should not grow with the
    window (the 90-day export has ~13x the rows of the 7-day one).
    """
    results = []
    for days in (7, DAYS):
        for fmt in ("csv", "parquet"):
            frm = (END - timedelta(days=days)).isoformat()
            out = tmp / f"focus_{days}.{fmt}"
            code = (
                "import resource, sys, time\n"
                "from metis.cli.main import main\n"
                "t0 = time.perf_counter()\n"
                f"rc = main(['export', 'focus', '--from', '{frm}', '--to', '{END.isoformat()}',"
                f" '--output', '{out}'])\n"
                "print(rc, time.perf_counter() - t0,"
                f" {PEAK_RSS_KB})\n"
            )
            res = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            _rc, secs, rss_kb = res.stdout.split()
            if fmt == "csv":
                n = sum(1 for _ in out.open()) - 1
            else:
                import pyarrow.parquet as pq

                n = pq.ParquetFile(out).metadata.num_rows
            size = out.stat().st_size
            out.unlink()
            results.append(
                f"| export focus {fmt} | {days} d, {n:,} rows, {size / 1e6:.1f} MB | "
                f"{float(secs):.1f} s | peak RSS {int(rss_kb) / 1024:.0f} MiB |"
            )
            log(results[-1])
    return results


def bench_write_path(engine: Engine, keys: list[tuple[str, str, str, str]]) -> str:
    """upsert_usage (with rollup maintenance) for gateway-like batches of 200 new records."""
    rnd = random.Random(7)
    tag = secrets.token_hex(3)  # new records on every run, also against a reused database
    n, batch = 20_000, 200
    recs = []
    for i in range(n):
        ws, key, user, team = keys[rnd.randrange(len(keys))]
        at = END - timedelta(seconds=rnd.randrange(86400))
        recs.append(UsageRecord(
            workspace_id=ws, source="gateway", source_ref=key, dedupe_key=f"w{tag}{i}",
            correlation_id=f"chatcmpl-w{tag}{i}",
            window_start=at, window_end=at, granularity="request", provider="openai",
            model="gpt-4o", model_raw="gpt-4o", input_tokens=500, output_tokens=50,
            request_count=1, cost_nanousd=1_500_000, cost_source="computed", user_id=user,
            team_id=team, gateway_key_id=key, status="ok", latency_ms=300))  # fmt: skip
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        with engine.begin() as c:
            upsert_usage(c, recs[i : i + batch])
    dt = time.perf_counter() - t0
    t1 = time.perf_counter()
    with engine.begin() as c:  # replays: no change, no rollup writes
        upsert_usage(c, recs[:batch])
    replay = time.perf_counter() - t1
    # The same load with rollup maintenance switched off, for its overhead.
    import metis.ledger.upsert as up

    saved = (up._stored_contributions, up.rollups.apply_deltas, up.latency_rollups.apply_deltas)
    up._stored_contributions = lambda conn, wave, placed=None: {}  # type: ignore[assignment]
    up.rollups.apply_deltas = lambda conn, deltas: None  # type: ignore[assignment]
    up.latency_rollups.apply_deltas = lambda conn, deltas: None  # type: ignore[assignment]
    try:
        recs2 = [msgspec.structs.replace(r, dedupe_key=r.dedupe_key + "b") for r in recs]
        t2 = time.perf_counter()
        for i in range(0, n, batch):
            with engine.begin() as c:
                upsert_usage(c, recs2[i : i + batch])
        dt2 = time.perf_counter() - t2
    finally:
        (  # type: ignore[assignment]
            up._stored_contributions,
            up.rollups.apply_deltas,
            up.latency_rollups.apply_deltas,
        ) = saved
    # The records written without maintenance have no rollups: remove them, so a
    # kept ledger stays consistent for the next --reuse run.
    with engine.begin() as c:
        c.execute(
            usage_records.delete().where(
                usage_records.c.dedupe_key.in_([r.dedupe_key for r in recs2])
            )
        )
    return (
        f"| write path: upsert_usage, {n:,} new gateway records in batches of {batch} | "
        f"{dt / (n / batch) * 1000:.1f} ms per batch with rollup maintenance, "
        f"{dt2 / (n / batch) * 1000:.1f} ms without; replay of a batch {replay * 1000:.1f} ms |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--export-rows", type=int, default=1_000_000)
    ap.add_argument("--pg-url", default=os.environ.get("METIS_TEST_DATABASE_URL"))
    ap.add_argument(
        "--pg-database",
        default="metis_bench",
        help="database the run creates (dropped first, and afterwards unless --keep)",
    )
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument(
        "--reconciled-only", action="store_true", help="only the reconciled view and write path"
    )
    ap.add_argument(
        "--reuse",
        metavar="URL",
        help="time against a database an earlier --keep run left (no load; tables added since "
        "are created and the rollups rebuilt)",
    )
    ap.add_argument("--no-rebuild", action="store_true", help="with --reuse: keep its rollups")
    ap.add_argument("--no-focus", action="store_true", help="skip the FOCUS export runs")
    ap.add_argument(
        "--export-only", action="store_true", help="only the usage export (no endpoints, FOCUS)"
    )
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="metis-bench-"))
    tmp.chmod(0o700)
    if args.reuse:
        admin = None
        url = args.reuse
        args.keep = True
    elif args.backend == "postgresql":
        if not args.pg_url:
            sys.exit("--pg-url (or METIS_TEST_DATABASE_URL) is required for postgresql")
        base = normalize_url(args.pg_url)
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        name = args.pg_database
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
    else:
        admin = None
        url = f"sqlite:///{tmp / 'metis.db'}"
    engine = make_engine(url)
    upgrade(engine)
    if args.reuse:
        metadata.create_all(engine)  # the pre-release schema is edited in place
    token = "bench-" + secrets.token_urlsafe(16)
    env = {**os.environ, "METIS_HOME": str(tmp), "METIS_DATABASE_URL": url,
           "METIS_ADMIN_TOKEN": token, "METIS_GATEWAY_URLS": GATEWAY_URL}  # fmt: skip
    exported = ("METIS_HOME", "METIS_DATABASE_URL", "METIS_ADMIN_TOKEN", "METIS_GATEWAY_URLS")
    os.environ.update({k: env[k] for k in exported})
    lines = [f"backend {engine.dialect.name}, {args.rows:,} usage records over {DAYS} days"]
    try:
        if args.reuse:
            load_s = 0.0
            with engine.connect() as c:
                k = gateway_keys.c
                q = select(k.workspace_id, k.id, k.user_id, k.team_id).order_by(k.id)
                keys = [(r[0], r[1], r[2], r[3]) for r in c.execute(q)]
        else:
            check_disk(engine, args.rows, tmp)
            keys = seed_identity(engine)
            log(f"loading {args.rows:,} rows into {args.backend}")
            load_s = load(engine, args.rows, keys)
        t0 = time.perf_counter()
        with engine.begin() as c:
            nroll = 0 if args.reuse and args.no_rebuild else rollups.rebuild(c)
        rebuild_s = time.perf_counter() - t0
        with engine.connect() as c:
            n = c.execute(select(func.count()).select_from(usage_records)).scalar()
        lines.append(f"load {load_s:.0f} s (incl. indexes); rebuild-rollups {rebuild_s:.0f} s "
                     f"-> {nroll:,} rollup rows for {n:,} records")  # fmt: skip
        log(lines[-1])
        if args.export_only:
            lines += bench_export(env, tmp, min(args.export_rows, args.rows), args.rows)
            print("\n".join(lines))
            return
        results = bench_endpoints(url, args.repeat, args.reconciled_only)
        lines.append("")
        lines.append("| endpoint | window | median | max |")
        lines.append("|---|---|---|---|")
        for name_, win, med, worst in results:
            lines.append(f"| `{name_}` | {win} | {med * 1000:.0f} ms | {worst * 1000:.0f} ms |")
        lines.append("")
        if not args.reconciled_only:
            lines += bench_export(env, tmp, min(args.export_rows, args.rows), args.rows)
            if not args.no_focus:
                lines += bench_focus(env, tmp)
        lines.append(bench_write_path(engine, keys))
    finally:
        engine.dispose()
        if admin is not None:
            if not args.keep:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        if not args.keep:
            for p in sorted(tmp.rglob("*"), reverse=True):
                p.unlink() if p.is_file() else p.rmdir()
            tmp.rmdir()
    print("\n".join(lines))
    _ = date  # (kept for type readers)


if __name__ == "__main__":
    main()
