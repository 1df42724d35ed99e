"""The canonical usage record every source normalizes into (DESIGN.md).

Token fields mean one thing whatever the source: ``input_tokens`` counts every
input token, cache reads and cache writes included, and
``cached_input_tokens`` / ``cache_creation_input_tokens`` are parts of it;
``output_tokens`` includes reasoning tokens and ``reasoning_tokens`` is a part
of it. Normalizers convert from each provider's own semantics.
"""

import hashlib
import typing
from datetime import date, datetime
from typing import Any, Literal

import msgspec

Granularity = Literal["request", "1m", "1h", "1d", "session"]
CostSource = Literal["provider_reported", "computed", "estimated", "none"]
"""``estimated``: a gateway call whose usage could not be read, recorded at its worst
case (`metis.gateway.estimate`)."""

# Fields that make up a record's value; bookkeeping (ingested_at, updated_at,
# revision, run_id) is excluded so a replay from a later run is unchanged.
_BOOKKEEPING = frozenset({"ingested_at", "updated_at", "revision", "run_id"})


class UsageRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the ledger, as a writer hands it to `metis.ledger.upsert`."""

    workspace_id: str
    source: str
    source_ref: str
    dedupe_key: str
    window_start: datetime
    window_end: datetime
    granularity: Granularity
    provider: str
    model: str
    model_raw: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    request_count: int = 0
    cost_nanousd: int = 0
    cost_source: CostSource = "none"
    pricing_version: str | None = None
    user_id: str | None = None
    team_id: str | None = None
    gateway_key_id: str | None = None
    provider_project_id: str | None = None
    provider_api_key_id: str | None = None
    provider_workspace_id: str | None = None
    service_tier: str | None = None
    batch: bool | None = None
    correlation_id: str | None = None
    session_id: str | None = None
    request_id: str | None = None
    inbound_shape: str | None = None
    status: str | None = None
    latency_ms: int | None = None
    base_url: str | None = None
    metadata: dict[str, Any] | None = None
    run_id: str | None = None

    @property
    def usage_date(self) -> date:
        """The UTC day of ``window_start``: the record's reconciliation day."""
        return self.window_start.date()

    def value_dict(self) -> dict[str, Any]:
        """Every value column (not bookkeeping), as stored, in `VALUE_COLUMNS` order."""
        out = {f: getattr(self, f) for f in _VALUE_FIELDS}
        out["usage_date"] = self.window_start.date()
        return out

    def content_sha256(self) -> str:
        """A stable hash of the value columns; equal hashes mean a replay."""
        return content_sha256_of(self.value_dict())


_VALUE_FIELDS = tuple(f for f in UsageRecord.__struct_fields__ if f not in _BOOKKEEPING)
VALUE_COLUMNS = (*_VALUE_FIELDS, "usage_date")
"""The value columns of a stored record (`UsageRecord.value_dict` keys, in order)."""

_encode_sorted = msgspec.json.Encoder(order="sorted").encode


_TIME_COLUMNS = (
    *(
        f
        for f, t in typing.get_type_hints(UsageRecord).items()
        if f in _VALUE_FIELDS and {datetime, date} & {t, *typing.get_args(t)}
    ),
    "usage_date",
)
"""The value columns holding a datetime or date (hashed as their ``isoformat``)."""


def content_sha256_of(values: dict[str, Any]) -> str:
    """`UsageRecord.content_sha256` from an already built `UsageRecord.value_dict`.

    The hashed text is the sorted-key JSON of the values with datetimes and
    dates as ``isoformat`` (the stored hashes depend on exactly this; a test
    pins it against the original definition).
    """
    v = dict(values)
    for k in _TIME_COLUMNS:
        x = v[k]
        if x is not None:
            v[k] = x.isoformat()
    return hashlib.sha256(_encode_sorted(v)).hexdigest()
