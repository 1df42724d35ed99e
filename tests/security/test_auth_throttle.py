"""Brute force is not free: failed authentication is throttled per address and prefix.

Issue 19 item 6: "300 wrong tokens in a row: all 401 at 233/s on the dashboard
login, 398/s on the API, …, and the right token worked right after." Now,
on the dashboard login, the admin API, the push API and the cron trigger,
after ``METIS_AUTH_FAIL_LIMIT`` failures from one address the answer is 429
with ``Retry-After`` *before* the credential is checked (so a right guess
is not even looked at), while a valid credential from another address is
unaffected; when the window has passed the right token works again.

Client addresses: the test server trusts ``X-Forwarded-For`` from
127.0.0.1 (uvicorn's default for a reverse proxy on the same host), so each
test picks its clients' addresses from the documentation ranges.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import Engine

from metis.analytics.admin_tokens import create_token as create_admin_token
from metis.ingest import tokens
from metis.security.throttle import FailureThrottle, Policy, address_key
from metis.server import create_app
from metis.util.server_thread import ServerThread
from metis.workspaces import add_workspace

LIMIT = 10
WINDOW_S = 20.0  # one more failure is looked at every WINDOW_S / LIMIT = 2 s
CRON = "cron-" + secrets.token_urlsafe(32)
A, B = "198.51.100.7", "203.0.113.9"


@dataclass
class Srv:
    url: str
    admin: str
    ingest: str


@pytest.fixture
def srv(
    metis_env: dict[str, str], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Srv]:
    monkeypatch.setenv("METIS_AUTH_FAIL_LIMIT", str(LIMIT))
    monkeypatch.setenv("METIS_AUTH_FAIL_PREFIX_LIMIT", str(5 * LIMIT))
    monkeypatch.setenv("METIS_AUTH_FAIL_WINDOW_SECONDS", str(WINDOW_S))
    monkeypatch.setenv("METIS_CRON_SECRET", CRON)
    monkeypatch.setenv("METIS_INGEST_SCHEDULER", "false")
    with engine.begin() as c:
        add_workspace(c, "acme")
        _, admin = create_admin_token(c, "ops")
        _, ingest = tokens.create_token(c, "acme", "plugin")
    with ServerThread(create_app()) as s:
        yield Srv(s.url, admin, ingest)


def _from(addr: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": addr, **headers}


def _api(c: httpx.Client, addr: str, token: str) -> httpx.Response:
    return c.get("/admin/whoami", headers=_from(addr, Authorization=f"Bearer {token}"))


def _push(c: httpx.Client, addr: str, token: str) -> httpx.Response:
    return c.post(
        "/v1/ingest/usage",
        json={"items": []},
        headers=_from(addr, Authorization=f"Bearer {token}"),
    )


def _cron(c: httpx.Client, addr: str, token: str) -> httpx.Response:
    body = {"workspace": "no-such-workspace"}  # a right secret then answers 400, not a sync
    return c.post("/cron/usage", json=body, headers=_from(addr, Authorization=f"Bearer {token}"))


def _login(c: httpx.Client, addr: str, token: str) -> httpx.Response:
    c.cookies.clear()
    page = c.get("/ui/login", headers=_from(addr))
    nonce = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert nonce, page.text
    return c.post(
        "/ui/login",
        data={"csrf": nonce.group(1), "token": token, "next": "/ui"},
        headers=_from(addr),
    )


Surface = Callable[[httpx.Client, str, str], httpx.Response]
SURFACES: dict[str, tuple[Surface, str, tuple[int, ...]]] = {
    # name: (call, which valid credential, statuses of a valid call)
    "admin_api": (_api, "admin", (200,)),
    "push_api": (_push, "ingest", (200,)),
    "cron": (_cron, "cron", (400,)),
    "dashboard_login": (_login, "admin", (303,)),
}


def _wrong(kind: str) -> str:
    prefix = {"admin": "mta_", "ingest": "mit_", "cron": "cron-"}[kind]
    return prefix + secrets.token_urlsafe(32)


@pytest.mark.parametrize("surface", sorted(SURFACES))
def test_300_wrong_tokens_then_the_right_one(srv: Srv, surface: str) -> None:
    call, kind, ok = SURFACES[surface]
    right = {"admin": srv.admin, "ingest": srv.ingest, "cron": CRON}[kind]
    step = WINDOW_S / LIMIT
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        started = time.monotonic()
        statuses = [call(c, A, _wrong(kind)).status_code for _ in range(300)]
        elapsed = time.monotonic() - started
        assert set(statuses) == {401, 429}, statuses
        assert statuses[:LIMIT] == [401] * LIMIT, statuses[: LIMIT + 2]
        # Past the limit, one more guess is looked at per step: the rest are 429.
        assert statuses.count(401) <= LIMIT + math.ceil(elapsed / step) + 1, (elapsed, statuses)
        # Right after a guess that was looked at (the bucket is full again), the right
        # token is not looked at either.
        while call(c, A, _wrong(kind)).status_code != 401:
            pass
        r = call(c, A, right)
        assert r.status_code == 429, r.text
        wait = int(r.headers["Retry-After"])
        assert 1 <= wait <= WINDOW_S + 1
        assert "too many failed" in r.text
        # A valid credential from another address is unaffected.
        assert call(c, B, right).status_code in ok
        # Once the bucket has room again, the right token works from A.
        deadline = time.monotonic() + 3 * WINDOW_S
        while (r := call(c, A, right)).status_code == 429:
            assert time.monotonic() < deadline, "throttle never lifted"
            time.sleep(float(r.headers["Retry-After"]))
        assert r.status_code in ok, r.text


def test_valid_credentials_are_never_counted(srv: Srv) -> None:
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        for _ in range(5 * LIMIT):
            assert _api(c, A, srv.admin).status_code == 200
            assert _push(c, A, srv.ingest).status_code == 200


def test_a_distributed_guess_at_one_prefix_is_throttled_by_prefix(srv: Srv) -> None:
    """Guessers spread over many addresses, all guessing one token's display prefix."""
    prefix = srv.admin[:8]
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        statuses = []
        for i in range(500):  # 250 addresses, none near its own limit
            statuses.append(
                _api(c, f"192.0.2.{i % 250 + 1}", prefix + secrets.token_urlsafe(32)).status_code
            )
            if statuses[-1] == 429:
                break
        assert statuses[-1] == 429, "the prefix was never throttled"
        assert statuses[: 5 * LIMIT] == [401] * (5 * LIMIT)  # the prefix limit, then 429
        # Another prefix from a fresh address is looked at as usual.
        assert _api(c, "192.0.2.251", _wrong("admin")).status_code == 401


def test_memory_is_bounded_under_a_flood_of_addresses() -> None:
    now = [0.0]
    t = FailureThrottle(Policy(limit=3, window_s=60, max_keys=1000), clock=lambda: now[0])
    for i in range(100_000):
        t.failed(*t.keys(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", None))
    assert len(t._tat) <= 1000
    # The flood did not block a quiet address, and a noisy one is still tracked.
    assert t.retry_after(*t.keys("192.0.2.1", None)) is None
    for _ in range(3):
        t.failed(*t.keys("192.0.2.1", None))
    assert t.retry_after(*t.keys("192.0.2.1", None)) is not None
    now[0] += 60
    assert t.retry_after(*t.keys("192.0.2.1", None)) is None


def test_ipv6_clients_are_keyed_by_their_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2")
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.1") == address_key("192.0.2.1")
