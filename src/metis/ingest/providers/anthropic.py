"""Anthropic organization usage and cost reports (admin API) → canonical records.

Endpoints (``x-api-key: <admin key>``, ``anthropic-version: 2023-06-01``):

- ``GET /v1/organizations/usage_report/messages`` with ``bucket_width=1d``,
  grouped by API key, workspace, model, service tier and context window;
- ``GET /v1/organizations/cost_report`` grouped by workspace and description
  (which fills model, service tier, context window, cost and token type).

Array parameters are sent bracket-style (``group_by[]=model``), pages walked
through ``next_page`` until ``has_more`` is false.

Token semantics: the usage report splits input into ``uncached_input_tokens``,
``cache_read_input_tokens`` and ``cache_creation.{ephemeral_5m,ephemeral_1h}_input_tokens``;
canonical ``input_tokens`` is their sum, ``cached_input_tokens`` the cache
reads, ``cache_creation_input_tokens`` the two cache-write buckets.
The report has no request count, so ``request_count`` is 0 and
``metadata.requests_reported`` is false; server tool use (web search
requests), context window, inference geo and account ids go to metadata.
``service_tier = "batch"`` sets ``batch``.
Costs: ``amount`` is a decimal string in cents (``"123.45"`` = $1.2345).
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from metis.credentials import Credential
from metis.errors import MetisError
from metis.ingest.providers.base import (
    MAX_AMOUNT_USD,
    CostItem,
    UsageItem,
    amount_usd,
    iso_time,
    opt_str,
    report_parser,
    rows,
    token_count,
)
from metis.ingest.providers.http import AdminHTTP
from metis.money import cents_to_nanousd
from metis.timeutil import iso

PROVIDER = "anthropic"
ANTHROPIC_VERSION = "2023-06-01"
USAGE_STREAM = "usage.messages"
COST_STREAM = "cost_report"
_PATHS = {
    USAGE_STREAM: "/v1/organizations/usage_report/messages",
    COST_STREAM: "/v1/organizations/cost_report",
}
_GROUP_BY = {
    USAGE_STREAM: ("api_key_id", "workspace_id", "model", "service_tier", "context_window"),
    COST_STREAM: ("workspace_id", "description"),
}
_COST_DIMS = (
    "workspace_id",
    "description",
    "model",
    "cost_type",
    "token_type",
    "service_tier",
    "context_window",
    "inference_geo",
)
MAX_PAGES = 1000
PRIORITY_TIERS = frozenset({"priority", "priority_on_demand"})
_TOKEN_TYPES = {
    "uncached_input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation.ephemeral_1h_input_tokens",
    "cache_creation.ephemeral_5m_input_tokens",
}


def headers(cred: Credential, secret: str) -> dict[str, str]:
    """Auth headers of an Anthropic admin call."""
    return {
        "x-api-key": secret,
        "anthropic-version": ANTHROPIC_VERSION,
        "Accept": "application/json",
    }


def _int(v: Any) -> int:
    return token_count(v, "anthropic usage report")


def _time(v: Any) -> datetime:
    return iso_time(v, "anthropic report: bucket time")


def _text(r: dict[str, Any], keys: Sequence[str], what: str) -> dict[str, str | None]:
    return {k: opt_str(r.get(k), f"{what}: {k}") for k in keys}


_USAGE_TEXT = (
    "api_key_id",
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
    "account_id",
    "service_account_id",
)


async def fetch_pages(
    http: AdminHTTP, stream: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Every page of one report for ``[start, end)``; raises if any page fails."""
    base: list[tuple[str, str | int]] = [
        ("starting_at", iso(start)),
        ("ending_at", iso(end)),
        ("bucket_width", "1d"),
        ("limit", 31),
    ]
    base += [("group_by[]", g) for g in _GROUP_BY[stream]]
    pages: list[dict[str, Any]] = []
    page: str | None = None
    for _ in range(MAX_PAGES):
        params = base + ([("page", page)] if page else [])
        data = await http.get_json(_PATHS[stream], params)
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise MetisError(f"anthropic {stream}: response is not a report page")
        pages.append(data)
        if not data.get("has_more"):
            return pages
        page = data.get("next_page")
        if not page:
            raise MetisError(f"anthropic {stream}: has_more without next_page")
    raise MetisError(f"anthropic {stream}: more than {MAX_PAGES} pages in one window")


@report_parser("anthropic usage report")
def normalize_usage(pages: Sequence[dict[str, Any]]) -> list[UsageItem]:
    """Messages usage rows as `UsageItem` s in canonical token semantics."""
    items: list[UsageItem] = []
    for page in pages:
        for bucket, results in rows(page):
            b0, b1 = _time(bucket["starting_at"]), _time(bucket["ending_at"])
            for r in results:
                uncached = _int(r.get("uncached_input_tokens"))
                read = _int(r.get("cache_read_input_tokens"))
                cc = r.get("cache_creation") or {}
                w5 = _int(cc.get("ephemeral_5m_input_tokens"))
                w1h = _int(cc.get("ephemeral_1h_input_tokens"))
                out = _int(r.get("output_tokens"))
                text = _text(r, _USAGE_TEXT, "anthropic usage report")
                tier = text["service_tier"]
                meta: dict[str, Any] = {"requests_reported": False}
                stu = r.get("server_tool_use") or {}
                if stu.get("web_search_requests"):
                    meta["web_search_requests"] = _int(stu["web_search_requests"])
                for k in ("context_window", "inference_geo", "account_id", "service_account_id"):
                    if text[k] is not None:
                        meta[k] = text[k]
                dims: dict[str, Any] = {g: text[g] for g in _GROUP_BY[USAGE_STREAM]}
                for k in ("inference_geo", "account_id", "service_account_id"):
                    if text[k] is not None:  # only present when the server groups by them
                        dims[k] = text[k]
                items.append(
                    UsageItem(
                        stream=USAGE_STREAM,
                        bucket_start=b0,
                        bucket_end=b1,
                        granularity="1d",
                        dims=dims,
                        model_raw=text["model"],
                        input_tokens=uncached + read + w5 + w1h,
                        output_tokens=out,
                        cached_input_tokens=read,
                        cache_creation_input_tokens=w5 + w1h,
                        request_count=0,
                        provider_api_key_id=text["api_key_id"],
                        provider_workspace_id=text["workspace_id"],
                        service_tier=tier,
                        batch=None if tier is None else tier == "batch",
                        token_parts={
                            "uncached_input_tokens": uncached,
                            "output_tokens": out,
                            "cache_read_input_tokens": read,
                            "cache_creation.ephemeral_5m_input_tokens": w5,
                            "cache_creation.ephemeral_1h_input_tokens": w1h,
                        },
                        match={"workspace_id": text["workspace_id"]},
                        soft={
                            "service_tier": tier,
                            "context_window": text["context_window"],
                            "inference_geo": text["inference_geo"],
                        },
                        metadata=meta,
                        # Priority Tier costs are not in the cost report (Anthropic's
                        # usage and cost FAQ): always priced by Metis, labelled computed.
                        cost_reported=tier not in PRIORITY_TIERS,
                    )
                )
    return items


@report_parser("anthropic cost report")
def normalize_costs(pages: Sequence[dict[str, Any]]) -> list[CostItem]:
    """Cost report rows as `CostItem` s (cents strings → nano-USD, exactly)."""
    items: list[CostItem] = []
    for page in pages:
        for bucket, results in rows(page):
            b0, b1 = _time(bucket["starting_at"]), _time(bucket["ending_at"])
            for r in results:
                currency = str(r.get("currency", "USD")).upper()
                if currency != "USD":
                    raise MetisError(
                        f"anthropic cost report: unsupported currency {currency[:20]!r}"
                    )
                amount = r.get("amount")
                if amount is None:
                    continue
                cents = amount_usd(amount, "anthropic cost report: amount", MAX_AMOUNT_USD * 100)
                text = _text(r, _COST_DIMS, "anthropic cost report")
                token_type = text["token_type"]
                items.append(
                    CostItem(
                        stream=COST_STREAM,
                        bucket_start=b0,
                        bucket_end=b1,
                        amount_nanousd=cents_to_nanousd(cents),
                        dims=dict(text),
                        match={"workspace_id": text["workspace_id"]},
                        soft={
                            "service_tier": text["service_tier"],
                            "context_window": text["context_window"],
                            "inference_geo": text["inference_geo"],
                        },
                        model=text["model"],
                        token_part=token_type if token_type in _TOKEN_TYPES else None,
                        label=text["description"],
                        provider_workspace_id=text["workspace_id"],
                        service_tier=text["service_tier"],
                        metadata={
                            k: text[k] for k in ("cost_type", "token_type") if text[k] is not None
                        },
                    )
                )
    return items


async def fetch_window(
    http: AdminHTTP, start: datetime, end: datetime
) -> tuple[list[UsageItem], list[CostItem], int]:
    """All usage and cost rows of ``[start, end)``: (usage, costs, pages fetched)."""
    usage_pages = await fetch_pages(http, USAGE_STREAM, start, end)
    cost_pages = await fetch_pages(http, COST_STREAM, start, end)
    return (
        normalize_usage(usage_pages),
        normalize_costs(cost_pages),
        len(usage_pages) + len(cost_pages),
    )


async def check(http: AdminHTTP, cred: Credential, now: datetime) -> str:
    """One cheap authenticated call; returns a short description of what answered."""
    if "usage_admin" in cred.purposes:
        start = iso(now.replace(minute=0, second=0, microsecond=0))
        await http.get_json(
            _PATHS[USAGE_STREAM], [("starting_at", start), ("bucket_width", "1h"), ("limit", 1)]
        )
        return "organization usage report API answered"
    data = await http.get_json("/v1/models", [("limit", 1)])
    n = len(data.get("data", [])) if isinstance(data, dict) else 0
    return f"models API answered ({n} models)"
