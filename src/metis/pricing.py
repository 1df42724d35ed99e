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

Providers: ``provider`` is a genai-prices provider id (``openai``, ``groq``,
``google``, ``aws`` …; None when the upstream has none). When genai-prices
has no price for the model, the prices file (`metis.prices_file`,
``$METIS_HOME/prices.yaml``) is asked, under the Metis provider ``name``
(the credential's name, e.g. ``my-vllm``; defaults to ``provider``). The file
never overrides genai-prices.

Unknown model (or provider) -> ``Priced(cost_nanousd=None, cost_source="none")``.
Callers must not treat that as $0 silently; the gateway records it with
``cost_source = none`` and counts it in a metric.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import version as _pkg_version
from typing import Any, Literal

import msgspec
from genai_prices import Usage
from genai_prices import data_snapshot as _snapshot
from genai_prices import types as _gp_types

from metis import prices_file
from metis.money import to_nanousd

PRICING_VERSION: str = f"genai-prices-{_pkg_version('genai-prices')}"
"""The price data version stamped into every computed record's ``pricing_version``."""


class Priced(msgspec.Struct, frozen=True):
    """The result of pricing one call (or one bucket of usage)."""

    cost_nanousd: int | None
    cost_source: Literal["computed", "provider_reported", "estimated", "none"]
    pricing_version: str | None
    model_normalized: str


@functools.lru_cache(maxsize=4096)
def _lookup(
    provider: str | None, model: str
) -> tuple[_gp_types.Provider, _gp_types.ModelInfo] | None:
    """Find genai-prices' (provider, model) entry; None when unknown (or no provider). Cached."""
    if not provider:
        return None
    try:
        return _snapshot.get_snapshot().find_provider_model(model, None, provider, None)
    except LookupError:
        return None


_MTOK = Decimal(1_000_000)
_SIMPLE_KEYS = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
_Simple = tuple[Decimal, Decimal, Decimal, Decimal, Decimal]
_simple_cache: dict[tuple[str, str, int], _Simple | None] = {}


def _now() -> datetime:
    return datetime.now(tz=UTC)


def _simple_prices(provider_id: str, model_id: str, mp: Any) -> _Simple | None:
    """(input, output, cache read, cache write, 1h cache write) $/MTok when plain arithmetic
    is exact.

    That is: those prices are flat Decimals (no tiers) and the model has
    no separate reasoning-token price. A cache price the model lacks falls back
    to its parent's price, as genai-prices charges an unpriced part at its
    parent's rate (cache read/write: the input price; a 1-hour cache write: the
    cache write price). Anything else (tiers, reasoning prices) takes
    genai-prices' own path. Equality with genai-prices is tested for every
    OpenAI and Anthropic model.
    """
    # get_prices returns the snapshot's own (long-lived) price objects when no
    # price context is given, so their id() is a stable cache key.
    key = (provider_id, model_id, id(mp))
    try:
        return _simple_cache[key]
    except KeyError:
        pass
    vals = [getattr(mp, k, None) for k in (*_SIMPLE_KEYS, "cache_write_1h_mtok")]
    out: _Simple | None = None
    if (
        all(v is None or isinstance(v, Decimal) for v in vals)
        and vals[0] is not None
        and getattr(mp, "output_reasoning_mtok", None) is None
    ):
        p_in = vals[0]
        p_out = vals[1] if vals[1] is not None else Decimal(0)
        p_write = vals[3] if vals[3] is not None else p_in
        out = (
            p_in,
            p_out,
            vals[2] if vals[2] is not None else p_in,
            p_write,
            vals[4] if vals[4] is not None else p_write,
        )
    if len(_simple_cache) > 10_000:
        _simple_cache.clear()
    _simple_cache[key] = out
    return out


def normalize_model(provider: str | None, model: str) -> str:
    """The model name Metis groups by: genai-prices' model id when known.

    Dated snapshots (``gpt-4o-mini-2024-07-18``) collapse to the priced family id
    (``gpt-4o-mini``); unknown models are lower-cased and kept as given.
    """
    found = _lookup(provider, model)
    return found[1].id if found is not None else model.lower()


def has_price(
    provider: str | None, model: str, *, name: str | None = None, at: datetime | None = None
) -> bool:
    """Whether `price` can compute a cost for this (provider, model): genai-prices knows
    it, or the prices file has an entry for (``name`` or ``provider``, model) in effect at
    ``at`` (None: at any time)."""
    if _lookup(provider, model) is not None:
        return True
    f = prices_file.current()
    key = name or provider
    if f is None or key is None:
        return False
    return f.has(key, model) if at is None else f.find(key, model, at) is not None


def price_source(provider: str | None, model: str, *, name: str | None = None) -> str:
    """What prices (provider, model): ``genai-prices <version> (<provider>/<model id>)``,
    ``prices file <path> (<version>)`` or ``unpriced`` (for `metis prices check`)."""
    found = _lookup(provider, model)
    if found is not None:
        return f"{PRICING_VERSION} ({found[0].id}/{found[1].id})"
    f = prices_file.current()
    key = name or provider
    if f is not None and key is not None and f.has(key, model):
        return f"prices file {f.path} ({f.version})"
    return "unpriced"


def price(
    provider: str | None,
    model: str,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
    reasoning_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    at: datetime | None = None,
    name: str | None = None,
) -> Priced:
    """Price one call from canonical token counts.

    ``cached_input_tokens`` and ``cache_creation_input_tokens`` are parts of
    ``input_tokens``; ``reasoning_tokens`` is part of ``output_tokens``
    (canonical semantics). ``name`` is the Metis provider name the prices file
    is keyed by (default ``provider``). ``cache_write_1h_tokens`` is the part of
    ``cache_creation_input_tokens`` written with Anthropic's 1-hour TTL, priced
    at the model's 1-hour cache-write price (2x input, against 1.25x for the
    default 5 minutes); callers that do not know the split leave it 0 and every
    write is priced at the 5-minute rate. ``at`` selects time-dependent prices
    (None = now).
    Token counts that contradict those semantics (a part larger than its
    whole) raise ValueError: that is a normalizer bug, never silently priced.
    So do counts whose cost would exceed `MAX_COST_NANOUSD`.
    """
    found = _lookup(provider, model)
    if cached_input_tokens + cache_creation_input_tokens > input_tokens:
        raise ValueError(
            "cached + cache-creation tokens exceed input_tokens "
            f"({cached_input_tokens} + {cache_creation_input_tokens} > {input_tokens})"
        )
    if reasoning_tokens > output_tokens:
        raise ValueError(
            f"reasoning_tokens exceed output_tokens ({reasoning_tokens} > {output_tokens})"
        )
    if cache_write_1h_tokens > cache_creation_input_tokens:
        raise ValueError(
            "cache_write_1h_tokens exceed cache_creation_input_tokens "
            f"({cache_write_1h_tokens} > {cache_creation_input_tokens})"
        )
    if found is None:
        return _file_price(
            name or provider,
            model,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            cache_creation_input_tokens,
            at,
        )
    gp_provider, gp_model = found
    fast = _simple_prices(gp_provider.id, gp_model.id, gp_model.get_prices(at or _now()))
    if fast is not None and not reasoning_tokens:
        p_in, p_out, p_read, p_write, p_write_1h = fast
        plain = input_tokens - cached_input_tokens - cache_creation_input_tokens
        total = (
            plain * p_in
            + cached_input_tokens * p_read
            + (cache_creation_input_tokens - cache_write_1h_tokens) * p_write
            + cache_write_1h_tokens * p_write_1h
            + output_tokens * p_out
        )
        return Priced(_bounded(total / _MTOK), "computed", PRICING_VERSION, gp_model.id)
    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cached_input_tokens or None,
        cache_write_tokens=cache_creation_input_tokens or None,
        cache_write_1h_tokens=cache_write_1h_tokens or None,
        output_reasoning_tokens=reasoning_tokens or None,
    )
    calc = gp_model.calc_price(usage, gp_provider, genai_request_timestamp=at)
    return Priced(_bounded(calc.total_price), "computed", PRICING_VERSION, gp_model.id)


def _file_price(
    key: str | None,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cached: int,
    written: int,
    at: datetime | None,
) -> Priced:
    """The prices file's price (`metis.prices_file`), or unpriced."""
    f = prices_file.current() if key else None
    e = f.find(key, model, at) if f is not None and key else None
    if f is None or e is None:
        return Priced(None, "none", None, model.lower())
    plain = input_tokens - cached - written
    total = (
        plain * e.input + cached * e.cache_read + written * e.cache_write + output_tokens * e.output
    )
    return Priced(_bounded(total / _MTOK), "computed", f.version, model.lower())


class TopPrices(msgspec.Struct, frozen=True):
    """The highest price a model charges per input token, per output token and per request.

    USD per million tokens (per request for ``per_request``), the maximum over
    every token price of that direction (plain, cache reads, 5-minute and
    1-hour cache writes, audio, image, reasoning), over every tier, and over
    every dated price the model has had or will have. No mix of token kinds,
    no tier and no date the call lands on can price one token above these, so
    a token count times them bounds any cost `price` computes
    (`metis.gateway.worst_case`).
    """

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    per_request: Decimal


def _top(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    base = getattr(value, "base", None)  # genai-prices TieredPrices
    tops = [t.price for t in getattr(value, "tiers", ())]
    return max([base, *tops]) if isinstance(base, Decimal) else Decimal(0)


def top_prices(provider: str | None, model: str, name: str | None = None) -> TopPrices | None:
    """`TopPrices` of a model; None when it is unpriced.

    Like `price`: genai-prices first (``provider`` is its id), else the prices
    file's entries for ``name`` (default ``provider``). A model the file prices only
    from a later date is unpriced now (None: refused under a cap, as `price` would
    leave it at $0). Otherwise the top over every entry that can price it, the
    model's own at any date and the provider's ``*`` entries, since `PricesFile.find`
    falls back to ``*`` on dates before the model's own entry takes effect."""
    top = _genai_top_prices(provider, model)
    if top is not None:
        return top
    f = prices_file.current()
    key = name or provider
    if f is None or key is None or f.find(key, model) is None:
        return None
    return _file_top_prices(f, key, model.lower())


def _file_top_prices(f: prices_file.PricesFile, key: str, model: str) -> TopPrices:
    # Not cached: a prices file holds a handful of entries, and it may change.
    entries = [e for e in f.entries if e.provider == key and e.model in (model, "*")]
    return TopPrices(
        max(max(e.input, e.cache_read, e.cache_write) for e in entries),
        max(e.output for e in entries),
        Decimal(0),
    )


@functools.lru_cache(maxsize=4096)
def _genai_top_prices(provider: str | None, model: str) -> TopPrices | None:
    from genai_prices.units import _get_registry

    found = _lookup(provider, model)
    if found is None:
        return None
    gp_model = found[1]
    registry = _get_registry()
    all_prices = (
        [gp_model.prices]
        if not isinstance(gp_model.prices, list)
        else [c.prices for c in gp_model.prices]
    )
    top = {"input": Decimal(0), "output": Decimal(0), "requests": Decimal(0)}
    for mp in all_prices:
        for key, value in mp.__dict__.items():
            if value is None:
                continue
            try:
                unit = registry.unit_for_price_key(key)
            except KeyError:
                continue
            dims = unit.dimensions
            if dims.get("family") == "tokens" and dims.get("direction") in ("input", "output"):
                kind = str(dims["direction"])
                per_mtok = _top(value) * _MTOK / unit.per
            elif dims.get("family") == "requests":
                kind, per_mtok = "requests", _top(value) / unit.per
            else:
                continue  # tool calls, durations, pixels: never priced from a usage object
            top[kind] = max(top[kind], per_mtok)
    return TopPrices(top["input"], top["output"], top["requests"])


MAX_COST_NANOUSD = 10**18
"""$1e9: no single record costs more; a larger computed cost means the token counts are
garbage, and storing it would overflow the 64-bit ledger columns."""


def _bounded(usd: Decimal) -> int:
    n = to_nanousd(usd)
    if n > MAX_COST_NANOUSD:
        raise ValueError(
            f"computed cost ${usd:.2f} exceeds $1e9 for one record: implausible counts"
        )
    return n
