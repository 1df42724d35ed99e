"""Codex ``codex.sse_event`` (``response.completed``) events → usage items.

The fixture is built from Codex's source (tests/fixtures/otel/README.md).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from metis.ingest.otel import codec, codex
from metis.ingest.otel.mapping import Mapped, MappingError
from metis.ingest.otel.records import LogEvent, log_events
from metis.ingest.push import UsageItem
from tests.ingest.otel.fixtures import CODEX, as_protobuf, log_events_of


def _mapped(events: list[LogEvent]) -> list[Mapped]:
    return [m for m in (codex.map_log(e) for e in events) if m is not None]


def test_completed_responses_map_to_items_and_nothing_else_does() -> None:
    events = log_events_of(CODEX / "logs.json")
    assert len(events) == 8
    first, second = _mapped(events)
    it = first.item
    assert first.source == "codex"
    assert it["provider"] == "openai" and it["model"] == "gpt-5.1-codex"
    # Responses API usage: input includes cached input, output includes reasoning.
    assert (it["input_tokens"], it["cached_input_tokens"]) == (4120, 3072)
    assert (it["output_tokens"], it["reasoning_tokens"]) == (356, 192)
    assert it["session_id"] == "0199a6f2-3c1e-7d40-9a5e-6f1b2c3d4e5f"
    assert it["time"] == datetime(2026, 12, 5, 6, 10, 1, 400000, tzinfo=UTC)
    assert it["idempotency_key"].startswith("codex:")
    assert "correlation_id" not in it and "base_url" not in it  # Codex logs neither
    assert first.email == "carol.codex@example.com"  # a hint: resolved, never stored
    assert "example.com" not in repr(it) + repr(first.meta)
    assert first.account == "acct_codex_dev_1"
    assert first.meta == {"slug": "gpt-5.1-codex", "originator": "codex_cli_rs"} | {
        "agent_version": "0.58.0"
    }
    assert (second.item["input_tokens"], second.item["output_tokens"]) == (4890, 41)
    assert second.item["idempotency_key"] != it["idempotency_key"]
    for m in (first, second):
        UsageItem.model_validate(m.item)


def test_the_same_records_over_protobuf_get_the_same_keys() -> None:
    req = codec.decode("logs", as_protobuf("logs", CODEX / "logs.json"), "protobuf")
    pb = _mapped(list(log_events(req)))
    js = _mapped(log_events_of(CODEX / "logs.json"))
    assert [m.item for m in pb] == [m.item for m in js]


def _completed() -> LogEvent:
    return log_events_of(CODEX / "logs.json")[4]


def _with(**attrs: object) -> LogEvent:
    ev = _completed()
    a = dict(ev.attributes)
    a.update({k.replace("__", "."): v for k, v in attrs.items()})
    return dataclasses.replace(ev, attributes=a)


@pytest.mark.parametrize(
    ("attrs", "reason"),
    [
        ({"input_token_count": "-5"}, "input_token_count: not a token count"),
        ({"output_token_count": "1e3"}, "output_token_count: not a token count"),
        ({"cached_token_count": 5000}, "exceeds input_token_count"),
        ({"reasoning_token_count": 999}, "exceeds output_token_count"),
        ({"model": "", "slug": None}, "without model"),
    ],
)
def test_bad_counts_are_rejected(attrs: dict[str, object], reason: str) -> None:
    with pytest.raises(MappingError, match=reason):
        codex.map_log(_with(**attrs))


def test_failed_and_other_sse_events_are_ignored() -> None:
    events = log_events_of(CODEX / "logs.json")
    kinds = [(e.attributes["event.name"], e.attributes.get("event.kind")) for e in events]
    ignored = [e for e in events if codex.map_log(e) is None]
    assert len(ignored) == 6
    assert ("codex.sse_event", "response.completed") in [
        (e.attributes["event.name"], e.attributes.get("event.kind")) for e in ignored
    ]  # the failed one (error.message, no counts)
    assert len(kinds) == 8
