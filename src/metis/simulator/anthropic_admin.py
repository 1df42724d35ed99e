"""Anthropic Admin API: ``GET /v1/organizations/usage_report/messages`` and
``GET /v1/organizations/cost_report``, answering only admin keys
(``x-api-key: sk-ant-admin…``, with ``anthropic-version``).

Usage report items carry ``uncached_input_tokens``, ``cache_creation``
(``ephemeral_1h_input_tokens``, ``ephemeral_5m_input_tokens``),
``cache_read_input_tokens``, ``output_tokens``, ``server_tool_use``
(``web_search_requests``: always 0 here) and the dimensions ``api_key_id``,
``workspace_id``, ``model``, ``service_tier`` (``standard``), ``context_window``
(``0-200k``, or ``200k-1M`` for a call with more than 200k input tokens),
``inference_geo`` (``global``), ``account_id`` and ``service_account_id``
(null: simulated traffic is API-key traffic), each null unless grouped by.
There is no request count, as in the real report.

Cost report items: ``amount`` is a decimal STRING in CENTS (exact: a nano-USD
sum divided by 10^7), ``currency: "USD"``. Grouped by ``description``, each
(model, token type) gets its own row with ``cost_type: "tokens"``,
``token_type`` (``uncached_input_tokens``, ``output_tokens``,
``cache_read_input_tokens``, ``cache_creation.ephemeral_5m_input_tokens``,
``cache_creation.ephemeral_1h_input_tokens``), ``model``, ``service_tier``,
``context_window``, ``inference_geo`` and a description like
``"Claude Haiku 4.5 Usage - Input Tokens"``; ungrouped those fields are null.
"""

from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from metis.simulator import catalog, reports
from metis.simulator.anthropic_inference import api_key
from metis.simulator.http import JSONResponse, anthropic_error
from metis.simulator.keys import is_anthropic_admin
from metis.simulator.ledger import (
    PART_CACHE_READ,
    PART_CACHE_WRITE_1H,
    PART_CACHE_WRITE_5M,
    PART_OUTPUT,
    PART_UNCACHED,
    Call,
)
from metis.simulator.state import SimState

USAGE_GROUPS = (
    "api_key_id",
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
    "account_id",
    "service_account_id",
)
COST_GROUPS = ("workspace_id", "description")
COST_LIMIT = (7, 31)
TOKEN_TYPE = {
    PART_UNCACHED: ("uncached_input_tokens", "Input Tokens"),
    PART_OUTPUT: ("output_tokens", "Output Tokens"),
    PART_CACHE_READ: ("cache_read_input_tokens", "Input Tokens, Cache Read"),
    PART_CACHE_WRITE_5M: (
        "cache_creation.ephemeral_5m_input_tokens",
        "Input Tokens, Cache Write (5m)",
    ),
    PART_CACHE_WRITE_1H: (
        "cache_creation.ephemeral_1h_input_tokens",
        "Input Tokens, Cache Write (1h)",
    ),
}
_FILTERS = {
    "api_key_ids": "api_key_id",
    "workspace_ids": "workspace_id",
    "models": "model",
    "service_tiers": "service_tier",
    "context_window": "context_window",
    "inference_geos": "inference_geo",
    "account_ids": "account_id",
    "service_account_ids": "service_account_id",
}


def context_window(c: Call) -> str:
    return "200k-1M" if c.input_tokens // max(c.requests, 1) > 200_000 else "0-200k"


def _dim(c: Call, name: str) -> Any:
    if name == "context_window":
        return context_window(c)
    if name == "service_tier":
        return "batch" if c.batch else c.service_tier
    if name == "inference_geo":
        return "global"
    if name in ("account_id", "service_account_id"):
        return None
    return getattr(c, name)


def authenticate_admin(request: Request) -> Response | None:
    key = api_key(request)
    if key is None:
        return anthropic_error(401, "x-api-key header is required", type="authentication_error")
    if not is_anthropic_admin(key):
        return anthropic_error(401, "invalid x-api-key", type="authentication_error")
    if "anthropic-version" not in request.headers:
        return anthropic_error(400, "anthropic-version: header is required")
    return None


class _Query:
    def __init__(
        self, request: Request, state: SimState, groups: tuple[str, ...], cost: bool
    ) -> None:
        qp = request.query_params
        raw_start = qp.get("starting_at")
        if not raw_start:
            raise reports.ParamError("starting_at", "starting_at: Field required")
        start = reports.parse_rfc3339(raw_start, "starting_at")
        raw_end = qp.get("ending_at")
        end = reports.parse_rfc3339(raw_end, "ending_at") if raw_end else None
        if end is not None and end <= start:
            raise reports.ParamError("ending_at", "ending_at must be after starting_at")
        width_name = qp.get("bucket_width", "1d")
        allowed = ("1d",) if cost else tuple(reports.WIDTHS)
        if width_name not in allowed:
            raise reports.ParamError(
                "bucket_width",
                f"bucket_width: Input should be {' or '.join(repr(a) for a in allowed)}",
            )
        default, maximum = COST_LIMIT if cost else reports.USAGE_LIMITS[width_name]
        limit = reports.parse_limit(qp, default, maximum)
        self.group_by = reports.check_group_by(reports.multi(qp, "group_by"), groups, "group_by[]")
        self.filters = (
            {}
            if cost
            else {
                dim: set(vals)
                for name, dim in _FILTERS.items()
                if (vals := reports.multi(qp, name))
            }
        )
        page = reports.parse_anthropic_cursor(qp.get("page"))
        self.win = reports.window(
            start, end, int(state.clock()), reports.WIDTHS[width_name], limit, page
        )

    def keep(self, c: Call) -> bool:
        return all(_dim(c, dim) in vals for dim, vals in self.filters.items())


def _page(win: reports.Window, buckets: list[dict[str, Any]]) -> dict[str, Any]:
    nxt = reports.anthropic_cursor(win.next_start) if win.next_start is not None else None
    return {"data": buckets, "has_more": win.has_more, "next_page": nxt}


def _bucket(start: int, width: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "starting_at": reports.rfc3339(start),
        "ending_at": reports.rfc3339(start + width),
        "results": results,
    }


def _sort_key(dims: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple("" if d is None else str(d) for d in dims)


def _bad(exc: reports.ParamError) -> Response:
    return anthropic_error(400, str(exc))


def _usage_item(calls: list[Call], dims: dict[str, Any]) -> dict[str, Any]:
    return {
        "uncached_input_tokens": sum(c.uncached_input_tokens for c in calls),
        "cache_creation": {
            "ephemeral_1h_input_tokens": sum(c.cache_write_1h for c in calls),
            "ephemeral_5m_input_tokens": sum(c.cache_write_5m for c in calls),
        },
        "cache_read_input_tokens": sum(c.cached_input_tokens for c in calls),
        "output_tokens": sum(c.output_tokens for c in calls),
        "server_tool_use": {"web_search_requests": 0},
        **dims,
    }


async def usage_messages(request: Request, state: SimState, body: Any) -> Response:
    denied = authenticate_admin(request)
    if denied is not None:
        return denied
    try:
        q = _Query(request, state, USAGE_GROUPS, cost=False)
    except reports.ParamError as exc:
        return _bad(exc)
    calls = [c for c in state.ledger.select("anthropic", ("messages",)) if q.keep(c)]
    grouped = reports.bucketize(
        calls, q.win, lambda c: tuple(_dim(c, g) if g in q.group_by else None for g in USAGE_GROUPS)
    )
    buckets = []
    for start in q.win.starts:
        by_dims = grouped.get(start, {})
        results = [
            _usage_item(by_dims[d], dict(zip(USAGE_GROUPS, d, strict=True)))
            for d in sorted(by_dims, key=_sort_key)
        ]
        buckets.append(_bucket(start, q.win.width, results))
    return JSONResponse(_page(q.win, buckets))


def cents(nanos: int) -> str:
    """Nano-USD as Anthropic's decimal string in cents (exact, no exponent)."""
    d = (Decimal(nanos) / Decimal(10_000_000)).normalize()
    return format(d, "f")


def _cost_item(
    nanos: int, workspace_id: str | None, desc: tuple[Any, ...] | None
) -> dict[str, Any]:
    item: dict[str, Any] = {"currency": "USD", "amount": cents(nanos), "workspace_id": workspace_id}
    if desc is None:
        item.update(
            description=None,
            cost_type=None,
            context_window=None,
            model=None,
            service_tier=None,
            token_type=None,
            inference_geo=None,
        )
        return item
    model, part, cw, tier = desc
    token_type, label = TOKEN_TYPE[part]
    name = catalog.ANTHROPIC_MODELS.get(model, model)
    item.update(
        description=f"{name} Usage - {label}",
        cost_type="tokens",
        context_window=cw,
        model=model,
        service_tier=tier,
        token_type=token_type,
        inference_geo="global",
    )
    return item


async def cost_report(request: Request, state: SimState, body: Any) -> Response:
    denied = authenticate_admin(request)
    if denied is not None:
        return denied
    try:
        q = _Query(request, state, COST_GROUPS, cost=True)
    except reports.ParamError as exc:
        return _bad(exc)
    by_ws = "workspace_id" in q.group_by
    by_desc = "description" in q.group_by
    grouped = reports.bucketize(
        state.ledger.select("anthropic", ("messages",)),
        q.win,
        lambda c: c.workspace_id if by_ws else None,
    )
    buckets = []
    for start in q.win.starts:
        results = []
        by_ws_calls = grouped.get(start, {})
        for ws in sorted(by_ws_calls, key=lambda w: w or ""):
            calls = by_ws_calls[ws]
            if not by_desc:
                results.append(_cost_item(sum(c.cost_nanousd for c in calls), ws, None))
                continue
            rows: dict[tuple[Any, ...], int] = {}
            for c in calls:
                qty = c.part_tokens()
                for part, nanos in c.cost_parts().items():
                    if nanos == 0 and qty[part] == 0:
                        continue
                    key = (c.model, part, context_window(c), _dim(c, "service_tier"))
                    rows[key] = rows.get(key, 0) + nanos
            for key in sorted(rows, key=_sort_key):
                results.append(_cost_item(rows[key], ws, key))
        buckets.append(_bucket(start, q.win.width, results))
    return JSONResponse(_page(q.win, buckets))
