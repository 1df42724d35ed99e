"""Control endpoints, keys and identities, and the CLI entry points."""

import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from metis.simulator.keys import (
    anthropic_identity,
    is_anthropic_admin,
    is_anthropic_key,
    is_openai_admin,
    is_openai_key,
    openai_identity,
)
from metis.util.server_thread import free_port
from tests.plugins.simulator import Simulator
from tests.procs import get_until_up, read_lines_until, start_metis, stop

MSG = [{"role": "user", "content": "hi"}]


def test_key_formats_and_stable_ids() -> None:
    assert is_openai_key("sk-proj-abc123xyz") and is_openai_key("sk-abcdefgh")
    assert not is_openai_key("sk-admin-abc123xyz") and not is_openai_key("sk-ant-api03-x")
    assert is_openai_admin("sk-admin-x") and is_anthropic_admin("sk-ant-admin01-x")
    assert is_anthropic_key("sk-ant-api03-x") and not is_anthropic_key("sk-ant-admin01-x")
    a, b = openai_identity("sk-proj-one"), openai_identity("sk-proj-two")
    assert a == openai_identity("sk-proj-one") and a.api_key_id != b.api_key_id
    assert a.api_key_id.startswith("key_") and a.project_id and a.project_id.startswith("proj_")
    w = anthropic_identity("sk-ant-api03-one")
    assert w.api_key_id.startswith("apikey_01") and len(w.api_key_id) == 31
    assert w.workspace_id and w.workspace_id.startswith("wrkspc_01")
    # ids never contain the key
    assert "one" not in a.api_key_id + str(a.project_id) + w.api_key_id


def test_ground_truth_calls_and_reset(simulator_factory: Any) -> None:
    sim: Simulator = simulator_factory(history_days=1)
    with httpx.Client(base_url=sim.url, timeout=10) as http:
        r = http.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {sim.openai_key}"},
            json={"model": "gpt-4o-mini", "messages": MSG},
        )
        served_id = r.json()["id"]
        served = sim.ground_truth("served")
        history = sim.ground_truth("history")
        total = sim.ground_truth()
        assert served["total"]["requests"] == 1
        assert history["total"]["requests"] > 1
        assert (
            total["total"]["requests"] == served["total"]["requests"] + history["total"]["requests"]
        )
        assert total["total"]["cost_nanousd"] == (
            served["total"]["cost_nanousd"] + history["total"]["cost_nanousd"]
        )
        row = served["rows"][0]
        assert row["cost_usd"] == f"{row['cost_nanousd'] / 1e9:.9f}"
        assert row["model"] == "gpt-4o-mini-2024-07-18"
        calls = sim.calls("served")
        assert [c["response_id"] for c in calls] == [served_id]
        assert calls[0]["api_key_id"] == sim.openai_key_id(sim.openai_key)
        assert http.get("/_sim/ground_truth", params={"origin": "x"}).status_code == 400
        sim.reset()
        assert sim.ground_truth("served")["total"]["requests"] == 0
        assert sim.ground_truth("history") == history  # history survives a reset


def test_count_tokens_and_stream_options_validation(simulator: Simulator) -> None:
    with httpx.Client(base_url=simulator.url, timeout=10) as http:
        h = {"x-api-key": simulator.anthropic_key, "anthropic-version": "2023-06-01"}
        r = http.post(
            "/v1/messages/count_tokens",
            headers=h,
            json={"model": "claude-haiku-4-5-20251001", "messages": MSG},
        )
        assert r.json() == {"input_tokens": 4}
        r = http.post(
            "/v1/messages",
            headers=h,
            json={"model": "claude-haiku-4-5-20251001", "max_tokens": 9, "messages": MSG},
        )
        assert r.json()["usage"]["input_tokens"] == 4
        r = http.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {simulator.openai_key}"},
            json={
                "model": "gpt-4o-mini",
                "messages": MSG,
                "stream_options": {"include_usage": True},
            },
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "stream_options"
        r = http.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {simulator.openai_key}"},
            content=b"{not json",
        )
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
        assert simulator.ground_truth()["total"]["requests"] == 1


def test_forced_output_tokens_and_backdating(simulator: Simulator) -> None:
    with httpx.Client(base_url=simulator.url, timeout=10) as http:
        r = http.post(
            "/v1/chat/completions",
            headers={
                "authorization": f"Bearer {simulator.openai_key}",
                "x-sim-output-tokens": "500",
                "x-sim-time": "1730419200",
            },
            json={"model": "gpt-4o-mini", "messages": MSG},
        )
        body = r.json()
        assert body["usage"]["completion_tokens"] == 500 and body["created"] == 1730419200
        assert len(body["choices"][0]["message"]["content"].split()) == 500
    assert simulator.ground_truth()["rows"][0]["day"] == "2024-11-01"


@pytest.mark.parametrize(
    "entry", [["-m", "metis.simulator"], ["-m", "metis.cli.main", "simulator", "serve"]]
)
def test_cli_serves(entry: list[str]) -> None:
    """The real entry points start a working simulator with history and a startup fault."""
    port = free_port()
    cmd = [
        sys.executable,
        *entry,
        "--port",
        str(port),
        "--seed",
        "4",
        "--history-days",
        "2",
        "--fault",
        "/v1/models=503,count=1",
    ]
    if entry[1] == "metis.cli.main":
        cmd = [
            sys.executable,
            "-c",
            "import sys; from metis.cli.main import run; sys.argv[0] = 'metis'; run()",
            *cmd[3:],
        ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/_sim/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert r.json() == {"ok": True, "seed": 4, "history_days": 2}
        h = {"authorization": "Bearer sk-proj-cli-test"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=h).status_code == 503
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=h).status_code == 200
        truth = httpx.get(f"http://127.0.0.1:{port}/_sim/ground_truth").json()
        assert len({row["day"] for row in truth["rows"]}) == 2
    finally:
        proc.terminate()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def test_cli_port_0_prints_the_url_it_listens_on() -> None:
    proc = start_metis(["simulator", "serve", "--port", "0", "--history-days", "1"])
    try:
        first = read_lines_until(proc, "metis simulator listening on")[-1]
        url = first.split()[4]
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0"), first
        assert get_until_up(url + "/_sim/health").status_code == 200
    finally:
        err = stop(proc)
    assert "Traceback" not in err


def test_cli_rejects_bad_fault(cli: Any) -> None:
    r = cli.run("simulator", "serve", "--fault", "/v1/messages=teapot")
    assert r.exit_code != 0 and r.stderr.startswith("error: bad fault")


@pytest.mark.parametrize("run", [1, 2])
def test_shared_simulator_is_reset_per_test(simulator_shared: Simulator, run: int) -> None:
    assert simulator_shared.ground_truth()["total"]["requests"] == 0
    simulator_shared.set_fault("/v1/models", "503")
    with httpx.Client(base_url=simulator_shared.url) as http:
        r = http.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {simulator_shared.openai_key}"},
            json={"model": "gpt-4o-mini", "messages": MSG},
        )
        assert r.status_code == 200
    assert simulator_shared.ground_truth()["total"]["requests"] == 1


def test_paced_stream_arrives_over_time(simulator: Simulator) -> None:
    """``x-sim-stream-interval-ms`` sends one event per write, spaced in time."""
    arrivals: list[float] = []
    with (
        httpx.Client(base_url=simulator.url, timeout=10) as http,
        http.stream(
            "POST",
            "/v1/messages",
            headers={
                "x-api-key": simulator.anthropic_key,
                "anthropic-version": "2023-06-01",
                "x-sim-stream-interval-ms": "30",
                "x-sim-output-tokens": "5",
            },
            json={
                "model": "claude-haiku-4-5-20251001",
                "max_tokens": 50,
                "stream": True,
                "messages": MSG,
            },
        ) as r,
    ):
        for line in r.iter_lines():
            if line.startswith("event: "):
                arrivals.append(time.monotonic())
    # message_start, block start, ping, 5 deltas, block stop, message_delta, message_stop
    assert len(arrivals) == 11
    assert arrivals[-1] - arrivals[0] >= 10 * 0.03 * 0.9
