"""Capture what the real CLIs send: ``python -m tests.clients.capture [NAME ...]``.

Runs each scenario below (the pinned Claude Code and Codex CLIs, the harness of
tests/plugins/clients.py, the recorder of tests/clients/recorder.py in front of
the provider simulator or answering canned responses) and writes one sanitized
JSON file per scenario to tests/fixtures/clients/. Sanitizing: the generated keys
are replaced by ``<secret>`` (the recorder never keeps auth headers), temp paths
by ``<tmp>``, 64-hex ids by ``<hex64>``, and strings over 240 characters (the
CLIs' system prompts, tool descriptions) are cut to their first 120 characters
plus their length: the structure is kept, the text is not. A request body equal
to an earlier one in the same capture (a retry) is written as
``{"same_body_as_request": i}``. What the captures show is written up in
tests/fixtures/clients/README.md. Takes about two minutes (the 429 scenarios
wait on the CLIs' back-off).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from metis.simulator import create_app
from metis.simulator.keys import new_anthropic_key
from metis.util.server_thread import ServerThread
from tests.clients import canned
from tests.clients.egress import EgressTrap
from tests.clients.recorder import Recorder, Rule
from tests.plugins.clients import ClaudeCode, CliRun, Codex, pinned_version

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "clients"
CLAUDE_MODEL = "claude-sonnet-4-6"
CODEX_MODEL = "gpt-5-mini"
TOOL_SCRIPT = 'echo "tool ran" > "$PWD/tool-ran.txt"\necho "sim-output-4242"\n'
_HEX64 = re.compile(r"\b[0-9a-f]{64}\b")


def sanitize(obj: Any, tmp: str) -> Any:
    if isinstance(obj, dict):
        return {k: sanitize(v, tmp) for k, v in obj.items()}
    if isinstance(obj, list):
        return [sanitize(v, tmp) for v in obj]
    if isinstance(obj, str):
        s = _HEX64.sub("<hex64>", obj.replace(tmp, "<tmp>"))
        return s if len(s) <= 240 else f"{s[:120]}… [{len(s)} chars]"
    return obj


class Session:
    """One scenario: a temp dir, an egress trap, a recorder (optionally in front of a simulator)."""

    def __init__(self, *, simulator: bool, ws_status: int = 404) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="metis-capture-")
        self.tmp = Path(self._tmp.name)
        self.trap = EgressTrap().start()
        self.sim = ServerThread(create_app()).start() if simulator else None
        self.key = new_anthropic_key()
        self.recorder = Recorder(
            self.sim.url if self.sim else None, secrets=[self.key], ws_status=ws_status
        )
        self.server = ServerThread(self.recorder).start()
        self.url = self.server.url

    def claude(self) -> ClaudeCode:
        cc = ClaudeCode(self.tmp / "claude", self.trap)
        cc.add_tool("sim", TOOL_SCRIPT)
        return cc

    def codex(self) -> Codex:
        cx = Codex(self.tmp / "codex", self.trap)
        cx.add_tool("sim", TOOL_SCRIPT)
        return cx

    def record(self, client: str, description: str, run: CliRun, **setup: Any) -> dict[str, Any]:
        package = "@anthropic-ai/claude-code" if client == "claude-code" else "@openai/codex"
        argv = [Path(run.argv[0]).name, *run.argv[1:]]
        data = {
            "client": client,
            "version": pinned_version(package),
            "description": description,
            "command": argv,
            "setup": setup,
            "result": {
                "exit_code": run.returncode,
                "timed_out": run.timed_out,
                "seconds": round(run.seconds, 1),
                "stdout": _output(run.stdout),
                "stderr": _output(run.stderr),
            },
            "requests": _dedupe([e.to_json() for e in self.recorder.exchanges]),
            "egress_attempts": [f"{a.method} {a.target}" for a in self.trap.attempts],
        }
        return dict(sanitize(data, str(self.tmp)))

    def close(self) -> None:
        self.server.stop()
        if self.sim:
            self.sim.stop()
        self.trap.stop()
        self._tmp.cleanup()


def _output(text: str) -> Any:
    """A CLI's output: its JSON document when it is one, else its last 40 lines."""
    try:
        return json.loads(text)
    except ValueError:
        return text.splitlines()[-40:]


def _dedupe(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A body equal to an earlier request's is written as ``{"same_body_as_request": i}``."""
    for i, r in enumerate(requests):
        for j in range(i):
            if r["body"] is not None and r["body"] == requests[j]["body"]:
                r["body"] = {"same_body_as_request": j}
                break
    return requests


def _has_system_message(body: Any) -> bool:
    msgs = body.get("messages") if isinstance(body, dict) else None
    return isinstance(msgs, list) and any(
        isinstance(m, dict) and m.get("role") == "system" for m in msgs
    )


# -- Claude Code ------------------------------------------------------------------


def claude_tool_turn(s: Session) -> dict[str, Any]:
    run = s.claude().run(
        "Please use tool Bash to run sim.",
        base_url=s.url,
        key=s.key,
        model=CLAUDE_MODEL,
        args=["--allowedTools", "Bash(sim)"],
    )
    return s.record(
        "claude-code",
        "claude -p with one Bash tool round trip, through the recorder to the simulator",
        run,
        upstream="simulator",
    )


def claude_default_model(s: Session) -> dict[str, Any]:
    run = s.claude().run("hi", base_url=s.url, key=s.key, model=None)
    return s.record(
        "claude-code",
        "claude -p without --model: its default model, to the simulator (which accepts "
        "mid-conversation system messages on Opus 4.8 and later)",
        run,
        upstream="simulator",
    )


def claude_system_role_refused(s: Session) -> dict[str, Any]:
    s.recorder.add_rule(
        Rule(
            "POST",
            "/v1/messages",
            400,
            {
                "type": "error",
                "error": {
                    "type": "invalid_request_error",
                    "message": "messages.1.role: role 'system' is not supported on this model",
                },
            },
            when=lambda ex: _has_system_message(ex.body),
        )
    )
    run = s.claude().run("hi", base_url=s.url, key=s.key, model=None)
    return s.record(
        "claude-code",
        "default model; the first request (with a role:system message) is refused with the "
        "API's 400, later ones go to the simulator",
        run,
        upstream="simulator",
        rule="400 'role system not supported' for requests with a system message",
    )


def claude_429_no_retry(s: Session) -> dict[str, Any]:
    s.recorder.add_rule(
        canned.anthropic_error(
            429,
            "rate_limit_error",
            "key_daily cap of $1.00 reached",
            {"retry-after": "30", "x-should-retry": "false"},
        )
    )
    run = s.claude().run("hi", base_url=s.url, key=s.key, model=CLAUDE_MODEL, timeout=120)
    return s.record(
        "claude-code",
        "every /v1/messages answered 429 with x-should-retry: false",
        run,
        rule="429 rate_limit_error, retry-after: 30, x-should-retry: false",
    )


def claude_429_retry(s: Session) -> dict[str, Any]:
    s.recorder.add_rule(
        canned.anthropic_error(
            429, "rate_limit_error", "key_daily cap of $1.00 reached", {"retry-after": "1"}
        )
    )
    run = s.claude().run("hi", base_url=s.url, key=s.key, model=CLAUDE_MODEL, timeout=45)
    return s.record(
        "claude-code",
        "every /v1/messages answered 429 without x-should-retry (run cut at 45 s)",
        run,
        rule="429 rate_limit_error, retry-after: 1",
    )


def claude_404(s: Session) -> dict[str, Any]:
    s.recorder.add_rule(canned.anthropic_error(404, "not_found_error", "Not Found"))
    run = s.claude().run("hi", base_url=s.url, key=s.key, model=CLAUDE_MODEL, timeout=60)
    return s.record("claude-code", "every /v1/messages answered 404", run, rule="404")


def claude_context(s: Session) -> dict[str, Any]:
    run = s.claude().run("/context", base_url=s.url, key=s.key, model=CLAUDE_MODEL)
    return s.record(
        "claude-code",
        "claude -p /context: its token counts, from POST /v1/messages/count_tokens (simulator)",
        run,
        upstream="simulator",
    )


def claude_context_without_count_tokens(s: Session) -> dict[str, Any]:
    s.recorder.add_rule(
        Rule(
            "POST",
            "/v1/messages/count_tokens",
            404,
            {"type": "error", "error": {"type": "not_found_error", "message": "Not Found"}},
        )
    )
    run = s.claude().run("/context", base_url=s.url, key=s.key, model=CLAUDE_MODEL)
    return s.record(
        "claude-code",
        "claude -p /context when count_tokens answers 404 (as a gateway without the route)",
        run,
        upstream="simulator",
        rule="404 on /v1/messages/count_tokens",
    )


# -- Codex -------------------------------------------------------------------------


def codex_no_responses_route(s: Session) -> dict[str, Any]:
    run = s.codex().run("say hi", base_url=s.url + "/v1", key=s.key, model=CODEX_MODEL)
    return s.record(
        "codex",
        "codex exec, custom provider (wire_api responses, no websockets) against a server "
        "without /v1/responses (every request 404)",
        run,
        rule="404 for everything",
    )


def codex_tool_turn(s: Session) -> dict[str, Any]:
    s.recorder.add_rule(
        canned.responses_rule(
            canned.full_stream(canned.function_call_item("exec_command", {"cmd": "sim"})), times=1
        )
    )
    s.recorder.add_rule(canned.responses_rule(canned.full_stream(canned.message_item("done"))))
    run = s.codex().run(
        "Please use tool exec_command to run sim.",
        base_url=s.url + "/v1",
        key=s.key,
        model=CODEX_MODEL,
        args=["-s", "workspace-write"],
    )
    return s.record(
        "codex",
        "codex exec -s workspace-write: a canned function_call (exec_command {cmd: sim}), then "
        "a canned message; the second request carries the function_call_output",
        run,
        rule="canned Responses streams",
    )


def codex_websocket(status: int) -> Callable[[Session], dict[str, Any]]:
    def scenario(s: Session) -> dict[str, Any]:
        s.recorder.add_rule(canned.responses_rule(canned.full_stream(canned.message_item("hi"))))
        run = s.codex().run(
            "say hi",
            base_url=s.url + "/v1",
            key=s.key,
            model=CODEX_MODEL,
            supports_websockets=True,
        )
        return s.record(
            "codex",
            f"supports_websockets = true; the WebSocket upgrade answered {status}, "
            "POST /v1/responses answers a canned stream",
            run,
            ws_status=status,
        )

    return scenario


def codex_429(code: str, should_retry: bool) -> Callable[[Session], dict[str, Any]]:
    def scenario(s: Session) -> dict[str, Any]:
        headers = {"retry-after": "1"}
        if not should_retry:
            headers["x-should-retry"] = "false"
        s.recorder.add_rule(
            canned.openai_error(429, code, "rate_limit_exceeded", "cap reached", headers)
        )
        run = s.codex().run("say hi", base_url=s.url + "/v1", key=s.key, model=CODEX_MODEL)
        return s.record(
            "codex",
            f"every POST /v1/responses answered 429, error.code {code!r}, headers {headers}",
            run,
            rule=f"429 code={code}",
        )

    return scenario


def codex_stream_requirements(s: Session) -> dict[str, Any]:
    """Each canned stream variant against a fresh Codex run: did the turn complete?"""
    outcomes: dict[str, Any] = {}
    for name, events in canned.STREAM_VARIANTS.items():
        rec = Recorder(secrets=[s.key])
        rec.add_rule(canned.responses_rule(events))
        with ServerThread(rec) as srv:
            run = Codex(s.tmp / f"codex-{name}", s.trap).run(
                "say hi", base_url=srv.url + "/v1", key=s.key, model=CODEX_MODEL, timeout=90
            )
        outcomes[name] = {
            "events": [e["type"] for e in events],
            "exit_code": run.returncode,
            "printed_answer": "canned answer" in run.stdout,
            "posts": len(rec.requests("/v1/responses")),
            "last_error": next(
                (ln for ln in reversed(run.stderr.splitlines()) if "ERROR" in ln), None
            ),
        }
    return dict(
        sanitize(
            {
                "client": "codex",
                "version": pinned_version("@openai/codex"),
                "description": "which Responses stream events Codex needs to finish a turn",
                "variants": outcomes,
            },
            str(s.tmp),
        )
    )


SCENARIOS: dict[str, tuple[bool, int, Callable[[Session], dict[str, Any]]]] = {
    # name: (simulator upstream, ws_status, scenario)
    "claude_tool_turn": (True, 404, claude_tool_turn),
    "claude_default_model": (True, 404, claude_default_model),
    "claude_system_role_refused": (True, 404, claude_system_role_refused),
    "claude_429_should_retry_false": (False, 404, claude_429_no_retry),
    "claude_429_retry": (False, 404, claude_429_retry),
    "claude_404": (False, 404, claude_404),
    "claude_context": (True, 404, claude_context),
    "claude_context_count_tokens_404": (True, 404, claude_context_without_count_tokens),
    "codex_no_responses_route": (False, 404, codex_no_responses_route),
    "codex_tool_turn": (False, 404, codex_tool_turn),
    "codex_websocket_404": (False, 404, codex_websocket(404)),
    "codex_websocket_426": (False, 426, codex_websocket(426)),
    "codex_429_quota_exceeded_should_retry_false": (False, 404, codex_429("quota_exceeded", False)),
    "codex_429_insufficient_quota": (False, 404, codex_429("insufficient_quota", True)),
    "codex_stream_requirements": (False, 404, codex_stream_requirements),
}


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names or list(SCENARIOS):
        simulator, ws_status, scenario = SCENARIOS[name]
        s = Session(simulator=simulator, ws_status=ws_status)
        try:
            data = scenario(s)
        finally:
            s.close()
        (OUT / f"{name}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        print(f"{name}: {len(data.get('requests', data.get('variants', [])))} entries")


if __name__ == "__main__":
    main(sys.argv[1:])
