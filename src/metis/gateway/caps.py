"""Worst-case cost estimates for admission, and the counters a principal charges.

A request reserves, before any upstream call, the most it can cost: every
byte of the request body counted as one input token (a token is at least one
byte of text, so this bounds the prompt), plus ``max_tokens`` (or
``max_completion_tokens``; `DEFAULT_MAX_OUTPUT` when the client gave none) at
the model's output price. Prices per token come from the model's price for
one million tokens, which is its highest tier. The reservation is settled to
the real cost when the call ends (see `metis.ledger.counters`).

Unknown price: a model genai-prices has no price for cannot be estimated.
If any hard cap applies to the principal the request is refused with 403
``permission_error`` (fail closed: an unpriced call must never slip past a
budget as $0); without caps it is forwarded and recorded with
``cost_source = none`` and counted in ``unpriced_calls``.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from metis import prices_file
from metis.ledger.counters import ScopedCap, scopes_for
from metis.pricing import price

DEFAULT_MAX_OUTPUT = 4096
_MTOK = 1_000_000


def per_mtok(provider: str | None, model: str, name: str | None = None) -> tuple[int, int] | None:
    """(input, output) nano-USD per million tokens at the top tier; None if unpriced.

    ``provider`` is the genai-prices id, ``name`` the Metis provider name the prices
    file is keyed by (`metis.pricing.price`)."""
    f = prices_file.current()
    return _per_mtok(provider, model, name, f.version if f is not None else None)


@functools.lru_cache(maxsize=4096)
def _per_mtok(
    provider: str | None, model: str, name: str | None, file_version: str | None
) -> tuple[int, int] | None:
    pin = price(provider, model, input_tokens=_MTOK, name=name)
    if pin.cost_nanousd is None:
        return None
    pout = price(provider, model, output_tokens=_MTOK, name=name)
    return pin.cost_nanousd, pout.cost_nanousd or 0


def estimate(
    provider: str | None, model: str, body_len: int, max_output: int, *, name: str | None = None
) -> int | None:
    """Worst-case nano-USD for a request, or None when the model has no price."""
    p = per_mtok(provider, model, name)
    if p is None:
        return None
    n = body_len * p[0] + max_output * p[1]
    return -(-n // _MTOK)  # round up


def max_output_tokens(body: Any, endpoint: str) -> int:
    """The output bound a request declares (``body``: anything with the two attributes)."""
    if endpoint == "embeddings":
        return 0
    for v in (body.max_completion_tokens, body.max_tokens):
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return DEFAULT_MAX_OUTPUT


_scopes: dict[tuple[int, int], tuple[Any, list[ScopedCap]]] = {}


def counters_for(snap: Any, now: datetime) -> list[ScopedCap]:
    """The spend counters a key's requests charge, with the snapshot's caps.

    Cached per (snapshot object, UTC day): a reloaded snapshot (cap change) is
    a new object, so it never sees a stale entry.
    """
    k = (id(snap), int(now.timestamp()) // 86400)
    hit = _scopes.get(k)
    if hit is not None and hit[0] is snap:
        return hit[1]
    if len(_scopes) > 100_000:
        _scopes.clear()
    out = _scopes_for(snap, now)
    _scopes[k] = (snap, out)
    return out


def _scopes_for(snap: Any, now: datetime) -> list[ScopedCap]:
    return scopes_for(
        key_id=snap.key_id,
        user_id=snap.user_id,
        team_id=snap.team_id,
        key_daily_cap=snap.daily_cap_nanousd,
        user_daily_cap=getattr(snap, "user_daily_cap_nanousd", None),
        team_daily_cap=getattr(snap, "team_daily_cap_nanousd", None),
        team_monthly_cap=getattr(snap, "team_monthly_cap_nanousd", None),
        user_monthly_cap=getattr(snap, "user_monthly_cap_nanousd", None),
        now=now,
    )
