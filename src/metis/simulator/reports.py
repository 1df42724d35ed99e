"""Time buckets, pagination and grouping shared by the admin usage/cost reports.

Buckets are aligned to the bucket width in UTC (minute, hour, day): the first
bucket is the one containing the requested start, and buckets are listed while
their start is before the requested end (default: now). Every bucket in that
range is returned, with ``results: []`` when it has no usage. ``limit`` is the
number of buckets per page; ``next_page`` is an opaque cursor naming the next
bucket (the client repeats its other parameters, as with the real APIs).
"""

import base64
import struct
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from starlette.datastructures import QueryParams

from metis.simulator.ledger import Call

WIDTHS = {"1m": 60, "1h": 3600, "1d": 86400}
USAGE_LIMITS = {"1d": (7, 31), "1h": (24, 168), "1m": (60, 1440)}

K = TypeVar("K", bound=Hashable)


class ParamError(ValueError):
    """A bad query parameter: ``param`` names it, the message says why."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def multi(qp: QueryParams, name: str) -> list[str]:
    """Values of an array parameter sent as ``name=a&name=b`` or ``name[]=a`` (or ``a,b``)."""
    out: list[str] = []
    for v in [*qp.getlist(name), *qp.getlist(name + "[]")]:
        out.extend(x for x in v.split(",") if x)
    return out


def parse_limit(qp: QueryParams, default: int, maximum: int) -> int:
    raw = qp.get("limit")
    if raw is None:
        return default
    try:
        n = int(raw)
    except ValueError as exc:
        raise ParamError("limit", f"limit must be an integer, got {raw!r}") from exc
    if not 1 <= n <= maximum:
        raise ParamError("limit", f"limit must be between 1 and {maximum}, got {n}")
    return n


def check_group_by(values: list[str], allowed: Iterable[str], param: str) -> tuple[str, ...]:
    allowed = tuple(allowed)
    for v in values:
        if v not in allowed:
            raise ParamError(param, f"invalid {param} value {v!r}; allowed: {', '.join(allowed)}")
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class Window:
    """The buckets of one page."""

    starts: list[int]
    width: int
    has_more: bool
    next_start: int | None

    @property
    def start(self) -> int:
        return self.starts[0] if self.starts else 0

    @property
    def end(self) -> int:
        return self.starts[-1] + self.width if self.starts else 0


def window(
    start: int, end: int | None, now: int, width: int, limit: int, page_start: int | None
) -> Window:
    """The page of buckets from ``page_start`` (or the first bucket) up to ``limit`` buckets."""
    first = start - start % width
    stop = end if end is not None else now + 1
    cur = first if page_start is None else page_start
    if page_start is not None and (page_start < first or page_start % width):
        raise ParamError("page", "invalid page cursor for this query")
    starts: list[int] = []
    while cur < stop and len(starts) < limit:
        starts.append(cur)
        cur += width
    has_more = cur < stop
    return Window(starts, width, has_more, cur if has_more else None)


def bucketize(
    calls: Iterable[Call], win: Window, key: Callable[[Call], K]
) -> dict[int, dict[K, list[Call]]]:
    """Calls of the window grouped by bucket start, then by ``key``."""
    out: dict[int, dict[K, list[Call]]] = defaultdict(lambda: defaultdict(list))
    if not win.starts:
        return out
    lo, hi, w = win.start, win.end, win.width
    for c in calls:
        if lo <= c.ts < hi:
            out[c.ts - (c.ts - lo) % w][key(c)].append(c)
    return out


def openai_cursor(next_start: int) -> str:
    return "page_" + base64.b64encode(struct.pack(">QQ", next_start, 0x5157)).decode()


def parse_openai_cursor(page: str | None) -> int | None:
    if not page:
        return None
    try:
        raw = base64.b64decode(page.removeprefix("page_"), validate=True)
        start, magic = struct.unpack(">QQ", raw)
    except (ValueError, struct.error) as exc:
        raise ParamError("page", "invalid page cursor") from exc
    if magic != 0x5157:
        raise ParamError("page", "invalid page cursor")
    return int(start)


def rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def anthropic_cursor(next_start: int) -> str:
    return "page_" + base64.b64encode(rfc3339(next_start).encode()).decode()


def parse_rfc3339(value: str, param: str) -> int:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ParamError(param, f"{param}: invalid RFC 3339 datetime {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if dt.year < 1970 or dt.year > 9998:
        raise ParamError(param, f"{param}: out of range")
    return int(dt.timestamp())


def parse_anthropic_cursor(page: str | None) -> int | None:
    if not page:
        return None
    try:
        text = base64.b64decode(page.removeprefix("page_"), validate=True).decode()
    except ValueError as exc:
        raise ParamError("page", "invalid page token") from exc
    return parse_rfc3339(text, "page")
