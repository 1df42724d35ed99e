"""HTTP plumbing shared by the provider admin clients.

`AdminHTTP.get_json` makes one GET with:

- a token bucket per provider (aiolimiter, ``METIS_<PROVIDER>_ADMIN_REQUESTS_PER_MINUTE``),
- retries with exponential backoff (tenacity) on 429, 5xx, transport errors
  (connection dropped, timeouts) and unparseable bodies (a truncated or
  malformed JSON page), honouring ``Retry-After`` (seconds or HTTP date),
- a `ProviderError` after the last attempt, or at once for other 4xx (a bad
  key will not get better by retrying), carrying the provider's own error
  message and never the key.
"""

import asyncio
import email.utils
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from metis.errors import MetisError
from metis.ingest.settings import IngestSettings


class ProviderError(MetisError):
    """A provider call failed; ``status`` is the HTTP status (None for transport errors)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        retriable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.retriable = retriable


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    v = value.strip()
    try:
        return max(0.0, float(v))
    except ValueError:
        pass
    try:
        dt = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return max(0.0, (dt - datetime.now(UTC)).total_seconds())


def provider_message(body: bytes) -> str:
    """The provider's error message from an OpenAI/Anthropic error envelope (or a snippet)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return body[:200].decode("utf-8", "replace").strip() or "no body"
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            kind = err.get("type") or err.get("code") or "error"
            return f"{kind}: {err.get('message', '')}".strip()
        if isinstance(err, str):
            return err
    return json.dumps(data)[:200]


_LIMITERS: dict[tuple[str, int, int], AsyncLimiter] = {}


def limiter_for(provider: str, per_minute: int) -> AsyncLimiter:
    """The token bucket of a provider, shared by every client on this event loop."""
    key = (provider, per_minute, id(asyncio.get_running_loop()))
    lim = _LIMITERS.get(key)
    if lim is None:
        lim = _LIMITERS[key] = AsyncLimiter(per_minute, 60)
    return lim


@dataclass
class CallStats:
    """Counted by the client so runs can report pages and retries."""

    requests: int = 0
    retries: int = 0


class AdminHTTP:
    """GET JSON from one provider root with auth headers, limits and retries."""

    def __init__(
        self,
        *,
        provider: str,
        root: str,
        headers: Mapping[str, str],
        client: httpx.AsyncClient,
        settings: IngestSettings,
    ) -> None:
        self.provider = provider
        self.root = root.rstrip("/")
        self._headers = dict(headers)
        self._client = client
        self._settings = settings
        self._limiter = limiter_for(provider, settings.requests_per_minute(provider))
        self.stats = CallStats()
        self._secrets = [
            v.removeprefix("Bearer ").strip()
            for k, v in self._headers.items()
            if k.lower() in ("authorization", "x-api-key")
        ]

    def _scrub(self, text: str) -> str:
        """Remove the credential from provider text (some APIs echo the key)."""
        for s in self._secrets:
            if s:
                text = text.replace(s, "[redacted]")
        return text

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff: float = min(
            self._settings.retry_max_wait_seconds,
            self._settings.retry_base_seconds * float(2 ** (state.attempt_number - 1)),
        )
        if isinstance(exc, ProviderError) and exc.retry_after is not None:
            return float(min(self._settings.retry_max_wait_seconds, exc.retry_after))
        return backoff

    async def _once(self, path: str, params: Sequence[tuple[str, str | int]]) -> Any:
        async with self._limiter:
            self.stats.requests += 1
            try:
                resp = await self._client.get(
                    self.root + path, params=list(params), headers=self._headers
                )
                body = resp.content
            except httpx.TimeoutException:
                raise ProviderError(
                    f"{self.provider} {path}: request timed out", retriable=True
                ) from None
            except httpx.TransportError as exc:
                raise ProviderError(
                    f"{self.provider} {path}: connection failed ({type(exc).__name__})",
                    retriable=True,
                ) from None
        detail = self._scrub(provider_message(body)) if resp.status_code >= 400 else ""
        if resp.status_code == 429 or resp.status_code >= 500:
            raise ProviderError(
                f"{self.provider} {path}: HTTP {resp.status_code}: {detail}",
                status=resp.status_code,
                retry_after=parse_retry_after(resp.headers.get("retry-after")),
                retriable=True,
            )
        if resp.status_code >= 400:
            raise ProviderError(
                f"{self.provider} {path}: HTTP {resp.status_code}: {detail}",
                status=resp.status_code,
            )
        try:
            return json.loads(body, parse_float=Decimal)
        except (ValueError, RecursionError):
            raise ProviderError(
                f"{self.provider} {path}: malformed or truncated JSON response", retriable=True
            ) from None

    async def get_json(self, path: str, params: Sequence[tuple[str, str | int]]) -> Any:
        """GET ``root + path`` and decode JSON, retrying as described in the module doc."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._settings.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retriable),
            reraise=True,
            sleep=asyncio.sleep,
        )
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.stats.retries += 1
                return await self._once(path, params)
        raise AssertionError("unreachable")  # pragma: no cover
