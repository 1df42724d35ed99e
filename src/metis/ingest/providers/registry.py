"""Provider name → its admin client functions, and `client_for` to open one."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import httpx

from metis.credentials import Credential
from metis.errors import ValidationError
from metis.gateway.egress import ssl_context
from metis.ingest.providers import anthropic, openai
from metis.ingest.providers.base import CostItem, UsageItem
from metis.ingest.providers.http import AdminHTTP
from metis.ingest.settings import IngestSettings

FetchWindow = Callable[
    [AdminHTTP, datetime, datetime], Awaitable[tuple[list[UsageItem], list[CostItem], int]]
]


@dataclass(frozen=True)
class ProviderAPI:
    name: str
    headers: Callable[[Credential, str], dict[str, str]]
    fetch_window: FetchWindow
    check: Callable[[AdminHTTP, Credential, datetime], Awaitable[str]]


PROVIDERS: dict[str, ProviderAPI] = {
    "openai": ProviderAPI("openai", openai.headers, openai.fetch_window, openai.check),
    "anthropic": ProviderAPI(
        "anthropic", anthropic.headers, anthropic.fetch_window, anthropic.check
    ),
}


def provider_api(name: str) -> ProviderAPI:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ValidationError(f"no usage client for provider {name!r}") from None


@asynccontextmanager
async def client_for(
    cred: Credential, secret: str, settings: IngestSettings
) -> AsyncIterator[AdminHTTP]:
    """An `AdminHTTP` for ``cred`` (the secret only lives in its headers).

    Egress as the gateway's (docs/gateway.md, Egress): httpx reads
    HTTPS_PROXY/HTTP_PROXY/NO_PROXY itself (``trust_env``), and TLS is
    verified with the same CA bundle (`metis.gateway.egress.ssl_context`)."""
    api = provider_api(cred.provider)
    timeout = httpx.Timeout(settings.ingest_http_timeout_seconds)
    verify = ssl_context(settings.upstream_ca_bundle)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, verify=verify) as client:
        yield AdminHTTP(
            provider=cred.provider,
            root=cred.api_root,
            headers=api.headers(cred, secret),
            client=client,
            settings=settings,
        )
