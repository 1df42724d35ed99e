"""Model ids the gateway can list for a provider (``GET /v1/models`` without an allow-list)."""

from __future__ import annotations

import functools

from genai_prices import data_snapshot


@functools.lru_cache(maxsize=8)
def known_models(provider: str) -> tuple[str, ...]:
    """Every model id genai-prices prices for ``provider`` (sorted)."""
    for p in data_snapshot.get_snapshot().providers:
        if p.id == provider:
            return tuple(sorted(m.id for m in p.models))
    return ()
