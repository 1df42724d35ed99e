"""Budget alerts end to end: real requests through the gateway (official OpenAI SDK),
the alert worker inside the same ``metis serve`` app, a live webhook receiver."""

import time
from collections.abc import Callable

import httpx
import openai
import pytest
from sqlalchemy import func, select

from metis.db.tables import alert_deliveries, usage_records
from metis.identity.teams import set_caps
from metis.identity.users import set_caps as set_user_caps
from metis.util.server_thread import ServerThread, free_port
from tests.alerts.conftest import Sinks
from tests.alerts.receiver import Receiver
from tests.plugins.servers import GatewayServer

PROMPT = "x" * 4_000


def _drive_to_cap(g: GatewayServer, secret: str, scope: str = "team") -> tuple[int, float]:
    """Fix the team's (or user's) cap at 10 calls' cost, then call until the gateway answers 429."""
    client = g.openai(secret)

    def call() -> None:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], max_tokens=5
        )

    call()
    g.flush()
    with g.engine.connect() as c:
        one = int(c.execute(select(func.sum(usage_records.c.cost_nanousd))).scalar_one())
    assert one > 0
    with g.engine.begin() as c:
        if scope == "team":
            set_caps(c, "eng", daily_cap_nanousd=10 * one)
        else:
            set_user_caps(c, "alice", daily_cap_nanousd=10 * one)
    g.wait_keys()
    n, slowest = 1, 0.0
    while True:
        t0 = time.perf_counter()
        try:
            call()
        except openai.RateLimitError:
            return n, slowest
        slowest = max(slowest, time.perf_counter() - t0)
        n += 1
        assert n <= 30


def _wait_for(rec: Receiver, path: str, n: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while len(rec.at(path)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # and a moment longer, to catch any duplicate


def test_gateway_spend_fires_each_threshold_once(
    sinks: Sinks, gateway_factory: Callable[..., GatewayServer], stub_upstream: str
) -> None:
    g = gateway_factory(stub_upstream)
    _, secret = g.issue_key(user="alice", team="eng")
    calls, _ = _drive_to_cap(g, secret)
    assert calls == 10
    _wait_for(sinks.receiver, "/hook", 3)
    hooks = sinks.receiver.at("/hook")
    assert sorted(p.json["threshold"] for p in hooks) == [80, 95, 100]
    assert all(p.signature_ok(sinks.secret) for p in hooks)
    assert {p.json["scope"] for p in hooks} == {"team_daily"}
    assert len(sinks.receiver.at("/slack")) == 3


def test_user_cap_fires_each_threshold_once(
    sinks: Sinks, gateway_factory: Callable[..., GatewayServer], stub_upstream: str
) -> None:
    """Issue 18 #7: a user's cap alerts at 80/95/100% like a team's."""
    g = gateway_factory(stub_upstream)
    _, secret = g.issue_key(user="alice", team="eng")
    calls, _ = _drive_to_cap(g, secret, scope="user")
    assert calls == 10
    _wait_for(sinks.receiver, "/hook", 3)
    hooks = sinks.receiver.at("/hook")
    assert sorted(p.json["threshold"] for p in hooks) == [80, 95, 100]
    assert {p.json["scope"] for p in hooks} == {"user_daily"}


def test_receiver_down_delays_no_request_and_gets_alerts_when_back(
    fast_alerts: None,
    monkeypatch: pytest.MonkeyPatch,
    gateway_factory: Callable[..., GatewayServer],
    stub_upstream: str,
) -> None:
    port = free_port()
    monkeypatch.setenv("METIS_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{port}/hook")
    monkeypatch.setenv("METIS_ALERT_WEBHOOK_SECRET", "down-then-up")
    g = gateway_factory(stub_upstream)
    _, secret = g.issue_key(user="bob", team="eng")
    calls, slowest = _drive_to_cap(g, secret)
    assert calls == 10
    assert slowest < 2.0  # no request waited on the dead receiver (timeouts are 2 s)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with g.engine.connect() as c:
            errs = c.execute(
                select(alert_deliveries.c.last_error).where(alert_deliveries.c.attempts > 0)
            ).all()
        if len(errs) == 3:
            break
        time.sleep(0.05)
    assert {e for (e,) in errs} == {"webhook: ConnectError"}
    metrics = httpx.get(g.url + "/metrics", timeout=10).text
    assert 'metis_alert_deliveries_total{outcome="retry",sink="webhook"}' in metrics

    rec = Receiver()
    with ServerThread(rec.app(), port=port):
        _wait_for(rec, "/hook", 3)
    hooks = rec.at("/hook")
    assert sorted(p.json["threshold"] for p in hooks) == [80, 95, 100]
    assert all(p.signature_ok("down-then-up") for p in hooks)
