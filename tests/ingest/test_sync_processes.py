"""Real `metis ingest` processes: SIGKILL mid-window, and two concurrent syncs (lease)."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from metis.db.tables import ingest_runs, leases, sync_windows
from tests.conftest import Cli
from tests.ingest.fake_admin import generate_rows
from tests.ingest.pull_fixtures import Provisioned, expected, last_days, ledger_totals

# Leases and window commits do not depend on the provider: one is enough here.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("provisioned", ["anthropic"], indirect=True),
]


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from metis.cli.main import run; run()", "ingest", *args],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_window_then_rerun_is_exact(
    cli: type[Cli], provisioned: Provisioned, engine: Engine
) -> None:
    fake = provisioned.fake
    fake.rows = generate_rows(provisioned.provider, last_days(5), seed=7)
    per_window = 5 if provisioned.provider == "openai" else 4  # pages per day (page size 2)
    fake.hold_at = 2 * per_window + 2  # inside the third window, after two commits
    p = _spawn("backfill", "--days", "5")
    try:
        held = fake.held.wait(30)
        time.sleep(0.2)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        if p.poll() is None:
            p.kill()
        _, err = p.communicate(timeout=10)
        fake.release.set()
    assert held, err
    assert p.returncode == -signal.SIGKILL
    with engine.connect() as conn:
        assert conn.execute(select(leases.c.holder)).scalars().all()  # left behind
        (status,) = conn.execute(select(ingest_runs.c.status)).scalars().all()
        assert status == "running"
        done = conn.execute(select(sync_windows.c.window_start, sync_windows.c.completed_at)).all()
    settled = [w for w, at in done if at >= w + timedelta(days=3)]  # ended + 2 days
    assert settled, "the kill should come after at least one committed, settled day"
    partial = ledger_totals(engine, provisioned.credential_id)
    assert 0 < partial["input_tokens"] < expected(fake)["input_tokens"]
    # the rerun takes over the dead worker's lease at once and completes exactly
    r = cli.ok("ingest", "backfill", "--days", "5", "--json")
    (run,) = json.loads(r.stdout)
    assert run["status"] == "ok" and run["skipped"] == len(settled)
    assert ledger_totals(engine, provisioned.credential_id) == expected(fake)
    with engine.connect() as conn:
        statuses = sorted(conn.execute(select(ingest_runs.c.status)).scalars())
        assert statuses == ["abandoned", "ok"]
        assert not conn.execute(select(leases.c.holder)).scalars().all()


def test_two_concurrent_syncs_one_takes_the_lease(
    cli: type[Cli], provisioned: Provisioned, engine: Engine
) -> None:
    fake = provisioned.fake
    fake.hold_at = 1
    first = _spawn("sync", "--days", "3", "--json")
    second: subprocess.Popen[str] | None = None
    try:
        assert fake.held.wait(30), "first sync never reached the provider"
        second = _spawn("sync", "--days", "3", "--json")
        out2, err2 = second.communicate(timeout=60)
        assert second.returncode == 0, err2
    finally:
        fake.release.set()
    out1, err1 = first.communicate(timeout=60)
    assert first.returncode == 0, err1
    (r1,), (r2,) = json.loads(out1), json.loads(out2)
    assert r1["status"] == "ok" and r2["status"] == "skipped"
    assert "lease" in r2["error"]
    assert ledger_totals(engine, provisioned.credential_id) == expected(fake)
    status = json.loads(cli.ok("ingest", "status", "--json").stdout)
    assert status[0]["last_error"] is None
