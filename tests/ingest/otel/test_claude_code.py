"""Claude Code ``api_request`` events → usage items, from the real CLI's exported telemetry."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from metis import pricing
from metis.ingest.otel import claude_code
from metis.ingest.otel.mapping import MappingError
from metis.ingest.otel.records import LogEvent
from metis.ingest.push import UsageItem
from tests.ingest.otel.fixtures import CLAUDE, log_events_of


def _mapped(name: str) -> list[claude_code.Mapped]:
    out = [claude_code.map_log(ev) for ev in log_events_of(CLAUDE / name)]
    return [m for m in out if m is not None]


def test_json_fixture_maps_the_one_api_request_in_canonical_semantics() -> None:
    events = log_events_of(CLAUDE / "logs.json")
    assert [e.body for e in events] == [
        "claude_code.user_prompt",
        "claude_code.api_request",
        "claude_code.assistant_response",
    ]
    (m,) = _mapped("logs.json")
    assert m.source == "claude_code"
    it = m.item
    assert it["idempotency_key"] == "claude_code:req_01kf17AYQC5sGUKPmiicQYLJ"
    assert it["correlation_id"] == "req_01kf17AYQC5sGUKPmiicQYLJ"
    assert it["provider"] == "anthropic" and it["model"] == "claude-haiku-4-5"
    # Anthropic's input_tokens (0) excludes the cache: canonical input is the sum.
    assert it["input_tokens"] == 0 + 0 + 30735
    assert it["cached_input_tokens"] == 0
    assert it["cache_creation_input_tokens"] == 30735
    assert it["output_tokens"] == 45
    assert it["session_id"] == "4805697e-5004-4d9a-b184-4d9e8ccbbbd0"
    assert it["time"] == datetime(2026, 12, 5, 5, 46, 37, 581000, tzinfo=UTC)
    assert "cost_usd" not in it  # Metis prices the tokens itself
    assert m.meta["client_cost_usd_micros"] == 38644
    assert m.meta["agent_version"] == "2.1.197"
    assert m.email is None  # not logged in: no email in the event
    assert m.account == "232e9c067182dafb4723c268ded8c4bdc86b6ea58c2ecd81d6f484e2327f1d8e"
    UsageItem.model_validate(it)  # the push path accepts it as it is


def test_protobuf_fixture_maps_the_same_way() -> None:
    (m,) = _mapped("logs.pb")
    assert m.item["idempotency_key"] == "claude_code:req_01vQGEjp0mDuSuKZOhqIDl63"
    assert m.item["input_tokens"] == 30735 and m.item["output_tokens"] == 45
    assert m.item["cache_creation_input_tokens"] == 30735


def test_metis_price_equals_claude_codes_own_figure_exactly() -> None:
    (m,) = _mapped("logs.json")
    it = m.item
    p = pricing.price(
        "anthropic",
        it["model"],
        input_tokens=it["input_tokens"],
        output_tokens=it["output_tokens"],
        cached_input_tokens=it["cached_input_tokens"],
        cache_creation_input_tokens=it["cache_creation_input_tokens"],
        at=it["time"],
    )
    # 30735 cache-write tokens at $1.25/M + 45 output tokens at $5/M.
    assert p.cost_nanousd == 38_643_750
    assert Decimal(p.cost_nanousd) / 10**9 == Decimal("0.03864375")
    # cost_usd_micros is Claude Code's figure rounded to micro-dollars: close, not exact.
    assert abs(m.meta["client_cost_usd_micros"] * 1000 - p.cost_nanousd) < 1000  # type: ignore[operator]


def _with(ev: LogEvent, **attrs: object) -> LogEvent:
    a = dict(ev.attributes)
    for k, v in attrs.items():
        key = k.replace("__", ".")
        if v is None:
            a.pop(key, None)
        else:
            a[key] = v
    return dataclasses.replace(ev, attributes=a)


def _api_request() -> LogEvent:
    return log_events_of(CLAUDE / "logs.json")[1]


def test_without_request_id_the_key_is_a_stable_digest() -> None:
    ev = _with(_api_request(), request_id=None)
    a, b = claude_code.map_log(ev), claude_code.map_log(ev)
    assert a is not None and b is not None
    assert a.item["idempotency_key"] == b.item["idempotency_key"]
    assert a.item["idempotency_key"].startswith("claude_code:")
    assert a.item["correlation_id"] is None
    other = claude_code.map_log(_with(ev, event__sequence=7))
    assert other is not None and other.item["idempotency_key"] != a.item["idempotency_key"]


def test_email_from_the_record_or_the_resource_is_a_hint_only() -> None:
    ev = _with(_api_request(), user__email="ada@example.com")
    m = claude_code.map_log(ev)
    assert m is not None and m.email == "ada@example.com"
    assert "ada@example.com" not in repr(m.item) and "ada@example.com" not in repr(m.meta)
    ev = dataclasses.replace(_api_request(), resource={"user.email": "bob@example.com"})
    m = claude_code.map_log(ev)
    assert m is not None and m.email == "bob@example.com"


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"model": None}, "without model"),
        ({"input_tokens": "lots"}, "input_tokens: not a token count"),
        ({"output_tokens": -3}, "output_tokens: negative"),
        ({"cache_read_tokens": 1.5}, "cache_read_tokens: not a whole number"),
        ({"cache_creation_tokens": True}, "cache_creation_tokens: not a token count"),
    ],
)
def test_unusable_api_requests_are_rejected_with_a_reason(
    attrs: dict[str, object], reason: str
) -> None:
    with pytest.raises(MappingError, match=reason):
        claude_code.map_log(_with(_api_request(), **attrs))


def test_other_events_carry_no_usage() -> None:
    for ev in log_events_of(CLAUDE / "logs.json"):
        if ev.body != "claude_code.api_request":
            assert claude_code.map_log(ev) is None
    # Recognised by event name in scope too (a body-less exporter).
    ev = dataclasses.replace(_api_request(), body=None)
    assert claude_code.map_log(ev) is not None
    ev = dataclasses.replace(ev, scope_name="some.other.scope")
    assert claude_code.map_log(ev) is None
