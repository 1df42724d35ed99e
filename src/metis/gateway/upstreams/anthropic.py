"""The Anthropic family: ``https://api.anthropic.com`` (or a root such as the simulator's).

URLs are the root plus ``/v1`` plus the API path; auth ``x-api-key``;
``anthropic-version`` (``2023-06-01`` when the client sent none) and
``anthropic-beta`` pass byte for byte. Serves the Messages API natively
(``count_tokens`` and the model list are forwarded unbilled).
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

DEFAULT_ANTHROPIC_VERSION = b"2023-06-01"


class AnthropicFamily:
    name = "anthropic"
    wire = "anthropic"
    apis = frozenset({"messages"})

    def url(self, up: Upstream, rel: str, query: bytes = b"") -> str:
        return with_query(up.api_root + "/v1" + rel, query)

    def headers(self, up: Upstream, client: Mapping[bytes, bytes]) -> dict[str, str]:
        h = {
            "x-api-key": up.secret,
            # header bytes pass through as received
            "anthropic-version": client.get(b"anthropic-version", DEFAULT_ANTHROPIC_VERSION).decode(
                "latin-1"
            ),
            "content-type": "application/json",
        }
        beta = client.get(b"anthropic-beta")
        if beta:
            h["anthropic-beta"] = beta.decode("latin-1")
        return h

    def request(self, up: Upstream, call: CallView, api: str, model: str, body: bytes) -> Outgoing:
        return Outgoing(
            self.url(up, REL_PATH[api], native_query(call, api)),
            self.headers(up, call.headers),
            body,
        )

    def error_body(self, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
        return body


FAMILY = AnthropicFamily()
