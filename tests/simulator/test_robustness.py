"""Bad input gets a 4xx in the provider's envelope, never a 500 (fuzzed)."""

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from metis.simulator import create_app

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5000) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "role",
                    "content",
                    "type",
                    "text",
                    "name",
                    "tools",
                    "messages",
                    "model",
                    "input",
                    "max_tokens",
                    "cache_control",
                    "input_schema",
                    "function",
                    "parameters",
                    "tool_choice",
                    "system",
                    "stream",
                    "ttl",
                    "dimensions",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)
MODELS = st.sampled_from(
    ["gpt-4o-mini", "o4-mini", "claude-haiku-4-5-20251001", "text-embedding-3-small", "nope"]
)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=True) as c:
        yield c


HEADERS = {
    "/v1/chat/completions": {"authorization": "Bearer sk-proj-fuzz"},
    "/v1/embeddings": {"authorization": "Bearer sk-proj-fuzz"},
    "/v1/messages": {"x-api-key": "sk-ant-api03-fuzz", "anthropic-version": "2023-06-01"},
    "/v1/messages/count_tokens": {
        "x-api-key": "sk-ant-api03-fuzz",
        "anthropic-version": "2023-06-01",
    },
    "/v1/responses": {"authorization": "Bearer sk-proj-fuzz"},
}


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(sorted(HEADERS)),
    body=JSON,
    model=MODELS,
    messages=st.lists(JSON, max_size=3),
    extra=st.dictionaries(
        st.sampled_from(
            [
                "tools",
                "tool_choice",
                "system",
                "max_tokens",
                "input",
                "stream",
                "max_completion_tokens",
                "encoding_format",
                "instructions",
                "previous_response_id",
                "text",
                "max_output_tokens",
                "include",
                "response_format",
            ]
        ),
        JSON,
        max_size=3,
    ),
)
def test_inference_never_500(
    client: TestClient, path: str, body: Any, model: str, messages: list[Any], extra: dict[str, Any]
) -> None:
    for payload in (body, {"model": model, "messages": messages, "max_tokens": 20, **extra}):
        r = client.post(path, headers=HEADERS[path], json=payload)
        assert r.status_code in (200, 400, 404), (r.status_code, r.text)
        if r.status_code != 200:
            err = r.json()
            assert "error" in err


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    params=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "start_time",
                    "end_time",
                    "bucket_width",
                    "limit",
                    "page",
                    "group_by",
                    "group_by[]",
                    "starting_at",
                    "ending_at",
                    "models[]",
                    "batch",
                    "api_key_ids",
                ]
            ),
            st.text(max_size=12)
            | st.integers(-(10**12), 10**12).map(str)
            | st.integers(-100_000, 2_000_000_000).map(str)
            | st.sampled_from(
                [
                    "1d",
                    "1h",
                    "1m",
                    "model",
                    "description",
                    "workspace_id",
                    "api_key_id",
                    "2025-01-01T00:00:00Z",
                    "0001-01-01T00:00:00Z",
                    "1969-12-31T00:00:00Z",
                    "9999-12-31T23:59:00Z",
                    "page_eA==",
                    "page_AAAAAAAAAAAAAAAAAAAAAA==",
                ]
            ),
        ),
        max_size=6,
    ),
    path=st.sampled_from(
        [
            "/v1/organization/usage/completions",
            "/v1/organization/costs",
            "/v1/organizations/usage_report/messages",
            "/v1/organizations/cost_report",
        ]
    ),
)
def test_admin_never_500(client: TestClient, params: list[tuple[str, str]], path: str) -> None:
    h = (
        {"authorization": "Bearer sk-admin-fuzz"}
        if "organization/" in path
        else {"x-api-key": "sk-ant-admin01-fuzz", "anthropic-version": "2023-06-01"}
    )
    r = client.get(path, params=params, headers=h)
    assert r.status_code in (200, 400), (r.status_code, r.text)
