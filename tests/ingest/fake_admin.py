"""A small stand-in for the providers' admin usage/cost APIs, for sync tests.

It serves the documented shapes (see tests/fixtures/provider_api) for OpenAI
(``/v1/organization/usage/{completions,embeddings}``, ``/v1/organization/costs``)
and Anthropic (``/v1/organizations/usage_report/messages``, ``/cost_report``)
from a list of usage rows, with small pages (results split across pages), admin
key checks, and scripted faults. Ground truth is computed from the same rows.
The shared provider simulator (issue 4) replaces it in the end-to-end tests.
"""

import asyncio
import json
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from metis.money import to_nanousd
from metis.timeutil import iso, parse_iso

# USD per token (exact decimals), by kind.
PRICES = {
    "input": Decimal("0.0000025"),
    "cached": Decimal("0.00000125"),
    "write": Decimal("0.000003"),
    "output": Decimal("0.00001"),
}


@dataclass
class Row:
    day: date
    model: str
    api_key_id: str
    project: str | None  # OpenAI project / Anthropic workspace
    uncached: int
    cached: int
    write: int
    output: int
    requests: int
    stream: str = "completions"  # or "embeddings" (OpenAI)
    billed: bool = True  # False: absent from the cost report

    @property
    def input_total(self) -> int:
        return self.uncached + self.cached + self.write

    def cost_parts(self) -> dict[str, Decimal]:
        return {
            "input": PRICES["input"] * self.uncached,
            "cached": PRICES["cached"] * self.cached,
            "write": PRICES["write"] * self.write,
            "output": PRICES["output"] * self.output,
        }


@dataclass
class Fault:
    kind: str  # "429" | "500" | "truncated" | "drop" | "401"
    times: int
    path_contains: str = ""
    retry_after: str = "0"


@dataclass
class FakeAdmin:
    provider: str
    admin_key: str
    rows: list[Row] = field(default_factory=list)
    page_size: int = 2
    faults: list[Fault] = field(default_factory=list)
    requests: list[tuple[str, dict[str, list[str]], dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay_s: float = 0.0
    hold_at: int | None = None  # hold the N-th request (1-based) until `release` is set
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    served: int = 0

    def truth(self, days: set[date] | None = None) -> dict[str, int]:
        """Exact totals (all rows, or rows of ``days``) the ledger must end up with."""
        t: dict[str, int] = defaultdict(int)
        for r in self.rows:
            if (days is not None and r.day not in days) or r.stream == "hidden":
                continue  # hidden rows are billed (cost report) but not in usage reports
            t["input_tokens"] += r.input_total
            t["output_tokens"] += r.output
            t["cached_input_tokens"] += r.cached
            t["cache_creation_input_tokens"] += r.write
            if self.provider == "openai":
                t["request_count"] += r.requests
        t["cost_nanousd"] = sum(
            to_nanousd(amount)
            for (k, amount) in self._cost_lines(None, None)
            if days is None or k[0] in days
        )
        return dict(t)

    def _cost_lines(
        self, start: date | None, end: date | None
    ) -> list[tuple[tuple[Any, ...], Decimal]]:
        agg: dict[tuple[Any, ...], Decimal] = defaultdict(Decimal)
        for r in self.rows:
            if (start is not None and end is not None and not (start <= r.day < end)) or (
                not r.billed
            ):
                continue
            for kind, amount in r.cost_parts().items():
                if amount:
                    if self.provider == "openai":
                        agg[(r.day, r.project, r.api_key_id, r.model, kind)] += amount
                    else:
                        agg[(r.day, r.project, r.model, kind)] += amount
        return sorted(agg.items(), key=lambda kv: tuple(str(x) for x in kv[0]))

    # ---- HTTP ----
    def app(self) -> Starlette:
        routes = [
            Route("/v1/organization/usage/completions", self._openai_usage),
            Route("/v1/organization/usage/embeddings", self._openai_usage),
            Route("/v1/organization/costs", self._openai_costs),
            Route("/v1/organizations/usage_report/messages", self._anthropic_usage),
            Route("/v1/organizations/cost_report", self._anthropic_costs),
        ]
        return Starlette(routes=routes)

    async def _gate(self) -> None:
        with self.lock:
            self.served += 1
            n = self.served
        if self.hold_at is not None and n == self.hold_at:
            self.held.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)

    def _pre(self, request: Request) -> Response | None:
        params: dict[str, list[str]] = defaultdict(list)
        for k, v in request.query_params.multi_items():
            params[k].append(v)
        with self.lock:
            self.requests.append((request.url.path, dict(params), dict(request.headers)))
        presented = request.headers.get("authorization") or request.headers.get("x-api-key")
        if self.provider == "openai":
            ok = request.headers.get("authorization") == f"Bearer {self.admin_key}"
        else:
            ok = (
                request.headers.get("x-api-key") == self.admin_key
                and request.headers.get("anthropic-version") == "2023-06-01"
            )
        if not ok:
            return JSONResponse(
                # like some real APIs, echo (part of) the presented key back
                {"error": {"type": "authentication_error", "message": f"invalid key {presented}"}},
                status_code=401,
            )
        with self.lock:
            for f in self.faults:
                if f.times > 0 and f.path_contains in request.url.path:
                    f.times -= 1
                    return self._fault(f)
        return None

    def _fault(self, f: Fault) -> Response:
        if f.kind == "429":
            return JSONResponse(
                {"error": {"type": "rate_limit_error", "message": "slow down"}},
                status_code=429,
                headers={"retry-after": f.retry_after},
            )
        if f.kind == "500":
            return JSONResponse({"error": {"type": "api_error", "message": "boom"}}, 500)
        if f.kind == "truncated":
            return Response(
                '{"object": "page", "data": [{"object": "buck', 200, media_type="application/json"
            )
        if f.kind == "shape":  # valid JSON, but a bucket without its time fields
            return JSONResponse(
                {"object": "page", "data": [{"results": []}], "has_more": False, "next_page": None}
            )
        if f.kind == "drop":
            raise ConnectionResetError("dropped")  # uvicorn closes the connection
        return JSONResponse({"error": {"type": "authentication_error", "message": "no"}}, 401)

    def _paginate(self, buckets: list[dict[str, Any]], page: str | None, wrap: Any) -> Any:
        flat = [(i, r) for i, b in enumerate(buckets) for r in b["results"]]
        empty = [i for i, b in enumerate(buckets) if not b["results"]]
        start = int(page.removeprefix("page_")) if page else 0
        chunk = flat[start : start + self.page_size]
        has_more = start + self.page_size < len(flat)
        out: list[dict[str, Any]] = []
        for i, r in chunk:
            if not out or out[-1]["_i"] != i:
                out.append(
                    {
                        **{k: v for k, v in buckets[i].items() if k != "results"},
                        "_i": i,
                        "results": [],
                    }
                )
            out[-1]["results"].append(r)
        if start == 0:
            for i in empty:
                out.append(
                    {
                        **{k: v for k, v in buckets[i].items() if k != "results"},
                        "_i": i,
                        "results": [],
                    }
                )
        out.sort(key=lambda b: b["_i"])
        for b in out:
            b.pop("_i")
        return wrap(out, has_more, f"page_{start + self.page_size}" if has_more else None)

    def _days(self, start: datetime, end: datetime) -> list[date]:
        d, out = start.date(), []
        while datetime(d.year, d.month, d.day, tzinfo=UTC) < end:
            out.append(d)
            d += timedelta(days=1)
        return out

    async def _openai_usage(self, request: Request) -> Response:
        await self._gate()
        if (resp := self._pre(request)) is not None:
            return resp
        q = request.query_params
        s = datetime.fromtimestamp(int(q["start_time"]), UTC)
        e = (
            datetime.fromtimestamp(int(q["end_time"]), UTC)
            if "end_time" in q
            else s + timedelta(days=1)
        )
        stream = request.url.path.rsplit("/", 1)[1]
        buckets = []
        for d in self._days(s, e):
            res = []
            for r in self.rows:
                if r.day != d or r.stream != stream:
                    continue
                item: dict[str, Any] = {
                    "object": f"organization.usage.{stream}.result",
                    "input_tokens": r.input_total,
                    "num_model_requests": r.requests,
                    "project_id": r.project,
                    "user_id": None,
                    "api_key_id": r.api_key_id,
                    "model": r.model,
                }
                if stream == "completions":
                    item.update(
                        input_cached_tokens=r.cached,
                        input_cache_write_tokens=r.write,
                        input_uncached_tokens=r.uncached,
                        output_tokens=r.output,
                        input_audio_tokens=0,
                        output_audio_tokens=0,
                        batch=False,
                        service_tier="default",
                    )
                res.append(item)
            t0 = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
            buckets.append(
                {"object": "bucket", "start_time": t0, "end_time": t0 + 86400, "results": res}
            )
        return JSONResponse(self._paginate(buckets, q.get("page"), _openai_page))

    async def _openai_costs(self, request: Request) -> Response:
        await self._gate()
        if (resp := self._pre(request)) is not None:
            return resp
        q = request.query_params
        s = datetime.fromtimestamp(int(q["start_time"]), UTC)
        e = (
            datetime.fromtimestamp(int(q["end_time"]), UTC)
            if "end_time" in q
            else s + timedelta(days=1)
        )
        names = {
            "input": "input",
            "cached": "cached input",
            "write": "cache write",
            "output": "output",
        }
        buckets = []
        for d in self._days(s, e):
            res = [
                {
                    "object": "organization.costs.result",
                    "amount": {"value": float(amount), "currency": "usd"},
                    "line_item": f"{model}, {names[kind]}",
                    "project_id": proj,
                    "api_key_id": key,
                    "quantity": None,
                    "quantity_unit": None,
                }
                for (_day, proj, key, model, kind), amount in self._cost_lines(d, d + timedelta(1))
            ]
            t0 = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
            buckets.append(
                {"object": "bucket", "start_time": t0, "end_time": t0 + 86400, "results": res}
            )
        body = self._paginate(buckets, q.get("page"), _openai_page)
        return Response(json.dumps(body), media_type="application/json")

    async def _anthropic_usage(self, request: Request) -> Response:
        await self._gate()
        if (resp := self._pre(request)) is not None:
            return resp
        q = request.query_params
        s = parse_iso(q["starting_at"])
        e = parse_iso(q["ending_at"]) if "ending_at" in q else s + timedelta(days=1)
        buckets = []
        for d in self._days(s, e):
            res = [
                {
                    "uncached_input_tokens": r.uncached,
                    "cache_creation": {
                        "ephemeral_1h_input_tokens": r.write // 3,
                        "ephemeral_5m_input_tokens": r.write - r.write // 3,
                    },
                    "cache_read_input_tokens": r.cached,
                    "output_tokens": r.output,
                    "server_tool_use": {"web_search_requests": 0},
                    "api_key_id": r.api_key_id,
                    "workspace_id": r.project,
                    "model": r.model,
                    "service_tier": "standard",
                    "context_window": "0-200k",
                }
                for r in self.rows
                if r.day == d and r.stream != "hidden"
            ]
            d0 = datetime(d.year, d.month, d.day, tzinfo=UTC)
            buckets.append(
                {"starting_at": iso(d0), "ending_at": iso(d0 + timedelta(1)), "results": res}
            )
        return JSONResponse(self._paginate(buckets, q.get("page"), _anthropic_page))

    async def _anthropic_costs(self, request: Request) -> Response:
        await self._gate()
        if (resp := self._pre(request)) is not None:
            return resp
        q = request.query_params
        s = parse_iso(q["starting_at"])
        e = parse_iso(q["ending_at"]) if "ending_at" in q else s + timedelta(days=1)
        tt = {
            "input": "uncached_input_tokens",
            "cached": "cache_read_input_tokens",
            "write": "cache_creation.ephemeral_5m_input_tokens",
            "output": "output_tokens",
        }
        buckets = []
        for d in self._days(s, e):
            res = []
            for (_day, ws, model, kind), amount in self._cost_lines(d, d + timedelta(1)):
                # writes are split 5m/1h in usage; the cost row is priced on both together
                res.append(
                    {
                        "currency": "USD",
                        "amount": str(amount * 100),  # cents, as a decimal string
                        "workspace_id": ws,
                        "description": f"{model} Usage - {kind}",
                        "cost_type": "tokens",
                        "context_window": "0-200k",
                        "model": model,
                        "service_tier": "standard",
                        "token_type": None if kind == "write" else tt[kind],
                    }
                )
            d0 = datetime(d.year, d.month, d.day, tzinfo=UTC)
            buckets.append(
                {"starting_at": iso(d0), "ending_at": iso(d0 + timedelta(1)), "results": res}
            )
        return JSONResponse(self._paginate(buckets, q.get("page"), _anthropic_page))


def _openai_page(data: list[dict[str, Any]], has_more: bool, nxt: str | None) -> dict[str, Any]:
    return {"object": "page", "data": data, "has_more": has_more, "next_page": nxt}


def _anthropic_page(data: list[dict[str, Any]], has_more: bool, nxt: str | None) -> dict[str, Any]:
    return {"data": data, "has_more": has_more, "next_page": nxt}


def generate_rows(provider: str, days: list[date], seed: int = 1) -> list[Row]:
    """Deterministic usage: a few keys, models and projects per day."""
    import random

    rnd = random.Random(seed)
    models = (
        ["gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06"]
        if provider == "openai"
        else ["claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"]
    )
    rows = []
    for d in days:
        for key in ("key_a", "key_b"):
            for m in models:
                if rnd.random() < 0.2:
                    continue
                rows.append(
                    Row(
                        day=d,
                        model=m,
                        api_key_id=key,
                        project=rnd.choice(["proj_1", "proj_2", None]),
                        uncached=rnd.randint(1, 5000),
                        cached=rnd.randint(0, 3000),
                        write=rnd.randint(0, 900),
                        output=rnd.randint(1, 2000),
                        requests=rnd.randint(1, 40),
                    )
                )
        if provider == "openai":
            rows.append(
                Row(
                    day=d,
                    model="text-embedding-3-small",
                    api_key_id="key_a",
                    project="proj_1",
                    uncached=rnd.randint(1, 9000),
                    cached=0,
                    write=0,
                    output=0,
                    requests=3,
                    stream="embeddings",
                )
            )
    return rows
