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
- its error envelope is its ``shape``'s (`metis.gateway.shapes`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


def positive_int(v: Any) -> int | None:
    """``v`` when it is a positive int (not a bool), else None."""
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def largest_budget(*values: Any) -> int | None:
    """The largest positive int among ``values`` (two budget fields: the provider uses
    one of them, so the worst case is the larger), else None (no budget given)."""
    ints = [v for v in (positive_int(x) for x in values) if v is not None]
    return max(ints) if ints else None
