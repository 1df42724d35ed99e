"""OpenAI admin API: organization usage (completions, embeddings) and costs.

``GET /v1/organization/usage/completions``, ``GET /v1/organization/usage/embeddings``
and ``GET /v1/organization/costs``, answering only admin keys (``sk-admin-…``)
with the ``page`` / ``bucket`` / result objects of the OpenAI API reference.

Usage semantics (OpenAI's): ``input_tokens = input_cached_tokens +
input_cache_write_tokens + input_uncached_tokens``; all simulated input is text,
so ``input_text_tokens = input_uncached_tokens`` and
``input_cached_text_tokens = input_cached_tokens``; ``output_text_tokens =
output_tokens`` (reasoning included). The simulator never reports audio or
image tokens (always 0), nor cache writes for OpenAI.

Costs: ``amount.value`` is a JSON number in dollars with every digit of the
exact nano-USD sum (``currency: "usd"``). With ``group_by=line_item`` each
model's cost is split into ``"<model>, input"``, ``"<model>, cached input"``
and ``"<model>, output"`` line items with ``quantity`` in tokens; the split
parts sum exactly to the model's cost. Ungrouped, ``line_item``,
``quantity`` and ``quantity_unit`` are null.
"""

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from metis.simulator import reports
from metis.simulator.http import JSONResponse, bearer, openai_error
from metis.simulator.keys import is_openai_admin
from metis.simulator.ledger import (
    PART_CACHE_READ,
    PART_CACHE_WRITE_1H,
    PART_CACHE_WRITE_5M,
    PART_OUTPUT,
    PART_UNCACHED,
    Call,
    usd_json_number,
)
from metis.simulator.state import SimState

COMPLETIONS_GROUPS = ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier")
EMBEDDINGS_GROUPS = ("project_id", "user_id", "api_key_id", "model")
COSTS_GROUPS = ("project_id", "line_item", "api_key_id")
COSTS_LIMIT = (7, 180)
MAX_TIME = 253_402_300_799  # 9999-12-31T23:59:59Z
LINE_ITEM = {
    PART_UNCACHED: "input",
    PART_CACHE_READ: "cached input",
    PART_CACHE_WRITE_5M: "cache write",
    PART_CACHE_WRITE_1H: "cache write",
    PART_OUTPUT: "output",
}


def authenticate_admin(request: Request) -> Response | None:
    """None when the request carries an admin key, else OpenAI's 401 envelope."""
    key = bearer(request.headers)
    if key is None:
        return openai_error(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    if not is_openai_admin(key):
        return openai_error(
            401,
            "You have insufficient permissions for this operation. Missing scopes: "
            "api.usage.read. The organization usage and costs endpoints require an "
            "Admin API key (sk-admin-...).",
            code="insufficient_permissions" if key.startswith("sk-") else "invalid_api_key",
        )
    return None


def _int_param(request: Request, name: str, required: bool) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        if required:
            raise reports.ParamError(name, f"Missing required parameter: '{name}'.")
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise reports.ParamError(name, f"Invalid '{name}': expected an integer.") from exc
    if not 0 <= value <= MAX_TIME:
        raise reports.ParamError(name, f"Invalid '{name}': out of range.")
    return value


class _Query:
    def __init__(
        self, request: Request, state: SimState, groups: tuple[str, ...], costs: bool
    ) -> None:
        qp = request.query_params
        start = _int_param(request, "start_time", True)
        assert start is not None
        end = _int_param(request, "end_time", False)
        width_name = qp.get("bucket_width", "1d")
        allowed = ("1d",) if costs else tuple(reports.WIDTHS)
        if width_name not in allowed:
            raise reports.ParamError(
                "bucket_width", f"Invalid 'bucket_width': must be one of {', '.join(allowed)}."
            )
        default, maximum = COSTS_LIMIT if costs else reports.USAGE_LIMITS[width_name]
        limit = reports.parse_limit(qp, default, maximum)
        self.group_by = reports.check_group_by(reports.multi(qp, "group_by"), groups, "group_by")
        self.project_ids = set(reports.multi(qp, "project_ids"))
        self.api_key_ids = set(reports.multi(qp, "api_key_ids"))
        self.user_ids = set() if costs else set(reports.multi(qp, "user_ids"))
        self.models = set() if costs else set(reports.multi(qp, "models"))
        batch = qp.get("batch")
        if batch not in (None, "true", "false"):
            raise reports.ParamError("batch", "Invalid 'batch': expected true or false.")
        self.batch = None if batch is None else batch == "true"
        page = reports.parse_openai_cursor(qp.get("page"))
        self.win = reports.window(
            start, end, int(state.clock()), reports.WIDTHS[width_name], limit, page
        )

    def keep(self, c: Call) -> bool:
        return (
            (not self.project_ids or c.project_id in self.project_ids)
            and (not self.api_key_ids or c.api_key_id in self.api_key_ids)
            and (not self.user_ids or c.user_id in self.user_ids)
            and (not self.models or c.model in self.models)
            and (self.batch is None or c.batch == self.batch)
        )


def _dims(c: Call, group_by: tuple[str, ...], fields: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(c, f) if f in group_by else None for f in fields)


def _page(win: reports.Window, buckets: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "object": "page",
        "data": buckets,
        "has_more": win.has_more,
        "next_page": reports.openai_cursor(win.next_start) if win.next_start is not None else None,
    }


def _bucket(start: int, width: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "bucket", "start_time": start, "end_time": start + width, "results": results}


def _sort_key(dims: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple("" if d is None else str(d) for d in dims)


def _completions_result(calls: list[Call], dims: tuple[Any, ...]) -> dict[str, Any]:
    inp = sum(c.input_tokens for c in calls)
    cached = sum(c.cached_input_tokens for c in calls)
    write = sum(c.cache_creation_input_tokens for c in calls)
    out = sum(c.output_tokens for c in calls)
    uncached = inp - cached - write
    project_id, user_id, api_key_id, model, batch, tier = dims
    return {
        "object": "organization.usage.completions.result",
        "input_tokens": inp,
        "input_cached_tokens": cached,
        "input_cache_write_tokens": write,
        "input_uncached_tokens": uncached,
        "output_tokens": out,
        "input_text_tokens": uncached,
        "output_text_tokens": out,
        "input_cached_text_tokens": cached,
        "input_audio_tokens": 0,
        "input_cached_audio_tokens": 0,
        "output_audio_tokens": 0,
        "input_image_tokens": 0,
        "input_cached_image_tokens": 0,
        "output_image_tokens": 0,
        "num_model_requests": sum(c.requests for c in calls),
        "project_id": project_id,
        "user_id": user_id,
        "api_key_id": api_key_id,
        "model": model,
        "batch": batch,
        "service_tier": tier,
    }


def _embeddings_result(calls: list[Call], dims: tuple[Any, ...]) -> dict[str, Any]:
    project_id, user_id, api_key_id, model = dims
    return {
        "object": "organization.usage.embeddings.result",
        "input_tokens": sum(c.input_tokens for c in calls),
        "num_model_requests": sum(c.requests for c in calls),
        "project_id": project_id,
        "user_id": user_id,
        "api_key_id": api_key_id,
        "model": model,
    }


def _bad(exc: reports.ParamError) -> Response:
    return openai_error(400, str(exc), param=exc.param)


async def _usage(request: Request, state: SimState, kind: str) -> Response:
    denied = authenticate_admin(request)
    if denied is not None:
        return denied
    groups = COMPLETIONS_GROUPS if kind == "completions" else EMBEDDINGS_GROUPS
    try:
        q = _Query(request, state, groups, costs=False)
    except reports.ParamError as exc:
        return _bad(exc)
    calls = [c for c in state.ledger.select("openai", (kind,)) if q.keep(c)]
    grouped = reports.bucketize(calls, q.win, lambda c: _dims(c, q.group_by, groups))
    make = _completions_result if kind == "completions" else _embeddings_result
    buckets = []
    for start in q.win.starts:
        by_dims = grouped.get(start, {})
        results = [make(by_dims[d], d) for d in sorted(by_dims, key=_sort_key)]
        buckets.append(_bucket(start, q.win.width, results))
    return JSONResponse(_page(q.win, buckets))


async def usage_completions(request: Request, state: SimState, body: Any) -> Response:
    return await _usage(request, state, "completions")


async def usage_embeddings(request: Request, state: SimState, body: Any) -> Response:
    return await _usage(request, state, "embeddings")


async def costs(request: Request, state: SimState, body: Any) -> Response:
    denied = authenticate_admin(request)
    if denied is not None:
        return denied
    try:
        q = _Query(request, state, COSTS_GROUPS, costs=True)
    except reports.ParamError as exc:
        return _bad(exc)
    calls = [c for c in state.ledger.select("openai", ("completions", "embeddings")) if q.keep(c)]
    by_project = "project_id" in q.group_by
    by_key = "api_key_id" in q.group_by
    by_line = "line_item" in q.group_by
    grouped = reports.bucketize(
        calls,
        q.win,
        lambda c: (c.project_id if by_project else None, c.api_key_id if by_key else None),
    )
    buckets = []
    for start in q.win.starts:
        results = []
        by_dims = grouped.get(start, {})
        for dims in sorted(by_dims, key=_sort_key):
            project_id, api_key_id = dims
            if not by_line:
                nanos = sum(c.cost_nanousd for c in by_dims[dims])
                results.append(_cost_result(nanos, None, project_id, api_key_id, None))
                continue
            items: dict[str, list[int]] = {}
            for c in by_dims[dims]:
                parts, qty = c.cost_parts(), c.part_tokens()
                for part, nanos in parts.items():
                    if nanos == 0 and qty[part] == 0:
                        continue
                    acc = items.setdefault(f"{c.model}, {LINE_ITEM[part]}", [0, 0])
                    acc[0] += nanos
                    acc[1] += qty[part]
            for line in sorted(items):
                nanos, quantity = items[line]
                results.append(_cost_result(nanos, line, project_id, api_key_id, quantity))
        buckets.append(_bucket(start, q.win.width, results))
    return JSONResponse(_page(q.win, buckets))


def _cost_result(
    nanos: int,
    line_item: str | None,
    project_id: str | None,
    api_key_id: str | None,
    quantity: int | None,
) -> dict[str, Any]:
    return {
        "object": "organization.costs.result",
        "amount": {"value": usd_json_number(nanos), "currency": "usd"},
        "line_item": line_item,
        "project_id": project_id,
        "api_key_id": api_key_id,
        "quantity": quantity,
        "quantity_unit": "tokens" if quantity is not None else None,
    }
