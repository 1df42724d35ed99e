"""A provider error that echoes the presented key never hands it to a gateway client.

Some OpenAI-compatible servers and proxies answer a rejected call with the
full key they were given ("Incorrect API key provided: sk-…"). The gateway
forwards upstream error bodies to its client, and that client holds only a
``gw_`` key: the workspace's provider key must not reach it.
"""

from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest

from metis.util.server_thread import ServerThread
from tests.plugins.servers import UPSTREAM_SECRETS, GatewayServer

STATUS = {"openai": 401, "anthropic": 500}


async def _echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every call with an error quoting the credential it was sent."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = dict(scope["headers"])
    key = headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(b"Bearer ")
    status = 500 if scope["path"] == "/v1/messages" else 401
    body = msgspec.json.encode(
        {
            "error": {
                "message": f"Incorrect API key provided: {key.decode()}; header was "
                f"{headers.get(b'authorization', b'').decode()}",
                "type": "invalid_request_error",
            }
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def echo_upstream() -> Iterator[str]:
    with ServerThread(_echo_app) as s:
        yield s.url


def test_echoed_provider_key_is_scrubbed(
    gateway_factory: Callable[..., GatewayServer], echo_upstream: str
) -> None:
    g = gateway_factory(echo_upstream)
    _, secret = g.issue_key("echo")
    import httpx

    with httpx.Client(base_url=g.url, timeout=30) as http:
        for path, body in [
            ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": []}),
            ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"}),
            ("/v1/messages", {"model": "claude-3-5-haiku-latest", "max_tokens": 1, "messages": []}),
        ]:
            r = http.post(path, json=body, headers={"Authorization": f"Bearer {secret}"})
            assert r.status_code >= 400, (path, r.status_code)
            text = r.text + repr(r.headers)
            for upstream_secret in (*UPSTREAM_SECRETS.values(), "sk-ant-test-upstream-0001"):
                assert upstream_secret not in text, (path, text)
            assert "[redacted]" in text, (path, text)  # the message itself still arrives


def test_echoed_provider_key_is_scrubbed_across_shapes(
    gateway_factory: Callable[..., GatewayServer],
    echo_upstream: str,
    metis_env: dict[str, str],
) -> None:
    """An Anthropic-shaped call routed to OpenAI (translated error) is scrubbed too."""
    from pathlib import Path

    (Path(metis_env["METIS_HOME"]) / "routing.yaml").write_text(
        "schema_version: 1\nrules:\n  - name: to-openai\n    when: {inbound_shape: anthropic}\n"
        "    use: openai:gpt-4o-mini\n"
    )
    g = gateway_factory(echo_upstream)
    _, secret = g.issue_key("echo")
    import httpx

    msgs = [{"role": "user", "content": "hi"}]
    body = {"model": "claude-3-5-haiku-latest", "max_tokens": 1, "messages": msgs}
    with httpx.Client(base_url=g.url, timeout=30) as http:
        r = http.post("/v1/messages", json=body, headers={"x-api-key": secret})
    assert r.status_code == 401, r.text  # the OpenAI upstream's 401, in the Anthropic shape
    assert UPSTREAM_SECRETS["openai"] not in r.text + repr(r.headers)
    assert "[redacted]" in r.text


# ---- issue 19 item 7: the key quoted in an encoded form ---------------------------------


def _encodings(key: str) -> dict[str, str]:
    """How an upstream or proxy may quote the key it was given, by name."""
    import base64
    import json
    from urllib.parse import quote

    every_char_escaped = "".join(f"\\u{ord(c):04x}" for c in key)
    return {
        "json_u_escapes": every_char_escaped,  # inside a JSON string: a valid escape of the key
        "json_in_json": json.dumps(json.dumps({"key": key}, ensure_ascii=False))[1:-1],
        "json_escaped_slash": key.replace("-", "\\u002d").replace("t", "\\u0074"),
        "url_encoded": quote(key, safe=""),
        "url_every_char": "".join(f"%{ord(c):02X}" for c in key),
        "basic_auth_b64": base64.b64encode(f"user:{key}".encode()).decode(),
        "bearer_b64url": base64.urlsafe_b64encode(f"Bearer {key}".encode()).decode(),
        "hex": key.encode().hex(),
        "upper": key.upper(),
        "html_refs": "".join(f"&#{ord(c)};" for c in key),
    }


async def _encoded_echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer every call with an error quoting the key in every form of `_encodings`."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = dict(scope["headers"])
    key = (headers.get(b"x-api-key") or headers.get(b"authorization", b"")).decode()
    key = key.removeprefix("Bearer ")
    forms = _encodings(key)
    # JSON text written by hand: the escapes above must reach the client as they are.
    body = '{"error": {"type": "invalid_request_error", "message": "rejected", "quoted": {'
    body += ", ".join(f'"{name}": "{text}"' for name, text in forms.items()) + "}}}"
    await send(
        {
            "type": "http.response.start",
            "status": 500 if scope["path"] == "/v1/messages" else 401,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


def _traces(text: str, key: str) -> list[str]:
    """The names of the encodings of ``key`` that still appear in ``text``."""
    import base64

    found = [name for name, form in _encodings(key).items() if form in text]
    # The key's bytes in base64 at any alignment (16+ characters of them).
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + key.encode()).decode()
        core = enc[(0, 2, 3)[k] : (k + len(key)) // 3 * 4]
        for variant in (core, core.replace("+", "-").replace("/", "_")):
            if variant in text:
                found.append(f"base64@{k}")
    return found


def test_provider_key_in_escaped_and_encoded_forms_is_scrubbed(
    gateway_factory: Callable[..., GatewayServer],
) -> None:
    import httpx

    with ServerThread(_encoded_echo_app) as up:
        g = gateway_factory(up.url)
        _, secret = g.issue_key("echo")
        with httpx.Client(base_url=g.url, timeout=30) as http:
            for path, body in [
                ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": []}),
                ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"}),
                (
                    "/v1/messages",
                    {"model": "claude-3-5-haiku-latest", "max_tokens": 1, "messages": []},
                ),
            ]:
                r = http.post(path, json=body, headers={"Authorization": f"Bearer {secret}"})
                assert r.status_code >= 400, (path, r.status_code)
                text = r.text + repr(r.headers)
                for key in UPSTREAM_SECRETS.values():
                    assert not _traces(text, key), (path, _traces(text, key), text)
                # Each form was there and is replaced (the body is still the provider's).
                assert text.count("[redacted]") >= len(_encodings("k")), (path, text)
                assert r.json()["error"]["message"] == "rejected"


def test_scrub_finds_every_encoding_of_random_keys() -> None:
    """Property: a random key, each form of `_encodings`, inside random surrounding text."""
    from hypothesis import given
    from hypothesis import strategies as st

    from metis.gateway.upstream import UpstreamCredential, scrub_secret
    from tests.fuzz.settings import fuzz_settings

    alphabet = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
    keys = st.builds(lambda body: "sk-" + body, st.text(alphabet, min_size=24, max_size=80))
    filler = st.text(st.characters(codec="ascii"), max_size=40)

    @given(key=keys, before=filler, after=filler, form=st.sampled_from(sorted(_encodings("k"))))
    @fuzz_settings(400)
    def check(key: str, before: str, after: str, form: str) -> None:
        cred = UpstreamCredential("cred_x", "http://upstream", key)
        data = (before + _encodings(key)[form] + after).encode()
        out = scrub_secret(data, cred).decode()
        assert not _traces(out, key), (form, out)
        assert key.lower() not in out.lower()

    check()
