"""Fixtures for the bad-input tests: a seeded Metis server with every credential kind.

Hypothesis settings for fuzzing live in `tests.fuzz.settings` (derandomized, no
example database), so CI runs are fast and reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from metis.analytics.admin_tokens import create_token as create_admin_token
from metis.ingest.tokens import create_token as create_ingest_token
from metis.server import create_app
from metis.timeutil import utcnow
from metis.util.server_thread import ServerThread
from tests.analytics import seed
from tests.analytics.seed import rec

CRON_SECRET = "cron-secret-for-fuzz-tests-0123456789"


@dataclass(frozen=True)
class SeededServer:
    url: str
    admin_token: str
    ingest_token: str
    cron_secret: str


def _seed(engine: Engine) -> None:
    """A workspace with users, teams, keys and usage from all three sources, yesterday
    (inside every endpoint's default window, so answers have rows to check)."""
    t0 = utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    with engine.begin() as c:
        seed.ws(c)
        seed.user(c, "usr_a", "alice", "alice@example.com")
        seed.user(c, "usr_b", "bob")
        seed.team(c, "team_e", "eng", daily=50_000_000_000)
        seed.key(c, "key_a", "alice-laptop", "usr_a", "team_e")
        seed.key(c, "key_b", "bob-ci", "usr_b", None)
        h = timedelta(hours=1)
        seed.write(
            c,
            [rec(at=t0 + i * h, cost=333_333_333, key_id="key_a", user_id="usr_a",
                 team_id="team_e") for i in range(3)]
            + [rec(at=t0 + h, cost=1_000_000_001, key_id="key_b", user_id="usr_b",
                   model="claude-sonnet-4-5", provider="anthropic")]
            + [rec(at=t0, cost=5_000_000_000, source="provider_api_key",
                   status=None, latency_ms=None, input_tokens=1000, output_tokens=100)]
            + [rec(at=t0 + 2 * h, cost=7, source="hermes_plugin", correlation_id="chatcmpl-x",
                   user_id="usr_b")],
        )  # fmt: skip


@pytest.fixture
def seeded_server(
    metis_env: dict[str, str], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SeededServer]:
    """The full ``metis serve`` app on 127.0.0.1 over seeded data, with its tokens."""
    monkeypatch.setenv("METIS_CRON_SECRET", CRON_SECRET)
    _seed(engine)
    with engine.begin() as c:
        _, admin = create_admin_token(c, "fuzz")
        _, ingest = create_ingest_token(c, "ws_1", "fuzz-plugin")
    with ServerThread(create_app()) as srv:
        yield SeededServer(srv.url, admin, ingest, CRON_SECRET)
