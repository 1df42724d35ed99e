"""Non-streaming response bodies: Anthropic message ⇄ OpenAI chat completion.

These translate an *upstream* answer into the client's shape. A malformed
upstream body raises `TranslationError` (the gateway answers 502, it is not
the client's fault). Stop reasons:

=================  ==================
Anthropic           OpenAI
=================  ==================
end_turn            stop
stop_sequence       stop
max_tokens          length
tool_use            tool_calls
refusal             content_filter
pause_turn          stop
=================  ==================

OpenAI's ``stop`` maps back to ``end_turn`` (OpenAI does not say whether a
stop sequence matched), ``function_call`` to ``tool_use``.
"""

import time
from typing import Any

from metis.gateway.translate._check import Obj, arr, dumps_str, loads_args, obj, string
from metis.gateway.translate.errors import TranslationError
from metis.gateway.translate.usage import anthropic_usage_to_openai, openai_usage_to_anthropic

STOP_TO_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}
FINISH_TO_STOP: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def finish_reason(stop_reason: Any) -> str | None:
    """OpenAI ``finish_reason`` for an Anthropic ``stop_reason`` (None stays None)."""
    if stop_reason is None:
        return None
    return STOP_TO_FINISH.get(str(stop_reason), "stop")


def stop_reason(finish: Any) -> str | None:
    """Anthropic ``stop_reason`` for an OpenAI ``finish_reason`` (None stays None)."""
    if finish is None:
        return None
    return FINISH_TO_STOP.get(str(finish), "end_turn")


def anthropic_to_openai_response(body: Any, *, created: int | None = None) -> Obj:
    """An Anthropic ``message`` as an OpenAI ``chat.completion``."""
    msg = obj(body, "response")
    texts: list[str] = []
    calls: list[Obj] = []
    for i, b in enumerate(arr(msg.get("content", []), "response.content")):
        block = obj(b, f"response.content[{i}]")
        kind = block.get("type")
        if kind == "text":
            texts.append(string(block.get("text"), f"response.content[{i}].text"))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": string(block.get("id"), f"response.content[{i}].id"),
                    "type": "function",
                    "function": {
                        "name": string(block.get("name"), f"response.content[{i}].name"),
                        "arguments": dumps_str(block.get("input", {})),
                    },
                }
            )
        # thinking / redacted_thinking / server tool blocks: not part of the OpenAI answer
    message: Obj = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    return {
        "id": string(msg.get("id"), "response.id"),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": string(msg.get("model"), "response.model"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(msg.get("stop_reason")) or "stop",
            }
        ],
        "usage": anthropic_usage_to_openai(msg.get("usage")),
    }


def openai_to_anthropic_response(body: Any) -> Obj:
    """An OpenAI ``chat.completion`` as an Anthropic ``message`` (first choice)."""
    resp = obj(body, "response")
    choices = arr(resp.get("choices"), "response.choices")
    if not choices:
        raise TranslationError("response.choices is empty", field="response.choices")
    choice = obj(choices[0], "response.choices[0]")
    message = obj(choice.get("message"), "response.choices[0].message")
    content: list[Obj] = []
    text = message.get("content")
    if text is None:
        text = message.get("refusal")
    if text:
        content.append({"type": "text", "text": string(text, "response.message.content")})
    for i, c in enumerate(arr(message.get("tool_calls") or [], "response.message.tool_calls")):
        cf = f"response.message.tool_calls[{i}]"
        call = obj(c, cf)
        fn = obj(call.get("function"), f"{cf}.function")
        content.append(
            {
                "type": "tool_use",
                "id": string(call.get("id"), f"{cf}.id"),
                "name": string(fn.get("name"), f"{cf}.function.name"),
                "input": loads_args(string(fn.get("arguments", ""), cf), f"{cf}.arguments"),
            }
        )
    return {
        "id": string(resp.get("id"), "response.id"),
        "type": "message",
        "role": "assistant",
        "model": string(resp.get("model"), "response.model"),
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")) or "end_turn",
        "stop_sequence": None,
        "usage": openai_usage_to_anthropic(resp.get("usage")),
    }
