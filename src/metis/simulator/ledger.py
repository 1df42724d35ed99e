"""The simulator's ground truth: every call it served (and its synthetic history).

Each `Call` is what the provider would bill: who (api key id, project or
workspace), what (model, endpoint kind), when (unix seconds), and the tokens in
Metis's canonical semantics (``input_tokens`` counts every input token, cache
reads and writes included; ``output_tokens`` includes reasoning). The admin
usage and cost endpoints aggregate these calls, and ``GET /_sim/ground_truth``
sums them exactly.

Cost is priced with `metis.pricing.price` (genai-prices) at the call's
timestamp (Anthropic cache writes with the 1-hour TTL at their own price),
lazily (first time a report needs it) so serving stays fast. The
cost is also split into parts per token type (for OpenAI ``line_item`` and
Anthropic ``token_type`` cost rows): each part is priced on its own and any
nano-USD rounding difference is moved into the largest part, so the parts
always sum exactly to the call's total.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from metis.money import from_nanousd
from metis.pricing import price

# Canonical cost parts (token types).
PART_UNCACHED = "uncached_input"
PART_CACHE_READ = "cache_read"
PART_CACHE_WRITE_5M = "cache_write_5m"
PART_CACHE_WRITE_1H = "cache_write_1h"
PART_OUTPUT = "output"
PARTS = (PART_UNCACHED, PART_CACHE_READ, PART_CACHE_WRITE_5M, PART_CACHE_WRITE_1H, PART_OUTPUT)


@dataclass(slots=True)
class Call:
    """One billed call (``requests`` > 1 only for aggregated history entries)."""

    provider: str
    kind: str  # "completions" | "embeddings" | "messages"
    ts: int
    api_key_id: str
    model: str
    input_tokens: int
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    reasoning_tokens: int = 0
    requests: int = 1
    project_id: str | None = None
    user_id: str | None = None
    workspace_id: str | None = None
    service_tier: str = "default"
    batch: bool = False
    response_id: str | None = None
    origin: str = "served"
    _cost: int | None = None
    _parts: dict[str, int] | None = field(default=None)

    @property
    def cache_creation_input_tokens(self) -> int:
        return self.cache_write_5m + self.cache_write_1h

    @property
    def uncached_input_tokens(self) -> int:
        return self.input_tokens - self.cached_input_tokens - self.cache_creation_input_tokens

    @property
    def cost_nanousd(self) -> int:
        if self._cost is None:
            self._cost = _price(
                self,
                self.input_tokens,
                self.output_tokens,
                self.cached_input_tokens,
                self.cache_creation_input_tokens,
                self.reasoning_tokens,
                self.cache_write_1h,
            )
        return self._cost

    def cost_parts(self) -> dict[str, int]:
        """Nano-USD per token type; sums exactly to `cost_nanousd`."""
        if self._parts is None:
            c = self
            parts = {
                PART_UNCACHED: _price(c, c.uncached_input_tokens, 0, 0, 0, 0),
                PART_CACHE_READ: _price(c, c.cached_input_tokens, 0, c.cached_input_tokens, 0, 0),
                PART_CACHE_WRITE_5M: _price(c, c.cache_write_5m, 0, 0, c.cache_write_5m, 0),
                PART_CACHE_WRITE_1H: _price(
                    c, c.cache_write_1h, 0, 0, c.cache_write_1h, 0, c.cache_write_1h
                ),
                PART_OUTPUT: _price(c, 0, c.output_tokens, 0, 0, c.reasoning_tokens),
            }
            diff = self.cost_nanousd - sum(parts.values())
            if diff:
                biggest = max(parts, key=lambda k: parts[k])
                parts[biggest] += diff
            self._parts = parts
        return self._parts

    def part_tokens(self) -> dict[str, int]:
        return {
            PART_UNCACHED: self.uncached_input_tokens,
            PART_CACHE_READ: self.cached_input_tokens,
            PART_CACHE_WRITE_5M: self.cache_write_5m,
            PART_CACHE_WRITE_1H: self.cache_write_1h,
            PART_OUTPUT: self.output_tokens,
        }


def _price(
    c: Call, inp: int, out: int, cached: int, created: int, reasoning: int, created_1h: int = 0
) -> int:
    if inp == 0 and out == 0:
        return 0
    p = price(
        c.provider,
        c.model,
        input_tokens=inp,
        output_tokens=out,
        cached_input_tokens=cached,
        cache_creation_input_tokens=created,
        reasoning_tokens=reasoning,
        cache_write_1h_tokens=created_1h,
        at=datetime.fromtimestamp(c.ts, UTC),
    )
    # Served models are checked with has_price before serving; history uses priced models.
    return p.cost_nanousd or 0


_SUM_FIELDS = (
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def _zero() -> dict[str, int]:
    return dict.fromkeys((*_SUM_FIELDS, "cost_nanousd"), 0)


def _add(acc: dict[str, int], c: Call) -> None:
    acc["requests"] += c.requests
    acc["input_tokens"] += c.input_tokens
    acc["cached_input_tokens"] += c.cached_input_tokens
    acc["cache_creation_input_tokens"] += c.cache_creation_input_tokens
    acc["output_tokens"] += c.output_tokens
    acc["reasoning_tokens"] += c.reasoning_tokens
    acc["cost_nanousd"] += c.cost_nanousd


def _with_usd(acc: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = dict(acc)
    out["cost_usd"] = usd_str(acc["cost_nanousd"])
    return out


class Ledger:
    """In-memory list of billed calls. Single event loop: no locking needed."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def add(self, call: Call) -> None:
        self.calls.append(call)

    def clear(self) -> None:
        self.calls.clear()

    def select(self, provider: str, kinds: tuple[str, ...]) -> list[Call]:
        return [c for c in self.calls if c.provider == provider and c.kind in kinds]

    def ground_truth(self, origin: str | None = None) -> dict[str, Any]:
        """Exact totals: overall, per provider, and per (provider, key, model, day, kind).

        Tokens are canonical (see module doc). ``cost_nanousd`` is an integer,
        ``cost_usd`` the same amount as an exact decimal string.
        """
        rows: dict[tuple[str, str, str, str, str], dict[str, int]] = defaultdict(_zero)
        per_provider: dict[str, dict[str, int]] = defaultdict(_zero)
        total = _zero()
        for c in self.calls:
            if origin is not None and c.origin != origin:
                continue
            day = datetime.fromtimestamp(c.ts, UTC).strftime("%Y-%m-%d")
            _add(rows[(c.provider, c.api_key_id, c.model, day, c.kind)], c)
            _add(per_provider[c.provider], c)
            _add(total, c)
        return {
            "total": _with_usd(total),
            "providers": {p: _with_usd(v) for p, v in sorted(per_provider.items())},
            "rows": [
                {
                    "provider": k[0],
                    "api_key_id": k[1],
                    "model": k[2],
                    "day": k[3],
                    "kind": k[4],
                    **_with_usd(v),
                }
                for k, v in sorted(rows.items())
            ],
        }

    def call_list(self, origin: str | None = None) -> list[dict[str, Any]]:
        """Every call (newest last) with its ids, tokens and cost, for tests."""
        out = []
        for c in self.calls:
            if origin is not None and c.origin != origin:
                continue
            out.append(
                {
                    "provider": c.provider,
                    "kind": c.kind,
                    "ts": c.ts,
                    "api_key_id": c.api_key_id,
                    "project_id": c.project_id,
                    "workspace_id": c.workspace_id,
                    "model": c.model,
                    "response_id": c.response_id,
                    "origin": c.origin,
                    "requests": c.requests,
                    "input_tokens": c.input_tokens,
                    "cached_input_tokens": c.cached_input_tokens,
                    "cache_creation_input_tokens": c.cache_creation_input_tokens,
                    "output_tokens": c.output_tokens,
                    "reasoning_tokens": c.reasoning_tokens,
                    "cost_nanousd": c.cost_nanousd,
                    "cost_usd": usd_str(c.cost_nanousd),
                }
            )
        return out


def usd_json_number(nanos: int) -> msgspec.Raw:
    """Exact dollars of a nano-USD amount as a raw JSON number in plain notation.

    (A Decimal would be encoded like ``4.0E-8``; real APIs write ``0.00000004``.)
    """
    d = from_nanousd(nanos).normalize()
    return msgspec.Raw(format(d, "f").encode())


def usd_str(nanos: int) -> str:
    """Exact USD decimal string with nine places, never in exponent form."""
    return format(from_nanousd(nanos), "f")
