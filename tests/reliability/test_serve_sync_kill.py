"""SIGKILL of ``metis serve`` in the middle of a provider sync, then restart.

The sync is triggered through ``POST /cron/usage`` (so it runs inside the
server process) against the simulator's admin APIs, slowed down by a ``slow``
fault so the kill lands after some days were committed and before the run
ends. After a restart, the next sync takes over the dead process's lease at
once (same host, dead pid), and the ledger equals the simulator's ground
truth exactly: nothing lost, nothing counted twice. (That a replayed sync
changes nothing is tests/ingest/test_sync_simulator.py.)
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from metis.db.tables import ingest_runs, leases, sync_windows, usage_records
from tests.conftest import Cli
from tests.plugins.simulator import SimulatorFactory
from tests.reliability.serve import GRACEFUL_EXIT, ServeProcess

pytestmark = pytest.mark.slow

CRON_SECRET = "cron-secret-for-reliability-tests-0001"
FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_creation_input_tokens")


def _ledger(engine: Engine, provider: str) -> dict[str, int]:
    cols = [*FIELDS, "cost_nanousd"]
    with engine.connect() as conn:
        row = conn.execute(
            select(*[func.coalesce(func.sum(usage_records.c[c]), 0) for c in cols]).where(
                usage_records.c.provider == provider,
                usage_records.c.source == "provider_api_key",
            )
        ).one()
    return dict(zip(cols, (int(v) for v in row), strict=True))


def _truth(t: dict[str, Any], provider: str) -> dict[str, int]:
    p = t["providers"].get(provider, {})
    return {f: int(p.get(f, 0)) for f in (*FIELDS, "cost_nanousd")}


def _cron(url: str, out: list[Any]) -> None:
    try:
        r = httpx.post(
            url + "/cron/usage",
            json={"days": 3},
            headers={"authorization": f"Bearer {CRON_SECRET}"},
            timeout=120,
        )
        out.append(r.json())
    except httpx.HTTPError as e:  # the server was killed under it
        out.append(type(e).__name__)


def test_sigkill_during_sync_then_restart_converges(
    cli: type[Cli],
    engine: Engine,
    simulator_factory: SimulatorFactory,
    fast_ingest: None,
    tmp_path: Path,
) -> None:
    sim = simulator_factory(seed=3, history_days=2)
    cli.ok("workspace", "add", "acme")
    for provider, key in (("openai", sim.openai_admin_key), ("anthropic", sim.anthropic_admin_key)):
        cli.ok(
            "provider-key", "add", "-w", "acme", "--provider", provider,
            "--purpose", "usage_admin", "--base-url", sim.url, input=key,
        )  # fmt: skip
    truth = sim.ground_truth()
    assert truth["providers"]["openai"]["input_tokens"] > 0
    sim.set_fault("*", "slow", delay=0.1)  # every admin call: the sync takes seconds

    env = {"METIS_CRON_SECRET": CRON_SECRET}
    srv = ServeProcess(tmp_path, env).start()
    first: list[Any] = []
    try:
        t = threading.Thread(target=_cron, args=(srv.url, first), daemon=True)
        t.start()
        deadline = time.monotonic() + 60
        while True:  # kill once a day is committed, long before the run ends
            with engine.connect() as conn:
                done = conn.execute(select(func.count()).select_from(sync_windows)).scalar_one()
            if done >= 1:
                break
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.05)
        srv.kill()
        t.join(10)
    finally:
        srv.kill()
    assert first and isinstance(first[0], str), f"the sync finished before the kill: {first}"
    with engine.connect() as conn:
        assert conn.execute(select(leases.c.holder)).scalars().all(), "lease left behind"
        assert "running" in conn.execute(select(ingest_runs.c.status)).scalars().all()
    partial = {p: _ledger(engine, p) for p in ("openai", "anthropic")}
    assert partial != {p: _truth(truth, p) for p in ("openai", "anthropic")}

    sim.clear_faults()
    srv2 = ServeProcess(tmp_path, env).start()
    try:
        out: list[Any] = []
        _cron(srv2.url, out)
        assert isinstance(out[0], dict), out
        assert {r["status"] for r in out[0]["runs"]} == {"ok"}, out
        for p in ("openai", "anthropic"):
            assert _ledger(engine, p) == _truth(truth, p), p
        assert srv2.term() in GRACEFUL_EXIT
    finally:
        srv2.kill()
    for p in ("openai", "anthropic"):
        assert _ledger(engine, p) == _truth(truth, p), p
    with engine.connect() as conn:
        statuses = sorted(conn.execute(select(ingest_runs.c.status)).scalars())
        assert "abandoned" in statuses and "running" not in statuses, statuses
        assert not conn.execute(select(leases.c.holder)).scalars().all()
