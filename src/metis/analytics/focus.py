"""FOCUS export: the reconciled ledger as FinOps Open Cost and Usage Specification rows.

FinOps tools read every bill through FOCUS (1.0, and 1.2 which LiteLLM
writes). One row per (day, provider, model, workspace, team, user, key,
charge kind) of the reconciled view: the attributed rows (charge kind =
their source, e.g. ``gateway``, ``hermes_plugin``) keep who spent; a
provider-covered day adds ``unattributed`` rows (provider − attributed:
traffic that bypassed Metis, or provider cost no model could be matched
to) and negative ``drift_adjustment`` rows (ChargeCategory ``Adjustment``),
so the rows sum to the reconciled total: the same figures as
``/analytics/cost`` for the same window, read through the same query layer
(`metis.analytics.views.usage`), one UTC day at a time so memory stays flat
whatever the window's length.

Metis knows one price per call (the provider's list price, or the
provider's own reported cost), so ``BilledCost`` = ``EffectiveCost`` =
``ListCost`` = ``ContractedCost``. Quantities are tokens (input + output).
Custom columns carry the ``x_`` prefix the spec reserves for them; the
mapping is documented in docs/exports.md. Rows hold no export-time value:
the same ledger gives the same bytes.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Connection, Engine, select

from metis import jsonutil
from metis.analytics import views
from metis.analytics.params import Filters, ParamError, Window
from metis.db.tables import gateway_keys, teams, users, workspaces
from metis.ledger import reconcile
from metis.money import from_nanousd
from metis.timeutil import day_start, iso

Version = Literal["1.0", "1.2"]
FocusFormat = Literal["csv", "parquet"]
VERSIONS: tuple[Version, ...] = ("1.0", "1.2")
FORMATS: tuple[FocusFormat, ...] = ("csv", "parquet")

# FOCUS 1.0 columns (tests/fixtures/focus/columns-1.0.tsv cites the spec), in the spec's order.
COLUMNS_1_0: tuple[str, ...] = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName",
    "BillingCurrency", "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory",
    "ChargeClass", "ChargeDescription", "ChargeFrequency", "ChargePeriodEnd",
    "ChargePeriodStart", "CommitmentDiscountCategory", "CommitmentDiscountId",
    "CommitmentDiscountName", "CommitmentDiscountStatus", "CommitmentDiscountType",
    "ConsumedQuantity", "ConsumedUnit", "ContractedCost", "ContractedUnitPrice",
    "EffectiveCost", "InvoiceIssuerName", "ListCost", "ListUnitPrice", "PricingCategory",
    "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName", "RegionId",
    "RegionName", "ResourceId", "ResourceName", "ResourceType", "ServiceCategory",
    "ServiceName", "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
)  # fmt: skip
# Columns FOCUS 1.1 and 1.2 added.
ADDED_1_2: tuple[str, ...] = (
    "BillingAccountType", "CapacityReservationId", "CapacityReservationStatus",
    "CommitmentDiscountQuantity", "CommitmentDiscountUnit", "InvoiceId", "PricingCurrency",
    "PricingCurrencyContractedUnitPrice", "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice", "ServiceSubcategory", "SkuMeter", "SkuPriceDetails",
    "SubAccountType",
)  # fmt: skip
COLUMNS_1_2: tuple[str, ...] = tuple(sorted((*COLUMNS_1_0, *ADDED_1_2)))
# Metis's own columns (FOCUS: custom columns are prefixed ``x_``).
X_COLUMNS: tuple[str, ...] = (
    "x_ChargeKind", "x_CostSource", "x_InputTokens", "x_OutputTokens",
    "x_CachedInputTokens", "x_CacheCreationInputTokens", "x_ReasoningTokens",
    "x_RequestCount", "x_Flags",
)  # fmt: skip
DECIMAL_COLUMNS = frozenset(
    {"BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "PricingCurrencyEffectiveCost",
     "PricingQuantity", "ConsumedQuantity", "ContractedUnitPrice", "ListUnitPrice",
     "CommitmentDiscountQuantity", "PricingCurrencyContractedUnitPrice",
     "PricingCurrencyListUnitPrice"}
)  # fmt: skip
DATETIME_COLUMNS = frozenset(
    {"BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd"}
)
INTEGER_COLUMNS = frozenset(X_COLUMNS) - {"x_ChargeKind", "x_CostSource", "x_Flags"}

PROVIDER_NAMES = {"openai": "OpenAI", "anthropic": "Anthropic", "google": "Google",
                  "gemini": "Google", "azure": "Microsoft", "bedrock": "AWS",
                  "groq": "Groq", "deepseek": "DeepSeek", "mistral": "Mistral AI"}  # fmt: skip
CURRENCY = "USD"
TOKENS = "Tokens"
_GROUP = ("usage_date", "workspace_id", "provider", "model", "source", "team_id", "user_id",
          "gateway_key_id")  # fmt: skip


def columns(version: Version) -> tuple[str, ...]:
    """The export's columns for ``version``: the FOCUS columns, then Metis's ``x_`` ones."""
    return (*(COLUMNS_1_0 if version == "1.0" else COLUMNS_1_2), *X_COLUMNS)


def parse_version(value: str | None) -> Version:
    if value is None:
        return "1.2"
    if value not in VERSIONS:
        raise ParamError("invalid_version", "version must be 1.0 or 1.2 (FOCUS)")
    return value


def parse_focus_format(value: str | None) -> FocusFormat:
    if value is None:
        return "csv"
    if value not in FORMATS:
        raise ParamError("invalid_format", "format must be csv or parquet")
    return value


def provider_name(provider: str) -> str:
    """The display name FinOps tools know a provider by (``openai`` → ``OpenAI``)."""
    return PROVIDER_NAMES.get(provider, provider)


def _month(d: date) -> tuple[datetime, datetime]:
    first = d.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return day_start(first), day_start(nxt)


@dataclass(frozen=True)
class _Basis:
    """What a (workspace, provider, model, day) cell's figure rests on."""

    covered: bool
    cost_reported: bool
    flags: tuple[str, ...]


class _Names:
    """Display names of workspaces, teams, users and keys, looked up once each."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.cache: dict[tuple[str, str], str | None] = {}
        self.tables: dict[str, tuple[Any, Any]] = {
            "workspace": (workspaces, workspaces.c.name),
            "team": (teams, teams.c.name),
            "user": (users, users.c.display_name),
            "key": (gateway_keys, gateway_keys.c.name),
        }

    def __call__(self, kind: str, ident: str | None) -> str | None:
        if not ident:
            return None
        if (kind, ident) not in self.cache:
            t, col = self.tables[kind]
            value = self.conn.execute(select(col).where(t.c.id == ident)).scalar()
            self.cache[(kind, ident)] = value
        return self.cache[(kind, ident)]


def _tags(dims: dict[str, Any], names: Callable[[str, str | None], str | None]) -> str:
    """``Tags``: a JSON object of the row's workspace, team, user and key (ids and names)."""
    tags: dict[str, str] = {}
    for kind, col in (("workspace", "workspace_id"), ("team", "team_id"), ("user", "user_id"),
                      ("key", "gateway_key_id")):  # fmt: skip
        ident = dims[col]
        if ident:
            tags[f"metis.{kind}_id"] = ident
            name = names(kind, ident)
            if name is not None:
                tags[f"metis.{kind}"] = name
    return jsonutil.dumps(dict(sorted(tags.items()))).decode()


def _description(kind: str, model: str, provider: str) -> str:
    if kind == reconcile.UNATTRIBUTED_SOURCE:
        return f"{provider} {model}: provider-reported spend no Metis key or plugin attributed"
    if kind == reconcile.DRIFT_SOURCE:
        return f"{provider} {model}: attributed usage above the provider's figure, taken back"
    return f"{provider} {model} usage recorded by {kind}"


def focus_row(
    a: Any,
    basis: _Basis,
    version: Version,
    names: Callable[[str, str | None], str | None],
) -> dict[str, Any]:
    """One FOCUS row (column → Python value) of a reconciled `metis.analytics.query.Agg`."""
    d = a.dims
    day: date = d["usage_date"]
    kind: str = d["source"]
    adjustment = kind == reconcile.DRIFT_SOURCE
    cost = from_nanousd(a.cost_nanousd)
    tokens = Decimal(a.input_tokens + a.output_tokens)
    prov = provider_name(d["provider"])
    period = _month(day)
    start = day_start(day)
    sku = f"{d['provider']}/{d['model']}"
    row: dict[str, Any] = dict.fromkeys(columns(version))
    row.update(
        BilledCost=cost,
        EffectiveCost=cost,
        ListCost=cost,
        ContractedCost=cost,
        BillingAccountId=d["workspace_id"],
        BillingAccountName=names("workspace", d["workspace_id"]),
        BillingCurrency=CURRENCY,
        BillingPeriodStart=period[0],
        BillingPeriodEnd=period[1],
        ChargeCategory="Adjustment" if adjustment else "Usage",
        ChargeDescription=_description(kind, d["model"], prov),
        ChargeFrequency="Usage-Based",
        ChargePeriodStart=start,
        ChargePeriodEnd=start + timedelta(days=1),
        ConsumedQuantity=None if adjustment else tokens,
        ConsumedUnit=None if adjustment else TOKENS,
        PricingCategory=None if adjustment else "Standard",
        PricingQuantity=None if adjustment else tokens,
        PricingUnit=None if adjustment else TOKENS,
        ProviderName=prov,
        PublisherName=prov,
        InvoiceIssuerName=prov,
        ResourceId=d["model"],
        ResourceName=d["model"],
        ResourceType="Model",
        ServiceCategory="AI and Machine Learning",
        ServiceName=f"{prov} API",
        SkuId=sku,
        SkuPriceId=sku,
        SubAccountId=d["team_id"],
        SubAccountName=names("team", d["team_id"]),
        Tags=_tags(d, names),
        x_ChargeKind=kind,
        x_CostSource="provider_reported" if basis.cost_reported else "computed",
        x_InputTokens=a.input_tokens,
        x_OutputTokens=a.output_tokens,
        x_CachedInputTokens=a.cached_input_tokens,
        x_CacheCreationInputTokens=a.cache_creation_input_tokens,
        x_ReasoningTokens=a.reasoning_tokens,
        x_RequestCount=a.request_count,
        x_Flags=",".join(basis.flags) or None,
    )
    if version == "1.2":
        row.update(
            BillingAccountType="Workspace",
            PricingCurrency=CURRENCY,
            PricingCurrencyEffectiveCost=cost,
            ServiceSubcategory="Generative AI",
            SkuMeter=None if adjustment else TOKENS,
            SubAccountType="Team" if d["team_id"] else None,
        )
    return row


def _bases(conn: Connection, day: date, workspace_id: str | None) -> dict[Any, _Basis]:
    out = {}
    for c in reconcile.reconciled_cells(conn, day, day + timedelta(days=1), workspace_id):
        reported = (
            c.covered and not c.provider_cost_unknown and reconcile.COST_COMPUTED not in c.flags
        )
        out[c.key] = _Basis(c.covered, reported, c.flags)
    return out


_UNCOVERED = _Basis(False, False, ())


def _sort_key(a: Any) -> tuple[str, ...]:
    return tuple("" if a.dims[c] is None else str(a.dims[c]) for c in _GROUP[1:])


def focus_rows(
    engine: Engine, window: Window, version: Version, filters: Filters | None = None
) -> Iterator[list[dict[str, Any]]]:
    """The FOCUS rows of whole-day ``window``, one list per UTC day (days in order).

    Each day is `metis.analytics.views.usage` of the reconciled view grouped
    by day, workspace, provider, model, source, team, user and key: the
    figures ``/analytics/cost`` sums for the same window. Rows within a day
    are sorted by those dimensions, so the order never depends on the
    database. Only ``filters.workspace_id`` is honoured (an export of the
    whole ledger or of one workspace; identity filters would drop the
    unattributed rows a bill must keep).
    """
    ws = filters.workspace_id if filters else None
    day = window.start.date()
    with engine.connect() as conn:
        names = _Names(conn)
        while day_start(day) < window.end:
            one = Window(day_start(day), day_start(day + timedelta(days=1)))
            with reconcile.cells_memo():  # the day's cells, read once for both
                aggs = views.usage(conn, "reconciled", one, Filters(workspace_id=ws), _GROUP)
                bases = _bases(conn, day, ws) if aggs else {}
            aggs.sort(key=_sort_key)
            out = []
            for a in aggs:
                d = a.dims
                cell = (d["workspace_id"], d["provider"], d["model"], d["usage_date"])
                out.append(focus_row(a, bases.get(cell, _UNCOVERED), version, names))
            yield out
            day += timedelta(days=1)


def text_cell(column: str, v: Any) -> str:
    """A value as FOCUS text: ISO 8601 ``Z`` date/times, plain decimals, empty for null."""
    if v is None:
        return ""
    if isinstance(v, datetime):
        return iso(v)
    if isinstance(v, Decimal):
        return format(v, "f")
    return str(v)
