"""OpenAI organization usage and costs (admin API) → canonical records.

Endpoints (``Authorization: Bearer <admin key>``, plus ``OpenAI-Organization``
and ``OpenAI-Project`` when the credential names them):

- ``GET /v1/organization/usage/completions`` grouped by project, user, API
  key, model, batch and service tier;
- ``GET /v1/organization/usage/embeddings`` grouped by project, user, API key, model;
- ``GET /v1/organization/costs`` grouped by project, API key and line item.

Queries use ``bucket_width=1d`` and walk ``next_page`` until ``has_more`` is false.

Token semantics: OpenAI's ``input_tokens`` already includes cached tokens
(``input_tokens = input_cached_tokens + input_cache_write_tokens +
input_uncached_tokens``), which is the canonical meaning, so it is kept as is;
``input_cached_tokens`` → ``cached_input_tokens``, ``input_cache_write_tokens``
(absent in the legacy shape: 0) → ``cache_creation_input_tokens``;
``num_model_requests`` → ``request_count``. OpenAI's ``user_id`` is an OpenAI
user, not a Metis user: it goes to ``metadata.openai_user_id``.
Costs: ``amount.value`` is a JSON number in dollars, parsed as Decimal
(never a float). See `metis.ingest.providers.base` for how costs are assigned.
"""

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from metis.credentials import Credential
from metis.errors import MetisError
from metis.ingest.providers.base import (
    CostItem,
    UsageItem,
    amount_usd,
    opt_bool,
    opt_str,
    report_parser,
    rows,
    token_count,
    unix_time,
)
from metis.ingest.providers.http import AdminHTTP
from metis.money import to_nanousd

PROVIDER = "openai"
USAGE_STREAMS = ("usage.completions", "usage.embeddings")
COST_STREAM = "costs"
_PATHS = {
    "usage.completions": "/v1/organization/usage/completions",
    "usage.embeddings": "/v1/organization/usage/embeddings",
    "costs": "/v1/organization/costs",
}
_GROUP_BY = {
    "usage.completions": ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier"),
    "usage.embeddings": ("project_id", "user_id", "api_key_id", "model"),
    "costs": ("project_id", "api_key_id", "line_item"),
}
MAX_PAGES = 1000
_TEXT = ("project_id", "user_id", "api_key_id", "model", "service_tier")


def headers(cred: Credential, secret: str) -> dict[str, str]:
    """Auth headers of an OpenAI admin call."""
    h = {"Authorization": f"Bearer {secret}", "Accept": "application/json"}
    if cred.org_id:
        h["OpenAI-Organization"] = cred.org_id
    if cred.project_id:
        h["OpenAI-Project"] = cred.project_id
    return h


def _ts(v: Any) -> datetime:
    return unix_time(v, "openai report: bucket time")


def _int(v: Any) -> int:
    return token_count(v, "openai usage report")


async def fetch_pages(
    http: AdminHTTP, stream: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Every page of one stream for ``[start, end)``; raises if any page fails."""
    base: list[tuple[str, str | int]] = [
        ("start_time", int(start.timestamp())),
        ("end_time", int(end.timestamp())),
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
            raise MetisError(f"openai {stream}: response is not a usage page")
        pages.append(data)
        if not data.get("has_more"):
            return pages
        page = data.get("next_page")
        if not page:
            raise MetisError(f"openai {stream}: has_more without next_page")
    raise MetisError(f"openai {stream}: more than {MAX_PAGES} pages in one window")


@report_parser("openai usage report")
def normalize_usage(stream: str, pages: Sequence[dict[str, Any]]) -> list[UsageItem]:
    """Usage result rows of completions/embeddings pages as `UsageItem` s."""
    items: list[UsageItem] = []
    for page in pages:
        for bucket, results in rows(page):
            b0, b1 = _ts(bucket["start_time"]), _ts(bucket["end_time"])
            for r in results:
                inp = _int(r.get("input_tokens"))
                cached = _int(r.get("input_cached_tokens"))
                cache_write = _int(r.get("input_cache_write_tokens"))
                if "input_uncached_tokens" in r and r["input_uncached_tokens"] is not None:
                    uncached = _int(r["input_uncached_tokens"])
                else:
                    uncached = inp - cached - cache_write
                if cached + cache_write > inp:
                    raise MetisError(
                        f"openai usage report: cached ({cached}) + cache write ({cache_write}) "
                        f"tokens exceed input_tokens ({inp}), which includes them"
                    )
                out = _int(r.get("output_tokens"))
                text = {k: opt_str(r.get(k), f"openai usage report: {k}") for k in _TEXT}
                batch = opt_bool(r.get("batch"), "openai usage report: batch")
                dims = {g: batch if g == "batch" else text[g] for g in _GROUP_BY[stream]}
                meta: dict[str, Any] = {}
                if text["user_id"] is not None:
                    meta["openai_user_id"] = text["user_id"]
                items.append(
                    UsageItem(
                        stream=stream,
                        bucket_start=b0,
                        bucket_end=b1,
                        granularity="1d",
                        dims=dims,
                        model_raw=text["model"],
                        input_tokens=inp,
                        output_tokens=out,
                        cached_input_tokens=cached,
                        cache_creation_input_tokens=cache_write,
                        input_audio_tokens=_int(r.get("input_audio_tokens")),
                        output_audio_tokens=_int(r.get("output_audio_tokens")),
                        request_count=_int(r.get("num_model_requests")),
                        provider_project_id=text["project_id"],
                        provider_api_key_id=text["api_key_id"],
                        service_tier=text["service_tier"],
                        batch=batch,
                        token_parts={
                            "input": uncached,
                            "cached_input": cached,
                            "cache_write": cache_write,
                            "output": out,
                            "all_input": inp,
                        },
                        match={
                            "project_id": text["project_id"],
                            "api_key_id": text["api_key_id"],
                        },
                        metadata=meta,
                    )
                )
    return items


# Line items look like "<model>, <kind>" (e.g. "gpt-4o-2024-08-06, cached input");
# the kind names which token count the cost is for.
_KINDS = {
    "input": "input",
    "uncached input": "input",
    "input_tokens": "all_input",
    "cached input": "cached_input",
    "cached_input": "cached_input",
    "input_cached_tokens": "cached_input",
    "cache write": "cache_write",
    "cached write": "cache_write",
    "input_cache_write_tokens": "cache_write",
    "output": "output",
    "output_tokens": "output",
}


def parse_line_item(line_item: str | None, models: set[str]) -> tuple[str | None, str | None]:
    """(model, token part) of a line item; either is None when not recognised."""
    if not line_item:
        return None, None
    text = line_item.strip()
    model: str | None = None
    kind_text = text
    if ", " in text:
        head, _, tail = text.rpartition(", ")
        # "<model>, <known kind>" names a model even when no usage row has it yet:
        # then nothing matches and the cost stays a cost-only record of that model.
        if head in models or tail.strip().lower() in _KINDS:
            model, kind_text = head, tail
    if model is None:
        for m in sorted(models, key=len, reverse=True):
            if text.startswith(m):
                model, kind_text = m, text[len(m) :].strip(" ,-:")
                break
    return model, _KINDS.get(kind_text.strip().lower())


@report_parser("openai costs")
def normalize_costs(pages: Sequence[dict[str, Any]], usage: Sequence[UsageItem]) -> list[CostItem]:
    """Cost rows as `CostItem` s, matched by project/API key (and the line item's model)."""
    models = {u.model_raw for u in usage if u.model_raw}
    items: list[CostItem] = []
    for page in pages:
        for bucket, results in rows(page):
            b0, b1 = _ts(bucket["start_time"]), _ts(bucket["end_time"])
            for r in results:
                amount = r.get("amount") or {}
                currency = str(amount.get("currency", "usd")).lower()
                if currency != "usd":
                    raise MetisError(f"openai costs: unsupported currency {currency[:20]!r}")
                value = amount.get("value")
                if value is None:
                    continue
                value = amount_usd(value, "openai costs: amount.value")
                text = {
                    k: opt_str(r.get(k), f"openai costs: {k}")
                    for k in ("project_id", "api_key_id", "line_item")
                }
                model, part = parse_line_item(text["line_item"], models)
                items.append(
                    CostItem(
                        stream=COST_STREAM,
                        bucket_start=b0,
                        bucket_end=b1,
                        amount_nanousd=to_nanousd(value),
                        dims={g: text[g] for g in _GROUP_BY["costs"]},
                        match={"project_id": text["project_id"], "api_key_id": text["api_key_id"]},
                        model=model,
                        token_part=part,
                        label=text["line_item"],
                        provider_project_id=text["project_id"],
                        provider_api_key_id=text["api_key_id"],
                        metadata={
                            k: r[k]
                            for k in ("quantity", "quantity_unit")
                            if isinstance(r.get(k), int | Decimal | str) and len(str(r[k])) <= 100
                        },
                    )
                )
    return items


async def fetch_window(
    http: AdminHTTP, start: datetime, end: datetime
) -> tuple[list[UsageItem], list[CostItem], int]:
    """All usage and cost rows of ``[start, end)``: (usage, costs, pages fetched)."""
    usage: list[UsageItem] = []
    n = 0
    for stream in USAGE_STREAMS:
        pages = await fetch_pages(http, stream, start, end)
        n += len(pages)
        usage += normalize_usage(stream, pages)
    cost_pages = await fetch_pages(http, COST_STREAM, start, end)
    n += len(cost_pages)
    return usage, normalize_costs(cost_pages, usage), n


async def check(http: AdminHTTP, cred: Credential, now: datetime) -> str:
    """One cheap authenticated call; returns a short description of what answered."""
    if "usage_admin" in cred.purposes:
        start = int(now.timestamp()) - 86400
        await http.get_json(_PATHS["usage.completions"], [("start_time", start), ("limit", 1)])
        return "organization usage API answered"
    data = await http.get_json("/v1/models", [])
    n = len(data.get("data", [])) if isinstance(data, dict) else 0
    return f"models API answered ({n} models)"
