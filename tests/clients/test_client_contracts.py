"""What the pinned CLIs do with the answers the gateway gives them (live, against the recorder).

These are the client behaviours the gateway's design relies on (see
tests/fixtures/clients/README.md): they are checked on the real CLIs, so a
version bump that changes one fails here first. No gateway is involved; the
recorder answers with canned responses or forwards to the simulator.
"""

from __future__ import annotations

from collections import Counter

from tests.clients import canned
from tests.clients.egress import EgressTrap
from tests.clients.recorder import Rule
from tests.plugins.clients import ClaudeCode, Codex, RecorderFactory
from tests.plugins.simulator import Simulator

CLAUDE_MODEL = "claude-sonnet-4-6"
CODEX_MODEL = "gpt-5-mini"
KEY = "sk-ant-api03-contract-test-key-0001"


def test_claude_code_stops_at_a_429_that_says_do_not_retry(
    claude_code: ClaudeCode, recorder_factory: RecorderFactory, egress_trap: EgressTrap
) -> None:
    rec, url = recorder_factory(secrets=[KEY])
    rec.add_rule(
        canned.anthropic_error(
            429,
            "rate_limit_error",
            "key_daily cap of $1.00 reached",
            {"retry-after": "30", "x-should-retry": "false"},
        )
    )
    run = claude_code.run("hi", base_url=url, key=KEY, model=CLAUDE_MODEL, timeout=120)
    assert run.returncode == 1 and not run.timed_out, run.report()
    result = run.json()
    assert result["is_error"] is True and result["api_error_status"] == 429
    assert "key_daily cap of $1.00 reached" in result["result"]
    assert len(rec.requests("/v1/messages")) == 1
    assert egress_trap.attempts == []


def test_claude_code_sends_the_beta_query_and_headers(
    claude_code: ClaudeCode, recorder_factory: RecorderFactory, simulator: Simulator
) -> None:
    rec, url = recorder_factory(simulator.url, secrets=[simulator.anthropic_key])
    claude_code.run("hi", base_url=url, key=simulator.anthropic_key, model=CLAUDE_MODEL).ok()
    [ex] = rec.requests("/v1/messages")
    assert ex.query == [("beta", "true")]
    assert ex.headers["anthropic-version"] == "2023-06-01"
    assert ex.headers["anthropic-beta"].startswith("claude-code-20250219,")
    assert ex.headers["x-app"] == "cli" and "x-api-key" in ex.header_names
    assert ex.body["stream"] is True and ex.body["max_tokens"] == 32000
    breakpoints = [b for b in ex.body["system"] if "cache_control" in b]
    breakpoints += [b for m in ex.body["messages"] for b in m["content"] if "cache_control" in b]
    assert len(breakpoints) == 3


def test_claude_code_context_counts_tokens_without_billed_calls(
    claude_code: ClaudeCode, recorder_factory: RecorderFactory, simulator: Simulator
) -> None:
    rec, url = recorder_factory(simulator.url, secrets=[simulator.anthropic_key])
    run = claude_code.run(
        "/context", base_url=url, key=simulator.anthropic_key, model=CLAUDE_MODEL
    ).ok()
    assert "Context Usage" in run.json()["result"]
    paths = Counter(e.path for e in rec.requests())
    assert paths["/v1/messages/count_tokens"] > 10 and paths["/v1/messages"] == 0
    assert all(e.query == [("beta", "true")] for e in rec.requests())
    assert simulator.ground_truth()["total"]["requests"] == 0  # counting is not billed


def test_claude_code_resends_without_system_messages_when_the_model_refuses_them(
    claude_code: ClaudeCode, recorder_factory: RecorderFactory, simulator: Simulator
) -> None:
    """Its default model gets a role:system message; a 400 makes it resend without."""
    rec, url = recorder_factory(simulator.url, secrets=[simulator.anthropic_key])
    refusal = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "messages.1.role: role 'system' is not supported on this model",
        },
    }
    rec.add_rule(
        Rule(
            "POST",
            "/v1/messages",
            400,
            refusal,
            when=lambda ex: any(m.get("role") == "system" for m in ex.body["messages"]),
        )
    )
    claude_code.run("hi", base_url=url, key=simulator.anthropic_key, model=None).ok()
    first, second = rec.requests("/v1/messages")
    assert first.status == 400 and "per-turn-control-2026-07-01" in first.headers["anthropic-beta"]
    assert second.status == 200 and "per-turn-control" not in second.headers["anthropic-beta"]
    assert [m["role"] for m in second.body["messages"]] == ["user"]


def test_codex_falls_back_to_http_at_once_on_a_426_upgrade_answer(
    codex_cli: Codex, recorder_factory: RecorderFactory
) -> None:
    rec, url = recorder_factory(secrets=[KEY], ws_status=426)
    rec.add_rule(canned.responses_rule(canned.full_stream(canned.message_item("hello there"))))
    run = codex_cli.run(
        "say hi", base_url=url + "/v1", key=KEY, model=CODEX_MODEL, supports_websockets=True
    ).ok()
    assert "hello there" in run.stdout
    [ws] = rec.requests("/v1/responses", kind="websocket")
    assert ws.headers["openai-beta"].startswith("responses_websockets=")
    assert len(rec.requests("/v1/responses")) == 1


def test_codex_needs_the_completed_event_with_an_id(
    codex_cli: Codex, recorder_factory: RecorderFactory
) -> None:
    rec, url = recorder_factory(secrets=[KEY])
    rec.add_rule(canned.responses_rule(canned.STREAM_VARIANTS["item_done_and_completed"]))
    run = codex_cli.run("say hi", base_url=url + "/v1", key=KEY, model=CODEX_MODEL).ok()
    assert "canned answer" in run.stdout
    [post] = rec.requests("/v1/responses")
    body = post.body
    assert (body["stream"], body["store"], body["tool_choice"]) == (True, False, "auto")
    assert body["include"] == ["reasoning.encrypted_content"]
    assert "max_output_tokens" not in body and "instructions" not in body
    assert post.query == [] and "openai-beta" not in post.header_names


def test_codex_stops_at_a_429_only_with_code_insufficient_quota(
    codex_cli: Codex, recorder_factory: RecorderFactory
) -> None:
    rec, url = recorder_factory(secrets=[KEY])
    rec.add_rule(
        canned.openai_error(
            429, "insufficient_quota", "rate_limit_exceeded", "cap reached", {"retry-after": "1"}
        )
    )
    run = codex_cli.run("say hi", base_url=url + "/v1", key=KEY, model=CODEX_MODEL)
    assert run.returncode == 1 and "Quota exceeded" in run.stderr, run.report()
    assert len(rec.requests("/v1/responses")) == 1
    # x-should-retry is not read: another code is retried, 1 + 5 requests
    rec2, url2 = recorder_factory(secrets=[KEY])
    rec2.add_rule(
        canned.openai_error(
            429,
            "quota_exceeded",
            "rate_limit_exceeded",
            "cap reached",
            {"retry-after": "0", "x-should-retry": "false"},
        )
    )
    retried = Codex(codex_cli.root.parent / "codex2", codex_cli.trap).run(
        "say hi", base_url=url2 + "/v1", key=KEY, model=CODEX_MODEL
    )
    assert retried.returncode == 1, retried.report()
    assert len(rec2.requests("/v1/responses")) == 6, retried.report()


def test_codex_tool_turn_sends_the_tool_output_back(
    codex_cli: Codex, recorder_factory: RecorderFactory
) -> None:
    rec, url = recorder_factory(secrets=[KEY])
    call = canned.function_call_item("exec_command", {"cmd": "sim"})
    rec.add_rule(canned.responses_rule(canned.full_stream(call), times=1))
    rec.add_rule(canned.responses_rule(canned.full_stream(canned.message_item("done"))))
    codex_cli.add_tool("sim", 'echo ran > "$PWD/ran.txt"\necho sim-output-4242\n')
    codex_cli.run(
        "Please use tool exec_command to run sim.",
        base_url=url + "/v1",
        key=KEY,
        model=CODEX_MODEL,
        args=["-s", "workspace-write"],
    ).ok()
    assert (codex_cli.workdir / "ran.txt").read_text() == "ran\n"
    first, second = rec.requests("/v1/responses")
    assert first.body["input"][-1]["type"] == "message"
    items = second.body["input"]
    assert items[-2]["type"] == "function_call" and items[-2]["call_id"] == "call_canned"
    assert items[-1]["type"] == "function_call_output" and items[-1]["call_id"] == "call_canned"
    assert "sim-output-4242" in items[-1]["output"]
