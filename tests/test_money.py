from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metis import jsonutil
from metis.money import cents_to_nanousd, from_nanousd, to_nanousd, usd_json

nanos = st.integers(min_value=-(10**15), max_value=10**15)
amounts = st.decimals(
    min_value=Decimal("-1000000"), max_value=Decimal("1000000"), places=9, allow_nan=False
)


@given(st.lists(amounts, max_size=50))
def test_sum_of_nanos_equals_decimal_sum_exactly(values: list[Decimal]) -> None:
    assert from_nanousd(sum(to_nanousd(v) for v in values)) == sum(values, Decimal(0))


@given(nanos)
def test_round_trip(n: int) -> None:
    assert to_nanousd(from_nanousd(n)) == n


def test_floats_are_refused() -> None:
    with pytest.raises(TypeError):
        to_nanousd(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        to_nanousd("abc")
    with pytest.raises(ValueError):
        to_nanousd(Decimal("NaN"))


def test_anthropic_cents_strings() -> None:
    assert cents_to_nanousd("123.78912") == 1_237_891_200
    assert cents_to_nanousd("1500") == 15 * 10**9


def test_sub_nano_rounds_half_even() -> None:
    assert to_nanousd(Decimal("0.0000000005")) == 0
    assert to_nanousd(Decimal("0.0000000015")) == 2


def test_json_keeps_every_digit() -> None:
    assert jsonutil.dumps({"cost_usd": usd_json(12_423_100_001)}) == b'{"cost_usd":12.423100001}'
    assert jsonutil.dumps({"c": usd_json(None)}) == b'{"c":null}'
