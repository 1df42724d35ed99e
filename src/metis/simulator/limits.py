"""Request size limits of the simulated providers, checked before the work they bound.

The providers refuse oversized requests; the simulator must too, or a test
(or a fuzzer) can make it allocate without bound: one embeddings call with a
million inputs grew it to 22 GB until the kernel killed it (issue 19). The
numbers are the providers' documented ones where they document one:

- request body: at most `MAX_BODY_BYTES` (Anthropic documents 32 MB for its
  Messages API and answers ``413 request_too_large``; OpenAI documents no
  byte limit for these routes, so the same bound is used, answered 413 in
  OpenAI's envelope). The body is read with the count checked per chunk,
  so an oversized body is never held whole;
- OpenAI embeddings: at most `EMBEDDINGS_MAX_INPUTS` inputs (2048), each at
  most `EMBEDDINGS_MAX_INPUT_TOKENS` (8192) tokens, `EMBEDDINGS_MAX_TOTAL_TOKENS`
  (300,000) in all. The input count is read from the raw body by
  `count_array_items` *before* the body is decoded, stopping at the first
  item past the limit, so a million-input call costs a few thousand regex
  steps and no per-input object;
- Anthropic messages: at most `MESSAGES_MAX` (100,000) messages per request.
"""

from __future__ import annotations

import re

import msgspec

MAX_BODY_BYTES = 32 * 1024 * 1024
EMBEDDINGS_MAX_INPUTS = 2048
EMBEDDINGS_MAX_INPUT_TOKENS = 8192
EMBEDDINGS_MAX_TOTAL_TOKENS = 300_000
MESSAGES_MAX = 100_000

# One token of a JSON array at its own level: a string, a flat nested array
# (token ids: matched whole, in C), a bracket, a brace or a comma.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|\[[^\[\]"{}]*\]|[\[\]{},]')
_EMPTY = re.compile(rb"\[\s*\]")


class _Input(msgspec.Struct):
    """Only the ``input`` field of an embeddings body, kept as raw JSON (not decoded)."""

    input: msgspec.Raw = msgspec.Raw(b"null")


def embeddings_input_count(body: bytes, limit: int) -> int | None:
    """How many inputs an embeddings body has, counted up to ``limit + 1``.

    None when the body is not a JSON object or ``input`` is not an array (the
    handler's own validation answers those). A single string is 1.
    """
    try:
        raw = msgspec.json.decode(body, type=_Input).input
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    data = bytes(raw).strip()
    if data == b"null":
        return None
    if not data.startswith(b"["):
        return 1
    return count_array_items(data, limit)


def count_array_items(data: bytes, limit: int) -> int:
    """Top-level items of the JSON array ``data``, or ``limit + 1`` as soon as there are more.

    Constant memory: one regex pass over the array's own level (strings and
    flat nested arrays are single tokens), stopping early. An array of
    numbers is one flat token: OpenAI reads it as one input of token ids.
    """
    if _EMPTY.fullmatch(data):
        return 0
    depth = 0
    commas = 0
    for m in _TOKEN.finditer(data):
        tok = m.group(0)
        if tok in (b"[", b"{"):
            depth += 1
        elif tok in (b"]", b"}"):
            depth -= 1
            if depth <= 0:
                break
        elif tok == b"," and depth == 1:
            commas += 1
            if commas >= limit:
                return limit + 1
    return commas + 1
