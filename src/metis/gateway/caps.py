"""Worst-case cost estimates for admission, and the counters a principal charges.

A request reserves, before any upstream call, the most it can cost: its
inbound API reads the request into a `metis.gateway.worst_case.WorstCase`
(every choice, every output budget or the model's maximum output, images,
input the body does not carry, server-side tool rounds) and `estimate`
prices its token bounds at the target model's top prices
(`metis.gateway.worst_case.cost`; the table of what counts is in
docs/gateway.md "What a reservation counts"). The reservation is settled to
the real cost when the call ends (see `metis.ledger.counters`), which can
never exceed it when the provider bills what the request allows; so the
counters' bound (settled spend over a cap by at most one reservation per
process) holds for every request shape (docs/gateway.md says which tests show it).

Unknown price: a model neither genai-prices nor the prices file prices
(`metis.prices_file`) cannot be estimated.
If any hard cap applies to the principal the request is refused with 403
``permission_error`` (fail closed: an unpriced call must never slip past a
budget as $0); without caps it is forwarded and recorded with
``cost_source = none`` and counted in ``unpriced_calls``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from metis.gateway.worst_case import WorstCase, cost
from metis.ledger.counters import ScopedCap, scopes_for


def estimate(
    provider: str | None, model: str, body_len: int, wc: WorstCase, *, name: str | None = None
) -> int | None:
    """Worst-case nano-USD of a request to ``model``, or None when the model has no price.

    ``provider`` is the genai-prices id, ``name`` the Metis provider name the prices
    file is keyed by (`metis.pricing.price`)."""
    return cost(provider, model, body_len, wc, name=name)


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
