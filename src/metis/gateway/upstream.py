"""Upstream side: the pooled HTTP client and the in-memory inference-credential cache.

Credentials resolve to `metis.gateway.upstreams.base.UpstreamCredential` (name,
family, base URL, secret, genai-prices id, the family's options), keyed by
(workspace, provider name).

One `metis.gateway.http_client.UpstreamClient` per process with keep-alive
pooling (no per-request connection setup). Credentials: the workspace's provider credential with
purpose ``inference`` is looked up and decrypted once, then kept in memory
(plaintext only in this process's memory, never logged); the cache is cleared
when the ``identity`` or ``credentials`` configuration version moves (see
`metis.gateway.auth.KeyCache`) and when an upstream answers 401.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine

from metis.config import Settings
from metis.gateway import egress
from metis.gateway.http_client import UpstreamClient
from metis.gateway.upstreams.base import UpstreamCredential

CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 600.0
"""Longest wait for the upstream's response headers (then 504)."""
STREAM_IDLE_TIMEOUT_S = 600.0
"""Longest silence between two body chunks of an upstream response."""


__all__ = ["CredentialCache", "CredentialResolver", "UpstreamCredential", "scrub_secret"]

CredentialResolver = Callable[[str, str], UpstreamCredential | None]


REDACTED = b"[redacted]"


def scrub_secret(data: bytes, cred: UpstreamCredential) -> bytes:
    """``data`` with every recognisable copy of the credential's secret replaced by ``[redacted]``.

    Some providers and proxies quote the key they were given in an error
    body; the gateway forwards error bodies to a client that must never see
    the workspace's provider key (docs/security.md). A copy is found in any
    of these forms, each character independently, case-insensitively:

    - as is; JSON ``\\uXXXX`` escapes (with any number of backslashes, so a
      JSON document quoted inside a JSON string too), ``\\/`` for ``/``;
    - URL-encoded (``%XX``, also double-encoded ``%25XX``; ``+`` for a space);
    - ``\\xXX`` escapes and HTML character references (``&#115;``, ``&#x73;``);
    - hex of the whole secret; base64 of it (standard or URL-safe alphabet)
      at any alignment inside a longer encoded text, e.g. a quoted
      ``Authorization: Basic …`` header.

    What is not recognised: other encodings (compression, encryption, a
    secret split by other text) and fragments shorter than the whole secret
    (the gateway shows the last 4 characters itself).
    """
    if not cred.secret:
        return data
    pattern, fixed = _scrubber(cred.secret)
    out = pattern.sub(REDACTED, data)
    for f in fixed:
        if f in out:
            out = out.replace(f, REDACTED)
    return out


@functools.lru_cache(maxsize=64)
def _scrubber(secret: str) -> tuple[re.Pattern[bytes], tuple[bytes, ...]]:
    """The per-character pattern and the whole-secret encodings of ``secret`` (see above)."""
    parts = []
    for ch in secret:
        o = ord(ch)
        forms = [re.escape(ch.encode())]
        if o < 0x80:
            h = b"%02x" % o
            forms += [
                rb"\\+u00" + h,
                rb"%(?:25)*" + h,
                rb"\\+x" + h,
                rb"&#0*" + str(o).encode() + b";",
                rb"&#x0*" + h + b";",
            ]
            if ch == "/":
                forms.append(rb"\\+/")
            if ch == " ":
                forms.append(rb"\+")
        else:
            forms.append(rb"\\+u%04x" % o if o <= 0xFFFF else re.escape(ch.encode()))
        parts.append(b"(?:" + b"|".join(forms) + b")")
    pattern = re.compile(b"".join(parts), re.IGNORECASE)
    raw = secret.encode()
    fixed = {raw.hex().encode(), raw.hex().upper().encode()}
    for k in range(3):  # base64 at each alignment: the chars fixed by the secret's bytes only
        enc = base64.b64encode(b"\0" * k + raw)
        core = enc[(0, 2, 3)[k] : (k + len(raw)) // 3 * 4]
        if len(core) >= 16:
            fixed.add(core)
            fixed.add(core.replace(b"+", b"-").replace(b"/", b"_"))
    return pattern, tuple(sorted(fixed, key=len, reverse=True))


def db_resolver(engine: Engine, settings: Settings) -> CredentialResolver:
    """Resolve (workspace_id, provider) from the credentials store (blocking)."""

    def resolve(workspace_id: str, provider: str) -> UpstreamCredential | None:
        from metis.credentials import find_credential, reveal_secret

        with engine.connect() as conn:
            cred = find_credential(conn, workspace_id, provider, "inference")
            if cred is None:
                return None
            secret = reveal_secret(conn, settings, cred.id)
        return UpstreamCredential(
            cred.id,
            cred.api_root.rstrip("/"),
            secret,
            provider=cred.provider,
            family=cred.family,
            price_provider=cred.effective_price_provider,
            options=dict(cred.options),
        )

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


def new_client(ca_bundle: Path | None = None) -> UpstreamClient:
    """The process's pooled upstream client (create inside the running loop).

    Egress as configured in the environment (`metis.gateway.egress`): the
    proxy per origin from HTTPS_PROXY/HTTP_PROXY/NO_PROXY, and ``ca_bundle``
    (METIS_UPSTREAM_CA_BUNDLE) or the CA bundle variables for upstream TLS."""
    return UpstreamClient(
        connect_timeout=CONNECT_TIMEOUT_S,
        idle_timeout=STREAM_IDLE_TIMEOUT_S,
        ssl_context=egress.ssl_context(ca_bundle),
        proxies=egress.ProxyRules.from_environ(),
    )
