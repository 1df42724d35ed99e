"""What the shared call lifecycle needs to know about one billed inbound API.

The lifecycle (`metis.gateway.lifecycle`: auth -> body -> plan -> reserve ->
upstream -> stamp) is the same for every API; an `InboundAPI` says what
differs (DESIGN.md "Inbound APIs are modules around one call lifecycle"):

- how to read its request: ``decoder`` decodes only the fields the gateway
  looks at (a `msgspec.Struct` with at least ``model``; unknown fields pass
  through untouched), ``streams(req)`` whether the client asked for a stream,
  ``worst_case(req, raw)`` what the request can make the provider bill (a
  `metis.gateway.worst_case.WorstCase`: choices, output budget, images,
  context-bound input, server-side tool rounds; DESIGN.md "Worst case is
  computed per shape"), read only when a cap needs it or a call's usage
  could not be read;
- what the upstream gets: ``prepare(req, raw, target_model)`` returns the
  body for a same-shape target and whether a usage-only stream event the
  gateway added must be withheld from the client;
- where its usage sits: ``usage(obj, tokens)`` maps the plain answer's
  ``usage`` object to canonical tokens (`metis.gateway.usage`), ``tap`` names
  the `metis.gateway.streaming.SSEUsageTap` flavour for streamed answers;
- ``admit(req, capped)``: a refusal message (403) for requests the key's hard
  caps cannot cover, else None;
- its error envelope is its ``shape``'s (`metis.gateway.shapes`), which is
  also the *wire* shape a target's family must speak (or be translated to);
- the upstream it goes to without routing: ``provider`` (default: the
  shape's own, ``openai`` / ``anthropic`` / ``gemini``); ``bind(req, path)``
  fills request fields that sit in the path (Gemini's and Azure's model, the
  stream flag of ``:streamGenerateContent``) and may refuse the path;
  ``forward_query``: whether the client's query string is for the upstream
  (``?beta=true``, ``?alt=sse``) or for the gateway (Azure's ``api-version``);
- its answer's id, model and usage: ``answer(data, tokens)`` when they are not
  the OpenAI/Anthropic ``id`` / ``model`` / ``usage`` fields (Gemini's
  ``responseId`` / ``modelVersion`` / ``usageMetadata``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec

from metis.gateway.usage import Tokens
from metis.gateway.worst_case import WorstCase


def rewrite_model(raw: bytes, model: str) -> bytes:
    """``raw`` (a JSON object) with its ``model`` replaced (a routing rule's target)."""
    obj = msgspec.json.decode(raw)
    obj["model"] = model
    return msgspec.json.encode(obj)


def same_body(req: Any, raw: bytes, target_model: str) -> tuple[bytes, bool]:
    """The default ``prepare``: the body as sent, with a routed model name rewritten."""
    if target_model != req.model:
        return rewrite_model(raw, target_model), False
    return raw, False


def _admit_all(req: Any, capped: bool) -> str | None:
    return None


class _Resp(msgspec.Struct):
    id: Any = None
    model: Any = None
    usage: Any = None


_dec_resp = msgspec.json.Decoder(_Resp, float_hook=Decimal)
"""Usage numbers are decoded exactly (a stated cost is a decimal amount)."""


@dataclass(frozen=True, slots=True)
class InboundAPI:
    """One billed inbound API (see the module docstring)."""

    name: str  # chat | embeddings | messages | responses: the `Call.endpoint` and metric label
    shape: str  # openai | anthropic: the error envelope and the provider of the default plan
    path: str  # the gateway route, and the same-shape upstream path
    decoder: msgspec.json.Decoder[Any]
    streams: Callable[[Any], bool]
    worst_case: Callable[[Any, bytes], WorstCase]
    usage: Callable[[Any, Tokens], Tokens]
    tap: str  # SSEUsageTap flavour: openai | anthropic | responses
    prepare: Callable[[Any, bytes, str], tuple[bytes, bool]] = same_body
    admit: Callable[[Any, bool], str | None] = _admit_all
    routable: bool = True  # routing rules may change its target
    translatable: bool = False  # a target of the other shape can be served by translation
    provider: str | None = None  # the default plan's provider (None: the shape's own)
    bind: Callable[[Any, str], str | None] | None = None
    forward_query: bool = True
    answer: Callable[[bytes, Tokens], tuple[str | None, str | None]] | None = None

    @property
    def default_provider(self) -> str:
        return self.provider or self.shape

    def read_answer(self, data: bytes, tokens: Tokens) -> tuple[str | None, str | None]:
        """(upstream response id, reported model) of a plain answer, its usage applied to
        ``tokens``; raises a decode error when it is not JSON of the expected shape."""
        if self.answer is not None:
            return self.answer(data, tokens)
        r = _dec_resp.decode(data)
        self.usage(r.usage, tokens)
        return (
            r.id if isinstance(r.id, str) and r.id else None,
            r.model if isinstance(r.model, str) and r.model else None,
        )


def positive_int(v: Any) -> int | None:
    """``v`` when it is a positive int (not a bool), else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def largest_budget(*values: Any) -> int | None:
    """The largest positive int among ``values`` (two budget fields: the provider uses
    one of them, so the worst case is the larger), else None (no budget given)."""
    ints = [v for v in (positive_int(x) for x in values) if v is not None]
    return max(ints) if ints else None
