"""Spend counters for hard caps: in memory on the hot path, leased from the database.

Each counter is keyed ``(scope, scope_id, period)`` with scope ``key_daily``,
``user_daily``, ``user_monthly``, ``team_daily`` or ``team_monthly`` and period ``YYYY-MM-DD`` /
``YYYY-MM`` (UTC). The ``spend_counters`` row holds ``spent_nanousd`` (settled
spend of every gateway process) and ``reserved_nanousd`` (cap budget currently
*leased* to gateway processes and not yet spent).

Admission (hot path, no database round trip while a lease lasts)
    A process holds, per capped counter, a lease ``L`` (budget it took from the
    row's headroom) and its in-flight reservations ``c``. A request reserves its
    worst-case cost ``est`` (prompt size and ``max_tokens`` at the model's
    price) and is admitted while ``c < L`` -- the same "admit while under the
    cap" rule the spec states for the running total. Only when ``c >= L`` does
    the process ask the database for more lease, in one short transaction that
    locks the row, reads ``headroom = cap - spent - reserved`` and grants
    ``min(headroom, max(cap/16, 4*est))``; ``headroom <= 0`` refuses (429).
    Leases are therefore large when a cap is far away (one grant serves
    thousands of requests) and small near it.

Settle / release
    On completion the real cost ``a`` converts lease into spend: in memory at
    once, and in the database at the next write-behind flush (``spent += a``,
    ``reserved -= min(a, L)``), in the same transaction as the usage record. A
    failed call releases its reservation (nothing is spent).

Overshoot bound (documented, tested)
    Each process admits a request only while its in-flight reservations are
    below its lease, and the leases of all processes never exceed the cap's
    headroom, so the settled spend of a counter exceeds its cap by at most
    **one worst-case reservation per gateway process** (P processes: P x the
    largest single reservation). Reservations are worst cases, so real spend
    is usually lower.

Sharing and restarts
    Several processes on one PostgreSQL share the row: grants are serialized
    by its row lock, so no process sees a stale total when it matters. The
    in-memory ``spent`` view used for reporting (soft caps, 429 bodies) is
    refreshed from the database every `REFRESH_INTERVAL_S` (1 s). Spend
    survives restarts because it is in the row; on graceful shutdown unused
    leases are returned. A process that crashes leaks at most its unused lease
    per counter (<= cap/16 or 4 reservations) into ``reserved`` until that
    period ends -- a refusal slightly early, never an overshoot.

A cap change (lower or higher) drops the lease taken under the old cap and
re-grants under the new one at the next request for that counter.

Database unavailable
    A grant that fails with a database error raises `CountersUnavailable`,
    and further grants fail at once for `GRANT_RETRY_S` (no connect timeout
    per request while the database is down). The gateway applies
    ``METIS_CAPS_ON_DB_ERROR``: ``closed`` refuses (503), ``open`` admits with
    ``reserve(..., leased=False)`` -- the reservation is settled as usual and its spend
    reaches the row when the write-behind can write again, but it was not
    covered by a lease, so the overshoot bound does not hold during the outage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from metis.alerts.engine import check_budget_crossings
from metis.db.tables import spend_counters
from metis.identity.forgotten import pseudonyms_for_forgotten
from metis.timeutil import day_key, month_key, utcnow

Scope = Literal["key_daily", "user_daily", "user_monthly", "team_daily", "team_monthly"]
CounterKey = tuple[str, str, str]  # (scope, scope_id, period)

REFRESH_INTERVAL_S = 1.0
"""How often each process re-reads settled spend (reporting view only)."""

LEASE_FRACTION = 16
"""A grant is at most cap/16 (or four reservations, whichever is larger)."""

GRANT_RETRY_S = 1.0
"""After a grant failed on a database error, grants fail at once for this long."""


class CapExceeded(Exception):
    """A hard cap refused the request (mapped to a 429 by the gateway)."""

    def __init__(self, scope: str, limit_nanousd: int, current_nanousd: int, resets_at: datetime):
        super().__init__(f"{scope} cap reached")
        self.scope = scope
        self.limit_nanousd = limit_nanousd
        self.current_nanousd = current_nanousd
        self.resets_at = resets_at


class CountersUnavailable(Exception):
    """A lease grant needed the database and it failed (see METIS_CAPS_ON_DB_ERROR)."""


@dataclass(frozen=True, slots=True)
class ScopedCap:
    """One counter a request charges, with its cap (None = tracked, not capped)."""

    scope: str
    scope_id: str
    period: str
    cap_nanousd: int | None
    resets_at: datetime
    key: CounterKey = field(init=False, repr=False, compare=False)
    """(scope, scope_id, period): built once, read several times per request."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.scope, self.scope_id, self.period))


def _next_day(now: datetime) -> datetime:
    d = now.astimezone(UTC).date() + timedelta(days=1)
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


def _next_month(now: datetime) -> datetime:
    n = now.astimezone(UTC)
    return datetime(n.year + (n.month == 12), n.month % 12 + 1, 1, tzinfo=UTC)


def scopes_for(
    *,
    key_id: str | None,
    user_id: str | None,
    team_id: str | None,
    key_daily_cap: int | None,
    user_daily_cap: int | None,
    team_daily_cap: int | None,
    team_monthly_cap: int | None,
    now: datetime,
    user_monthly_cap: int | None = None,
) -> list[ScopedCap]:
    """The counters a request by this principal charges (UTC day / month)."""
    day, month = day_key(now), month_key(now)
    nd, nm = _next_day(now), _next_month(now)
    out: list[ScopedCap] = []
    if key_id:
        out.append(ScopedCap("key_daily", key_id, day, key_daily_cap, nd))
    if user_id:
        out.append(ScopedCap("user_daily", user_id, day, user_daily_cap, nd))
        out.append(ScopedCap("user_monthly", user_id, month, user_monthly_cap, nm))
    if team_id:
        out.append(ScopedCap("team_daily", team_id, day, team_daily_cap, nd))
        out.append(ScopedCap("team_monthly", team_id, month, team_monthly_cap, nm))
    return out


@dataclass(slots=True)
class _Counter:
    lease: int = 0  # budget leased from the row and not yet spent
    lease_cap: int | None = None  # the cap the lease was granted under
    inflight: int = 0  # reservations of in-flight requests
    db_spent: int = 0  # settled spend as of the last refresh/grant
    local_spent: int = 0  # settled here, not yet flushed
    lock: asyncio.Lock | None = None


@dataclass(slots=True)
class Reservation:
    """What `SpendCounters.reserve` took; hand it to `settle` or `release` exactly once."""

    caps: tuple[ScopedCap, ...]
    est_nanousd: int
    done: bool = False


@dataclass(slots=True)
class Delta:
    """A pending change to one row: applied by the write-behind flush."""

    spent: int = 0
    reserved: int = 0


@dataclass
class SpendCounters:
    """The process's counters. Create one per gateway process (event loop)."""

    engine: Engine
    _c: dict[CounterKey, _Counter] = field(default_factory=dict)
    _deltas: dict[CounterKey, Delta] = field(default_factory=dict)
    grants: int = 0  # database grant transactions (for tests/metrics)
    _grants_blocked_until: float = 0.0

    # -- hot path ---------------------------------------------------------
    async def reserve(
        self, caps: Sequence[ScopedCap], est_nanousd: int, *, leased: bool = True
    ) -> Reservation:
        """Reserve ``est_nanousd`` on every counter; raise `CapExceeded` if a cap refuses.

        No database round trip unless a capped counter's lease is used up.
        ``leased=False`` admits without checking or taking leases (fail-open
        while the database is unavailable): settled like any reservation, its
        spend reaches the rows with the write-behind once the database is back.
        """
        taken: list[ScopedCap] = []
        try:
            for sc in caps:
                ctr = self._c.get(sc.key)
                if ctr is None:
                    ctr = self._c[sc.key] = _Counter()
                if leased and sc.cap_nanousd is not None:
                    if ctr.inflight >= ctr.lease or ctr.lease_cap != sc.cap_nanousd:
                        await self._grant(sc, ctr, est_nanousd)
                elif leased and ctr.lease > 0:  # the cap was removed: return its lease
                    self._deltas.setdefault(sc.key, Delta()).reserved -= ctr.lease
                    ctr.lease, ctr.lease_cap = 0, None
                ctr.inflight += est_nanousd
                taken.append(sc)
        except BaseException:
            for sc in taken:
                self._c[sc.key].inflight -= est_nanousd
            raise
        return Reservation(tuple(caps), est_nanousd)

    def settle(self, res: Reservation, actual_nanousd: int) -> None:
        """Convert the reservation into real spend (``actual_nanousd`` >= 0)."""
        if res.done:
            return
        res.done = True
        for sc in res.caps:
            key = sc.key
            ctr = self._c.get(key)
            if ctr is None:  # (no setdefault: it would build a _Counter on every call)
                ctr = self._c[key] = _Counter()
            ctr.inflight -= res.est_nanousd
            before = ctr.db_spent + ctr.local_spent
            ctr.local_spent += actual_nanousd
            if sc.cap_nanousd is not None and actual_nanousd > 0:
                # Soft alerts at 80/95/100% (issue 12): integer compares plus, on a
                # crossing, an in-memory append; recorded and sent off the hot path.
                check_budget_crossings(
                    sc.scope,
                    sc.scope_id,
                    sc.period,
                    before,
                    before + actual_nanousd,
                    sc.cap_nanousd,
                )
            d = self._deltas.get(key)
            if d is None:
                d = self._deltas[key] = Delta()
            d.spent += actual_nanousd
            if sc.cap_nanousd is not None and ctr.lease > 0:
                used = min(actual_nanousd, ctr.lease)
                ctr.lease -= used
                d.reserved -= used

    def release(self, res: Reservation) -> None:
        """Give the reservation back (the call failed before costing anything)."""
        if res.done:
            return
        res.done = True
        for sc in res.caps:
            self._c[sc.key].inflight -= res.est_nanousd

    def spent(self, key: CounterKey) -> int:
        """Settled spend of a counter as this process knows it (refreshed each second)."""
        ctr = self._c.get(key)
        return 0 if ctr is None else ctr.db_spent + ctr.local_spent

    # -- write-behind ------------------------------------------------------
    def take_deltas(self) -> dict[CounterKey, Delta]:
        """Hand pending row changes to the writer (which applies them in its flush)."""
        out, self._deltas = self._deltas, {}
        return out

    def deltas_applied(self, deltas: dict[CounterKey, Delta]) -> None:
        """The writer committed these: move local spend into the database view."""
        for key, d in deltas.items():
            ctr = self._c.get(key)
            if ctr is not None:
                ctr.local_spent -= d.spent
                ctr.db_spent += d.spent

    def restore_deltas(self, deltas: dict[CounterKey, Delta]) -> None:
        """The writer failed to commit these; keep them for the next flush."""
        for key, d in deltas.items():
            cur = self._deltas.setdefault(key, Delta())
            cur.spent += d.spent
            cur.reserved += d.reserved

    def return_leases(self) -> None:
        """Queue every unused lease for return (graceful shutdown)."""
        for key, ctr in self._c.items():
            if ctr.lease > 0 and ctr.inflight <= 0:
                self._deltas.setdefault(key, Delta()).reserved -= ctr.lease
                ctr.lease = 0
                ctr.lease_cap = None

    async def preload(self, now: datetime | None = None) -> int:
        """Learn the settled spend of every counter of the current UTC day and month.

        Called once at gateway start (by the routing install): soft-cap routing
        predicates read `spent` of users/teams this process has not served yet,
        e.g. right after a restart. Returns the number of counters loaded.
        """
        now = now or utcnow()
        rows = await asyncio.to_thread(_read_periods, self.engine, (day_key(now), month_key(now)))
        for key, spent in rows.items():
            ctr = self._c.get(key)
            if ctr is None:
                ctr = self._c[key] = _Counter()
            ctr.db_spent = spent
        return len(rows)

    async def refresh(self) -> None:
        """Re-read settled spend of the counters this process knows."""
        keys = list(self._c)
        if not keys:
            return
        rows = await asyncio.to_thread(_read_rows, self.engine, keys)
        for key, (spent, _reserved) in rows.items():
            ctr = self._c.get(key)
            if ctr is not None:
                ctr.db_spent = spent

    # -- grants ------------------------------------------------------------
    async def _grant(self, sc: ScopedCap, ctr: _Counter, est: int) -> None:
        if ctr.lock is None:
            ctr.lock = asyncio.Lock()
        async with ctr.lock:
            cap = sc.cap_nanousd
            assert cap is not None
            if ctr.lease_cap == cap and ctr.inflight < ctr.lease:
                return  # another request's grant covered us meanwhile
            if time.monotonic() < self._grants_blocked_until:
                raise CountersUnavailable("the database is unavailable (a grant just failed)")
            # Pending changes to this row go in the grant's transaction so the
            # headroom it reads counts them.
            pending = self._deltas.pop(sc.key, Delta())
            give_back = ctr.lease if ctr.lease_cap != cap else 0
            pending.reserved -= give_back
            want = max(cap // LEASE_FRACTION, 4 * est, 1)
            try:
                granted, spent = await asyncio.to_thread(
                    _grant_tx, self.engine, sc.key, cap, want, pending
                )
            except BaseException as exc:
                pending.reserved += give_back
                self.restore_deltas({sc.key: pending})
                if isinstance(exc, DBAPIError):
                    self._grants_blocked_until = time.monotonic() + GRANT_RETRY_S
                    raise CountersUnavailable("the database is unavailable") from exc
                raise
            self.grants += 1
            ctr.local_spent -= pending.spent
            ctr.db_spent = spent
            ctr.lease -= give_back
            ctr.lease_cap = cap
            ctr.lease += granted
            # Spend settled here while the grant ran is not in the row yet (its delta
            # was queued after ``pending`` was taken): a small grant must not admit a
            # request once the spend this process knows of has reached the cap, or
            # two worst-case reservations could overshoot it (tests/gateway/test_worst_case.py).
            if spent + ctr.local_spent >= cap and ctr.lease > 0:
                # and the lease goes back, or the next request would be admitted on it
                self._deltas.setdefault(sc.key, Delta()).reserved -= ctr.lease
                ctr.lease = 0
            if ctr.inflight >= ctr.lease:
                raise CapExceeded(sc.scope, cap, spent + ctr.local_spent, sc.resets_at)


# -- database helpers (run in a worker thread) -------------------------------


_UPSERT: dict[str, Any] = {}


def _upsert_stmt(conn: Connection) -> Any:
    """Add to a counter row (creating it); built once per dialect, run with row dicts."""
    dialect = conn.engine.dialect.name
    stmt = _UPSERT.get(dialect)
    if stmt is None:
        mod: Any = postgresql if dialect == "postgresql" else sqlite
        ins = mod.insert(spend_counters)
        stmt = _UPSERT[dialect] = ins.on_conflict_do_update(
            index_elements=["scope", "scope_id", "period"],
            set_={
                "spent_nanousd": spend_counters.c.spent_nanousd + ins.excluded.spent_nanousd,
                "reserved_nanousd": spend_counters.c.reserved_nanousd
                + ins.excluded.reserved_nanousd,
                "updated_at": ins.excluded.updated_at,
            },
        )
    return stmt


def apply_deltas(conn: Connection, deltas: dict[CounterKey, Delta]) -> None:
    """Add the deltas to their rows (creating rows), inside the caller's transaction."""
    now = utcnow()
    rows = [
        {
            "scope": k[0],
            "scope_id": k[1],
            "period": k[2],
            "spent_nanousd": d.spent,
            "reserved_nanousd": d.reserved,
            "updated_at": now,
        }
        for k, d in sorted(deltas.items())  # fixed order: no deadlocks between processes
        if d.spent or d.reserved
    ]
    if rows:
        conn.execute(_upsert_stmt(conn), rows)  # in order: no deadlocks between processes


def _grant_tx(
    engine: Engine, key: CounterKey, cap: int, want: int, pending: Delta
) -> tuple[int, int]:
    """Apply ``pending``, lock the row, grant up to ``want`` of its headroom.

    Returns (granted, spent). Granted is 0 when the row has no headroom.
    """
    with engine.begin() as conn:
        # A forgotten user's counter is never written under their id again (a
        # request through another gateway process before it dropped their keys):
        # pending spend goes to a pseudonym, and no budget is granted.
        gone = {}
        if key[0] in ("user_daily", "user_monthly"):
            gone = pseudonyms_for_forgotten(conn, [key[1]])
        # One upsert applies the pending change and makes sure the row exists
        # (on SQLite it also takes the write lock before the read below).
        conn.execute(
            _upsert_stmt(conn),
            [
                {
                    "scope": key[0],
                    "scope_id": gone.get(key[1], key[1]),
                    "period": key[2],
                    "spent_nanousd": pending.spent,
                    "reserved_nanousd": pending.reserved,
                    "updated_at": utcnow(),
                }
            ],
        )
        if gone:
            return 0, 0
        cond = and_(
            spend_counters.c.scope == key[0],
            spend_counters.c.scope_id == key[1],
            spend_counters.c.period == key[2],
        )
        q = select(spend_counters.c.spent_nanousd, spend_counters.c.reserved_nanousd).where(cond)
        if engine.dialect.name == "postgresql":
            q = q.with_for_update()
        spent, reserved = conn.execute(q).one()
        headroom = cap - int(spent) - int(reserved)
        granted = max(0, min(headroom, want))
        if granted:
            conn.execute(
                spend_counters.update()
                .where(cond)
                .values(reserved_nanousd=spend_counters.c.reserved_nanousd + granted)
            )
        return granted, int(spent)


def _read_rows(engine: Engine, keys: Iterable[CounterKey]) -> dict[CounterKey, tuple[int, int]]:
    keys = list(keys)
    out: dict[CounterKey, tuple[int, int]] = {}
    with engine.connect() as conn:
        for i in range(0, len(keys), 300):
            chunk = keys[i : i + 300]
            q = select(
                spend_counters.c.scope,
                spend_counters.c.scope_id,
                spend_counters.c.period,
                spend_counters.c.spent_nanousd,
                spend_counters.c.reserved_nanousd,
            ).where(
                tuple_(
                    spend_counters.c.scope, spend_counters.c.scope_id, spend_counters.c.period
                ).in_(chunk)
            )
            for s, sid, p, spent, reserved in conn.execute(q):
                out[(s, sid, p)] = (int(spent), int(reserved))
    return out


def _read_periods(engine: Engine, periods: Sequence[str]) -> dict[CounterKey, int]:
    q = select(
        spend_counters.c.scope,
        spend_counters.c.scope_id,
        spend_counters.c.period,
        spend_counters.c.spent_nanousd,
    ).where(spend_counters.c.period.in_(list(periods)))
    with engine.connect() as conn:
        return {(s, sid, p): int(spent) for s, sid, p, spent in conn.execute(q)}


def read_counter(conn: Connection, key: CounterKey) -> tuple[int, int]:
    """(spent, reserved) of one row; (0, 0) when absent. For tests and reports."""
    row = conn.execute(
        select(spend_counters.c.spent_nanousd, spend_counters.c.reserved_nanousd).where(
            spend_counters.c.scope == key[0],
            spend_counters.c.scope_id == key[1],
            spend_counters.c.period == key[2],
        )
    ).one_or_none()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


__all__ = [
    "REFRESH_INTERVAL_S",
    "CapExceeded",
    "CounterKey",
    "CountersUnavailable",
    "Delta",
    "Reservation",
    "ScopedCap",
    "SpendCounters",
    "apply_deltas",
    "read_counter",
    "scopes_for",
    "utcnow",
]
