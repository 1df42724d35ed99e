"""Response schemas of the analytics API, for ``/openapi.json`` only.

The handlers build their JSON in `metis.analytics.service` and encode it with
`metis.jsonutil` (money as exact JSON numbers), so these models are never used
to validate or serialize: they document what a client gets, and the API
fuzzer (tests/fuzz/test_openapi.py) checks every response against them.
Money is a JSON number of USD with up to nine decimals; ids are strings, null
for the bucket of traffic without one (no key, no user, no team).
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(extra="allow")


Usd = float
"""A USD amount (an exact decimal JSON number; `float` only names the JSON type)."""


class Window(_Out):
    start: str
    end: str


class Envelope(_Out):
    """Fields every analytics answer carries."""

    window: Window
    current_pricing_version: str


class Measures(_Out):
    cost_usd: Usd
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_creation_input_tokens: int
    reasoning_tokens: int
    call_count: int = Field(description="Billed calls (requests the provider ran)")
    error_count: int = Field(
        description="Gateway records of calls the upstream refused or failed (not billed)"
    )
    record_count: int


class LaggingDay(_Out):
    """A day whose provider figure is as of a sync made before the day ended."""

    workspace_id: str
    provider: str
    day: str
    as_of: str


class CostResponse(Envelope):
    """One row per value of ``group_by`` (a field named after it: ``model``, ``day``,
    ``user_id``, ``team_id``, ``key_id`` …, null for the no-value bucket)."""

    view: str
    group_by: str
    partial_coverage: bool
    provider_lagging: list[LaggingDay] = Field(
        description="Days in the window still in progress when the provider last reported "
        "(reconciled view): their provider figure is a lower bound as of that sync"
    )
    total: Measures
    data: list[Measures]


class KeyRow(Measures):
    key_id: str | None
    name: str | None
    workspace_id: str | None
    user_id: str | None
    team_id: str | None
    revoked: bool | None


class ByKeyResponse(Envelope):
    view: str
    partial_coverage: bool
    data: list[KeyRow]


class TeamUser(_Out):
    user_id: str | None
    display_name: str | None
    cost_usd: Usd
    call_count: int


class TeamRow(_Out):
    team_id: str | None
    team_name: str | None
    cost_usd: Usd
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_creation_input_tokens: int
    call_count: int
    daily_cap_usd: Usd | None
    monthly_cap_usd: Usd | None
    by_user: list[TeamUser]


class ByTeamResponse(Envelope):
    view: str
    partial_coverage: bool
    data: list[TeamRow]


class CacheRow(_Out):
    provider: str
    model: str
    input_tokens: int
    cached_input_tokens: int
    cache_creation_input_tokens: int
    uncached_input_tokens: int
    cache_hit_rate: float | None
    cost_usd: Usd
    savings_usd: Usd


class CacheTotal(_Out):
    input_tokens: int
    cached_input_tokens: int
    cache_hit_rate: float | None
    savings_usd: Usd


class CacheResponse(Envelope):
    view: str
    partial_coverage: bool
    total: CacheTotal
    data: list[CacheRow]


class SavingsRow(_Out):
    provider: str
    model: str
    call_count: int
    actual_cost_usd: Usd
    baseline_cost_usd: Usd
    savings_usd: Usd


class SavingsResponse(Envelope):
    view: str
    baseline: str
    partial_coverage: bool
    actual_cost_usd: Usd
    baseline_cost_usd: Usd
    savings_usd: Usd
    data: list[SavingsRow]


class RoutingData(_Out):
    decisions: int
    fallbacks: int
    fallback_rate: float | None
    hard_failures: int
    hard_failures_by_reason: dict[str, int]
    rule_hits: dict[str, int]
    winners: dict[str, int]


class RoutingResponse(Envelope):
    partial_coverage: bool
    data: RoutingData


class Latency(_Out):
    p50: int | None
    p90: int | None
    p95: int | None
    p99: int | None
    max: int | None


class ReliabilityRow(_Out):
    provider: str
    model: str
    calls: int
    errors: int
    error_rate: float | None
    latency_ms: Latency


class LatencySample(_Out):
    rows: int = Field(description="Latencies the figures were computed from")
    every: int = Field(description="Sampling stride of the raw path (1: every call)")
    exact: bool = Field(description="Whether every figure is the exact nearest-rank value")


class ReliabilityResponse(Envelope):
    partial_coverage: bool
    latency_method: Literal["histogram", "raw", "raw_sample"] = Field(
        description="histogram: daily latency histograms plus raw partial-day edges (no "
        "user/team/key filter); raw: every matching record; raw_sample: 1 record in `every`"
    )
    relative_error: float | None = Field(
        description="Bound on |figure - exact| / exact for every latency figure "
        "(0.02 for histogram, 0 for raw, null for raw_sample)"
    )
    latency_sample: LatencySample
    data: list[ReliabilityRow]


class IngestRow(_Out):
    credential_id: str
    workspace_id: str | None
    provider: str | None
    mode: str | None
    removed: bool | None
    complete_through: str | None
    last_success_at: str | None
    last_error_at: str | None
    last_error: str | None
    runs: int
    failed_runs: int
    records_stored: int
    records_updated: int
    records_unchanged: int
    last_run_at: str | None
    syncable: bool | None = Field(
        description="The credential has the usage_admin purpose, so it is synced; "
        "null for runs of a credential no longer on record."
    )
    healthy: bool | None = Field(
        description="Last sync succeeded after the last error; null when the "
        "credential is not synced (inference only)."
    )


class IngestResponse(Envelope):
    data: list[IngestRow]


class ReconciliationResponse(_Out):
    """Cells as described in docs/reconciliation.md."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    workspace_id: str | None
    cells: list[dict[str, Any]]
    totals: dict[str, dict[str, int]]


class UserExport(_Out):
    user: dict[str, Any]
    teams: list[dict[str, Any]]
    gateway_keys: list[dict[str, Any]]
    usage_daily: list[dict[str, Any]]
    usage_records: list[dict[str, Any]]


class ForgetResult(_Out):
    user_id: str
    already_forgotten: bool
    usage_records_pseudonymized: int
    events_pseudonymized: int
    keys_revoked: int


def ok(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entry declaring ``model`` as the 200 body."""
    return {200: {"model": model, "description": "OK"}}
