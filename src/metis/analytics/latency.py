"""Latency percentiles of gateway calls per provider/model, for `/analytics/reliability`.

Two ways, chosen by the filters (`latency_table`):

- ``histogram`` (no user/team/key filter): whole UTC days from the daily
  latency histograms (`metis.ledger.latency_rollups`), partial days at the
  window's edges from the raw records, bucketed the same way and merged, so
  any half-open window is answered and a 90-day window reads a few hundred
  thousand histogram rows. Every figure is within
  `metis.ledger.latency_rollups.RELATIVE_ERROR` (2%) of the exact
  nearest-rank value; below 58 ms it is exact.
- ``raw`` / ``raw_sample`` (a user, team or key filter): the histograms have
  no identity dimension (it would make them as large as the raw records), so
  the records' ``latency_ms`` are read: exactly when the window holds at most
  `LATENCY_SAMPLE` matching calls, else a deterministic 1-in-k sample by
  record id (no stated bound).
"""

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, select

from metis.analytics.params import Filters, Window
from metis.analytics.query import day_bounds, filter_conds, split_window
from metis.db.tables import usage_records, usage_rollups_latency
from metis.ledger import latency_rollups as lr

LATENCY_SAMPLE = 100_000
PERCENTILES = (("p50", 0.50), ("p90", 0.90), ("p95", 0.95), ("p99", 0.99))
Model = tuple[str, str]


@dataclass
class Latencies:
    """Per (provider, model): latency figures in ms, and how they were obtained."""

    method: str  # "histogram", "raw" (exact) or "raw_sample"
    relative_error: float | None  # the bound every figure keeps (0: exact; None: sampled)
    rows: int  # latencies read (histogram: calls counted)
    every: int  # sampling stride (1: every call)
    figures: dict[Model, dict[str, int | None]] = field(default_factory=dict)

    def of(self, model: Model) -> dict[str, int | None]:
        """The figures of one provider/model (all None when it has no latency)."""
        return self.figures.get(model) or {k: None for k, _ in (*PERCENTILES, ("max", 1.0))}


def nearest_rank(sorted_vals: Sequence[int], q: float) -> int | None:
    """The nearest-rank ``q`` percentile of ascending values (None when empty)."""
    if not sorted_vals:
        return None
    idx = max(0, min(len(sorted_vals) - 1, math.ceil(q * len(sorted_vals)) - 1))
    return sorted_vals[idx]


def latencies(conn: Connection, window: Window, filters: Filters, calls: int) -> Latencies:
    """Latency figures of the gateway calls in ``window`` matching ``filters``.

    ``calls`` is how many gateway calls match (it sets the raw path's stride).
    """
    if filters.user_id or filters.team_id or filters.gateway_key_id:
        return _from_raw(conn, window, filters, calls)
    return _from_histograms(conn, window, filters.workspace_id)


def _from_histograms(conn: Connection, window: Window, workspace_id: str | None) -> Latencies:
    hist: dict[Model, dict[int, int]] = defaultdict(dict)

    def count(m: Model, bucket: int, n: int) -> None:
        h = hist[m]
        h[bucket] = h.get(bucket, 0) + n

    days, edges = split_window(window)
    if days is not None:
        t = usage_rollups_latency.c
        # Grouped in the table's key order (workspace first): one ordered pass, no sort.
        group = (t.workspace_id, t.provider, t.model, t.bucket)
        q = select(*group, func.sum(t.call_count)).where(
            t.usage_date >= days[0], t.usage_date < days[1]
        )
        if workspace_id is not None:
            q = q.where(t.workspace_id == workspace_id)
        for _ws, prov, model, bucket, n in conn.execute(q.group_by(*group)):
            count((prov, model), int(bucket), int(n))
    r = usage_records.c
    for start, end in edges:
        conds = [
            r.source == lr.GATEWAY_SOURCE,
            r.window_start >= start,
            r.window_start < end,
            r.latency_ms.is_not(None),
        ]
        if workspace_id is not None:
            conds.append(r.workspace_id == workspace_id)
        conds += day_bounds(conn.dialect.name, start, end)
        edge = (
            select(r.provider, r.model, r.latency_ms, func.count())
            .where(*conds)
            .group_by(r.provider, r.model, r.latency_ms)
        )
        for prov, model, ms, n in conn.execute(edge):
            count((prov, model), lr.bucket_of(int(ms)), int(n))
    out = Latencies("histogram", float(lr.RELATIVE_ERROR), 0, 1)
    for m, h in hist.items():
        h = {b: n for b, n in h.items() if n > 0}
        out.rows += sum(h.values())
        fig: dict[str, int | None] = {k: lr.percentile(h, q) for k, q in PERCENTILES}
        fig["max"] = lr.highest(h)
        out.figures[m] = fig
    return out


def _from_raw(conn: Connection, window: Window, filters: Filters, calls: int) -> Latencies:
    stride = max(1, math.ceil(calls / LATENCY_SAMPLE))
    r = usage_records.c
    last_day = (window.end - timedelta(microseconds=1)).date()
    conds: list[Any] = [
        r.source == lr.GATEWAY_SOURCE,
        r.window_start >= window.start,
        r.window_start < window.end,
        # The day range too, so the (identity, usage_date) indexes serve the filter
        # (not the window_start index over every row of the window); the stride on
        # ``id`` is then tested on index entries (SQLite: the rowid) before a row is read.
        r.usage_date >= window.start.date(),
        r.usage_date <= last_day,
    ]
    conds += filter_conds(usage_records, filters, source=False)
    if stride > 1:
        conds.append(r.id % stride == 0)
    conds.append(r.latency_ms.is_not(None))
    lat: dict[Model, list[int]] = defaultdict(list)
    q = select(r.provider, r.model, r.latency_ms).where(and_(*conds))
    for prov, model, latency in conn.execute(q.execution_options(yield_per=10000)):
        lat[(prov, model)].append(int(latency))
    exact = stride == 1
    out = Latencies("raw" if exact else "raw_sample", 0.0 if exact else None, 0, stride)
    for m, vals in lat.items():
        vals.sort()
        out.rows += len(vals)
        fig: dict[str, int | None] = {k: nearest_rank(vals, q) for k, q in PERCENTILES}
        fig["max"] = vals[-1] if vals else None
        out.figures[m] = fig
    return out
