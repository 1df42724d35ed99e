"""Exact prices for LLM calls, from the bundled genai-prices data.

One entry point, `price(...)`, turns canonical token counts (DESIGN.md) into
integer nano-USD. Every area that computes a cost (gateway, simulator ground
truth, ingest, analytics) goes through here so they agree to the nano-USD.

Token semantics: Metis's canonical ``input_tokens`` counts *every* input token,
cache reads and cache writes included, and ``output_tokens`` includes reasoning
tokens. genai-prices' units use the same containment (its ``cache_read_tokens``
and ``cache_write_tokens`` are descendants of ``input_tokens``; its priced
"leaf" for plain input is ``input - cache_read - cache_write``; likewise
``output_reasoning_tokens`` is part of ``output_tokens``), so the canonical
fields map one-to-one without subtraction here.

Cost: genai-prices computes an exact Decimal in USD; it is converted with
`metis.money.to_nanousd` (half-even at the nano-USD). The (provider, model)
lookup is cached (`functools.lru_cache`); the price for the call's timestamp
is then resolved and computed per call.

Unknown model (or provider) -> ``Priced(cost_nanousd=None, cost_source="none")``.
Callers must not treat that as $0 silently; the gateway records it with
``cost_source = none`` and counts it in a metric.
"""

from __future__ import annotations

import functools
from datetime import datetime
from importlib.metadata import version as _pkg_version
from typing import Literal

import msgspec
from genai_prices import Usage
from genai_prices import data_snapshot as _snapshot
from genai_prices import types as _gp_types

from metis.money import to_nanousd

PRICING_VERSION: str = f"genai-prices-{_pkg_version('genai-prices')}"
"""The price data version stamped into every computed record's ``pricing_version``."""


class Priced(msgspec.Struct, frozen=True):
    """The result of pricing one call (or one bucket of usage)."""

    cost_nanousd: int | None
    cost_source: Literal["computed", "none"]
    pricing_version: str | None
    model_normalized: str


@functools.lru_cache(maxsize=4096)
def _lookup(provider: str, model: str) -> tuple[_gp_types.Provider, _gp_types.ModelInfo] | None:
    """Find genai-prices' (provider, model) entry; None when unknown. Cached."""
    try:
        return _snapshot.get_snapshot().find_provider_model(model, None, provider or None, None)
    except LookupError:
        return None


def normalize_model(provider: str, model: str) -> str:
    """The model name Metis groups by: genai-prices' model id when known.

    Dated snapshots (``gpt-4o-mini-2024-07-18``) collapse to the priced family id
    (``gpt-4o-mini``); unknown models are lower-cased and kept as given.
    """
    found = _lookup(provider, model)
    return found[1].id if found is not None else model.lower()


def has_price(provider: str, model: str) -> bool:
    """Whether `price` can compute a cost for this (provider, model)."""
    return _lookup(provider, model) is not None


def price(
    provider: str,
    model: str,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
    reasoning_tokens: int = 0,
    at: datetime | None = None,
) -> Priced:
    """Price one call from canonical token counts.

    ``cached_input_tokens`` and ``cache_creation_input_tokens`` are parts of
    ``input_tokens``; ``reasoning_tokens`` is part of ``output_tokens``
    (canonical semantics). ``at`` selects time-dependent prices (None = now).
    Token counts that contradict those semantics (a part larger than its
    whole) raise ValueError: that is a normalizer bug, never silently priced.
    """
    found = _lookup(provider, model)
    if found is None:
        return Priced(None, "none", None, model.lower())
    gp_provider, gp_model = found
    if cached_input_tokens + cache_creation_input_tokens > input_tokens:
        raise ValueError(
            "cached + cache-creation tokens exceed input_tokens "
            f"({cached_input_tokens} + {cache_creation_input_tokens} > {input_tokens})"
        )
    if reasoning_tokens > output_tokens:
        raise ValueError(
            f"reasoning_tokens exceed output_tokens ({reasoning_tokens} > {output_tokens})"
        )
    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cached_input_tokens or None,
        cache_write_tokens=cache_creation_input_tokens or None,
        output_reasoning_tokens=reasoning_tokens or None,
    )
    calc = gp_model.calc_price(usage, gp_provider, genai_request_timestamp=at)
    return Priced(to_nanousd(calc.total_price), "computed", PRICING_VERSION, gp_model.id)
