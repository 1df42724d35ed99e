"""What provider normalizers produce, and how provider-reported cost is assigned.

A provider module turns report pages into `UsageItem` s (one per usage result
row, already in canonical token semantics) and `CostItem` s (one per cost
report row). `assemble` turns both into canonical `UsageRecord` s.

How cost reports meet usage rows
--------------------------------
Cost reports are grouped differently from usage reports (OpenAI: by project,
API key and line item such as ``"gpt-4o, input"``; Anthropic: by workspace and
description, which carries model, service tier, context window and token
type), so a cost row rarely maps to exactly one usage row. Each cost row is
therefore *allocated* over the usage rows it covers:

1. Candidates: usage rows of the same day bucket whose grouping dimensions
   (``match``: compared exactly, ``None`` included, e.g. Anthropic's default
   workspace) equal the cost row's, whose optional dimensions (``soft``:
   service tier, context window, only when the cost row has them) agree, and
   whose raw model is the cost row's model when it names one.
2. Weights: the candidate's token count of the cost row's token type (e.g.
   Anthropic ``cache_read_input_tokens``, OpenAI ``"…, cached input"``), so the
   per-row cost is what that row's tokens cost; when the cost row has no
   known token type, the row's computed (genai-prices) cost, else its tokens.
3. The amount is split by largest remainder in integer nano-USD, so the
   allocations add up to the cost row exactly.

Usage rows that received any allocation carry ``cost_source =
provider_reported``. A cost row that names neither a model nor a token type
(OpenAI's organisation-level ``costs`` result, ``line_item: null``; an
ungrouped Anthropic cost report) cannot be matched to a model: it is never
spread over the day's usage rows by a guess, it stays as it is, a *cost-only*
record of model `UNALLOCATED_MODEL` (zero tokens). So does a cost row with no
candidate (or only zero weights), e.g. Anthropic code execution or an OpenAI
line item of a product we do not pull (``model`` from the row, normalized
like usage rows, or `UNALLOCATED_MODEL`). Either way the ledger's total cost
equals the provider's total exactly.

Computed prices only fill days the cost report does not cover yet: when the
window's cost report has any row for a day bucket, that day's usage rows the
report covers get no price of their own (cost 0, ``cost_source =
provider_reported``, ``metadata.cost_unallocated``): their cost is in the
report's other rows, and pricing them again would count it twice (the
reconciled view attributes such a day's unallocated cost to them,
`metis.ledger.reconcile`). Only usage rows of a day without any cost row
(today, before costs settle), and rows the provider's cost report never
covers (`UsageItem.cost_reported` false: Anthropic Priority Tier), get a
``computed`` cost from `metis.pricing`; an unknown model gets ``cost_source =
none`` and is listed in the run telemetry (``unpriced_models``), never a
silent zero.

Because the window is always re-fetched whole and stale records of the window
are removed by the sync (see `metis.ingest.sync`), a cost-only record that
later gains a matching usage row is replaced, never double counted.
"""

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ParamSpec, TypeVar

from metis.errors import MetisError
from metis.ledger.bounds import ITEM_MAX_COST_USD, ITEM_MAX_TOKENS
from metis.ledger.record import UsageRecord
from metis.pricing import normalize_model
from metis.security.fields import ID_MAX, MODEL_MAX, bounded
from metis.timeutil import parse_iso

SOURCE = "provider_api_key"
UNALLOCATED_MODEL = "unallocated"
"""Model of a cost-only record no model could be matched to (`metis.ledger.reconcile`)."""
MAX_DEDUPE = 400
MAX_TOKENS = ITEM_MAX_TOKENS
"""Largest token count a report row may carry (as for pushed items, `metis.ledger.bounds`)."""
MAX_AMOUNT_USD = ITEM_MAX_COST_USD
"""Largest absolute cost a report row may carry (`metis.ledger.bounds`)."""
_EARLIEST_TS = 946_684_800  # 2000-01-01
_LATEST_TS = 4_102_444_800  # 2100-01-01

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def token_count(v: Any, what: str) -> int:
    """A token or request count from a report: absent/null is 0, else an integer in
    ``[0, MAX_TOKENS]`` (an integral JSON number such as ``5.0`` counts too).

    Negative, fractional, boolean, non-numeric or absurdly large counts are not
    what any provider documents: the page is refused (`MetisError`) rather than
    stored wrong.
    """
    if v is None:
        return 0
    if isinstance(v, Decimal | float) and not isinstance(v, bool):
        try:
            integral = v == int(v)
        except (ValueError, OverflowError, InvalidOperation):  # NaN, Infinity
            integral = False
        if integral:
            v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise MetisError(f"{what}: expected an integer, got {_show(v)}")
    if not 0 <= v <= MAX_TOKENS:
        raise MetisError(f"{what}: {v} is outside 0..{MAX_TOKENS}")
    return v


def amount_usd(v: Any, what: str, limit: Decimal = MAX_AMOUNT_USD) -> Decimal:
    """A money amount from a report: a JSON number or decimal string, finite, exact,
    at most ``limit`` either way (refunds and credits may be negative)."""
    if isinstance(v, bool) or not isinstance(v, str | int | float | Decimal):
        raise MetisError(f"{what}: expected a decimal amount, got {_show(v)}")
    try:
        d = Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
    except (InvalidOperation, ValueError):
        raise MetisError(f"{what}: expected a decimal amount, got {_show(v)}") from None
    if not d.is_finite() or abs(d) > limit:
        raise MetisError(f"{what}: amount {_show(v)} is not a finite amount within {limit}")
    return d


def opt_str(v: Any, what: str, max_len: int = ID_MAX) -> str | None:
    """An optional text field of a report row (ids, model, tier): null or a string.

    A string longer than ``max_len`` (or with control characters) is kept in
    its bounded form (`metis.security.fields.bounded`: a prefix and a hash of
    the whole), not refused: the row carries the provider's real usage and
    cost, and the bounded form is deterministic, so re-syncing the same
    report maps to the same records. A non-string refuses the page.
    """
    if v is None:
        return None
    if not isinstance(v, str):
        raise MetisError(f"{what}: expected a string, got {_show(v)}")
    return bounded(v, max_len)


def opt_bool(v: Any, what: str) -> bool | None:
    """An optional boolean field of a report row (OpenAI ``batch``)."""
    if v is None or isinstance(v, bool):
        return v
    raise MetisError(f"{what}: expected true, false or null, got {_show(v)}")


def unix_time(v: Any, what: str) -> datetime:
    """A bucket boundary given as Unix seconds (OpenAI), between 2000 and 2100."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise MetisError(f"{what}: expected Unix seconds, got {_show(v)}")
    if not _EARLIEST_TS <= v <= _LATEST_TS:
        raise MetisError(f"{what}: {v} is not a time between 2000 and 2100")
    return datetime.fromtimestamp(v, UTC)


def iso_time(v: Any, what: str) -> datetime:
    """A bucket boundary given as ISO 8601 text (Anthropic), between 2000 and 2100."""
    if not isinstance(v, str):
        raise MetisError(f"{what}: expected an ISO 8601 time, got {_show(v)}")
    try:
        dt = parse_iso(v)
    except (ValueError, OverflowError):
        raise MetisError(f"{what}: expected an ISO 8601 time, got {_show(v)}") from None
    if not _EARLIEST_TS <= dt.timestamp() <= _LATEST_TS:
        raise MetisError(f"{what}: {_show(v)} is not a time between 2000 and 2100")
    return dt


def report_parser(what: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Make a page normalizer fail only with `MetisError`.

    A page whose structure is not the documented one (a bucket that is not an
    object, a missing key, a list where an object belongs) becomes one clear
    error naming the report, never a bare KeyError/TypeError from deep inside.
    """

    def deco(fn: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(fn)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return fn(*args, **kwargs)
            except (KeyError, TypeError, AttributeError, IndexError) as exc:
                raise MetisError(
                    f"{what}: unexpected response shape ({type(exc).__name__}: {_show(exc)})"
                ) from None

        return wrapper

    return deco


def rows(page: Any) -> list[tuple[Any, list[Any]]]:
    """``(bucket, results)`` of each bucket of a report page, shape-checked."""
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise TypeError("page is not an object with a data list")
    out = []
    for bucket in page["data"]:
        if not isinstance(bucket, dict):
            raise TypeError("bucket is not an object")
        results = bucket.get("results") or []
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise TypeError("results is not a list of objects")
        out.append((bucket, results))
    return out


PriceFn = Callable[["UsageItem"], "PriceResult"]


@dataclass(frozen=True)
class PriceResult:
    cost_nanousd: int | None
    pricing_version: str | None
    model_normalized: str


@dataclass
class UsageItem:
    """One provider usage result row, in canonical token semantics."""

    stream: str
    bucket_start: datetime
    bucket_end: datetime
    granularity: str
    dims: dict[str, Any]
    model_raw: str | None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    request_count: int = 0
    provider_project_id: str | None = None
    provider_api_key_id: str | None = None
    provider_workspace_id: str | None = None
    service_tier: str | None = None
    batch: bool | None = None
    token_parts: dict[str, int] = field(default_factory=dict)
    match: dict[str, Any] = field(default_factory=dict)
    soft: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    cost_reported: bool = True
    """Whether the provider's cost report ever carries this usage's cost (Anthropic:
    Priority Tier never is, so its usage is always priced with `metis.pricing`)."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class CostItem:
    """One provider cost report row, amount already in nano-USD."""

    stream: str
    bucket_start: datetime
    bucket_end: datetime
    amount_nanousd: int
    dims: dict[str, Any]
    match: dict[str, Any]
    soft: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    token_part: str | None = None
    label: str | None = None
    provider_project_id: str | None = None
    provider_api_key_id: str | None = None
    provider_workspace_id: str | None = None
    service_tier: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class AssembleStats:
    """Telemetry of one window's normalization."""

    usage_rows: int = 0
    cost_rows: int = 0
    cost_only_records: int = 0
    provider_reported: int = 0
    computed: int = 0
    cost_unallocated: int = 0
    unpriced_models: set[str] = field(default_factory=set)


def dedupe_key(
    credential_id: str, stream: str, bucket_start: datetime, dims: dict[str, Any]
) -> str:
    """Stable per (credential, stream, bucket start, group dims); hashed if too long."""
    parts = [f"{k}={'' if v is None else v}" for k, v in sorted(dims.items())]
    key = f"{credential_id}:{stream}:{int(bucket_start.timestamp())}:{'|'.join(parts)}"
    if len(key) <= MAX_DEDUPE:
        return key
    h = hashlib.sha256("|".join(parts).encode()).hexdigest()
    return f"{credential_id}:{stream}:{int(bucket_start.timestamp())}:sha256={h}"


def largest_remainder(amount: int, weights: Sequence[int]) -> list[int]:
    """Split integer ``amount`` in proportion to ``weights`` (sum > 0), exactly."""
    total = sum(weights)
    if total <= 0:
        raise ValueError("weights must add up to more than zero")
    sign = -1 if amount < 0 else 1
    a = abs(amount)
    shares = [a * w // total for w in weights]
    rems = [(a * w % total, -i) for i, w in enumerate(weights)]
    left = a - sum(shares)
    for _, neg_i in sorted(rems, reverse=True)[:left]:
        shares[-neg_i] += 1
    return [sign * s for s in shares]


def _covers(cost: CostItem, u: UsageItem) -> bool:
    if u.bucket_start != cost.bucket_start:
        return False
    for k, v in cost.match.items():
        if u.match.get(k) != v:
            return False
    for k, v in cost.soft.items():
        if v is not None and u.soft.get(k) is not None and u.soft.get(k) != v:
            return False
    return cost.model is None or u.model_raw == cost.model


def assemble(
    *,
    credential_id: str,
    workspace_id: str,
    provider: str,
    usage: Sequence[UsageItem],
    costs: Sequence[CostItem],
    price: PriceFn,
    run_id: str | None = None,
    base_url: str | None = None,
) -> tuple[list[UsageRecord], AssembleStats]:
    """Canonical records for one window: usage rows with allocated cost, plus cost-only rows."""
    stats = AssembleStats(usage_rows=len(usage), cost_rows=len(costs))
    usage = sorted(usage, key=lambda u: dedupe_key(credential_id, u.stream, u.bucket_start, u.dims))
    priced = [price(u) for u in usage]
    allocated: list[int | None] = [None] * len(usage)
    extra: list[UsageRecord] = []
    cost_days = {c.bucket_start for c in costs}  # day buckets the cost report covers
    for c in costs:
        unmatched = c.model is None and c.token_part is None
        idx = [] if unmatched else [i for i, u in enumerate(usage) if _covers(c, u)]
        weights: list[int] = []
        if c.token_part is not None and idx:
            weights = [usage[i].token_parts.get(c.token_part, 0) for i in idx]
        if not weights or sum(weights) <= 0:
            pc = [priced[i].cost_nanousd for i in idx]
            if idx and all(p is not None for p in pc) and sum(p or 0 for p in pc) > 0:
                weights = [p or 0 for p in pc]
            else:
                weights = [usage[i].total_tokens for i in idx]
        if idx and sum(weights) > 0:
            for i, share in zip(idx, largest_remainder(c.amount_nanousd, weights), strict=True):
                allocated[i] = (allocated[i] or 0) + share
            continue
        if c.amount_nanousd == 0:
            continue
        stats.cost_only_records += 1
        model = (
            bounded(normalize_model(provider, c.model), MODEL_MAX) if c.model else UNALLOCATED_MODEL
        )
        extra.append(
            UsageRecord(
                workspace_id=workspace_id,
                source=SOURCE,
                source_ref=credential_id,
                dedupe_key=dedupe_key(credential_id, c.stream, c.bucket_start, c.dims),
                window_start=c.bucket_start,
                window_end=c.bucket_end,
                granularity="1d",
                provider=provider,
                model=model,
                model_raw=bounded(c.model or c.label or UNALLOCATED_MODEL, MODEL_MAX),
                cost_nanousd=c.amount_nanousd,
                cost_source="provider_reported",
                provider_project_id=c.provider_project_id,
                provider_api_key_id=c.provider_api_key_id,
                provider_workspace_id=c.provider_workspace_id,
                service_tier=c.service_tier,
                base_url=base_url,
                metadata={"cost_only": True, "label": c.label, **c.metadata},
                run_id=run_id,
            )
        )
    out: list[UsageRecord] = []
    for u, p, alloc in zip(usage, priced, allocated, strict=True):
        meta = {"stream": u.stream, **u.metadata}
        if alloc is not None:
            cost, source, version = alloc, "provider_reported", None
            stats.provider_reported += 1
        elif u.bucket_start in cost_days and u.cost_reported:
            # The cost report covers this day: its cost is in the report's other
            # rows (unallocated), never priced again on top.
            cost, source, version = 0, "provider_reported", None
            meta["cost_unallocated"] = True
            stats.cost_unallocated += 1
        elif p.cost_nanousd is not None:
            cost, source, version = p.cost_nanousd, "computed", p.pricing_version
            stats.computed += 1
        else:
            cost, source, version = 0, "none", None
            if u.total_tokens > 0 or u.request_count > 0:
                stats.unpriced_models.add(u.model_raw or "unknown")
        out.append(
            UsageRecord(
                workspace_id=workspace_id,
                source=SOURCE,
                source_ref=credential_id,
                dedupe_key=dedupe_key(credential_id, u.stream, u.bucket_start, u.dims),
                window_start=u.bucket_start,
                window_end=u.bucket_end,
                granularity=u.granularity,  # type: ignore[arg-type]
                provider=provider,
                model=bounded(p.model_normalized, MODEL_MAX),
                model_raw=bounded(u.model_raw or "unknown", MODEL_MAX),
                input_tokens=u.input_tokens,
                output_tokens=u.output_tokens,
                cached_input_tokens=u.cached_input_tokens,
                cache_creation_input_tokens=u.cache_creation_input_tokens,
                input_audio_tokens=u.input_audio_tokens,
                output_audio_tokens=u.output_audio_tokens,
                request_count=u.request_count,
                cost_nanousd=cost,
                cost_source=source,  # type: ignore[arg-type]
                pricing_version=version,
                provider_project_id=u.provider_project_id,
                provider_api_key_id=u.provider_api_key_id,
                provider_workspace_id=u.provider_workspace_id,
                service_tier=u.service_tier,
                batch=u.batch,
                base_url=base_url,
                metadata=meta,
                run_id=run_id,
            )
        )
    return out + extra, stats
