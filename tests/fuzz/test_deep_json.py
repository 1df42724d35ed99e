"""JSON nested beyond the decoders' recursion limit, everywhere untrusted JSON is read.

Python's ``json`` and msgspec both give up on very deep nesting with a
RecursionError, not their usual decode error, so each reader must treat it
as malformed input: a 400 / rejected line / provider error / ignored SSE
event, never a 500 or a crashed sync.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from metis.gateway.streaming import SSEUsageTap
from metis.gateway.translate.errors import TranslationError
from metis.gateway.translate.errors_shape import upstream_message
from metis.gateway.translate.sse import SSEDecoder, decode_data
from metis.ingest.providers.http import provider_message
from tests.conftest import Cli
from tests.fuzz.conftest import SeededServer
from tests.plugins.servers import GatewayServer

DEPTH = 100_000
DEEP = b"[" * DEPTH + b"]" * DEPTH
DEEP_OBJ = b'{"usage": ' + DEEP + b', "id": "x"}'


def test_push_api(seeded_server: SeededServer) -> None:
    for body in (DEEP, b'{"items": ' + DEEP + b"}", b'{"items": [' + DEEP + b"]}"):
        r = httpx.post(
            f"{seeded_server.url}/v1/ingest/usage",
            content=body,
            headers={"Authorization": f"Bearer {seeded_server.ingest_token}"},
            timeout=30,
        )
        assert r.status_code in (400, 413, 422), r.text[:200]


def test_gateway_request(gateway: GatewayServer) -> None:
    _, key = gateway.issue_key()
    for path in ("/v1/chat/completions", "/v1/messages"):
        for body in (DEEP, b'{"model": "gpt-4o-mini", "messages": ' + DEEP + b"}"):
            r = httpx.post(
                gateway.url + path,
                content=body,
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert r.status_code == 400, r.text[:300]


def test_sse_readers() -> None:
    frame = b"data: " + DEEP_OBJ + b"\n\n"
    for shape, withhold in (("openai", True), ("openai", False), ("anthropic", False)):
        tap = SSEUsageTap(shape, withhold_usage_chunk=withhold)
        out = tap.feed(b"event: message_start\n" + frame if shape == "anthropic" else frame)
        out += tap.flush()
        assert tap.tokens.reported is False
    (ev,) = SSEDecoder().feed(frame)
    with pytest.raises(TranslationError, match="not valid JSON"):
        decode_data(ev)


def test_error_bodies() -> None:
    assert upstream_message(DEEP_OBJ) == "upstream error"
    assert isinstance(provider_message(DEEP_OBJ), str)


def test_cli_push_file(cli: type[Cli], tmp_path: Path) -> None:
    cli.ok("workspace", "add", "acme")
    f = tmp_path / "items.jsonl"
    f.write_bytes(DEEP + b"\n")
    r = cli.run("ingest", "push", str(f), "--workspace", "acme")
    assert r.exit_code != 0 or "rejected" in r.output
    assert "Traceback" not in r.output and "bad JSON" in r.output


async def _deep_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": DEEP_OBJ})


def test_provider_page_too_deep_is_a_provider_error() -> None:
    """A provider page nested too deep fails its window with an error, not the sync."""
    from metis.ingest.providers.http import AdminHTTP, ProviderError
    from metis.ingest.settings import IngestSettings
    from metis.util.server_thread import ServerThread

    async def go(url: str) -> None:
        async with httpx.AsyncClient() as client:
            http = AdminHTTP(
                provider="openai",
                root=url,
                headers={"Authorization": "Bearer sk-admin-test"},
                client=client,
                settings=IngestSettings(ingest_max_attempts=1),
            )
            with pytest.raises(ProviderError, match="malformed"):
                await http.get_json("/v1/organization/costs", [])

    with ServerThread(_deep_app) as srv:
        asyncio.run(go(srv.url))
