"""Brute force against the gateway is throttled, without slowing valid keys (issue 19 item 6).

The red-team run: "300 wrong tokens in a row: ... 1,384/s on the gateway, and
the right token worked right after." Now, past ``METIS_AUTH_FAIL_LIMIT`` (20)
failed key checks from one address, the gateway answers 429 with
``Retry-After`` in the inbound shape's error envelope before looking the key
up; a key the gateway has cached is accepted at once (the hot path does not
consult the throttle), even from the throttled address.
"""

from __future__ import annotations

import secrets

import anthropic
import httpx
import openai
import pytest

from metis.config import get_settings
from tests.plugins.servers import GatewayServer

MSGS = [{"role": "user", "content": "hi"}]


def test_300_wrong_keys_are_throttled_and_a_valid_key_still_works(
    gateway: GatewayServer,
) -> None:
    limit = get_settings().auth_fail_limit
    assert limit == 20  # the documented default
    _, secret = gateway.issue_key()  # cached by the gateway (issue_key waits for it)
    lookups = gateway.gw.keys.miss_lookups
    codes: list[int] = []
    with httpx.Client(base_url=gateway.url, timeout=30) as c:
        for _ in range(300):
            wrong = "gw_" + secrets.token_urlsafe(32)
            r = c.post(
                "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": MSGS},
                headers={"authorization": f"Bearer {wrong}"},
            )
            codes.append(r.status_code)
        assert codes[:limit] == [401] * limit
        assert set(codes[limit:]) == {429}
        body = r.json()["error"]
        assert body["type"] == "rate_limit_exceeded" and body["code"] == "too_many_failed_auth"
        assert int(r.headers["retry-after"]) >= 1
        # the Anthropic routes answer in Anthropic's envelope
        r = c.post(
            "/v1/messages",
            json={"model": "claude-haiku-4-5", "max_tokens": 5, "messages": MSGS},
            headers={"x-api-key": "gw_" + secrets.token_urlsafe(32), "anthropic-version": "1"},
        )
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
        assert int(r.headers["retry-after"]) >= 1
        # unbilled routes share the throttle
        r = c.get("/v1/models", headers={"authorization": "Bearer gw_wrong"})
        assert r.status_code == 429
    # throttled guesses were never looked up in the database (one per failure before)
    assert gateway.gw.keys.miss_lookups - lookups <= limit
    # the valid key works at once, from the same (throttled) address, on every shape
    out = gateway.openai(secret).chat.completions.create(model="gpt-4o-mini", messages=MSGS)  # type: ignore[arg-type]
    assert out.choices
    msg = gateway.anthropic(secret).messages.create(
        model="claude-haiku-4-5",
        max_tokens=5,
        messages=MSGS,  # type: ignore[arg-type]
    )
    assert msg.content


def test_a_throttled_client_gets_429_from_the_sdks(
    gateway: GatewayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(get_settings().auth_fail_limit):
        with pytest.raises(openai.AuthenticationError):
            gateway.openai("gw_" + secrets.token_urlsafe(32)).models.list()
    with pytest.raises(openai.RateLimitError):
        gateway.openai("gw_" + secrets.token_urlsafe(32)).models.list()
    with pytest.raises(anthropic.RateLimitError):
        gateway.anthropic("gw_" + secrets.token_urlsafe(32)).messages.create(
            model="claude-haiku-4-5",
            max_tokens=5,
            messages=MSGS,  # type: ignore[arg-type]
        )
