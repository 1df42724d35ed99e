"""Property: for any grouping, bucket width and page size, the admin reports
partition the ground truth exactly (every call counted once, in the right group)."""

import json
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from metis.money import cents_to_nanousd, to_nanousd
from metis.simulator import create_app
from metis.simulator.reports import rfc3339

DAY = 86400
NOW = 1_790_000_000 - 1_790_000_000 % DAY + 13 * 3600  # a fixed "now": 13:00 UTC
START = NOW - NOW % DAY - 2 * DAY


@pytest.fixture(scope="module")
def client() -> Iterator[tuple[TestClient, list[dict[str, Any]]]]:
    """A simulator at a fixed clock with 2 days of history and 40 served calls."""
    app = create_app(seed=9, history_days=2, clock=lambda: float(NOW))
    rnd = random.Random(7)
    with TestClient(app) as c:
        for i in range(40):
            ts = str(rnd.randrange(START, NOW))
            if i % 2:
                r = c.post(
                    "/v1/chat/completions",
                    headers={"authorization": f"Bearer sk-proj-prop-{i % 3}", "x-sim-time": ts},
                    json={
                        "model": rnd.choice(["gpt-4o-mini", "o4-mini"]),
                        "messages": [{"role": "user", "content": "x" * rnd.randrange(9000)}],
                    },
                )
            else:
                r = c.post(
                    "/v1/messages",
                    headers={
                        "x-api-key": f"sk-ant-api03-prop-{i % 3}",
                        "anthropic-version": "2023-06-01",
                        "x-sim-time": ts,
                    },
                    json={
                        "model": "claude-haiku-4-5-20251001",
                        "max_tokens": 50,
                        "system": [
                            {
                                "type": "text",
                                "text": "y" * 20000,  # 5000 tokens: above Haiku 4.5's cache minimum
                                "cache_control": {"type": "ephemeral"},
                            }
                        ],
                        "messages": [{"role": "user", "content": str(i)}],
                    },
                )
            assert r.status_code == 200
        calls = c.get("/_sim/calls").json()["calls"]
        yield c, calls


def _walk(
    c: TestClient, path: str, params: list[tuple[str, Any]], headers: dict[str, str]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    page = None
    while True:
        r = c.get(path, params=params + ([("page", page)] if page else []), headers=headers)
        assert r.status_code == 200, r.text
        body = json.loads(r.text, parse_float=Decimal)  # money stays exact
        out += body["data"]
        if not body["has_more"]:
            return out
        page = body["next_page"]


OA_DIMS = ["project_id", "user_id", "api_key_id", "model", "batch", "service_tier"]
WIDTH_LIMITS = {"1d": 31, "1h": 168, "1m": 1440}


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    groups=st.lists(st.sampled_from(OA_DIMS), unique=True),
    width=st.sampled_from(sorted(WIDTH_LIMITS)),
    limit_frac=st.floats(0.01, 1.0),
)
def test_openai_completions_partition(
    client: Any, groups: list[str], width: str, limit_frac: float
) -> None:
    c, calls = client
    limit = max(1, int(WIDTH_LIMITS[width] * limit_frac))
    buckets = _walk(
        c,
        "/v1/organization/usage/completions",
        [
            ("start_time", START),
            ("end_time", NOW),
            ("bucket_width", width),
            ("limit", limit),
            *[("group_by", g) for g in groups],
        ],
        {"authorization": "Bearer sk-admin-prop"},
    )
    got: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for b in buckets:
        for r in b["results"]:
            for d in OA_DIMS:
                assert (r[d] is None) == (d not in groups)
            key = (b["start_time"] // DAY, *(r[g] for g in groups if g in ("api_key_id", "model")))
            acc = got[key]
            acc[0] += r["num_model_requests"]
            acc[1] += r["input_tokens"]
            acc[2] += r["input_cached_tokens"]
            acc[3] += r["output_tokens"]
    want: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for call in calls:
        if call["provider"] != "openai" or call["kind"] != "completions":
            continue
        if not START <= call["ts"] < NOW:
            continue
        key = (call["ts"] // DAY, *(call[g] for g in groups if g in ("api_key_id", "model")))
        acc = want[key]
        acc[0] += call["requests"]
        acc[1] += call["input_tokens"]
        acc[2] += call["cached_input_tokens"]
        acc[3] += call["output_tokens"]
    assert dict(got) == dict(want)


AN_DIMS = [
    "api_key_id",
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
    "account_id",
    "service_account_id",
]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    groups=st.lists(st.sampled_from(AN_DIMS), unique=True),
    width=st.sampled_from(sorted(WIDTH_LIMITS)),
    limit_frac=st.floats(0.01, 1.0),
    cost_groups=st.lists(st.sampled_from(["workspace_id", "description"]), unique=True),
)
def test_anthropic_reports_partition(
    client: Any, groups: list[str], width: str, limit_frac: float, cost_groups: list[str]
) -> None:
    c, calls = client
    h = {"x-api-key": "sk-ant-admin01-prop", "anthropic-version": "2023-06-01"}
    limit = max(1, int(WIDTH_LIMITS[width] * limit_frac))
    buckets = _walk(
        c,
        "/v1/organizations/usage_report/messages",
        [
            ("starting_at", rfc3339(START)),
            ("ending_at", rfc3339(NOW)),
            ("bucket_width", width),
            ("limit", limit),
            *[("group_by[]", g) for g in groups],
        ],
        h,
    )
    got: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for b in buckets:
        day = datetime.fromisoformat(b["starting_at"].replace("Z", "+00:00"))
        for r in b["results"]:
            for d in ("api_key_id", "workspace_id", "model"):
                assert (r[d] is None) == (d not in groups)
            key = (day.date(), *(r[g] for g in groups if g in ("api_key_id", "model")))
            cc = r["cache_creation"]
            acc = got[key]
            acc[0] += (
                r["uncached_input_tokens"]
                + r["cache_read_input_tokens"]
                + cc["ephemeral_5m_input_tokens"]
                + cc["ephemeral_1h_input_tokens"]
            )
            acc[1] += r["cache_read_input_tokens"]
            acc[2] += r["output_tokens"]
    want: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    cost_want: dict[tuple[Any, ...], int] = defaultdict(int)
    for call in calls:
        if call["provider"] != "anthropic" or not START <= call["ts"] < NOW:
            continue
        day = datetime.fromtimestamp(call["ts"], UTC).date()
        key = (day, *(call[g] for g in groups if g in ("api_key_id", "model")))
        acc = want[key]
        acc[0] += call["input_tokens"]
        acc[1] += call["cached_input_tokens"]
        acc[2] += call["output_tokens"]
        ws = call["workspace_id"] if "workspace_id" in cost_groups else None
        cost_want[(rfc3339(call["ts"] - call["ts"] % DAY), ws)] += call["cost_nanousd"]
    assert dict(got) == dict(want)
    cost_buckets = _walk(
        c,
        "/v1/organizations/cost_report",
        [
            ("starting_at", rfc3339(START)),
            ("ending_at", rfc3339(NOW)),
            ("limit", 1),
            *[("group_by[]", g) for g in cost_groups],
        ],
        h,
    )
    cost_got: dict[tuple[Any, ...], int] = defaultdict(int)
    for b in cost_buckets:
        for r in b["results"]:
            cost_got[(b["starting_at"], r["workspace_id"])] += cents_to_nanousd(r["amount"])
            assert (r["token_type"] is None) == ("description" not in cost_groups)
    assert dict(cost_got) == dict(cost_want)


def test_openai_costs_partition(client: Any) -> None:
    c, calls = client
    for groups in ([], ["project_id"], ["line_item"], ["api_key_id", "line_item"]):
        buckets = _walk(
            c,
            "/v1/organization/costs",
            [
                ("start_time", START),
                ("end_time", NOW),
                ("limit", 2),
                *[("group_by", g) for g in groups],
            ],
            {"authorization": "Bearer sk-admin-prop"},
        )
        got = sum(to_nanousd(r["amount"]["value"]) for b in buckets for r in b["results"])
        want = sum(
            x["cost_nanousd"] for x in calls if x["provider"] == "openai" and START <= x["ts"] < NOW
        )
        assert got == want
