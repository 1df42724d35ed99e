"""What every telemetry mapper returns, and the small parsers they share.

A mapper is a pure function from one `LogEvent` or `SpanEvent`
(`metis.ingest.otel.records`) to:

- ``None``: the record carries no usage (a prompt event, a tool span, …): ignored;
- a `Mapped`: one usage item in the push API's shape (`metis.ingest.push.UsageItem`
  fields), the ``source`` it is stored under, and identity hints;
- or it raises `MappingError`: the record is a usage record but cannot be used
  (no model, a negative count, …): counted as rejected in the OTLP answer.

Identity hints are kept apart from the item on purpose: an email is only ever
used to find the Metis user (`metis.ingest.otel.identity`) and never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from metis.timeutil import parse_iso

MAX_LABEL = 200
"""Metadata strings are cut to this many characters (they are labels, not payloads)."""


class MappingError(ValueError):
    """A usage record that cannot be turned into a usage item (the reason is the message)."""


@dataclass(frozen=True)
class Mapped:
    """One usage item mapped from telemetry, with the source and identity hints."""

    source: str
    item: dict[str, Any]
    email: str | None = None
    account: str | None = None
    meta: dict[str, str | int | bool | None] = field(default_factory=dict)


def count(attrs: Mapping[str, Any], *names: str, default: int | None = 0) -> int | None:
    """The first present attribute of ``names`` as a token count.

    Accepts ints, integral floats and decimal strings (Codex exports counts as
    strings); a negative, fractional or non-numeric value is a `MappingError`
    naming the attribute. ``default`` when none is present.
    """
    for name in names:
        if name not in attrs or attrs[name] is None:
            continue
        v = attrs[name]
        if isinstance(v, bool):
            raise MappingError(f"{name}: not a token count ({v!r})")
        if isinstance(v, float):
            if not v.is_integer():
                raise MappingError(f"{name}: not a whole number ({v!r})")
            v = int(v)
        elif isinstance(v, str):
            s = v.strip()
            if not s.isdigit():
                raise MappingError(f"{name}: not a token count ({_show(v)})")
            v = int(s)
        if not isinstance(v, int):
            raise MappingError(f"{name}: not a token count ({_show(v)})")
        if v < 0:
            raise MappingError(f"{name}: negative ({v})")
        return v
    return default


def text(attrs: Mapping[str, Any], *names: str) -> str | None:
    """The first present, non-empty string attribute of ``names`` (stripped)."""
    for name in names:
        v = attrs.get(name)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return None


def label(v: Any) -> str | int | bool | None:
    """A metadata value: scalars kept, strings cut to `MAX_LABEL`, anything else dropped."""
    if isinstance(v, bool | int) or v is None:
        return v
    if isinstance(v, float):
        return None
    if isinstance(v, str):
        return v[:MAX_LABEL]
    return None


def labels(**kv: Any) -> dict[str, str | int | bool | None]:
    """`label` of each value, without the ones that are None."""
    out = {k: label(v) for k, v in kv.items()}
    return {k: v for k, v in out.items() if v is not None}


def event_time(record_time: datetime | None, iso_text: str | None) -> datetime:
    """The record's own time, else an ISO 8601 attribute (e.g. ``event.timestamp``)."""
    if record_time is not None:
        return record_time
    if iso_text:
        try:
            return parse_iso(iso_text)
        except (ValueError, OverflowError):
            raise MappingError(f"unreadable timestamp {_show(iso_text)}") from None
    raise MappingError("no timestamp on the record")


def _show(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:60] + "…"
