"""Hard caps at the gateway: the spec items, concurrency bound, and 1-second propagation."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import msgspec
import openai
import pytest
from sqlalchemy import func, select

from metis.db.tables import events, usage_records
from metis.gateway.caps import estimate
from metis.gateway.inbound import chat
from metis.identity.keys import revoke_key
from metis.identity.teams import set_caps
from metis.identity.users import disable_user
from metis.util.server_thread import free_port
from tests.plugins.servers import GatewayServer

BIG = "x" * 40_000  # about 4,000 input tokens at the stub: ~$0.01 on gpt-4o


def _events(g: GatewayServer, typ: str) -> list[dict]:  # type: ignore[type-arg]
    g.flush()
    with g.engine.connect() as c:
        return [dict(r) for r in c.execute(select(events).where(events.c.type == typ)).mappings()]


def test_spec_team_daily_cap_and_quota_event(gateway: GatewayServer) -> None:
    _, secret = gateway.issue_key(user="alice", team="eng")
    with gateway.engine.begin() as conn:
        set_caps(conn, "eng", daily_cap_nanousd=1_000_000)  # $0.001
    gateway.wait_keys()
    client = gateway.openai(secret)
    client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": BIG}], max_tokens=5
    )
    gateway.flush()
    with gateway.engine.connect() as c:
        cost = c.execute(select(func.sum(usage_records.c.cost_nanousd))).scalar_one()
    assert cost >= 10_000_000  # the first request cost at least $0.01
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    err = ei.value.body
    assert isinstance(err, dict)
    assert err["code"] == err["type"] == "insufficient_quota" and err["scope"] == "team_daily"
    assert Decimal(str(err["limit_usd"])) == Decimal("0.001")
    assert Decimal(str(err["current_usd"])) * 10**9 == cost
    # OpenAI shape: Unix seconds of the next UTC midnight (as OpenAI's usage-limit errors)
    assert isinstance(err["resets_at"], int) and err["resets_at"] % 86_400 == 0
    assert ei.value.response.headers["x-metis-request-id"].startswith("req_")
    [q] = _events(gateway, "gateway.quota_exceeded")
    assert q["payload"]["scope"] == "team_daily" and q["team_id"]
    rds = _events(gateway, "route.decided")
    refused = [r for r in rds if r["payload"]["winner_index"] == -1]
    assert len(refused) == 1
    assert refused[0]["payload"]["reason"] == "quota_exceeded"
    assert refused[0]["request_id"] == q["request_id"]
    # Anthropic shape: 429 rate_limit_error with the same fields.
    ac = gateway.anthropic(secret)
    with pytest.raises(anthropic.RateLimitError) as ai:
        ac.messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    body = ai.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "rate_limit_error" and body["error"]["scope"] == "team_daily"
    assert body["error"]["resets_at"].endswith("T00:00:00Z")  # Anthropic shape: ISO 8601


def _fire(url: str, secret: str, n: int, body: dict) -> list[int]:  # type: ignore[type-arg]
    async def go() -> list[int]:
        limits = httpx.Limits(max_connections=n)
        async with httpx.AsyncClient(limits=limits, timeout=30) as c:
            h = {"authorization": f"Bearer {secret}"}
            rs = await asyncio.gather(
                *(c.post(f"{url}/v1/chat/completions", json=body, headers=h) for _ in range(n))
            )
            return [r.status_code for r in rs]

    return asyncio.run(go())


# A long prompt: the reservation (body bytes + provider overhead) is then only a few
# times the real cost (the simulator counts about 4 bytes a token), so a burst of 200
# spends past the cap and the bound is exercised, not just a cap never reached.
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "y" * 30_000}], "max_tokens": 5}


def _spent(g: GatewayServer) -> int:
    with g.engine.connect() as c:
        v = c.execute(
            select(func.coalesce(func.sum(usage_records.c.cost_nanousd), 0)).where(
                usage_records.c.status == "ok"
            )
        ).scalar_one()
    return int(v)


def _body_estimate() -> int:
    raw = msgspec.json.encode(BODY)
    est = estimate("openai", "gpt-4o", len(raw), chat.worst_case(None, raw))  # type: ignore[arg-type]
    assert est is not None
    return est


def _until_refused(urls: list[str], secret: str, limit: int = 3000) -> int:
    """Sequential requests (round robin over ``urls``) until every URL refuses in a row; how
    many were admitted. One process can refuse while another still holds an unused lease
    of the cap's headroom (up to ``max(cap // 16, 4 * est)``, `metis.ledger.counters`), so
    the cap is spent only once each process has refused."""
    admitted = 0
    refused_in_a_row = 0
    with httpx.Client(timeout=30) as c:
        h = {"authorization": f"Bearer {secret}"}
        for i in range(limit):
            r = c.post(f"{urls[i % len(urls)]}/v1/chat/completions", json=BODY, headers=h)
            if r.status_code == 429:
                refused_in_a_row += 1
                if refused_in_a_row == len(urls):
                    return admitted
                continue
            assert r.status_code == 200
            admitted += 1
            refused_in_a_row = 0
    raise AssertionError(f"no refusal after {limit} requests")


def test_200_concurrent_requests_overshoot_at_most_one_reservation(
    gateway: GatewayServer,
) -> None:
    est = _body_estimate()
    cap = 10 * est
    _, secret = gateway.issue_key(daily_cap_usd=Decimal(cap) / 10**9)
    codes = _fire(gateway.url, secret, 200, BODY)
    assert set(codes) <= {200, 429}
    assert codes.count(429) > 0 and codes.count(200) >= 10
    # Reservations are worst cases (here far above the real cost), so a burst is refused
    # before the cap is spent; requests one at a time then spend it up to one reservation.
    _until_refused([gateway.url], secret)
    gateway.flush()
    spent = _spent(gateway)
    # documented bound: one worst-case reservation per gateway process (here 1)
    assert cap - est < spent <= cap + est


@pytest.mark.postgres_only
@pytest.mark.slow
def test_two_processes_share_a_cap_on_postgresql(
    gateway: GatewayServer, metis_env: dict[str, str]
) -> None:
    if not metis_env["METIS_DATABASE_URL"].startswith("postgresql"):
        pytest.skip("needs PostgreSQL")
    est = _body_estimate()
    cap = 10 * est
    _, secret = gateway.issue_key(daily_cap_usd=Decimal(cap) / 10**9)
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [str(Path(sys.executable).parent / "metis"), "serve", "--port", str(p)],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for p in ports
    ]
    try:
        for p in ports:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{p}/v1/models", timeout=1)
                    break
                except httpx.TransportError:
                    assert all(pr.poll() is None for pr in procs), "metis serve exited"
                    assert time.monotonic() < deadline, "metis serve did not start"
                    time.sleep(0.1)

        async def both() -> list[int]:
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200), timeout=30) as c:
                h = {"authorization": f"Bearer {secret}"}
                rs = await asyncio.gather(
                    *(
                        c.post(
                            f"http://127.0.0.1:{ports[i % 2]}/v1/chat/completions",
                            json=BODY,
                            headers=h,
                        )
                        for i in range(200)
                    )
                )
                return [r.status_code for r in rs]

        codes = asyncio.run(both())
        n_seq = _until_refused([f"http://127.0.0.1:{p}" for p in ports], secret)
    finally:
        for pr in procs:
            pr.terminate()
        for pr in procs:
            pr.wait(30)
    assert set(codes) <= {200, 429} and codes.count(429) > 0
    spent = _spent(gateway)  # both processes flushed on graceful shutdown
    assert codes.count(200) + n_seq == _count_ok(gateway)
    assert cap - est < spent <= cap + 2 * est


def _count_ok(g: GatewayServer) -> int:
    with g.engine.connect() as c:
        return int(
            c.execute(
                select(func.count())
                .select_from(usage_records)
                .where(usage_records.c.status == "ok")
            ).scalar_one()
        )


def _until(pred, limit: float = 1.0) -> float:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3 * limit:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_revoke_disable_and_cap_change_take_effect_within_one_second(
    gateway: GatewayServer,
) -> None:
    k1, s1 = gateway.issue_key("a", user="ann")
    _, s2 = gateway.issue_key("b", user="bob")
    _, s3 = gateway.issue_key("c", team="ops")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

    def status(secret: str) -> int:
        return httpx.post(
            gateway.url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {secret}"},
        ).status_code

    assert status(s1) == status(s2) == status(s3) == 200
    with gateway.engine.begin() as conn:
        revoke_key(conn, k1, reason="test")
    assert _until(lambda: status(s1) == 401) < 1.0
    with gateway.engine.begin() as conn:
        disable_user(conn, "bob")
    assert _until(lambda: status(s2) == 401) < 1.0
    with gateway.engine.begin() as conn:
        set_caps(conn, "ops", daily_cap_nanousd=0)
    assert _until(lambda: status(s3) == 429) < 1.0


def test_credential_removal_reaches_the_gateway_within_one_second(
    gateway: GatewayServer,
) -> None:
    from metis.credentials import find_credential, remove_credential

    _, secret = gateway.issue_key()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

    def status() -> int:
        return httpx.post(
            gateway.url + "/v1/chat/completions",
            json=body,
            headers={"authorization": f"Bearer {secret}"},
        ).status_code

    assert status() == 200
    with gateway.engine.begin() as conn:
        cred = find_credential(conn, gateway.workspace_id, "openai", "inference")
        assert cred is not None
        remove_credential(conn, cred.id)
    assert _until(lambda: status() == 502) < 1.0


def test_user_caps_span_the_users_keys(gateway: GatewayServer, cli: Any) -> None:
    """Issue 18 #7: ``user_daily`` / ``user_monthly`` set with ``metis gateway user
    set-cap``, enforced over every key of the user (429 with the scope), audited."""
    _, first = gateway.issue_key("alice-laptop", user="alice", team="eng")
    _, second = gateway.issue_key("alice-ci", user="alice", team="ops")
    out = cli.ok("gateway", "user", "set-cap", "alice", "--daily-cap-usd", "0.001").stdout
    assert "daily cap 0.001, monthly cap none" in out
    gateway.wait_keys()
    gateway.openai(first).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": BIG}], max_tokens=5
    )
    gateway.flush()
    client = gateway.openai(second)  # another key, another team: the same user
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    err = ei.value.body
    assert isinstance(err, dict) and err["scope"] == "user_daily"
    assert Decimal(str(err["limit_usd"])) == Decimal("0.001")
    [q] = _events(gateway, "gateway.quota_exceeded")
    assert q["payload"]["scope"] == "user_daily" and q["user_id"] == q["payload"]["user_id"]
    # the monthly cap, with the daily one removed
    cli.ok("gateway", "user", "set-cap", "alice", "--daily-cap-usd", "none",
           "--monthly-cap-usd", "0.002")  # fmt: skip
    gateway.wait_keys()
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
    assert isinstance(ei.value.body, dict) and ei.value.body["scope"] == "user_monthly"
    resets = datetime.fromtimestamp(ei.value.body["resets_at"], UTC)
    assert (resets.day, resets.hour, resets.minute) == (1, 0, 0)
    # no cap: calls go through again
    cli.ok("gateway", "user", "set-cap", "alice", "--monthly-cap-usd", "none")
    gateway.wait_keys()
    client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
