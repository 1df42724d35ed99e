"""A flush and a forget running at the same time never leave the user's id behind.

`metis.identity.forgotten` locks the rows of the users a write-behind flush
writes for before it reads ``forgotten_at``; `forget_user` updates the user row
first. Whichever transaction comes second sees the other's work, so in both
orders the stored rows end up without the user's id. The threads below make
each order happen (the second transaction waits on the first one's lock).
"""

import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from metis.analytics.privacy import forget_user
from metis.db.tables import usage_records
from metis.identity.forgotten import pseudonyms_for_forgotten
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import upsert_usage
from tests.plugins.identity import make_key


def _rec(ws: str, uid: str, key: str) -> UsageRecord:
    at = datetime.now(UTC)
    return UsageRecord(
        workspace_id=ws, source="gateway", source_ref="k", dedupe_key=key, window_start=at,
        window_end=at, granularity="request", provider="openai", model="gpt-4o",
        model_raw="gpt-4o", input_tokens=1, request_count=1, cost_nanousd=1, user_id=uid,
    )  # fmt: skip


def _flush(
    engine: Engine,
    ws: str,
    uid: str,
    key: str,
    hold: threading.Event | None,
    written: threading.Event | None = None,
) -> None:
    """What the writer does: lock/map the users, write the record; then, holding the
    transaction open, say so (``written``) and wait for ``hold``."""
    with engine.begin() as conn:
        gone = pseudonyms_for_forgotten(conn, [uid])
        upsert_usage(conn, [_rec(ws, gone.get(uid, uid), key)])
        if written is not None:
            written.set()
        if hold is not None:
            hold.wait(30)


def _stored_ids(engine: Engine) -> set[Any]:
    with engine.connect() as c:
        return set(c.execute(select(usage_records.c.user_id)).scalars())


def test_flush_first_then_forget(engine: Engine) -> None:
    k = make_key(engine, user="ann")
    assert k.user_id is not None
    release, written = threading.Event(), threading.Event()
    flusher = threading.Thread(
        target=_flush, args=(engine, k.workspace_id, k.user_id, "r1", release, written)
    )
    flusher.start()
    assert written.wait(30)  # the flush holds its lock, its row written, not committed
    forgot: list[dict[str, Any]] = []

    def forget() -> None:
        with engine.begin() as conn:
            forgot.append(forget_user(conn, k.user_id or ""))

    f = threading.Thread(target=forget)
    f.start()
    f.join(0.5)  # the forget waits for the flush's lock while it holds it
    release.set()
    flusher.join(30)
    f.join(30)
    assert not flusher.is_alive() and not f.is_alive()
    assert k.user_id not in _stored_ids(engine)
    assert forgot[0]["usage_records_pseudonymized"] == 1


def test_forget_first_then_flush(engine: Engine) -> None:
    k = make_key(engine, user="bea")
    assert k.user_id is not None
    done = threading.Event()
    result: list[dict[str, Any]] = []

    def forget() -> None:
        with engine.begin() as conn:
            result.append(forget_user(conn, k.user_id or ""))
            done.wait(30)  # keep the forget's transaction (and its lock) open

    f = threading.Thread(target=forget)
    f.start()
    while not result and f.is_alive():
        f.join(0.05)
    flusher = threading.Thread(target=_flush, args=(engine, k.workspace_id, k.user_id, "r2", None))
    flusher.start()
    flusher.join(0.5)  # the flush waits for the forget's lock
    done.set()
    f.join(30)
    flusher.join(30)
    assert not flusher.is_alive() and not f.is_alive()
    ids = _stored_ids(engine)
    assert k.user_id not in ids and len(ids) == 1 and next(iter(ids)).startswith("usr_")


def test_a_forgotten_users_capped_counter_grants_nothing(engine: Engine) -> None:
    """Another gateway process may still hold the user's key for a poll interval: its lease
    request neither recreates a counter under the user's id nor grants budget."""
    import asyncio

    import pytest

    from metis.db.tables import spend_counters
    from metis.ledger.counters import CapExceeded, Delta, SpendCounters, scopes_for

    k = make_key(engine, user="cyd")
    assert k.user_id is not None
    with engine.begin() as conn:
        forget_user(conn, k.user_id)
    now = datetime.now(UTC)
    caps = [
        s
        for s in scopes_for(
            key_id=k.key_id,
            user_id=k.user_id,
            team_id=None,
            key_daily_cap=None,
            user_daily_cap=10**9,
            team_daily_cap=None,
            team_monthly_cap=None,
            now=now,
        )
        if s.scope == "user_daily"
    ]
    counters = SpendCounters(engine)
    counters._deltas[caps[0].key] = Delta(spent=5)  # spend settled before the forget

    async def go() -> None:
        with pytest.raises(CapExceeded):
            await counters.reserve(caps, 1000)

    asyncio.run(go())
    with engine.connect() as c:
        rows = c.execute(select(spend_counters.c.scope_id, spend_counters.c.spent_nanousd)).all()
    assert [r.spent_nanousd for r in rows] == [5] and rows[0].scope_id != k.user_id
