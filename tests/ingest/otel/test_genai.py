"""GenAI semantic-convention spans → usage items (real openai-v2 export and constructed spans)."""

from __future__ import annotations

import dataclasses

import pytest

from metis.ingest.otel import genai
from metis.ingest.otel.mapping import Mapped, MappingError
from metis.ingest.otel.records import SpanEvent
from metis.ingest.push import UsageItem
from tests.ingest.otel.fixtures import GENAI, spans_of


def _by_name(spans: list[SpanEvent]) -> dict[str, Mapped | None]:
    return {s.name: genai.map_span(s) for s in spans}


def test_real_openai_v2_export() -> None:
    spans = spans_of(GENAI / "openai_v2_traces.pb")
    mapped = [genai.map_span(s) for s in spans]
    assert all(m is not None for m in mapped)
    chat, stream, emb = (m for m in mapped if m is not None)
    for m, sp in zip((chat, stream, emb), spans, strict=True):
        assert m.source == "otel_genai"
        assert m.item["idempotency_key"] == f"otel_genai:{sp.trace_id}:{sp.span_id}"
        assert m.item["provider"] == "openai"
        UsageItem.model_validate(m.item)
    assert chat.item["model"] == "gpt-4o-mini-2024-07-18"  # the response's model
    assert str(chat.item["correlation_id"]).startswith("chatcmpl-")
    assert chat.item["input_tokens"] == 8 and chat.item["output_tokens"] > 0
    assert stream.item["correlation_id"] != chat.item["correlation_id"]
    assert emb.item["model"] == "text-embedding-3-small"
    assert emb.item["correlation_id"] is None and emb.item["output_tokens"] == 0
    assert emb.meta["operation"] == "embeddings" and chat.meta["service"] == "billing-app"


def test_semantic_convention_spans() -> None:
    m = _by_name(spans_of(GENAI / "semconv_traces.json"))
    # Not model calls, or no usage, or an agent with its own mapper: ignored.
    for name in (
        "invoke_agent support",
        "execute_tool lookup",
        "chat gpt-4o-mini",
        "claude_code.llm_request",
    ):
        assert m[name] is None, name
    chat = m["chat gpt-4o"]
    assert chat is not None
    assert chat.item["model"] == "gpt-4o-2024-08-06"
    assert chat.item["correlation_id"] == "chatcmpl-golden-1"
    assert chat.item["base_url"] == "http://metis.internal:8080"
    assert (chat.item["input_tokens"], chat.item["cached_input_tokens"]) == (1200, 1024)
    assert chat.item["output_tokens"] == 250
    assert chat.item["session_id"] == "conv_5j66UpCpwteGg4YSxUnt7lPY"
    assert chat.item["idempotency_key"] == (
        "otel_genai:5b8efff798038103d269b633813fc60c:eee19b7ec3c1b175"
    )
    assert chat.email == "erin.ops@example.com"  # from the resource; a hint only
    emb = m["embeddings text-embedding-3-small"]
    assert emb is not None and emb.item["base_url"] == "https://api.openai.com"
    assert emb.item["input_tokens"] == 300
    # Anthropic's raw count (cache excluded) beside cache attributes: the parts are added.
    ant = m["chat claude-sonnet-4-5"]
    assert ant is not None and ant.item["provider"] == "anthropic"
    assert ant.item["input_tokens"] == 40 + 2000 + 500
    assert ant.item["cached_input_tokens"] == 2000
    assert ant.item["cache_creation_input_tokens"] == 500
    assert ant.account == "erin"
    # OpenLLMetry's pre-semconv attributes.
    legacy = m["anthropic.chat"]
    assert legacy is not None and legacy.item["provider"] == "anthropic"
    assert (legacy.item["input_tokens"], legacy.item["output_tokens"]) == (900, 60)
    assert legacy.meta["operation"] == "chat"
    for x in (chat, emb, ant, legacy):
        UsageItem.model_validate(x.item)


def _chat() -> SpanEvent:
    spans = spans_of(GENAI / "semconv_traces.json")
    return next(s for s in spans if s.name == "chat gpt-4o")


def _with(sp: SpanEvent, **attrs: object) -> SpanEvent:
    a = dict(sp.attributes)
    for k, v in attrs.items():
        key = k.replace("__", ".")
        if v is None:
            a.pop(key, None)
        else:
            a[key] = v
    return dataclasses.replace(sp, attributes=a)


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ({"server__port": 443}, "https://metis.internal"),
        ({"server__port": None}, "https://metis.internal"),
        ({"server__port": "9000"}, "http://metis.internal:9000"),
        ({"server__address": None}, None),
        ({"server__address": "bad/host"}, None),
        ({"server__address": "::1", "server__port": 8080}, "http://[::1]:8080"),
        ({"server__address": "Metis.Internal"}, "http://metis.internal:8080"),
    ],
)
def test_base_url_from_server_address_and_port(
    attrs: dict[str, object], expected: str | None
) -> None:
    m = genai.map_span(_with(_chat(), **attrs))
    assert m is not None and m.item["base_url"] == expected


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"gen_ai__response__model": None, "gen_ai__request__model": None}, "without gen_ai"),
        ({"gen_ai__provider__name": None}, "gen_ai.provider.name"),
        ({"gen_ai__usage__input_tokens": "many"}, "not a token count"),
        ({"gen_ai__usage__output_tokens": -1}, "negative"),
    ],
)
def test_unusable_model_call_spans_are_rejected(attrs: dict[str, object], reason: str) -> None:
    with pytest.raises(MappingError, match=reason):
        genai.map_span(_with(_chat(), **attrs))


def test_reasoning_beyond_output_is_added_to_it() -> None:
    m = genai.map_span(_with(_chat(), gen_ai__usage__reasoning__output_tokens=400))
    assert m is not None
    assert (m.item["output_tokens"], m.item["reasoning_tokens"]) == (650, 400)
