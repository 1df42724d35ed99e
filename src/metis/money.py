"""Exact money: Decimal USD at the edges, integer nano-USD (1e-9) inside.

Floats never hold money. Stored and summed values are integers; conversion to
nano-USD is exact when the Decimal has at most nine decimal places and is
otherwise rounded half-even to the nearest nano-USD (prices times token counts
from genai-prices are exact at that resolution for every listed model).
"""

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

NANO = Decimal("0.000000001")
NANOS_PER_USD = 1_000_000_000


def to_nanousd(usd: Decimal | int | str) -> int:
    """Convert USD to integer nano-USD.

    Accepts a Decimal, an int, or a decimal string (never a float, which
    could not be exact). Raises ValueError for anything non-finite or not a
    number.
    """
    if isinstance(usd, float):
        raise TypeError("money must not be a float; pass a Decimal or a string")
    try:
        d = Decimal(usd)
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal amount: {usd!r}") from exc
    if not d.is_finite():
        raise ValueError(f"not a finite amount: {usd!r}")
    return int((d * NANOS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_nanousd(nanos: int) -> Decimal:
    """Integer nano-USD back to an exact Decimal USD (nine decimal places)."""
    return (Decimal(nanos) / NANOS_PER_USD).quantize(NANO)


def cents_to_nanousd(cents: Decimal | str) -> int:
    """Anthropic's cost report gives decimal strings in cents."""
    return to_nanousd(Decimal(cents) / 100)


def usd_json(nanos: int | None) -> Decimal | None:
    """The value to place in a JSON response for a money amount.

    Encode the result with `metis.jsonutil.dumps`, which writes Decimals as
    JSON numbers with all nine decimals kept, so no float rounding happens
    between the ledger and the client.
    """
    return None if nanos is None else from_nanousd(nanos)
