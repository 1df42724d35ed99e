"""Anthropic prompt caching by the documented rules (`metis.simulator.prompt_cache`).

Each test drives the simulator over HTTP with the shapes a real client sends
(Claude Code's tool loop: breakpoints on two system blocks and on the newest
message block, the last one moving forward every turn) and checks the usage the
API would report, then that the ground truth bills exactly those tokens.
"""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from metis.pricing import price
from metis.simulator.prompt_cache import LOOKBACK_BLOCKS, min_cacheable_tokens, parse
from tests.plugins.simulator import Simulator, SimulatorFactory

SONNET = "claude-sonnet-4-5-20250929"  # minimum cacheable prompt: 1024 tokens
HAIKU = "claude-haiku-4-5-20251001"  # minimum: 4096 tokens
EPH = {"type": "ephemeral"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(simulator_factory: SimulatorFactory, clock: Clock) -> Simulator:
    return simulator_factory(clock=clock)


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sim.url,
        headers={"x-api-key": sim.anthropic_key, "anthropic-version": "2023-06-01"},
        timeout=10,
    ) as c:
        yield c


def text(n_tokens: int, tag: str = "") -> str:
    """A text of exactly ``n_tokens`` simulator tokens (4 characters each)."""
    body = (tag + "-" + "abcd" * n_tokens)[: 4 * n_tokens]
    assert len(body) == 4 * n_tokens
    return body


def block(n_tokens: int, tag: str = "", cc: dict[str, Any] | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"type": "text", "text": text(n_tokens, tag)}
    if cc is not None:
        b["cache_control"] = cc
    return b


def usage(http: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = http.post("/v1/messages", json={"max_tokens": 20, **body})
    assert r.status_code == 200, r.text
    u: dict[str, Any] = r.json()["usage"]
    return u


def cost(model: str, u: dict[str, Any]) -> int:
    """What Anthropic bills for one usage object, priced with metis.pricing."""
    w1 = u["cache_creation"]["ephemeral_1h_input_tokens"]
    p = price(
        "anthropic",
        model,
        input_tokens=u["input_tokens"]
        + u["cache_read_input_tokens"]
        + u["cache_creation_input_tokens"],
        cached_input_tokens=u["cache_read_input_tokens"],
        cache_creation_input_tokens=u["cache_creation_input_tokens"],
        cache_write_1h_tokens=w1,
        output_tokens=u["output_tokens"],
        at=None,
    )
    assert p.cost_nanousd is not None
    return p.cost_nanousd


def turn(system: list[dict[str, Any]], msgs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": SONNET, "system": system, "messages": msgs}


def test_a_tool_loop_reads_the_cached_prefix_and_writes_only_the_new_turn(
    sim: Simulator, http: httpx.Client
) -> None:
    """Claude Code's layout: the marker moves to the newest block; the old prefix is read."""
    system = [block(5, "billing"), block(40, "identity", EPH), block(3000, "prompt", EPH)]
    first = [{"role": "user", "content": [block(200, "reminder"), block(10, "ask", EPH)]}]
    u1 = usage(http, turn(system, first))
    total1 = 5 + 40 + 3000 + 3 + 200 + 10
    assert (u1["cache_read_input_tokens"], u1["input_tokens"]) == (0, 0)
    assert u1["cache_creation_input_tokens"] == total1  # last breakpoint at the end
    assert u1["cache_creation"]["ephemeral_5m_input_tokens"] == total1

    # turn 2: same prefix (the marker left the old block), then the tool round trip
    second = [
        {"role": "user", "content": [block(200, "reminder"), block(10, "ask")]},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": text(50, "out"),
                    "cache_control": EPH,
                }
            ],
        },
    ]
    u2 = usage(http, turn(system, second))
    tool_use_tokens = (len("Bash") + 3) // 4 + 1  # name + "{}"
    new = 3 + tool_use_tokens + 3 + 50
    assert u2["cache_read_input_tokens"] == total1
    assert u2["cache_creation_input_tokens"] == new
    assert u2["input_tokens"] == 0

    # turn 3 repeats turn 2 exactly: everything is read, nothing written
    u3 = usage(http, turn(system, second))
    assert u3["cache_read_input_tokens"] == total1 + new
    assert u3["cache_creation_input_tokens"] == 0

    gt = sim.ground_truth()["total"]
    assert gt["requests"] == 3
    assert gt["cached_input_tokens"] == total1 + total1 + new
    assert gt["cache_creation_input_tokens"] == total1 + new
    assert gt["cost_nanousd"] == sum(cost(SONNET, u) for u in (u1, u2, u3))


def test_tokens_after_the_last_breakpoint_are_plain_input(http: httpx.Client) -> None:
    system = [block(2000, "sys", EPH)]
    msgs = [{"role": "user", "content": [block(300, "q")]}]
    u1 = usage(http, turn(system, msgs))
    assert u1["cache_creation_input_tokens"] == 2000
    assert u1["input_tokens"] == 3 + 300
    u2 = usage(http, turn(system, [{"role": "user", "content": [block(77, "other")]}]))
    assert (u2["cache_read_input_tokens"], u2["cache_creation_input_tokens"]) == (2000, 0)
    assert u2["input_tokens"] == 3 + 77


def test_more_than_four_breakpoints_is_a_400(http: httpx.Client) -> None:
    system = [block(10, str(i), EPH) for i in range(5)]
    r = http.post(
        "/v1/messages", json={**turn(system, [{"role": "user", "content": "q"}]), "max_tokens": 5}
    )
    assert r.status_code == 400
    assert r.json()["error"] == {
        "type": "invalid_request_error",
        "message": "A maximum of 4 blocks with cache_control may be provided. Found 5.",
    }
    r = http.post(
        "/v1/messages",
        json={
            **turn(
                [block(10, "s", {"type": "ephemeral", "ttl": "2h"})],
                [{"role": "user", "content": "q"}],
            ),
            "max_tokens": 5,
        },
    )
    assert r.status_code == 400 and "ttl" in r.json()["error"]["message"]


def test_minimum_cacheable_length_per_model(http: httpx.Client) -> None:
    assert (min_cacheable_tokens(SONNET), min_cacheable_tokens(HAIKU)) == (1024, 4096)
    assert min_cacheable_tokens("claude-opus-4-5-20251101") == 4096
    system = [block(2000, "mid-size", EPH)]
    msgs = [{"role": "user", "content": "q"}]
    for model, written in ((SONNET, 2000), (HAIKU, 0)):
        u = usage(http, {"model": model, "system": system, "messages": msgs})
        assert u["cache_creation_input_tokens"] == written, model
        assert u["input_tokens"] == 2000 + 3 + 1 - written
    u = usage(http, {"model": HAIKU, "system": [block(4096, "big", EPH)], "messages": msgs})
    assert u["cache_creation_input_tokens"] == 4096


def test_five_minute_ttl_expires_and_a_hit_refreshes_it(http: httpx.Client, clock: Clock) -> None:
    system = [block(1500, "s", EPH)]
    msgs = [{"role": "user", "content": "q"}]
    assert usage(http, turn(system, msgs))["cache_creation_input_tokens"] == 1500
    clock.now += 240
    assert usage(http, turn(system, msgs))["cache_read_input_tokens"] == 1500  # refreshed
    clock.now += 240  # 8 minutes after the write, 4 after the refresh
    assert usage(http, turn(system, msgs))["cache_read_input_tokens"] == 1500
    clock.now += 301
    u = usage(http, turn(system, msgs))
    assert (u["cache_read_input_tokens"], u["cache_creation_input_tokens"]) == (0, 1500)


def test_one_hour_ttl_lives_an_hour_and_costs_its_price(
    sim: Simulator, http: httpx.Client, clock: Clock
) -> None:
    system = [block(1500, "s", {"type": "ephemeral", "ttl": "1h"})]
    msgs = [{"role": "user", "content": "q"}]
    u1 = usage(http, turn(system, msgs))
    assert u1["cache_creation"] == {
        "ephemeral_5m_input_tokens": 0,
        "ephemeral_1h_input_tokens": 1500,
    }
    clock.now += 3000
    assert usage(http, turn(system, msgs))["cache_read_input_tokens"] == 1500
    clock.now += 3601
    assert usage(http, turn(system, msgs))["cache_creation"]["ephemeral_1h_input_tokens"] == 1500
    first = sim.calls()[0]
    # $3.75 (5m) vs $6 (1h) per MTok on Sonnet 4.5: the 1-hour write is billed at 1h
    plain_5m = price(
        "anthropic",
        SONNET,
        input_tokens=1504,
        cache_creation_input_tokens=1500,
        output_tokens=first["output_tokens"],
        at=None,
    ).cost_nanousd
    assert plain_5m is not None
    assert first["cost_nanousd"] - plain_5m == 1500 * (Decimal("6") - Decimal("3.75")) * 1000


def test_mixed_ttls_bill_1h_up_to_the_last_1h_breakpoint_then_5m(http: httpx.Client) -> None:
    system = [block(1200, "tools-and-rules", {"type": "ephemeral", "ttl": "1h"})]
    msgs = [{"role": "user", "content": [block(800, "history", EPH)]}]
    u = usage(http, turn(system, msgs))
    assert u["cache_creation"] == {
        "ephemeral_1h_input_tokens": 1200,
        "ephemeral_5m_input_tokens": 3 + 800,
    }
    # next turn: the 1h part is read, the grown history written at 5m
    msgs2 = [{"role": "user", "content": [block(800, "history"), block(100, "more", EPH)]}]
    u2 = usage(http, turn(system, msgs2))
    assert u2["cache_read_input_tokens"] == 1200 + 3 + 800
    assert u2["cache_creation"] == {
        "ephemeral_1h_input_tokens": 0,
        "ephemeral_5m_input_tokens": 100,
    }


def test_a_breakpoint_looks_back_only_20_blocks(http: httpx.Client) -> None:
    system = [block(1500, "s")]
    base = [{"role": "user", "content": [block(5, "q0", EPH)]}]
    u1 = usage(http, turn(system, base))
    assert u1["cache_creation_input_tokens"] == 1500 + 3 + 5
    near = [
        {
            "role": "user",
            "content": [block(5, "q0")]
            + [block(1, f"n{i}") for i in range(LOOKBACK_BLOCKS - 1)]
            + [block(1, "end", EPH)],
        }
    ]
    u2 = usage(http, turn(system, near))
    assert u2["cache_read_input_tokens"] == 1500 + 3 + 5  # 20 blocks back: found
    far = [
        {
            "role": "user",
            "content": [block(5, "q0")]
            + [block(1, f"f{i}") for i in range(LOOKBACK_BLOCKS)]
            + [block(1, "end", EPH)],
        }
    ]
    u3 = usage(http, turn(system, far))
    assert u3["cache_read_input_tokens"] == 0  # 21 blocks back: missed, all written again
    assert u3["cache_creation_input_tokens"] == 1500 + 3 + 5 + LOOKBACK_BLOCKS + 1


def test_automatic_caching_puts_the_breakpoint_on_the_last_block(http: httpx.Client) -> None:
    body = {
        "model": SONNET,
        "cache_control": EPH,
        "system": text(1500, "s"),
        "messages": [{"role": "user", "content": "question"}],
    }
    u1 = usage(http, body)
    assert (u1["cache_creation_input_tokens"], u1["input_tokens"]) == (1500 + 3 + 2, 0)
    u2 = usage(http, body)
    assert u2["cache_read_input_tokens"] == 1500 + 3 + 2


def test_count_tokens_counts_the_whole_prompt_and_parse_agrees(http: httpx.Client) -> None:
    body = turn(
        [block(30, "s", EPH)],
        [{"role": "user", "content": [block(7, "q", EPH)]}, {"role": "assistant", "content": []}],
    )
    r = http.post("/v1/messages/count_tokens", json=body)
    assert r.status_code == 200
    assert r.json() == {"input_tokens": 30 + 3 + 7 + 3}
    assert parse(body).total_tokens == 30 + 3 + 7 + 3
