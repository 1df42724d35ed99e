"""Azure OpenAI through the gateway, with the ``openai`` SDK's ``AzureOpenAI`` client.

The client points ``azure_endpoint`` at the gateway with a ``gw_`` key (sent as
``api-key``) and calls deployments; the gateway forwards to the workspace's
``azure`` credential (the simulator's Azure resource) in the credential's
path style and ``api-version``. The usage the client saw equals the record,
priced by Azure's genai-prices price, and the ground truth is exact.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import openai
import pytest
from sqlalchemy import select

from metis.db.tables import usage_records
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator

API_VERSION = "2024-10-21"


@pytest.fixture
def azure_gateway(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator
) -> tuple[GatewayServer, str]:
    g = gateway_factory(simulator.url)
    g.add_provider("azure", simulator.url, secrets.token_hex(16))
    _, secret = g.issue_key("dev", user="ana", team="ml")
    return g, secret


def _azure_client(g: GatewayServer, secret: str) -> openai.AzureOpenAI:
    c = openai.AzureOpenAI(
        azure_endpoint=g.url, api_key=secret, api_version=API_VERSION, max_retries=0
    )
    g._clients.append(c)
    return c


def _assert_recorded(r: dict[str, Any], call: dict[str, Any], usage: Any) -> None:
    cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
    assert (r["input_tokens"], r["cached_input_tokens"], r["output_tokens"]) == (
        usage.prompt_tokens,
        cached or 0,
        usage.completion_tokens,
    )
    assert (r["input_tokens"], r["output_tokens"], r["cost_nanousd"]) == (
        call["input_tokens"],
        call["output_tokens"],
        call["cost_nanousd"],
    )
    assert call["provider"] == "azure" and r["cost_nanousd"] > 0
    assert (r["provider"], r["cost_source"]) == ("azure", "computed")


def test_azure_openai_client_plain_and_streamed_calls_are_recorded_exactly(
    azure_gateway: tuple[GatewayServer, str], simulator: Simulator
) -> None:
    g, secret = azure_gateway
    client = _azure_client(g, secret)
    plain = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello, Azure."}]
    )
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Stream, please."}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    # Azure's first chunk (prompt filter results) has no id; the client saw it as Azure sends it
    assert chunks[0].id == "" and chunks[0].choices == []
    assert "prompt_filter_results" in (chunks[0].model_extra or {})
    sid = chunks[1].id
    streamed = next(c.usage for c in chunks if c.usage is not None)
    assert plain.model == "gpt-4o-mini-2024-07-18"
    assert "content_filter_results" in (plain.choices[0].model_extra or {})

    calls = {c["response_id"]: c for c in simulator.calls()}
    recs = g.records()
    assert set(recs) == set(calls) == {plain.id, sid}
    _assert_recorded(recs[plain.id], calls[plain.id], plain.usage)
    _assert_recorded(recs[sid], calls[sid], streamed)
    assert recs[plain.id]["model_raw"] == "gpt-4o-mini-2024-07-18"
    truth = simulator.ground_truth()["providers"]["azure"]
    assert sum(r["cost_nanousd"] for r in recs.values()) == truth["cost_nanousd"]


def test_azure_openai_embeddings_through_a_deployment(
    azure_gateway: tuple[GatewayServer, str], simulator: Simulator
) -> None:
    g, secret = azure_gateway
    out = _azure_client(g, secret).embeddings.create(
        model="text-embedding-3-small", input=["one", "two three"]
    )
    (call,) = simulator.calls()
    g.flush()
    with g.engine.connect() as c:
        (r,) = c.execute(select(usage_records)).mappings().all()
    assert r["input_tokens"] == out.usage.prompt_tokens == call["input_tokens"]
    assert (r["provider"], r["cost_nanousd"]) == ("azure", call["cost_nanousd"])


def test_an_azure_credential_in_the_v1_path_style_and_an_openai_client(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator
) -> None:
    """A v1-style credential (``/openai/v1/…``, deployment in the body); the client is the
    plain ``OpenAI`` client on the gateway's ``/openai/v1`` (Azure's v1 API) and, on the
    gateway's own ``/v1``, addresses ``azure/<deployment>``."""
    g = gateway_factory(simulator.url)
    g.add_provider("azure", simulator.url, secrets.token_hex(16), options={"path_style": "v1"})
    _, secret = g.issue_key("dev")
    via_v1 = openai.OpenAI(base_url=g.url + "/openai/v1/", api_key=secret, max_retries=0)
    g._clients.append(via_v1)
    a = via_v1.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "v1 path"}]
    )
    b = g.openai(secret).chat.completions.create(
        model="azure/gpt-4o-mini", messages=[{"role": "user", "content": "addressed"}]
    )
    calls = {c["response_id"]: c for c in simulator.calls()}
    recs = g.records()
    assert set(recs) == set(calls) == {a.id, b.id}
    _assert_recorded(recs[a.id], calls[a.id], a.usage)
    _assert_recorded(recs[b.id], calls[b.id], b.usage)
    assert recs[b.id]["inbound_shape"] == "openai"


def test_an_unknown_deployment_is_azures_404_and_recorded_as_an_upstream_error(
    azure_gateway: tuple[GatewayServer, str], simulator: Simulator
) -> None:
    g, secret = azure_gateway
    with pytest.raises(openai.NotFoundError, match="deployment for this resource does not exist"):
        _azure_client(g, secret).chat.completions.create(
            model="no-such-deployment", messages=[{"role": "user", "content": "hi"}]
        )
    g.flush()
    with g.engine.connect() as c:
        (r,) = c.execute(select(usage_records)).mappings().all()
    assert (r["status"], r["provider"], r["model_raw"]) == (
        "upstream_error",
        "azure",
        "no-such-deployment",
    )
    assert simulator.calls() == []


def test_the_upstream_gets_the_credentials_api_version_and_key_not_the_clients(
    azure_gateway: tuple[GatewayServer, str], simulator: Simulator
) -> None:
    """A client's ``api-version`` is for the gateway; the simulator refuses requests without
    a valid one (404), so a served call proves the credential's version went upstream."""
    g, secret = azure_gateway
    client = openai.AzureOpenAI(
        azure_endpoint=g.url, api_key=secret, api_version="not-a-version", max_retries=0
    )
    g._clients.append(client)
    out = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "version"}]
    )
    assert out.usage is not None and len(simulator.calls()) == 1
