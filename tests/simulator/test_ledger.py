"""Ground-truth ledger: exact costs and cost parts (`metis.simulator.ledger`)."""

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from metis.pricing import price
from metis.simulator.ledger import Call, Ledger, usd_json_number, usd_str

MODELS = [
    ("openai", "gpt-4o-mini-2024-07-18"),
    ("openai", "o4-mini-2025-04-16"),
    ("anthropic", "claude-haiku-4-5-20251001"),
    ("anthropic", "claude-opus-4-5-20251101"),
]


@settings(max_examples=60, deadline=None)
@given(
    pm=st.sampled_from(MODELS),
    uncached=st.integers(0, 300_000),
    read=st.integers(0, 50_000),
    w5=st.integers(0, 20_000),
    w1=st.integers(0, 20_000),
    out=st.integers(0, 50_000),
)
def test_cost_parts_sum_to_the_priced_total(
    pm: tuple[str, str], uncached: int, read: int, w5: int, w1: int, out: int
) -> None:
    provider, model = pm
    inp = uncached + read + w5 + w1
    c = Call(
        provider=provider,
        kind="messages",
        ts=1_790_000_000,
        api_key_id="k",
        model=model,
        input_tokens=inp,
        cached_input_tokens=read,
        cache_write_5m=w5,
        cache_write_1h=w1,
        output_tokens=out,
    )
    expected = price(
        provider,
        model,
        input_tokens=inp,
        output_tokens=out,
        cached_input_tokens=read,
        cache_creation_input_tokens=w5 + w1,
        cache_write_1h_tokens=w1,
        at=datetime.fromtimestamp(c.ts, UTC),
    )
    assert c.cost_nanousd == expected.cost_nanousd
    parts = c.cost_parts()
    assert sum(parts.values()) == c.cost_nanousd
    assert all(v >= 0 for v in parts.values())
    assert sum(c.part_tokens().values()) == inp + out


def test_one_hour_cache_writes_cost_their_own_price() -> None:
    # claude-haiku-4-5: $1 input, $1.25 5-minute write, $2 1-hour write per MTok.
    def write(w5: int, w1: int) -> Call:
        return Call(
            provider="anthropic",
            kind="messages",
            ts=1_790_000_000,
            api_key_id="k",
            model="claude-haiku-4-5-20251001",
            input_tokens=w5 + w1,
            cache_write_5m=w5,
            cache_write_1h=w1,
        )

    assert write(1_000_000, 0).cost_nanousd == 1_250_000_000
    assert write(0, 1_000_000).cost_nanousd == 2_000_000_000
    mixed = write(1_000_000, 1_000_000)
    assert mixed.cost_nanousd == 3_250_000_000
    assert mixed.cost_parts()["cache_write_1h"] == 2_000_000_000


def test_ground_truth_groups_and_money_formats() -> None:
    led = Ledger()
    for ts, key in ((1_790_000_000, "a"), (1_790_000_100, "a"), (1_790_100_000, "b")):
        led.add(
            Call(
                provider="openai",
                kind="completions",
                ts=ts,
                api_key_id=key,
                model="gpt-4o-mini-2024-07-18",
                input_tokens=1000,
                output_tokens=10,
            )
        )
    gt = led.ground_truth()
    assert gt["total"]["requests"] == 3 and gt["total"]["input_tokens"] == 3000
    assert [(r["api_key_id"], r["day"], r["requests"]) for r in gt["rows"]] == [
        ("a", "2026-09-21", 2),
        ("b", "2026-09-22", 1),
    ]
    assert gt["total"]["cost_nanousd"] == sum(r["cost_nanousd"] for r in gt["rows"])
    assert usd_str(40) == "0.000000040" and usd_str(1_500_000_000) == "1.500000000"
    assert bytes(usd_json_number(40)) == b"0.00000004"
    assert bytes(usd_json_number(0)) == b"0"
