"""Reconciliation: one true total per cell from the sources kept side by side.

A cell is (workspace, provider, model, UTC day). Raw rows are never changed;
the reconciled view is derived at query time (DESIGN.md "Sources and
reconciliation", user docs in docs/reconciliation.md):

1. Each row is classified in SQL: ``provider`` (``source = provider_api_key``),
   ``gateway`` (``source = gateway``), and for every other (plugin) source:
   ``plugin_via_gateway`` when its ``base_url`` is one of this Metis gateway's
   URLs or `VIA_GATEWAY_BASE_URL` (an ingest token declared its agent sends
   through this gateway; the gateway recorded that call itself),
   ``plugin_duplicate`` when a gateway row of the workspace has the same
   ``correlation_id`` (the provider's response id: the same call, the gateway
   row stands), else ``plugin`` (traffic that did not pass the gateway).
   "Plugin" is every pushed source alike (Hermes, Claude Code, Codex and
   OpenTelemetry GenAI telemetry, `metis.ingest.otel`): no source is named.
2. A cell is *covered* when a provider sync completed the whole UTC day for a
   credential of that workspace and provider (a ``sync_windows`` row with
   ``[day, day+1)``, written by `metis.ingest.sync`). Then the provider total
   stands for every measure it reports (`PROVIDER_UNREPORTED` lists those a
   provider's report lacks: for them the attributed figure stands, with no
   residue or drift); ``attributed = gateway + plugin``;
   ``unattributed = provider − attributed`` where positive (traffic that
   bypassed Metis); where attributed exceeds the provider the cell carries
   ``drift`` and the provider total still stands. If every provider row of the
   cell has ``cost_source = none`` the provider reported no money: the
   attributed cost stands and the cell is flagged ``provider_cost_unknown``.
   A day still in progress when its covering sync ran (``provider_lagging``)
   is a lower bound: per measure the larger of provider-so-far and attributed
   stands, and nothing is drift. A day's unallocated provider cost (a
   cost-only row of model ``unallocated``) gives the cells whose provider
   usage came without cost their attributed cost (``cost_unallocated``,
   `_absorb_unallocated`), keeping the day's total the provider's.
3. Uncovered cells: ``gateway + plugin`` stand as they are.

The per-cell source totals come from the rollups: gateway rows from
``usage_rollups_daily_model``, every other row from
``usage_rollups_reconcile_model``, which keeps exactly the classification
above per rollup row (maintained by the write path, `metis.ledger.rollups`;
``usage_rollups_reconcile`` is the same with user/team/key, and
``usage_rollups_reconcile_identity`` the same without provider/model, for
groupings by identity). A 90-day window therefore reads
days x dimensions rollup rows, not the raw records. The original
classification of raw rows in SQL is kept (``from_raw=True``): the tests
check that both give the same cells, and partial days at a window's edges
(`reconciled_aggregate`) still read raw rows.

Python API for analytics: `reconciled_cells`, `reconciled_totals`,
`reconciled_aggregate` (grouped, `metis.analytics.views`).
"""

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Connection, and_, case, cast, exists, func, literal, select

from metis.db.sums import SumFn, rows_with_exact_sums, wide_sum
from metis.db.tables import (
    provider_credentials,
    sync_windows,
    usage_records,
    usage_rollups_daily_model,
    usage_rollups_reconcile,
    usage_rollups_reconcile_model,
)
from metis.gateway.upstreams.catalog import USAGE_API_PROVIDERS
from metis.ledger import rollups
from metis.timeutil import day_start
from metis.util.urls import VIA_GATEWAY_BASE_URL, normalize_base_url

PROVIDER_SOURCE = "provider_api_key"
GATEWAY_SOURCE = "gateway"
GATEWAY_GRANULARITY = "request"
CLASSES = ("provider", "gateway", "plugin", "plugin_duplicate", "plugin_via_gateway")
MEASURES = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "reasoning_tokens",
    "request_count",
    "cost_nanousd",
)
GATEWAY_URLS_ENV = "METIS_GATEWAY_URLS"

# Measures a provider's usage report does not carry (the one place this is
# known; docs/reconciliation.md "Measures a provider does not report"). The
# ingest adapters store 0 for them (`metis.ingest.providers.anthropic`:
# no request count, no thinking-token split; `metis.ingest.providers.openai`:
# no reasoning-token split), so for these measures the provider row is not the
# truth of a covered cell: the attributed figure (gateway + plugin) stands and
# no unattributed residue or drift is computed.
PROVIDER_UNREPORTED: Mapping[str, frozenset[str]] = {
    "anthropic": frozenset({"request_count", "reasoning_tokens"}),
    "openai": frozenset({"reasoning_tokens"}),
}


def unreported_measures(provider: str) -> frozenset[str]:
    """The `MEASURES` ``provider``'s usage report does not carry (`PROVIDER_UNREPORTED`)."""
    return PROVIDER_UNREPORTED.get(provider, frozenset())


@dataclass(frozen=True, slots=True)
class Totals:
    """Summed measures (tokens in canonical semantics, cost in nano-USD) and a row count.

    The arithmetic below runs per cell of a window (thousands for 90 days), so
    it names the fields instead of looping over them.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    reasoning_tokens: int = 0
    request_count: int = 0
    cost_nanousd: int = 0
    rows: int = 0

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.request_count + other.request_count,
            self.cost_nanousd + other.cost_nanousd,
            self.rows + other.rows,
        )

    def measures(self) -> dict[str, int]:
        return {m: getattr(self, m) for m in MEASURES}

    def minus_clamped(self, other: "Totals") -> "Totals":
        """Per measure ``max(self − other, 0)``; rows are not carried."""
        return Totals(
            max(self.input_tokens - other.input_tokens, 0),
            max(self.output_tokens - other.output_tokens, 0),
            max(self.cached_input_tokens - other.cached_input_tokens, 0),
            max(self.cache_creation_input_tokens - other.cache_creation_input_tokens, 0),
            max(self.reasoning_tokens - other.reasoning_tokens, 0),
            max(self.request_count - other.request_count, 0),
            max(self.cost_nanousd - other.cost_nanousd, 0),
        )

    def maxed(self, other: "Totals") -> "Totals":
        """Per measure ``max(self, other)``; rows are not carried."""
        return Totals(
            max(self.input_tokens, other.input_tokens),
            max(self.output_tokens, other.output_tokens),
            max(self.cached_input_tokens, other.cached_input_tokens),
            max(self.cache_creation_input_tokens, other.cache_creation_input_tokens),
            max(self.reasoning_tokens, other.reasoning_tokens),
            max(self.request_count, other.request_count),
            max(self.cost_nanousd, other.cost_nanousd),
        )

    def is_zero(self) -> bool:
        return not (
            self.input_tokens
            or self.output_tokens
            or self.cached_input_tokens
            or self.cache_creation_input_tokens
            or self.reasoning_tokens
            or self.request_count
            or self.cost_nanousd
        )

    def with_measures(self, names: Iterable[str], source: "Totals") -> "Totals":
        """These totals with the measures ``names`` taken from ``source``."""
        vals = [getattr(self, f) for f in _TOTALS_FIELDS]
        for n in names:
            vals[_FIELD_INDEX[n]] = getattr(source, n)
        return Totals(*vals)


ZERO = Totals()
_TOTALS_FIELDS = tuple(f.name for f in fields(Totals))
_FIELD_INDEX = {f: i for i, f in enumerate(_TOTALS_FIELDS)}


@dataclass(frozen=True)
class Cell:
    """One reconciled cell: each source's totals, the reconciled figure and its flags."""

    workspace_id: str
    provider: str
    model: str
    day: date
    gateway: Totals = ZERO
    plugin: Totals = ZERO
    plugin_duplicate: Totals = ZERO
    plugin_via_gateway: Totals = ZERO
    provider_reported: Totals = ZERO
    covered: bool = False
    provider_synced_at: datetime | None = None
    provider_cost_unknown: bool = False
    attributed: Totals = ZERO
    unattributed: Totals = ZERO
    drift: Totals = ZERO
    reconciled: Totals = ZERO
    flags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_drift(self) -> bool:
        return not self.drift.is_zero()

    @property
    def lagging(self) -> bool:
        """Covered by a sync that ran before the day ended: the provider's figure may grow."""
        return LAGGING in self.flags

    @property
    def key(self) -> tuple[str, str, str, date]:
        return (self.workspace_id, self.provider, self.model, self.day)


def gateway_urls_from_env() -> tuple[str, ...]:
    """``METIS_GATEWAY_URLS``: comma-separated base URLs clients reach this gateway by."""
    raw = os.environ.get(GATEWAY_URLS_ENV, "")
    return tuple(u.strip() for u in raw.split(",") if u.strip())


def gateway_url_variants(urls: Iterable[str]) -> list[str]:
    """Every stored form (see `metis.ingest.push.normalize_base_url`) of the gateway's URLs.

    A plugin may report the root or the ``/v1`` base (OpenAI SDKs use ``…/v1``,
    Anthropic's the root) and ``localhost`` or ``127.0.0.1``. An explicit port
    matches under either scheme (OpenTelemetry spans name only
    ``server.address`` and ``server.port``). `VIA_GATEWAY_BASE_URL`, what pushes
    an ingest token declares as sent through this gateway carry, is always in.
    """
    out: set[str] = {VIA_GATEWAY_BASE_URL}
    for u in urls:
        n = normalize_base_url(u)
        if not n:
            continue
        root = n[:-3] if n.endswith("/v1") else n
        hosts = {root}
        if "://localhost" in root:
            hosts.add(root.replace("://localhost", "://127.0.0.1", 1))
        if "://127.0.0.1" in root:
            hosts.add(root.replace("://127.0.0.1", "://localhost", 1))
        for h in list(hosts):
            scheme, _, rest = h.partition("://")
            if scheme in ("http", "https") and ":" in rest.split("/", 1)[0]:
                hosts.add(("https" if scheme == "http" else "http") + "://" + rest)
        for h in hosts:
            out.update({h, h + "/v1"})
    return sorted(out)


def _classified(
    start: date,
    end: date,
    workspace_id: str | None,
    via_gateway: Sequence[str],
    extra: Sequence[Any] = (),
) -> Any:
    """A subquery of the window's rows with a ``klass`` column (see module docstring)."""
    ur = usage_records
    gw = usage_records.alias("gw")
    dup = exists(
        select(literal(1))
        .select_from(gw)
        .where(
            gw.c.workspace_id == ur.c.workspace_id,
            gw.c.source == GATEWAY_SOURCE,
            # Gateway rows are per request (`metis.gateway.stamping`): on PostgreSQL this
            # keeps the probe out of the aggregate partitions (half of them).
            gw.c.granularity == GATEWAY_GRANULARITY,
            gw.c.correlation_id == ur.c.correlation_id,
        )
    )
    whens: list[Any] = [
        (ur.c.source == PROVIDER_SOURCE, literal("provider")),
        (ur.c.source == GATEWAY_SOURCE, literal("gateway")),
    ]
    if via_gateway:
        whens.append((ur.c.base_url.in_(list(via_gateway)), literal("plugin_via_gateway")))
    whens.append((and_(ur.c.correlation_id.is_not(None), dup), literal("plugin_duplicate")))
    klass = case(*whens, else_=literal("plugin")).label("klass")
    unknown_cost = case(
        (and_(ur.c.source == PROVIDER_SOURCE, ur.c.cost_source == "none"), 1), else_=0
    ).label("unknown_cost")
    conds = [ur.c.usage_date >= start, ur.c.usage_date < end]
    if workspace_id is not None:
        conds.append(ur.c.workspace_id == workspace_id)
    conds.extend(extra)
    return select(ur, klass, unknown_cost).where(*conds).subquery("c")


def _coverage(
    conn: Connection, start: date, end: date, workspace_id: str | None
) -> dict[tuple[str, str, date], datetime]:
    """(workspace, provider, day) -> when its provider sync completed, for covered days."""
    sw, pc = sync_windows, provider_credentials
    q = (
        select(
            pc.c.workspace_id, pc.c.provider, sw.c.window_start, sw.c.window_end, sw.c.completed_at
        )
        .select_from(sw.join(pc, pc.c.id == sw.c.credential_id))
        .where(sw.c.window_start < day_start(end), sw.c.window_end > day_start(start))
    )
    if workspace_id is not None:
        q = q.where(pc.c.workspace_id == workspace_id)
    out: dict[tuple[str, str, date], datetime] = {}
    for ws, prov, ws_start, ws_end, done in conn.execute(q):
        d = ws_start.date()
        if day_start(d) < ws_start:
            d += timedelta(days=1)
        while day_start(d + timedelta(days=1)) <= ws_end:
            k = (ws, prov, d)
            if k not in out or done > out[k]:
                out[k] = done
            d += timedelta(days=1)
    return out


def lagging_days(
    conn: Connection, start: date, end: date, workspace_id: str | None = None
) -> list[tuple[str, str, date, datetime]]:
    """(workspace, provider, day, synced at) of the covered days still a lower bound.

    The days of ``[start, end)`` whose covering sync ran before the day ended
    (today, usually): their cells are ``provider_lagging``. Surfaces showing a
    reconciled figure for such a day say "as of sync HH:MM" with this time.
    """
    cov = _coverage(conn, start, end, workspace_id)
    return sorted(
        (ws, prov, d, at)
        for (ws, prov, d), at in cov.items()
        if at < day_start(d + timedelta(days=1))
    )


def _totals_of(vals: Sequence[Any], n: Any) -> Totals:
    """Totals from `MEASURES` values in order and a row count."""
    i, o, ci, cc, r, q, c = (int(v or 0) for v in vals)
    return Totals(i, o, ci, cc, r, q, c, int(n or 0))


def _totals(row: Any) -> Totals:
    return Totals(**{m: int(row[m] or 0) for m in MEASURES}, rows=int(row["n"] or 0))


LAGGING = "provider_lagging"
COST_UNALLOCATED = "cost_unallocated"
COST_COMPUTED = "provider_cost_computed"
NO_USAGE_API = "no_provider_usage_api"
"""An uncovered cell of a provider Metis cannot read usage back from (Azure, Gemini,
Bedrock, OpenAI-compatible providers: `USAGE_API_PROVIDERS`): its basis stays
gateway+plugin for good, not until the next sync."""
UNALLOCATED_MODELS = frozenset({"unallocated", "unattributed"})
"""Models of provider cost-only rows no model could be matched to
(`metis.ingest.providers.base.UNALLOCATED_MODEL`; rows synced before issue 18
used ``unattributed``)."""


def _settle(cell: Cell, synced_at: datetime | None, extra: tuple[str, ...] = ()) -> Cell:
    """The cell with its settled figures and flags (``extra`` flags appended)."""
    # Called once per cell of a window (thousands for 90 days): Cells and
    # Totals are built directly, not through dataclasses.replace (5x slower).
    attributed = cell.gateway + cell.plugin
    if synced_at is None:
        own_api = cell.provider in USAGE_API_PROVIDERS
        return _cell_with(
            cell,
            covered=False,
            synced_at=None,
            attributed=attributed,
            unattributed=ZERO,
            drift=ZERO,
            reconciled=attributed,
            flags=(() if own_api else (NO_USAGE_API,)) + extra,
        )
    prov = cell.provider_reported
    flags: list[str] = ["provider_covered"]
    unattributed = prov.minus_clamped(attributed)
    if synced_at < day_start(cell.day + timedelta(days=1)):
        # The day was still in progress when the provider reported it: its
        # figure is a lower bound that can only grow, so per measure the larger
        # of provider-so-far and attributed stands, and nothing is drift.
        flags.append(LAGGING)
        reconciled = prov.maxed(attributed)
        drift = ZERO
    else:
        reconciled = prov
        drift = attributed.minus_clamped(prov)
    # Measures the provider did not report: its 0 is no figure, so the
    # attributed one stands and nothing is unattributed or drifting there.
    own = set(unreported_measures(cell.provider))
    if cell.provider_cost_unknown:
        flags.append("provider_cost_unknown")
        own.add("cost_nanousd")
    if own:
        reconciled = reconciled.with_measures(own, attributed)
        unattributed = unattributed.with_measures(own, ZERO)
        drift = drift.with_measures(own, ZERO)
    if not unattributed.is_zero():
        flags.append("unattributed")
    if not drift.is_zero():
        flags.append("drift")
    return _cell_with(
        cell,
        covered=True,
        synced_at=synced_at,
        attributed=attributed,
        unattributed=unattributed,
        drift=drift,
        reconciled=reconciled,
        flags=(*flags, *extra),
    )


def _cell_with(
    cell: Cell,
    *,
    covered: bool,
    synced_at: datetime | None,
    attributed: Totals,
    unattributed: Totals,
    drift: Totals,
    reconciled: Totals,
    flags: tuple[str, ...],
) -> Cell:
    """``cell`` (its sources as read) with its settled figures."""
    return Cell(
        cell.workspace_id,
        cell.provider,
        cell.model,
        cell.day,
        cell.gateway,
        cell.plugin,
        cell.plugin_duplicate,
        cell.plugin_via_gateway,
        cell.provider_reported,
        covered,
        synced_at,
        cell.provider_cost_unknown,
        attributed,
        unattributed,
        drift,
        reconciled,
        flags,
    )


def _with_cost(t: Totals, cost: int) -> Totals:
    return replace(t, cost_nanousd=cost)


def _reflag(cell: Cell, add: Sequence[str] = ()) -> Cell:
    """Recompute the ``unattributed``/``drift`` flags from the figures; add ``add``."""
    keep = [f for f in cell.flags if f not in ("unattributed", "drift")]
    keep.extend(f for f in add if f not in keep)
    if not cell.unattributed.is_zero():
        keep.append("unattributed")
    if not cell.drift.is_zero():
        keep.append("drift")
    return replace(cell, flags=tuple(keep))


def _absorb_unallocated(cells: list[Cell]) -> list[Cell]:
    """Attribute a day's unallocated provider cost to the cells whose cost it holds.

    A provider cost row that no model could be matched to (OpenAI's
    organisation-level ``costs`` result with ``line_item: null``) is a
    cost-only row of model ``unallocated``; the day's usage rows it covers got
    no cost of their own (cost 0, ``provider_reported``: the cost report covers
    the day, so nothing is priced on top). Per covered (workspace, provider,
    day), the attributed cost of the cells whose provider usage came without
    cost (``cost_unallocated``) is taken out of that pool: those cells keep
    their attributed cost, the pool keeps the rest as unattributed, and the
    day's total is still the provider's. A closed day whose attributed cost
    exceeds the pool is left as it is (the provider's total stands, the cells
    show drift); on a day in progress (``provider_lagging``) the pool is a
    lower bound, so at most all of it is taken and the day is the larger of
    the two.
    """
    days: dict[tuple[str, str, date], list[int]] = {}
    for i, c in enumerate(cells):
        if c.covered:
            days.setdefault((c.workspace_id, c.provider, c.day), []).append(i)
    for idx in days.values():
        pool = [
            i
            for i in idx
            if cells[i].model in UNALLOCATED_MODELS
            and cells[i].provider_reported.cost_nanousd > 0
            and cells[i].attributed.is_zero()
        ]
        takers = [
            i
            for i in idx
            if i not in pool
            and not cells[i].provider_cost_unknown
            and cells[i].provider_reported.cost_nanousd == 0
            and cells[i].provider_reported.rows > 0
            and cells[i].attributed.cost_nanousd > 0
        ]
        if not pool or not takers:
            continue
        left = sum(cells[i].reconciled.cost_nanousd for i in pool)
        wanted = sum(cells[i].attributed.cost_nanousd for i in takers)
        lagging = cells[idx[0]].lagging
        if wanted > left and not lagging:
            continue
        take = min(wanted, left)
        for i in takers:
            c = cells[i]
            a = c.attributed.cost_nanousd
            cells[i] = _reflag(
                replace(
                    c,
                    reconciled=_with_cost(c.reconciled, a),
                    drift=_with_cost(c.drift, 0),
                    unattributed=_with_cost(c.unattributed, 0),
                ),
                (COST_UNALLOCATED,),
            )
        for i in pool:
            c = cells[i]
            cut = min(take, c.reconciled.cost_nanousd)
            take -= cut
            cost = c.reconciled.cost_nanousd - cut
            cells[i] = _reflag(
                replace(
                    c,
                    reconciled=_with_cost(c.reconciled, cost),
                    unattributed=_with_cost(c.unattributed, cost),
                )
            )
    return cells


CellKey = tuple[str, str, str, date]


def _cell_sources_raw(
    conn: Connection, start: date, end: date, workspace_id: str | None, via: Sequence[str]
) -> dict[CellKey, dict[str, Any]]:
    """Per cell: each class's `Totals` and ``cost_unknown``, classifying raw rows in SQL."""
    c = _classified(start, end, workspace_id, via)
    cell_cols = [c.c.workspace_id, c.c.provider, c.c.model, c.c.usage_date, c.c.klass]
    q = select(
        *cell_cols,
        func.count().label("n"),
        func.sum(c.c.unknown_cost).label("unknown_cost"),
        *(wide_sum(c.c[m]).label(m) for m in MEASURES),
    ).group_by(*cell_cols)
    cells: dict[CellKey, dict[str, Any]] = {}
    for row in conn.execute(q).mappings():
        k = (row["workspace_id"], row["provider"], row["model"], row["usage_date"])
        d = cells.setdefault(k, {})
        d[row["klass"]] = _totals(row)
        if row["klass"] == "provider":
            d["cost_unknown"] = int(row["unknown_cost"] or 0) == int(row["n"] or 0)
    for k in _computed_cells(conn, start, end, workspace_id):
        cells[k]["cost_computed"] = True
    return cells


def _recon_class(t: Any, via: Sequence[str]) -> Any:
    """The reconciliation class of a `usage_rollups_reconcile` row (see module docstring)."""
    whens: list[Any] = [
        (
            t.c.klass.in_(rollups.KLASS_PROVIDERS),
            literal("provider"),
        )
    ]
    if via:
        whens.append((t.c.base_url.in_(list(via)), literal("plugin_via_gateway")))
    whens.append((t.c.klass == rollups.KLASS_DUPLICATE, literal("plugin_duplicate")))
    return case(*whens, else_=literal("plugin"))


def _cell_sources(
    conn: Connection, start: date, end: date, workspace_id: str | None, via: Sequence[str]
) -> dict[CellKey, dict[str, Any]]:
    """`_cell_sources_raw`'s answer, from the rollups (gateway + reconciliation rollup).

    The rollup rows are read as stored and summed per cell and class in
    Python (exact integers): a 90-day window is a few rows per cell, and an
    SQL GROUP BY would only add `wide_sum`'s per-value decoding on SQLite.
    """
    m_t, r_t = usage_rollups_daily_model, usage_rollups_reconcile_model
    via_set = frozenset(via)
    sums: dict[tuple[CellKey, str], list[int]] = {}
    unknown: dict[CellKey, int] = {}
    computed: set[CellKey] = set()
    for t in (m_t, r_t):
        extra = [t.c.klass, t.c.base_url] if t is r_t else []
        q = select(
            t.c.workspace_id,
            t.c.provider,
            t.c.model,
            t.c.usage_date,
            *extra,
            t.c.record_count,
            *(t.c[m] for m in MEASURES),
        ).where(t.c.usage_date >= start, t.c.usage_date < end)
        if t is m_t:
            q = q.where(t.c.source == GATEWAY_SOURCE)
        if workspace_id is not None:
            q = q.where(t.c.workspace_id == workspace_id)
        for row in conn.execute(q):
            key: CellKey = (row[0], row[1], row[2], row[3])
            if t is m_t:
                kl, vals = "gateway", row[4:]
            else:
                stored, base_url, vals = row[4], row[5], row[6:]
                if stored in rollups.KLASS_PROVIDERS:
                    kl = "provider"
                    if stored == rollups.KLASS_PROVIDER_NO_COST:
                        unknown[key] = unknown.get(key, 0) + int(vals[0])
                    elif stored == rollups.KLASS_PROVIDER_COMPUTED and vals[0]:
                        computed.add(key)
                elif base_url in via_set:
                    kl = "plugin_via_gateway"
                elif stored == rollups.KLASS_DUPLICATE:
                    kl = "plugin_duplicate"
                else:
                    kl = "plugin"
            acc = sums.get((key, kl))
            if acc is None:
                sums[(key, kl)] = list(vals)  # BIGINT columns: Python ints on both backends
            else:
                for i, v in enumerate(vals):
                    acc[i] += v
    cells: dict[CellKey, dict[str, Any]] = {}
    for (key, kl), (n, *measures) in sums.items():
        if not n:
            continue
        d = cells.setdefault(key, {})
        i, o, ci, cc, rt, rq, cost = measures
        d[kl] = Totals(i, o, ci, cc, rt, rq, cost, n)
        if kl == "provider":
            d["cost_unknown"] = unknown.get(key, 0) == n
            d["cost_computed"] = key in computed
    return cells


def pushed_sources(
    conn: Connection,
    start: date,
    end: date,
    workspace_id: str | None = None,
    gateway_urls: Sequence[str] | None = None,
) -> dict[tuple[str, str], Totals]:
    """Per pushed source (every source but gateway and provider) and class, its `Totals`.

    Keys are (source, class) with class ``plugin`` (counted),
    ``plugin_duplicate`` (a gateway row has its correlation id) or
    ``plugin_via_gateway`` (sent through this gateway), over UTC days
    ``[start, end)``, from the reconciliation rollup: the classes
    `reconciled_cells` uses, split by source (Hermes, Claude Code, Codex,
    GenAI spans, ...) for the dashboard.
    """
    urls = gateway_urls_from_env() if gateway_urls is None else tuple(gateway_urls)
    via = gateway_url_variants(urls)
    t = usage_rollups_reconcile_model
    cls = _recon_class(t, via).label("klass")
    q = (
        select(
            t.c.source,
            cls,
            *(
                cast(func.sum(x), BigInteger)
                for x in (t.c.record_count, *(t.c[m] for m in MEASURES))
            ),
        )
        .where(
            t.c.usage_date >= start,
            t.c.usage_date < end,
            t.c.source.not_in((GATEWAY_SOURCE, PROVIDER_SOURCE)),
        )
        .group_by(t.c.source, cls)
    )
    if workspace_id is not None:
        q = q.where(t.c.workspace_id == workspace_id)
    out: dict[tuple[str, str], Totals] = {}
    for source, klass, n, *vals in conn.execute(q).all():
        if n:
            out[(source, klass)] = _totals_of(vals, n)
    return out


_cells_memo: ContextVar[dict[tuple[Any, ...], list["Cell"]] | None] = ContextVar(
    "reconciled_cells_memo", default=None
)


@contextmanager
def cells_memo() -> Iterator[None]:
    """Within the block, `reconciled_cells` computes each window's cells once.

    For read-only work that asks for the same window several times (a
    dashboard page: its chart and tables each group the reconciled view
    differently). A write inside the block would not be seen by later
    calls for a window already computed, so only wrap reads. Blocks nest
    (the outermost memo is used).
    """
    if _cells_memo.get() is not None:
        yield
        return
    token = _cells_memo.set({})
    try:
        yield
    finally:
        _cells_memo.reset(token)


def reconciled_cells(
    conn: Connection,
    start: date,
    end: date,
    workspace_id: str | None = None,
    gateway_urls: Sequence[str] | None = None,
    *,
    from_raw: bool = False,
) -> list[Cell]:
    """The cells of UTC days ``[start, end)`` (optionally one workspace), sorted.

    ``gateway_urls`` are the base URLs this Metis gateway is reached by
    (default ``METIS_GATEWAY_URLS``); plugin rows sent there are the
    gateway's own traffic. Answered from the rollups; ``from_raw`` classifies
    the raw rows instead (same result while raw rows exist; days pruned by
    retention keep their rollups but not their per-request raw rows).
    """
    urls = gateway_urls_from_env() if gateway_urls is None else tuple(gateway_urls)
    memo = _cells_memo.get()
    key = (start, end, workspace_id, urls, from_raw)
    if memo is not None and key in memo:
        return list(memo[key])
    cells = _compute_cells(conn, start, end, workspace_id, urls, from_raw)
    if memo is not None:
        memo[key] = cells
        return list(cells)
    return cells


def _compute_cells(
    conn: Connection,
    start: date,
    end: date,
    workspace_id: str | None,
    urls: tuple[str, ...],
    from_raw: bool,
) -> list[Cell]:
    via = gateway_url_variants(urls)
    sources = _cell_sources_raw if from_raw else _cell_sources
    cells = sources(conn, start, end, workspace_id, via)
    coverage = _coverage(conn, start, end, workspace_id)
    out = []
    for k in sorted(cells):
        d = cells[k]
        cell = Cell(
            workspace_id=k[0],
            provider=k[1],
            model=k[2],
            day=k[3],
            gateway=d.get("gateway", ZERO),
            plugin=d.get("plugin", ZERO),
            plugin_duplicate=d.get("plugin_duplicate", ZERO),
            plugin_via_gateway=d.get("plugin_via_gateway", ZERO),
            provider_reported=d.get("provider", ZERO),
            provider_cost_unknown=bool(d.get("cost_unknown", False)),
        )
        extra = (COST_COMPUTED,) if d.get("cost_computed") else ()
        out.append(_settle(cell, coverage.get((k[0], k[1], k[3])), extra))
    return _absorb_unallocated(out)


def _computed_cells(
    conn: Connection, start: date, end: date, workspace_id: str | None
) -> set[CellKey]:
    """Cells holding a provider row whose cost was computed (genai-prices), not reported.

    A provider's cost report lags its usage report: until the cost report
    covers a day, the sync prices that day's usage itself (``cost_source =
    computed``, `metis.ingest.providers.base`). Such cells are flagged
    ``provider_cost_computed`` so a figure never passes for the invoice's.
    From raw rows (``from_raw``); the rollups keep these rows as class
    ``provider_computed`` (`metis.ledger.rollups.KLASS_PROVIDER_COMPUTED`).
    """
    ur = usage_records
    q = (
        select(ur.c.workspace_id, ur.c.provider, ur.c.model, ur.c.usage_date)
        .where(
            ur.c.source == PROVIDER_SOURCE,
            ur.c.usage_date >= start,
            ur.c.usage_date < end,
            ur.c.cost_source == "computed",
        )
        .distinct()
    )
    if workspace_id is not None:
        q = q.where(ur.c.workspace_id == workspace_id)
    return {(ws, prov, model, day) for ws, prov, model, day in conn.execute(q)}


def standing_rows(
    conn: Connection,
    start: date,
    end: date,
    workspace_id: str | None,
    narrow: Mapping[str, str | None],
    cols: Sequence[str],
    via: Sequence[str],
) -> list[tuple[tuple[Any, ...], list[int]]]:
    """The attributed (gateway + plugin) rows of UTC days ``[start, end)`` grouped by ``cols``.

    From the rollups: gateway rows from the narrowest rollup table with every
    needed dimension, plugin rows that are neither duplicates nor sent
    through the gateway from the narrowest reconciliation rollup with them
    (`metis.ledger.rollups.RECON_PROJECTIONS`, else ``usage_rollups_reconcile``).
    ``narrow`` filters ``user_id``/``team_id``/``gateway_key_id``/``source``
    (None = any).
    Returns (key, measures) pairs: the ``cols`` values in order (None for a
    missing user/team/key) and `metis.ledger.rollups.MEASURES` in order (a
    90-day grouping by day and user is tens of thousands of them: no dicts).
    """
    conds_of = {k: v for k, v in narrow.items() if v is not None}
    source = conds_of.get("source")
    needed = {*cols, *conds_of, "source", "workspace_id"}
    out: list[tuple[tuple[Any, ...], list[int]]] = []
    tables: list[tuple[Any, Any]] = []
    if source in (None, GATEWAY_SOURCE):
        gt = next(
            t
            for t, dims in sorted(rollups.TABLES, key=lambda td: len(td[1]))
            if needed <= set(dims)
        )
        tables.append((gt, gt.c.source == GATEWAY_SOURCE))
    if source not in (GATEWAY_SOURCE, PROVIDER_SOURCE):
        rt = next(
            (t for t, dims in rollups.RECON_PROJECTIONS if needed <= set(dims)),
            usage_rollups_reconcile,
        )
        cond: Any = rt.c.klass == rollups.KLASS_PLUGIN
        if via:
            cond = and_(cond, rt.c.base_url.not_in(list(via)))
        tables.append((rt, cond))
    for t, cond in tables:

        def build(sum_fn: SumFn, t: Any = t, cond: Any = cond) -> Any:
            group = [t.c[c] for c in cols]
            q = select(*group, *(sum_fn(t.c[m]) for m in rollups.MEASURES)).where(
                cond, t.c.usage_date >= start, t.c.usage_date < end
            )
            if workspace_id is not None:
                q = q.where(t.c.workspace_id == workspace_id)
            for col, v in conds_of.items():
                q = q.where(t.c[col] == v)
            return q.group_by(*group) if group else q

        ident = [i for i, c in enumerate(cols) if c in IDENTITY_DIMS]
        n = len(cols)
        for row in rows_with_exact_sums(conn, build):
            if not row[n]:  # record_count
                continue
            key = list(row[:n])
            for i in ident:
                key[i] = key[i] or None
            out.append((tuple(key), [int(v or 0) for v in row[n:]]))
    return out


def reconciled_totals(
    conn: Connection,
    start: date,
    end: date,
    workspace_id: str | None = None,
    gateway_urls: Sequence[str] | None = None,
) -> Totals:
    """The reconciled total over UTC days ``[start, end)``: the sum of every cell's figure."""
    total = ZERO
    for cell in reconciled_cells(conn, start, end, workspace_id, gateway_urls):
        total = total + cell.reconciled
    return total


def cell_json(cell: Cell) -> dict[str, Any]:
    """The JSON shape of a cell (``GET /analytics/reconciliation``); money as exact USD."""
    from metis.money import usd_json
    from metis.timeutil import iso

    def t(x: Totals) -> dict[str, Any]:
        d: dict[str, Any] = {m: getattr(x, m) for m in MEASURES if m != "cost_nanousd"}
        d["cost_usd"] = usd_json(x.cost_nanousd)
        d["cost_nanousd"] = x.cost_nanousd
        d["rows"] = x.rows
        return d

    return {
        "workspace_id": cell.workspace_id,
        "provider": cell.provider,
        "model": cell.model,
        "day": cell.day.isoformat(),
        "covered_by_provider": cell.covered,
        "provider_synced_at": iso(cell.provider_synced_at) if cell.provider_synced_at else None,
        "basis": "provider" if cell.covered else "gateway+plugin",
        "sources": {
            "gateway": t(cell.gateway),
            "plugin": t(cell.plugin),
            "plugin_duplicate": t(cell.plugin_duplicate),
            "plugin_via_gateway": t(cell.plugin_via_gateway),
            "provider_api_key": t(cell.provider_reported),
        },
        "attributed": t(cell.attributed),
        "unattributed": t(cell.unattributed),
        "drift": t(cell.drift),
        "reconciled": t(cell.reconciled),
        "provider_unreported": sorted(unreported_measures(cell.provider)) if cell.covered else [],
        "flags": list(cell.flags),
    }


# ------------------------------------------------------------------ grouped view

CELL_DIMS = ("workspace_id", "provider", "model", "usage_date")
GROUPABLE = (*CELL_DIMS, "source", "user_id", "team_id", "gateway_key_id")
IDENTITY_DIMS = ("user_id", "team_id", "gateway_key_id")
UNATTRIBUTED_SOURCE = "unattributed"
DRIFT_SOURCE = "drift_adjustment"
RESIDUE_SOURCES = (UNATTRIBUTED_SOURCE, DRIFT_SOURCE)
"""Sources of the reconciled view's synthetic rows: per covered cell, ``provider −
attributed`` where positive, and ``−(attributed − provider)`` where attributed exceeds
a closed day's provider figure."""


def _split_days(start: datetime, end: datetime, now: datetime) -> tuple[date, date, list[Any]]:
    """Whole UTC days ``[d0, d1)`` of the window and its partial edges as (start, end) ranges.

    A last day that is today (or later) counts as whole: the window's end is
    then about "now", and the rest of the day holds no usage yet.
    """
    d0 = start.date() if day_start(start.date()) == start else start.date() + timedelta(days=1)
    d1 = end.date()
    edges: list[tuple[datetime, datetime]] = []
    if day_start(d1) < end:
        if d1 >= now.date():
            d1 += timedelta(days=1)
        else:
            edges.append((max(day_start(d1), start), end))
    if d0 > start.date():
        edges.insert(0, (start, min(day_start(d0), end)))
    if d1 < d0:  # the whole window lies inside one past day
        return d0, d0, [(start, end)]
    return d0, d1, edges


def reconciled_aggregate(
    conn: Connection,
    window: Any,
    filters: Any,
    cols: Sequence[str],
    gateway_urls: Sequence[str] | None = None,
    now: datetime | None = None,
    *,
    from_raw: bool = False,
) -> list[Any]:
    """Reconciled totals grouped by ``cols`` (`metis.analytics.query.Agg` rows).

    ``window`` has ``start``/``end`` (aware datetimes, half-open); ``filters``
    has ``workspace_id``, ``user_id``, ``team_id``, ``gateway_key_id``,
    ``source`` (each None or a value); ``cols`` are names from `GROUPABLE`.

    Rows are the standing attributed rows (gateway + unmatched plugin) plus,
    per provider-covered cell, an ``unattributed`` residue (source
    ``unattributed``, no user/team/key) and, where attributed exceeds the
    provider, a negative ``drift_adjustment`` row, so the groups always sum
    to the reconciled cell totals. Filtering by user, team, key or source
    returns only that identity's/source's attributed rows (a residue belongs
    to nobody). Provider data is daily: whole UTC days reconcile against it;
    partial days at the window's edges (except a last day reaching the
    present) count their standing attributed rows only.

    Whole days are answered from the rollups (`standing_rows`,
    `reconciled_cells`), edges from raw rows; ``from_raw`` reads raw rows for
    everything (the reference the tests compare against).
    """
    from metis.analytics.query import Agg
    from metis.timeutil import utcnow

    bad = [c for c in cols if c not in GROUPABLE]
    if bad:
        raise ValueError(f"cannot group the reconciled view by {bad}")
    urls = gateway_urls_from_env() if gateway_urls is None else tuple(gateway_urls)
    via = gateway_url_variants(urls)
    d0, d1, edges = _split_days(window.start, window.end, now or utcnow())
    ws = filters.workspace_id
    ident = {d: getattr(filters, d, None) for d in IDENTITY_DIMS}
    source = getattr(filters, "source", None)
    by_identity = any(v is not None for v in ident.values())
    residues = (
        (UNATTRIBUTED_SOURCE, DRIFT_SOURCE)
        if source is None
        else (source,)
        if source in RESIDUE_SOURCES
        else ()
    )
    residues = () if by_identity else residues
    standing_too = source not in RESIDUE_SOURCES
    merged: dict[tuple[Any, ...], list[int]] = {}  # key -> rollups.MEASURES in order

    def add(key: tuple[Any, ...], vec: Sequence[int]) -> None:
        cur = merged.get(key)
        if cur is None:
            merged[key] = list(vec)
        else:
            for i, v in enumerate(vec):
                cur[i] += v

    def put(dims: dict[str, Any], vals: dict[str, int]) -> None:
        vec = [0] * len(rollups.MEASURES)
        for m, v in vals.items():
            vec[_MEASURE_INDEX[m]] += v
        add(tuple(dims[c] for c in cols), vec)

    def standing(start: date, end: date, extra: Sequence[Any]) -> None:
        conds = list(extra)
        for dim, v in ident.items():
            if v is not None:
                conds.append(usage_records.c[dim] == v)
        if source is not None:
            conds.append(usage_records.c.source == source)
        c = _classified(start, end, ws, via, conds)
        group = [c.c[x] for x in cols]
        err = case((and_(c.c.status.is_not(None), func.lower(c.c.status).not_in(_OK)), 1), else_=0)
        q = select(
            *group,
            func.count().label("record_count"),
            func.sum(err).label("error_count"),
            *(wide_sum(c.c[m]).label(m) for m in MEASURES),
        ).where(c.c.klass.in_(("gateway", "plugin")))
        if group:
            q = q.group_by(*group)
        for row in conn.execute(q).mappings():
            if not row["record_count"]:
                continue
            vals = {m: int(row[m] or 0) for m in (*MEASURES, "record_count", "error_count")}
            put({x: row[x] for x in cols}, vals)

    if d0 < d1:
        if not standing_too:
            pass
        elif from_raw:
            standing(d0, d1, ())
        else:
            narrow = {**ident, "source": source}
            for key, vec in standing_rows(conn, d0, d1, ws, narrow, cols, via):
                add(key, vec)
        if residues:
            for cell in reconciled_cells(conn, d0, d1, ws, urls, from_raw=from_raw):
                base = {
                    "workspace_id": cell.workspace_id,
                    "provider": cell.provider,
                    "model": cell.model,
                    "usage_date": cell.day,
                    "user_id": None,
                    "team_id": None,
                    "gateway_key_id": None,
                }
                if UNATTRIBUTED_SOURCE in residues and not cell.unattributed.is_zero():
                    put({**base, "source": UNATTRIBUTED_SOURCE}, cell.unattributed.measures())
                if DRIFT_SOURCE in residues and cell.has_drift:
                    neg = {m: -v for m, v in cell.drift.measures().items()}
                    put({**base, "source": DRIFT_SOURCE}, neg)
    if not standing_too:
        edges = []
    for a, b in edges:
        lo, hi = a.date(), (b - timedelta(microseconds=1)).date() + timedelta(days=1)
        rng = (usage_records.c.window_start >= a, usage_records.c.window_start < b)
        standing(lo, hi, rng)
    out = []
    for k, v in merged.items():
        agg = Agg(dims=dict(zip(cols, k, strict=True)))
        for m, x in zip(rollups.MEASURES, v, strict=True):
            setattr(agg, m, x)
        out.append(agg)
    return out


_OK = ("ok", "success", "succeeded", "completed")
_MEASURE_INDEX = {m: i for i, m in enumerate(rollups.MEASURES)}
