"""POST /cron/usage, /metrics and the scheduler jobs, on the real server app."""

import asyncio

import httpx
import pytest
from sqlalchemy import Engine

from metis.config import get_settings
from metis.errors import ConfigError
from metis.ingest.scheduler import build_scheduler, cron_trigger
from metis.ingest.settings import get_ingest_settings
from metis.server import create_app
from metis.util.server_thread import ServerThread
from tests.ingest.pull_fixtures import Provisioned, expected, last_days, ledger_totals

CRON = "cron-secret-for-tests-0123456789"
# One provider is enough here: the sync itself is covered per provider in test_sync.py.
ONE_PROVIDER = pytest.mark.parametrize("provisioned", ["anthropic"], indirect=True)


@ONE_PROVIDER
def test_cron_disabled_without_secret(provisioned: Provisioned) -> None:
    with ServerThread(create_app()) as srv:
        r = httpx.post(f"{srv.url}/cron/usage", headers={"Authorization": f"Bearer {CRON}"})
    assert r.status_code == 404 and "disabled" in r.text


@ONE_PROVIDER
def test_cron_auth_and_run(
    provisioned: Provisioned, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METIS_CRON_SECRET", CRON)
    with ServerThread(create_app()) as srv:
        for h in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": CRON},
            {"Authorization": f"Basic {CRON}"},
        ):
            r = httpx.post(f"{srv.url}/cron/usage", headers=h)
            assert r.status_code == 401, (h, r.text)
        assert not provisioned.fake.requests
        r = httpx.post(
            f"{srv.url}/cron/usage",
            headers={"Authorization": f"Bearer {CRON}"},
            json={"days": 3},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        (run,) = r.json()["runs"]
        assert run["status"] == "ok" and run["stored"] > 0
        assert ledger_totals(engine, provisioned.credential_id) == expected(provisioned.fake)
        bad = httpx.post(
            f"{srv.url}/cron/usage", headers={"Authorization": f"Bearer {CRON}"}, json={"days": 0}
        )
        assert bad.status_code == 422
        m = httpx.get(f"{srv.url}/metrics").text
        assert "metis_ingest_runs_total" in m and 'status="ok"' in m


@ONE_PROVIDER
def test_scheduler_jobs(provisioned: Provisioned, engine: Engine) -> None:
    sched = build_scheduler({"engine": engine}, get_settings(), get_ingest_settings())
    jobs = {j.id: j for j in sched.get_jobs()}
    # PostgreSQL adds the partition maintenance (tests/db/test_partitions.py runs it).
    pg = {"db-partitions"} if engine.dialect.name == "postgresql" else set()
    assert set(jobs) == {"ingest-daily", "ingest-hourly", *pg}
    assert str(jobs["ingest-daily"].trigger).startswith("cron[")
    asyncio.run(jobs["ingest-hourly"].func())  # top-up of today only
    today, yesterday = last_days(2)[1], last_days(2)[0]
    assert ledger_totals(engine, provisioned.credential_id) == expected(provisioned.fake, {today})
    asyncio.run(jobs["ingest-daily"].func())  # yesterday and today
    assert ledger_totals(engine, provisioned.credential_id) == expected(
        provisioned.fake, {today, yesterday}
    )


def test_bad_cron_expression() -> None:
    with pytest.raises(ConfigError, match="METIS_INGEST_DAILY_CRON"):
        cron_trigger("not a cron", "METIS_INGEST_DAILY_CRON")
