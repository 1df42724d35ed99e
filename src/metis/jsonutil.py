"""JSON encoding for HTTP responses and exports.

Decimals (money) are written as plain JSON numbers with every stored digit and
never in exponent notation (``0.000000080``, not ``8.0E-8``, which msgspec's
own Decimal encoding would print); datetimes become ISO 8601 strings.
"""

from decimal import Decimal
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder(decimal_format="number")


_LEAVES = frozenset({int, str, bool, float, type(None)})
"""Types `_plain` leaves as they are, checked before recursing: responses are mostly
ints and strings, so a large one (a 90-day reconciliation, 200k values) is walked
without a call per value."""


def _plain(obj: Any) -> Any:
    """``obj`` with every Decimal replaced by its plain-notation JSON number."""
    if isinstance(obj, Decimal):
        return msgspec.Raw(format(obj, "f").encode()) if obj.is_finite() else str(obj)
    if isinstance(obj, dict):
        return {k: v if type(v) in _LEAVES else _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [v if type(v) in _LEAVES else _plain(v) for v in obj]
    return obj


DECODE_ERRORS: tuple[type[Exception], ...] = (msgspec.DecodeError, RecursionError)
"""What decoding untrusted JSON can raise: malformed input, or nesting deep
enough to exhaust the stack (msgspec raises RecursionError; found by fuzzing).
Catch these, never bare Exception, around every decode of outside bytes."""


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as compact JSON bytes (Decimals in plain notation)."""
    return _encoder.encode(_plain(obj))


def loads(data: bytes | str) -> Any:
    """Decode JSON; raises msgspec.DecodeError on malformed input."""
    return msgspec.json.decode(data)
