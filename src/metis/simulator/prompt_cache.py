"""Anthropic prompt caching, by the documented rules (the simulator's cache state).

A request's prompt is a sequence of blocks in the order the API renders it:
each tool definition, each ``system`` block, then each content block of each
message (a string content is one block). A block carrying ``cache_control``
(``{"type": "ephemeral"}``, optional ``"ttl": "5m" | "1h"``) is a breakpoint;
a top-level ``cache_control`` (automatic caching) puts one on the last block.
At most 4 breakpoints are allowed (more: the API's 400).

Per request, for one (workspace, model):

- **Read**: every breakpoint looks back over its own block and the 20 before
  it for the longest prefix that is in the cache and alive; the longest such
  prefix over all breakpoints is read (``cache_read_input_tokens``) and its
  entry's TTL is refreshed.
- **Write**: every breakpoint after the read prefix whose prefix reaches the
  model's minimum cacheable length is written, with its own TTL. The tokens
  between the read prefix and the last written breakpoint are the cache
  writes; with mixed TTLs the part up to the last 1-hour breakpoint is billed
  as 1-hour writes and the rest as 5-minute writes (Anthropic's "A/B/C" rule).
  A prefix shorter than the minimum is processed uncached, without error.
- Everything after the last breakpoint (or not cached) is plain
  ``input_tokens``.

A prefix is identified by the content of its blocks *without* their
``cache_control`` markers (a client moves its marker to the newest block on
every turn; the prefix it cached on the previous turn is still the same
prefix). Token counts follow `metis.simulator.tokens`: each tool, system
block and content block its tokens, plus 3 per message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from metis.simulator import tokens

MAX_BREAKPOINTS = 4
LOOKBACK_BLOCKS = 20
TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}
MIN_TOKENS_DEFAULT = 1024
MIN_TOKENS: tuple[tuple[str, int], ...] = (
    ("claude-opus-4-6", 4096),
    ("claude-opus-4-5", 4096),
    ("claude-haiku-4-5", 4096),
    ("claude-3-5-haiku", 2048),
    ("claude-3-haiku", 2048),
)
"""Minimum cacheable prompt length per model family (Anthropic's prompt-caching
guide); other models: `MIN_TOKENS_DEFAULT` (Sonnet 4.6 and 4.5, Opus 4.1 and 4,
Sonnet 4 and 3.7 are documented at 1024)."""


class CacheRequestError(ValueError):
    """The request's cache_control is invalid (the API answers 400 with this message)."""


def min_cacheable_tokens(model: str) -> int:
    m = model.lower()
    for prefix, n in MIN_TOKENS:
        if m.startswith(prefix):
            return n
    return MIN_TOKENS_DEFAULT


@dataclass(frozen=True, slots=True)
class Breakpoint:
    block: int  # index in the block sequence
    tokens: int  # prompt tokens up to and including that block
    ttl: str  # "5m" | "1h"


@dataclass(slots=True)
class Prompt:
    """A request's blocks: cumulative tokens and prefix keys per block, and its breakpoints."""

    total_tokens: int = 0
    ends: list[int] = field(default_factory=list)  # tokens through block i
    keys: list[bytes] = field(default_factory=list)  # prefix identity through block i
    breakpoints: list[Breakpoint] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CacheUsage:
    read: int = 0
    write_5m: int = 0
    write_1h: int = 0


def blocks(content: Any) -> list[Any]:
    """Content blocks of a message content or ``system`` (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return content if isinstance(content, list) else []


def _marker(block: Any) -> Any:
    return block.get("cache_control") if isinstance(block, dict) else None


def _ttl(cc: Any) -> str:
    if not isinstance(cc, dict) or cc.get("type") != "ephemeral":
        raise CacheRequestError("cache_control.type: Input should be 'ephemeral'")
    ttl = cc.get("ttl", "5m")
    if ttl not in TTL_SECONDS:
        raise CacheRequestError("cache_control.ttl: Input should be '5m' or '1h'")
    return str(ttl)


def _unmarked(block: Any) -> Any:
    if isinstance(block, dict) and "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def parse(body: dict[str, Any]) -> Prompt:
    """The prompt of a Messages request (``messages`` already validated as a list of dicts).

    Raises `CacheRequestError` for an invalid ``cache_control`` or more than
    `MAX_BREAKPOINTS` breakpoints.
    """
    p = Prompt()
    h = hashlib.blake2b(digest_size=16)
    marks: list[tuple[int, Any]] = []

    def add(section: str, role: str, first: bool, block: Any, n: int) -> None:
        p.total_tokens += n
        h.update(tokens.canonical([section, role, first, _unmarked(block)]))
        p.ends.append(p.total_tokens)
        p.keys.append(h.copy().digest())
        cc = _marker(block)
        if cc is not None:
            marks.append((len(p.ends) - 1, cc))

    tools = body.get("tools") if isinstance(body.get("tools"), list) else []
    for t in tools or ():
        add("tools", "", False, t, tokens.block_tokens(t) if isinstance(t, dict) else 0)
    for b in blocks(body.get("system")):
        add("system", "", False, b, tokens.block_tokens(b))
    for m in body["messages"]:
        overhead = 3
        for j, b in enumerate(blocks(m.get("content"))):
            add("messages", str(m.get("role")), j == 0, b, overhead + tokens.block_tokens(b))
            overhead = 0
        p.total_tokens += overhead  # a message without blocks still costs its 3
    auto = body.get("cache_control")
    if auto is not None and p.ends and not any(i == len(p.ends) - 1 for i, _ in marks):
        marks.append((len(p.ends) - 1, auto))
    if len(marks) > MAX_BREAKPOINTS:
        raise CacheRequestError(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(marks)}."
        )
    p.breakpoints = [Breakpoint(i, p.ends[i], _ttl(cc)) for i, cc in marks]
    return p


@dataclass
class PromptCache:
    """Cache entries: (scope + prefix key) -> (expiry in unix seconds, TTL seconds)."""

    _entries: dict[bytes, tuple[float, float]] = field(default_factory=dict)

    def alive(self, key: bytes, now: float) -> bool:
        e = self._entries.get(key)
        return e is not None and e[0] > now

    def put(self, key: bytes, now: float, ttl: float) -> None:
        self._entries[key] = (now + ttl, ttl)

    def refresh(self, key: bytes, now: float) -> None:
        _, ttl = self._entries[key]
        self._entries[key] = (now + ttl, ttl)

    def clear(self) -> None:
        self._entries.clear()

    def apply(self, prompt: Prompt, scope: bytes, model: str, now: float) -> CacheUsage:
        """Read and write this prompt's prefixes (see the module doc); the tokens of each kind."""
        bps: Sequence[Breakpoint] = prompt.breakpoints
        if not bps:
            return CacheUsage()
        hit = -1
        for bp in bps:
            for i in range(bp.block, max(-1, bp.block - LOOKBACK_BLOCKS - 1), -1):
                if i <= hit:
                    break
                if self.alive(scope + prompt.keys[i], now):
                    hit = i
                    break
        read = prompt.ends[hit] if hit >= 0 else 0
        if hit >= 0:
            self.refresh(scope + prompt.keys[hit], now)
        minimum = min_cacheable_tokens(model)
        written = [bp for bp in bps if bp.block > hit and bp.tokens >= minimum]
        for bp in written:
            self.put(scope + prompt.keys[bp.block], now, TTL_SECONDS[bp.ttl])
        if not written:
            return CacheUsage(read=read)
        last = written[-1].tokens
        last_1h = max((bp.tokens for bp in written if bp.ttl == "1h"), default=read)
        return CacheUsage(read=read, write_5m=last - last_1h, write_1h=last_1h - read)
