"""Ledger data for the dashboard tests, relative to today (UTC).

Workspace ``w`` (ws_1); users alice, bob; teams eng (caps $5/day, $100/month)
and ops (no caps); keys key_a (alice, eng, $2/day cap) and key_b (bob, ops).
Day D0 = today - 2: openai gpt-4o is covered by a provider sync reporting $4
against $3 of gateway traffic (so $1 unattributed), and a plugin row
duplicates a gateway call; anthropic is covered with $0.10 reported against
$0.20 of gateway traffic (drift). Today: gateway traffic of both keys.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, Engine, insert, update

from metis.db.tables import gateway_keys, provider_credentials, sync_windows
from metis.timeutil import day_start, utcnow
from tests.analytics import seed
from tests.analytics.seed import rec

USD = 1_000_000_000


@dataclass(frozen=True)
class Seeded:
    today: date
    d0: date


def _cover(conn: Connection, cred: str, provider: str, day: date) -> None:
    start = day_start(day)
    conn.execute(
        insert(provider_credentials).values(
            id=cred, workspace_id="ws_1", provider=provider, purpose_inference=False,
            purpose_usage_admin=True, mode="admin", created_at=start,
        )
    )  # fmt: skip
    conn.execute(
        insert(sync_windows).values(
            credential_id=cred, window_start=start, window_end=start + timedelta(days=1),
            completed_at=start + timedelta(days=1, hours=1), records=1,
        )
    )  # fmt: skip


def seed_all(engine: Engine) -> Seeded:
    now = utcnow()
    today = now.date()
    d0 = today - timedelta(days=2)
    t0 = day_start(d0) + timedelta(hours=10)
    # today's rows sit at the start of today, so they are in the past whatever the clock says
    t1: datetime = day_start(today) + timedelta(seconds=1)
    with engine.begin() as c:
        seed.ws(c, "ws_1", "w")
        seed.user(c, "usr_a", "alice")
        seed.user(c, "usr_b", "bob")
        seed.team(c, "team_e", "eng", daily=5 * USD, monthly=100 * USD)
        seed.team(c, "team_o", "ops")
        seed.key(c, "key_a", "alice-laptop", "usr_a", "team_e")
        seed.key(c, "key_b", "bob-ci", "usr_b", "team_o")
        c.execute(update(gateway_keys).where(gateway_keys.c.id == "key_a").values(
            daily_cap_nanousd=2 * USD))  # fmt: skip
        _cover(c, "cred_oa", "openai", d0)
        _cover(c, "cred_an", "anthropic", d0)
        seed.write(c, [
            rec(at=t0, cost=2 * USD, key_id="key_a", user_id="usr_a", team_id="team_e",
                correlation_id="chatcmpl-dup1"),
            rec(at=t0, cost=1 * USD, key_id="key_b", user_id="usr_b", team_id="team_o"),
            rec(at=t0, cost=4 * USD, source="provider_api_key", status=None, latency_ms=None,
                input_tokens=900, output_tokens=90),
            rec(at=t0 + timedelta(minutes=5), cost=2 * USD, source="hermes_plugin",
                status=None, correlation_id="chatcmpl-dup1"),
            rec(at=t0, cost=USD // 5, key_id="key_b", user_id="usr_b", team_id="team_o",
                provider="anthropic", model="claude-sonnet-4-5"),
            rec(at=t0, cost=USD // 10, source="provider_api_key", status=None,
                latency_ms=None, provider="anthropic", model="claude-sonnet-4-5"),
            rec(at=t1, cost=3 * USD // 2, key_id="key_a", user_id="usr_a", team_id="team_e"),
            rec(at=t1, cost=USD // 4, key_id="key_b", user_id="usr_b", team_id="team_o",
                provider="anthropic", model="claude-sonnet-4-5"),
        ])  # fmt: skip
    return Seeded(today=today, d0=d0)
