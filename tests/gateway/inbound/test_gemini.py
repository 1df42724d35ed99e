"""The Gemini inbound shape with the ``google-genai`` SDK (plain, streamed, countTokens).

The SDK's base URL is the gateway, its API key a ``gw_`` key (sent as
``x-goog-api-key``); the workspace's ``gemini`` credential points at the
simulator's Gemini API. Every billed call must be recorded exactly as Google
billed it (usageMetadata in canonical semantics: thoughts are output and
reasoning, cached content is part of the input), priced by genai-prices'
``google`` prices; countTokens is forwarded and never billed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from google import genai
from google.genai import errors, types

from metis.gateway.inbound.gemini import GENERATE, GenerateRequest, worst_case
from metis.simulator.gemini import new_key
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator

LONG = "Explain how the ledger reconciles provider-reported usage. " * 120


@pytest.fixture
def gem(
    gateway_factory: Callable[..., GatewayServer], simulator: Simulator
) -> tuple[GatewayServer, str]:
    g = gateway_factory(simulator.url)
    g.add_provider("gemini", simulator.url, new_key())
    _, secret = g.issue_key("dev", user="ana", team="ml")
    return g, secret


def _client(g: GatewayServer, secret: str, version: str | None = None) -> genai.Client:
    opts = types.HttpOptions(base_url=g.url, **({"api_version": version} if version else {}))
    return genai.Client(api_key=secret, http_options=opts)


def _canonical(u: Any) -> tuple[int, int, int, int]:
    thoughts = u.thoughts_token_count or 0
    return (
        u.prompt_token_count + (u.tool_use_prompt_token_count or 0),
        u.cached_content_token_count or 0,
        u.candidates_token_count + thoughts,
        thoughts,
    )


def _check(r: dict[str, Any], call: dict[str, Any], usage: Any) -> None:
    seen = _canonical(usage)
    rec = (r["input_tokens"], r["cached_input_tokens"], r["output_tokens"], r["reasoning_tokens"])
    truth = (
        call["input_tokens"],
        call["cached_input_tokens"],
        call["output_tokens"],
        call["reasoning_tokens"],
    )
    assert seen == rec == truth
    assert (r["provider"], r["inbound_shape"], r["cost_source"]) == ("gemini", "gemini", "computed")
    assert r["cost_nanousd"] == call["cost_nanousd"] > 0
    assert call["provider"] == "google"


@pytest.mark.parametrize("version", ["v1beta", None])  # None: the SDK's default (v1)
def test_plain_and_streamed_calls_are_recorded_exactly(
    gem: tuple[GatewayServer, str], simulator: Simulator, version: str | None
) -> None:
    g, secret = gem
    client = _client(g, secret, version)
    plain = client.models.generate_content(model="gemini-2.5-flash", contents=LONG)
    chunks = list(
        client.models.generate_content_stream(model="gemini-2.5-pro", contents="Say hello.")
    )
    assert plain.text and plain.usage_metadata is not None
    assert plain.usage_metadata.cached_content_token_count  # a long prompt: implicit cache
    last = chunks[-1].usage_metadata
    calls = {c["response_id"]: c for c in simulator.calls()}
    recs = g.records()
    assert set(recs) == set(calls) == {plain.response_id, chunks[0].response_id}
    _check(recs[plain.response_id], calls[plain.response_id], plain.usage_metadata)
    _check(recs[chunks[0].response_id], calls[chunks[0].response_id], last)
    assert recs[chunks[0].response_id]["model_raw"] == "gemini-2.5-pro"


def test_count_tokens_is_forwarded_and_not_billed(
    gem: tuple[GatewayServer, str], simulator: Simulator
) -> None:
    g, secret = gem
    client = _client(g, secret)  # keep a reference: the SDK closes its session on collection
    n = client.models.count_tokens(model="gemini-2.5-flash", contents="Hello there")
    assert n.total_tokens == 3  # ceil(11 / 4)
    assert g.records() == {} and simulator.calls() == []


def test_a_json_array_stream_is_forwarded_as_is_and_recorded(
    gem: tuple[GatewayServer, str], simulator: Simulator
) -> None:
    """Without ``?alt=sse`` Gemini streams one JSON array; the gateway passes it through and
    still finds the usage of its last element."""
    g, secret = gem
    body = {"contents": [{"role": "user", "parts": [{"text": 'quote "}{" and \\ escapes'}]}]}
    r = httpx.post(
        f"{g.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent",
        json=body,
        headers={"x-goog-api-key": secret},
        timeout=10,
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    docs = r.json()
    assert isinstance(docs, list) and docs[-1]["candidates"][0]["finishReason"] == "STOP"
    (call,) = simulator.calls()
    rec = g.records()[docs[0]["responseId"]]
    u = docs[-1]["usageMetadata"]
    assert rec["input_tokens"] == u["promptTokenCount"] == call["input_tokens"]
    assert rec["output_tokens"] == u["candidatesTokenCount"] + u["thoughtsTokenCount"]
    assert rec["cost_nanousd"] == call["cost_nanousd"]


def test_errors_are_in_googles_envelope(
    gem: tuple[GatewayServer, str], simulator: Simulator
) -> None:
    g, secret = gem
    bad, ok = _client(g, "gw_not-a-key"), _client(g, secret)
    with pytest.raises(errors.ClientError) as bad_key:
        bad.models.generate_content(model="gemini-2.5-flash", contents="x")
    assert (bad_key.value.code, bad_key.value.status) == (401, "UNAUTHENTICATED")
    _, narrow_key = g.issue_key("narrow", allowed_models=["gemini-2.5-flash"])
    narrow = _client(g, narrow_key)
    with pytest.raises(errors.ClientError) as denied:
        narrow.models.generate_content(model="gemini-2.5-pro", contents="x")
    assert (denied.value.code, denied.value.status) == (403, "PERMISSION_DENIED")
    with pytest.raises(errors.ClientError) as unknown:  # the provider's own 404, relayed
        ok.models.generate_content(model="gemini-9-ultra", contents="x")
    assert unknown.value.code == 404 and "gemini-9-ultra" in str(unknown.value.message)


def test_a_spent_cap_is_refused_in_googles_envelope(
    gem: tuple[GatewayServer, str], simulator: Simulator
) -> None:
    g, _ = gem
    _, capped = g.issue_key("tiny", daily_cap_usd="0.000001")
    client = _client(g, capped)
    client.models.generate_content(model="gemini-2.5-flash", contents=LONG)  # spends the cap
    g.flush()
    with pytest.raises(errors.ClientError) as refused:
        client.models.generate_content(model="gemini-2.5-flash", contents=LONG)
    assert (refused.value.code, refused.value.status) == (429, "RESOURCE_EXHAUSTED")
    assert refused.value.details["error"]["scope"] == "key_daily"
    assert len(simulator.calls()) == 1


def test_models_list_is_the_providers_filtered_by_the_key(
    gem: tuple[GatewayServer, str], simulator: Simulator
) -> None:
    g, _ = gem
    _, narrow = g.issue_key("narrow", allowed_models=["gemini-2.5-flash"])
    client = _client(g, narrow, "v1beta")
    names = [m.name for m in client.models.list()]
    assert names == ["models/gemini-2.5-flash"]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (None, (None, 1)),  # no budget: the model's maximum output
        ({"maxOutputTokens": 100}, (100, 1)),
        ({"maxOutputTokens": 100, "candidateCount": 3}, (100, 3)),
        ({"maxOutputTokens": 100, "thinkingConfig": {"thinkingBudget": 50}}, (150, 1)),
        ({"maxOutputTokens": 0, "candidateCount": True}, (None, 1)),
    ],
)
def test_worst_case_covers_every_candidate_and_thinking(
    config: dict[str, Any] | None, expected: tuple[int | None, int]
) -> None:
    body = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": config}
    wc = worst_case(GenerateRequest(generationConfig=config), json.dumps(body).encode())
    assert (wc.output_budget, wc.choices) == expected
    assert (wc.context_bound, wc.rounds) == (False, 1)


@pytest.mark.parametrize(
    ("extra", "rounds"),
    [
        ({"contents": [{"parts": [{"fileData": {"fileUri": "gs://b/f.pdf"}}]}]}, 1),
        ({"cachedContent": "cachedContents/abc"}, 1),
        ({"tools": [{"googleSearch": {}}]}, 10),
        ({"tools": [{"functionDeclarations": [{"name": "f"}]}, {"codeExecution": {}}]}, 10),
    ],
)
def test_worst_case_input_the_body_does_not_hold_is_context_bound(
    extra: dict[str, Any], rounds: int
) -> None:
    body = {"contents": [{"parts": [{"text": "hi"}]}], **extra}
    wc = worst_case(GenerateRequest(), json.dumps(body).encode())
    assert (wc.context_bound, wc.rounds) == (True, rounds)
    plain = {"contents": body["contents"], "tools": [{"functionDeclarations": [{"name": "f"}]}]}
    if "tools" in extra:  # function declarations alone run nowhere but at the client
        wc = worst_case(GenerateRequest(), json.dumps(plain).encode())
        assert (wc.context_bound, wc.rounds) == (False, 1)


def test_inline_images_count_as_images_and_other_inline_media_as_unbounded() -> None:
    """Google bills an inline image by tiles (258 tokens and up), not by its bytes: 2,000 1x1
    PNGs must reserve 2,000 images, not their ~120 bytes each; a PDF or video inline is
    billed by pages and seconds, so the input is context bound."""
    png = {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    body = {"contents": [{"parts": [png] * 2000}], "systemInstruction": {"parts": [png]}}
    wc = worst_case(GenerateRequest(), json.dumps(body).encode())
    assert (wc.images, wc.context_bound) == (2001, False)
    for mime in ("application/pdf", "video/mp4", "audio/wav"):
        part = {"inline_data": {"mime_type": mime, "data": "AAAA"}}
        wc = worst_case(GenerateRequest(), json.dumps({"contents": [{"parts": [part]}]}).encode())
        assert wc.context_bound, mime


def test_a_routed_or_addressed_model_never_enters_the_body() -> None:
    """The model is in the path; ``gemini-eu/gemini-2.5-flash`` must not add a ``model``
    field to the body Google gets."""
    raw = b'{"contents": [{"parts": [{"text": "hi"}]}]}'
    req = GenerateRequest(model="gemini-eu/gemini-2.5-flash")
    assert GENERATE.prepare(req, raw, "gemini-2.5-flash") == (raw, False)
