"""The golden captures of tests/fixtures/clients: sanitized, current, saying what the README says.

They are recaptured with ``python -m tests.clients.capture`` when a pinned CLI
version changes; a capture from another version fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.clients.capture import SCENARIOS
from tests.plugins.clients import pinned_version

DIR = Path(__file__).resolve().parents[1] / "fixtures" / "clients"
VERSIONS = {
    "claude-code": pinned_version("@anthropic-ai/claude-code"),
    "codex": pinned_version("@openai/codex"),
}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DIR / f"{name}.json").read_text())
    return data


def test_every_scenario_has_a_capture_of_the_pinned_version() -> None:
    assert {p.stem for p in DIR.glob("*.json")} == set(SCENARIOS)
    for name in SCENARIOS:
        data = load(name)
        assert data["version"] == VERSIONS[data["client"]], name
        assert data.get("egress_attempts", []) == [], name


@pytest.mark.parametrize("path", sorted(DIR.glob("*.json")), ids=lambda p: p.stem)
def test_captures_hold_no_secret_or_local_path(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"sk-(ant-)?[A-Za-z0-9_-]{8,}|gw_[A-Za-z0-9_-]{8,}", text)
    assert "/tmp/" not in text and "metis-capture-" not in text
    for r in load(path.stem).get("requests", []):
        assert not {"authorization", "x-api-key", "cookie"} & set(r["headers"])


def test_claude_code_request_shape() -> None:
    first, second = load("claude_tool_turn")["requests"]
    for r in (first, second):
        assert (r["method"], r["path"], r["query"]) == ("POST", "/v1/messages", [["beta", "true"]])
        assert r["headers"]["anthropic-version"] == "2023-06-01"
        assert r["body"]["stream"] is True
    # the second turn: tool_use answered by tool_result, the marker moved to the newest block
    roles = [m["role"] for m in second["body"]["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert second["body"]["messages"][2]["content"][0]["type"] == "tool_result"
    marked = [
        (i, j)
        for i, m in enumerate(second["body"]["messages"])
        for j, b in enumerate(m["content"])
        if "cache_control" in b
    ]
    assert marked == [(2, 0)]


def test_retry_counts() -> None:
    assert len(load("claude_429_should_retry_false")["requests"]) == 1
    assert len(load("claude_429_retry")["requests"]) > 3
    assert len(load("codex_429_insufficient_quota")["requests"]) == 1
    assert len(load("codex_429_quota_exceeded_should_retry_false")["requests"]) == 6
    ws426 = [r["kind"] for r in load("codex_websocket_426")["requests"]]
    assert ws426 == ["websocket", "http"]
    ws404 = [r["kind"] for r in load("codex_websocket_404")["requests"]]
    assert ws404.count("websocket") > 1 and ws404[-1] == "http"


def test_codex_responses_request_shape() -> None:
    post = load("codex_tool_turn")["requests"][0]
    assert (post["method"], post["path"], post["query"]) == ("POST", "/v1/responses", [])
    body = post["body"]
    assert body["stream"] is True and body["store"] is False
    assert {t["type"] for t in body["tools"]} == {"function", "namespace", "web_search"}
    assert [i["role"] for i in body["input"]] == ["developer", "developer", "user", "user"]
    variants = load("codex_stream_requirements")["variants"]
    assert variants["item_done_and_completed"]["exit_code"] == 0
    assert variants["completed_without_id"]["posts"] == variants["no_completed"]["posts"] == 6
