"""Upstream side: the pooled HTTP client and the in-memory inference-credential cache.

One `metis.gateway.http_client.UpstreamClient` per process with keep-alive
pooling (no per-request connection setup). Credentials: the workspace's provider credential with
purpose ``inference`` is looked up and decrypted once, then kept in memory
(plaintext only in this process's memory, never logged); the cache is cleared
when the ``identity`` or ``credentials`` configuration version moves (see
`metis.gateway.auth.KeyCache`) and when an upstream answers 401.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from metis.config import Settings
from metis.gateway.http_client import UpstreamClient

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0
"""Longest wait for the upstream's response headers (then 504)."""
STREAM_IDLE_TIMEOUT_S = 600.0
"""Longest silence between two body chunks of an upstream response."""


@dataclass(frozen=True, slots=True)
class UpstreamCredential:
    credential_id: str
    api_root: str  # scheme://host[:port], no /v1
    secret: str

    def __repr__(self) -> str:  # never show the secret
        return f"UpstreamCredential({self.credential_id}, {self.api_root})"


CredentialResolver = Callable[[str, str], UpstreamCredential | None]


def scrub_secret(data: bytes, cred: UpstreamCredential) -> bytes:
    """``data`` with the credential's secret replaced by ``[redacted]``.

    Some providers and proxies quote the key they were given in an error
    body; the gateway forwards error bodies to a client that must never see
    the workspace's provider key (docs/security.md).
    """
    secret = cred.secret.encode()
    if secret and secret in data:
        return data.replace(secret, b"[redacted]")
    return data


def db_resolver(engine: Engine, settings: Settings) -> CredentialResolver:
    """Resolve (workspace_id, provider) from the credentials store (blocking)."""

    def resolve(workspace_id: str, provider: str) -> UpstreamCredential | None:
        from metis.credentials import find_credential, reveal_secret

        with engine.connect() as conn:
            cred = find_credential(conn, workspace_id, provider, "inference")
            if cred is None:
                return None
            secret = reveal_secret(conn, settings, cred.id)
        return UpstreamCredential(cred.id, cred.api_root.rstrip("/"), secret)

    return resolve


@dataclass
class CredentialCache:
    resolver: CredentialResolver
    _cache: dict[tuple[str, str], UpstreamCredential | None] = field(default_factory=dict)
    _locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)

    async def get(self, workspace_id: str, provider: str) -> UpstreamCredential | None:
        key = (workspace_id, provider)
        try:
            return self._cache[key]
        except KeyError:
            pass
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._cache:
                self._cache[key] = await asyncio.to_thread(self.resolver, workspace_id, provider)
            return self._cache[key]

    def invalidate(self, workspace_id: str | None = None, provider: str | None = None) -> None:
        if workspace_id is None:
            self._cache.clear()
        else:
            self._cache.pop((workspace_id, provider or ""), None)


def new_client() -> UpstreamClient:
    """The process's pooled upstream client (create inside the running loop)."""
    return UpstreamClient(connect_timeout=CONNECT_TIMEOUT_S, idle_timeout=STREAM_IDLE_TIMEOUT_S)
