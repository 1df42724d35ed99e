"""JSON encoding for HTTP responses and exports.

msgspec writes Decimals as JSON numbers (``decimal_format="number"``) so
money keeps every stored digit; datetimes become ISO 8601 strings.
"""

from typing import Any

import msgspec

_encoder = msgspec.json.Encoder(decimal_format="number")

DECODE_ERRORS: tuple[type[Exception], ...] = (msgspec.DecodeError, RecursionError)
"""What decoding untrusted JSON can raise: malformed input, or nesting deep
enough to exhaust the stack (msgspec raises RecursionError; found by fuzzing).
Catch these, never bare Exception, around every decode of outside bytes."""


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as compact JSON bytes."""
    return _encoder.encode(obj)


def loads(data: bytes | str) -> Any:
    """Decode JSON; raises msgspec.DecodeError on malformed input."""
    return msgspec.json.decode(data)
