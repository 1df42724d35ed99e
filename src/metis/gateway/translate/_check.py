"""Small type-checked accessors for decoded JSON, raising `TranslationError`.

Translation reads client- and upstream-supplied JSON; any shape surprise must
become a clear error naming the field, never a KeyError/TypeError (a 500).
"""

from typing import Any

import msgspec

from metis.gateway.translate.errors import TranslationError
from metis.jsonutil import DECODE_ERRORS

Obj = dict[str, Any]


def obj(v: Any, field: str) -> Obj:
    if not isinstance(v, dict):
        raise TranslationError(f"{field} must be an object", field=field)
    return v


def arr(v: Any, field: str) -> list[Any]:
    if not isinstance(v, list):
        raise TranslationError(f"{field} must be an array", field=field)
    return v


def string(v: Any, field: str) -> str:
    if not isinstance(v, str):
        raise TranslationError(f"{field} must be a string", field=field)
    return v


def opt_string(v: Any, field: str) -> str | None:
    return None if v is None else string(v, field)


def integer(v: Any, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TranslationError(f"{field} must be an integer", field=field)
    return v


def number(v: Any, field: str) -> int | float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise TranslationError(f"{field} must be a number", field=field)
    return v


def boolean(v: Any, field: str) -> bool:
    if not isinstance(v, bool):
        raise TranslationError(f"{field} must be a boolean", field=field)
    return v


_enc = msgspec.json.Encoder()


def dumps_str(v: Any) -> str:
    """Compact JSON text (tool-call arguments are JSON *strings* in the OpenAI shape)."""
    return _enc.encode(v).decode()


def loads_args(text: str, field: str) -> Any:
    """Decode tool-call arguments; empty means ``{}``."""
    if text.strip() == "":
        return {}
    try:
        return msgspec.json.decode(text)
    except DECODE_ERRORS:
        raise TranslationError(f"{field} is not valid JSON", field=field) from None
