"""The OpenAI family: ``https://api.openai.com`` (or a root such as the simulator's).

URLs are the root plus ``/v1`` plus the API path; auth ``Authorization:
Bearer <key>``; the client's ``OpenAI-Beta`` passes (docs/gateway.md "Headers
that reach the provider"), ``OpenAI-Organization`` / ``OpenAI-Project`` never
do. Serves chat, embeddings and the Responses API natively; answers and
errors are in the OpenAI shape already.
"""

from __future__ import annotations

from collections.abc import Mapping

from metis.gateway.upstreams.base import (
    REL_PATH,
    CallView,
    Outgoing,
    Upstream,
    native_query,
    with_query,
)


class OpenAIFamily:
    name = "openai"
    wire = "openai"
    apis = frozenset({"chat", "embeddings", "responses"})
    prefix = "/v1"

    def url(self, up: Upstream, rel: str, query: bytes = b"") -> str:
        return with_query(up.api_root + self.prefix + rel, query)

    def headers(self, up: Upstream, client: Mapping[bytes, bytes]) -> dict[str, str]:
        h = {"authorization": "Bearer " + up.secret, "content-type": "application/json"}
        beta = client.get(b"openai-beta")
        if beta:
            h["openai-beta"] = beta.decode("latin-1")
        return h

    def request(self, up: Upstream, call: CallView, api: str, model: str, body: bytes) -> Outgoing:
        return Outgoing(
            self.url(up, REL_PATH[api], native_query(call, api)),
            self.headers(up, call.headers),
            body,
        )

    def error_body(self, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
        return body


FAMILY = OpenAIFamily()
