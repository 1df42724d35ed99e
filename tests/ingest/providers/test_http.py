import asyncio
import time
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from metis.ingest.providers.http import AdminHTTP, ProviderError, limiter_for, parse_retry_after
from metis.ingest.settings import IngestSettings
from metis.timeutil import utcnow
from metis.util.server_thread import ServerThread


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    http_date = format_datetime(utcnow() + timedelta(seconds=30), usegmt=True)
    v = parse_retry_after(http_date)
    assert v is not None and 25 <= v <= 31


def _server(script: list[Response]) -> Starlette:
    async def ep(request: Request) -> Response:
        return script.pop(0) if script else JSONResponse({"ok": True})

    return Starlette(routes=[Route("/x", ep)])


async def _get(url: str, **settings: float) -> tuple[object, AdminHTTP]:
    s = IngestSettings(
        openai_admin_requests_per_minute=100000,
        ingest_max_attempts=int(settings.pop("attempts", 4)),
        **settings,  # type: ignore[arg-type]
    )
    async with httpx.AsyncClient() as client:
        http = AdminHTTP(
            provider="openai",
            root=url,
            headers={"Authorization": "Bearer sk-admin-secretvalue99"},
            client=client,
            settings=s,
        )
        return await http.get_json("/x", []), http


def test_retry_after_wins_over_backoff() -> None:
    script: list[Response] = [
        JSONResponse({"error": {"message": "slow"}}, 429, headers={"retry-after": "0"})
    ] * 2
    with ServerThread(_server(list(script))) as srv:
        t0 = time.monotonic()
        data, http = asyncio.run(_get(srv.url, ingest_retry_base_seconds=30))
        assert data == {"ok": True} and http.stats.retries == 2
        assert time.monotonic() - t0 < 5  # the 30 s backoff was not used
    slow = [JSONResponse({"error": {"message": "x"}}, 503, headers={"retry-after": "1"})]
    with ServerThread(_server(slow)) as srv:
        t0 = time.monotonic()
        asyncio.run(_get(srv.url, ingest_retry_base_seconds=0))
        assert time.monotonic() - t0 >= 0.95  # waited what the provider asked


def test_client_errors_are_not_retried_and_key_is_scrubbed() -> None:
    script: list[Response] = [
        JSONResponse(
            {
                "error": {
                    "type": "invalid_request_error",
                    "message": "bad key sk-admin-secretvalue99",
                }
            },
            401,
        )
    ]
    with ServerThread(_server(script)) as srv, pytest.raises(ProviderError) as ei:
        asyncio.run(_get(srv.url))
    assert ei.value.status == 401 and not ei.value.retriable
    assert "sk-admin-secretvalue99" not in ei.value.message and "[redacted]" in ei.value.message


def test_gives_up_after_max_attempts() -> None:
    script: list[Response] = [JSONResponse({}, 500) for _ in range(5)]
    with ServerThread(_server(script)) as srv, pytest.raises(ProviderError, match="HTTP 500"):
        asyncio.run(_get(srv.url, attempts=3, ingest_retry_base_seconds=0))
    assert len(script) == 2  # three attempts were made


def test_token_bucket_per_provider_setting() -> None:
    async def go() -> tuple[float, float]:
        lim = limiter_for("anthropic", 7)
        return lim.max_rate, lim.time_period

    assert asyncio.run(go()) == (7, 60)
    s = IngestSettings(anthropic_admin_requests_per_minute=7, openai_admin_requests_per_minute=9)
    assert (s.requests_per_minute("anthropic"), s.requests_per_minute("openai")) == (7, 9)
