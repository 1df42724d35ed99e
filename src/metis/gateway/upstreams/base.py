"""The interface every provider family implements for the gateway.

A family (`metis.gateway.upstreams.catalog`) says, for one resolved
`Upstream` (a workspace's credential: name, base URL, secret, genai-prices
id, options):

- which billed inbound APIs it serves natively (``apis``: ``chat``,
  ``embeddings``, ``responses`` for the OpenAI wire; ``messages`` for the
  Anthropic wire; ``generate`` for Gemini's) — other APIs of its wire shape
  are skipped as unsupported targets, other shapes go through translation
  (`metis.gateway.translate.forward`) when it exists;
- how a call becomes an upstream request (`Family.request`: URL, headers,
  body; `Family.url` / `Family.headers` for the unbilled lookups);
- how the answer becomes its wire shape (`Outgoing.adapter`: Bedrock's
  InvokeModel / Converse answers and event streams become Anthropic
  Messages JSON and SSE; every other family answers in its wire shape
  already);
- how an upstream error body reaches a client of the family's wire shape
  (`Family.error_body`: Bedrock's ``{"message"}`` becomes Anthropic's
  envelope; the others are passed through).

Usage normalization is per wire shape (`metis.gateway.usage`: one reader per
answer shape, tolerant of each OpenAI-compatible provider's variant fields,
and Gemini's ``usageMetadata``), plus the family's own conversion where its
answers are not in a wire shape (Bedrock, in its adapter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

REL_PATH = {
    "chat": "/chat/completions",
    "embeddings": "/embeddings",
    "responses": "/responses",
    "messages": "/messages",
}
"""An inbound API's path below its family's version prefix (``/v1``, ``/openai/v1`` …)."""


@dataclass(frozen=True, slots=True)
class UpstreamCredential:
    """A workspace's inference upstream, resolved for the gateway (the secret in memory only).

    ``provider`` is the credential's name (what records say); ``api_root`` the
    effective base URL (`metis.credentials.Credential.api_root`)."""

    credential_id: str
    api_root: str
    secret: str
    provider: str = ""
    family: str = "openai"
    price_provider: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # never show the secret
        return f"UpstreamCredential({self.credential_id}, {self.provider}, {self.api_root})"


Upstream = UpstreamCredential


class CallView(Protocol):
    """What a family reads of a gateway call (`metis.gateway.lifecycle.Call`)."""

    @property
    def path(self) -> str: ...

    @property
    def query(self) -> bytes: ...

    @property
    def headers(self) -> dict[bytes, bytes]: ...

    @property
    def stream(self) -> bool: ...

    @property
    def api(self) -> Any: ...  # metis.gateway.inbound.base.InboundAPI

    @property
    def req(self) -> Any: ...  # the API's decoded request


class StreamAdapter(Protocol):
    """Upstream stream bytes in, the wire shape's SSE bytes out."""

    def feed(self, data: bytes) -> bytes: ...

    def close(self) -> bytes: ...


class Adapter(Protocol):
    """Turns a family's answers into its wire shape (see the module docstring)."""

    def plain(self, data: bytes, headers: Mapping[str, str]) -> bytes: ...

    def stream(self, headers: Mapping[str, str]) -> StreamAdapter: ...


@dataclass(slots=True)
class Outgoing:
    """One upstream request, ready to send."""

    url: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"
    adapter: Adapter | None = None


class Family(Protocol):
    """One provider family (module-level singletons in `metis.gateway.upstreams`)."""

    name: str
    wire: str  # openai | anthropic | gemini
    apis: frozenset[str]

    def url(self, up: Upstream, rel: str, query: bytes = b"") -> str:
        """The URL of ``rel`` (an API path below the version prefix, e.g. ``/models``)."""
        ...

    def headers(self, up: Upstream, client: Mapping[bytes, bytes]) -> dict[str, str]:
        """Auth and the few client headers that reach the provider (docs/gateway.md)."""
        ...

    def request(self, up: Upstream, call: CallView, api: str, model: str, body: bytes) -> Outgoing:
        """The upstream request of a billed call of ``api`` (an API of the family's wire:
        ``chat``, ``messages`` …; a translated call's is not the inbound one) to ``model``
        with ``body`` (in the wire shape)."""
        ...

    def error_body(self, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
        """An upstream error body for a client of the family's wire shape."""
        ...


def with_query(url: str, query: bytes) -> str:
    return url + "?" + query.decode("latin-1") if query else url


def native_query(call: CallView, api: str) -> bytes:
    """The client's query string when it was meant for this API (``?beta=true`` …): the
    call is of ``api`` itself (not translated) and its inbound API forwards its query
    (Azure's ``api-version`` is for the gateway, not for the target)."""
    return call.query if call.api.name == api and call.api.forward_query else b""
