"""Exact money: Decimal USD at the edges, integer nano-USD (1e-9) inside.

Floats never hold money. Stored and summed values are integers; conversion to
nano-USD is exact when the Decimal has at most nine decimal places and is
otherwise rounded half-even to the nearest nano-USD (prices times token counts
from genai-prices are exact at that resolution for every listed model).
"""

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

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
    plain JSON numbers (`plain_usd`: no exponent) with all nine decimals kept,
    so no float rounding happens between the ledger and the client.
    """
    return None if nanos is None else from_nanousd(nanos)


def plain_usd(value: Decimal | int) -> str:
    """A money amount as plain decimal text, never exponent notation.

    ``str(Decimal("8.0E-8"))`` keeps the exponent; every amount that leaves
    Metis (JSON, CSV, tables) goes through here instead: ``0.000000080``,
    ``0.000000000``, ``12.5``.
    """
    return format(value, "f")


def plain_money_fields(obj: Any) -> Any:
    """``obj`` with every ``*_usd`` value that is a decimal amount in plain notation text.

    Events store money as decimal strings (``str(Decimal)``, which may carry an
    exponent: ``"8.0E-8"``); this rewrites them, at any depth, when they leave
    Metis (audit and user exports).
    """
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            if isinstance(k, str) and k.endswith("_usd") and isinstance(v, str | Decimal):
                try:
                    d = Decimal(v)
                except InvalidOperation:
                    out[k] = v
                    continue
                out[k] = plain_usd(d) if d.is_finite() else v
            else:
                out[k] = plain_money_fields(v)
        return out
    if isinstance(obj, list):
        return [plain_money_fields(v) for v in obj]
    return obj
