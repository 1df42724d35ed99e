"""Limits on every text field Metis stores, defined once, and the checks that apply them.

Every edge that writes what someone else sent (the push API and ``metis
ingest push``, the Hermes import, provider report normalizers, admin inputs,
and the gateway) bounds what it stores with these, so no request can make a
row, a rollup key, an event or an analytics answer large: a red-team push of
5 MB model names grew a database by 74 MB per request (issue 19).

Two ways to apply a limit:

- `check_text` / `check_metadata` *refuse* a value (`FieldError`, a
  `metis.errors.ValidationError` naming the field): for input a client
  controls and can correct (push items, admin names, a gateway request's
  ``model`` before it is forwarded: a 400 naming the field).
- `bounded` *shortens* a value deterministically (a prefix plus a hash of the
  whole, so distinct long values stay distinct and a re-import maps to the
  same key): for values Metis must record anyway, e.g. a provider report row
  that carries real cost, or a call the upstream refused whose request named
  an absurd model (the gateway records it with bounded fields only).

The numeric bounds (money and token counts) are in `metis.ledger.bounds`.
"""

import hashlib
from collections.abc import Mapping
from typing import Any

from metis.errors import ValidationError

# -- lengths (characters) -------------------------------------------------------------
MODEL_MAX = 200
"""``model`` and ``model_raw`` (a provider's longest documented ids are under 100)."""
PROVIDER_MAX = 64
ID_MAX = 200
"""Idempotency/dedupe keys, correlation (response) ids, request and session ids,
external ids (provider project and API key ids), ``source_ref``."""
SERVICE_TIER_MAX = 64
BASE_URL_MAX = 2000
NAME_MAX = 200
"""Names and aliases of users, teams, keys, tokens, workspaces."""
EMAIL_MAX = 320
"""RFC 5321's path limit."""
REASON_MAX = 500
"""Free text an admin attaches (a revocation reason)."""
STATUS_MAX = 64
PATH_MAX = 4096
"""A workspace's optional project path (Linux's PATH_MAX)."""
MAX_ALLOWED_MODELS = 200
"""Models in one gateway key's allow-list."""
METADATA_MAX_KEYS = 20
METADATA_KEY_MAX = 64
METADATA_VALUE_MAX = 500
METADATA_TOTAL_MAX = 4096
"""Bytes of a record's ``metadata`` as compact JSON."""


class FieldError(ValidationError):
    """A value over its limit; ``field`` names it (the message does too)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


def is_printable(value: str) -> bool:
    """Whether ``value`` holds no control character (C0 or DEL)."""
    return not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)


def check_text(
    field: str,
    value: str,
    max_len: int,
    *,
    min_len: int = 1,
    printable: bool = True,
) -> str:
    """``value`` if it is a string of ``min_len..max_len`` characters (and, with
    ``printable``, no control characters); `FieldError` naming ``field`` otherwise."""
    if not isinstance(value, str):
        raise FieldError(field, "must be a string")
    if len(value) > max_len:
        raise FieldError(field, f"longer than {max_len} characters ({len(value)})")
    if len(value) < min_len:
        raise FieldError(field, "must not be empty" if min_len == 1 else f"shorter than {min_len}")
    if printable and not is_printable(value):
        raise FieldError(field, "contains control characters")
    return value


def check_optional(field: str, value: str | None, max_len: int) -> str | None:
    """`check_text` for an optional field (None passes; empty text passes as empty)."""
    if value is None:
        return None
    return check_text(field, value, max_len, min_len=0)


def check_metadata(field: str, value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A flat label map: at most `METADATA_MAX_KEYS` keys of `METADATA_KEY_MAX` characters,
    values null/bool/int or text of `METADATA_VALUE_MAX`, `METADATA_TOTAL_MAX` bytes in all."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise FieldError(field, "must be an object")
    if len(value) > METADATA_MAX_KEYS:
        raise FieldError(field, f"has more than {METADATA_MAX_KEYS} keys ({len(value)})")
    size = 2
    for k, v in value.items():
        try:
            check_text(field, k, METADATA_KEY_MAX)
        except FieldError as exc:
            raise FieldError(field, f"key {k[:20]!r}…: {exc.reason}") from None
        if isinstance(v, str):
            check_text(f"{field}.{k}", v, METADATA_VALUE_MAX, min_len=0)
            size += len(v.encode()) + 2
        elif isinstance(v, int) and not isinstance(v, bool):
            if abs(v) >= 2**63:
                raise FieldError(f"{field}.{k}", "integer outside 64 bits")
            size += len(str(v))
        elif v is not None and not isinstance(v, bool):
            raise FieldError(f"{field}.{k}", "must be a string, integer, boolean or null")
        else:
            size += 5
        size += len(k.encode()) + 4
    if size > METADATA_TOTAL_MAX:
        raise FieldError(field, f"larger than {METADATA_TOTAL_MAX} bytes")
    return dict(value)


def bounded(value: str, max_len: int) -> str:
    """``value`` when it fits ``max_len`` and has no control characters; else a
    deterministic stand-in of at most ``max_len`` characters.

    The stand-in is a prefix (control characters as ``?``), ``~`` and 16 hex
    digits of the whole value's SHA-256: two different values stay different
    (and group apart in analytics), the same value always maps to the same
    text (idempotent re-imports). ``max_len`` must be at least 32.
    """
    if len(value) <= max_len and is_printable(value):
        return value
    head = "".join("?" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in value[: max_len - 17])
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return head + "~" + digest


def bounded_optional(value: str | None, max_len: int) -> str | None:
    """`bounded` for an optional value."""
    return None if value is None else bounded(value, max_len)
