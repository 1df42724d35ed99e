"""The client-test harness itself: pinned CLIs, the recorder, the egress trap, timeouts."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.clients.egress import EgressTrap
from tests.clients.recorder import Rule
from tests.plugins.clients import (
    ClaudeCode,
    Codex,
    RecorderFactory,
    cli_binary,
    pinned_version,
    run_cli,
)
from tests.plugins.simulator import Simulator


@pytest.mark.parametrize(
    ("name", "package"),
    [
        ("claude", "@anthropic-ai/claude-code"),
        ("codex", "@openai/codex"),
        ("gemini", "@google/gemini-cli"),
    ],
)
def test_the_pinned_cli_is_installed_and_runs(name: str, package: str, tmp_path: Path) -> None:
    run = run_cli(
        [str(cli_binary(name)), "--version"],
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,
        timeout=60,
    ).ok()
    assert pinned_version(package) in run.stdout, run.report()


def test_a_missing_cli_fails_the_test_with_the_install_hint() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"scripts/clients\.sh"):
        cli_binary("no-such-cli")


def test_a_hung_cli_is_killed_at_the_timeout(tmp_path: Path) -> None:
    script = tmp_path / "hang.sh"
    script.write_text("#!/bin/sh\necho started\nsleep 60 &\nsleep 60\n")
    script.chmod(0o755)
    run = run_cli([str(script)], env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, timeout=1)
    assert run.timed_out and run.returncode is not None and run.returncode < 0
    assert "started" in run.stdout
    with pytest.raises(AssertionError, match="timed out"):
        run.ok()


def test_the_recorder_forwards_records_and_scrubs_secrets(
    simulator: Simulator, recorder_factory: RecorderFactory
) -> None:
    rec, url = recorder_factory(simulator.url, secrets=[simulator.anthropic_key])
    r = httpx.post(
        f"{url}/v1/messages?beta=true",
        headers={
            "x-api-key": simulator.anthropic_key,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "claude-code-20250219",
            "user-agent": "test/1",
        },
        json={
            "model": "claude-haiku-4-5-20251001",
            "max_tokens": 10,
            "stream": True,
            "messages": [{"role": "user", "content": f"my key is {simulator.anthropic_key}"}],
        },
        timeout=10,
    )
    assert r.status_code == 200 and "event: message_stop" in r.text  # streamed through
    [ex] = rec.requests("/v1/messages")
    assert ex.query == [("beta", "true")] and ex.status == 200 and ex.answer == "upstream"
    assert ex.headers["anthropic-beta"] == "claude-code-20250219"
    assert "x-api-key" in ex.header_names and "x-api-key" not in ex.headers
    assert ex.body["messages"][0]["content"] == "my key is <secret>"
    assert simulator.anthropic_key not in json.dumps([e.to_json() for e in rec.exchanges])
    assert len(simulator.calls()) == 1


def test_the_recorder_answers_rules_and_refuses_websockets(
    recorder_factory: RecorderFactory,
) -> None:
    rec, url = recorder_factory(ws_status=426)
    rec.add_rule(Rule("POST", "/v1/x", 429, {"e": 1}, {"x-should-retry": "false"}, times=1))
    first = httpx.post(f"{url}/v1/x", json={}, timeout=10)
    second = httpx.post(f"{url}/v1/x", json={}, timeout=10)
    assert (first.status_code, first.headers["x-should-retry"]) == (429, "false")
    assert second.status_code == 404  # the rule answered once; no upstream: 404
    with pytest.raises(InvalidStatus) as exc:
        connect(url.replace("http", "ws") + "/v1/responses", open_timeout=5)
    assert exc.value.response.status_code == 426
    [ws] = rec.requests(kind="websocket")
    assert (ws.path, ws.status) == ("/v1/responses", 426)


def test_the_egress_trap_records_and_refuses() -> None:
    with EgressTrap() as trap:
        with httpx.Client(proxy=trap.url, timeout=5) as c:
            with pytest.raises(httpx.ProxyError):
                c.get("https://example.invalid/x")
            assert c.get("http://example.invalid/y").status_code == 403
        hosts = [(a.method, a.host) for a in trap.attempts]
        assert ("CONNECT", "example.invalid") in hosts and ("GET", "example.invalid") in hosts


def test_runners_isolate_home_and_keep_keys_off_argv(
    tmp_path: Path, egress_trap: EgressTrap
) -> None:
    cc = ClaudeCode(tmp_path / "cc", egress_trap)
    env = cc.env("http://127.0.0.1:9", "gw_secret_value")
    assert env["HOME"] == str(cc.home) and env["CLAUDE_CONFIG_DIR"] == str(cc.config_dir)
    assert env["ANTHROPIC_API_KEY"] == "gw_secret_value" and "ANTHROPIC_AUTH_TOKEN" not in env
    assert cc.env("u", "k", auth="bearer")["ANTHROPIC_AUTH_TOKEN"] == "k"
    assert env["HTTPS_PROXY"] == egress_trap.url and "127.0.0.1" in env["NO_PROXY"]
    assert env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    cx = Codex(tmp_path / "cx", egress_trap)
    cfg = cx.config("http://127.0.0.1:9/v1", model="gpt-5-mini")
    assert 'env_key = "METIS_GATEWAY_KEY"' in cfg and "plugins = false" in cfg
    assert 'wire_api = "responses"' in cfg and "gw_" not in cfg
