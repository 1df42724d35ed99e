"""Random calls with several keys and models, then every admin report (all pages,
all bucket widths, several groupings) adds up exactly to the simulator's ground truth."""

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from metis.money import cents_to_nanousd, to_nanousd
from metis.simulator.keys import (
    anthropic_identity,
    new_anthropic_key,
    new_openai_key,
    openai_identity,
)
from metis.simulator.reports import rfc3339
from tests.plugins.simulator import Simulator

DAY = 86400
OPENAI_CHAT = ("gpt-4o-mini", "gpt-4.1-nano", "o4-mini")
CLAUDES = ("claude-haiku-4-5-20251001", "claude-opus-4-5-20251101")
BIG = "lorem ipsum " * 1500  # ~4500 tokens: cacheable on both models (minimum 4096)


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _decimal_json(r: httpx.Response) -> Any:
    import json

    assert r.status_code == 200, r.text
    return json.loads(r.text, parse_float=Decimal)


@pytest.fixture
def scenario(simulator_factory: Any) -> Iterator[tuple[Simulator, int, int]]:
    """A simulator with 2 days of history plus ~80 random served calls over 3 days."""
    sim: Simulator = simulator_factory(seed=3, history_days=2)
    rnd = random.Random(42)
    now = int(sim.state.clock())
    start = now - now % DAY - 2 * DAY
    okeys = [new_openai_key() for _ in range(3)]
    akeys = [new_anthropic_key() for _ in range(3)]
    with httpx.Client(base_url=sim.url, timeout=10) as http:
        for i in range(80):
            ts = rnd.randrange(start, now)
            text = (BIG if rnd.random() < 0.3 else "") + f"question {i}"
            if rnd.random() < 0.5:
                key = rnd.choice(okeys)
                hdr = {"authorization": f"Bearer {key}", "x-sim-time": str(ts)}
                if rnd.random() < 0.2:
                    r = http.post(
                        "/v1/embeddings",
                        headers=hdr,
                        json={"model": "text-embedding-3-small", "input": [text, "x"]},
                    )
                else:
                    r = http.post(
                        "/v1/chat/completions",
                        headers=hdr,
                        json={
                            "model": rnd.choice(OPENAI_CHAT),
                            "messages": [{"role": "user", "content": text}],
                        },
                    )
            else:
                key = rnd.choice(akeys)
                hdr = {"x-api-key": key, "anthropic-version": "2023-06-01", "x-sim-time": str(ts)}
                block: dict[str, Any] = {"type": "text", "text": BIG}
                if rnd.random() < 0.5:
                    block["cache_control"] = {"type": "ephemeral", "ttl": rnd.choice(["5m", "1h"])}
                r = http.post(
                    "/v1/messages",
                    headers=hdr,
                    json={
                        "model": rnd.choice(CLAUDES),
                        "max_tokens": 64,
                        "system": [block],
                        "messages": [{"role": "user", "content": text}],
                    },
                )
            assert r.status_code == 200, r.text
    yield sim, start, now - now % DAY + DAY


def _walk(
    http: httpx.Client, path: str, params: list[tuple[str, Any]], headers: dict[str, str]
) -> list[dict[str, Any]]:
    """Every bucket of every page."""
    buckets: list[dict[str, Any]] = []
    page: str | None = None
    for _ in range(1000):
        r = http.get(path, params=params + ([("page", page)] if page else []), headers=headers)
        body = _decimal_json(r)
        buckets += body["data"]
        if not body["has_more"]:
            assert body["next_page"] is None
            return buckets
        page = body["next_page"]
        assert isinstance(page, str) and page
    raise AssertionError("pagination did not end")


def _truth(sim: Simulator, provider: str, kind: str) -> dict[tuple[str, str, str], dict[str, int]]:
    out: dict[tuple[str, str, str], dict[str, int]] = {}
    for row in sim.ground_truth()["rows"]:
        if row["provider"] == provider and row["kind"] == kind:
            out[(row["api_key_id"], row["model"], row["day"])] = row
    return out


@pytest.mark.parametrize(("width", "limit"), [("1d", 1), ("1d", 31), ("1h", 7), ("1m", 1440)])
def test_openai_usage_equals_ground_truth(scenario: Any, width: str, limit: int) -> None:
    sim, start, end = scenario
    headers = {"authorization": f"Bearer {sim.openai_admin_key}"}
    with httpx.Client(base_url=sim.url, timeout=30) as http:
        for kind in ("completions", "embeddings"):
            params: list[tuple[str, Any]] = [
                ("start_time", start),
                ("end_time", end),
                ("bucket_width", width),
                ("limit", limit),
                ("group_by", "api_key_id"),
                ("group_by", "model"),
            ]
            buckets = _walk(http, f"/v1/organization/usage/{kind}", params, headers)
            width_s = {"1d": DAY, "1h": 3600, "1m": 60}[width]
            assert [b["start_time"] for b in buckets] == list(range(start, end, width_s))
            got: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
            for b in buckets:
                assert b["end_time"] - b["start_time"] == width_s
                for r in b["results"]:
                    assert r["object"] == f"organization.usage.{kind}.result"
                    acc = got[(r["api_key_id"], r["model"], _day(b["start_time"]))]
                    acc["requests"] += r["num_model_requests"]
                    acc["input_tokens"] += r["input_tokens"]
                    if kind == "completions":
                        acc["cached_input_tokens"] += r["input_cached_tokens"]
                        acc["output_tokens"] += r["output_tokens"]
                        assert r["input_tokens"] == (
                            r["input_cached_tokens"]
                            + r["input_cache_write_tokens"]
                            + r["input_uncached_tokens"]
                        )
            truth = _truth(sim, "openai", kind)
            assert set(got) == set(truth)
            for k, acc in got.items():
                for f, v in acc.items():
                    assert v == truth[k][f], (k, f)


def test_openai_costs_equal_ground_truth(scenario: Any) -> None:
    sim, start, end = scenario
    headers = {"authorization": f"Bearer {sim.openai_admin_key}"}
    truth_rows = [r for r in sim.ground_truth()["rows"] if r["provider"] == "openai"]
    by_key_day: dict[tuple[str, str], int] = defaultdict(int)
    for r in truth_rows:
        by_key_day[(r["api_key_id"], r["day"])] += r["cost_nanousd"]
    with httpx.Client(base_url=sim.url, timeout=30) as http:
        for groups in (["api_key_id"], ["api_key_id", "line_item", "project_id"]):
            params: list[tuple[str, Any]] = [
                ("start_time", start),
                ("end_time", end),
                ("limit", 1),
                *[("group_by", g) for g in groups],
            ]
            got: dict[tuple[str, str], int] = defaultdict(int)
            for b in _walk(http, "/v1/organization/costs", params, headers):
                for r in b["results"]:
                    assert r["object"] == "organization.costs.result"
                    assert r["amount"]["currency"] == "usd"
                    assert isinstance(r["amount"]["value"], Decimal | int)
                    got[(r["api_key_id"], _day(b["start_time"]))] += to_nanousd(
                        Decimal(r["amount"]["value"])
                    )
                    if "line_item" in groups:
                        assert r["quantity_unit"] == "tokens" and r["quantity"] >= 0
                        assert r["project_id"].startswith("proj_")
                    else:
                        assert r["line_item"] is None and r["quantity"] is None
            assert dict(got) == dict(by_key_day)
        # ungrouped total over the whole window
        params = [("start_time", start), ("end_time", end), ("limit", 180)]
        total = sum(
            to_nanousd(Decimal(r["amount"]["value"]))
            for b in _walk(http, "/v1/organization/costs", params, headers)
            for r in b["results"]
        )
        assert total == sim.ground_truth()["providers"]["openai"]["cost_nanousd"]


@pytest.mark.parametrize(("width", "limit"), [("1d", 1), ("1d", 31), ("1h", 13), ("1m", 1440)])
def test_anthropic_usage_equals_ground_truth(scenario: Any, width: str, limit: int) -> None:
    sim, start, end = scenario
    headers = {"x-api-key": sim.anthropic_admin_key, "anthropic-version": "2023-06-01"}
    params: list[tuple[str, Any]] = [
        ("starting_at", rfc3339(start)),
        ("ending_at", rfc3339(end)),
        ("bucket_width", width),
        ("limit", limit),
        ("group_by[]", "api_key_id"),
        ("group_by[]", "model"),
    ]
    with httpx.Client(base_url=sim.url, timeout=30) as http:
        buckets = _walk(http, "/v1/organizations/usage_report/messages", params, headers)
    got: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for b in buckets:
        day = b["starting_at"][:10]
        for r in b["results"]:
            acc = got[(r["api_key_id"], r["model"], day)]
            creation = (
                r["cache_creation"]["ephemeral_5m_input_tokens"]
                + r["cache_creation"]["ephemeral_1h_input_tokens"]
            )
            acc["input_tokens"] += (
                r["uncached_input_tokens"] + r["cache_read_input_tokens"] + creation
            )
            acc["cached_input_tokens"] += r["cache_read_input_tokens"]
            acc["cache_creation_input_tokens"] += creation
            acc["output_tokens"] += r["output_tokens"]
            assert r["workspace_id"] is None and r["service_tier"] is None
    truth = _truth(sim, "anthropic", "messages")
    assert set(got) == set(truth)
    assert any(t["cached_input_tokens"] for t in truth.values())
    assert any(t["cache_creation_input_tokens"] for t in truth.values())
    for k, acc in got.items():
        for f, v in acc.items():
            assert v == truth[k][f], (k, f)


def test_anthropic_cost_report_equals_ground_truth(scenario: Any) -> None:
    sim, start, end = scenario
    headers = {"x-api-key": sim.anthropic_admin_key, "anthropic-version": "2023-06-01"}
    ws_of = {}
    for c in sim.calls():
        if c["provider"] == "anthropic":
            ws_of[c["api_key_id"]] = c["workspace_id"]
    want: dict[tuple[str, str], int] = defaultdict(int)
    for r in sim.ground_truth()["rows"]:
        if r["provider"] == "anthropic":
            want[(ws_of[r["api_key_id"]], r["day"])] += r["cost_nanousd"]
    with httpx.Client(base_url=sim.url, timeout=30) as http:
        for groups, limit in ((["workspace_id"], 1), (["workspace_id", "description"], 31)):
            params: list[tuple[str, Any]] = [
                ("starting_at", rfc3339(start)),
                ("ending_at", rfc3339(end)),
                ("limit", limit),
                *[("group_by[]", g) for g in groups],
            ]
            got: dict[tuple[str, str], int] = defaultdict(int)
            token_types = set()
            for b in _walk(http, "/v1/organizations/cost_report", params, headers):
                for r in b["results"]:
                    assert r["currency"] == "USD" and isinstance(r["amount"], str)
                    got[(r["workspace_id"], b["starting_at"][:10])] += cents_to_nanousd(r["amount"])
                    token_types.add(r["token_type"])
            assert dict(got) == dict(want)
            if "description" in groups:
                assert {
                    "uncached_input_tokens",
                    "output_tokens",
                    "cache_read_input_tokens",
                    "cache_creation.ephemeral_5m_input_tokens",
                    "cache_creation.ephemeral_1h_input_tokens",
                } <= token_types
            else:
                assert token_types == {None}


def test_history_is_deterministic_per_date(simulator_factory: Any) -> None:
    a = simulator_factory(seed=5, history_days=3).ground_truth()
    b = simulator_factory(seed=5, history_days=3).ground_truth()
    c = simulator_factory(seed=6, history_days=3).ground_truth()
    assert a == b and a["total"]["requests"] > 0
    assert a != c
    days = {r["day"] for r in a["rows"]}
    assert len(days) == 3
    hist_key = openai_identity("sk-proj-sim-history-5-0").api_key_id
    assert any(r["api_key_id"] == hist_key for r in a["rows"])
    assert any(
        r["api_key_id"] == anthropic_identity("sk-ant-api03-sim-history-5-1").api_key_id
        for r in a["rows"]
    )


def test_filters_select_exactly_the_matching_calls(scenario: Any) -> None:
    sim, start, end = scenario
    calls = sim.calls()
    oa_calls = [c for c in calls if c["provider"] == "openai" and c["kind"] == "completions"]
    an_calls = [c for c in calls if c["provider"] == "anthropic"]
    key, model = oa_calls[0]["api_key_id"], oa_calls[-1]["model"]
    project = oa_calls[1]["project_id"]
    oh = {"authorization": f"Bearer {sim.openai_admin_key}"}
    ah = {"x-api-key": sim.anthropic_admin_key, "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=sim.url, timeout=30) as http:
        for params, pred in (
            ([("api_key_ids", key)], lambda c: c["api_key_id"] == key),
            ([("models[]", model)], lambda c: c["model"] == model),
            (
                [("project_ids", project), ("models", model)],
                lambda c: c["project_id"] == project and c["model"] == model,
            ),
            ([("batch", "true")], lambda c: False),
        ):
            buckets = _walk(
                http,
                "/v1/organization/usage/completions",
                [("start_time", start), ("end_time", end), ("limit", 31), *params],
                oh,
            )
            got = sum(r["input_tokens"] for b in buckets for r in b["results"])
            assert got == sum(c["input_tokens"] for c in oa_calls if pred(c))
        costs = _walk(
            http,
            "/v1/organization/costs",
            [("start_time", start), ("end_time", end), ("api_key_ids[]", key)],
            oh,
        )
        assert sum(to_nanousd(r["amount"]["value"]) for b in costs for r in b["results"]) == sum(
            c["cost_nanousd"] for c in calls if c["provider"] == "openai" and c["api_key_id"] == key
        )
        akey, ws, amodel = (
            an_calls[0]["api_key_id"],
            an_calls[1]["workspace_id"],
            an_calls[2]["model"],
        )
        for params, pred in (
            ([("api_key_ids[]", akey)], lambda c: c["api_key_id"] == akey),
            (
                [("workspace_ids[]", ws), ("models[]", amodel)],
                lambda c: c["workspace_id"] == ws and c["model"] == amodel,
            ),
            ([("service_tiers[]", "batch")], lambda c: False),
            ([("context_window[]", "0-200k")], lambda c: True),
        ):
            buckets = _walk(
                http,
                "/v1/organizations/usage_report/messages",
                [
                    ("starting_at", rfc3339(start)),
                    ("ending_at", rfc3339(end)),
                    ("limit", 31),
                    *params,
                ],
                ah,
            )
            got = sum(r["output_tokens"] for b in buckets for r in b["results"])
            assert got == sum(c["output_tokens"] for c in an_calls if pred(c))
