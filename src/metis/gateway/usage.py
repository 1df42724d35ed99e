"""Provider usage objects -> canonical token counts (DESIGN.md semantics).

OpenAI chat/embeddings: ``prompt_tokens`` already includes cached tokens
(``prompt_tokens_details.cached_tokens``) and cache writes
(``cache_write_tokens``), and ``completion_tokens`` includes reasoning
(``completion_tokens_details.reasoning_tokens``): taken as is. The same
reader serves every OpenAI-compatible family member; their variants do not
conflict, so it reads them all: DeepSeek reports cache hits as
``prompt_cache_hit_tokens`` (a part of ``prompt_tokens``) without
``prompt_tokens_details``; OpenRouter states the call's price as
``usage.cost`` (USD; kept exactly as a decimal, `Tokens.stated_cost_nanousd`);
Groq streams its usage as ``x_groq.usage`` (`metis.gateway.streaming`).
Gemini: `from_gemini` (below). OpenAI
Responses API: the same semantics under other names (``input_tokens`` with
``input_tokens_details.cached_tokens`` / ``cache_write_tokens``,
``output_tokens`` with ``output_tokens_details.reasoning_tokens``).
Anthropic: ``input_tokens`` *excludes* cache reads and cache writes, so the
canonical input is ``input_tokens + cache_read_input_tokens +
cache_creation_input_tokens``; ``output_tokens`` is the (cumulative) output;
``cache_creation.ephemeral_1h_input_tokens`` is the part of the writes made
with the 1-hour TTL (``Tokens.cache_write_1h``, priced at its own rate).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from metis.money import to_nanousd


@dataclass(slots=True)
class Tokens:
    input: int = 0
    output: int = 0
    cached: int = 0
    cache_creation: int = 0
    cache_write_1h: int = 0
    """The part of ``cache_creation`` written with Anthropic's 1-hour TTL (priced at 2x
    input, against 1.25x for 5 minutes); 0 when the upstream does not split writes."""
    reasoning: int = 0
    reported: bool = False  # the upstream sent a usage object
    stated_cost_nanousd: int | None = None  # a cost the upstream stated (OpenRouter)


MAX_TOKENS = 10**15
"""Largest count taken from an upstream usage object. Larger, negative, fractional or
non-integer counts are malformed and read as 0 (as a missing count would be): the
call is still recorded, and a hostile upstream cannot push a cost beyond 64 bits."""


def count(v: Any) -> int:
    """A token count from an upstream usage object: an int in ``[0, MAX_TOKENS]``, else 0."""
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_TOKENS else 0


MAX_STATED_USD = Decimal(1_000_000)
"""Largest cost an upstream may state for one call; more (or negative, or not a number)
is malformed and ignored (the call is priced as usual)."""


def stated_cost(v: Any) -> int | None:
    """A provider-stated cost in USD (a JSON number, decoded as Decimal or float) as nano-USD."""
    if isinstance(v, bool) or not isinstance(v, int | float | Decimal):
        return None
    try:
        d = v if isinstance(v, Decimal) else Decimal(repr(v) if isinstance(v, float) else v)
    except (InvalidOperation, ValueError):
        return None
    if not d.is_finite() or d < 0 or d > MAX_STATED_USD:
        return None
    return to_nanousd(d)


def from_openai(u: Any, t: Tokens | None = None) -> Tokens:
    t = t or Tokens()
    if not isinstance(u, dict):
        return t
    t.reported = True
    t.input = count(u.get("prompt_tokens"))
    t.output = count(u.get("completion_tokens"))
    pd = u.get("prompt_tokens_details")
    if isinstance(pd, dict):
        t.cached = count(pd.get("cached_tokens"))
        t.cache_creation = count(pd.get("cache_write_tokens"))
    else:
        t.cached = t.cache_creation = 0
    if not t.cached and "prompt_cache_hit_tokens" in u:  # DeepSeek
        t.cached = count(u.get("prompt_cache_hit_tokens"))
    cd = u.get("completion_tokens_details")
    t.reasoning = count(cd.get("reasoning_tokens")) if isinstance(cd, dict) else 0
    if "cost" in u:  # OpenRouter
        t.stated_cost_nanousd = stated_cost(u.get("cost"))
    return t


def from_responses(u: Any, t: Tokens | None = None) -> Tokens:
    """Apply a Responses API usage object (a response's ``usage``)."""
    t = t or Tokens()
    if not isinstance(u, dict):
        return t
    t.reported = True
    t.input = count(u.get("input_tokens"))
    t.output = count(u.get("output_tokens"))
    d = u.get("input_tokens_details")
    if isinstance(d, dict):
        t.cached = count(d.get("cached_tokens"))
        t.cache_creation = count(d.get("cache_write_tokens"))
    else:
        t.cached = t.cache_creation = 0
    od = u.get("output_tokens_details")
    t.reasoning = count(od.get("reasoning_tokens")) if isinstance(od, dict) else 0
    return t


def from_anthropic(u: Any, t: Tokens | None = None) -> Tokens:
    """Apply an Anthropic usage object (message, message_start or message_delta).

    Fields present in ``u`` replace earlier values (message_delta counts are
    cumulative); absent fields keep what message_start said.
    """
    t = t or Tokens()
    if not isinstance(u, dict):
        return t
    t.reported = True
    plain = u.get("input_tokens")
    read = u.get("cache_read_input_tokens")
    write = u.get("cache_creation_input_tokens")
    if read is not None:
        t.cached = count(read)
    if write is not None:
        t.cache_creation = count(write)
    split = u.get("cache_creation")  # {"ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"}
    if isinstance(split, dict):
        t.cache_write_1h = count(split.get("ephemeral_1h_input_tokens"))
        if write is None:  # a split without the total: the total is its sum
            t.cache_creation = t.cache_write_1h + count(split.get("ephemeral_5m_input_tokens"))
    t.cache_write_1h = min(t.cache_write_1h, t.cache_creation)
    if plain is not None:
        t.input = count(plain) + t.cached + t.cache_creation
    elif read is not None or write is not None or isinstance(split, dict):
        t.input = max(t.input, t.cached + t.cache_creation)
    if u.get("output_tokens") is not None:
        t.output = count(u.get("output_tokens"))
    return t


def from_gemini(u: Any, t: Tokens | None = None) -> Tokens:
    """Apply a Gemini ``usageMetadata`` (an answer's, or a stream chunk's: the last one seen
    holds the totals).

    ``promptTokenCount`` includes ``cachedContentTokenCount`` (the cached part of the
    prompt); ``toolUsePromptTokenCount`` (tool results fed back) is input too;
    ``thoughtsTokenCount`` is billed as output but is not part of
    ``candidatesTokenCount``, so the canonical output is their sum and reasoning the
    thoughts.
    """
    t = t or Tokens()
    if not isinstance(u, dict):
        return t
    t.reported = True
    t.input = count(u.get("promptTokenCount")) + count(u.get("toolUsePromptTokenCount"))
    t.cached = count(u.get("cachedContentTokenCount"))
    t.cache_creation = 0
    thoughts = count(u.get("thoughtsTokenCount"))
    t.output = count(u.get("candidatesTokenCount")) + thoughts
    t.reasoning = thoughts
    return t
