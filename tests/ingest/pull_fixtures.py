"""Fixtures for provider-sync tests (import them into the test module).

A fake admin API per provider (`fake_admin`) and a usage_admin credential on it.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from sqlalchemy import Engine, func, select

from metis.db.tables import usage_records
from metis.timeutil import utcnow
from metis.util.server_thread import ServerThread
from tests.conftest import Cli
from tests.ingest.fake_admin import FakeAdmin, generate_rows

ADMIN_KEYS = {"openai": "sk-admin-TESTabcdefghijkl0001", "anthropic": "sk-ant-admin01-TESTxyz0002"}


@dataclass
class Provisioned:
    fake: FakeAdmin
    url: str
    credential_id: str
    provider: str


def last_days(n: int) -> list[date]:
    today = utcnow().date()
    return [today - timedelta(days=i) for i in range(n - 1, -1, -1)]


@pytest.fixture
def fast_ingest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METIS_OPENAI_ADMIN_REQUESTS_PER_MINUTE", "100000")
    monkeypatch.setenv("METIS_ANTHROPIC_ADMIN_REQUESTS_PER_MINUTE", "100000")
    monkeypatch.setenv("METIS_INGEST_RETRY_BASE_SECONDS", "0.01")
    monkeypatch.setenv("METIS_INGEST_MAX_ATTEMPTS", "4")


@pytest.fixture(params=["openai", "anthropic"])
def provisioned(
    request: pytest.FixtureRequest, cli: type[Cli], fast_ingest: None
) -> Iterator[Provisioned]:
    provider: str = request.param
    fake = FakeAdmin(provider, ADMIN_KEYS[provider], rows=generate_rows(provider, last_days(3)))
    with ServerThread(fake.app()) as srv:
        cli.ok("workspace", "add", "acme")
        out = cli.ok(
            "provider-key",
            "add",
            "-w",
            "acme",
            "--provider",
            provider,
            "--purpose",
            "usage_admin",
            "--base-url",
            srv.url,
            input=ADMIN_KEYS[provider],
        ).stdout
        cid = next(w for w in out.split() if w.startswith("cred_")).rstrip(":")
        yield Provisioned(fake, srv.url, cid, provider)


def ledger_totals(engine: Engine, credential_id: str) -> dict[str, int]:
    cols = [
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cache_creation_input_tokens",
        "request_count",
        "cost_nanousd",
    ]
    with engine.connect() as conn:
        row = conn.execute(
            select(*[func.coalesce(func.sum(usage_records.c[c]), 0) for c in cols]).where(
                usage_records.c.source_ref == credential_id
            )
        ).one()
    return {c: int(v) for c, v in zip(cols, row, strict=True)}


def expected(fake: FakeAdmin, days: set[date] | None = None) -> dict[str, int]:
    """The fake's ground truth in `ledger_totals` form."""
    return {"request_count": 0, **fake.truth(days)}
