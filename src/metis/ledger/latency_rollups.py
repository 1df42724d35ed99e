"""Daily latency histograms of gateway calls: ``usage_rollups_latency``.

`/analytics/reliability` reports latency percentiles per provider/model. Reading
every gateway record's ``latency_ms`` costs seconds at ten million records, so
the ledger keeps, per (UTC day, workspace, provider, model), how many gateway
calls fell in each of a fixed set of log-scale latency buckets
(DDSketch-style), and percentiles are read from those counts.

Buckets. Latencies are integer milliseconds. Bucket ``i >= 0`` holds the
latencies in ``(gamma**(i-1), gamma**i]`` with ``gamma = 101/99`` (a relative
half-width of 1%); bucket `ZERO_BUCKET` holds 0 (and any negative value,
which the gateway never writes). The bounds are computed exactly with integer
arithmetic (`_UPPER`), so every process, machine and the migration put a
latency in the same bucket. A bucket's value (`bucket_value`) is an integer
inside it whose error against any latency in the bucket is at most 1% plus
0.5 ms of rounding; buckets holding more than one integer start at 58 ms, so
every reported figure is within `RELATIVE_ERROR` (2%) of the exact
nearest-rank value (the worst bucket, 58-59 ms reported as 58, is off by
1.7%); below 58 ms each bucket holds one integer and the figure is exact.

Size, and why 1% buckets rather than 0.5%. Buckets from 10 ms to 60 s number
435; a (day, workspace, model) cell holds as many rows as it has occupied
buckets. The analytics benchmark's 10M-record ledger (3 workspaces, 8
models, 90 days, lognormal latencies spanning ~80 ms-3 s, ~3.5k calls per
cell) fills ~150 buckets per cell: ~324k rows, twice that at 0.5% buckets;
a 90-day read of 324k rows measured 77 ms on SQLite with the key order
below, 648k rows at the date-first order 680 ms. Keyed also by user, team
and key (300 keys x 8 models x 90 days, ~46 calls per cell occupying ~40
buckets) it would hold ~8.6M rows, as many as the raw records: so the
histogram has no identity dimension and `reliability` answers
identity-filtered questions from raw records (`metis.analytics.latency`).
The primary key is (workspace, provider, model, bucket, day), so summing a
window per model and bucket is one ordered pass without a sort.

Maintenance mirrors `metis.ledger.rollups`: `metis.ledger.upsert.upsert_usage`
adds, per record it inserted or changed, +1 at the new key and -1 at the
stored row's old key, in the same transaction (a replay touches nothing);
`rebuild` recomputes a date range from raw records (``metis db
rebuild-rollups``); retention deletes raw rows directly, so the histograms of
pruned days are kept like the other rollups.
"""

import bisect
import math
from collections.abc import Iterable, Mapping
from datetime import date
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, and_, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from metis.db.tables import usage_records, usage_rollups_latency

GATEWAY_SOURCE = "gateway"
# (1 + a) / (1 - a) with a = 1/100: each bucket's relative half-width is 1%.
GAMMA = Fraction(101, 99)
# The bound every figure read from the histograms keeps (see the module docstring).
RELATIVE_ERROR = Fraction(2, 100)
ZERO_BUCKET = -1
CELL = ("usage_date", "workspace_id", "provider", "model")
DIMS = (*CELL, "bucket")

LatencyKey = tuple[date, str, str, str, int]


def _upper_bounds() -> list[int]:
    """``floor(gamma**i)`` for i = 0.. until it passes the largest 32-bit latency."""
    out: list[int] = []
    num, den = 1, 1
    while not out or out[-1] < 2**31:
        out.append(num // den)
        num *= GAMMA.numerator
        den *= GAMMA.denominator
    return out


# _UPPER[i] is the largest integer latency in bucket i (a bucket may hold none).
_UPPER = _upper_bounds()


def bucket_of(latency_ms: int) -> int:
    """The bucket index of an integer latency (`ZERO_BUCKET` for 0 or less)."""
    if latency_ms <= 0:
        return ZERO_BUCKET
    return min(bisect.bisect_left(_UPPER, latency_ms), len(_UPPER) - 1)


def bucket_range(bucket: int) -> tuple[int, int]:
    """The smallest and largest integer latency of a bucket (lo > hi: it holds none)."""
    if bucket == ZERO_BUCKET:
        return 0, 0
    lo = 1 if bucket == 0 else _UPPER[bucket - 1] + 1
    return lo, _UPPER[bucket]


def bucket_value(bucket: int) -> int:
    """The figure reported for a bucket: the rounded point of least relative error."""
    lo, hi = bucket_range(bucket)
    if lo >= hi:
        return hi if lo > hi else lo
    # 2*lo*hi/(lo+hi), rounded half up, in integers.
    s = lo + hi
    return max(lo, min(hi, (4 * lo * hi + s) // (2 * s)))


def key_of(row: Mapping[Any, Any]) -> LatencyKey | None:
    """The histogram key of a usage record (None: not a gateway row, or no latency)."""
    if row["source"] != GATEWAY_SOURCE or row["latency_ms"] is None:
        return None
    return (
        row["usage_date"],
        row["workspace_id"],
        row["provider"],
        row["model"],
        bucket_of(int(row["latency_ms"])),
    )


def add(deltas: dict[LatencyKey, int], key: LatencyKey | None, sign: int) -> None:
    """Count ``sign`` calls at ``key`` (nothing for None)."""
    if key is not None:
        deltas[key] = deltas.get(key, 0) + sign


def apply_deltas(conn: Connection, deltas: Mapping[LatencyKey, int]) -> None:
    """Add call-count deltas to the histogram rows (creating them), dropping rows left at 0."""
    rows = [dict(zip(DIMS, k, strict=True)) | {"call_count": n} for k, n in deltas.items() if n]
    if not rows:
        return
    # Sorted so concurrent writers lock rows in the same order (no deadlocks).
    rows.sort(key=lambda r: tuple(str(r[d]) for d in DIMS))
    t = usage_rollups_latency
    conn.execute(_upsert_stmt(conn.dialect.name), rows)
    emptied = [k for k, n in deltas.items() if n < 0]
    if emptied:
        for i in range(0, len(emptied), 200):
            conn.execute(
                delete(t).where(
                    t.c.call_count <= 0, or_(*(_match(k) for k in emptied[i : i + 200]))
                )
            )


_UPSERTS: dict[str, Any] = {}


def _upsert_stmt(dialect: str) -> Any:
    stmt = _UPSERTS.get(dialect)
    if stmt is None:
        t = usage_rollups_latency
        ins: Any = postgresql.insert(t) if dialect == "postgresql" else sqlite.insert(t)
        stmt = _UPSERTS[dialect] = ins.on_conflict_do_update(
            index_elements=list(DIMS),
            set_={"call_count": t.c.call_count + ins.excluded.call_count},
        )
    return stmt


def _match(key: tuple[Any, ...]) -> ColumnElement[bool]:
    t = usage_rollups_latency
    return and_(*(t.c[d] == v for d, v in zip(DIMS, key, strict=False)))


def _fill(conn: Connection, where: list[ColumnElement[bool]]) -> int:
    """Insert the histogram rows of the raw gateway rows matching ``where``; returns rows."""
    r = usage_records.c
    q = (
        select(r.usage_date, r.workspace_id, r.provider, r.model, r.latency_ms, func.count())
        .where(r.source == GATEWAY_SOURCE, r.latency_ms.is_not(None), *where)
        .group_by(r.usage_date, r.workspace_id, r.provider, r.model, r.latency_ms)
    )
    counts: dict[LatencyKey, int] = {}
    # yield_per on the statement: on the connection it would stick (server-side cursors after).
    for d, ws, prov, model, ms, n in conn.execute(q.execution_options(yield_per=20000)):
        k = (d, ws, prov, model, bucket_of(int(ms)))
        counts[k] = counts.get(k, 0) + int(n)
    rows = [dict(zip(DIMS, k, strict=True)) | {"call_count": n} for k, n in counts.items()]
    for i in range(0, len(rows), 5000):
        conn.execute(usage_rollups_latency.insert(), rows[i : i + 5000])
    return len(rows)


def rebuild(conn: Connection, start: date | None, end: date | None) -> int:
    """Recompute the histograms of days ``[start, end)`` (None: unbounded) from raw records.

    `metis.ledger.rollups.rebuild` calls this with its own range, so days
    whose raw rows were pruned keep their histograms. Returns the rows written.
    """
    t, r = usage_rollups_latency.c, usage_records.c
    held: list[ColumnElement[bool]] = []
    raw: list[ColumnElement[bool]] = []
    if start is not None:
        held.append(t.usage_date >= start)
        raw.append(r.usage_date >= start)
    if end is not None:
        held.append(t.usage_date < end)
        raw.append(r.usage_date < end)
    conn.execute(delete(usage_rollups_latency).where(*held))
    return _fill(conn, raw)


def recompute_cells(conn: Connection, cells: Iterable[tuple[date, str, str, str]]) -> None:
    """Recompute the histograms of the given (day, workspace, provider, model) cells."""
    r = usage_records.c
    for cell in set(cells):
        conn.execute(delete(usage_rollups_latency).where(_match(cell)))
        _fill(conn, [r[d] == v for d, v in zip(CELL, cell, strict=True)])


def percentile(counts: Mapping[int, int], q: float) -> int | None:
    """Nearest-rank ``q`` percentile of a histogram (bucket -> calls), as `bucket_value`.

    The exact nearest-rank value of the calls counted lies in the bucket
    returned, so the figure is within `RELATIVE_ERROR` of it.
    """
    n = sum(counts.values())
    if n <= 0:
        return None
    rank = max(1, min(n, math.ceil(q * n)))
    seen = 0
    for b in sorted(counts):
        seen += counts[b]
        if seen >= rank:
            return bucket_value(b)
    return None  # pragma: no cover - seen reaches n


def highest(counts: Mapping[int, int]) -> int | None:
    """The largest latency counted, as its bucket's value (within `RELATIVE_ERROR`)."""
    held = [b for b, n in counts.items() if n > 0]
    return bucket_value(max(held)) if held else None
