"""Push ingestion: agent plugins send usage items to ``POST /v1/ingest/usage``.

Contract (also in the OpenAPI document, schema ``UsageItem``):

- Auth: ``Authorization: Bearer mit_…`` (an ingest token, `metis.ingest.tokens`).
  The token fixes the workspace and the ``source`` (``hermes_plugin`` by default);
  ``source_ref`` is the token id. Wrong, unknown or revoked token: 401; too
  many of those from one client or for one token prefix: 429 with
  ``Retry-After`` (`metis.security.throttle`).
- Body: ``{"items": [UsageItem, ...]}``, at most `MAX_ITEMS` items and
  `MAX_BODY_BYTES` bytes (413 beyond either). Malformed JSON or a body that is
  not that object (unknown top-level field, ``items`` not a list): 400.
- Each item is validated on its own. Valid items are stored even when others
  are rejected; the response lists ``accepted`` (new), ``unchanged`` (exact
  replays: nothing changed, not even ``revision``), ``revised`` (same
  idempotency key, new values: replaced, ``revision`` bumped) and ``rejected``
  (index, key when readable, and reasons). Status 200 when nothing was
  rejected, 422 when at least one item was (the valid ones are stored all the
  same: read the lists, do not resend the batch blindly).
- Item rules: unknown fields, negative token counts, parts larger than their
  whole (cached > input, reasoning > output), a time more than
  `MAX_FUTURE` ahead or before 2000, a window whose end is not after its
  start or that is longer than 31 days, a field over its length limit
  (`metis.security.fields`), a cost over USD 100,000,000 or a count over
  10^15 (`metis.ledger.bounds`): rejected with a reason naming the field.
  An item that would take a daily rollup cell past the ledger's bound
  (2^62 per measure) is rejected too; the rest of the batch is stored.
- Token semantics are canonical (DESIGN.md): ``input_tokens`` counts every
  input token, cache reads and writes included; ``output_tokens`` includes
  reasoning tokens.
- Cost: ``cost_usd`` as a decimal string or JSON number is stored exactly as
  nano-USD (``provider_reported``: the client's own figure); without it the
  cost is computed with `metis.pricing` (``computed``, or ``none`` for an
  unknown model).
- ``user`` is a Metis user alias: resolved to ``user_id`` when known, kept in
  ``metadata.user_alias`` otherwise (then the token's own user, if it has one,
  is the item's ``user_id``).
- A token created ``--via-gateway`` stores items without ``base_url`` as this
  gateway's own traffic (docs/ingest-otel.md "Double counting").

`ingest_items` is the shared core (HTTP and ``metis ingest push``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
    model_validator,
)
from sqlalchemy import Connection, select

from metis import jsonutil, pricing
from metis.analytics.deps import EngineDep, auth_throttle, client_address
from metis.analytics.httputil import ErrorInfo
from metis.db.tables import usage_records, users
from metis.ingest import activity
from metis.ingest import tokens as ingest_tokens
from metis.jsonutil import DECODE_ERRORS
from metis.ledger.bounds import ITEM_MAX_COST_USD, ITEM_MAX_TOKENS, LedgerLimitError
from metis.ledger.record import UsageRecord
from metis.ledger.upsert import begin_write, upsert_usage
from metis.money import to_nanousd
from metis.security.fields import (
    METADATA_KEY_MAX,
    METADATA_MAX_KEYS,
    METADATA_TOTAL_MAX,
    METADATA_VALUE_MAX,
    FieldError,
    check_metadata,
    is_printable,
)
from metis.timeutil import iso, utcnow
from metis.util.urls import VIA_GATEWAY_BASE_URL, normalize_base_url

if TYPE_CHECKING:
    from metis.server import Components

MAX_ITEMS = 1000
MAX_BODY_BYTES = 1024 * 1024
MAX_FUTURE = timedelta(hours=1)
MAX_WINDOW = timedelta(days=31)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TOKENS = ITEM_MAX_TOKENS
MAX_COST_USD = ITEM_MAX_COST_USD

_KEY_RE = r"^[\x21-\x7e]{1,200}$"
_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,199}$"

TokenCount = Annotated[StrictInt, Field(ge=0, le=MAX_TOKENS)]


def _aware(v: datetime) -> datetime:
    if v.tzinfo is None:
        v = v.replace(tzinfo=UTC)
    try:
        return v.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before year 1 in UTC
        raise ValueError("time is outside the supported range (2000-01-01 onwards)") from None


UTCTime = Annotated[datetime, AfterValidator(_aware)]


def _no_control(v: str) -> str:
    # PostgreSQL text cannot hold NUL (the insert failed: a 500); SQLite's C functions stop at
    # it. Labels and ids have no use for any other control character either.
    if not is_printable(v):
        raise ValueError("contains control characters")
    return v


Label = Annotated[str, AfterValidator(_no_control)]
"""A free-text label or id an agent reports: any printable text."""


def _cost(v: Any) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, str | int | float | Decimal):
        raise ValueError("must be a decimal string or number")
    # JSON numbers are parsed as Decimal by the endpoint (never float); a
    # float can only come from a direct Python caller and is taken by its repr.
    try:
        d = Decimal(str(v).strip()) if isinstance(v, float | str) else Decimal(v)
    except ArithmeticError:
        raise ValueError("must be a decimal string or number") from None
    if not d.is_finite() or d < 0 or d > MAX_COST_USD:
        raise ValueError(f"must be a finite amount between 0 and {MAX_COST_USD} USD")
    return d


class UsageItem(BaseModel):
    """One usage item: a single call (``time``) or a rollup over a window."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    idempotency_key: str = Field(
        pattern=_KEY_RE,
        description="Unique per item and workspace/source (e.g. the agent's request id). "
        "Resending the same key with the same values is a no-op; with new values it revises.",
    )
    time: UTCTime | None = Field(
        None, description="When the call happened (ISO 8601; no offset means UTC)."
    )
    window_start: UTCTime | None = Field(None, description="Start of a rollup window (inclusive).")
    window_end: UTCTime | None = Field(None, description="End of a rollup window (exclusive).")
    granularity: Literal["request", "1m", "1h", "1d", "session"] | None = Field(
        None, description="Default: request for `time`, session for a window."
    )
    provider: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", examples=["openai"])
    model: str = Field(pattern=_NAME_RE, examples=["gpt-4o-mini"])
    input_tokens: TokenCount = Field(0, description="All input tokens, cache reads/writes incl.")
    output_tokens: TokenCount = Field(0, description="All output tokens, reasoning included.")
    cached_input_tokens: TokenCount = Field(0, description="Cache reads (part of input).")
    cache_creation_input_tokens: TokenCount = Field(0, description="Cache writes (part of input).")
    reasoning_tokens: TokenCount = Field(0, description="Reasoning tokens (part of output).")
    input_audio_tokens: TokenCount = 0
    output_audio_tokens: TokenCount = 0
    request_count: TokenCount = Field(1, description="Calls this item stands for.")
    cost_usd: Annotated[Decimal, BeforeValidator(_cost)] | None = Field(
        None,
        description="Cost in USD as a decimal string or number, stored exactly; at most "
        f"{ITEM_MAX_COST_USD} per item. Absent: computed from Metis's price table.",
    )
    session_id: Label | None = Field(None, max_length=200)
    user: Label | None = Field(None, max_length=200, description="A Metis user alias.")
    correlation_id: Label | None = Field(
        None, max_length=200, description="The provider's response id (chatcmpl-…, msg_…)."
    )
    base_url: Label | None = Field(
        None, max_length=2000, description="Where the call was sent (detects gateway traffic)."
    )
    service_tier: Label | None = Field(None, max_length=64)
    metadata: dict[str, str | int | bool | None] | None = Field(
        None,
        description=f"Small opaque labels: at most {METADATA_MAX_KEYS} keys of "
        f"{METADATA_KEY_MAX} characters, text values of {METADATA_VALUE_MAX}, "
        f"{METADATA_TOTAL_MAX} bytes in all.",
    )

    @model_validator(mode="after")
    def _check(self) -> UsageItem:
        if self.time is not None and (self.window_start is not None or self.window_end is not None):
            raise ValueError("give either time or window_start/window_end, not both")
        if self.time is None:
            if self.window_start is None or self.window_end is None:
                raise ValueError("time or both window_start and window_end are required")
            if self.window_end <= self.window_start:
                raise ValueError("window_end must be after window_start")
            if self.window_end - self.window_start > MAX_WINDOW:
                raise ValueError("window longer than 31 days")
        if self.cached_input_tokens + self.cache_creation_input_tokens > self.input_tokens:
            raise ValueError(
                "cached_input_tokens + cache_creation_input_tokens exceed input_tokens "
                "(input_tokens counts every input token, cache included)"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning_tokens exceed output_tokens (output includes reasoning)")
        try:
            check_metadata("metadata", self.metadata)
        except FieldError as exc:
            raise ValueError(exc.message) from None
        return self


class UsageBatch(BaseModel):
    """The request body of ``POST /v1/ingest/usage``."""

    model_config = ConfigDict(extra="forbid")
    items: list[UsageItem] = Field(max_length=MAX_ITEMS)


class RejectedItem(BaseModel):
    index: int
    idempotency_key: str | None
    reasons: list[str]


class PushResult(BaseModel):
    """What happened to each item of a batch, by idempotency key."""

    accepted: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    revised: list[str] = Field(default_factory=list)
    rejected: list[RejectedItem] = Field(default_factory=list)


@dataclass(frozen=True)
class PushTarget:
    """Where pushed items land: workspace, source and source_ref, and the token's settings.

    ``via_gateway``: items that name no ``base_url`` went through this Metis
    gateway (stored with `VIA_GATEWAY_BASE_URL`, which reconciliation treats as
    the gateway's own traffic). ``user_id``: the user an item is attributed to
    when its own ``user`` does not resolve (`metis.ingest.tokens`).
    """

    workspace_id: str
    source: str
    source_ref: str
    via_gateway: bool = False
    user_id: str | None = None


def _reasons(exc: ValidationError) -> list[str]:
    out = []
    for e in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append(f"{loc}: {msg}" if loc else msg)
    return out


@dataclass
class _Prepared:
    index: int
    key: str
    record: UsageRecord = field(repr=False)


def _to_record(item: UsageItem, target: PushTarget, user_id: str | None) -> UsageRecord:
    if item.time is not None:
        start = end = item.time
        granularity = item.granularity or "request"
    else:
        assert item.window_start is not None and item.window_end is not None
        start, end = item.window_start, item.window_end
        granularity = item.granularity or "session"
    model = pricing.normalize_model(item.provider, item.model)
    if item.cost_usd is not None:
        cost, cost_source, pv = to_nanousd(item.cost_usd), "provider_reported", None
    else:
        p = pricing.price(
            item.provider,
            item.model,
            input_tokens=item.input_tokens,
            output_tokens=item.output_tokens,
            cached_input_tokens=item.cached_input_tokens,
            cache_creation_input_tokens=item.cache_creation_input_tokens,
            reasoning_tokens=item.reasoning_tokens,
            at=start,
        )
        cost, cost_source, pv = p.cost_nanousd or 0, p.cost_source, p.pricing_version
    meta: dict[str, Any] = dict(item.metadata or {})
    if item.user and user_id is None:
        meta["user_alias"] = item.user
    if user_id is None:
        user_id = target.user_id
    base_url = normalize_base_url(item.base_url)
    if base_url is None and target.via_gateway:
        base_url = VIA_GATEWAY_BASE_URL
    return UsageRecord(
        workspace_id=target.workspace_id,
        source=target.source,
        source_ref=target.source_ref,
        dedupe_key=item.idempotency_key,
        window_start=start,
        window_end=end,
        granularity=granularity,
        provider=item.provider,
        model=model,
        model_raw=item.model,
        input_tokens=item.input_tokens,
        output_tokens=item.output_tokens,
        cached_input_tokens=item.cached_input_tokens,
        cache_creation_input_tokens=item.cache_creation_input_tokens,
        reasoning_tokens=item.reasoning_tokens,
        input_audio_tokens=item.input_audio_tokens,
        output_audio_tokens=item.output_audio_tokens,
        request_count=item.request_count,
        cost_nanousd=cost,
        cost_source=cost_source,  # type: ignore[arg-type]
        pricing_version=pv,
        user_id=user_id,
        correlation_id=item.correlation_id or None,
        session_id=item.session_id or None,
        service_tier=item.service_tier or None,
        base_url=base_url,
        metadata=meta or None,
    )


def ingest_items(
    conn: Connection, target: PushTarget, raw_items: list[Any], now: datetime | None = None
) -> PushResult:
    """Validate each raw item, store the valid ones, and say what happened to each.

    Runs inside the caller's transaction. A rejected item never affects the
    others; nothing stored earlier changes unless an item with its key
    carries new values (then it is revised).
    """
    now = now or utcnow()
    result = PushResult()
    items: list[tuple[int, UsageItem]] = []
    for i, raw in enumerate(raw_items):
        key = raw.get("idempotency_key") if isinstance(raw, dict) else None
        key = key if isinstance(key, str) and len(key) <= 200 else None
        if not isinstance(raw, dict):
            result.rejected.append(
                RejectedItem(index=i, idempotency_key=None, reasons=["not an object"])
            )
            continue
        try:
            item = UsageItem.model_validate(raw)
        except ValidationError as exc:
            result.rejected.append(
                RejectedItem(index=i, idempotency_key=key, reasons=_reasons(exc))
            )
            continue
        start = item.time or item.window_start
        assert start is not None
        end = item.time or item.window_end
        assert end is not None
        if end > now + MAX_FUTURE:
            reason = f"time {iso(end)} is in the future (more than 1 h ahead of the server clock)"
            result.rejected.append(RejectedItem(index=i, idempotency_key=key, reasons=[reason]))
            continue
        if start < EARLIEST:
            reason = f"time {iso(start)} is before 2000-01-01"
            result.rejected.append(RejectedItem(index=i, idempotency_key=key, reasons=[reason]))
            continue
        items.append((i, item))

    aliases = {it.user for _, it in items if it.user}
    user_ids: dict[str, str] = {}
    if aliases:
        rows = conn.execute(
            select(users.c.alias, users.c.id).where(
                users.c.alias.in_(sorted(aliases)), users.c.forgotten_at.is_(None)
            )
        ).all()
        user_ids = {a: u for a, u in rows}

    prepared: list[_Prepared] = []
    for i, item in items:
        try:
            rec = _to_record(item, target, user_ids.get(item.user) if item.user else None)
        except ValueError as exc:  # pricing refused contradictory counts
            result.rejected.append(
                RejectedItem(index=i, idempotency_key=item.idempotency_key, reasons=[str(exc)])
            )
            continue
        prepared.append(_Prepared(i, item.idempotency_key, rec))

    if not prepared:
        result.rejected.sort(key=lambda r: r.index)
        return result
    _store(conn, target, prepared, result)
    result.rejected.sort(key=lambda r: r.index)
    return result


def _store(
    conn: Connection, target: PushTarget, prepared: list[_Prepared], result: PushResult
) -> None:
    """Upsert ``prepared`` and record in ``result`` what happened to each.

    All in one go when that fits the ledger's bounds; if it does not
    (`LedgerLimitError`: a rollup cell would pass `metis.ledger.bounds.CELL_MAX`),
    item by item, each in a savepoint, so only the items that would pass the
    bound are rejected and the others are stored.
    """
    keys = sorted({p.key for p in prepared})
    known: dict[str, str] = {}
    for chunk_start in range(0, len(keys), 500):
        chunk = keys[chunk_start : chunk_start + 500]
        rows = conn.execute(
            select(usage_records.c.dedupe_key, usage_records.c.content_sha256).where(
                usage_records.c.workspace_id == target.workspace_id,
                usage_records.c.source == target.source,
                usage_records.c.dedupe_key.in_(chunk),
            )
        ).all()
        known.update({k: h for k, h in rows})

    def outcome(p: _Prepared) -> None:
        digest = p.record.content_sha256()
        before = known.get(p.key)
        if before is None:
            result.accepted.append(p.key)
        elif before == digest:
            result.unchanged.append(p.key)
        else:
            result.revised.append(p.key)
        known[p.key] = digest

    begin_write(conn)
    try:
        with conn.begin_nested():
            upsert_usage(conn, [p.record for p in prepared])
    except LedgerLimitError:
        for p in prepared:
            try:
                with conn.begin_nested():
                    upsert_usage(conn, [p.record])
            except LedgerLimitError as exc:
                result.rejected.append(
                    RejectedItem(index=p.index, idempotency_key=p.key, reasons=[exc.message])
                )
            else:
                outcome(p)
    else:
        for p in prepared:
            outcome(p)


# --------------------------------------------------------------------------- HTTP


def _error(status: int, error: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": error, "message": message}, status_code=status, headers=headers or None
    )


_decoder = msgspec.json.Decoder(float_hook=Decimal)

router = APIRouter(tags=["ingest"])


@router.post(
    "/v1/ingest/usage",
    response_model=PushResult,
    summary="Push a batch of usage items (ingest token)",
    description=__doc__,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/UsageBatch"}}
            },
        },
        "security": [{"IngestToken": []}],
    },
    responses={
        401: {"model": ErrorInfo, "description": "Missing, unknown or revoked ingest token"},
        429: {
            "model": ErrorInfo,
            "description": "Too many failed authentications from this client or for this "
            "token prefix (see Retry-After)",
        },
        400: {"model": ErrorInfo, "description": "Malformed JSON or not a {items: [...]} object"},
        413: {
            "model": ErrorInfo,
            "description": f"Body over {MAX_BODY_BYTES} bytes or over {MAX_ITEMS} items",
        },
        422: {
            "model": PushResult,
            "description": "Some items rejected (the valid ones are stored)",
        },
    },
)
async def push_usage(request: Request, engine: EngineDep) -> Response:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    throttle = auth_throttle(request)
    keys = throttle.keys(client_address(request), secret.strip() or None)
    wait = throttle.retry_after(*keys)
    if wait is not None:  # before the token is looked at (metis.security.throttle)
        seconds = throttle.retry_after_header(wait)
        return _error(
            429,
            "too_many_failures",
            f"too many failed authentications from this client or for this token; "
            f"retry in {seconds} s",
            **{"Retry-After": seconds},
        )
    if scheme.lower() != "bearer" or not secret.strip():
        return _error(
            401,
            "unauthorized",
            "ingest token required: Authorization: Bearer mit_…",
            **{"WWW-Authenticate": "Bearer"},
        )
    with engine.connect() as conn:
        tok = ingest_tokens.verify(conn, secret.strip())
    if tok is None:
        throttle.failed(*keys)
        return _error(
            401, "unauthorized", "invalid or revoked ingest token", **{"WWW-Authenticate": "Bearer"}
        )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        return _error(
            413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes; send smaller batches"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return _error(
                413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes; send smaller batches"
            )
        chunks.append(chunk)
    try:
        body = _decoder.decode(b"".join(chunks))
    except DECODE_ERRORS as exc:
        return _error(400, "invalid_json", f"malformed JSON: {exc}")
    if not isinstance(body, dict) or set(body) != {"items"} or not isinstance(body["items"], list):
        return _error(
            400, "invalid_body", 'body must be a JSON object {"items": [...]} with no other fields'
        )
    raw_items: list[Any] = body["items"]
    if len(raw_items) > MAX_ITEMS:
        return _error(
            413, "too_many_items", f"batch has {len(raw_items)} items; the limit is {MAX_ITEMS}"
        )
    target = PushTarget(tok.workspace_id, tok.source, tok.id, tok.via_gateway, tok.user_id)
    with engine.begin() as conn:
        now = utcnow()
        result = ingest_items(conn, target, raw_items, now)
        activity.record(
            conn,
            tok.id,
            "push",
            now,
            records=len(raw_items),
            accepted=len(result.accepted) + len(result.unchanged) + len(result.revised),
            rejected=len(result.rejected),
        )
    status = 422 if result.rejected else 200
    return Response(
        jsonutil.dumps(result.model_dump()), status_code=status, media_type="application/json"
    )


def install(comps: Components) -> None:
    """Register ``POST /v1/ingest/usage`` and its schemas on ``comps.api``."""
    api = comps.api
    api.include_router(router)
    original = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema:
            return api.openapi_schema
        schema = original()
        comp = schema.setdefault("components", {})
        defs = comp.setdefault("schemas", {})
        batch = UsageBatch.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in batch.pop("$defs", {}).items():
            defs.setdefault(name, sub)
        defs["UsageBatch"] = batch
        comp.setdefault("securitySchemes", {})["IngestToken"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An ingest token (mit_…) from `metis ingest token create`.",
        }
        api.openapi_schema = schema
        return schema

    api.openapi = openapi  # type: ignore[method-assign]
