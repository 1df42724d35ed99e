"""A deterministic JSON value that validates against a JSON schema.

Structured output (chat ``response_format: {"type": "json_schema"}``, the
Responses API's ``text.format``) and Responses API tool arguments must
validate against the caller's schema, or the SDKs' ``.parse()`` and agent
frameworks fail. This covers what OpenAI's strict mode accepts and what
pydantic and the Agents SDK generate: local ``$ref`` (``#/$defs/…``,
``#/definitions/…``, ``#``), ``anyOf`` / ``oneOf`` (the first branch that is
not ``null``), ``allOf`` (merged), ``enum``, ``const``, ``type`` (one or a
list), objects (every required property, or every property when none is
required, down to a depth of `OPTIONAL_DEPTH`), arrays (``minItems`` items;
``prefixItems`` one each), strings (``minLength``, ``maxLength``, common ``format`` values), numbers
(``minimum`` / ``exclusiveMinimum`` / ``maximum`` / ``multipleOf``). A
``pattern`` is not matched (the value is ``"sim"``); a schema this cannot
satisfy yields its best effort.
"""

from __future__ import annotations

import math
from typing import Any

_FORMATS = {
    "date-time": "2025-01-01T00:00:00Z",
    "date": "2025-01-01",
    "time": "00:00:00Z",
    "email": "sim@example.com",
    "uri": "https://example.com/sim",
    "url": "https://example.com/sim",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
    "duration": "P1D",
}
MAX_DEPTH = 32
OPTIONAL_DEPTH = 4


def value_for(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A value of ``schema`` (``root`` resolves ``$ref``; defaults to ``schema``)."""
    if root is None:
        root = schema
    if not isinstance(schema, dict) or depth > MAX_DEPTH:
        return {} if depth == 0 else None
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return value_for(_resolve(ref, root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            pick = next((b for b in branches if not _is_null(b, root)), branches[0])
            return value_for(pick, root, depth + 1)
    all_of = schema.get("allOf")
    if isinstance(all_of, list) and all_of:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in all_of:
            part = (
                _resolve(part["$ref"], root) if isinstance(part, dict) and "$ref" in part else part
            )
            if isinstance(part, dict):
                for k, v in part.items():
                    if k == "properties" and isinstance(v, dict):
                        merged["properties"] = {**merged.get("properties", {}), **v}
                    elif k == "required" and isinstance(v, list):
                        merged["required"] = [*merged.get("required", []), *v]
                    else:
                        merged.setdefault(k, v)
        return value_for(merged, root, depth + 1)
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t == "object" or (t is None and "properties" in schema):
        return _object(schema, root, depth)
    if t == "array" or (t is None and "items" in schema):
        n = schema.get("minItems")
        n = n if isinstance(n, int) and n > 0 else 0
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            return [value_for(p, root, depth + 1) for p in prefix]
        return [
            value_for(items if isinstance(items, dict) else {}, root, depth + 1) for _ in range(n)
        ]
    if t == "integer":
        return int(_number(schema, integer=True))
    if t == "number":
        return _number(schema, integer=False)
    if t == "boolean":
        return True
    if t == "null":
        return None
    if t == "string" or t is None:
        return _string(schema)
    return None


def _resolve(ref: str, root: Any) -> Any:
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return {}
    node = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node


def _is_null(schema: Any, root: Any) -> bool:
    if isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        schema = _resolve(schema["$ref"], root)
    return isinstance(schema, dict) and schema.get("type") == "null"


def _object(schema: dict[str, Any], root: Any, depth: int) -> dict[str, Any]:
    props = schema.get("properties")
    props = props if isinstance(props, dict) else {}
    req = schema.get("required")
    if isinstance(req, list) and req:
        names = [n for n in req if isinstance(n, str)]
    else:  # nothing required: every property, near the top (a recursive schema ends)
        names = list(props) if depth < OPTIONAL_DEPTH else []
    return {n: value_for(props.get(n, {}), root, depth + 1) for n in names}


def _num(v: Any) -> float | None:
    return v if isinstance(v, int | float) and not isinstance(v, bool) else None


def _number(schema: dict[str, Any], *, integer: bool) -> float | int:
    lo, xlo = _num(schema.get("minimum")), _num(schema.get("exclusiveMinimum"))
    hi, xhi = _num(schema.get("maximum")), _num(schema.get("exclusiveMaximum"))
    low, low_x = (lo, False) if lo is not None else (xlo, xlo is not None)
    high, high_x = (hi, False) if hi is not None else (xhi, xhi is not None)
    step = _num(schema.get("multipleOf"))
    if integer:
        v = 1 if low is None else (math.floor(low) + 1 if low_x else math.ceil(low))
        if step is not None and step > 0:
            v = int(step * math.ceil(v / step))
        if high is not None:
            top = math.ceil(high) - 1 if high_x else math.floor(high)
            v = min(v, top)
        return v
    if low is None and high is None:
        return 1
    if low is None:
        assert high is not None
        return min(1, high - 1 if high_x else high)
    if high is None:
        return low + 1 if low_x else low
    return (low + high) / 2 if (low_x or high_x) else low


def _string(schema: dict[str, Any]) -> str:
    fmt = schema.get("format")
    s = _FORMATS.get(fmt, "sim") if isinstance(fmt, str) else "sim"
    lo = schema.get("minLength")
    hi = schema.get("maxLength")
    if isinstance(lo, int) and len(s) < lo:
        s = s + "m" * (lo - len(s))
    if isinstance(hi, int) and hi >= 0 and len(s) > hi:
        s = s[:hi]
    return s
