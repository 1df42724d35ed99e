"""Hypothesis strategies for hostile input: odd values, mutated documents, raw bytes.

`hostile_values` are the values a parser must survive in any field: wrong
types, negative and huge numbers, NaN/Infinity (as floats and Decimals),
fractional counts, unicode and control characters, very long strings and
deeply nested JSON. `mutated` takes a valid document (a golden fixture) and
replaces, deletes or injects a few parts of it, so the parser gets deep into
an almost-valid payload before meeting the bad part.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st


def _nested(depth: int) -> Any:
    v: Any = 1
    for i in range(depth):
        v = [v] if i % 2 else {"a": v}
    return v


_ODD = [
    None, True, False, 0, -1, -(2**63), 2**63, 2**64 + 1, 10**30, -(10**30),
    0.5, 1.5, -0.0, float("nan"), float("inf"), float("-inf"), 1e308,
    Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("1.5"),
    Decimal("1E+400"), Decimal("-1E-400"), Decimal("5.0"),
    "", " ", "0", "-1", "1e3", "NaN", "Infinity", "１２３", "٣", "\x00", "\ud800",
    "a" * 10_000, "𝔪𝔢𝔱𝔦𝔰", "2026-13-45T99:99:99Z", "0000-00-00", "9999-12-31T23:59:59Z",
    [], {}, [None], {"": None}, _nested(60), _nested(400),
]  # fmt: skip

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)

hostile_values: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(_ODD),
    json_scalars,
    st.recursive(
        json_scalars,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=8,
    ),
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@st.composite
def mutated(draw: st.DrawFn, doc: Any, max_mutations: int = 3) -> Any:
    """``doc`` with 1..``max_mutations`` parts replaced by hostile values or removed."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, max_mutations))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        delete = bool(path) and draw(st.booleans()) and draw(st.booleans())
        doc = _set(doc, path, copy.deepcopy(draw(hostile_values)), delete)
    return doc


def deep_json(n: int) -> bytes:
    """JSON text nested ``n`` arrays deep (past 1000, beyond what json/msgspec decode)."""
    return b"[" * n + b"]" * n


deep_json_texts = st.integers(900, 200_000).map(deep_json)
"""Raw JSON texts whose nesting makes the decoders raise RecursionError."""
