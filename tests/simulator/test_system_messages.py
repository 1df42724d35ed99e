"""Mid-conversation ``role: "system"`` messages in the Anthropic simulator.

Claude Code 2.1.332 sends them to its default models (Opus 4.8 and later: see
tests/fixtures/clients/README.md); Anthropic documents them as generally
available from Claude Opus 4.8 on (no beta header) and earlier models refuse
them with a 400, which Claude Code recognises and answers by resending without
them. The simulator must do both.
"""

import re
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.plugins.simulator import Simulator

NEW = "claude-opus-4-8"
OLD = "claude-haiku-4-5-20251001"


@pytest.fixture
def http(simulator: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=simulator.url,
        headers={"x-api-key": simulator.anthropic_key, "anthropic-version": "2023-06-01"},
        timeout=10,
    ) as c:
        yield c


def post(http: httpx.Client, model: str, messages: list[Any], **kw: Any) -> httpx.Response:
    return http.post(
        "/v1/messages", json={"model": model, "max_tokens": 30, "messages": messages, **kw}
    )


CLAUDE_CODE_SHAPE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "<system-reminder>x</system-reminder>"},
            {"type": "text", "text": "hi"},
        ],
    },
    {
        "role": "system",
        "content": [
            {
                "type": "text",
                "text": "# Environment\nwd: /tmp/w",
                "cache_control": {"type": "ephemeral"},
            }
        ],
    },
]


def test_supported_model_accepts_them_and_counts_their_tokens(
    simulator: Simulator, http: httpx.Client
) -> None:
    r = post(http, NEW, CLAUDE_CODE_SHAPE)
    assert r.status_code == 200, r.text
    u = r.json()["usage"]
    reminder, env = "<system-reminder>x</system-reminder>", "# Environment\nwd: /tmp/w"
    expected = 3 + len(reminder) // 4 + 1 + 3 + (len(env) + 3) // 4  # 4 characters a token
    assert (
        u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
        == expected
    )
    counted = http.post(
        "/v1/messages/count_tokens", json={"model": NEW, "messages": CLAUDE_CODE_SHAPE}
    )
    assert counted.json() == {"input_tokens": expected}
    assert simulator.ground_truth()["total"]["input_tokens"] == expected
    # a string content and a system message between turns
    r = post(
        http,
        "claude-opus-5-5",
        [
            {"role": "user", "content": "a"},
            {"role": "system", "content": "be brief"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "b"},
        ],
    )
    assert r.status_code == 200, r.text


def test_earlier_models_refuse_them_as_the_api_does(http: httpx.Client) -> None:
    r = post(http, OLD, CLAUDE_CODE_SHAPE)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["message"] == "messages.1.role: role 'system' is not supported on this model"
    # what Claude Code matches to resend without system messages (its jLi() check)
    assert "not supported" in err["message"] and re.search(r"role .{0,2}system", err["message"])
    assert post(http, "claude-sonnet-4-6", CLAUDE_CODE_SHAPE).status_code == 400
    assert post(http, "claude-opus-4-1-20250805", CLAUDE_CODE_SHAPE).status_code == 400


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        (
            [{"role": "system", "content": "first"}, {"role": "user", "content": "q"}],
            "follow a user",
        ),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
                {"role": "system", "content": "after the assistant"},
            ],
            "follow a user",
        ),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "system", "content": [{"type": "image", "source": {}}]},
            ],
            "only text",
        ),
        ([{"role": "tool", "content": "q"}], "'user', 'assistant' or 'system'"),
    ],
)
def test_placement_and_content_rules(
    http: httpx.Client, messages: list[Any], fragment: str
) -> None:
    r = post(http, NEW, messages)
    assert r.status_code == 400
    assert fragment in r.json()["error"]["message"]


def test_tool_trigger_reads_the_user_message_before_a_system_message(http: httpx.Client) -> None:
    tools = [
        {"name": "Read", "description": "x", "input_schema": {"type": "object", "properties": {}}},
        {
            "name": "Bash",
            "description": "x",
            "input_schema": {
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
            },
        },
    ]
    msgs = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Use ToolSearch to find tools; Read docs."},
                {"type": "text", "text": "Please use tool Bash."},
            ],
        },
        {"role": "system", "content": "Environment: linux"},
    ]
    r = post(http, NEW, msgs, tools=tools)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["stop_reason"] == "tool_use"
    assert body["content"][0]["name"] == "Bash" and body["content"][0]["input"] == {
        "command": "sim"
    }
    # earlier blocks that merely contain the letters ("Use ToolSearch") do not trigger a call
    quiet = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Please use tool Bash."},
                {"type": "text", "text": "Use ToolSearch first."},
            ],
        }
    ]
    assert post(http, NEW, quiet, tools=tools).json()["content"][0]["type"] == "text"


def test_official_sdk_sends_them(simulator: Simulator) -> None:
    with anthropic.Anthropic(
        api_key=simulator.anthropic_key, base_url=simulator.anthropic_base_url, max_retries=0
    ) as c:
        m = c.messages.create(
            model=NEW,
            max_tokens=20,
            messages=[
                {"role": "user", "content": "hello"},
                {"role": "system", "content": "answer in one word"},
            ],
        )
        assert m.content[0].type == "text" and m.usage.input_tokens > 0
        with pytest.raises(anthropic.BadRequestError, match="not supported on this model"):
            c.messages.create(
                model=OLD,
                max_tokens=20,
                messages=[
                    {"role": "user", "content": "hello"},
                    {"role": "system", "content": "answer in one word"},
                ],
            )
