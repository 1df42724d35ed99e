"""The simulator's responses have the documented shapes: field names, JSON
types, nesting, nulls, event order, pagination and parameter limits, checked
against fixtures written from the providers' references
(``tests/fixtures/provider_api/``, sources in its READMEs)."""

import base64
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from metis.simulator.reports import rfc3339
from tests.plugins.simulator import Simulator

FIX = Path(__file__).parents[1] / "fixtures" / "provider_api"
DAY = 86400
CLAUDE = "claude-haiku-4-5-20251001"
LONG = "cacheable words " * 1200  # ~4800 tokens: above Claude Haiku 4.5's 4096 cache minimum
DIMS = frozenset(
    {
        "project_id",
        "user_id",
        "api_key_id",
        "model",
        "batch",
        "service_tier",
        "line_item",
        "quantity",
        "quantity_unit",
        "workspace_id",
        "account_id",
        "service_account_id",
        "context_window",
        "inference_geo",
        "description",
        "cost_type",
        "token_type",
        "next_page",
        "content",
        "refusal",
        "finish_reason",
        "stop_reason",
        "stop_sequence",
        "usage",
        "logprobs",
    }
)


def load(name: str) -> Any:
    return json.loads((FIX / name).read_text())


def check(actual: Any, expected: Any, *, extra: Iterable[str] = (), path: str = "$") -> None:
    """``actual`` has ``expected``'s shape: same keys (plus allowed ``extra``), same JSON
    types; a null in the fixture allows any value; a null in ``actual`` is allowed only
    for documented nullable fields (`DIMS`)."""
    extra = frozenset(extra)
    key = path.rsplit(".", 1)[-1]
    if expected is None:
        return
    if actual is None:
        assert key in DIMS, f"{path}: null where the reference has {expected!r}"
        return
    if isinstance(expected, bool):
        assert isinstance(actual, bool), f"{path}: {actual!r} is not a boolean"
    elif isinstance(expected, int | float):
        assert isinstance(actual, int | float) and not isinstance(actual, bool), path
        if isinstance(expected, int) and key not in ("value",):
            assert isinstance(actual, int), f"{path}: {actual!r} is not an integer"
    elif isinstance(expected, str):
        assert isinstance(actual, str), f"{path}: {actual!r} is not a string"
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: not an array"
        if expected:
            for i, item in enumerate(actual):
                check(item, expected[0], extra=extra, path=f"{path}[{i}]")
    elif isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: not an object"
        missing = set(expected) - set(actual)
        assert not missing, f"{path}: missing {sorted(missing)}"
        unexpected = set(actual) - set(expected) - extra
        assert not unexpected, f"{path}: unexpected {sorted(unexpected)}"
        for k, v in expected.items():
            check(actual[k], v, extra=extra, path=f"{path}.{k}")


def sse_events(text: str) -> list[tuple[str | None, str]]:
    """(event name, data) per SSE event; events are separated by a blank line."""
    assert text.endswith("\n\n")
    out = []
    for block in text.strip("\n").split("\n\n"):
        name, data = None, ""
        for line in block.split("\n"):
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data = value
            else:
                raise AssertionError(f"unexpected SSE line {line!r}")
        out.append((name, data))
    return out


@pytest.fixture
def http(simulator: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=simulator.url, timeout=10) as c:
        yield c


def oa(sim: Simulator, key: str | None = None) -> dict[str, str]:
    return {"authorization": f"Bearer {key or sim.openai_key}"}


def an(sim: Simulator, key: str | None = None) -> dict[str, str]:
    return {"x-api-key": key or sim.anthropic_key, "anthropic-version": "2023-06-01"}


# --- OpenAI inference ---------------------------------------------------------------------


def test_openai_chat_completion_object(simulator: Simulator, http: httpx.Client) -> None:
    r = http.post(
        "/v1/chat/completions",
        headers=oa(simulator),
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    check(r.json(), load("inference/openai_chat_completion.json"))
    assert r.headers["x-request-id"]


def test_openai_tool_call_object(simulator: Simulator, http: httpx.Client) -> None:
    r = http.post(
        "/v1/chat/completions",
        headers=oa(simulator),
        json={
            "model": "gpt-4o-mini",
            "tool_choice": "required",
            "messages": [{"role": "user", "content": "weather?"}],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_current_weather",
                        "parameters": {
                            "type": "object",
                            "properties": {"location": {"type": "string"}},
                        },
                    },
                }
            ],
        },
    )
    body = r.json()
    check(
        body,
        load("inference/openai_chat_completion_tool_calls.json"),
        extra={
            "refusal",
            "annotations",
            "prompt_tokens_details",
            "audio_tokens",
            "service_tier",
            "system_fingerprint",
        },
    )
    assert json.loads(body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "location": "sim"
    }


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_stream_chunks(
    simulator: Simulator, http: httpx.Client, include_usage: bool
) -> None:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    r = http.post("/v1/chat/completions", headers=oa(simulator), json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert all(name is None for name, _ in events)
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(d) for _, d in events[:-1]]
    role, *content, finish = chunks[:-1] if include_usage else chunks
    ref = load("inference/openai_chat_completion_chunks.json")
    extra = {"service_tier", "refusal", *(("usage",) if include_usage else ())}
    check(role, ref[0], extra=extra)
    for c in content:
        check(c, ref[1], extra=extra)
    check(finish, ref[2], extra=extra)
    assert len({c["id"] for c in chunks}) == 1
    if include_usage:
        assert all(c["usage"] is None for c in chunks[:-1])
        check(
            chunks[-1],
            load("inference/openai_chat_completion_usage_chunk.json"),
            extra={"service_tier"},
        )
        assert chunks[-1]["choices"] == []
    else:
        assert all("usage" not in c for c in chunks)


def test_openai_embeddings_models_and_error(simulator: Simulator, http: httpx.Client) -> None:
    r = http.post(
        "/v1/embeddings",
        headers=oa(simulator),
        json={"model": "text-embedding-3-small", "input": "hello world"},
    )
    check(r.json(), load("inference/openai_embeddings.json"))
    check(
        http.get("/v1/models", headers=oa(simulator)).json(), load("inference/openai_models.json")
    )
    r = http.get("/v1/models", headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401
    check(r.json(), load("inference/openai_error_401.json"))


# --- Anthropic inference ------------------------------------------------------------------

USAGE_EXTRA = {
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "cache_creation",
    "service_tier",
}


def test_anthropic_message_object(simulator: Simulator, http: httpx.Client) -> None:
    r = http.post(
        "/v1/messages",
        headers=an(simulator),
        json={
            "model": CLAUDE,
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
            "system": [{"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}],
        },
    )
    assert r.status_code == 200 and r.headers["request-id"]
    body = r.json()
    check(body, load("inference/anthropic_message.json"), extra=USAGE_EXTRA)
    check(body["usage"], load("inference/anthropic_message_usage_cache.json"))
    assert body["usage"]["cache_creation_input_tokens"] > 0


def test_anthropic_tool_use_object(simulator: Simulator, http: httpx.Client) -> None:
    r = http.post(
        "/v1/messages",
        headers=an(simulator),
        json={
            "model": CLAUDE,
            "max_tokens": 100,
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "messages": [{"role": "user", "content": "weather in SF?"}],
            "tools": [
                {
                    "name": "get_weather",
                    "input_schema": {
                        "type": "object",
                        "properties": {
                            "location": {"type": "string"},
                            "unit": {"enum": ["celsius", "fahrenheit"]},
                        },
                    },
                }
            ],
        },
    )
    body = r.json()
    check(body, load("inference/anthropic_message_tool_use.json"), extra=USAGE_EXTRA)
    assert body["content"][0]["input"] == {"location": "sim", "unit": "celsius"}


def _collapse(names: list[str | None]) -> list[str | None]:
    out: list[str | None] = []
    for n in names:
        if not (out and out[-1] == n == "content_block_delta"):
            out.append(n)
    return out


@pytest.mark.parametrize(
    ("fixture", "tools"),
    [("anthropic_stream_text.sse", False), ("anthropic_stream_tool_use.sse", True)],
)
def test_anthropic_stream_events(
    simulator: Simulator, http: httpx.Client, fixture: str, tools: bool
) -> None:
    body: dict[str, Any] = {
        "model": CLAUDE,
        "max_tokens": 100,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    if tools:
        body["tools"] = [
            {
                "name": "get_weather",
                "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
            }
        ]
        body["tool_choice"] = {"type": "any"}
    r = http.post("/v1/messages", headers=an(simulator), json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    ours = sse_events(r.text)
    ref = sse_events((FIX / "inference" / fixture).read_text())
    assert _collapse([n for n, _ in ours]) == _collapse([n for n, _ in ref])
    ref_by_name = {n: json.loads(d) for n, d in ref}
    for name, data in ours:
        obj = json.loads(data)
        assert obj["type"] == name
        assert name is not None
        # the current MessageDeltaUsage also carries the cumulative input_tokens
        check(obj, ref_by_name[name], extra={*USAGE_EXTRA, "input_tokens"})
    # message_delta usage is cumulative and final: it equals a non-streamed call's usage
    delta = json.loads(next(d for n, d in ours if n == "message_delta"))
    body.pop("stream")
    full = http.post("/v1/messages", headers=an(simulator), json=body).json()
    assert delta["usage"]["output_tokens"] == full["usage"]["output_tokens"]
    assert delta["usage"]["input_tokens"] == full["usage"]["input_tokens"]


def test_anthropic_errors_and_models(simulator: Simulator, http: httpx.Client) -> None:
    r = http.post(
        "/v1/messages",
        headers=an(simulator, "sk-wrong"),
        json={"model": CLAUDE, "max_tokens": 5, "messages": []},
    )
    assert r.status_code == 401
    check(r.json(), load("inference/anthropic_error_401.json"))
    check(r.json(), load("anthropic_error_4xx.json"))
    r = http.post(
        "/v1/messages",
        headers={"x-api-key": simulator.anthropic_key},
        json={"model": CLAUDE, "max_tokens": 5, "messages": []},
    )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = http.post(
        "/v1/messages",
        headers=an(simulator),
        json={"model": CLAUDE, "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 400 and "max_tokens" in r.json()["error"]["message"]
    check(
        http.get("/v1/models", headers=an(simulator)).json(),
        load("inference/anthropic_models.json"),
    )


# --- admin reports ------------------------------------------------------------------------


@pytest.fixture
def day0(simulator: Simulator, http: httpx.Client) -> int:
    """Midnight of yesterday; a few calls of each kind made then (x-sim-time)."""
    now = int(time.time())
    d0 = now - now % DAY - DAY
    t = str(d0 + 3600)
    for key in (simulator.openai_key, simulator.openai_key_2):
        h = {**oa(simulator, key), "x-sim-time": t}
        assert (
            http.post(
                "/v1/chat/completions",
                headers=h,
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": LONG}]},
            ).status_code
            == 200
        )
        assert (
            http.post(
                "/v1/embeddings", headers=h, json={"model": "text-embedding-3-small", "input": "x"}
            ).status_code
            == 200
        )
    for key in (simulator.anthropic_key, simulator.anthropic_key_2):
        for _ in range(2):
            assert (
                http.post(
                    "/v1/messages",
                    headers={**an(simulator, key), "x-sim-time": t},
                    json={
                        "model": CLAUDE,
                        "max_tokens": 20,
                        "system": [
                            {
                                "type": "text",
                                "text": LONG,
                                "cache_control": {"type": "ephemeral", "ttl": "1h"},
                            }
                        ],
                        "messages": [{"role": "user", "content": "q"}],
                    },
                ).status_code
                == 200
            )
    return d0


def _admin_oa(sim: Simulator) -> dict[str, str]:
    return oa(sim, sim.openai_admin_key)


def _admin_an(sim: Simulator) -> dict[str, str]:
    return an(sim, sim.anthropic_admin_key)


def test_openai_usage_pages(simulator: Simulator, http: httpx.Client, day0: int) -> None:
    grouped = load("openai_result_objects_grouped.json")
    base = {"start_time": day0, "end_time": day0 + DAY}
    ungrouped = http.get(
        "/v1/organization/usage/completions", params=base, headers=_admin_oa(simulator)
    ).json()
    check(ungrouped, load("openai_usage_completions_page1.json"))
    assert ungrouped["data"][0]["results"][0]["api_key_id"] is None
    groups = grouped["UsageCompletionsResult"]
    params = [
        *base.items(),
        *[
            ("group_by", g)
            for g in ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier")
        ],
    ]
    page = http.get(
        "/v1/organization/usage/completions", params=params, headers=_admin_oa(simulator)
    ).json()
    check(page, load("openai_usage_completions_page2_DERIVED.json"))
    assert len(page["data"][0]["results"]) == 2
    for r in page["data"][0]["results"]:
        check(r, groups["example"])
        assert all(r[f] is not None for f in groups["required"])
        assert all(r[f] is not None for f in groups["example"])  # fully grouped: no nulls
        assert r["input_cached_tokens"] > 0
    emb = http.get(
        "/v1/organization/usage/embeddings", params=base, headers=_admin_oa(simulator)
    ).json()
    check(emb, load("openai_usage_embeddings.json"))
    emb = http.get(
        "/v1/organization/usage/embeddings",
        params=[
            *base.items(),
            ("group_by", "api_key_id"),
            ("group_by", "model"),
            ("group_by", "project_id"),
            ("group_by", "user_id"),
        ],
        headers=_admin_oa(simulator),
    ).json()
    for r in emb["data"][0]["results"]:
        check(r, grouped["UsageEmbeddingsResult"]["example"])


def test_openai_costs_pages(simulator: Simulator, http: httpx.Client, day0: int) -> None:
    base = {"start_time": day0, "end_time": day0 + DAY}
    page = http.get("/v1/organization/costs", params=base, headers=_admin_oa(simulator)).json()
    check(page, load("openai_costs.json"))
    page = http.get(
        "/v1/organization/costs",
        params=[*base.items(), ("group_by", "line_item"), ("group_by", "project_id")],
        headers=_admin_oa(simulator),
    ).json()
    # the current CostsResult also has api_key_id (null unless grouped by it)
    check(page, load("openai_costs_grouped_line_item_DERIVED.json"), extra={"api_key_id"})
    check(
        page["data"][0]["results"][0],
        load("openai_result_objects_grouped.json")["CostsResult"]["example"],
        extra={"api_key_id"},
    )
    items = {r["line_item"] for r in page["data"][0]["results"]}
    assert {
        "gpt-4o-mini-2024-07-18, input",
        "gpt-4o-mini-2024-07-18, cached input",
        "gpt-4o-mini-2024-07-18, output",
        "text-embedding-3-small, input",
    } == items


def test_openai_parameters_follow_the_contract(simulator: Simulator, http: httpx.Client) -> None:
    contracts = load("openai_request_contracts.json")
    now = int(time.time())
    far = now - 400 * DAY
    h = _admin_oa(simulator)
    for path in ("completions", "embeddings"):
        c = contracts[f"GET /v1/organization/usage/{path}"]["query_parameters"]
        assert c["bucket_width"]["schema"]["enum"] == ["1m", "1h", "1d"]
        for width, (default, maximum) in {"1d": (7, 31), "1h": (24, 168), "1m": (60, 1440)}.items():
            assert (
                f"`bucket_width={width}`: default: {default}, max: {maximum}"
                in c["limit"]["description"]
            )
            url = f"/v1/organization/usage/{path}"
            p = {"start_time": far, "bucket_width": width}
            page = http.get(url, params=p, headers=h).json()
            assert len(page["data"]) == default and page["has_more"] is True
            assert page["next_page"].startswith("page_")
            assert (
                len(http.get(url, params={**p, "limit": maximum}, headers=h).json()["data"])
                == maximum
            )
            r = http.get(url, params={**p, "limit": maximum + 1}, headers=h)
            assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
        for g in c["group_by"]["schema"]["items"]["enum"]:
            assert (
                http.get(
                    f"/v1/organization/usage/{path}",
                    params={"start_time": now, "group_by": g},
                    headers=h,
                ).status_code
                == 200
            )
        r = http.get(
            f"/v1/organization/usage/{path}",
            params={"start_time": now, "group_by": "nope"},
            headers=h,
        )
        assert r.status_code == 400
        r = http.get(f"/v1/organization/usage/{path}", headers=h)
        assert r.status_code == 400 and r.json()["error"]["param"] == "start_time"
    c = contracts["GET /v1/organization/costs"]["query_parameters"]
    assert c["limit"]["schema"]["default"] == 7 and "between 1 and 180" in c["limit"]["description"]
    p = {"start_time": far}
    assert len(http.get("/v1/organization/costs", params=p, headers=h).json()["data"]) == 7
    assert (
        len(
            http.get("/v1/organization/costs", params={**p, "limit": 180}, headers=h).json()["data"]
        )
        == 180
    )
    assert (
        http.get("/v1/organization/costs", params={**p, "limit": 181}, headers=h).status_code == 400
    )
    assert (
        http.get(
            "/v1/organization/costs", params={**p, "bucket_width": "1h"}, headers=h
        ).status_code
        == 400
    )
    for g in c["group_by"]["schema"]["items"]["enum"]:
        assert (
            http.get(
                "/v1/organization/costs", params={**p, "group_by": g, "limit": 1}, headers=h
            ).status_code
            == 200
        )
    # auth: inference keys and Anthropic admin keys are refused with OpenAI's envelope
    for key in (simulator.openai_key, simulator.anthropic_admin_key):
        r = http.get("/v1/organization/costs", params=p, headers=oa(simulator, key))
        assert r.status_code == 401
        check(r.json(), load("inference/openai_error_401.json"))
    assert http.get("/v1/organization/costs", params=p).status_code == 401


def test_anthropic_usage_report(simulator: Simulator, http: httpx.Client, day0: int) -> None:
    base = [("starting_at", rfc3339(day0)), ("ending_at", rfc3339(day0 + 2 * DAY))]
    page = http.get(
        "/v1/organizations/usage_report/messages", params=base, headers=_admin_an(simulator)
    ).json()
    check(page, load("anthropic_usage_messages_ungrouped_DERIVED.json"))
    # the empty day after the calls is still listed, with no results
    assert page["data"][1]["starting_at"] == rfc3339(day0 + DAY)
    assert page["data"][1]["results"] == []
    dims = ["api_key_id", "workspace_id", "model", "service_tier", "context_window"]
    page = http.get(
        "/v1/organizations/usage_report/messages",
        params=[*base, *[("group_by[]", d) for d in dims]],
        headers=_admin_an(simulator),
    ).json()
    # legacy example + the current docs' extra dimensions (null unless grouped)
    check(
        page,
        load("anthropic_usage_messages.json"),
        extra={"account_id", "service_account_id", "inference_geo"},
    )
    check(page, load("anthropic_usage_messages_v2_all_dimensions.json"))
    rows = page["data"][0]["results"]
    assert len(rows) == 2
    for r in rows:
        assert r["api_key_id"].startswith("apikey_01") and r["workspace_id"].startswith("wrkspc_01")
        assert r["cache_creation"]["ephemeral_1h_input_tokens"] > 0  # first call wrote (1h)
        assert r["cache_read_input_tokens"] > 0  # second call read
        assert (r["service_tier"], r["context_window"]) == ("standard", "0-200k")


def test_anthropic_cost_report(simulator: Simulator, http: httpx.Client, day0: int) -> None:
    base = [("starting_at", rfc3339(day0)), ("ending_at", rfc3339(day0 + DAY))]
    page = http.get(
        "/v1/organizations/cost_report", params=base, headers=_admin_an(simulator)
    ).json()
    check(page, load("anthropic_cost_report_ungrouped_DERIVED.json"))
    page = http.get(
        "/v1/organizations/cost_report",
        params=[*base, ("group_by[]", "workspace_id"), ("group_by[]", "description")],
        headers=_admin_an(simulator),
    ).json()
    check(page, load("anthropic_cost_report.json"), extra={"inference_geo"})
    check(page, load("anthropic_cost_report_v2.json"))
    for r in page["data"][0]["results"]:
        assert r["currency"] == "USD" and r["cost_type"] == "tokens"
        assert r["description"].startswith("Claude Haiku 4.5 Usage - ")
        float(r["amount"])  # a decimal string (in cents)
        assert "e" not in r["amount"].lower()


def test_anthropic_parameters_follow_the_contract(simulator: Simulator, http: httpx.Client) -> None:
    c = load("anthropic_request_contracts.json")
    usage = c["GET /v1/organizations/usage_report/messages"]["query_parameters"]
    far = rfc3339(int(time.time()) - 400 * DAY)
    h = _admin_an(simulator)
    url = "/v1/organizations/usage_report/messages"
    for width, lim in usage["limit"]["defaults_and_max"].items():
        p = {"starting_at": far, "bucket_width": width}
        page = http.get(url, params=p, headers=h).json()
        assert len(page["data"]) == lim["default"] and page["has_more"] is True
        token = base64.b64decode(page["next_page"].removeprefix("page_")).decode()
        assert token == page["data"][-1]["ending_at"]  # like the docs' example cursor
        nxt = http.get(url, params={**p, "page": page["next_page"]}, headers=h).json()
        assert nxt["data"][0]["starting_at"] == page["data"][-1]["ending_at"]
        assert (
            len(http.get(url, params={**p, "limit": lim["max"]}, headers=h).json()["data"])
            == lim["max"]
        )
        assert http.get(url, params={**p, "limit": lim["max"] + 1}, headers=h).status_code == 400
    # every documented dimension except speed (needs the fast-mode beta; not simulated)
    for g in usage["group_by[]"]["current_docs_enum"]:
        if g == "speed":
            continue
        assert (
            http.get(
                url, params={"starting_at": far, "group_by[]": g, "limit": 1}, headers=h
            ).status_code
            == 200
        )
    assert (
        http.get(url, params={"starting_at": far, "group_by[]": "nope"}, headers=h).status_code
        == 400
    )
    assert http.get(url, headers=h).status_code == 400  # starting_at required
    cost = c["GET /v1/organizations/cost_report"]["query_parameters"]
    url = "/v1/organizations/cost_report"
    assert (
        len(http.get(url, params={"starting_at": far}, headers=h).json()["data"])
        == cost["limit"]["default"]
    )
    assert (
        http.get(
            url, params={"starting_at": far, "limit": cost["limit"]["maximum"]}, headers=h
        ).status_code
        == 200
    )
    assert (
        http.get(
            url, params={"starting_at": far, "limit": cost["limit"]["maximum"] + 1}, headers=h
        ).status_code
        == 400
    )
    assert (
        http.get(url, params={"starting_at": far, "bucket_width": "1h"}, headers=h).status_code
        == 400
    )
    for g in cost["group_by[]"]["enum"]:
        assert (
            http.get(url, params={"starting_at": far, "group_by[]": g}, headers=h).status_code
            == 200
        )
    # auth: standard keys get 401 authentication_error in Anthropic's envelope
    for key in (simulator.anthropic_key, simulator.openai_admin_key):
        r = http.get(url, params={"starting_at": far}, headers=an(simulator, key))
        assert r.status_code == 401
        check(r.json(), load("anthropic_error_4xx.json"))
        assert r.json()["error"]["type"] == "authentication_error"
