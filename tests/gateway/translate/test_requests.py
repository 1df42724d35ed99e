"""Request translation: OpenAI chat completions ⇄ Anthropic messages."""

from typing import Any

import pytest

from metis.gateway.translate import (
    DEFAULT_MAX_TOKENS,
    TranslationError,
    UnsupportedFeature,
    anthropic_to_openai_request,
    openai_to_anthropic_request,
)

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def openai_conversation() -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {
                "role": "tool",
                "tool_call_id": "call_2",
                "content": [{"type": "text", "text": "25C"}],
            },
            {"role": "user", "content": [{"type": "text", "text": "Which is warmer?"}]},
        ],
        "tools": [TOOL],
        "tool_choice": "auto",
        "stop": "END",
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u-1",
        "seed": 7,
    }


def test_openai_to_anthropic_full_conversation() -> None:
    out = openai_to_anthropic_request(openai_conversation(), "claude-haiku-4-5")
    assert out == {
        "model": "claude-haiku-4-5",
        "system": "You are terse.",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "call_2",
                        "name": "get_weather",
                        "input": {"city": "Rome"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "25C"},
                    {"type": "text", "text": "Which is warmer?"},
                ],
            },
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": TOOL["function"]["parameters"],  # type: ignore[index]
            }
        ],
        "tool_choice": {"type": "auto"},
    }


def test_openai_input_is_not_mutated() -> None:
    body = openai_conversation()
    snapshot = repr(body)
    openai_to_anthropic_request(body, "claude-haiku-4-5")
    assert repr(body) == snapshot


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    ],
)
def test_openai_tool_choice(choice: Any, parallel: Any, expected: dict[str, Any]) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "tools": [TOOL]}
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert openai_to_anthropic_request(body, "m")["tool_choice"] == expected


def test_openai_max_tokens_and_stream_and_images() -> None:
    body = {
        "messages": [
            {"role": "developer", "content": "A"},
            {"role": "system", "content": [{"type": "text", "text": "B"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                ],
            },
        ],
        "max_completion_tokens": 50,
        "max_tokens": 999,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    out = openai_to_anthropic_request(body, "m")
    assert out["max_tokens"] == 50
    assert out["stream"] is True
    assert out["system"] == "A\n\nB"
    assert out["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    assert out["messages"][0]["content"][2]["source"] == {
        "type": "url",
        "url": "https://x.test/a.jpg",
    }
    assert "stream_options" not in out


@pytest.mark.parametrize(
    ("extra", "feature"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "logprobs"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {}}},
            "response_format.type=json_schema",
        ),
        ({"response_format": {"type": "json_object"}}, "response_format.type=json_object"),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"temperature": 1.5}, "temperature"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"functions": []}, "functions"),
        ({"some_future_field": 1}, "some_future_field"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type=web_search"),
    ],
)
def test_openai_unsupported_features_name_the_feature(extra: dict[str, Any], feature: str) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(UnsupportedFeature) as ei:
        openai_to_anthropic_request(body, "claude-haiku-4-5")
    assert ei.value.feature == feature
    assert feature in ei.value.message
    assert "Anthropic" in ei.value.message


def test_openai_audio_input_part_is_unsupported() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x"}}]}
        ]
    }
    with pytest.raises(UnsupportedFeature, match="input_audio"):
        openai_to_anthropic_request(body, "m")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": "hi"}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": "lots"}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{not json"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
    ],
)
def test_openai_malformed_requests_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(TranslationError) as ei:
        openai_to_anthropic_request(body, "m")
    assert ei.value.field == field


def anthropic_conversation() -> dict[str, Any]:
    return {
        "model": "claude-haiku-4-5",
        "max_tokens": 256,
        "system": [
            {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}
        ],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "18C"}],
                    },
                    {"type": "text", "text": "And?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "metadata": {"user_id": "u-1"},
        "stream": True,
    }


def test_anthropic_to_openai_full_conversation() -> None:
    out = anthropic_to_openai_request(anthropic_conversation(), "gpt-4o-mini")
    assert out == {
        "model": "gpt-4o-mini",
        "max_completion_tokens": 256,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "user", "content": "And?"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.3,
        "stop": ["END"],
        "user": "u-1",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }


def test_anthropic_tool_error_and_images() -> None:
    body = {
        "max_tokens": 10,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t",
                        "content": "boom",
                        "is_error": True,
                    },
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            }
        ],
    }
    out = anthropic_to_openai_request(body, "gpt-4o")
    assert out["messages"][0] == {"role": "tool", "tool_call_id": "t", "content": "Error: boom"}
    assert out["messages"][1]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    ]


@pytest.mark.parametrize(
    ("extra", "feature"),
    [
        ({"top_k": 5}, "top_k"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1000}}, "thinking"),
        ({"mcp_servers": []}, "mcp_servers"),
        (
            {"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
            "tools[0].type=web_search_20250305",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[].type=document",
        ),
    ],
)
def test_anthropic_unsupported_features(extra: dict[str, Any], feature: str) -> None:
    body = {"max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(UnsupportedFeature) as ei:
        anthropic_to_openai_request(body, "gpt-4o")
    assert ei.value.feature == feature
    assert "OpenAI" in ei.value.message


def test_anthropic_requires_max_tokens() -> None:
    with pytest.raises(TranslationError, match="max_tokens is required"):
        anthropic_to_openai_request({"messages": [{"role": "user", "content": "x"}]}, "gpt-4o")


def test_anthropic_thinking_disabled_is_fine() -> None:
    body = {
        "max_tokens": 10,
        "thinking": {"type": "disabled"},
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert anthropic_to_openai_request(body, "gpt-4o")["messages"] == [
        {"role": "user", "content": "hi"}
    ]
