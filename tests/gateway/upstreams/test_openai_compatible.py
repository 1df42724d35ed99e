"""OpenAI-compatible providers through the gateway, with the client people use for them.

The official ``openai`` SDK (``base_url`` = the gateway, a ``gw_`` key) calls
``<provider>/<model>``; the gateway forwards to the workspace's credential of
that name, whose base URL is the simulator's profile of the provider
(``/compat/<variant>/v1``, each with its documented usage quirks). Every call
must be recorded exactly as the provider billed it: the usage the client saw
equals the record's (in canonical semantics), and the cost equals the
simulator's ground truth, i.e. genai-prices' price *of that provider*.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import openai
import pytest

from metis import prices_file
from metis.simulator.openai_compatible import VARIANTS
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator

PRICED = [v for v, spec in VARIANTS.items() if spec.price_provider is not None]
LONG = "Summarize the ledger rules for provider-stated costs and cache reads. " * 40


def _setup(
    gateway_factory: Callable[..., GatewayServer], sim: Simulator, *variants: str
) -> tuple[GatewayServer, openai.OpenAI]:
    g = gateway_factory(sim.url)
    for v in variants:
        g.add_provider(v, f"{sim.url}/compat/{v}/v1", "key-" + secrets.token_urlsafe(16))
    _, secret = g.issue_key("dev", user="ana", team="ml")
    return g, g.openai(secret)


def _canonical(variant: str, usage: Any) -> tuple[int, int, int, int]:
    """(input, cached, output, reasoning) of the usage the client saw, read as the provider
    documents it."""
    extra = usage.model_extra or {}
    if variant == "deepseek":
        cached = extra["prompt_cache_hit_tokens"]
    else:
        d = usage.prompt_tokens_details
        cached = d.cached_tokens if d is not None and d.cached_tokens else 0
    cd = usage.completion_tokens_details
    reasoning = cd.reasoning_tokens if cd is not None and cd.reasoning_tokens else 0
    return usage.prompt_tokens, cached, usage.completion_tokens, reasoning


@pytest.mark.parametrize("variant", PRICED)
def test_a_plain_and_a_streamed_call_are_recorded_as_the_provider_billed_them(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator, variant: str
) -> None:
    g, client = _setup(gateway_factory, simulator, variant)
    spec = VARIANTS[variant]
    model = spec.reasoning_models[0] if spec.reasoning_models else spec.models[0]
    plain = client.chat.completions.create(
        model=f"{variant}/{model}", messages=[{"role": "user", "content": LONG}]
    )
    stream = client.chat.completions.create(
        model=f"{variant}/{model}",
        messages=[{"role": "user", "content": "Say hi."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed_usage = next(c.usage for c in chunks if c.usage is not None)
    assert plain.model == model

    calls = {c["response_id"]: c for c in simulator.calls()}
    assert set(calls) == {plain.id, chunks[0].id}
    recs = g.records()
    assert set(recs) == set(calls)
    for rid, usage in ((plain.id, plain.usage), (chunks[0].id, streamed_usage)):
        r, c = recs[rid], calls[rid]
        assert c["provider"] == spec.price_provider  # the provider's own price list
        seen = _canonical(variant, usage)
        assert seen == (
            r["input_tokens"],
            r["cached_input_tokens"],
            r["output_tokens"],
            r["reasoning_tokens"],
        )
        assert seen == (
            c["input_tokens"],
            c["cached_input_tokens"],
            c["output_tokens"],
            c["reasoning_tokens"],
        )
        assert (r["provider"], r["model_raw"], r["status"]) == (variant, model, "ok")
        assert r["cost_nanousd"] == c["cost_nanousd"] > 0
        if variant == "openrouter":  # the provider states the price: recorded as stated
            assert r["cost_source"] == "provider_reported"
            assert r["metadata"]["stated_cost_nanousd"] == r["cost_nanousd"]
            assert r["metadata"]["computed_cost_nanousd"] == c["cost_nanousd"]
        else:
            assert r["cost_source"] == "computed"
            assert r["pricing_version"].startswith("genai-prices-")
    if variant == "deepseek":  # the long prompt hit DeepSeek's cache
        assert recs[plain.id]["cached_input_tokens"] > 0


def test_groq_streams_without_include_usage_are_recorded_from_x_groq_and_left_as_sent(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator
) -> None:
    """Groq reports a stream's usage in ``x_groq.usage`` of its finishing chunk; a client that
    did not ask for ``include_usage`` gets no usage-only chunk from the gateway either."""
    g, client = _setup(gateway_factory, simulator, "groq")
    chunks = list(
        client.chat.completions.create(
            model="groq/llama-3.1-8b-instant",
            messages=[{"role": "user", "content": "Count to three."}],
            stream=True,
        )
    )
    assert all(c.choices for c in chunks), "no usage-only chunk reaches this client"
    x_groq = (chunks[-1].model_extra or {})["x_groq"]["usage"]
    (call,) = simulator.calls()
    r = g.records()[chunks[0].id]
    assert (r["input_tokens"], r["output_tokens"]) == (
        x_groq["prompt_tokens"],
        x_groq["completion_tokens"],
    )
    assert (r["input_tokens"], r["output_tokens"], r["cost_nanousd"]) == (
        call["input_tokens"],
        call["output_tokens"],
        call["cost_nanousd"],
    )


def test_a_self_hosted_model_is_priced_from_the_prices_file_and_unpriced_without_it(
    gateway_factory: Callable[..., GatewayServer],
    simulator: Simulator,
    metis_env: dict[str, str],
) -> None:
    g, client = _setup(gateway_factory, simulator, "ollama", "vllm")
    (Path(metis_env["METIS_HOME"]) / "prices.yaml").write_text(
        "schema_version: 1\nprices:\n"
        "  - {provider: ollama, model: llama3.1:8b, input_per_mtok: '0.05', "
        "output_per_mtok: '0.25', from: 2020-01-01}\n"
    )
    prices_file.reset_cache()
    a = client.chat.completions.create(
        model="ollama/llama3.1:8b", messages=[{"role": "user", "content": "hello there"}]
    )
    b = client.chat.completions.create(
        model="vllm/Qwen/Qwen2.5-7B-Instruct", messages=[{"role": "user", "content": "hello"}]
    )
    recs = g.records()
    ra, rb = recs[a.id], recs[b.id]
    assert a.usage is not None and b.usage is not None
    # exact: 0.05 and 0.25 USD per million tokens = 50 and 250 nano-USD per token
    assert ra["cost_nanousd"] == a.usage.prompt_tokens * 50 + a.usage.completion_tokens * 250
    assert ra["cost_source"] == "computed" and ra["pricing_version"].startswith("prices-file:")
    assert (rb["provider"], rb["model_raw"]) == ("vllm", "Qwen/Qwen2.5-7B-Instruct")
    assert (rb["cost_source"], rb["cost_nanousd"], rb["pricing_version"]) == ("none", 0, None)
    assert rb["input_tokens"] == b.usage.prompt_tokens > 0


def test_an_unpriced_provider_model_is_refused_under_a_hard_cap(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator
) -> None:
    g, _ = _setup(gateway_factory, simulator, "vllm")
    _, capped = g.issue_key("capped", daily_cap_usd="5")
    with pytest.raises(openai.PermissionDeniedError, match="no known price"):
        g.openai(capped).chat.completions.create(
            model="vllm/my-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert simulator.calls() == []


def test_openrouter_fallback_models_are_priced_for_the_reservation_and_fees_refused(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator
) -> None:
    """OpenRouter may bill any model of the ``models`` fallback list, so a capped key's
    reservation prices each of them (the costliest wins): one without a price is refused
    like an unpriced target. Per-result plugin fees, which no token price bounds, are
    refused under a cap; without a cap all of it is forwarded."""
    g, free = _setup(gateway_factory, simulator, "openrouter")
    _, capped = g.issue_key("capped", daily_cap_usd="5")
    client = g.openai(capped)
    msgs = [{"role": "user", "content": "hi"}]
    cheap = "openrouter/openai/gpt-4o-mini"
    fallback: dict[str, Any] = {"models": ["openai/gpt-4o-mini", "nobody/unpriced-model"]}
    with pytest.raises(openai.PermissionDeniedError, match="'nobody/unpriced-model' has no"):
        client.chat.completions.create(model=cheap, messages=msgs, extra_body=fallback)
    for body in ({"plugins": [{"id": "web"}]}, {"models": ["openai/gpt-4o-mini"] * 17}):
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model=cheap, messages=msgs, extra_body=body)
    with pytest.raises(openai.PermissionDeniedError, match="per-result fees"):
        client.chat.completions.create(model=cheap + ":online", messages=msgs)
    assert simulator.calls() == []
    priced = {"models": ["openai/gpt-4o-mini", "anthropic/claude-opus-4"]}
    assert client.chat.completions.create(model=cheap, messages=msgs, extra_body=priced).usage
    assert free.chat.completions.create(model=cheap, messages=msgs, extra_body=fallback).usage


def test_models_lists_each_compatible_provider_under_its_address(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator
) -> None:
    _, client = _setup(gateway_factory, simulator, "groq", "mistral")
    ids = {m.id: m.owned_by for m in client.models.list()}
    for v in ("groq", "mistral"):
        for m in VARIANTS[v].models:
            assert ids[f"{v}/{m}"] == v
    assert "gpt-4o-mini" in ids  # the OpenAI credential's own list is still there


def test_a_name_that_is_no_provider_of_the_workspace_goes_to_openai_as_it_is(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator
) -> None:
    """``groq/…`` addresses a provider only when the workspace has one named ``groq``."""
    _, client = _setup(gateway_factory, simulator)
    with pytest.raises(openai.NotFoundError, match=r"groq/llama-3\.1-8b-instant"):
        client.chat.completions.create(
            model="groq/llama-3.1-8b-instant", messages=[{"role": "user", "content": "hi"}]
        )


def test_a_broken_openrouter_call_is_estimated_at_its_costliest_fallback_model(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator
) -> None:
    """A call the gateway could not read is recorded at its worst case
    (`metis.gateway.estimate`); with OpenRouter's ``models`` list the provider may have
    billed any of them, so the estimate is the costliest, as the reservation was."""
    from metis.gateway.estimate import estimate
    from metis.gateway.inbound import chat
    from metis.gateway.usage import Tokens

    g = gateway_factory(simulator.url)
    g.add_provider(
        "openrouter", f"{simulator.url}/compat/openrouter/v1", "key-" + secrets.token_urlsafe(16)
    )
    _, secret = g.issue_key("dev", user="ana")
    simulator.set_fault("/compat/openrouter/v1/chat/completions", "drop", count=1)
    raw = msgspec.json.encode(
        {
            "model": "openrouter/openai/gpt-4o-mini",
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "hi"}],
            "models": ["openai/gpt-4o-mini", "anthropic/claude-opus-4"],
        }
    )
    r = httpx.post(
        g.url + "/v1/chat/completions",
        content=raw,
        headers={"authorization": f"Bearer {secret}", "content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 502
    (rec,) = g.records().values()
    wc = chat.worst_case(None, raw)  # type: ignore[arg-type]
    _, cheap = estimate("openrouter", "openai/gpt-4o-mini", len(raw), wc, Tokens())
    _, dear = estimate("openrouter", "anthropic/claude-opus-4", len(raw), wc, Tokens())
    assert cheap is not None and dear is not None and cheap < dear
    assert (rec["cost_source"], rec["cost_nanousd"]) == ("estimated", dear)
