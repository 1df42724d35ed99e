"""Canned provider answers for the recorder (`tests.clients.recorder.Rule`).

Until the gateway and the simulator serve ``POST /v1/responses`` (issue 17,
branch wip/17), Codex is driven against the recorder with these hand-written
Responses streams, in the shapes of OpenAI's streaming reference. They are
also how the captures establish which events Codex needs to finish a turn
(tests/fixtures/clients/README.md).
"""

from __future__ import annotations

import json
from typing import Any

from tests.clients.recorder import Rule

USAGE = {
    "input_tokens": 10,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 2,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 12,
}


def message_item(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_canned",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def function_call_item(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": "fc_canned",
        "call_id": "call_canned",
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


def sse(*events: dict[str, Any]) -> bytes:
    """``event: <type>`` / ``data: <json>`` frames, as the Responses API streams them."""
    return b"".join(
        b"event: " + e["type"].encode() + b"\ndata: " + json.dumps(e).encode() + b"\n\n"
        for e in events
    )


def full_stream(item: dict[str, Any], response_id: str = "resp_canned") -> list[dict[str, Any]]:
    """created, output_item.added/.done (text deltas for a message), completed with usage."""
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": response_id, "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
    ]
    if item["type"] == "message":
        text = item["content"][0]["text"]
        events.append(
            {
                "type": "response.output_text.delta",
                "output_index": 0,
                "content_index": 0,
                "delta": text,
            }
        )
    events += [
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": {"id": response_id, "usage": USAGE}},
    ]
    return events


STREAM_VARIANTS: dict[str, list[dict[str, Any]]] = {
    "full": full_stream(message_item("canned answer")),
    "item_done_and_completed": [
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": message_item("canned answer"),
        },
        {"type": "response.completed", "response": {"id": "resp_canned", "usage": USAGE}},
    ],
    "completed_without_usage": [
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": message_item("canned answer"),
        },
        {"type": "response.completed", "response": {"id": "resp_canned"}},
    ],
    "completed_without_id": [
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": message_item("canned answer"),
        },
        {"type": "response.completed", "response": {"usage": USAGE}},
    ],
    "no_completed": [
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": message_item("canned answer"),
        },
    ],
    "delta_without_item": [
        {
            "type": "response.output_text.delta",
            "output_index": 0,
            "content_index": 0,
            "delta": "canned answer",
        },
        {"type": "response.completed", "response": {"id": "resp_canned", "usage": USAGE}},
    ],
}
"""Responses streams of decreasing completeness (what Codex does with each is captured)."""


def responses_rule(events: list[dict[str, Any]], times: int | None = None) -> Rule:
    return Rule(
        "POST",
        "/v1/responses",
        200,
        raw=sse(*events),
        content_type="text/event-stream",
        times=times,
    )


def openai_error(
    status: int, code: str, type_: str, message: str, headers: dict[str, str] | None = None
) -> Rule:
    """An error on ``POST /v1/responses`` in OpenAI's envelope."""
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return Rule("POST", "/v1/responses", status, body, dict(headers or {}))


def anthropic_error(
    status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> Rule:
    """An error on ``POST /v1/messages`` in Anthropic's envelope."""
    body = {"type": "error", "error": {"type": type_, "message": message}}
    return Rule("POST", "/v1/messages", status, body, dict(headers or {}))
