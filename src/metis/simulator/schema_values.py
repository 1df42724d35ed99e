"""A deterministic JSON value that validates against a JSON schema.

Structured output (chat ``response_format: {"type": "json_schema"}``, the
Responses API's ``text.format``) and Responses API tool arguments must
validate against the caller's schema, or the SDKs' ``.parse()`` and agent
frameworks fail. This covers what OpenAI's strict mode accepts and what
pydantic and the Agents SDK generate: local ``$ref`` (``#/$defs/…``,
``#/definitions/…``, ``#``), ``anyOf`` / ``oneOf`` (the first branch that is
not ``null``), ``allOf`` (merged), ``enum``, ``const``, ``type`` (one or a
list), objects (every required property, or every property when none is
required), arrays (``minItems`` items, at least one when ``minItems`` asks),
strings (``minLength``, ``maxLength``, common ``format`` values), numbers
(``minimum`` / ``exclusiveMinimum`` / ``maximum`` / ``multipleOf``). A
``pattern`` is not matched (the value is ``"sim"``); a schema this cannot
satisfy yields its best effort.
"""

from __future__ import annotations

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
    names = [n for n in req if isinstance(n, str)] if isinstance(req, list) and req else list(props)
    return {n: value_for(props.get(n, {}), root, depth + 1) for n in names}


def _number(schema: dict[str, Any], *, integer: bool) -> float | int:
    lo = schema.get("minimum")
    xlo = schema.get("exclusiveMinimum")
    hi = schema.get("maximum")
    xhi = schema.get("exclusiveMaximum")
    v: float | int = 1
    if isinstance(lo, int | float) and not isinstance(lo, bool):
        v = lo
    elif isinstance(xlo, int | float) and not isinstance(xlo, bool):
        v = xlo + 1 if integer else xlo + 0.5
    if isinstance(hi, int | float) and not isinstance(hi, bool) and v > hi:
        v = hi
    if isinstance(xhi, int | float) and not isinstance(xhi, bool) and v >= xhi:
        v = xhi - 1 if integer else xhi - 0.5
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and not isinstance(step, bool) and step > 0:
        v = step * max(1, -(-v // step)) if v > 0 else 0
    return int(v) if integer else v


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
