"""Usage objects -> canonical tokens, and 1-hour cache writes priced at their own rate.

Anthropic reports cache writes by TTL (``cache_creation.ephemeral_5m_input_tokens``
/ ``ephemeral_1h_input_tokens``); a 1-hour write costs 2x input against 1.25x
for 5 minutes, so a gateway that priced every write at the 5-minute rate
under-priced 1-hour writes by 37.5% (issue 19). The end-to-end test sends a
1-hour cached system prompt through a real gateway to the simulator with the
official SDK, plain and streamed, and compares money exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from metis.db.tables import usage_records
from metis.gateway.usage import Tokens, from_anthropic
from metis.pricing import price
from tests.plugins.servers import GatewayServer
from tests.plugins.simulator import Simulator

MODEL = "claude-sonnet-4-5"


def test_from_anthropic_reads_the_ttl_split() -> None:
    t = from_anthropic(
        {
            "input_tokens": 10,
            "cache_read_input_tokens": 5,
            "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
            "output_tokens": 7,
        }
    )
    assert (t.input, t.cached, t.cache_creation, t.cache_write_1h) == (315, 5, 300, 200)
    # message_delta (cumulative counts, no split) keeps message_start's split
    from_anthropic({"output_tokens": 9, "cache_creation_input_tokens": 300}, t)
    assert (t.cache_creation, t.cache_write_1h, t.output) == (300, 200, 9)
    # a split larger than the total is clamped; garbage reads as 0
    bad = from_anthropic(
        {
            "input_tokens": 1,
            "cache_creation_input_tokens": 50,
            "cache_creation": {"ephemeral_1h_input_tokens": 80},
        }
    )
    assert bad.cache_write_1h == 50
    junk = from_anthropic({"input_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": -3}})
    assert junk.cache_write_1h == 0 and junk.cache_creation == 0
    # a split without the total: the total is the split's sum
    only = from_anthropic(
        {
            "input_tokens": 1,
            "cache_creation": {"ephemeral_5m_input_tokens": 4, "ephemeral_1h_input_tokens": 6},
        }
    )
    assert (only.cache_creation, only.cache_write_1h, only.input) == (10, 6, 11)
    assert Tokens().cache_write_1h == 0


@pytest.fixture
def g(gateway_factory: Callable[..., GatewayServer], simulator: Simulator) -> GatewayServer:
    return gateway_factory(simulator.url)


@pytest.mark.parametrize("stream", [False, True])
def test_one_hour_cache_writes_are_priced_at_the_one_hour_rate(
    g: GatewayServer, simulator: Simulator, stream: bool
) -> None:
    _, secret = g.issue_key()
    client = g.anthropic(secret)
    system: Any = [
        {
            "type": "text",
            "text": "You are a meticulous assistant. " * 400,  # well above 1,024 tokens
            "cache_control": {"type": "ephemeral", "ttl": "1h"},
        }
    ]
    kw: Any = {
        "model": MODEL,
        "max_tokens": 20,
        "system": system,
        "messages": [{"role": "user", "content": "hello"}],
    }
    if stream:
        with client.messages.stream(**kw) as s:
            msg = s.get_final_message()
    else:
        msg = client.messages.create(**kw)
    u = msg.usage
    assert u.cache_creation is not None
    w1h = u.cache_creation.ephemeral_1h_input_tokens
    assert w1h > 0 and w1h == u.cache_creation_input_tokens
    g.flush()
    with g.engine.connect() as c:
        [rec] = c.execute(select(usage_records)).mappings().all()
    [call] = simulator.calls()
    total_in = u.input_tokens + u.cache_creation_input_tokens + (u.cache_read_input_tokens or 0)
    expect = price(
        "anthropic",
        MODEL,
        input_tokens=total_in,
        output_tokens=u.output_tokens,
        cached_input_tokens=u.cache_read_input_tokens or 0,
        cache_creation_input_tokens=u.cache_creation_input_tokens,
        cache_write_1h_tokens=w1h,
        at=rec["window_start"],
    ).cost_nanousd
    as_5m = price(
        "anthropic",
        MODEL,
        input_tokens=total_in,
        output_tokens=u.output_tokens,
        cache_creation_input_tokens=u.cache_creation_input_tokens,
        at=rec["window_start"],
    ).cost_nanousd
    assert expect is not None and as_5m is not None
    assert rec["cost_nanousd"] == expect == call["cost_nanousd"]
    assert expect > as_5m  # 2x input against 1.25x: the 5-minute rate under-priced it
    assert rec["cache_creation_input_tokens"] == u.cache_creation_input_tokens
