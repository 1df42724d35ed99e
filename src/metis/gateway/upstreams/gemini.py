"""The Gemini family: Google's native Gemini API (``generativelanguage.googleapis.com``).

``POST /{version}/models/{model}:generateContent`` and
``:streamGenerateContent`` (``?alt=sse``: server-sent events, one
``GenerateContentResponse`` each; without it a JSON array streamed as it
grows), ``:countTokens`` (forwarded unbilled), ``GET /{version}/models``.
The version (``v1beta``, ``v1``) is the inbound request's; auth is the
``x-goog-api-key`` header. Answers and errors (``{"error": {"code",
"message", "status"}}``) pass through. Usage (``usageMetadata``) is read by
`metis.gateway.usage.from_gemini`.

Only the Gemini inbound API (`metis.gateway.inbound.gemini`) reaches this
family: the OpenAI and Anthropic shapes reach Gemini models through Google's
OpenAI-compatible endpoint (the ``gemini-openai`` preset), not by translation.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from metis.gateway.upstreams.base import CallView, Outgoing, Upstream, native_query, with_query

DEFAULT_VERSION = "v1beta"


class GeminiFamily:
    name = "gemini"
    wire = "gemini"
    apis = frozenset({"generate"})

    def url(self, up: Upstream, rel: str, query: bytes = b"") -> str:
        """``rel`` below the API version: ``/v1beta/models/…`` as is, ``/models/…`` under
        `DEFAULT_VERSION`."""
        if not rel.startswith(("/v1beta/", "/v1/")):
            rel = f"/{DEFAULT_VERSION}{rel}"
        return with_query(up.api_root + rel, query)

    def headers(self, up: Upstream, client: Mapping[bytes, bytes]) -> dict[str, str]:
        return {"x-goog-api-key": up.secret, "content-type": "application/json"}

    def request(self, up: Upstream, call: CallView, api: str, model: str, body: bytes) -> Outgoing:
        version = getattr(call.req, "api_version", None) or DEFAULT_VERSION
        action = "streamGenerateContent" if call.stream else "generateContent"
        rel = f"/{version}/models/{quote(model, safe='/')}:{action}"
        return Outgoing(
            self.url(up, rel, native_query(call, api)),
            self.headers(up, call.headers),
            body,
        )

    def error_body(self, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
        return body


FAMILY = GeminiFamily()
