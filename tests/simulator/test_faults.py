"""Each fault mode behaves as specified (see `metis.simulator.faults`)."""

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from metis.simulator.faults import FaultError, parse_spec
from tests.plugins.simulator import Simulator

CLAUDE = "claude-haiku-4-5-20251001"
MSG: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
def http(simulator: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=simulator.url, timeout=10) as c:
        yield c


def _chat(http: httpx.Client, sim: Simulator, **extra: Any) -> httpx.Response:
    return http.post(
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {sim.openai_key}"},
        json={"model": "gpt-4o-mini", "messages": MSG, **extra},
    )


def _usage_page(http: httpx.Client, sim: Simulator) -> httpx.Response:
    return http.get(
        "/v1/organization/usage/completions",
        params={"start_time": int(time.time()) - 3600},
        headers={"authorization": f"Bearer {sim.openai_admin_key}"},
    )


def test_429_with_retry_after_then_clears(simulator: Simulator, http: httpx.Client) -> None:
    simulator.set_fault("/v1/chat/completions", "429", count=2, retry_after=7)
    with openai.OpenAI(
        base_url=simulator.openai_base_url, api_key=simulator.openai_key, max_retries=0
    ) as c:
        for _ in range(2):
            with pytest.raises(openai.RateLimitError) as ei:
                c.chat.completions.create(model="gpt-4o-mini", messages=MSG)
            assert ei.value.response.headers["retry-after"] == "7"
            assert ei.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
        assert c.chat.completions.create(model="gpt-4o-mini", messages=MSG).usage is not None
    assert http.get("/_sim/faults").json() == {"faults": []}
    assert simulator.ground_truth()["total"]["requests"] == 1  # rejected calls are not billed


@pytest.mark.parametrize(
    ("kind", "status", "etype"),
    [
        ("500", 500, "api_error"),
        ("503", 503, "overloaded_error"),
        ("529", 529, "overloaded_error"),
        ("429", 429, "rate_limit_error"),
    ],
)
def test_anthropic_error_faults(simulator: Simulator, kind: str, status: int, etype: str) -> None:
    simulator.set_fault("/v1/messages", kind, count=1)
    with anthropic.Anthropic(
        base_url=simulator.anthropic_base_url, api_key=simulator.anthropic_key, max_retries=0
    ) as c:
        with pytest.raises(anthropic.APIStatusError) as ei:
            c.messages.create(model=CLAUDE, max_tokens=10, messages=MSG)
        assert ei.value.status_code == status
        assert ei.value.body["type"] == "error"  # type: ignore[index]
        assert ei.value.body["error"]["type"] == etype  # type: ignore[index]
        c.messages.create(model=CLAUDE, max_tokens=10, messages=MSG)
    assert simulator.ground_truth()["total"]["requests"] == 1


@pytest.mark.parametrize("kind", ["500", "503"])
def test_openai_5xx(simulator: Simulator, http: httpx.Client, kind: str) -> None:
    simulator.set_fault("*", kind, count=1)
    r = _usage_page(http, simulator)
    assert r.status_code == int(kind) and r.json()["error"]["type"] == "server_error"
    assert _usage_page(http, simulator).status_code == 200


def test_slow(simulator: Simulator, http: httpx.Client) -> None:
    simulator.set_fault("/v1/chat/completions", "slow", count=1, delay=0.4)
    t = time.monotonic()
    assert _chat(http, simulator).status_code == 200
    assert time.monotonic() - t >= 0.4
    t = time.monotonic()
    assert _chat(http, simulator).status_code == 200
    assert time.monotonic() - t < 0.4
    assert simulator.ground_truth()["total"]["requests"] == 2


def test_drop_mid_body(simulator: Simulator, http: httpx.Client) -> None:
    simulator.set_fault("/v1/organization/usage/completions", "drop", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        _usage_page(http, simulator)
    assert _usage_page(http, simulator).status_code == 200
    simulator.set_fault("/v1/chat/completions", "drop", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        _chat(http, simulator)
    assert simulator.ground_truth()["total"]["requests"] == 1  # the model ran: billed


@pytest.mark.parametrize("kind", ["truncated", "malformed"])
def test_bad_json_page(simulator: Simulator, http: httpx.Client, kind: str) -> None:
    simulator.set_fault("/v1/organization/usage/completions", kind, count=1)
    r = _usage_page(http, simulator)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    if kind == "truncated":
        assert r.text.startswith('{"object":"page","data":[')
    assert _usage_page(http, simulator).json()["object"] == "page"


def test_openai_stream_cut_before_usage(simulator: Simulator, http: httpx.Client) -> None:
    simulator.set_fault("/v1/chat/completions", "stream_cut", count=1)
    # a non-streaming call passes and does not use the fault up
    assert _chat(http, simulator).status_code == 200
    lines: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream(
            "POST",
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {simulator.openai_key}"},
            json={
                "model": "gpt-4o-mini",
                "messages": MSG,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ) as r,
    ):
        for line in r.iter_lines():
            lines.append(line)
    data = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
    assert data and data[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(d["usage"] is None for d in data)
    assert "data: [DONE]" not in lines
    assert simulator.ground_truth()["total"]["requests"] == 2  # billed, usage never seen
    # cleared after one use: the next stream is complete
    with openai.OpenAI(
        base_url=simulator.openai_base_url, api_key=simulator.openai_key, max_retries=0
    ) as c:
        chunks = list(
            c.chat.completions.create(
                model="gpt-4o-mini",
                messages=MSG,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert chunks[-1].usage is not None


def test_anthropic_stream_cut_before_message_delta(simulator: Simulator) -> None:
    simulator.set_fault("/v1/messages", "stream_cut")  # until reset
    with anthropic.Anthropic(
        base_url=simulator.anthropic_base_url, api_key=simulator.anthropic_key, max_retries=0
    ) as c:
        seen: list[str] = []
        # the SDK surfaces the transport error of its HTTP client as is
        with (
            pytest.raises(Exception, match="incomplete chunked read"),
            c.messages.stream(model=CLAUDE, max_tokens=50, messages=MSG) as s,
        ):
            for ev in s:
                seen.append(ev.type)
        assert "message_start" in seen and "content_block_stop" in seen
        assert "message_delta" not in seen and "message_stop" not in seen
        simulator.reset()
        with c.messages.stream(model=CLAUDE, max_tokens=50, messages=MSG) as s:
            assert s.get_final_message().usage.output_tokens > 0


def test_fault_api_validation_and_listing(simulator: Simulator, http: httpx.Client) -> None:
    assert (
        http.post("/_sim/faults", json={"endpoint": "/v1/messages", "kind": "teapot"}).status_code
        == 400
    )
    assert (
        http.post("/_sim/faults", json={"endpoint": "/_sim/reset", "kind": "500"}).status_code
        == 400
    )
    assert http.post("/_sim/faults", json={"endpoint": "x", "kind": "500"}).status_code == 400
    assert (
        http.post("/_sim/faults", json={"endpoint": "*", "kind": "500", "count": 0}).status_code
        == 400
    )
    listed = simulator.set_fault("*", "503")
    assert listed == [
        {"endpoint": "*", "kind": "503", "count": None, "retry_after": 1, "delay": 1.0}
    ]
    assert http.get("/_sim/ground_truth").status_code == 200  # control endpoints never faulted
    assert _chat(http, simulator).status_code == 503
    assert _chat(http, simulator).status_code == 503  # no count: until cleared
    simulator.clear_faults()
    assert _chat(http, simulator).status_code == 200


def test_cli_specs_and_startup_faults(simulator_factory: Any) -> None:
    f = parse_spec("/v1/chat/completions=429,count=2,retry_after=3")
    assert (f.endpoint, f.kind, f.count, f.retry_after) == ("/v1/chat/completions", "429", 2, 3)
    assert parse_spec("*=slow,delay=0.5").delay == 0.5
    for bad in (
        "nope",
        "/v1/messages=",
        "/v1/messages=503,count=x",
        "/v1/messages=503,foo=1",
        "/v1/messages=boom",
    ):
        with pytest.raises(FaultError):
            parse_spec(bad)
    sim = simulator_factory(faults=[parse_spec("/v1/chat/completions=503,count=1")])
    with httpx.Client(base_url=sim.url, timeout=10) as http:
        assert _chat(http, sim).status_code == 503
        assert _chat(http, sim).status_code == 200
        sim.reset()  # reset restores the startup faults
        assert _chat(http, sim).status_code == 503
