"""The gateway's key cache: a new key works on its first request (issue 18 #6).

Before, ``metis gateway issue-key`` followed at once by a call got 401
``invalid_api_key`` until the cache's next poll (~0.5 s). A cache miss on a
well-formed ``gw_`` token is now looked up in the database; unknown tokens are
remembered in a bounded negative cache so floods of bad keys stay cheap.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import Engine

from metis.gateway import auth
from metis.gateway.auth import AuthFailure, KeyCache
from metis.identity.keys import revoke_key
from tests.plugins.identity import make_key
from tests.plugins.servers import GatewayServer


def test_a_key_works_on_its_first_request(gateway: GatewayServer, cli: Any) -> None:
    cli.ok("workspace", "list")  # the CLI and the server share this test's database
    for i in range(3):
        out = cli.ok("gateway", "issue-key", "--name", f"fresh-{i}", "--workspace", "w").stdout
        secret = next(line for line in out.splitlines() if line.startswith("gw_"))
        # no wait for the cache's poll: the very first request authenticates
        r = gateway.openai(secret).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )
        assert r.choices
    with pytest.raises(openai.AuthenticationError):
        gateway.openai("gw_" + "x" * 43).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )


def _cache(engine: Engine) -> KeyCache:
    c = KeyCache(engine)
    asyncio.run(c.load())
    return c


def test_miss_lookup_caches_hits_and_misses(engine: Engine) -> None:
    cache = _cache(engine)
    k = make_key(engine)  # issued after the load: not cached
    with pytest.raises(AuthFailure):
        cache.resolve(k.token)  # the no-I/O path does not know it

    async def go() -> None:
        r = await cache.authenticate(k.token)
        assert r.principal.gateway_key_id == k.key_id and cache.miss_lookups == 1
        await cache.authenticate(k.token)  # cached now
        assert cache.miss_lookups == 1
        bad = "gw_" + "b" * 43
        for _ in range(5):
            with pytest.raises(AuthFailure):
                await cache.authenticate(bad)
        assert cache.miss_lookups == 2  # the bad key was looked up once
        for junk in ("sk-not-a-gateway-key", "gw_" + "y" * 600):
            with pytest.raises(AuthFailure):
                await cache.authenticate(junk)
        assert cache.miss_lookups == 2  # malformed tokens never reach the database
        # a flood of distinct bad keys: each looked up once, then answered from memory
        flood = [f"gw_flood{i:040d}" for i in range(200)]
        results = await asyncio.gather(
            *(cache.authenticate(t) for t in flood), return_exceptions=True
        )
        assert all(isinstance(x, AuthFailure) for x in results)
        assert cache.miss_lookups == 202
        await asyncio.gather(*(cache.authenticate(t) for t in flood), return_exceptions=True)
        assert cache.miss_lookups == 202

    asyncio.run(go())


def test_negative_cache_is_bounded_and_emptied_by_a_reload(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "NEGATIVE_MAX", 10)
    cache = _cache(engine)

    async def go() -> None:
        for i in range(25):
            with pytest.raises(AuthFailure):
                await cache.authenticate(f"gw_neg{i:040d}")
        assert len(cache._negative) == 10
        make_key(engine)  # bumps the identity version
        assert await cache.poll_once()
        assert len(cache._negative) == 0

    asyncio.run(go())


def test_revocation_keeps_its_bound_for_a_key_found_by_lookup(engine: Engine) -> None:
    cache = _cache(engine)
    k = make_key(engine)

    async def go() -> None:
        await cache.authenticate(k.token)
        with engine.begin() as conn:
            revoke_key(conn, k.key_id)
        assert await cache.poll_once()  # what the 0.5 s poll does
        with pytest.raises(AuthFailure, match="revoked"):
            await cache.authenticate(k.token)

    asyncio.run(go())


def test_flood_of_bad_keys_through_the_gateway(gateway: GatewayServer) -> None:
    # The negative cache alone is under test: the failed-auth throttle would answer 429
    # after 20 failures (that is tests/security/test_gateway_auth_throttle.py).
    gateway.gw.throttle = None
    keys = gateway.gw.keys
    before = keys.miss_lookups
    with httpx.Client(base_url=gateway.url, timeout=30) as c:
        for _ in range(3):
            for i in range(30):
                r = c.post(
                    "/v1/chat/completions",
                    headers={"Authorization": f"Bearer gw_bad{i:040d}"},
                    json={"model": "gpt-4o", "messages": []},
                )
                assert r.status_code == 401
    assert keys.miss_lookups - before <= 30  # each bad key looked up at most once
